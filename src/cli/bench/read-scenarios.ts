/**
 * The read scenarios of `cachewise bench`, cachewise beside the peers that can do the same:
 *
 *   memory-hit   a hit on the in-process tier (every key prefilled), concurrency 1
 *   miss-load    a miss on a new key, loaded by an in-process loader and cached (get-or-set)
 *   stampede     1,000 concurrent callers of one missing key: how many loads they cause
 *   redis-hit    a hit on a Redis tier, no in-process copy (--redis), concurrency 16
 *   two-tier     a hit on an in-process L1 over Redis L2 with an invalidation bus (--redis)
 *
 * Every cachewise contender is a read-through collection over a function store in memory, so the
 * database costs nothing and the cache's own path is what is measured.
 */
import { setImmediate as setImmediatePromise, setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createCache, functionStore, memoryTier, redisBus, redisTier, twoTier, type Cache, type Collection, type Tier } from '../../index.js';
import { cacheable, cachifiedLru, bentocache, cacheManager, peersFor, rawLru, redisClient, type PeerCache } from './peers.js';
import type { StampedeRow, StampedeScenario, ScenarioResult, TargetCheck, ThroughputScenario } from './results.js';
import { compare, median, ratioOf, ratiosTo, type Contender, type ContenderResult, type RoundOptions } from './runner.js';
import { keyOf, profile, type Profile } from './workload.js';

export interface ReadContext {
  readonly rounds: Omit<RoundOptions, 'concurrency'>;
  readonly keys: number;
  readonly stampedeRounds: number;
  readonly stampedeCallers: number;
  readonly stampedeLoaderMs: number;
  /** The Redis of --redis, or undefined (then the Redis scenarios are skipped). */
  readonly redisUrl: string | undefined;
  /** Every Redis key of the run starts with it (removed at the end). */
  readonly redisPrefix: string;
  readonly progress: (message: string) => void;
}

const TTL = '1h';

/** A cache over `tier` and a function store in memory, whose loads are counted. */
async function cachewiseOver(tier: Tier, load: (key: string) => unknown = () => undefined): Promise<{ cache: Cache; rows: Map<string, unknown>; loads: () => number }> {
  const rows = new Map<string, unknown>();
  let loads = 0;
  const cache = await createCache({
    tier,
    store: functionStore({
      load: async (key) => {
        loads++;
        return rows.get(key) ?? load(key);
      },
      save: (key, value) => void rows.set(key, value),
      remove: (key) => void rows.delete(key),
    }),
  });
  return { cache, rows, loads: () => loads };
}

async function prefill(keys: number, collection: Collection<Profile> | undefined, peers: readonly PeerCache[]): Promise<void> {
  for (let start = 0; start < keys; start += 500) {
    const batch = Array.from({ length: Math.min(500, keys - start) }, (_, i) => start + i);
    if (collection) await collection.setMany(batch.map((n) => [keyOf(n, keys), profile(n)] as const));
    for (const peer of peers) await Promise.all(batch.map((n) => peer.set(keyOf(n, keys), profile(n))));
  }
}

function targetCheck(results: readonly ContenderResult[], subject: string, baseline: string, atLeast: number, description: string): TargetCheck[] {
  const s = results.find((r) => r.name === subject);
  const b = results.find((r) => r.name === baseline);
  if (!s || !b) return [];
  const ratio = ratioOf(s, b).value;
  return [{ description, subject, baseline, ratio, atLeast, met: ratio >= atLeast }];
}

async function closeAll(peers: readonly PeerCache[], caches: readonly (Cache | undefined)[]): Promise<void> {
  await Promise.allSettled([...peers.map((p) => p.close()), ...caches.map((c) => c?.close({ timeout: '5s' }))]);
}

export async function memoryHit(ctx: ReadContext): Promise<ThroughputScenario> {
  const { cache, loads } = await cachewiseOver(memoryTier({ maxEntries: Math.max(10_000, ctx.keys) }));
  const profiles = cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: TTL });
  const peers = peersFor('memory', ctx.redisUrl ?? '', ctx.redisPrefix);
  try {
    await prefill(ctx.keys, profiles, peers);
    const before = profiles.stats();
    const loadsBefore = loads();
    const contenders: Contender[] = [{ name: 'cachewise', op: (n) => profiles.get(keyOf(n, ctx.keys)) }, ...peers.map((p) => ({ name: p.name, op: (n: number) => p.get(keyOf(n, ctx.keys)) }))];
    const results = await compare(contenders, { ...ctx.rounds, concurrency: 1 }, (m) => ctx.progress(`memory hit: ${m}`));
    const after = profiles.stats();
    return {
      kind: 'throughput',
      id: 'memory-hit',
      title: 'Memory hit path',
      what: `get(key) of a prefilled key (${ctx.keys} keys, a ~250-byte JSON profile each), one caller awaiting each get; lru-cache (raw) is an awaited LRUCache.get`,
      setting: { concurrency: 1, keys: ctx.keys },
      baseline: 'lru-cache (raw)',
      contenders: results,
      ratios: ratiosTo(results, 'lru-cache (raw)'),
      targets: [
        ...targetCheck(results, 'cachewise', 'bentocache', 2, 'memory hit at least 2x bentocache'),
        ...targetCheck(results, 'cachewise', 'cache-manager', 2, 'memory hit at least 2x cache-manager'),
        ...targetCheck(results, 'cachewise', 'lru-cache (raw)', 1 / 3, 'memory hit within 3x of an awaited raw lru-cache get'),
      ],
      notes: [`cachewise: ${after.hits - before.hits} hits, ${after.misses - before.misses} misses, ${loads() - loadsBefore} loads during the warm-up and the rounds`],
    };
  } finally {
    await closeAll(peers, [cache]);
  }
}

export async function missLoad(ctx: ReadContext): Promise<ThroughputScenario> {
  const load = (key: string) => profile(Number(key.slice(key.lastIndexOf(':') + 1)));
  const { cache, loads } = await cachewiseOver(memoryTier({ maxEntries: 10_000 }), load);
  const profiles = cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: TTL });
  const peers = peersFor('memory', ctx.redisUrl ?? '', ctx.redisPrefix);
  let peerLoads = 0;
  try {
    // Every operation reads a key never read before: a miss, one load, a fill.
    const contenders: Contender[] = [
      { name: 'cachewise', op: (n) => profiles.get(`miss:${n}`) },
      ...peers.map((p) => ({
        name: p.name,
        op: (n: number) =>
          p.getOrSet(`miss:${n}`, async () => {
            peerLoads++;
            return profile(n);
          }),
      })),
    ];
    const results = await compare(contenders, { ...ctx.rounds, concurrency: 1 }, (m) => ctx.progress(`miss with load: ${m}`));
    const stats = profiles.stats();
    const peerOps = results.filter((r) => r.name !== 'cachewise').reduce((sum, r) => sum + r.ops, 0);
    return {
      kind: 'throughput',
      id: 'miss-load',
      title: 'Miss with load (get-or-set)',
      what: 'a read of a key never read before: a miss, one call of an in-process loader (no I/O), the value cached; cachewise get() on a read-through collection, the peers\' get-or-set (bentocache getOrSet, cache-manager wrap, cacheable getOrSet, cachified), lru-cache (raw) get + load + set by hand',
      setting: { concurrency: 1 },
      baseline: 'lru-cache (raw)',
      contenders: results,
      ratios: ratiosTo(results, 'lru-cache (raw)'),
      targets: [],
      notes: [
        `cachewise: ${stats.misses} misses, ${stats.hits} hits, ${loads()} loads (warm-up included)`,
        `peers: ${peerLoads} loads for ${peerOps} measured operations plus the warm-up (one load per operation expected)`,
      ],
    };
  } finally {
    await closeAll(peers, [cache]);
  }
}

interface StampedeContender {
  readonly name: string;
  /** One caller's read of `key`, loading it on a miss with the scenario's slow loader. */
  readonly read: (key: string) => Promise<unknown>;
  /** Loads so far. */
  readonly loads: () => number;
  readonly close: () => Promise<unknown>;
}

export async function stampede(ctx: ReadContext): Promise<StampedeScenario> {
  const loaderMs = ctx.stampedeLoaderMs;
  const slowLoad = async (key: string): Promise<Profile> => {
    await sleep(loaderMs);
    return profile(key.length);
  };
  const contenders: StampedeContender[] = [];
  const memory = await cachewiseOver(memoryTier(), slowLoad);
  const memoryProfiles = memory.cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: TTL });
  contenders.push({ name: 'cachewise', read: (key) => memoryProfiles.get(key), loads: memory.loads, close: () => memory.cache.close() });
  if (ctx.redisUrl !== undefined) {
    const client = redisClient(ctx.redisUrl, 'bench-cachewise');
    const shared = await cachewiseOver(redisTier({ client, prefix: `${ctx.redisPrefix}stampede:`, ownsClient: true }), slowLoad);
    const sharedProfiles = shared.cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: TTL });
    contenders.push({ name: 'cachewise (Redis tier)', read: (key) => sharedProfiles.get(key), loads: shared.loads, close: () => shared.cache.close() });
  }
  for (const peer of [rawLru(), bentocache('memory', '', ''), cacheManager('memory', '', ''), cacheable('memory', '', ''), cachifiedLru()]) {
    let loads = 0;
    contenders.push({
      name: peer.name,
      read: (key) =>
        peer.getOrSet(key, () => {
          loads++;
          return slowLoad(key);
        }),
      loads: () => loads,
      close: () => peer.close(),
    });
  }
  try {
    const loadsPerRound = contenders.map(() => [] as number[]);
    const settle = contenders.map(() => [] as number[]);
    const wrong = contenders.map(() => 0);
    for (let round = 0; round < ctx.stampedeRounds; round++) {
      for (let j = 0; j < contenders.length; j++) {
        const index = (j + round) % contenders.length;
        const contender = contenders[index]!;
        ctx.progress(`stampede: round ${round + 1}/${ctx.stampedeRounds} ${contender.name}`);
        const key = `stampede:${round}`;
        const before = contender.loads();
        const started = performance.now();
        const answers = await Promise.allSettled(Array.from({ length: ctx.stampedeCallers }, () => contender.read(key)));
        settle[index]!.push(performance.now() - started);
        loadsPerRound[index]!.push(contender.loads() - before);
        wrong[index]! += answers.filter((a) => a.status === 'rejected' || a.value === undefined).length;
      }
    }
    const rows: StampedeRow[] = contenders.map((c, i) => ({
      name: c.name,
      loadsPerRound: loadsPerRound[i]!,
      maxLoads: Math.max(...loadsPerRound[i]!),
      settleMs: settle[i]!,
      medianSettleMs: median(settle[i]!),
      wrongAnswers: wrong[i]!,
    }));
    const cw = rows[0]!;
    return {
      kind: 'stampede',
      id: 'stampede',
      title: `Stampede: ${ctx.stampedeCallers.toLocaleString('en-US')} callers on one missing key`,
      what: `${ctx.stampedeCallers} concurrent reads of one key that is in no cache; the loader takes ${loaderMs} ms; each round a fresh key; loads counted per round`,
      callers: ctx.stampedeCallers,
      loaderMs,
      rows,
      targets: [{ description: `a stampede of ${ctx.stampedeCallers} callers causes one load`, subject: 'cachewise', baseline: '1 load', ratio: cw.maxLoads, atLeast: 1, met: cw.maxLoads === 1 && cw.wrongAnswers === 0 }],
      notes: [],
    };
  } finally {
    await Promise.allSettled(contenders.map((c) => c.close()));
  }
}

export async function redisHit(ctx: ReadContext): Promise<ScenarioResult> {
  if (ctx.redisUrl === undefined) return { kind: 'skipped', id: 'redis-hit', title: 'Redis-tier hit', reason: 'needs --redis' };
  const client = redisClient(ctx.redisUrl, 'bench-cachewise');
  const { cache } = await cachewiseOver(redisTier({ client, prefix: `${ctx.redisPrefix}hit:`, ownsClient: true }));
  const profiles = cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: TTL });
  const peers = peersFor('redis', ctx.redisUrl, ctx.redisPrefix);
  try {
    await prefill(ctx.keys, profiles, peers);
    const before = profiles.stats();
    const contenders: Contender[] = [{ name: 'cachewise', op: (n) => profiles.get(keyOf(n, ctx.keys)) }, ...peers.map((p) => ({ name: p.name, op: (n: number) => p.get(keyOf(n, ctx.keys)) }))];
    const results = await compare(contenders, { ...ctx.rounds, concurrency: 16 }, (m) => ctx.progress(`Redis hit: ${m}`));
    const after = profiles.stats();
    return {
      kind: 'throughput',
      id: 'redis-hit',
      title: 'Redis-tier hit',
      what: `get(key) of a prefilled key on Redis only (no in-process copy), 16 concurrent callers, ${ctx.keys} keys; ioredis (raw) is GET + JSON.parse; bentocache with a Redis L2 only, cache-manager and cacheable over @keyv/redis`,
      setting: { concurrency: 16, keys: ctx.keys },
      baseline: 'ioredis (raw)',
      contenders: results,
      ratios: ratiosTo(results, 'ioredis (raw)'),
      targets: [],
      notes: [`cachewise: ${after.hits - before.hits} hits, ${after.misses - before.misses} misses, ${after.tierErrors - before.tierErrors} tier errors during the warm-up and the rounds`],
    };
  } finally {
    await closeAll(peers, [cache]);
  }
}

/** Two-tier hit: gets between two turns of the event loop. */
const YIELD_EVERY = 100;

/** How long the two-tier check may take before the scenario is skipped. */
const TWO_TIER_CHECK_MS = 5000;

export async function twoTierHit(ctx: ReadContext): Promise<ScenarioResult> {
  const id = 'two-tier-hit';
  const title = 'Two-tier hit (memory L1 over Redis L2)';
  if (ctx.redisUrl === undefined) return { kind: 'skipped', id, title, reason: 'needs --redis' };
  const client = redisClient(ctx.redisUrl, 'bench-cachewise');
  // A subscriber connection of its own, with ioredis defaults (no command timeout: it only listens).
  const subscriber = new Redis(ctx.redisUrl, { connectionName: 'bench-cachewise-bus' });
  subscriber.on('error', () => undefined);
  let cache: Cache | undefined;
  const peers: PeerCache[] = [];
  const l2Gets = { count: 0 };
  try {
    let profiles: Collection<Profile>;
    try {
      const tier = twoTier({
        l2: countingGets(redisTier({ client, prefix: `${ctx.redisPrefix}two:` }), l2Gets),
        bus: redisBus({ publisher: client, subscriber, channel: `${ctx.redisPrefix}bus` }),
      });
      cache = (await withDeadline(cachewiseOver(tier), TWO_TIER_CHECK_MS, 'createCache over twoTier')).cache;
      profiles = cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: TTL });
      await withDeadline(profiles.set('check', profile(1)), TWO_TIER_CHECK_MS, 'a write-through set');
      const back = await withDeadline(profiles.get('check'), TWO_TIER_CHECK_MS, 'a get');
      if (back?.id !== '1') throw new Error(`a get after a set returned ${JSON.stringify(back)}`);
    } catch (error) {
      return { kind: 'skipped', id, title, reason: `cachewise twoTier + redisBus misbehaved (${error instanceof Error ? error.message : String(error)})` };
    }
    peers.push(...peersFor('two-tier', ctx.redisUrl, ctx.redisPrefix));
    await prefill(ctx.keys, profiles, peers);
    // Read every key once, so each library has it in its L1.
    for (let n = 0; n < ctx.keys; n++) await Promise.all([profiles.get(keyOf(n, ctx.keys)), ...peers.map((p) => p.get(keyOf(n, ctx.keys)))]);
    const before = profiles.stats();
    const l2Before = l2Gets.count;
    // In-process hits resolve without I/O: every YIELD_EVERY gets, each contender lets the event
    // loop run (as a server does between requests), so bus heartbeats and messages are handled.
    const yielding = (get: (key: string) => Promise<unknown>) => (n: number) =>
      n % YIELD_EVERY === 0 ? setImmediatePromise().then(() => get(keyOf(n, ctx.keys))) : get(keyOf(n, ctx.keys));
    const contenders: Contender[] = [{ name: 'cachewise', op: yielding((key) => profiles.get(key)) }, ...peers.map((p) => ({ name: p.name, op: yielding((key) => p.get(key)) }))];
    const results = await compare(contenders, { ...ctx.rounds, concurrency: 1 }, (m) => ctx.progress(`two-tier hit: ${m}`));
    const after = profiles.stats();
    const l2 = l2Gets.count - l2Before;
    return {
      kind: 'throughput',
      id,
      title,
      what: `get(key) of a key held in both tiers, one caller, who lets the event loop turn every ${YIELD_EVERY} gets; cachewise twoTier(memory L1, redisTier L2, redisBus); bentocache L1 + Redis L2 + Redis bus; cache-manager [Keyv memory, @keyv/redis]; cacheable primary memory + secondary @keyv/redis; the raw baseline is an lru-cache in front of ioredis, without invalidation`,
      setting: { concurrency: 1, keys: ctx.keys },
      baseline: 'lru-cache + ioredis (raw)',
      contenders: results,
      ratios: ratiosTo(results, 'lru-cache + ioredis (raw)'),
      targets: [],
      notes: [
        `cachewise: ${after.hits - before.hits} hits, ${after.misses - before.misses} misses, ${after.tierErrors - before.tierErrors} tier errors during the warm-up and the rounds; ` +
          `${l2} gets went on to L2 (Redis), ${pct(l2 / Math.max(1, after.hits + after.misses - before.hits - before.misses))} of all`,
      ],
    };
  } finally {
    await withDeadline(closeAll(peers, [cache]), TWO_TIER_CHECK_MS, 'closing').catch(() => undefined);
    client.disconnect();
    subscriber.disconnect();
  }
}

/** `tier` with its get() calls counted in `counter` (every other call passes through). */
function countingGets(tier: Tier, counter: { count: number }): Tier {
  return new Proxy(tier, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (property === 'get' && typeof value === 'function') {
        return (key: string) => {
          counter.count++;
          return (value as Tier['get']).call(target, key);
        };
      }
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function pct(x: number): string {
  return `${(x * 100).toFixed(x < 0.1 ? 2 : 0)}%`;
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
