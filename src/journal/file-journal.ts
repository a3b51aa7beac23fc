/**
 * The file journal: append-only segment files in one directory, for write-back with
 * `durability: 'journal'` (contract 5).
 *
 * - `append` resolves only after the records are written and fdatasync'ed. Group commit: the
 *   appends that arrive while a write+sync runs go out together in the next one, as one write
 *   syscall and one fdatasync, so the sync cost is shared and throughput grows with concurrency.
 * - Segments are `<dir>/segment-<16-digit sequence>.log`, framed records with a CRC-32 each
 *   (format in ./segment-format.ts). The active segment is closed at `segmentBytes` and a new one
 *   started; a closed segment whose records are all released is deleted.
 * - Releases are recorded as marks in the active segment, written lazily: losing a mark in a
 *   crash only means replaying a write the database already holds (replay is idempotent).
 * - `open` reads every segment, cuts off a torn tail of the newest (the trace of a write a crash
 *   cut short, never acknowledged), reports damage elsewhere without throwing, and recovers the
 *   readable records around it.
 * - Memory: a little state per distinct key on disk (./release-index.ts), about 150 bytes
 *   besides the key itself; nothing per record once it is written.
 * - One journal per directory: a LOCK file with the owner's pid (./directory-lock.ts).
 * - Files and directory entries are made durable: the directory is fsynced after creating or
 *   deleting a segment.
 * - After a failed write or sync the journal refuses further appends (the state of the file is
 *   then unknown; retrying an fsync can report success for data that was lost). Closing and
 *   opening it again recovers every acknowledged write that the disk kept.
 */
import * as fs from 'node:fs';
import { mkdir, open as openFile, readdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CachewiseError } from '../errors.js';
import { errorCode, lockDirectory, type DirectoryLock } from './directory-lock.js';
import { checkRecord } from './record-check.js';
import type { DamagedRange, Journal, JournalPosition, JournalRecord, JournalStats, RecoveredRecord, RecoveryReport } from './journal.js';
import { ReleaseIndex, type KeyEntry } from './release-index.js';
import { encodeRecord, encodeReleases, FRAME_HEADER_BYTES, scanSegment } from './segment-format.js';

/** The two file operations on the commit path; replaceable to count or fail them. */
export interface JournalIo {
  /** Writes all of `buffers`, in order, at the end of the file open as `fd`; resolves to the bytes written. */
  writev(fd: number, buffers: readonly Buffer[]): Promise<number>;
  /** Makes the file's written data durable (fdatasync). */
  datasync(fd: number): Promise<void>;
}

export interface FileJournalOptions {
  /**
   * Size in bytes at which the active segment is closed and a new one begun. Smaller segments
   * give disk space and memory back sooner: a segment is deleted only when all its records are
   * released, and until then the journal keeps about 150 bytes per key of it in memory. Larger
   * ones mean fewer files. Default 8 MiB (about 50,000 records of 150 bytes; with 64 MiB the
   * index held some 450,000 keys before the first deletion, and the garbage collector's work on
   * that heap cost durable ingest about 15%).
   */
  segmentBytes?: number;
  /**
   * Extra milliseconds a commit waits to gather more appends before it writes. Default 0:
   * appends that arrive while a sync runs already form the next group, so waiting only adds
   * latency, except on a disk with very slow syncs and a few writers. At most 1000.
   */
  groupCommitMs?: number;
  /** Largest record accepted, in bytes of encoded record; larger ones get E_VALUE_TOO_LARGE. Default 16 MiB. */
  maxRecordBytes?: number;
  /** Replaces the write and the sync of the commit path (tests count calls and inject faults). */
  io?: Partial<JournalIo>;
}

const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
/** Above this many buffers one commit copies them into one (writev takes at most IOV_MAX = 1024). */
const MAX_IOVECS = 1024;
const SEGMENT_NAME = /^segment-(\d{16})\.log$/;

/** Creates a journal on `dir` (created if missing); call `open()` before anything else. */
export function fileJournal(dir: string, options: FileJournalOptions = {}): Journal {
  return new FileJournal(dir, options);
}

/** The JournalPosition of a file journal: which write of which key. */
class FilePosition {
  constructor(
    readonly entry: KeyEntry,
    readonly version: number,
  ) {}
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  size: number;
  /** Queued for deletion. */
  deleting: boolean;
}

/** A group member: the frames of one append, or a sync barrier (no frames). */
interface PendingAppend {
  readonly records: readonly JournalRecord[];
  readonly frames: readonly Buffer[];
  readonly resolve: (positions: JournalPosition[]) => void;
  readonly reject: (error: unknown) => void;
}

interface PendingMark {
  readonly entry: KeyEntry;
}

type Phase = 'new' | 'opening' | 'open' | 'closing' | 'closed';

class FileJournal implements Journal {
  private readonly segmentBytes: number;
  private readonly groupCommitMs: number;
  private readonly maxRecordBytes: number;
  private readonly io: JournalIo;

  private phase: Phase = 'new';
  private lock: DirectoryLock | undefined;
  private fd = -1;
  private active: Segment | undefined;
  /** Bytes written to the active segment since its last sync (release marks only). */
  private unsynced = 0;
  private failure: CachewiseError | undefined;
  private readonly segments = new Map<number, Segment>();
  private readonly index = new ReleaseIndex();
  private appends: PendingAppend[] = [];
  private marks: PendingMark[] = [];
  /** The running commit loop, if any. */
  private loop: Promise<void> | undefined;
  /** Segment deletions, one batch after another. */
  private maintenance: Promise<void> = Promise.resolve();
  /** Segments waiting for the next deletion batch. */
  private toDelete = new Set<Segment>();
  private readonly counters = { appends: 0, records: 0, durableRecords: 0, syncs: 0, bytes: 0, segmentsDeleted: 0 };

  constructor(
    private readonly dir: string,
    options: FileJournalOptions,
  ) {
    this.segmentBytes = integerOption('segmentBytes', options.segmentBytes, DEFAULT_SEGMENT_BYTES, 1, Number.MAX_SAFE_INTEGER);
    this.groupCommitMs = integerOption('groupCommitMs', options.groupCommitMs, 0, 0, 1000);
    this.maxRecordBytes = integerOption('maxRecordBytes', options.maxRecordBytes, DEFAULT_MAX_RECORD_BYTES, 1, 0xffffffff - FRAME_HEADER_BYTES);
    this.io = { ...defaultIo, ...options.io };
  }

  async open(): Promise<RecoveryReport> {
    if (this.phase !== 'new') {
      throw new CachewiseError('E_INVALID_OPTION', `the journal on "${this.dir}" was already opened`, 'call open() once per journal; create a new fileJournal to open the directory again');
    }
    this.phase = 'opening';
    try {
      await this.createDirectory();
      this.lock = await lockDirectory(this.dir);
      const report = await this.recover();
      this.phase = 'open';
      if (this.active!.size >= this.segmentBytes) await this.rotate();
      for (const segment of this.segments.values()) this.deleteIfReleased(segment);
      await this.maintenance;
      return report;
    } catch (error) {
      if (this.fd >= 0) await closeFd(this.fd).catch(() => undefined);
      this.fd = -1;
      await this.lock?.release().catch(() => undefined);
      this.phase = 'closed';
      throw error;
    }
  }

  append(records: readonly JournalRecord[]): Promise<JournalPosition[]> {
    if (this.phase !== 'open') return Promise.reject(this.closedError());
    if (this.failure) return Promise.reject(this.failure);
    let frames: Buffer[];
    try {
      frames = records.map((record) => this.encode(record));
    } catch (error) {
      return Promise.reject(error);
    }
    this.counters.appends++;
    this.counters.records += records.length;
    if (records.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.appends.push({ records: records.slice(), frames, resolve, reject });
      this.schedule();
    });
  }

  release(positions: readonly JournalPosition[]): void {
    if (this.phase !== 'open' && this.phase !== 'closing') return;
    if (!positions.every((position) => position instanceof FilePosition)) {
      throw new CachewiseError('E_INVALID_OPTION', 'release() got a position that no file journal returned', 'pass the positions that append() or open() returned');
    }
    for (const { entry, version } of positions as unknown as readonly FilePosition[]) {
      if (this.index.release(entry, version, this.segmentFreed) && !this.failure) this.queueMark(entry);
    }
    this.schedule();
  }

  stats(): JournalStats {
    return { ...this.counters, segments: this.segments.size };
  }

  async close(): Promise<void> {
    if (this.phase === 'closed' || this.phase === 'new') {
      this.phase = 'closed';
      return;
    }
    if (this.phase === 'closing' || this.phase === 'opening') {
      throw new CachewiseError('E_CLOSED', `the journal on "${this.dir}" is already closing or still opening`, 'await the first open() or close() before calling close()');
    }
    this.phase = 'closing';
    // Deletions may queue marks and commits may queue deletions: settle both.
    for (;;) {
      this.schedule();
      await this.loop;
      const maintenance = this.maintenance;
      await maintenance;
      if (this.loop === undefined && this.appends.length === 0 && this.marks.length === 0 && maintenance === this.maintenance) break;
    }
    if (this.unsynced > 0 && !this.failure) await this.io.datasync(this.fd).catch(() => undefined);
    await closeFd(this.fd).catch(() => undefined);
    this.fd = -1;
    await this.lock?.release();
    this.phase = 'closed';
  }

  // -------------------------------------------------------------------------------------------
  // Commit: group, write, sync, acknowledge.

  /** Starts the commit loop on the next turn of the event loop, unless it runs already. */
  private schedule(): void {
    if (this.loop !== undefined || (this.appends.length === 0 && this.marks.length === 0)) return;
    // setImmediate (not a microtask): every append made in the current turn joins the group.
    this.loop = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.commitLoop())
      .finally(() => {
        this.loop = undefined;
        this.schedule();
      });
  }

  private async commitLoop(): Promise<void> {
    while (this.appends.length > 0 || this.marks.length > 0) {
      if (this.groupCommitMs > 0 && this.appends.length > 0) {
        // A real timer on purpose: a pending durable append must keep the process alive.
        await new Promise((resolve) => setTimeout(resolve, this.groupCommitMs));
      }
      const appends = this.appends;
      const marks = this.marks;
      this.appends = [];
      this.marks = [];
      await this.commit(appends, marks);
    }
  }

  private async commit(appends: PendingAppend[], marks: PendingMark[]): Promise<void> {
    if (this.failure) {
      for (const append of appends) append.reject(this.failure);
      return;
    }
    const segment = this.active!;
    const buffers: Buffer[] = [];
    let bytes = 0;
    let recordCount = 0;
    for (const append of appends) {
      recordCount += append.records.length;
      for (const frame of append.frames) {
        buffers.push(frame);
        bytes += frame.length;
      }
    }
    if (marks.length > 0) {
      // One frame for all of the commit's marks, each at the key's newest release.
      const frame = encodeReleases(marks.map(({ entry }) => ({ collection: entry.collection, key: entry.key, version: entry.released })));
      buffers.push(frame);
      bytes += frame.length;
    }
    try {
      if (bytes > 0) {
        const written = await this.io.writev(this.fd, buffers.length > MAX_IOVECS ? [Buffer.concat(buffers, bytes)] : buffers);
        if (written !== bytes) throw new Error(`short write: ${written} of ${bytes} bytes`);
      }
      if (appends.length > 0) {
        await this.io.datasync(this.fd);
        this.counters.syncs++;
      }
    } catch (error) {
      await this.fail(error, segment, appends);
      return;
    }
    segment.size += bytes;
    this.unsynced = appends.length > 0 ? 0 : this.unsynced + bytes;
    this.counters.bytes += bytes;
    this.counters.durableRecords += recordCount;
    for (const mark of marks) this.index.noteMark(mark.entry, segment.seq);
    for (const append of appends) {
      append.resolve(append.records.map((record) => this.noteRecord(segment, record)));
    }
    // Only records fill a segment: a commit of marks alone (releases, or the marks a deletion
    // carries over) never starts a new one, or carrying marks could go on without end.
    if (recordCount > 0 && segment.size >= this.segmentBytes) await this.rotate();
  }

  /**
   * After a failed write or sync: the appends of the group and every later one are refused.
   * The group's bytes may be partly on disk; cutting them off keeps a refused write from
   * coming back at the next open (best effort: the file may be unwritable by now).
   */
  private async fail(error: unknown, segment: Segment, appends: readonly PendingAppend[]): Promise<void> {
    this.failure = new CachewiseError(
      'E_STORE_FAILED',
      `the journal on "${this.dir}" could not write or sync ${segment.path}: ${error instanceof Error ? error.message : String(error)}; it refuses appends from now on`,
      'check the disk (free space, permissions, health), then close and reopen the journal: recovery keeps every acknowledged write',
      { cause: error, details: { dir: this.dir, segment: segment.path } },
    );
    for (const append of appends) append.reject(this.failure);
    for (const append of this.appends.splice(0)) append.reject(this.failure);
    this.marks = [];
    if (segment === this.active) {
      await truncateFd(this.fd, segment.size).catch(() => undefined);
    }
  }

  private queueMark(entry: KeyEntry): void {
    this.marks.push({ entry });
  }

  /** Accounts a durable record and returns its position. */
  private noteRecord(segment: Segment, record: JournalRecord): JournalPosition {
    const entry = this.index.entry(record.collection, record.key);
    this.index.addRecord(entry, record.version, segment.seq);
    return new FilePosition(entry, record.version) as unknown as JournalPosition;
  }

  private encode(record: JournalRecord): Buffer {
    checkRecord(record);
    const { collection, key } = record;
    const frame = encodeRecord(record);
    if (frame.length - FRAME_HEADER_BYTES > this.maxRecordBytes) {
      throw new CachewiseError(
        'E_VALUE_TOO_LARGE',
        `a journal record of ${frame.length - FRAME_HEADER_BYTES} bytes (collection "${collection}", key "${key}") exceeds maxRecordBytes (${this.maxRecordBytes})`,
        'store smaller values, or raise the journal option maxRecordBytes',
        { details: { collection, key, bytes: frame.length - FRAME_HEADER_BYTES } },
      );
    }
    return frame;
  }

  private closedError(): CachewiseError {
    return this.phase === 'new' || this.phase === 'opening'
      ? new CachewiseError('E_CLOSED', `the journal on "${this.dir}" is not open yet`, 'await journal.open() before appending')
      : new CachewiseError('E_CLOSED', `the journal on "${this.dir}" is closed`, 'open a new journal on the directory; appends after close() are refused');
  }

  // -------------------------------------------------------------------------------------------
  // Segments: rotation and deletion.

  private segmentPath(seq: number): string {
    return join(this.dir, `segment-${String(seq).padStart(16, '0')}.log`);
  }

  /**
   * Continues in a new segment. If that fails (no file descriptors, no space for a directory
   * entry), appends stay in the current segment and the next commit tries again.
   */
  private async rotate(): Promise<void> {
    const previous = this.active!;
    const seq = previous.seq + 1;
    const path = this.segmentPath(seq);
    let fd: number;
    try {
      fd = await openFd(path, 'ax');
    } catch {
      return;
    }
    try {
      await syncDirectory(this.dir);
      if (this.unsynced > 0) await this.io.datasync(this.fd);
    } catch {
      await closeFd(fd).catch(() => undefined);
      await unlink(path).catch(() => undefined);
      return;
    }
    this.unsynced = 0;
    const previousFd = this.fd;
    this.fd = fd;
    this.active = this.addSegment(seq, path, 0);
    await closeFd(previousFd).catch(() => undefined);
    this.deleteIfReleased(previous);
  }

  private addSegment(seq: number, path: string, size: number): Segment {
    const segment: Segment = { seq, path, size, deleting: false };
    this.segments.set(seq, segment);
    return segment;
  }

  private readonly segmentFreed = (seq: number): void => {
    const segment = this.segments.get(seq);
    if (segment !== undefined) this.deleteIfReleased(segment);
  };

  private deleteIfReleased(segment: Segment): void {
    if (this.index.liveIn(segment.seq) > 0 || segment === this.active || segment.deleting) return;
    segment.deleting = true;
    if (this.toDelete.size === 0) this.maintenance = this.maintenance.then(() => this.deleteSegments());
    this.toDelete.add(segment);
  }

  /**
   * Deletes closed segments whose records are all released. Release marks they hold for records
   * in other segments are written again first (and synced), so that those records stay released
   * after a crash.
   */
  private async deleteSegments(): Promise<void> {
    const batch = this.toDelete;
    this.toDelete = new Set();
    if (this.failure || this.fd < 0) return;
    for (const segment of batch) this.segments.delete(segment.seq);
    const remark = await this.index.dropSegments(new Set([...batch].map((segment) => segment.seq)), nextTurn);
    for (const entry of remark) this.queueMark(entry);
    try {
      if (remark.length > 0) await this.barrier();
      for (const segment of batch) {
        await unlink(segment.path).catch((error: unknown) => {
          if (errorCode(error) !== 'ENOENT') throw error;
        });
        this.counters.segmentsDeleted++;
      }
      await syncDirectory(this.dir);
    } catch {
      // Deleting is housekeeping: a segment left behind is read, and deleted, at the next open.
    }
  }

  /** Resolves once everything queued so far is written and synced. */
  private barrier(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.appends.push({ records: [], frames: [], resolve: () => resolve(), reject });
      this.schedule();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Opening: directory, recovery.

  private async createDirectory(): Promise<void> {
    let created: string | undefined;
    try {
      created = await mkdir(this.dir, { recursive: true });
    } catch (error) {
      throw new CachewiseError('E_INVALID_OPTION', `cannot create the journal directory "${this.dir}": ${(error as Error).message}`, 'give the journal a directory the process can create and write', { cause: error, details: { dir: this.dir } });
    }
    if (created !== undefined) await syncDirectory(dirname(created));
  }

  private async recover(): Promise<RecoveryReport> {
    const names = (await readdir(this.dir))
      .map((name) => ({ name, match: SEGMENT_NAME.exec(name) }))
      .filter((entry) => entry.match !== null)
      .map((entry) => ({ path: join(this.dir, entry.name), seq: Number(entry.match![1]) }))
      .sort((a, b) => a.seq - b.seq);
    const newest = new Map<KeyEntry, { record: JournalRecord; seq: number; offset: number }>();
    const corrupt: DamagedRange[] = [];
    let tornTail: DamagedRange | undefined;
    let bytesRead = 0;

    for (const [index, { path, seq }] of names.entries()) {
      const buffer = await readFile(path);
      bytesRead += buffer.length;
      const segment = this.addSegment(seq, path, buffer.length);
      // Replays what the journal did, in append order: the index ends as it was.
      const scan = scanSegment(buffer, (found, offset) => {
        if (found.kind === 'release') {
          const entry = this.index.entry(found.collection, found.key);
          this.index.release(entry, found.version, () => undefined);
          if (entry.released === found.version) this.index.noteMark(entry, seq);
          return;
        }
        const { record } = found;
        const entry = this.index.entry(record.collection, record.key);
        this.index.addRecord(entry, record.version, seq);
        const known = newest.get(entry);
        if (known === undefined || record.version >= known.record.version) newest.set(entry, { record, seq, offset });
      });
      for (const stretch of scan.damaged) corrupt.push({ segment: path, ...stretch });
      if (scan.tail !== undefined) {
        if (index === names.length - 1) {
          tornTail = { segment: path, ...scan.tail };
          await truncateFile(path, scan.tail.offset);
          segment.size = scan.tail.offset;
        } else {
          corrupt.push({ segment: path, ...scan.tail });
        }
      }
    }

    const records: (RecoveredRecord & { seq: number; offset: number })[] = [];
    for (const [entry, { record, seq, offset }] of newest) {
      if (record.version <= entry.released) continue;
      const position = new FilePosition(entry, record.version) as unknown as JournalPosition;
      records.push({ ...record, position, seq, offset });
    }
    records.sort((a, b) => a.seq - b.seq || a.offset - b.offset);

    const last = names[names.length - 1];
    if (last === undefined) {
      const path = this.segmentPath(1);
      this.fd = await openFd(path, 'ax');
      await syncDirectory(this.dir);
      this.active = this.addSegment(1, path, 0);
    } else {
      this.fd = await openFd(last.path, 'a');
      this.active = this.segments.get(last.seq);
    }
    return {
      records: records.map(({ seq: _seq, offset: _offset, ...record }) => record),
      ...(tornTail === undefined ? {} : { tornTail }),
      corrupt,
      segments: names.length,
      bytes: bytesRead,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// File helpers.

const defaultIo: JournalIo = {
  writev: (fd, buffers) =>
    new Promise((resolve, reject) => fs.writev(fd, buffers as Buffer[], (error, written) => (error ? reject(error) : resolve(written)))),
  datasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
};

function openFd(path: string, flags: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, 0o644, (error, fd) => (error ? reject(error) : resolve(fd))));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (error) => (error ? reject(error) : resolve())));
}

function truncateFd(fd: number, size: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, size, (error) => (error ? reject(error) : resolve())));
}

async function truncateFile(path: string, size: number): Promise<void> {
  const handle = await openFile(path, 'r+');
  try {
    await handle.truncate(size);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Makes created, renamed and deleted entries of `dir` durable. */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // directories cannot be opened there; NTFS journals its metadata
  const handle = await openFile(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function integerOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
  throw new CachewiseError(
    'E_INVALID_OPTION',
    `fileJournal option ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value) ?? String(value)}`,
    `pass a whole number in range for ${name}, or leave it out for the default (${fallback})`,
    { details: { option: name, value } },
  );
}
