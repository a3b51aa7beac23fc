/**
 * A test-owned redis-server stopped and restarted under load (contracts 1, 3 and 6), over
 * redisTier and over twoTier (two instances): while Redis is down, reads are served from
 * PostgreSQL and write-through keeps committing, with no stale read, no failed operation and no
 * unhandled rejection; once Redis is back, reads hit the cache again. Redis comes back empty (it
 * keeps nothing on disk): no older version may come back into the cache then.
 */
import { after, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { createCache, postgresStore, type Cache, type Collection } from '../src/index.js';
import { redisTier } from '../src/tiers/redis-tier.js';
import type { Store } from '../src/stores/store.js';
import type { Tier } from '../src/tiers/tier.js';
import { HeldStore } from './helpers/held-store.js';
import { checkReads, History, StoreLedger, tagOf, written, type Written } from './helpers/history.js';
import { dropSchema, freshSchemaName, testPool } from './helpers/postgres.js';
import { skipUnlessRedisServer, startRedisServer, type RedisServer } from './helpers/redis-servers.js';
import { DATABASE_URL, skipUnless } from './helpers/servers.js';
import { isCachewiseError } from '../src/errors.js';
import { TwoTierGroup, waitFor } from './helpers/two-tier-instances.js';

const skip = (await skipUnless('postgres')) || skipUnlessRedisServer();
const schemas: string[] = [];
const servers: RedisServer[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);

after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await Promise.all(servers.map((s) => s.stop()));
  if (skip) return;
  const admin = testPool();
  for (const schema of schemas) await dropSchema(admin, schema);
  await admin.end();
});

type TierKind = 'redis' | 'two';

interface Rig {
  readonly server: RedisServer;
  readonly caches: Cache[];
  /** Each instance's Redis client (of its tier, and of its bus's scripts). */
  readonly clients: Redis[];
  readonly users: Collection<Written>[];
  close(): Promise<void>;
}

/** A redis-server of the test's own, and `instances` caches on it over one PostgreSQL schema. */
async function rig(kind: TierKind, instances: number, wrapStore: (store: Store) => Store = (s) => s): Promise<Rig> {
  const server = await startRedisServer();
  servers.push(server);
  const schema = freshSchemaName();
  schemas.push(schema);
  const store = wrapStore(postgresStore({ connectionString: DATABASE_URL, schema }));
  const group = new TwoTierGroup(server.url, `cw-restart-${randomBytes(4).toString('hex')}:`);
  const clients: Redis[] = [];
  const tierOf = (): Tier => {
    if (kind === 'two') {
      const instance = group.instance();
      clients.push(instance.client as Redis); // a group on one server
      return instance.tier;
    }
    const client = group.client();
    clients.push(client);
    return redisTier({ client, prefix: group.prefix });
  };
  const tiers = Array.from({ length: instances }, tierOf);
  await group.ready();
  const caches: Cache[] = [];
  for (const tier of tiers) caches.push(await createCache({ store, tier }));
  const users = caches.map((cache) => cache.collection<Written>('users', { write: 'through', read: 'through', ttl: '1h' }));
  return {
    server,
    caches,
    clients,
    users,
    async close() {
      // The caches share one store: close them together.
      await Promise.allSettled(caches.map((cache) => cache.close({ timeout: '5s' })));
      await group.close();
    },
  };
}

const hits = (caches: readonly Cache[]): number => caches.reduce((sum, cache) => sum + (cache.stats().collections.users?.hits ?? 0), 0);

/**
 * Runs reads and writes on three keys from four workers, spread over the instances, while the
 * server is killed and restarted empty; then checks the history. A stale read is reported apart
 * when the write it missed had its cache step fail in its own instance (the key was quarantined
 * there, during that write): that quarantine is local to the writing process, a known gap of the
 * core (see the todo test below), not something a tier can close.
 */
async function restartUnderLoad(t: TestContext, kind: TierKind, instances: number): Promise<{ stale: number; quarantinedStale: number }> {
  const history = new History();
  let ledger: StoreLedger | undefined;
  const r = await rig(kind, instances, (store) => (ledger = new StoreLedger(store, () => history.now())));
  try {
    const keys = ['a', 'b', 'c'];
    let running = true;
    let longestReadMs = 0;
    const phase = { name: 'up' as 'up' | 'down' | 'back', writesWhileDown: 0, readsWhileDown: 0 };
    const writerOf = new Map<string, number>();
    const quarantines: { instance: number; key: string; at: number }[] = [];
    r.caches.forEach((cache, instance) => cache.events.on('key-quarantined', ({ key }) => quarantines.push({ instance, key, at: history.now() })));
    const worker = async (writer: number): Promise<void> => {
      let seq = 0;
      for (let turn = 0; running; turn++) {
        const instance = turn % r.users.length;
        const users = r.users[instance]!;
        const key = keys[Math.floor(Math.random() * keys.length)]!;
        const down = phase.name === 'down';
        if (Math.random() < 0.3) {
          const value = written(writer, ++seq);
          writerOf.set(tagOf(value)!, instance);
          await history.set(key, value, () => users.set(key, value));
          if (down) phase.writesWhileDown++;
        } else {
          const started = performance.now();
          await history.read(key, `get in instance ${instance}`, () => users.get(key));
          longestReadMs = Math.max(longestReadMs, performance.now() - started);
          if (down) phase.readsWhileDown++;
        }
        await sleep(1);
      }
    };
    for (const [i, key] of keys.entries()) await history.set(key, written(0, i), () => r.users[0]!.set(key, written(0, i)));
    const load = Promise.all([1, 2, 3, 4].map(worker));
    await waitFor(() => hits(r.caches) > 50, 10_000, 'cache hits before the outage');

    phase.name = 'down';
    await r.server.kill();
    // Down until enough load ran against the outage (tier calls fail until the breaker opens).
    await waitFor(() => phase.readsWhileDown >= 30 && phase.writesWhileDown >= 10, 30_000, 'load while Redis is down');
    await r.server.restart();
    phase.name = 'back';
    const hitsAtRestart = hits(r.caches);
    const restartedAt = performance.now();
    await waitFor(() => hits(r.caches) > hitsAtRestart + 50, 20_000, 'cache hits again after Redis came back');
    const backAfterMs = performance.now() - restartedAt;
    await sleep(200);
    running = false;
    await load;

    const violations = checkReads(history, ledger!, { noDirtyReads: true });
    const quarantinedDuring = (message: string): boolean => {
      const tag = /but set (\S+) \(v/.exec(message)?.[1];
      const write = history.writes.find((w) => w.tag === tag);
      const instance = tag === undefined ? undefined : writerOf.get(tag);
      return write !== undefined && quarantines.some((q) => q.instance === instance && q.key === write.key && q.at > write.invokedAt && q.at < write.respondedAt);
    };
    const stale = violations.filter((v) => v.kind === 'stale');
    const quarantinedStale = stale.filter((v) => quarantinedDuring(v.message)).length;
    t.diagnostic(
      `${kind} tier, ${instances} instance(s): ${history.reads.length} reads, ${history.writes.length} writes (${phase.readsWhileDown} reads and ${phase.writesWhileDown} writes while Redis was down), ` +
        `longest read ${Math.round(longestReadMs)} ms, hits again ${Math.round(backAfterMs)} ms after the restart, stale reads ${stale.length} (${quarantinedStale} after a write quarantined in another instance), other violations ${violations.length - stale.length}`,
    );
    assert.ok(phase.readsWhileDown > 0 && phase.writesWhileDown > 0, 'the load ran while Redis was down');
    assert.deepEqual(
      violations.filter((v) => v.kind !== 'stale' || !quarantinedDuring(v.message)).slice(0, 10),
      [],
      'no stale read (but after a write quarantined by another process), no dirty or failed read, no failed write',
    );
    assert.ok(longestReadMs < 10_000, `a read hung for ${longestReadMs} ms`);
    assert.deepEqual(unhandled, []);
    return { stale: stale.length, quarantinedStale };
  } finally {
    await r.close();
  }
}

if (skip) {
  test('the Redis restart tests need PostgreSQL and redis-server', { skip }, () => undefined);
} else {
  describe('Redis stopped and restarted under load (contracts 3 and 6)', () => {
    test('redisTier: reads served from the database while down, writes commit, hits again after the restart', async (t) => {
      const { stale } = await restartUnderLoad(t, 'redis', 1);
      assert.equal(stale, 0);
    });
    test('twoTier: the same, and the L1 serves no stale copy across the outage', async (t) => {
      const { stale } = await restartUnderLoad(t, 'two', 1);
      assert.equal(stale, 0);
    });
    test('twoTier, two instances: no stale read but after a write whose cache step failed in the other instance', async (t) => {
      await restartUnderLoad(t, 'two', 2);
    });

    test('a write whose cache step fails in one process is not reported done while another process can still read the old copy', async () => {
      const r = await rig('redis', 2);
      try {
        const [a, b] = r.users as [Collection<Written>, Collection<Written>];
        await a.set('k', written(1, 1));
        assert.equal(tagOf(await b.get('k')), '1.1');
        // Process a loses its connection to Redis; b keeps its own.
        r.clients[0]!.disconnect();
        // The database commits, but Redis still holds 1.1 for b: the write must not resolve.
        await assert.rejects(a.set('k', written(1, 2)), (error: unknown) => isCachewiseError(error, 'E_TIER_UNAVAILABLE') && (error.details as { committed?: boolean }).committed === true);
        // a itself never serves the old copy: the key is quarantined there, reads go to the database.
        assert.equal(tagOf(await a.get('k')), '1.2');
      } finally {
        await r.close();
      }
    });
  });

  describe('Redis restarted empty: no version regression (contract 1)', () => {
    /**
     * An empty Redis holds nothing that could refuse the older version: the write read the tier's
     * generation before it committed, the restart lost the generation marker, so its cache step
     * is refused and tombstones the key at its version instead of caching it.
     */
    for (const kind of ['redis', 'two'] as const) {
      test(`${kind === 'two' ? 'twoTier' : 'redisTier'}: an older write whose cache step comes after the restart does not bring its version back`, async () => {
        let held: HeldStore | undefined;
        const r = await rig(kind, 2, (store) => (held = new HeldStore(store)));
        try {
          const [a, b] = r.users as [Collection<Written>, Collection<Written>];
          await a.set('k', written(1, 1));
          await a.set('other', written(1, 100));
          // The older write commits in the database; its answer, and so its cache step, comes late.
          const hold = held!.holdNext('write');
          const older = a.set('k', written(1, 2)).then(
            (result) => result,
            (error: unknown) => ({ version: Number.NaN, error }),
          );
          await hold.reached;
          // A later millisecond: versions are hybrid-clock times, and b has not seen a's version.
          await sleep(2);
          const newer = await b.set('k', written(2, 1));
          assert.equal(tagOf(await b.get('k')), '2.1');
          const hitsBefore = hits(r.caches);
          await r.server.restart();
          // The cache answers again (another key), and nothing has read 'k' since the restart.
          await waitFor(async () => {
            await a.get('other');
            await b.get('other');
            return hits(r.caches) > hitsBefore;
          }, 20_000, 'the cache to answer again');
          hold.release();
          const olderResult = await older;
          assert.ok(olderResult.version < newer.version, `the older write resolved: ${JSON.stringify(olderResult)}`);
          for (const users of [a, b]) {
            for (let i = 0; i < 3; i++) assert.equal(tagOf(await users.get('k')), '2.1', 'the newer write stays');
          }
        } finally {
          await r.close();
        }
      });
    }

    test('a cache created after the restart writes newer versions than any before it', async () => {
      const r = await rig('redis', 1);
      try {
        const before = await r.users[0]!.set('k', written(1, 1));
        await r.server.restart();
        const later = await createCache({ store: postgresStore({ connectionString: DATABASE_URL, schema: schemas.at(-1)! }), tier: redisTier({ url: r.server.url, prefix: 'later:' }) });
        try {
          const users = later.collection<Written>('users', { write: 'through', read: 'through' });
          assert.equal(tagOf(await users.get('k')), '1.1');
          const after = await users.set('k', written(2, 1));
          assert.ok(after.version > before.version);
        } finally {
          await later.close();
        }
      } finally {
        await r.close();
      }
    });
  });
}
