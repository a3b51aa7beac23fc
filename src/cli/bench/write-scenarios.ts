/**
 * The write scenarios of `cachewise bench`, and the measurements behind the seed's claims, at
 * one database latency (injected around every database call, as `cachewise demo --db-latency`
 * does; 0 measures the database's own):
 *
 *   write patterns   set() on write-through, write-back, write-around (and write-back with a
 *                    journal, when the cache accepts one), beside one database write of one row,
 *                    interleaved in rounds at 16 concurrent writers over 1,000 keys
 *   write-back flush N writes of distinct keys, then flush(): end-to-end throughput (until every
 *                    write is in the database), against write-through doing the same N writes
 *   cold reads       per pattern, the first read after a write: a miss or a hit
 *   read styles      the same reads by read-through and by cache-aside code: loads and lines
 *
 * The database is the run's store (a SQLite file, or PostgreSQL with --postgres); the tier is the
 * run's tier (memory, or Redis with --redis).
 */
import { join } from 'node:path';
import { createCache, type Cache, type CacheOptions, type Collection, type CollectionPolicy, type Store } from '../../index.js';
import { fileJournal } from '../../journal/file-journal.js';
import { LRUCache } from 'lru-cache';
import * as code from './app-code.js';
import type { App } from './app-code.js';
import { openStore, openTier, type BackendSpec } from '../demo/backend.js';
import { LatencyStore } from '../demo/latency-store.js';
import type { ColdReadRow, ReadStyleRow, ScenarioResult, ThroughputScenario } from './results.js';
import { compare, LatencyHistogram, median, ratiosTo, runCount, type Contender, type ContenderResult, type RoundOptions } from './runner.js';
import { profile, type Profile } from './workload.js';

export interface WriteContext {
  readonly backend: BackendSpec;
  readonly rounds: Omit<RoundOptions, 'concurrency'>;
  readonly dbLatencyMs: number;
  /** Where the journal of durable write-back goes (a directory of the run). */
  readonly dir: string;
  readonly concurrency: number;
  readonly keys: number;
  readonly flushWrites: number;
  readonly flushRounds: number;
  readonly coldKeys: number;
  readonly styleReads: number;
  readonly styleKeys: number;
  readonly progress: (message: string) => void;
}

export const PATTERN_POLICIES = {
  'write-through': { write: 'through', read: 'through', ttl: '1h' },
  'write-back': { write: 'back', read: 'through', ttl: '1h', durability: 'none', flush: { maxBatch: 500, maxDelay: '100ms' } },
  'write-around': { write: 'around', read: 'through', ttl: '1h' },
} as const satisfies Record<string, CollectionPolicy>;

export const JOURNAL_POLICY: CollectionPolicy = { write: 'back', read: 'through', ttl: '1h', durability: 'journal', flush: { maxBatch: 500, maxDelay: '100ms' } };

export type PatternName = keyof typeof PATTERN_POLICIES | 'write-back (journal)';
const PATTERN_NAMES = Object.keys(PATTERN_POLICIES) as (keyof typeof PATTERN_POLICIES)[];
export const DATABASE_WRITE = 'database write (one row)';

/** A cache over the run's tier and a latency-wrapped connection to the run's database. */
interface Bench {
  readonly cache: Cache;
  readonly store: LatencyStore;
  readonly collections: Map<PatternName, Collection<Profile>>;
  /** Why a pattern (durable write-back, typically) is not measured, when one is not. */
  readonly skipped: readonly string[];
  close(): Promise<void>;
}

let tableSerial = 0;

/** Table (collection) names of this run: unique per call, valid SQL identifiers. */
function tableName(pattern: string, latencyMs: number): string {
  return `bench_${pattern.replace(/[^a-z]/g, '_')}_${Math.round(latencyMs)}_${++tableSerial}`;
}

async function openBench(ctx: WriteContext, patterns: readonly PatternName[]): Promise<Bench> {
  const store = new LatencyStore(openStore(ctx.backend, 'main'), ctx.dbLatencyMs);
  const cache = await createCache({ tier: openTier(ctx.backend, 'main'), store });
  const collections = new Map<PatternName, Collection<Profile>>();
  const skipped: string[] = [];
  for (const pattern of PATTERN_NAMES) {
    if (!patterns.includes(pattern)) continue;
    try {
      collections.set(pattern, cache.collection<Profile>(tableName(pattern, ctx.dbLatencyMs), PATTERN_POLICIES[pattern]));
    } catch (error) {
      // e.g. write-back on a shared Redis that may evict (the seed's "ignoring cache eviction").
      skipped.push(`${pattern} skipped: declaring it threw ${describe(error)}`);
    }
  }
  let journalCache: Cache | undefined;
  let journalSkipped: string | undefined;
  if (patterns.includes('write-back (journal)')) {
    try {
      const options: CacheOptions & { journal?: unknown } = {
        tier: openTier(ctx.backend, 'main'),
        store: new LatencyStore(openStore(ctx.backend, 'main'), ctx.dbLatencyMs),
        journal: fileJournal(join(ctx.dir, `journal-${++tableSerial}`)),
      };
      journalCache = await createCache(options);
      collections.set('write-back (journal)', journalCache.collection<Profile>(tableName('wbj', ctx.dbLatencyMs), JOURNAL_POLICY));
    } catch (error) {
      journalSkipped = `durable write-back skipped: declaring { write: 'back', durability: 'journal' } on createCache({ store, tier, journal: fileJournal(dir) }) threw ${describe(error)}`;
      await journalCache?.close({ timeout: '5s' }).catch(() => undefined);
      journalCache = undefined;
    }
  }
  return {
    cache,
    store,
    collections,
    skipped: journalSkipped === undefined ? skipped : [...skipped, journalSkipped],
    close: async () => {
      await Promise.allSettled([cache.close({ timeout: '30s' }), journalCache?.close({ timeout: '30s' })]);
    },
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${(error as { code?: string }).code ?? error.name}: ${error.message.split('\n')[0]}`;
  return String(error);
}

export function latencyLabel(latencyMs: number, backend: BackendSpec): string {
  const db = backend.store.kind === 'sqlite' ? 'SQLite' : 'PostgreSQL';
  return latencyMs === 0 ? `${db}, its own latency` : `${db} + ${latencyMs} ms injected`;
}

/** set() per pattern beside one database write, interleaved; ratios to write-through. */
export async function writePatterns(ctx: WriteContext): Promise<ScenarioResult> {
  const bench = await openBench(ctx, [...PATTERN_NAMES, 'write-back (journal)']);
  const rawTable = tableName('db', ctx.dbLatencyMs);
  try {
    await bench.store.prepare(rawTable);
    let rawVersion = 0;
    const key = (n: number) => `k${n % ctx.keys}`;
    const contenders: Contender[] = [
      // The database's own write latency: one versioned upsert of one row, as the store sends it.
      { name: DATABASE_WRITE, op: (n) => bench.store.write(rawTable, [{ op: 'set', key: key(n), version: ++rawVersion, json: JSON.stringify(profile(n)) }]) },
      ...[...bench.collections].map(([name, collection]) => ({ name, op: (n: number) => collection.set(key(n), profile(n)) })),
    ];
    const results = await compare(contenders, { ...ctx.rounds, concurrency: ctx.concurrency }, (m) => ctx.progress(`write patterns (${latencyLabel(ctx.dbLatencyMs, ctx.backend)}): ${m}`));
    const notes: string[] = [];
    for (const [name, collection] of bench.collections) {
      if (!name.startsWith('write-back')) continue;
      const flushStarted = performance.now();
      await collection.flush({ timeout: '60s' });
      const s = collection.stats();
      notes.push(
        `${name}: ${s.writes} writes acknowledged became ${s.storeWrites} database rows in ${s.storeBatches} batches${s.storeWrites < s.writes ? ' (coalesced per key)' : ''}; ` +
          `the final flush took ${Math.round(performance.now() - flushStarted)} ms; backpressure waits ${s.backpressureWaits}, lost ${s.lostWrites}`,
      );
    }
    notes.push(...bench.skipped);
    return {
      kind: 'throughput',
      id: `write-patterns-${ctx.dbLatencyMs}`,
      title: `Write patterns, ${latencyLabel(ctx.dbLatencyMs, ctx.backend)}`,
      what: `set(key, value) of a ~250-byte profile, ${ctx.concurrency} concurrent writers over ${ctx.keys} keys; "${DATABASE_WRITE}" is one versioned upsert of one row sent to the same database (the database's latency)`,
      setting: { dbLatencyMs: ctx.dbLatencyMs, concurrency: ctx.concurrency, keys: ctx.keys },
      baseline: 'write-through',
      contenders: results,
      ratios: ratiosTo(results, 'write-through'),
      targets: [],
      notes,
    };
  } finally {
    await bench.close();
  }
}

/**
 * Each round: write-through writes N distinct keys; write-back accepts N distinct keys, then
 * flush() waits until all are in the database. Throughput is N over the time until every write
 * is in the database (write-back: acceptance + flush).
 */
export async function writeBackFlush(ctx: WriteContext): Promise<ScenarioResult> {
  const names: PatternName[] = ['write-through', 'write-back', 'write-back (journal)'];
  const bench = await openBench(ctx, names);
  const n = ctx.flushWrites;
  try {
    const entries = [...bench.collections];
    const perRound = entries.map(() => [] as number[]);
    const histograms = entries.map(() => new LatencyHistogram());
    const accept: number[][] = entries.map(() => []);
    const flush: number[][] = entries.map(() => []);
    for (let round = 0; round < ctx.flushRounds; round++) {
      for (let j = 0; j < entries.length; j++) {
        const index = (j + round) % entries.length;
        const [name, collection] = entries[index]!;
        ctx.progress(`write-back flush (${latencyLabel(ctx.dbLatencyMs, ctx.backend)}): round ${round + 1}/${ctx.flushRounds} ${name}`);
        const histogram = histograms[index]!;
        const started = performance.now();
        const accepted = await runCount(
          {
            name,
            op: async (i) => {
              const t = performance.now();
              await collection.set(`r${round}:k${i}`, profile(i));
              histogram.recordMs(performance.now() - t);
            },
          },
          ctx.concurrency,
          n,
        );
        const flushStarted = performance.now();
        await collection.flush({ timeout: '120s' });
        const total = performance.now() - started;
        accept[index]!.push(accepted.elapsedMs);
        flush[index]!.push(performance.now() - flushStarted);
        perRound[index]!.push(n / (total / 1000));
      }
    }
    const results: ContenderResult[] = entries.map(([name], i) => ({
      name,
      perRound: perRound[i]!,
      median: median(perRound[i]!),
      min: Math.min(...perRound[i]!),
      max: Math.max(...perRound[i]!),
      ops: n * ctx.flushRounds,
      latency: histograms[i]!.summary(),
    }));
    const notes = entries.map(([name, collection], i) => {
      const s = collection.stats();
      return `${name}: acknowledging ${n} writes took ${ms(median(accept[i]!))} ms (median), then flush() ${ms(median(flush[i]!))} ms; ${s.storeWrites} database rows in ${s.storeBatches} batches over all rounds`;
    });
    notes.push(...bench.skipped);
    return {
      kind: 'throughput',
      id: `flush-${ctx.dbLatencyMs}`,
      title: `Write-back flush: end-to-end write throughput, ${latencyLabel(ctx.dbLatencyMs, ctx.backend)}`,
      what: `${n} writes of distinct keys by ${ctx.concurrency} writers, timed until every write is in the database (write-back: acknowledgements, then flush()); ops/s is ${n} over that time; latency is each set() as the writer saw it`,
      setting: { dbLatencyMs: ctx.dbLatencyMs, writes: n, concurrency: ctx.concurrency },
      baseline: 'write-through',
      contenders: results,
      ratios: ratiosTo(results, 'write-through'),
      targets: [],
      notes,
    };
  } finally {
    await bench.close();
  }
}

/** Per pattern: write a key, then read it once; was that first read a miss? */
export async function coldReads(ctx: WriteContext): Promise<ColdReadRow[]> {
  const bench = await openBench(ctx, PATTERN_NAMES);
  try {
    const rows: ColdReadRow[] = [];
    for (const [name, collection] of bench.collections) {
      ctx.progress(`first read after a write (${latencyLabel(ctx.dbLatencyMs, ctx.backend)}): ${name}`);
      const writes = new LatencyHistogram();
      const reads = new LatencyHistogram();
      const before = collection.stats();
      await runCount(
        {
          name,
          op: async (i) => {
            let t = performance.now();
            await collection.set(`cold:${i}`, profile(i));
            writes.recordMs(performance.now() - t);
            t = performance.now();
            await collection.get(`cold:${i}`);
            reads.recordMs(performance.now() - t);
          },
        },
        ctx.concurrency,
        ctx.coldKeys,
      );
      const after = collection.stats();
      const firstReads = after.hits + after.staleHits + after.misses - (before.hits + before.staleHits + before.misses);
      rows.push({
        pattern: name,
        keys: ctx.coldKeys,
        missRate: firstReads === 0 ? 0 : (after.misses - before.misses) / firstReads,
        firstReadP50Ms: reads.summary().p50Us / 1000,
        writeP50Ms: writes.summary().p50Us / 1000,
      });
    }
    return rows;
  } finally {
    await bench.close();
  }
}

/** A store that counts loads. */
class CountingStore extends LatencyStore {
  loads = 0;
  override load(collection: string, key: string) {
    this.loads++;
    return super.load(collection, key);
  }
}

/**
 * The same reads (groups of 10 concurrent reads per key, over a cold cache, every key in the
 * database) by the four pieces of application code of app-code.ts; their lines are counted from
 * that file's text.
 */
export async function readStyles(ctx: WriteContext): Promise<ReadStyleRow[]> {
  const store = new CountingStore(openStore(ctx.backend, 'main'), ctx.dbLatencyMs);
  const cache = await createCache({ tier: openTier(ctx.backend, 'main'), store });
  try {
    const table = tableName('articles', ctx.dbLatencyMs);
    await store.prepare(table);
    await store.write(
      table,
      Array.from({ length: ctx.styleKeys }, (_, i) => ({ op: 'set' as const, key: `a${i}`, version: 1, json: JSON.stringify(profile(i)) })),
    );
    const readThrough = cache.collection<Profile>(table, { write: 'around', read: 'through', ttl: '1h' });
    const aside = cache.collection<Profile>(`${table}_aside`, { write: 'around', read: 'aside', ttl: '1h' });
    const asideLoad = cache.collection<Profile>(`${table}_load`, { write: 'around', read: 'aside', ttl: '1h' });
    const lru = new LRUCache<string, string>({ max: 10_000 });
    const app: App = {
      articles: readThrough,
      asideArticles: aside,
      database: {
        findOne: async (slug) => {
          const record = await store.load(table, slug);
          return record?.json === undefined ? undefined : (JSON.parse(record.json) as Profile);
        },
      },
      cache: { get: async (key) => lru.get(key), setex: async (key, _seconds, json) => void lru.set(key, json) },
    };
    // getOrLoad gets a collection of its own, so that its fills do not serve lookupFill's reads.
    const appGetOrLoad: App = { ...app, asideArticles: asideLoad };
    const styles: [string, string, (slug: string) => Promise<Profile | undefined>][] = [
      ['read-through (cachewise get)', 'readThrough', (slug) => code.readThrough(app, slug)],
      ['cache-aside (cachewise lookup + fill)', 'cacheAsideLookupFill', (slug) => code.cacheAsideLookupFill(app, slug)],
      ['cache-aside (cachewise getOrLoad)', 'cacheAsideGetOrLoad', (slug) => code.cacheAsideGetOrLoad(appGetOrLoad, slug)],
      ["cache-aside by hand (the seed's getArticle)", 'cacheAsideByHand', (slug) => code.cacheAsideByHand(app, slug)],
    ];
    const rows: ReadStyleRow[] = [];
    for (const [style, fn, read] of styles) {
      ctx.progress(`read-through vs cache-aside (${latencyLabel(ctx.dbLatencyMs, ctx.backend)}): ${style}`);
      const before = store.loads;
      // Reads 0-9 read a0, 10-19 read a1, ...: ten callers of each key arrive together.
      const { elapsedMs } = await runCount({ name: style, op: (i) => read(`a${Math.floor(i / 10) % ctx.styleKeys}`) }, 50, ctx.styleReads);
      const source = code.sourceOf(fn);
      rows.push({
        style,
        appCodeLines: code.codeLines(source),
        appCode: source,
        reads: ctx.styleReads,
        distinctKeys: Math.min(ctx.styleKeys, Math.ceil(ctx.styleReads / 10)),
        loads: store.loads - before,
        durationMs: elapsedMs,
      });
    }
    return rows;
  } finally {
    await cache.close({ timeout: '10s' });
  }
}

function ms(value: number): string {
  return value >= 100 ? String(Math.round(value)) : value.toFixed(1);
}
