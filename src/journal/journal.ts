/**
 * The journal: where write-back with `durability: 'journal'` makes a write durable before `set`
 * resolves (contract 5), so that no acknowledged write is lost across a crash (`kill -9`) or a
 * database outage.
 *
 * The write-back queue appends each accepted write and acknowledges it once `append` resolves;
 * when the flusher has the write in the database it releases the write's position. On start,
 * `open` hands back every write that was appended but not released: the queue replays them, and
 * replay is idempotent because the store is version-guarded (contract 1).
 *
 * Lifecycle: `open` once, then `append` and `release` freely, then `close`.
 */

/** One write, as the journal keeps it. */
export interface JournalRecord {
  /** The collection the write belongs to (a journal may serve several). */
  readonly collection: string;
  readonly op: 'set' | 'delete';
  readonly key: string;
  /** The write's version; the journal keeps and returns the highest version per key. */
  readonly version: number;
  /** JSON text of the value; required for 'set', absent for 'delete'. */
  readonly json?: string;
}

declare const journalPosition: unique symbol;

/**
 * Where a record sits in a journal. Opaque: only meaningful to the journal instance that
 * returned it (after a restart, release the positions that `open` returned).
 */
export interface JournalPosition {
  readonly [journalPosition]: true;
}

/** A record that `open` found appended and not released, with its position for `release`. */
export interface RecoveredRecord extends JournalRecord {
  readonly position: JournalPosition;
}

/** A stretch of the journal that could not be read. */
export interface DamagedRange {
  /** The segment (a file path for a file journal). */
  readonly segment: string;
  /** Byte offset where the unreadable stretch starts. */
  readonly offset: number;
  /** Length of the unreadable stretch in bytes. */
  readonly bytes: number;
  /** Why it could not be read ('checksum mismatch', 'record extends past end of segment', ...). */
  readonly reason: string;
}

/** What `open` found. */
export interface RecoveryReport {
  /**
   * The newest record of every (collection, key) that was appended and not released, in append
   * order. Older records of the same key are left out: the newest one carries the whole value.
   */
  readonly records: readonly RecoveredRecord[];
  /**
   * An incomplete or unreadable end of the newest segment: the trace of a write cut short by a
   * crash. It was cut off so that appends continue cleanly. The writes in it were never
   * acknowledged (their `append` had not resolved), so nothing acknowledged is lost.
   */
  readonly tornTail?: DamagedRange;
  /**
   * Damage followed by readable records, or at the end of an older segment: not the trace of a
   * crash but of a broken disk or of an outside edit. Records in these ranges are lost; the
   * readable records after them were recovered.
   */
  readonly corrupt: readonly DamagedRange[];
  /** Segments read. */
  readonly segments: number;
  /** Bytes read. */
  readonly bytes: number;
}

/** Counters since `open`. */
export interface JournalStats {
  /** Calls to `append`. */
  readonly appends: number;
  /** Records appended. */
  readonly records: number;
  /** Records known durable (their commit finished); every resolved `append` is covered. */
  readonly durableRecords: number;
  /** Durable commits (an fdatasync for a file journal); one commit serves a whole group of appends. */
  readonly syncs: number;
  /** Bytes appended, framing included. */
  readonly bytes: number;
  /** Segments on disk now. */
  readonly segments: number;
  /** Segments deleted because every record in them was released. */
  readonly segmentsDeleted: number;
}

export interface Journal {
  /**
   * Takes the journal for this process (a second opener gets an error naming the holder), reads
   * everything, repairs a torn tail, deletes fully released segments, and reports what must be
   * replayed. Never throws because of a torn tail or a damaged record; it reports them.
   */
  open(): Promise<RecoveryReport>;

  /**
   * Appends records and resolves, with one position per record in the same order, only once
   * they are durable (fsynced). Concurrent appends share one write and one sync (group commit).
   * The records of one call are not atomic: after a crash before it resolves, any prefix of
   * them may be recovered. Append the writes of a key in version order: a record appended with
   * a version at or below one already released for its key may come back at the next open
   * (harmless: replay is version-guarded).
   */
  append(records: readonly JournalRecord[]): Promise<JournalPosition[]>;

  /**
   * Declares the records at these positions done: in the database, or kept durably elsewhere
   * (a dead-letter store). Releasing a record also releases every older record (lower version)
   * of the same (collection, key), so the flusher releases the write it flushed and not the
   * writes it coalesced. Released records are not recovered by later opens (releases are
   * recorded lazily: after a crash a few may come back, which replay tolerates), and storage
   * holding only released records is reclaimed. Ignored after `close`.
   */
  release(positions: readonly JournalPosition[]): void;

  /** Counters, for stats and tests. */
  stats(): JournalStats;

  /**
   * Waits for pending appends, records pending releases, closes files and gives up the journal
   * for the next opener. Unreleased records stay for the next `open`. Later appends reject
   * with E_CLOSED.
   */
  close(): Promise<void>;
}
