/** What every write pattern offers a collection. */
import type { IncomingWrite } from './write-back/write-back-queue.js';

/** The outcome of an accepted write: its key and the version it was given. */
export interface WriteResult {
  readonly key: string;
  readonly version: number;
}

/** A write not flushed when the cache closed. */
export interface UnflushedWrite {
  readonly key: string;
  readonly version: number;
  readonly op: 'set' | 'delete';
  /** Kept in the journal: the next start replays it (durability 'journal'). Otherwise it is lost. */
  readonly journaled: boolean;
}

export interface Writer {
  /** Applies the writes under the pattern's contract; all or each rejected with a typed error. */
  write(writes: readonly IncomingWrite[]): Promise<WriteResult[]>;
  /** Resolves when everything accepted so far is in the database. */
  flush(timeoutMs: number): Promise<void>;
  /** Resolves when the write `version` of `key` (or a newer one) is in the database. */
  persisted(key: string, version: number, timeoutMs: number): Promise<void>;
  /** Stops and drains; returns what could not be flushed. */
  close(deadlineMs: number): Promise<UnflushedWrite[]>;
}
