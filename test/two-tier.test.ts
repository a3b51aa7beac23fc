/**
 * twoTier over the real Redis: the Tier conformance suite, then what instances sharing an L2 must
 * see (contract 3 across instances): once a write resolved in one instance, a read in any other
 * returns that version or newer, at once, without waiting for anything; also when the other's bus
 * connection was dropped, when it stopped reading its connection (a frozen process), and when the
 * L2 write failed. Then the same on a 3-master Redis Cluster that this file starts (sharded
 * pub/sub), also while the bus's slot moves to another master. Every test closes the instances
 * and connections it opened.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import { createCache, memoryTier } from '../src/index.js';
import { redisBus } from '../src/tiers/redis-bus.js';
import { redisTier } from '../src/tiers/redis-tier.js';
import type { Tier, TierEntry } from '../src/tiers/tier.js';
import { tierConformance } from './conformance/tier-conformance.js';
import { FaultyTier } from './helpers/faulty-tier.js';
import { HeldStore } from './helpers/held-store.js';
import { addReplica, isMaster, moveSlot, ownerOf } from './helpers/cluster-layout.js';
import { skipUnlessRedisServer, startRedisCluster, startRedisServer, type RedisClusterHandle, type RedisServer } from './helpers/redis-servers.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';
import { tempSqlite } from './helpers/sqlite.js';
import { deleteKeys, redisClient, TwoTierGroup, waitFor, type TwoTierInstance } from './helpers/two-tier-instances.js';

const skip = await skipUnless('redis');
const runPrefix = `cw-test-2t-${randomBytes(5).toString('hex')}:`;
let groups = 0;

/** A group of instances on the shared Redis under a prefix of its own. */
function group(url = REDIS_URL): TwoTierGroup {
  return new TwoTierGroup(url, `${runPrefix}${++groups}:`);
}

async function withGroup(run: (g: TwoTierGroup) => Promise<void>, url = REDIS_URL): Promise<void> {
  const g = group(url);
  try {
    await run(g);
  } finally {
    await g.close();
  }
}

const value = (version: number, v: unknown = version): TierEntry => ({ kind: 'value', version, value: v, freshUntil: Date.now() + 60_000, staleUntil: Date.now() + 60_000 });
const valueOf = (entry: TierEntry | undefined): unknown => (entry?.kind === 'value' ? entry.value : undefined);
const l1Of = (i: TwoTierInstance): Tier => (i.tier as unknown as { l1: Tier }).l1;

/** Wraps an L2 so that the next `operation` on `key` answers only when released (after it ran). */
function holdingL2(operation: 'get' | 'set', key: string) {
  let hold: Promise<void> | undefined;
  let release = () => undefined as void;
  let arrive = () => undefined as void;
  let reached = Promise.resolve();
  const wrap = (l2: Tier): Tier =>
    new Proxy(l2, {
      get(target, property) {
        const member = Reflect.get(target, property) as unknown;
        if (typeof member !== 'function') return member;
        const call = (member as (...args: unknown[]) => Promise<unknown>).bind(target);
        if (property !== operation) return call;
        return async (...args: unknown[]) => {
          const result = await call(...args);
          const waiting = hold;
          if (args[0] === key && waiting !== undefined) {
            hold = undefined;
            arrive();
            await waiting;
          }
          return result;
        };
      },
    });
  return {
    wrap,
    holdNext(): void {
      hold = new Promise<void>((resolve) => (release = resolve));
      reached = new Promise<void>((resolve) => (arrive = resolve));
    },
    get reached(): Promise<void> {
      return reached;
    },
    release: () => release(),
  };
}

/**
 * Resolves once `instance` serves `key` at `version` from its L1: a read through L2 refills L1
 * while the bus trusts it (a stalled event loop may cost it that trust for a moment).
 */
async function l1Serves(instance: TwoTierInstance, key: string, version: number): Promise<void> {
  await waitFor(
    async () => {
      await instance.tier.get(key);
      return (await l1Of(instance).get(key))?.version === version;
    },
    5_000,
    `L1 to hold version ${version} of ${key} again`,
  );
}

/** One instance of `g` for the Tier conformance suite; its clean-up closes the group. */
async function conformanceFixture(g: TwoTierGroup) {
  const { tier } = g.instance();
  await g.ready();
  return {
    tier,
    now: () => Date.now(),
    cleanup: async () => {
      await tier.clear();
      await g.close();
    },
  };
}

after(async () => {
  if (skip) return;
  await deleteKeys(REDIS_URL, runPrefix);
});

if (skip) {
  test('twoTier suites need Redis', { skip }, () => undefined);
} else {
  tierConformance('twoTier (memory L1 over Redis L2)', () => conformanceFixture(group()));

  describe('twoTier across instances (contracts 1 and 3)', () => {
    test('a write resolved in one instance is what the others read next, at once', () =>
      withGroup(async (g) => {
        const [a, b, c] = [g.instance(), g.instance(), g.instance()];
        await g.ready();
        let version = 0;
        for (let round = 0; round < 30; round++) {
          for (const reader of [b, c]) await reader.tier.get('c:k'); // keep the old copy in their L1
          const writer = [a, b, c][round % 3]!;
          version++;
          await writer.tier.set('c:k', value(version, `v${version}`));
          for (const reader of [a, b, c]) assert.equal(valueOf(await reader.tier.get('c:k')), `v${version}`, `round ${round}`);
        }
        assert.equal(valueOf(await l1Of(b).get('c:k')), `v${version}`, 'the readers did keep copies in their L1');
        await a.tier.invalidate('c:k', version + 1, 60_000);
        assert.equal((await b.tier.get('c:k'))?.kind, 'tombstone');
        assert.equal((await c.tier.get('c:k'))?.kind, 'tombstone');
      }));

    test('an L2 read that started before a write cannot put the old copy into L1 after the invalidation', () =>
      withGroup(async (g) => {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        // b's read of L2 and a's write race; whatever the order, b ends up serving 'two'.
        for (let version = 2; version < 40; version++) {
          const read = b.tier.get('c:k');
          await a.tier.set('c:k', value(version, `v${version}`));
          await read;
          assert.equal(valueOf(await b.tier.get('c:k')), `v${version}`);
        }
      }));

    test('an L2 read overtaken by an invalidation stays out of L1 even when L1 evicted the tombstone', () =>
      withGroup(async (g) => {
        const held = holdingL2('get', 'c:k');
        const l1 = memoryTier({ maxEntries: 1 });
        const [a, b] = [g.instance(), g.instance({ l1, wrapL2: held.wrap })];
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        held.holdNext();
        const read = b.tier.get('c:k');
        await held.reached;
        await a.tier.set('c:k', value(2, 'two'));
        assert.equal((await l1.get('c:k'))?.kind, 'tombstone');
        await a.tier.set('c:other', value(1, 'other'));
        await b.tier.get('c:other'); // L1 holds one entry: the tombstone of c:k goes
        assert.equal(await l1.get('c:k'), undefined);
        held.release();
        assert.equal(valueOf(await read), 'one', 'the read began before the write');
        assert.equal(valueOf(await b.tier.get('c:k')), 'two');
      }));

    test("a write whose L1 step an invalidation overtook still leaves no older copy in its instance's L1", () =>
      withGroup(async (g) => {
        const held = holdingL2('set', 'c:k');
        const [a, b] = [g.instance({ wrapL2: held.wrap }), g.instance()];
        await g.ready();
        await a.tier.set('c:k', value(2, 'two'));
        assert.equal(valueOf(await l1Of(a).get('c:k')), 'two');
        held.holdNext();
        const write = a.tier.set('c:k', value(3, 'three')); // applied in L2, its answer held
        await held.reached;
        await b.tier.invalidate('c:k', 1, 60_000); // an older invalidation reaches a meanwhile
        held.release();
        await write;
        assert.equal(valueOf(await a.tier.get('c:k')), 'three');
      }));

    test('a failed L2 write still invalidates the other instances before it is reported', () =>
      withGroup(async (g) => {
        let faulty: FaultyTier | undefined;
        const a = g.instance({ wrapL2: (l2) => (faulty = new FaultyTier(l2)) });
        const b = g.instance();
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'one');
        assert.equal(valueOf(await l1Of(b).get('c:k')), 'one', "in b's L1");
        faulty!.failing.add('set');
        await assert.rejects(a.tier.set('c:k', value(2, 'two')), /injected/);
        // No wait: the rejection came after b acknowledged.
        assert.equal((await l1Of(b).get('c:k'))?.kind, 'tombstone');
      }));

    test('a writer waits for an instance that stops reading its bus connection, until that instance distrusts its L1', () =>
      withGroup(async (g) => {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'one');
        // b's process stops reading its subscriber connection: no acknowledgement, no ping comes back.
        b.subscriber!.stream.pause();
        try {
          await a.tier.set('c:k', value(2, 'two'));
          assert.equal(valueOf(await b.tier.get('c:k')), 'two', 'b no longer serves its L1 copy of version 1');
          assert.equal(b.bus.connected, false);
        } finally {
          b.subscriber!.stream.resume();
        }
        await g.ready([b]);
        assert.equal(await l1Of(b).get('c:k'), undefined, 'L1 emptied when trust came back');
        assert.equal(valueOf(await b.tier.get('c:k')), 'two');
      }));

    test('a writer waits out the trust window of an instance whose window is longer than its own', () =>
      withGroup(async (g) => {
        const [a, b] = [g.instance({ trustWindow: '100ms' }), g.instance({ trustWindow: '900ms' })];
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'one');
        assert.equal(valueOf(await l1Of(b).get('c:k')), 'one', "in b's L1");
        b.subscriber!.stream.pause();
        try {
          await a.tier.set('c:k', value(2, 'two'));
          assert.equal(valueOf(await b.tier.get('c:k')), 'two', 'b no longer serves its L1 copy of version 1');
        } finally {
          b.subscriber!.stream.resume();
        }
        await g.ready([b]);
      }));

    test('an instance that cannot apply an invalidation stops trusting its L1 at once', () =>
      withGroup(async (g) => {
        const l1 = memoryTier();
        const invalidate = l1.invalidate.bind(l1);
        let failing = false;
        l1.invalidate = (key, version, ttlMs) => (failing ? Promise.reject(new Error('injected L1 failure')) : invalidate(key, version, ttlMs));
        const [a, b] = [g.instance(), g.instance({ l1 })];
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'one');
        failing = true;
        await a.tier.set('c:k', value(2, 'two'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'two');
        failing = false;
        await g.ready([b]);
        assert.equal(valueOf(await b.tier.get('c:k')), 'two');
      }));

    test('a closed instance leaves the member set, so writers stop waiting for it', () =>
      withGroup(async (g) => {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        const members = `${g.prefix}bus:members`;
        assert.equal(await a.client.zcard(members), 2);
        await b.tier.close();
        assert.equal(await a.client.zcard(members), 1);
        await a.tier.set('c:k', value(1, 'one'));
      }));

    test('a collection whose tierTimeout is not above the bus\'s acknowledgement wait is refused, naming the option', async () => {
      const sqlite = tempSqlite();
      const g = group();
      const cache = await createCache({ store: sqlite.store, tier: g.instance().tier });
      try {
        assert.throws(() => cache.collection('users', { write: 'through', read: 'through', tierTimeout: '300ms' }), (error: unknown) => {
          const e = error as { code?: string; message?: string };
          return e.code === 'E_INVALID_OPTION' && /tierTimeout/.test(e.message ?? '') && /acknowledgements/.test(e.message ?? '');
        });
        cache.collection('users', { write: 'through', read: 'through' }); // the default 1 s is above it
      } finally {
        await cache.close();
        await g.close();
        sqlite.cleanup();
      }
    });

    test('caches on twoTier: after a write-through set resolves in one instance, the others read it', async () => {
      const sqlite = tempSqlite();
      const g = group();
      const caches = await Promise.all([0, 1, 2].map(() => createCache({ store: sqlite.store, tier: g.instance().tier })));
      try {
        await g.ready();
        const users = caches.map((cache) => cache.collection<{ n: number }>('users', { write: 'through', read: 'through' }));
        const articles = caches.map((cache) => cache.collection<{ n: number }>('articles', { write: 'around', read: 'through' }));
        for (let n = 0; n < 20; n++) {
          await users[n % 3]!.set('u', { n });
          await articles[n % 3]!.set('a', { n });
          for (const reader of [0, 1, 2]) {
            assert.equal((await users[reader]!.get('u'))?.n, n, `write-through read ${n} in instance ${reader}`);
            assert.equal((await articles[reader]!.get('a'))?.n, n, `write-around read ${n} in instance ${reader}`);
          }
        }
      } finally {
        // The caches share one store: close it once, after the tiers.
        await Promise.allSettled(caches.map((cache) => cache.close()));
        await g.close();
        sqlite.cleanup();
      }
    });
  });

  describe('caches sharing Redis: a read that began after a write resolved in another instance sees it (contract 3)', () => {
    for (const kind of ['redisTier', 'twoTier'] as const) {
      test(`${kind}: such a read does not join a load of this instance that began before the write`, async () => {
        const sqlite = tempSqlite();
        const held = new HeldStore(sqlite.store);
        const g = group();
        const tierOf = (): Tier => (kind === 'twoTier' ? g.instance().tier : redisTier({ client: g.client(), prefix: g.prefix }));
        const [tierA, tierB] = [tierOf(), tierOf()];
        await g.ready();
        const a = await createCache({ store: sqlite.store, tier: tierA });
        const b = await createCache({ store: held, tier: tierB });
        try {
          const policy = { write: 'around', read: 'through' } as const;
          const [usersA, usersB] = [a.collection<{ n: number }>('users', policy), b.collection<{ n: number }>('users', policy)];
          await usersA.set('u', { n: 1 });
          const hold = held.holdNext('load');
          const before = usersB.get('u'); // b loads version 1; its answer is held
          await hold.reached;
          await usersA.set('u', { n: 2 });
          const after = usersB.get('u'); // began after the write resolved
          hold.release();
          assert.equal((await before)?.n, 1, 'began before the write');
          assert.equal((await after)?.n, 2, 'began after the write');
        } finally {
          await Promise.allSettled([a.close(), b.close()]);
          await g.close();
          sqlite.cleanup();
        }
      });
    }
  });

  const skipOwned = skipUnlessRedisServer();
  describe('twoTier when the bus connection drops (own redis-server)', { skip: skipOwned }, () => {
    const servers: RedisServer[] = [];
    after(async () => {
      await Promise.all(servers.map((s) => s.stop()));
    });

    test('a dropped bus connection empties L1 and bypasses it; no stale read before or after it is back', async () => {
      const server = await startRedisServer();
      servers.push(server);
      await withGroup(async (g) => {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        await a.tier.set('c:k', value(1, 'one'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'one');
        assert.equal((await l1Of(b).get('c:k'))?.version, 1);
        await server.command('CLIENT', 'KILL', 'TYPE', 'pubsub');
        await waitFor(() => !b.bus.connected, 5_000, "b's bus to see the drop");
        assert.equal(await l1Of(b).get('c:k'), undefined, 'L1 emptied when the bus dropped');
        // Messages sent while b's bus is down are lost; b must not serve from L1 meanwhile.
        await a.tier.set('c:k', value(2, 'two'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'two');
        await g.ready();
        await a.tier.set('c:k', value(3, 'three'));
        assert.equal(valueOf(await b.tier.get('c:k')), 'three');
        assert.equal(valueOf(await b.tier.get('c:k')), 'three');
        await l1Serves(b, 'c:k', 3);
      }, server.url);
    });
  });

  describe('twoTier on a 3-master Redis Cluster (a sharded pub/sub bus)', { skip: skipOwned }, () => {
    let cluster: RedisClusterHandle;
    before(async () => {
      cluster = await startRedisCluster({ masters: 3 });
    });
    after(async () => {
      await cluster?.stop();
    });
    /** A group of instances on the test cluster, under a prefix of its own. */
    const onCluster = (): TwoTierGroup => new TwoTierGroup('', `${runPrefix}${++groups}:`, cluster.startupNodes);
    async function withClusterGroup(run: (g: TwoTierGroup) => Promise<void>): Promise<void> {
      const g = onCluster();
      try {
        await run(g);
      } finally {
        await g.close();
      }
    }
    /** Write rounds in turn from each instance; every instance reads the newest version at once. */
    async function roundsHold(instances: readonly TwoTierInstance[], key: string, from: number, rounds: number): Promise<number> {
      let version = from;
      for (let round = 0; round < rounds; round++) {
        for (const reader of instances) await reader.tier.get(key); // keep the old copy in every L1
        version++;
        await instances[round % instances.length]!.tier.set(key, value(version, `v${version}`));
        for (const [i, reader] of instances.entries()) assert.equal(valueOf(await reader.tier.get(key)), `v${version}`, `version ${version}, instance ${i}`);
      }
      return version;
    }

    tierConformance('twoTier (memory L1 over Redis L2 on a Cluster)', () => conformanceFixture(onCluster()));

    test("the bus's member set and channels share one slot, and its subscription is on that slot's master", () =>
      withClusterGroup(async (g) => {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        const tag = `{${g.prefix}bus}`;
        const slots = await Promise.all([tag, `${tag}:members`, `${tag}:to:x`].map((name) => a.client.cluster('KEYSLOT', name)));
        assert.equal(new Set(slots).size, 1);
        assert.equal(await a.client.zcard(`${tag}:members`), 2);
        const { index } = await ownerOf(cluster.nodes, tag);
        const clients = await cluster.nodes[index]!.command('CLIENT', 'LIST', 'TYPE', 'pubsub');
        assert.equal(clients.match(/name=cachewise-bus/g)?.length, 2, clients);
        await roundsHold([a, b], 'c:k', 0, 6);
      }));

    test('a write resolved in one instance is what the others read next, at once', () =>
      withClusterGroup(async (g) => {
        const instances = [g.instance(), g.instance(), g.instance()];
        await g.ready();
        const keys = ['c:1', 'c:2', 'users:7', 'orders:{x}']; // in different slots
        for (const key of keys) await roundsHold(instances, key, 0, 9);
        assert.equal(valueOf(await l1Of(instances[1]!).get('c:1')), 'v9', 'the readers did keep copies in their L1');
      }));

    test('a subscription killed by the node empties L1 and bypasses it; the bus finds the master again', () =>
      withClusterGroup(async (g) => {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        let version = await roundsHold([a, b], 'c:k', 0, 3);
        assert.equal((await l1Of(b).get('c:k'))?.version, version);
        const { index } = await ownerOf(cluster.nodes, `{${g.prefix}bus}`);
        await cluster.nodes[index]!.command('CLIENT', 'KILL', 'TYPE', 'pubsub');
        await waitFor(() => !b.bus.connected, 5_000, "b's bus to see the drop");
        assert.equal(await l1Of(b).get('c:k'), undefined, 'L1 emptied when the bus dropped');
        version++;
        await a.tier.set('c:k', value(version, `v${version}`));
        assert.equal(valueOf(await b.tier.get('c:k')), `v${version}`);
        await g.ready();
        version = await roundsHold([a, b], 'c:k', version, 3);
        await l1Serves(b, 'c:k', version);
      }));

    test("while the bus's slot moves to another master, no instance reads a stale copy; afterwards the bus works from the new master", () =>
      withClusterGroup(async (g) => {
        const instances = [g.instance(), g.instance(), g.instance()];
        await g.ready();
        const tag = `{${g.prefix}bus}`;
        let version = await roundsHold(instances, 'c:k', 0, 3);
        const { slot, index } = await ownerOf(cluster.nodes, tag);
        const to = (index + 1) % cluster.nodes.length;
        let moving = true;
        const moved = moveSlot(cluster.nodes, slot, index, to).finally(() => (moving = false));
        let roundsDuring = 0;
        while (moving) {
          version = await roundsHold(instances, 'c:k', version, 1);
          roundsDuring++;
        }
        await moved;
        assert.equal((await ownerOf(cluster.nodes, tag)).index, to);
        await g.ready(instances, 15_000);
        version = await roundsHold(instances, 'c:k', version, 6);
        await l1Serves(instances[2]!, 'c:k', version);
        const clients = await cluster.nodes[to]!.command('CLIENT', 'LIST', 'TYPE', 'pubsub');
        assert.equal(clients.match(/name=cachewise-bus/g)?.length, 3, `every subscription on the new master (${roundsDuring} rounds ran during the move)`);
      }));

    test('an instance whose subscription stops delivering (its pings do not come back) renews it, and trusts its L1 again', () =>
      withClusterGroup(async (g) => {
        const [a, b] = [g.instance({ trustWindow: '100ms' }), g.instance({ trustWindow: '100ms' })];
        await g.ready();
        let version = await roundsHold([a, b], 'c:k', 0, 3);
        // b's process stops reading its subscription; the connection itself stays open.
        const link = (b.bus as unknown as { link: { current: Redis | undefined } }).link;
        const first = link.current!;
        first.stream.pause();
        await waitFor(() => !b.bus.connected, 5_000, "b's bus to distrust its L1");
        version++;
        await a.tier.set('c:k', value(version, `v${version}`));
        assert.equal(valueOf(await b.tier.get('c:k')), `v${version}`, 'b no longer serves its L1 copy');
        await g.ready([b], 10_000);
        assert.notEqual(link.current, first, 'a new subscription');
        await waitFor(() => first.status === 'end', 5_000, 'the silent connection to be closed');
        version = await roundsHold([a, b], 'c:k', version, 3);
        await l1Serves(b, 'c:k', version);
      }));

    test('the renewal watchdog does not wait for a heartbeat that hangs: a silent subscription is renewed while the heartbeat script has not answered', () =>
      withClusterGroup(async (g) => {
        const [a, b] = [g.instance({ trustWindow: '100ms' }), g.instance({ trustWindow: '100ms' })];
        await g.ready();
        let version = await roundsHold([a, b], 'c:k', 0, 3);
        const bus = b.bus as unknown as { link: { current: Redis | undefined }; scripts: { heartbeat: { sha: string } } };
        const first = bus.link.current!;
        // b's heartbeat script hangs until the test lets it go, and its subscription goes silent.
        let letGo!: () => void;
        const released = new Promise<void>((resolve) => (letGo = resolve));
        const client = b.client as unknown as { evalsha: (sha: string, ...rest: unknown[]) => Promise<unknown> };
        const evalsha = client.evalsha;
        let hung = 0;
        client.evalsha = function (this: unknown, sha: string, ...rest: unknown[]) {
          if (sha !== bus.scripts.heartbeat.sha) return evalsha.call(this, sha, ...rest);
          hung++;
          return released.then(() => evalsha.call(this, sha, ...rest));
        };
        first.stream.pause();
        try {
          await waitFor(() => bus.link.current !== first, 10_000, 'a new subscription while the heartbeat hangs');
          assert.equal(hung, 1, 'one heartbeat hung; the next ones waited for it, and the watchdog did not');
        } finally {
          letGo();
          client.evalsha = evalsha;
        }
        await g.ready([b], 10_000);
        version = await roundsHold([a, b], 'c:k', version, 3);
        await l1Serves(b, 'c:k', version);
      }));

    test('behind address translation (the nodes announce ports nobody listens on), the bus subscribes through the Cluster\'s natMap', async () => {
      // Ports 1 to 3 on loopback refuse connections: a client that ignored natMap could not connect.
      const announced = [1, 2, 3];
      const own = await startRedisCluster({ masters: 3, announcePorts: announced });
      const natMap = Object.fromEntries(own.nodes.map((node, i) => [`${node.host}:${announced[i]}`, { host: node.host, port: node.port }]));
      const g = new TwoTierGroup('', `${runPrefix}${++groups}:`, own.startupNodes, natMap);
      try {
        const [a, b] = [g.instance(), g.instance()];
        await g.ready();
        const ranges = await a.client.cluster('SLOTS');
        assert.ok(ranges.every(([, , master]) => announced.includes(Number(master?.[1]))), `the cluster announces the translated ports: ${JSON.stringify(ranges)}`);
        const slot = await a.client.cluster('KEYSLOT', `{${g.prefix}bus}`);
        const owner = ranges.find(([first, last]) => first <= slot && slot <= last)!;
        const index = announced.indexOf(Number(owner[2]?.[1]));
        const clients = await own.nodes[index]!.command('CLIENT', 'LIST', 'TYPE', 'pubsub');
        assert.equal(clients.match(/name=cachewise-bus/g)?.length, 2, clients);
        await roundsHold([a, b], 'c:k', 0, 6);
      } finally {
        await g.close();
        await own.stop();
      }
    });

    test("after the master of the bus's slot is killed and its replica takes over, the bus subscribes on the new master; no stale read", async () => {
      // A cluster of its own: this test kills one of its masters.
      const own = await startRedisCluster({ masters: 3 });
      let replica: RedisServer | undefined;
      const g = new TwoTierGroup('', `${runPrefix}${++groups}:`, own.startupNodes);
      try {
        const instances = [g.instance(), g.instance(), g.instance()];
        await g.ready();
        const tag = `{${g.prefix}bus}`;
        const { index } = await ownerOf(own.nodes, tag);
        // A key on another master, so that L2 answers while the bus's master is down.
        let key = 'c:0';
        for (let n = 1; (await ownerOf(own.nodes, key)).index === index; n++) key = `c:${n}`;
        let version = await roundsHold(instances, key, 0, 3);
        replica = await addReplica(own.nodes, index);
        await own.nodes[index]!.kill();
        await waitFor(() => instances.every((i) => !i.bus.connected), 5_000, 'every bus to see its subscription gone');
        // Until the replica takes over, a write reaches L2 but not the bus (it rejects), and an
        // instance whose bus lost its subscription serves no L1 copy: its reads find the new
        // version. (One whose bus is back may serve its copy of a write that did not resolve.)
        for (let round = 0; round < 3 && !(await isMaster(replica)); round++) {
          version++;
          await instances[round]!.tier.set(key, value(version, `v${version}`)).catch(() => undefined);
          for (const [i, reader] of instances.entries()) {
            if (reader.bus.connected) continue;
            assert.equal(valueOf(await reader.tier.get(key)), `v${version}`, `during the failover, version ${version}, instance ${i}`);
          }
        }
        await waitFor(() => isMaster(replica!), 20_000, 'the replica to take over');
        await g.ready(instances, 20_000);
        version = await roundsHold(instances, key, version, 6);
        await l1Serves(instances[1]!, key, version);
        const clients = await replica.command('CLIENT', 'LIST', 'TYPE', 'pubsub');
        assert.equal(clients.match(/name=cachewise-bus/g)?.length, 3, 'every subscription on the new master');
      } finally {
        await g.close();
        await replica?.stop();
        await own.stop();
      }
    });

    test('a subscription sent to a master that does not own the slot (MOVED) is made again on the owner', () =>
      withClusterGroup(async (g) => {
        const bus = redisBus({ publisher: g.clusterClient(), channel: `${g.prefix}bus` });
        try {
          // The first answer to "who owns the slot" is out of date, as during a resharding.
          const { index } = await ownerOf(cluster.nodes, `{${g.prefix}bus}`);
          const wrong = cluster.nodes[(index + 1) % cluster.nodes.length]!;
          const link = (bus as unknown as { link: { owner(): Promise<{ host: string; port: number }> } }).link;
          const owner = link.owner.bind(link);
          let asked = 0;
          link.owner = () => (++asked === 1 ? Promise.resolve({ host: wrong.host, port: wrong.port }) : owner());
          await bus.subscribe(() => undefined, () => undefined).catch(() => undefined);
          await waitFor(() => bus.connected, 10_000, 'the bus to subscribe on the owner');
          assert.ok(asked >= 2, 'asked again after MOVED');
        } finally {
          await bus.close();
        }
      }));

    test('a bus on a Cluster refuses a subscriber connection of its own, and a publisher with a keyPrefix, naming the option', () =>
      withClusterGroup(async (g) => {
        const client = g.clusterClient();
        const subscriber = redisClient(REDIS_URL);
        const prefixed = new Cluster([...cluster.startupNodes], { lazyConnect: true, keyPrefix: 'app:' });
        const refused = (option: RegExp) => (error: unknown) => (error as { code?: string }).code === 'E_INVALID_OPTION' && option.test((error as Error).message);
        try {
          assert.throws(() => redisBus({ publisher: client, subscriber, channel: `${g.prefix}bus` }), refused(/"subscriber"/));
          assert.throws(() => redisBus({ publisher: prefixed, channel: `${g.prefix}bus` }), refused(/keyPrefix/));
        } finally {
          subscriber.disconnect();
          prefixed.disconnect();
        }
      }));
  });
}
