/**
 * Passes every call through to a real store and watches the write batches: when each was sent
 * (by the cache's clock), which keys and versions it held, how many were in flight at once, and
 * whether a key was sent again while an earlier batch holding it had not answered yet.
 */
import type { Clock } from '../../src/clock.js';
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../src/stores/store.js';

export interface ProbedBatch {
  /** Clock time the batch was sent. */
  readonly at: number;
  readonly writes: readonly StoreWrite[];
}

export class StoreProbe implements Store {
  readonly kind: string;
  readonly versioned: boolean;
  /** Every batch sent, in the order it was sent. */
  readonly batches: ProbedBatch[] = [];
  /** Keys sent while an earlier batch holding the same key was still in flight. */
  readonly overlaps: string[] = [];
  /** Most batches in flight at the same time. */
  maxConcurrent = 0;
  private concurrent = 0;
  private readonly inFlight = new Set<string>();

  constructor(
    readonly inner: Store,
    private readonly clock: Clock,
  ) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }

  load(collection: string, key: string): Promise<StoreRecord | undefined> {
    return this.inner.load(collection, key);
  }

  loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    return this.inner.loadMany(collection, keys);
  }

  async write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    this.batches.push({ at: this.clock.now(), writes: [...writes] });
    for (const w of writes) {
      if (this.inFlight.has(w.key)) this.overlaps.push(w.key);
      this.inFlight.add(w.key);
    }
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      return await this.inner.write(collection, writes);
    } finally {
      this.concurrent--;
      for (const w of writes) this.inFlight.delete(w.key);
    }
  }

  maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : Promise.resolve(0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Clock times at which a batch holding `key` was sent. */
  sendTimes(key: string): number[] {
    return this.batches.filter((b) => b.writes.some((w) => w.key === key)).map((b) => b.at);
  }
}
