/**
 * One application process of the multi-process test (test/multi-process.test.ts): a cache on the
 * shared Redis or a Redis Cluster (redisTier, or twoTier with its bus) and PostgreSQL (its run's
 * schema), doing randomised reads and writes on a few shared keys of three collections, and
 * recording what it saw. Protocol: prints "ready" once its cache is up, starts on a "go" line on
 * stdin, runs for `durationMs`, writes its history (JSON) to `historyFile`, closes everything and
 * exits.
 *
 * Times are process.hrtime (CLOCK_MONOTONIC): one clock for every process of the machine, so the
 * histories of the processes can be merged as they are.
 */
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Cluster, Redis } from 'ioredis';
import { createCache, postgresStore, type Collection } from '../../src/index.js';
import { redisBus } from '../../src/tiers/redis-bus.js';
import { redisTier } from '../../src/tiers/redis-tier.js';
import type { InvalidationBus } from '../../src/tiers/invalidation-bus.js';
import type { Tier } from '../../src/tiers/tier.js';
import { twoTier } from '../../src/tiers/two-tier.js';
import { COLLECTIONS, type ChildConfig, type ChildHistory, type RecordedOp } from './multi-process-history.js';

const config = JSON.parse(process.argv[2]!) as ChildConfig;
const now = (): number => Number(process.hrtime.bigint()) / 1000; // microseconds

/** mulberry32: the operation mix is reproducible from the seed (the timing is not). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

async function main(): Promise<void> {
  const client =
    config.clusterNodes === undefined
      ? new Redis(config.redisUrl, { maxRetriesPerRequest: 1, commandTimeout: 2000, enableAutoPipelining: true })
      : new Cluster([...config.clusterNodes], { enableAutoPipelining: true, redisOptions: { maxRetriesPerRequest: 1, commandTimeout: 2000 } });
  client.on('error', () => undefined);
  const l2 = redisTier({ client, prefix: config.prefix });
  let bus: InvalidationBus | undefined;
  let tier: Tier = l2;
  if (config.tier === 'two') {
    bus = redisBus({ publisher: client, channel: `${config.prefix}bus` });
    tier = twoTier({ l2, bus });
  }
  const store = postgresStore({ connectionString: config.databaseUrl, schema: config.schema });
  const cache = await createCache({ tier, store }); // no writerId: each process claims a slot in the shared Redis
  const collections = new Map<string, Collection<{ writer: number; seq: number }>>();
  for (const c of COLLECTIONS) collections.set(c.name, cache.collection(c.name, c.policy));
  const deadline = Date.now() + 10_000;
  while (bus !== undefined && !bus.connected) {
    if (Date.now() > deadline) throw new Error('the bus did not confirm delivery within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }

  const ops: RecordedOp[] = [];
  let seq = 0;
  const write = async (name: string, key: string): Promise<void> => {
    const value = { writer: config.index, seq: ++seq };
    const op: RecordedOp = { kind: 'set', collection: name, key, tag: `${value.writer}.${value.seq}`, start: now(), end: 0, version: undefined };
    try {
      op.version = (await collections.get(name)!.set(key, value)).version;
    } catch (error) {
      op.error = String(error);
    }
    op.end = now();
    ops.push(op);
  };
  // The first process gives every key a value, so reads find rows rather than absent keys.
  if (config.index === 0) for (const c of COLLECTIONS) for (let k = 0; k < config.keys; k++) await write(c.name, `k${k}`);

  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  lines.close();

  const rand = random(config.seed);
  const end = Date.now() + config.durationMs;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      const spec = COLLECTIONS[Math.floor(rand() * COLLECTIONS.length)]!;
      const collection = collections.get(spec.name)!;
      const key = `k${Math.floor(rand() * config.keys)}`;
      if (rand() < spec.writeShare) {
        await write(spec.name, key);
      } else {
        const op: RecordedOp = { kind: 'get', collection: spec.name, key, tag: null, start: now(), end: 0 };
        try {
          const value = await collection.get(key);
          op.tag = value === undefined ? null : `${value.writer}.${value.seq}`;
        } catch (error) {
          op.error = String(error);
        }
        op.end = now();
        ops.push(op);
      }
      // As a server between requests: let I/O in (an L1 hit alone never leaves the microtask queue).
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await Promise.all(Array.from({ length: config.concurrency }, worker));
  const history: ChildHistory = { index: config.index, ops, stats: cache.stats() as unknown };
  writeFileSync(config.historyFile, JSON.stringify(history));
  await cache.close({ timeout: '10s' });
  client.disconnect();
}

main().catch((error) => {
  process.stderr.write(`child ${config.index}: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
