/**
 * Where a Redis-tier hit loses against a raw GET: the same read built up layer by layer, every
 * step a contender, all interleaved in rounds and compared with the first. Each step adds one
 * thing the cachewise hit path does:
 *
 *   raw GET               client.get(key), then JSON.parse (the baseline of bench/redis-hit.ts)
 *   GET in withTimeout    the same inside the tier-timeout race cachewise puts around a tier call
 *                         when the client has no command timeout of its own (a timer set and
 *                         cleared, Promise.race, finally); with one, as here, reads skip it
 *   GET of the entry      the tier's entry string (header line, then the JSON), the JSON parsed
 *   tier.get              redisTier.get(): GET, header decoding, deep freeze
 *   collection.get        the whole hit path: read path, breaker, stats, freshness check
 *
 * All steps share one client (auto-pipelining per --pipelining) and read the same prefilled
 * entries. A diagnostic for changing the hit path, not a comparison to quote: it imports an
 * internal module of the build (dist/util/timeout.js) and writes the tier's layout by hand.
 *
 *   node --import tsx bench/hit-breakdown.ts [--json] [--quick] [--concurrency 16,64]
 */
import { createCache, functionStore, redisTier, type Tier } from './lib/cachewise.js';
import { withTimeout } from '../dist/util/timeout.js';
import { commonFlags, parseFlags } from './lib/args.js';
import { HIT_TTL_MS } from './lib/hit-contenders.js';
import { machineInfo, printReport, ratiosTo, type CaseResult } from './lib/report.js';
import { compare, type Contender } from './lib/runner.js';
import { clearProgress, deleteKeys, main, onCleanup, progress, redisClient, runId } from './lib/services.js';
import { keyOf, profile, type Profile } from './lib/workload.js';

/** The tier timeout cachewise uses by default (policy tierTimeout). */
const TIER_TIMEOUT_MS = 1000;
const COLLECTION = 'profiles';

const flags = parseFlags('node --import tsx bench/hit-breakdown.ts [flags]\n\nA Redis-tier hit built up layer by layer from a raw GET.', [
  ...commonFlags({ rounds: 5, roundMs: 500, warmupMs: 200, concurrency: [16, 64] }),
  { name: 'keys', type: 'int', description: 'distinct keys, prefilled', default: 1000 },
  { name: 'pipelining', type: 'string', description: 'ioredis enableAutoPipelining', default: 'on', choices: ['on', 'off'] },
]);

await main(async () => {
  const prefix = `bench:${runId()}:`;
  const keys = flags.keys as number;
  const options = { rounds: flags.rounds as number, roundMs: flags['round-ms'] as number, warmupMs: flags['warmup-ms'] as number };
  const client = redisClient({ enableAutoPipelining: flags.pipelining === 'on' });
  onCleanup(() => deleteKeys(client, prefix));

  const rows = new Map<string, unknown>();
  const tier: Tier = redisTier({ client, prefix: `${prefix}cw:` });
  const cache = await createCache({
    tier,
    store: functionStore({ load: (key) => rows.get(key), save: (key, value) => void rows.set(key, value), remove: (key) => void rows.delete(key) }),
  });
  onCleanup(() => cache.close());
  const profiles = cache.collection<Profile>(COLLECTION, { write: 'through', read: 'through', ttl: HIT_TTL_MS });

  progress(`prefill ${keys} keys`);
  for (let n = 0; n < keys; n++) {
    await profiles.set(keyOf(n, keys), profile(n));
    await client.set(`${prefix}raw:${keyOf(n, keys)}`, JSON.stringify(profile(n)), 'PX', HIT_TTL_MS);
  }
  // The tier's layout (redis-tier.ts): the entry of tier key K is the string <prefix>{K}, a
  // header line and then the JSON; the collection's tier key is <collection>:<key>.
  const tierKey = (n: number) => `${COLLECTION}:${keyOf(n, keys)}`;
  const entryKey = (n: number) => `${prefix}cw:{${tierKey(n)}}`;
  const rawKey = (n: number) => `${prefix}raw:${keyOf(n, keys)}`;
  const parse = (json: string | null) => (json === null ? undefined : JSON.parse(json));

  const contenders: Contender[] = [
    { name: 'raw GET', op: async (n) => parse(await client.get(rawKey(n))) },
    { name: 'GET in withTimeout', op: async (n) => parse(await withTimeout(client.get(rawKey(n)), TIER_TIMEOUT_MS, 'get')) },
    {
      name: 'GET of the entry',
      op: async (n) => {
        const text = await client.get(entryKey(n));
        return text === null ? undefined : parse(text.slice(text.indexOf('\n') + 1));
      },
    },
    { name: 'tier.get', op: (n) => tier.get(tierKey(n)) },
    { name: 'collection.get', op: (n) => profiles.get(keyOf(n, keys)) },
  ];
  const cases: CaseResult[] = [];
  for (const concurrency of flags.concurrency as number[]) {
    const results = await compare(contenders, { ...options, concurrency }, (m) => progress(`concurrency ${concurrency}: ${m}`));
    cases.push({ setting: { concurrency }, contenders: results, ratios: ratiosTo(results, 'raw GET', 0.9) });
  }
  clearProgress();
  const stats = profiles.stats();
  printReport(
    {
      benchmark: 'hit-breakdown',
      title: 'Redis-tier hit, layer by layer (each step adds one part of the cachewise hit path)',
      machine: machineInfo(),
      options: { ...options, keys, pipelining: flags.pipelining },
      cases,
      notes: [`collection.get: ${stats.hits} hits, ${stats.misses} misses`, `auto-pipelining ${flags.pipelining}; one client shared by every step`],
    },
    flags.json === true,
  );
});
