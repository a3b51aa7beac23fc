/**
 * Write-back (contract 5): the buffer of accepted writes and the flusher that moves them to the
 * database.
 *
 * - Reads see the newest accepted write of a key through `peek` (read-your-writes). Dirty entries
 *   live here, not in the evicting tier, so eviction cannot lose them.
 * - Writes to one key coalesce: only the newest pending version is sent.
 * - Batches go oldest first, at most `maxBatch` writes, at most `concurrency` at once; a key is
 *   never in two batches at once (per-key order). A continuously written key keeps the time it
 *   first became dirty, so it cannot starve behind newer keys.
 * - Transient failures retry with capped exponential backoff and jitter; permanent failures, and
 *   writes past `maxAttempts`, go to the dead letters one entry at a time with the reason.
 * - Pending work is bounded in keys and bytes: past the bound writers wait, then get
 *   E_BACKPRESSURE (or get it at once with onFull: 'reject').
 * - With durability 'journal', a write is appended to the journal (fsynced) before it is queued,
 *   so reads and the cache only ever see durable writes, and `accept` resolves after the fsync.
 *   Its journal position is released once the database holds it (or a newer write of its key).
 *   A write that goes to the dead letters is not released: the journal keeps it, and the next
 *   start replays it. Writes recovered from the journal on start are queued like new ones, with
 *   their own versions (replay is idempotent: the store is version-guarded).
 */
import { decodeValue, type CachedValue } from '../../codec.js';
import { CachewiseError, describeError } from '../../errors.js';
import type { Journal, JournalPosition, JournalRecord, RecoveredRecord } from '../../journal/journal.js';
import type { StoreWrite, WriteOutcome } from '../../stores/store.js';
import { recordMs } from '../../stats.js';
import { commit } from '../commit.js';
import type { CollectionContext } from '../context.js';
import { keepAlive } from '../../util/keep-alive.js';
import { worthRebuilding } from '../../util/worth-rebuilding.js';
import { backoffMs } from './backoff.js';
import type { DeadLetterList } from './dead-letters.js';
import { DirtyOrder, type InOrder } from './dirty-order.js';

/** A write as the application handed it over, before it gets its version. */
export interface IncomingWrite {
  readonly op: 'set' | 'delete';
  readonly key: string;
  /** The value's JSON text, and the value reads are served, parsed when first read (undefined for a delete). */
  readonly data: CachedValue | undefined;
}

/** A write waiting for, or on its way to, the database. */
export interface PendingWrite extends IncomingWrite {
  readonly version: number;
  readonly bytes: number;
  /** When the key became dirty with this or a write it coalesced (ms). */
  firstDirtyAt: number;
  attempts: number;
  /** Not sent again before this time (backoff), ms. */
  notBefore: number;
  /** Put back into the queue after a failure, so out of first-dirty order. */
  requeued: boolean;
  /** Where the journal keeps this write (durability 'journal' or recovered), released once flushed. */
  readonly position?: JournalPosition;
  /**
   * flush() and persisted() calls waiting for this write (or an older write of its key that it
   * replaced) to leave the queue. A write that replaces it in the queue takes them over.
   */
  waiters: FlushWaiter[] | undefined;
}

/** A key in the queue: its write waiting to be sent, and its write in a batch now (either or both). */
interface QueuedKey extends InOrder {
  readonly key: string;
  pending: PendingWrite | undefined;
  inflight: PendingWrite | undefined;
}

/** A flush() or persisted() call. */
interface FlushWaiter {
  /** Called once per write it waits for, when that write leaves the queue (failure: dead-lettered). */
  readonly settled: (w: PendingWrite, failure: string | undefined) => void;
}

interface RoomWaiter {
  readonly wake: () => void;
}

/** Per-entry overhead counted against maxBytes besides the JSON text. */
const ENTRY_OVERHEAD_BYTES = 64;

/** A write that went to the dead letters, as flush() reports it. */
interface Failure {
  readonly key: string;
  readonly version: number;
  readonly reason: string;
}

/** Dead letters kept for the next flush() to list; beyond, only counted. */
const MAX_UNREPORTED = 1000;

/** Failures a flush reports besides those of the writes it waits for: `more` were not kept. */
interface EarlierFailures {
  readonly failed: readonly Failure[];
  readonly more: number;
}

const NONE_EARLIER: EarlierFailures = { failed: [], more: 0 };

export class WriteBackQueue {
  /**
   * Every key with a write waiting or in flight, and keys that had one (both fields undefined):
   * an emptied key is not deleted at once but reused by its next write, and the map is rebuilt
   * from the keys still queued once the empty ones outnumber them four to one (`dropEmptyKeys`).
   * A delete per flushed key cost more than the rest of its bookkeeping: each is a random access
   * into a large table.
   */
  private keys = new Map<string, QueuedKey>();
  /** Keys in `keys` with neither a pending nor an in-flight write. */
  private emptyKeys = 0;
  /** The keys with a write waiting to be sent, in the order they became dirty. */
  private readonly order = new DirtyOrder<QueuedKey>();
  /** The keys of each batch on its way to the database (each with its write in `inflight`). */
  private readonly sending = new Set<readonly QueuedKey[]>();
  private inflightCount = 0;
  /** Keys both in flight and pending again (written while their batch was out). */
  private inBoth = 0;
  private bytes = 0;
  /** Entries put back after a failure sit out of first-dirty order in `order`. */
  private retriedInPending = 0;
  private batchesInFlight = 0;
  private forcing = 0;
  /**
   * Writes that went to the dead letters while no flush() waited for them: the next flush()
   * reports them (it promises every write accepted before it is in the database), then forgets
   * them. At most MAX_UNREPORTED are listed; the rest are counted.
   */
  private unreported: Failure[] = [];
  private unreportedMore = 0;
  private closed = false;
  /** Set when close() has reported: nothing is sent any more. */
  private stopped = false;
  private cancelTimer: (() => void) | undefined;
  private timerAt = Infinity;
  private readonly roomWaiters: RoomWaiter[] = [];
  /**
   * Called when a key's write leaves the queue (in the database, or dead-lettered): a load that
   * started while the write was queued may have read the row before it, so reads that begin
   * from now on must not join that load.
   */
  onLeft: ((key: string) => void) | undefined;
  /** Room taken by writes whose journal append is in flight. */
  private reservedKeys = 0;
  private reservedBytes = 0;

  /** `journal` is where writes go before they are queued (durability 'journal') and where recovered writes are released. */
  constructor(
    private readonly ctx: CollectionContext,
    private readonly deadLetters: DeadLetterList,
    private readonly journal?: Journal,
  ) {}

  /** The newest accepted write of `key` not yet known to be in the database. */
  peek(key: string): PendingWrite | undefined {
    if (this.keys.size === this.emptyKeys) return undefined;
    const queued = this.keys.get(key);
    return queued === undefined ? undefined : (queued.pending ?? queued.inflight);
  }

  /** Keys waiting or in flight (a key in both counts once). */
  get size(): number {
    return this.order.size + this.inflightCount - this.inBoth;
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  oldestDirtyAgeMs(): number {
    let oldest = Infinity;
    for (const w of this.inflightWrites()) oldest = Math.min(oldest, w.firstDirtyAt);
    if (this.retriedInPending === 0) oldest = Math.min(oldest, this.order.first()?.pending?.firstDirtyAt ?? Infinity); // in first-dirty order
    else for (const w of this.pendingWrites()) oldest = Math.min(oldest, w.firstDirtyAt);
    return oldest === Infinity ? 0 : Math.max(0, this.ctx.clock.now() - oldest);
  }

  /**
   * Accepts writes once there is room, gives them their versions, and returns them. Versions are
   * taken after any wait, so a writer that waited never overtakes a newer write of the same key.
   */
  accept(writes: readonly IncomingWrite[]): Promise<PendingWrite[]> {
    // Not async: with room to spare (the common case) a write costs no async frame here.
    try {
      this.assertOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    const need = this.roomNeeded(writes);
    return this.hasRoom(need, false) ? this.admit(writes, need) : this.acceptAfterWaiting(writes);
  }

  /** Waits for room (or refuses the writes, E_BACKPRESSURE), then admits them. */
  private async acceptAfterWaiting(writes: readonly IncomingWrite[]): Promise<PendingWrite[]> {
    const { maxEntries, maxBytes, onFull, waitTimeoutMs } = this.ctx.policy.pending;
    let waitedSince: number | undefined;
    let need: { keys: number; bytes: number };
    for (;;) {
      need = this.roomNeeded(writes);
      if (this.hasRoom(need, waitedSince !== undefined)) break;
      const rejected = onFull === 'reject' || (waitedSince !== undefined && this.ctx.clock.now() - waitedSince >= waitTimeoutMs);
      this.ctx.events.emit('backpressure', { collection: this.ctx.name, pending: this.size, pendingBytes: this.bytes, rejected });
      if (rejected) {
        this.ctx.stats.counters.backpressureRejects++;
        throw new CachewiseError(
          'E_BACKPRESSURE',
          `collection "${this.ctx.name}" has ${this.size} writes (${this.bytes} bytes) waiting for the database, at its bound of ${maxEntries} keys / ${maxBytes} bytes`,
          'slow down writes, let the database catch up (check its health), or raise pending.maxEntries / pending.maxBytes',
          { details: { collection: this.ctx.name, pending: this.size, pendingBytes: this.bytes } },
        );
      }
      if (waitedSince === undefined) {
        waitedSince = this.ctx.clock.now();
        this.ctx.stats.counters.backpressureWaits++;
      }
      await this.waitForRoom(waitTimeoutMs - (this.ctx.clock.now() - waitedSince));
      this.assertOpen();
    }
    return this.admit(writes, need);
  }

  /** Whether writes that `need` this much room fit now; one that has not `waited` also queues behind those waiting. */
  private hasRoom(need: { keys: number; bytes: number }, waited: boolean): boolean {
    const { maxEntries, maxBytes } = this.ctx.policy.pending;
    const keys = this.size + this.reservedKeys;
    const bytes = this.bytes + this.reservedBytes;
    const fits = keys === 0 || (keys + need.keys <= maxEntries && bytes + need.bytes <= maxBytes);
    const queueJump = this.roomWaiters.length > 0 && !waited && (need.keys > 0 || need.bytes > 0);
    return fits && !queueJump;
  }

  /** Gives the writes their versions, journals them (durability 'journal'), then queues them. */
  private admit(writes: readonly IncomingWrite[], need: { keys: number; bytes: number }): Promise<PendingWrite[]> {
    const versions = writes.map(() => this.ctx.versions.next());
    if (this.journal !== undefined && this.ctx.policy.durability === 'journal') {
      return this.appendToJournal(writes, versions, need).then((positions) => this.enqueueAll(writes, versions, positions));
    }
    return Promise.resolve(this.enqueueAll(writes, versions, []));
  }

  private enqueueAll(writes: readonly IncomingWrite[], versions: readonly number[], positions: readonly (JournalPosition | undefined)[]): PendingWrite[] {
    const now = this.ctx.clock.now();
    const accepted = writes.map((write, i) => this.enqueue(write, versions[i] as number, now, positions[i]));
    this.wakeRoomWaiters();
    this.pump();
    return accepted;
  }

  /**
   * Queues writes found in the journal on start (appended, acknowledged, not known to be in the
   * database). They may exceed the pending bound: they were accepted before; new writers wait.
   */
  recover(records: readonly RecoveredRecord[]): void {
    const now = this.ctx.clock.now();
    for (const record of records) {
      let data: CachedValue | undefined;
      if (record.op === 'set') {
        try {
          data = { json: record.json as string, value: decodeValue(record.json as string) };
        } catch (error) {
          // Never queued; it stays in the journal, as dead letters do.
          this.recordDeadLetter({ key: record.key, op: record.op, version: record.version, json: record.json, attempts: 0 }, `the journal holds a value that is not valid JSON: ${describeError(error)}`);
          continue;
        }
      }
      this.enqueue({ op: record.op, key: record.key, data }, record.version, now, record.position);
    }
    this.pump();
  }

  /** Appends the writes (durably) and returns their positions; the room they `need` stays reserved meanwhile. */
  private appendToJournal(writes: readonly IncomingWrite[], versions: readonly number[], need: { keys: number; bytes: number }): Promise<(JournalPosition | undefined)[]> {
    this.reservedKeys += need.keys;
    this.reservedBytes += need.bytes;
    const unreserve = () => {
      this.reservedKeys -= need.keys;
      this.reservedBytes -= need.bytes;
      this.wakeRoomWaiters();
    };
    const records: JournalRecord[] = writes.map((w, i) =>
      w.op === 'set'
        ? { collection: this.ctx.name, op: 'set', key: w.key, version: versions[i] as number, json: w.data!.json }
        : { collection: this.ctx.name, op: 'delete', key: w.key, version: versions[i] as number },
    );
    let appended: Promise<JournalPosition[]>;
    try {
      appended = (this.journal as Journal).append(records);
    } catch (error) {
      appended = Promise.reject(error);
    }
    return appended.then(
      (positions) => {
        unreserve();
        return positions;
      },
      (error: unknown) => {
        unreserve();
        if (error instanceof CachewiseError) throw error;
        throw new CachewiseError(
          'E_STORE_FAILED',
          `the journal of collection "${this.ctx.name}" could not make ${writes.length} write(s) durable: ${describeError(error)}`,
          'nothing was written; check the journal directory (disk space, permissions), then write again',
          { cause: error, details: { collection: this.ctx.name } },
        );
      },
    );
  }

  /**
   * Resolves when every write accepted so far is in the database; rejects with
   * E_FLUSH_INCOMPLETE listing the writes that went to the dead letters (those that went there
   * before the call too, unless an earlier flush() reported them), or E_TIMEOUT.
   */
  async flush(timeoutMs = Infinity): Promise<void> {
    // A key both in flight and pending again is done when its pending write is.
    const writes: PendingWrite[] = [];
    for (const batch of this.sending) for (const queued of batch) if (queued.pending === undefined) writes.push(queued.inflight as PendingWrite);
    for (const w of this.pendingWrites()) writes.push(w);
    await this.waitFor(writes, timeoutMs, true, this.takeUnreported());
  }

  /**
   * Resolves when `key` at `version` (or newer) is in the database; rejects with
   * E_FLUSH_INCOMPLETE when that write went to the dead letters.
   */
  async persisted(key: string, version: number, timeoutMs = Infinity): Promise<void> {
    const current = this.peek(key);
    if (current === undefined || current.version < version) {
      const letter = this.deadLetters.find(this.ctx.name, key, version);
      if (letter === undefined) return;
      this.unreported = this.unreported.filter((f) => f.key !== key || f.version !== letter.version);
      throw new CachewiseError(
        'E_FLUSH_INCOMPLETE',
        `the write of key "${key}" (version ${version}) went to the dead letters: ${letter.reason}`,
        'inspect cache.deadLetters(), fix the data or the database, and write it again',
        { details: { collection: this.ctx.name, failed: [{ key, version, reason: letter.reason }] } },
      );
    }
    // The oldest queued write of the key that is at least `version`.
    const inflight = this.keys.get(key)?.inflight;
    await this.waitFor([inflight !== undefined && inflight.version >= version ? inflight : current], timeoutMs, false);
  }

  /**
   * Stops accepting writes and drains within `deadlineMs`. Returns what could not be flushed
   * (still pending, in flight, or in backoff).
   */
  async close(deadlineMs: number): Promise<PendingWrite[]> {
    this.closed = true;
    for (const waiter of this.roomWaiters.splice(0)) waiter.wake();
    try {
      await this.flush(deadlineMs);
    } catch {
      // reported below from what is left
    }
    // What is left is reported lost (or left to the journal): sending it later would write to a
    // closed store, and dead-letter writes already reported.
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const unflushed = [...this.inflightWrites(), ...this.pendingWrites()];
    const lost = unflushed.filter((w) => w.position === undefined);
    if (lost.length > 0) {
      this.ctx.stats.counters.lostWrites += lost.length;
      this.ctx.events.emit('writes-lost', { collection: this.ctx.name, count: lost.length, keys: lost.map((w) => w.key) });
    }
    return unflushed;
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new CachewiseError('E_CLOSED', `collection "${this.ctx.name}" is closed`, 'create a new cache; writes after close() are refused');
    }
  }

  private roomNeeded(writes: readonly IncomingWrite[]): { keys: number; bytes: number } {
    let keys = 0;
    let bytes = 0;
    for (const write of writes) {
      const queued = this.keys.get(write.key);
      if (queued === undefined || isEmpty(queued)) keys++;
      bytes += sizeOf(write) - (queued?.pending?.bytes ?? 0);
    }
    return { keys, bytes };
  }

  private enqueue(write: IncomingWrite, version: number, now: number, position: JournalPosition | undefined): PendingWrite {
    let queued = this.keys.get(write.key);
    const old = queued?.pending;
    const entry: PendingWrite = {
      op: write.op,
      key: write.key,
      data: write.data,
      version,
      bytes: sizeOf(write),
      firstDirtyAt: old?.firstDirtyAt ?? now,
      attempts: 0, // a new value gets its own attempts; it still waits out the key's backoff
      notBefore: old?.notBefore ?? 0,
      requeued: old?.requeued ?? false,
      position,
      waiters: undefined,
    };
    const newest = Math.max(old?.version ?? 0, queued?.inflight?.version ?? 0);
    if (newest > version) {
      // A newer write of the key was queued first (its journal append finished sooner): it
      // carries the whole value, so this one is done.
      if (position !== undefined) this.journal?.release([position]);
      return entry;
    }
    if (queued === undefined) this.keys.set(write.key, (queued = { key: write.key, pending: undefined, inflight: undefined, slot: -1 }));
    else if (isEmpty(queued)) this.emptyKeys--;
    if (old !== undefined) {
      // The key keeps its place: it stays where it first became dirty.
      this.bytes -= old.bytes;
      entry.waiters = old.waiters; // what waited for the replaced write waits for this one
    } else {
      if (queued.inflight !== undefined) this.inBoth++;
      this.order.push(queued);
    }
    queued.pending = entry;
    this.bytes += entry.bytes;
    return entry;
  }

  private waitForRoom(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const release = keepAlive();
      const cancel = this.ctx.clock.setTimer(() => wake(), Math.max(0, timeoutMs));
      const waiter: RoomWaiter = { wake: () => wake() };
      const wake = () => {
        cancel();
        release();
        const index = this.roomWaiters.indexOf(waiter);
        if (index >= 0) this.roomWaiters.splice(index, 1);
        resolve();
      };
      this.roomWaiters.push(waiter);
    });
  }

  private wakeRoomWaiters(): void {
    // Waiters re-check the room themselves, in the order they came.
    const { maxEntries, maxBytes } = this.ctx.policy.pending;
    if (this.size < maxEntries && this.bytes < maxBytes) this.roomWaiters[0]?.wake();
  }

  /** Resolves when every write of `writes` (or one that replaced it) has left the queue. */
  private waitFor(writes: readonly PendingWrite[], timeoutMs: number, force: boolean, earlier = NONE_EARLIER): Promise<void> {
    if (writes.length === 0) return earlier.failed.length === 0 ? Promise.resolve() : Promise.reject(this.incomplete(earlier.failed, earlier.more));
    if (this.stopped) {
      return Promise.reject(
        new CachewiseError('E_CLOSED', `collection "${this.ctx.name}" is closed; ${writes.length} write(s) were not flushed`, 'close() reported them; write them again on a new cache', {
          details: { collection: this.ctx.name, keys: writes.map((w) => w.key) },
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      let cancelTimeout: (() => void) | undefined;
      let finished = false;
      let remaining = writes.length;
      const failed: Failure[] = [...earlier.failed];
      const release = keepAlive();
      const finish = (error?: Error) => {
        finished = true;
        cancelTimeout?.();
        release();
        if (force) this.forcing--;
        if (error) reject(error);
        else resolve();
      };
      const waiter: FlushWaiter = {
        settled: (w, failure) => {
          if (finished) return;
          if (failure !== undefined) failed.push({ key: w.key, version: w.version, reason: failure });
          if (--remaining > 0) return;
          if (failed.length === 0) return finish();
          finish(this.incomplete(failed, earlier.more));
        },
      };
      for (const w of writes) {
        if (w.waiters === undefined) w.waiters = [waiter];
        else w.waiters.push(waiter);
      }
      if (force) this.forcing++;
      if (Number.isFinite(timeoutMs)) {
        cancelTimeout = this.ctx.clock.setTimer(() => {
          const keys = this.keysAwaitedBy(waiter);
          finish(
            new CachewiseError(
              'E_TIMEOUT',
              `flush of collection "${this.ctx.name}" did not finish within ${timeoutMs} ms; ${keys.length} key(s) still dirty`,
              'wait longer, or check the database (stats().oldestDirtyAgeMs and the flush-retry events tell why)',
              { details: { collection: this.ctx.name, keys } },
            ),
          );
        }, timeoutMs);
      }
      this.pump();
    });
  }

  /**
   * Rebuilds `keys` from the keys still queued (the order and the batches out) once the emptied
   * keys outnumber them enough (worthRebuilding): the work is a small multiple of the keys
   * emptied meanwhile.
   */
  private dropEmptyKeys(): void {
    const queued = this.keys.size - this.emptyKeys;
    if (!worthRebuilding(this.emptyKeys, queued)) return;
    const kept = new Map<string, QueuedKey>();
    if (queued > 0) {
      for (const member of this.order.values()) kept.set(member.key, member);
      for (const batch of this.sending) for (const member of batch) kept.set(member.key, member);
    }
    this.keys = kept;
    this.emptyKeys = 0;
  }

  /** The writes in batches on their way to the database. */
  private *inflightWrites(): Generator<PendingWrite, void, undefined> {
    for (const batch of this.sending) for (const queued of batch) yield queued.inflight as PendingWrite;
  }

  /** The writes waiting to be sent, in first-dirty order. */
  private *pendingWrites(): Generator<PendingWrite, void, undefined> {
    for (const queued of this.order.values()) yield queued.pending as PendingWrite;
  }

  /** Keys of the queued writes that `waiter` still waits for. */
  private keysAwaitedBy(waiter: FlushWaiter): string[] {
    const keys = new Set<string>();
    for (const w of this.inflightWrites()) if (w.waiters?.includes(waiter)) keys.add(w.key);
    for (const w of this.pendingWrites()) if (w.waiters?.includes(waiter)) keys.add(w.key);
    return [...keys];
  }

  /** Tells the waiters of `w` that it left the queue (failure: it went to the dead letters). */
  private settle(w: PendingWrite, failure?: string): void {
    const waiters = w.waiters;
    if (waiters === undefined) {
      if (failure !== undefined) this.keepUnreported({ key: w.key, version: w.version, reason: failure });
      return;
    }
    w.waiters = undefined;
    for (const waiter of waiters) waiter.settled(w, failure);
  }

  /** Starts every batch that is due, up to the concurrency, and arms the timer for the next. */
  private pump(): void {
    if (this.stopped) return;
    const now = this.ctx.clock.now();
    while (this.batchesInFlight < this.ctx.policy.flush.concurrency) {
      const batch = this.takeDueBatch(now);
      if (batch.length === 0) break;
      this.batchesInFlight++;
      let freed = false;
      const free = () => {
        if (freed) return;
        freed = true;
        this.batchesInFlight--;
        this.pump();
      };
      // Once its entries are handled, pump again: failed ones are back in the queue, with a retry time.
      void this.send(batch, free).finally(() => {
        free();
        this.pump();
      });
    }
    this.armTimer(now);
  }

  private takeDueBatch(now: number): QueuedKey[] {
    const { maxBatch, maxDelayMs } = this.ctx.policy.flush;
    if (this.forcing === 0 && !this.closed && this.retriedInPending === 0 && this.order.size < maxBatch) {
      // In first-dirty order the first entry is the oldest: if it is not due, and the rest cannot
      // fill a batch, nothing is due. Keeps accept() O(1) while a batch gathers.
      const first = this.order.first()?.pending;
      if (first === undefined || first.firstDirtyAt + maxDelayMs > now) return [];
    }
    let eligible: QueuedKey[] = [];
    for (const queued of this.order.values()) {
      if ((queued.pending as PendingWrite).notBefore > now || queued.inflight !== undefined) continue;
      eligible.push(queued);
      if (eligible.length >= maxBatch && this.retriedInPending === 0) break;
    }
    if (eligible.length === 0) return [];
    if (eligible.length > maxBatch) eligible = eligible.sort((a, b) => (a.pending as PendingWrite).firstDirtyAt - (b.pending as PendingWrite).firstDirtyAt).slice(0, maxBatch);
    const oldest = eligible.reduce((min, queued) => Math.min(min, (queued.pending as PendingWrite).firstDirtyAt), Infinity);
    const due = this.forcing > 0 || this.closed || eligible.length >= maxBatch || oldest + maxDelayMs <= now;
    if (!due) return [];
    for (const queued of eligible) {
      const w = queued.pending as PendingWrite;
      this.order.remove(queued);
      queued.pending = undefined;
      queued.inflight = w;
      if (w.requeued) {
        w.requeued = false;
        this.retriedInPending--;
      }
    }
    this.inflightCount += eligible.length;
    return eligible;
  }

  private armTimer(now: number): void {
    if (this.order.size === 0 || this.batchesInFlight >= this.ctx.policy.flush.concurrency) return;
    let at = Infinity;
    for (const queued of this.order.values()) {
      if (queued.inflight !== undefined) continue;
      const w = queued.pending as PendingWrite;
      at = Math.min(at, Math.max(w.notBefore, this.forcing > 0 || this.closed ? now : w.firstDirtyAt + this.ctx.policy.flush.maxDelayMs));
      if (this.retriedInPending === 0) break; // in first-dirty order: the first is the earliest
    }
    if (at === Infinity || at >= this.timerAt) return;
    this.cancelTimer?.();
    this.timerAt = at;
    this.cancelTimer = this.ctx.clock.setTimer(() => {
      this.cancelTimer = undefined;
      this.timerAt = Infinity;
      this.pump();
    }, Math.max(0, at - now));
  }

  /**
   * Commits `batch` and settles its entries. `free` is called as soon as the database answered,
   * before the outcomes are handled: the next batch is sent first (a store that hands batches to
   * another thread, as sqliteStore does, then works on it meanwhile).
   */
  private async send(batch: readonly QueuedKey[], free: () => void): Promise<void> {
    this.sending.add(batch);
    const writes: StoreWrite[] = batch.map(({ inflight }) => {
      const w = inflight as PendingWrite;
      return w.op === 'set' ? { op: 'set', key: w.key, version: w.version, json: w.data!.json } : { op: 'delete', key: w.key, version: w.version };
    });
    // Read before the commit: the cache writes after it are refused if the tier lost its memory meanwhile.
    const generation = this.ctx.tier.generation?.();
    const outcomes = await commit(this.ctx, writes);
    this.sending.delete(batch);
    free();
    const released: JournalPosition[] = [];
    let retryError: unknown;
    let retryAttempt = 0;
    let retryDelay = 0;
    let retried = 0;
    // One jitter draw per batch: entries that failed together retry together, as one batch,
    // instead of splitting into many small retries that keep a failing database busy.
    const jitter = Math.random();
    this.inflightCount -= batch.length;
    batch.forEach((queued, i) => {
      const w = queued.inflight as PendingWrite;
      const outcome = outcomes[i] as WriteOutcome;
      queued.inflight = undefined;
      if (queued.pending !== undefined) this.inBoth--;
      if (outcome.status === 'applied' || outcome.status === 'superseded') {
        if (w.position !== undefined) released.push(w.position);
        this.persistedOne(w, queued, outcome.status === 'applied', generation);
      } else if (outcome.status === 'failed' && outcome.permanent) {
        this.deadLetter(w, queued, describeError(outcome.error));
      } else {
        w.attempts++;
        if (w.attempts >= this.ctx.policy.retry.maxAttempts) {
          this.deadLetter(w, queued, `gave up after ${w.attempts} attempts: ${describeError(outcome.error)}`);
        } else if (queued.pending !== undefined) {
          this.dropSuperseded(w, queued.pending); // a newer write of the key is queued; it carries the whole value
        } else {
          const { baseDelayMs, maxDelayMs } = this.ctx.policy.retry;
          const delay = backoffMs(w.attempts, baseDelayMs, maxDelayMs, () => jitter);
          w.notBefore = this.ctx.clock.now() + delay;
          w.requeued = true;
          queued.pending = w;
          this.order.push(queued);
          this.retriedInPending++;
          this.ctx.stats.counters.retries++;
          retried++;
          retryError = outcome.error;
          retryAttempt = Math.max(retryAttempt, w.attempts);
          retryDelay = Math.max(retryDelay, delay);
        }
      }
      if (isEmpty(queued)) this.emptyKeys++;
    });
    this.dropEmptyKeys();
    // Releasing a write releases the older writes of its key in the journal, never newer ones.
    if (released.length > 0) this.journal?.release(released);
    if (retried > 0) {
      this.ctx.events.emit('flush-retry', { collection: this.ctx.name, keys: retried, attempt: retryAttempt, delayMs: retryDelay, error: retryError });
    }
    this.wakeRoomWaiters();
  }

  private persistedOne(w: PendingWrite, queued: QueuedKey, applied: boolean, generation: unknown): void {
    this.bytes -= w.bytes;
    this.onLeft?.(w.key);
    recordMs(this.ctx.stats.flushLag, this.ctx.clock.now() - w.firstDirtyAt);
    if (this.ctx.tier.capabilities.shared && queued.pending === undefined) {
      // Another process may have missed while the write was dirty, taken a lease and read the
      // old row: write again to revoke it. A superseded write tombstones its own version (the
      // database holds a newer one). In this process a dirty key never misses (reads see the
      // queue first), so a private tier already holds what the write cached when accepted.
      void (applied && w.op === 'set' ? this.ctx.cacheWrite(w.key, this.ctx.valueEntry(w.data!, w.version), generation) : this.ctx.protect(w.key, w.version));
    }
    this.settle(w);
  }

  /** Drops failed `w`: a newer write of its key is queued, and takes over its waiters. */
  private dropSuperseded(w: PendingWrite, newer: PendingWrite): void {
    this.bytes -= w.bytes;
    if (w.waiters !== undefined) newer.waiters = newer.waiters === undefined ? w.waiters : [...newer.waiters, ...w.waiters];
    w.waiters = undefined;
  }

  private deadLetter(w: PendingWrite, queued: QueuedKey, reason: string): void {
    this.bytes -= w.bytes;
    this.onLeft?.(w.key);
    this.recordDeadLetter({ ...w, json: w.data?.json }, reason);
    if (queued.pending === undefined) {
      // The cache must not keep serving a value the database will never hold.
      void this.ctx
        .callTier('remove', w.key, () => this.ctx.tier.remove(this.ctx.tierKey(w.key), w.version))
        .catch(() => this.ctx.protect(w.key, undefined));
    }
    this.settle(w, reason);
  }

  private keepUnreported(failure: Failure): void {
    if (this.unreported.length < MAX_UNREPORTED) this.unreported.push(failure);
    else this.unreportedMore++;
  }

  /** The unreported dead letters, handed to a flush (which reports them) and forgotten. */
  private takeUnreported(): EarlierFailures {
    if (this.unreported.length === 0) return NONE_EARLIER;
    const earlier = { failed: this.unreported, more: this.unreportedMore };
    this.unreported = [];
    this.unreportedMore = 0;
    return earlier;
  }

  /** E_FLUSH_INCOMPLETE for writes that went to the dead letters (`more`: others not listed). */
  private incomplete(failed: readonly Failure[], more: number): CachewiseError {
    const total = failed.length + more;
    const shown = failed.slice(0, 5).map((f) => `"${f.key}" (${f.reason})`);
    if (total > 5) shown.push(`${total - 5} more`);
    return new CachewiseError(
      'E_FLUSH_INCOMPLETE',
      `${total} write(s) of collection "${this.ctx.name}" could not be written to the database and went to the dead letters: ${shown.join(', ')}`,
      'inspect cache.deadLetters() for the reasons, fix the data or the database, and write them again',
      { details: { collection: this.ctx.name, failed, ...(more > 0 ? { notListed: more } : {}) } },
    );
  }

  /** Counts, keeps and reports a write that will not reach the database. */
  private recordDeadLetter(w: Pick<PendingWrite, 'key' | 'op' | 'version' | 'attempts'> & { readonly json: string | undefined }, reason: string): void {
    this.ctx.stats.counters.deadLetters++;
    this.deadLetters.add({ collection: this.ctx.name, key: w.key, op: w.op, version: w.version, json: w.json, reason, attempts: w.attempts, at: this.ctx.clock.now() });
    this.ctx.events.emit('dead-letter', { collection: this.ctx.name, key: w.key, version: w.version, reason, attempts: w.attempts });
  }
}

/** A key whose writes all left the queue: kept in `keys` for reuse until the next rebuild. */
function isEmpty(queued: QueuedKey): boolean {
  return queued.pending === undefined && queued.inflight === undefined;
}

function sizeOf(write: IncomingWrite): number {
  return (write.data?.json.length ?? 0) + write.key.length + ENTRY_OVERHEAD_BYTES;
}
