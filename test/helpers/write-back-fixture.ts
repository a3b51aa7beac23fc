/**
 * A write-back collection over a real SQLite file (behind a FaultyStore) and the real memory
 * tier, driven by a ManualClock. Layers: cache -> StoreProbe -> FaultyStore -> SQLite. The flush timer, backoff and backpressure waits follow the
 * clock; the store's own I/O stays real, so `settle()` lets it finish after the clock moves.
 */
import { ManualClock } from '../../src/clock.js';
import { createCache, type Cache, type CloseReport } from '../../src/cache.js';
import type { Collection } from '../../src/collection.js';
import type { CollectionPolicy } from '../../src/policy.js';
import { sqliteStore } from '../../src/stores/sqlite-store.js';
import type { StoreRecord } from '../../src/stores/store.js';
import type { Duration } from '../../src/duration.js';
import { memoryTier } from '../../src/tiers/memory-tier.js';
import { FaultyStore } from './faulty-store.js';
import { tempSqlite } from './sqlite.js';
import { StoreProbe } from './store-probe.js';

export const COLLECTION = 'items';

export interface WriteBackFixture<T> {
  readonly cache: Cache;
  readonly items: Collection<T>;
  /** The fault injector in front of the real SQLite store. */
  readonly store: FaultyStore;
  /** Sits between the cache and the fault injector: sees every batch the cache sends. */
  readonly probe: StoreProbe;
  readonly clock: ManualClock;
  /** The SQLite file. */
  readonly file: string;
  /** The row of `key` as the database holds it now (bypassing the cache and the faults). */
  row(key: string): Promise<StoreRecord | undefined>;
  /** The decoded value of `key` in the database (undefined for no row or a delete marker). */
  dbValue(key: string): Promise<T | undefined>;
  /** Lets real I/O (the store's promises) run after the clock moved. */
  settle(): Promise<void>;
  /** Advances the clock `ms` in steps of `stepMs`, letting I/O finish after each step. */
  advance(ms: number, stepMs?: number): Promise<void>;
  /** Advances the clock step by step until `promise` settles (or `maxMs` of clock time pass). */
  driveUntil<R>(promise: Promise<R>, options?: { stepMs?: number; maxMs?: number }): Promise<R>;
  /** Closes the cache (driving the clock through its drain deadline). */
  close(options?: { timeout?: Duration }): Promise<CloseReport>;
}

export interface FixtureOptions {
  /** memoryTier maxEntries. Default 10,000. */
  tierMaxEntries?: number;
}

/** Runs `body` with a fresh write-back fixture and always cleans up (cache, file). */
export async function withWriteBack<T>(
  policy: Partial<CollectionPolicy>,
  body: (f: WriteBackFixture<T>) => Promise<void>,
  options: FixtureOptions = {},
): Promise<void> {
  const sqlite = tempSqlite();
  const store = new FaultyStore(sqlite.store);
  const clock = new ManualClock();
  const probe = new StoreProbe(store, clock);
  const cache = await createCache({ store: probe, clock, tier: memoryTier({ clock, maxEntries: options.tierMaxEntries ?? 10_000 }) });
  const items = cache.collection<T>(COLLECTION, { write: 'back', read: 'through', ttl: '1h', ttlJitter: 0, ...policy });
  let closing: Promise<CloseReport> | undefined;

  const settle = async () => {
    for (let i = 0; i < 4; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  };
  const advance = async (ms: number, stepMs = ms) => {
    await settle();
    for (let passed = 0; passed < ms; passed += stepMs) {
      clock.advance(Math.min(stepMs, ms - passed));
      await settle();
    }
  };
  const driveUntil = async <R>(promise: Promise<R>, { stepMs = 10, maxMs = 600_000 } = {}): Promise<R> => {
    let done = false;
    const tracked = promise.finally(() => {
      done = true;
    });
    tracked.catch(() => undefined);
    await settle();
    for (let passed = 0; !done && passed < maxMs; passed += stepMs) {
      clock.advance(stepMs);
      await settle();
    }
    return tracked;
  };
  const fixture: WriteBackFixture<T> = {
    cache,
    items,
    store,
    probe,
    clock,
    file: sqlite.file,
    row: (key) => store.inner.load(COLLECTION, key),
    async dbValue(key) {
      const row = await store.inner.load(COLLECTION, key);
      return row?.json === undefined ? undefined : (JSON.parse(row.json) as T);
    },
    settle,
    advance,
    driveUntil,
    close(options = {}) {
      closing ??= driveUntil(cache.close(options), { stepMs: 50 });
      return closing;
    },
  };
  try {
    await body(fixture);
  } finally {
    if (closing === undefined) {
      // Let whatever the test left pending drain against a healthy store.
      store.down = false;
      store.writeFaults = [];
      store.poisoned.clear();
      store.writeHold = undefined;
      await fixture.close({ timeout: '10s' });
    } else {
      await closing;
    }
    sqlite.cleanup();
  }
}

/** Opens the SQLite file again, after the cache closed its store, to read what is on disk. */
export async function readBack(file: string, key: string): Promise<StoreRecord | undefined> {
  const store = sqliteStore(file);
  try {
    return await store.load(COLLECTION, key);
  } finally {
    await store.close();
  }
}

/** A small seeded PRNG (mulberry32), so randomised scenarios replay exactly. */
export { seededRandom } from '../../src/cli/demo/random.js';
