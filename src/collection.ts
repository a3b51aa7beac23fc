/**
 * A typed handle on one kind of data. It validates input (contract 9), then hands each call to
 * its policy's read path and write pattern. One policy per collection (contract 8).
 */
import { encodedValue } from './codec.js';
import { CachewiseError } from './errors.js';
import { assertKey } from './keys.js';
import type { CollectionContext } from './patterns/context.js';
import { CacheAside, type FillLease, type LookupResult } from './patterns/cache-aside.js';
import { DatabaseFirstWriter } from './patterns/database-first.js';
import { ReadPath } from './patterns/read-path.js';
import type { DeadLetter, DeadLetterList } from './patterns/write-back/dead-letters.js';
import { WriteBackQueue, type IncomingWrite } from './patterns/write-back/write-back-queue.js';
import { WriteBackWriter } from './patterns/write-back/write-back-writer.js';
import { writeAroundStep } from './patterns/write-around.js';
import { writeThroughStep } from './patterns/write-through.js';
import type { UnflushedWrite, WriteResult, Writer } from './patterns/writer.js';
import type { ResolvedPolicy } from './policy.js';
import type { CollectionStatsSnapshot } from './stats.js';
import { toMs, type Duration } from './duration.js';
import type { Once } from './util/once.js';
import type { Journal, RecoveredRecord } from './journal/journal.js';

export type { FillLease, LookupResult, WriteResult };

export class Collection<T> {
  private readonly reads: ReadPath;
  private readonly writer: Writer;
  private readonly queue: WriteBackQueue | undefined;
  private readonly aside: CacheAside;
  /** Flushes journal records recovered for a collection that does not write back. */
  private replay: WriteBackQueue | undefined;
  private closed = false;

  /** @internal Created by Cache.collection(). */
  constructor(
    private readonly ctx: CollectionContext,
    private readonly deadLetterList: DeadLetterList,
    private readonly preparation: Once,
    private readonly journal?: Journal,
  ) {
    this.queue = ctx.policy.write === 'back' ? new WriteBackQueue(ctx, deadLetterList, journal) : undefined;
    this.reads = new ReadPath(ctx, this.queue);
    const onWritten = (key: string) => this.reads.flights.detach(key);
    if (this.queue !== undefined) this.queue.onLeft = onWritten;
    this.writer =
      this.queue !== undefined
        ? new WriteBackWriter(ctx, this.queue, onWritten)
        : new DatabaseFirstWriter(ctx, ctx.policy.write === 'through' ? writeThroughStep : writeAroundStep, onWritten);
    this.aside = new CacheAside(ctx, this.reads);
  }

  get name(): string {
    return this.ctx.name;
  }

  get policy(): ResolvedPolicy {
    return this.ctx.policy;
  }

  /**
   * The value of `key`, or undefined. Read-through loads a miss from the database (one load per
   * key at a time); cache-aside only looks in the cache. Values are deeply frozen.
   */
  get(key: string): Promise<T | undefined> {
    // Not async (an async function that returns the read's promise adds a promise and two
    // microtasks to a hit on a remote tier), but it never throws: errors reject.
    try {
      assertKey(key);
      if (!this.preparation.ready) return this.preparation.wait().then(() => this.read(key));
      return this.read(key);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private read(key: string): Promise<T | undefined> {
    const value = this.ctx.policy.read === 'through' ? this.reads.get(key) : this.lookupValue(key);
    // Values are frozen JSON data, never promises: a promise here is the pending read.
    return (value instanceof Promise ? value : Promise.resolve(value)) as Promise<T | undefined>;
  }

  /** Values of `keys`, in order; misses are loaded in one database batch (read-through). */
  async getMany(keys: readonly string[]): Promise<(T | undefined)[]> {
    assertKeys(keys);
    if (!this.preparation.ready) await this.preparation.wait();
    if (this.ctx.policy.read === 'through') return (await this.reads.getMany(keys)) as (T | undefined)[];
    return Promise.all(keys.map((key) => this.lookupValue(key) as Promise<T | undefined>));
  }

  /** Writes `value` under the collection's write pattern. Resolves to the write's version. */
  async set(key: string, value: T): Promise<WriteResult> {
    const write = this.incoming(key, value);
    if (!this.preparation.ready) await this.preparation.wait();
    this.assertOpen();
    const [result] = await this.writer.write([write]);
    return result!;
  }

  /**
   * Writes many entries. Everything is validated first: one bad entry rejects the call and
   * nothing is written. Then each entry commits or fails on its own; the error names the keys.
   */
  async setMany(entries: Iterable<readonly [string, T]>): Promise<WriteResult[]> {
    const writes = [...entries].map((entry) => {
      if (!Array.isArray(entry) || entry.length !== 2) {
        throw new CachewiseError('E_INVALID_OPTION', 'setMany takes [key, value] pairs', 'pass an array of [key, value] or a Map');
      }
      return this.incoming(entry[0] as string, entry[1] as T);
    });
    assertDistinct(writes);
    if (!this.preparation.ready) await this.preparation.wait();
    this.assertOpen();
    return writes.length === 0 ? [] : this.writer.write(writes);
  }

  /** Deletes `key` from the database under the write pattern (a versioned delete). */
  async delete(key: string): Promise<WriteResult> {
    assertKey(key);
    if (!this.preparation.ready) await this.preparation.wait();
    this.assertOpen();
    const [result] = await this.writer.write([{ op: 'delete', key, data: undefined }]);
    return result!;
  }

  /** Drops the cached copy of `key` (the database is unchanged); loads in flight cannot refill it. */
  async invalidate(key: string): Promise<void> {
    assertKey(key);
    if (!this.preparation.ready) await this.preparation.wait();
    this.reads.flights.detach(key);
    await this.ctx.protect(key, undefined);
  }

  /** Resolves when every write accepted so far is in the database (immediate unless write-back). */
  async flush(options: { timeout?: Duration } = {}): Promise<void> {
    const timeoutMs = options.timeout === undefined ? Infinity : toMs(options.timeout, 'timeout');
    if (!this.preparation.ready) await this.preparation.wait();
    await this.writer.flush(timeoutMs);
  }

  /** Resolves when the write `result` (or a newer write of its key) is in the database. */
  async persisted(result: WriteResult, options: { timeout?: Duration } = {}): Promise<void> {
    if (typeof result !== 'object' || result === null || typeof result.version !== 'number') {
      throw new CachewiseError('E_INVALID_OPTION', 'persisted() takes the result of set() or delete()', 'pass the object that set() resolved to');
    }
    assertKey(result.key);
    const timeoutMs = options.timeout === undefined ? Infinity : toMs(options.timeout, 'timeout');
    await this.writer.persisted(result.key, result.version, timeoutMs);
  }

  /** Cache-aside: a hit, or a miss with the lease that fill() needs. */
  async lookup(key: string): Promise<LookupResult<T>> {
    assertKey(key);
    this.assertAside('lookup');
    if (!this.preparation.ready) await this.preparation.wait();
    return this.aside.lookup(key) as Promise<LookupResult<T>>;
  }

  /**
   * Cache-aside: caches a value the application loaded after lookup() missed. Resolves to false
   * (and caches nothing) when the key was written or invalidated since the miss.
   */
  async fill(key: string, value: T | undefined, lease: FillLease): Promise<boolean> {
    assertKey(key);
    this.assertAside('fill');
    if (!this.preparation.ready) await this.preparation.wait();
    return this.aside.fill(key, value, lease);
  }

  /** Cache-aside: the cached value, or `loader(key)`'s, filled under a lease; one loader call per key at a time. */
  async getOrLoad(key: string, loader: (key: string) => Promise<T | undefined> | T | undefined): Promise<T | undefined> {
    assertKey(key);
    this.assertAside('getOrLoad');
    if (!this.preparation.ready) await this.preparation.wait();
    return this.aside.getOrLoad(key, loader) as Promise<T | undefined>;
  }

  /** Counters and latencies of this collection. */
  stats(): CollectionStatsSnapshot {
    return this.ctx.stats.snapshot({
      pending: this.queue?.size ?? 0,
      pendingBytes: this.queue?.pendingBytes ?? 0,
      oldestDirtyAgeMs: this.queue?.oldestDirtyAgeMs() ?? 0,
    });
  }

  /** Write-back writes of this collection that went to the dead letters. */
  deadLetters(): readonly DeadLetter[] {
    return this.deadLetterList.list(this.ctx.name);
  }

  /**
   * @internal Replays writes the journal kept from an earlier run. A write-back collection queues
   * them (reads see them at once); any other collection writes them to the database before its
   * first operation, so it never serves a row older than an acknowledged write.
   */
  async recover(records: readonly RecoveredRecord[]): Promise<void> {
    if (this.queue !== undefined) {
      this.queue.recover(records);
      return;
    }
    if (records.length > 0) {
      this.replay ??= new WriteBackQueue(this.ctx, this.deadLetterList, this.journal);
      this.replay.recover(records);
    }
    await this.replay?.flush(this.ctx.policy.storeTimeoutMs);
  }

  /** @internal Replays writes taken over from a dead instance, once the collection is prepared. */
  async replayClaimed(records: readonly RecoveredRecord[]): Promise<void> {
    await this.preparation.wait();
    await this.recover(records);
  }

  /** @internal Stops accepting writes and drains within the deadline. */
  async close(deadlineMs: number): Promise<UnflushedWrite[]> {
    this.closed = true;
    try {
      const unflushed = await this.writer.close(deadlineMs);
      const notReplayed = (await this.replay?.close(deadlineMs)) ?? [];
      return [...unflushed, ...notReplayed.map((w) => ({ key: w.key, version: w.version, op: w.op, journaled: w.position !== undefined }))];
    } finally {
      this.ctx.stop();
    }
  }

  private async lookupValue(key: string): Promise<unknown> {
    const cached = await this.reads.cached(key);
    return cached.state === 'miss' ? undefined : cached.value;
  }

  private incoming(key: string, value: T): IncomingWrite {
    assertKey(key);
    const data = encodedValue(value, this.ctx.policy.maxValueBytes);
    return { op: 'set', key, data };
  }

  private assertOpen(): void {
    if (this.closed) throw new CachewiseError('E_CLOSED', `collection "${this.ctx.name}" is closed`, 'create a new cache; writes after close() are refused');
  }

  private assertAside(method: string): void {
    if (this.ctx.policy.read !== 'aside') {
      throw new CachewiseError(
        'E_WRONG_PATTERN',
        `${method}() is for cache-aside collections; "${this.ctx.name}" reads through`,
        "call get(key), which loads misses itself, or declare the collection with read: 'aside'",
      );
    }
  }
}

function assertKeys(keys: unknown): asserts keys is readonly string[] {
  if (!Array.isArray(keys)) throw new CachewiseError('E_INVALID_KEY', 'getMany takes an array of keys', 'pass an array of strings');
  for (const key of keys) assertKey(key);
}

function assertDistinct(writes: readonly IncomingWrite[]): void {
  const seen = new Set<string>();
  for (const write of writes) {
    if (seen.has(write.key)) {
      throw new CachewiseError('E_INVALID_KEY', `setMany got key "${write.key}" twice`, 'pass each key once (the last value would win anyway)');
    }
    seen.add(write.key);
  }
}
