/**
 * Measures one pattern: a cache of its own (a new tier) over the demo's database with the
 * injected database latency, a preloaded table (so reads of unwritten keys find rows), the
 * workload, then the collection's own counters. Write-back is flushed before the counters are
 * read, so "database writes per application write" counts every write that reached the database.
 * Write-back with durability 'journal' gets the part's file journal.
 */
import { type Collection, type Store } from '../../index.js';
import { openCache, openStore, type BackendSpec } from './backend.js';
import { LatencyStore } from './latency-store.js';
import { isJournaled, type PatternSpec } from './patterns.js';
import type { Random } from './random.js';
import type { LatencyFigures, Samples } from './samples.js';
import { StalenessChecker, type DemoValue } from './staleness.js';
import { keyName, runWorkload, type WorkloadShape, type WorkloadTarget } from './workload.js';

export interface PatternMeasurement {
  readonly writes: number;
  readonly reads: number;
  /** Write latency as the application saw it (around each set()). */
  readonly write: LatencyFigures;
  readonly read: LatencyFigures;
  readonly hits: number;
  readonly misses: number;
  /** hits / reads, as the collection counted them. */
  readonly hitRatio: number;
  readonly loads: number;
  /** Fills refused because the key was written or invalidated since the miss (contract 2). */
  readonly fillsRejected: number;
  readonly staleReads: number;
  readonly foreignReads: number;
  readonly staleExamples: readonly string[];
  /** Rows the database was asked to write, and in how many batches. */
  readonly storeWrites: number;
  readonly storeBatches: number;
  readonly dbWritesPerWrite: number;
  /** Write-back: how long acknowledged writes waited for the database (0 for the others). */
  readonly dbLagP99Ms: number;
  readonly dbLagMaxMs: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly durationMs: number;
}

export async function measurePattern(
  spec: PatternSpec,
  backend: BackendSpec,
  latencyMs: number,
  shape: WorkloadShape,
  random: Random,
  dbOwnTime?: Samples,
): Promise<PatternMeasurement> {
  const inner = openStore(backend, 'main');
  const checker = new StalenessChecker();
  try {
    await preload(inner, spec.collection, shape.keys, checker);
  } catch (error) {
    await inner.close();
    throw error;
  }
  const store = new LatencyStore(inner, latencyMs, dbOwnTime);
  const cache = await openCache(backend, 'main', store, { journal: isJournaled(spec) });
  try {
    const collection = cache.collection<DemoValue>(spec.collection, spec.policy);
    const target: WorkloadTarget = {
      write: async (key, value) => (await collection.set(key, value)).version,
      read: (key) => (spec.reads === 'get' ? collection.get(key) : lookupLoadFill(collection, store, spec.collection, key)),
    };
    const result = await runWorkload(target, shape, random, checker);
    await collection.flush({ timeout: '30s' });
    const stats = collection.stats();
    const reads = stats.hits + stats.staleHits + stats.misses;
    return {
      writes: stats.writes,
      reads,
      write: result.write,
      read: result.read,
      hits: stats.hits,
      misses: stats.misses,
      hitRatio: reads === 0 ? 0 : stats.hits / reads,
      loads: stats.loads,
      fillsRejected: stats.fillsRejected,
      staleReads: result.staleness.stale,
      foreignReads: result.staleness.foreign,
      staleExamples: result.staleness.examples,
      storeWrites: stats.storeWrites,
      storeBatches: stats.storeBatches,
      dbWritesPerWrite: stats.writes === 0 ? 0 : stats.storeWrites / stats.writes,
      dbLagP99Ms: stats.flushLag.p99Ms,
      dbLagMaxMs: stats.flushLag.maxMs,
      errors: result.errors,
      firstError: result.firstError,
      durationMs: result.durationMs,
    };
  } finally {
    await cache.close({ timeout: '10s' });
  }
}

/** Cache-aside as the seed's getArticle does it: look in the cache, on a miss load and fill. */
async function lookupLoadFill(collection: Collection<DemoValue>, store: LatencyStore, table: string, key: string): Promise<DemoValue | undefined> {
  const found = await collection.lookup(key);
  if (found.hit) return found.value;
  const record = await store.load(table, key);
  const value = record?.json === undefined ? undefined : (JSON.parse(record.json) as DemoValue);
  await collection.fill(key, value, found.lease);
  return value;
}

/** One row per key at version 1, written straight to the database (not through the cache, which stays cold). */
async function preload(store: Store, table: string, keys: number, checker: StalenessChecker): Promise<void> {
  await store.prepare(table);
  const rows = Array.from({ length: keys }, (_, i) => ({ key: keyName(i), value: checker.nextValue(0) }));
  await store.write(
    table,
    rows.map((row) => ({ op: 'set', key: row.key, version: 1, json: JSON.stringify(row.value) })),
  );
  for (const row of rows) checker.acknowledged(row.key, row.value, 1);
}
