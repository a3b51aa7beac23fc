/**
 * redisTier against real servers: the Tier conformance suite on the shared Redis and on a
 * 3-master Redis Cluster that this file starts, then what is specific to Redis (key layout,
 * TTLs, scripts after SCRIPT FLUSH, prototype-safe JSON, prefix-scoped clear, client ownership,
 * outage and eviction policy). Servers that a test must flush, stop or configure are its own,
 * never the shared one.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { ManualClock } from '../src/clock.js';
import { isCachewiseError } from '../src/errors.js';
import { REDIS_SCRIPTS } from '../src/tiers/redis-scripts.js';
import { redisEvictionPolicy, redisTier, type RedisClient, type RedisTierOptions } from '../src/tiers/redis-tier.js';
import { CLUSTER_SLOTS, SlotGenerations, slotTags } from '../src/tiers/redis-slot-generations.js';
import type { Tier, TierEntry } from '../src/tiers/tier.js';
import { tierConformance } from './conformance/tier-conformance.js';
import { generationsRead } from './helpers/cluster-generations.js';
import {
  ownedRedisPids,
  redisServerPidsOnMachine,
  skipUnlessRedisServer,
  startRedisCluster,
  startRedisServer,
  stopAllRedisServers,
  type RedisClusterHandle,
  type RedisServer,
} from './helpers/redis-servers.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';

const skip = await skipUnless('redis');

if (skip) {
  test('redisTier suites need Redis', { skip }, () => undefined);
} else {
  registerSuites(skipUnlessRedisServer());
}

function registerSuites(skipOwned: false | string): void {
  /** Every key this run writes to the shared Redis starts with it; removed by teardown(). */
  const runPrefix = `cw-test-${randomBytes(6).toString('hex')}:`;
  let prefixes = 0;
  const nextPrefix = () => `${runPrefix}${++prefixes}:`;
  const clients: RedisClient[] = [];
  const startedPids = new Set<number>();

  function connect(url = REDIS_URL, options: RedisOptions = {}): Redis {
    const client = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 2000, ...options });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  }

  let sharedClient: Redis | undefined;
  /** The application's client on the shared Redis (no auto-pipelining: getMany/setMany use a pipeline). */
  const shared = () => (sharedClient ??= connect());

  async function ownServer(args: string[] = []): Promise<RedisServer> {
    const server = await startRedisServer({ args });
    startedPids.add(server.pid!);
    return server;
  }

  let clusterStart: Promise<{ handle: RedisClusterHandle; client: Cluster }> | undefined;
  /** The test cluster, started on first use and shared by the cluster tests. */
  function cluster(): Promise<{ handle: RedisClusterHandle; client: Cluster }> {
    clusterStart ??= (async () => {
      const handle = await startRedisCluster({ masters: 3 });
      for (const node of handle.nodes) startedPids.add(node.pid!);
      const client = new Cluster([...handle.startupNodes], { enableAutoPipelining: true, redisOptions: { commandTimeout: 2000 } });
      client.on('error', () => undefined);
      clients.push(client);
      return { handle, client };
    })();
    return clusterStart;
  }

  /** Removes this run's keys from the shared Redis, quits every client, stops every owned server. */
  async function teardown(): Promise<void> {
    if (sharedClient !== undefined && sharedClient.status === 'ready') {
      const keys = await keysMatching(sharedClient, `${runPrefix}*`);
      if (keys.length > 0) await sharedClient.unlink(...keys);
    }
    await Promise.all(clients.splice(0).map((client) => client.quit().catch(() => client.disconnect())));
    await stopAllRedisServers();
  }

  after(teardown);

  const value = (version: number, v: unknown = version, now = Date.now(), ttl = 60_000): TierEntry => ({
    kind: 'value',
    version,
    value: v,
    freshUntil: now + ttl,
    staleUntil: now + ttl,
  });

  tierConformance('redisTier on a single Redis', async () => {
    const tier = redisTier({ client: shared(), prefix: nextPrefix() });
    return { tier, now: () => Date.now(), cleanup: () => clearAndClose(tier) };
  });

  tierConformance('redisTier from a url (its own auto-pipelined client)', async () => {
    const tier = redisTier({ url: REDIS_URL, prefix: nextPrefix() });
    return { tier, now: () => Date.now(), cleanup: () => clearAndClose(tier) };
  });

  describe('redisTier on a single Redis', () => {
    test('kind and capabilities: shared, not in-process, invalidates, evicts unless told otherwise', () => {
      const tier = redisTier({ client: shared(), prefix: nextPrefix() });
      assert.equal(tier.kind, 'redis');
      assert.deepEqual({ ...tier.capabilities }, { inProcess: false, shared: true, invalidate: true, evicts: true, getTimeoutMs: 2000 });
      assert.equal(redisTier({ client: shared(), evicts: false }).capabilities.evicts, false);
    });

    test("reads are bounded by the client's commandTimeout when it has one (getTimeoutMs), never on a Cluster", async () => {
      assert.equal(redisTier({ client: connect(REDIS_URL, { commandTimeout: 300 }) }).capabilities.getTimeoutMs, 300);
      assert.equal(redisTier({ client: connect(REDIS_URL, { commandTimeout: undefined }) }).capabilities.getTimeoutMs, undefined);
      const url = redisTier({ url: REDIS_URL, prefix: nextPrefix() });
      assert.equal(url.capabilities.getTimeoutMs, 1000, 'the default of a client made from a url');
      await url.close();
      const lazyCluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true, redisOptions: { commandTimeout: 300 } });
      assert.equal(redisTier({ client: lazyCluster }).capabilities.getTimeoutMs, undefined);
      lazyCluster.disconnect();
    });

    test('an entry is the string <prefix>{key}: a header line, then the value JSON; its lease is <prefix>{key}:lease', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      const now = Date.now();
      await tier.set('users:42', { kind: 'value', version: 3, value: { name: 'Ada' }, freshUntil: now + 1000, staleUntil: now + 60_000 });
      await tier.invalidate('users:44', 9, 60_000);
      const lease = await tier.lease('users:43', 60_000);
      const redis = shared();
      assert.equal(await redis.type(`${prefix}{users:42}`), 'string');
      assert.equal(await redis.get(`${prefix}{users:42}`), `value 3 ${now + 1000} ${now + 60_000}\n{"name":"Ada"}`);
      assert.match((await redis.get(`${prefix}{users:44}`))!, /^tombstone 9 \d+ \d+\n$/, 'a tombstone has no value');
      assert.equal(await redis.get(`${prefix}{users:43}:lease`), lease.token);
    });

    test('every entry expires at its staleUntil; tombstones after their ttl; leases after theirs', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      const redis = shared();
      await tier.set('c:a', value(1, 'a', Date.now(), 30_000));
      await tier.invalidate('c:b', 4, 5_000);
      await tier.lease('c:c', 2_000);
      await tier.set('c:forever', { kind: 'absent', version: 1, freshUntil: Infinity, staleUntil: Infinity });
      const ttlA = await redis.pttl(`${prefix}{c:a}`);
      const ttlB = await redis.pttl(`${prefix}{c:b}`);
      const ttlLease = await redis.pttl(`${prefix}{c:c}:lease`);
      assert.ok(ttlA > 25_000 && ttlA <= 30_000, `entry PTTL ${ttlA}`);
      assert.ok(ttlB > 0 && ttlB <= 5_000, `tombstone PTTL ${ttlB}`);
      assert.ok(ttlLease > 0 && ttlLease <= 2_000, `lease PTTL ${ttlLease}`);
      assert.equal(await redis.pttl(`${prefix}{c:forever}`), -1, 'staleUntil Infinity: no expiry');
      assert.equal((await tier.get('c:forever'))?.staleUntil, Infinity);
    });

    test("an entry past staleUntil on the tier's clock reads as a miss, as in the memory tier", async () => {
      const clock = new ManualClock(Date.now());
      const tier = redisTier({ client: shared(), prefix: nextPrefix(), clock });
      await tier.set('c:a', { kind: 'value', version: 1, value: 1, freshUntil: clock.now() + 100, staleUntil: clock.now() + 200 });
      clock.advance(150);
      assert.equal((await tier.get('c:a'))?.version, 1, 'kept while stale');
      clock.advance(100);
      assert.equal(await tier.get('c:a'), undefined);
    });

    test('a value with __proto__ keys comes back as a plain own property, deeply frozen, and pollutes nothing', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      const hostile = JSON.parse('{"__proto__": {"polluted": true}, "list": [{"__proto__": {"deep": 1}}]}') as unknown;
      await tier.set('c:a', value(1, hostile));
      // The same text written by something else, straight into the entry:
      const until = Date.now() + 60_000;
      await shared().set(`${prefix}{c:b}`, `value 1 ${until} ${until}\n{"__proto__":{"isAdmin":true}}`);
      for (const key of ['c:a', 'c:b']) {
        const entry = await tier.get(key);
        assert.equal(entry?.kind, 'value');
        const got = (entry as { value: Record<string, unknown> }).value;
        assert.equal(Object.getPrototypeOf(got), Object.prototype);
        assert.ok(Object.hasOwn(got, '__proto__'), 'an own property named __proto__');
        assert.ok(Object.isFrozen(got) && Object.isFrozen(got['__proto__']), 'deeply frozen');
      }
      const a = (await tier.get('c:a')) as { value: { list: object[] } };
      assert.ok(Object.isFrozen(a.value.list) && Object.isFrozen(a.value.list[0]));
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal(({} as Record<string, unknown>).isAdmin, undefined);
    });

    test('an unreadable entry under the prefix reads as a miss and the next write replaces it', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      const until = String(Date.now() + 60_000);
      const unreadable = [
        `value not-a-number 0 ${until}\n1`,
        `value 3 0 ${until}\n{not json`,
        `value 3 0 ${until}`, // no header line
        `value  0 ${until}\n1`, // an empty version
        `value 3 0\n1`, // a field missing
        `absent 3\n 0 ${until}\n`, // a newline inside the header
        `other 3 0 ${until}\n1`, // an unknown kind
        '',
      ];
      const keys = unreadable.map((_, i) => `c:${i}`);
      await Promise.all(unreadable.map((text, i) => shared().set(`${prefix}{${keys[i]}}`, text)));
      assert.deepEqual(await tier.getMany(keys), keys.map(() => undefined));
      for (const key of keys) {
        assert.equal(await tier.get(key), undefined, key);
        assert.equal(await tier.set(key, value(10, 'fixed')), true, `${key}: replaced by a newer write`);
        assert.equal(((await tier.get(key)) as { value: unknown }).value, 'fixed');
      }
    });

    test('header numbers read as Number() reads them: whole numbers of any length, fractions, exponents, Infinity', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      const later = Date.now() + 3_600_000;
      const fields = [
        '0', '7', '0012', '123456789012345', '999999999999999', '1000000000000000', '9007199254740991', '12345678901234567890',
        `${later}.395`, `${later}.5e0`, '1e300', '-5', '+5', String(Number.MAX_SAFE_INTEGER),
      ];
      await shared().set(`${prefix}{c:inf}`, `value 1 ${later} Infinity\n"x"`);
      assert.equal((await tier.get('c:inf'))?.staleUntil, Infinity);
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(fc.constantFrom(...fields), fc.nat({ max: Number.MAX_SAFE_INTEGER }).map(String), fc.bigInt({ min: 0n, max: 10n ** 22n }).map(String), fc.double({ min: 0, max: 1e16, noNaN: true }).map(String)),
          fc.oneof(fc.constantFrom(...fields), fc.integer({ min: later, max: later * 2 }).map(String), fc.double({ min: later, max: later * 2, noNaN: true }).map(String)),
          async (version, fresh) => {
            await shared().set(`${prefix}{c:n}`, `value ${version} ${fresh} Infinity\n1`);
            const entry = await tier.get('c:n');
            assert.ok(entry !== undefined, `${version} ${fresh}`);
            assert.equal(entry.version, Number(version));
            assert.equal(entry.freshUntil, Number(fresh));
          },
        ),
        { numRuns: 200 },
      );
    });

    test('an entry of another type (a hash of the earlier layout) reads as a miss, and every script replaces it', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      const until = String(Date.now() + 60_000);
      const old = (key: string) => shared().hset(`${prefix}{${key}}`, 'k', 'value', 'v', '5', 'f', until, 's', until, 'd', '"old"');
      for (const key of ['c:get', 'c:set', 'c:invalidate', 'c:fill', 'c:remove']) await old(key);
      assert.equal(await tier.get('c:get'), undefined);
      assert.deepEqual(await tier.getMany(['c:get', 'c:set']), [undefined, undefined]);
      assert.equal(await tier.set('c:set', value(1, 'new')), true);
      assert.equal(((await tier.get('c:set')) as { value: unknown }).value, 'new');
      await tier.invalidate('c:invalidate', 2, 60_000);
      assert.deepEqual(await tier.get('c:invalidate').then((e) => [e?.kind, e?.version]), ['tombstone', 2]);
      const lease = await tier.lease('c:fill', 60_000);
      assert.equal(await tier.fill('c:fill', value(0, 'filled'), lease), true);
      assert.deepEqual(await tier.get('c:fill').then((e) => [e?.version, (e as { value?: unknown }).value]), [0, 'filled']);
      assert.equal(await tier.remove('c:remove', 5), false, 'nothing readable to remove');
    });

    test('versions up to Number.MAX_SAFE_INTEGER compare and round-trip exactly through the scripts', async () => {
      const tier = redisTier({ client: shared(), prefix: nextPrefix() });
      const top = Number.MAX_SAFE_INTEGER;
      assert.equal(await tier.set('c:a', value(top - 1)), true);
      assert.equal(await tier.set('c:a', value(top - 2)), false);
      assert.equal(await tier.set('c:a', value(top)), true);
      assert.equal((await tier.get('c:a'))?.version, top);
      await tier.invalidate('c:a', undefined, 60_000);
      assert.deepEqual(await tier.get('c:a').then((e) => [e?.kind, e?.version]), ['tombstone', top]);
      const lease = await tier.lease('c:a', 60_000);
      assert.equal(await tier.fill('c:a', value(0, 'unknown version'), lease), true);
      assert.equal((await tier.get('c:a'))?.version, top, 'version 0 adopts the exact cached version');
      assert.equal(await tier.remove('c:a', top - 1), false);
      assert.equal(await tier.remove('c:a', top), true);
    });

    test('concurrent misses in two processes share one lease, and a write through either revokes it', async () => {
      const prefix = nextPrefix();
      const one = redisTier({ client: shared(), prefix });
      const two = redisTier({ client: connect(), prefix }); // another connection, as another process has
      const [a, b] = await Promise.all([one.lease('c:a', 60_000), two.lease('c:a', 60_000)]);
      assert.equal(a.token, b.token);
      await two.set('c:a', value(5, 'written'));
      assert.equal(await one.fill('c:a', value(4, 'loaded before the write'), a), false);
      assert.equal(((await one.get('c:a')) as { value: unknown }).value, 'written');
    });

    test('a lease expires by the server clock; the next miss gets a new token', async () => {
      const tier = redisTier({ client: shared(), prefix: nextPrefix() });
      const first = await tier.lease('c:a', 30);
      await sleep(60);
      assert.equal(await tier.fill('c:a', value(1), first), false);
      const second = await tier.lease('c:a', 60_000);
      assert.notEqual(second.token, first.token);
      assert.equal(await tier.fill('c:a', value(1), second), true);
    });

    test('clear() deletes this prefix only, even beside a longer prefix and glob characters', async () => {
      const base = nextPrefix();
      const redis = shared();
      const mine = redisTier({ client: redis, prefix: `${base}a:` });
      const longer = redisTier({ client: redis, prefix: `${base}a:b:` });
      const globby = redisTier({ client: redis, prefix: `${base}*?[a]\\:` });
      for (const tier of [mine, longer, globby]) {
        await tier.set('c:1', value(1));
        await tier.lease('c:2', 60_000);
      }
      await redis.set(`${base}a:plain`, 'not the tier');
      await globby.clear();
      assert.equal(await globby.get('c:1'), undefined);
      assert.equal((await mine.get('c:1'))?.version, 1, 'a glob prefix matched literally');
      await mine.clear();
      assert.equal(await mine.get('c:1'), undefined);
      assert.equal(await redis.exists(`${base}a:{c:2}:lease`), 0, 'leases cleared too');
      assert.equal((await longer.get('c:1'))?.version, 1);
      assert.equal(await redis.exists(`${base}a:b:{c:2}:lease`), 1);
      assert.equal(await redis.get(`${base}a:plain`), 'not the tier');
    });

    test("clear() works through a client's own keyPrefix", async () => {
      const base = nextPrefix();
      const prefixed = connect(REDIS_URL, { keyPrefix: `${base}app:` });
      const tier = redisTier({ client: prefixed, prefix: 'cw:' });
      await tier.set('c:1', value(1));
      assert.equal(await shared().exists(`${base}app:cw:{c:1}`), 1);
      const other = redisTier({ client: shared(), prefix: `${base}other:` });
      await other.set('c:1', value(1));
      await tier.clear();
      assert.equal(await shared().exists(`${base}app:cw:{c:1}`), 0);
      assert.equal((await other.get('c:1'))?.version, 1);
    });

    test('getMany and setMany of many keys line up in one pipeline', async () => {
      const tier = redisTier({ client: shared(), prefix: nextPrefix() });
      const items = Array.from({ length: 500 }, (_, i) => ({ key: `c:${i}`, entry: value(i + 1) }));
      assert.ok((await tier.setMany(items)).every(Boolean));
      assert.deepEqual((await tier.setMany(items)).filter(Boolean), [], 'same versions are not newer');
      const versions = (await tier.getMany(items.map((item) => item.key).reverse())).map((entry) => entry?.version);
      assert.deepEqual(versions, items.map((item) => item.entry.version).reverse());
      assert.deepEqual(await tier.getMany([]), []);
      assert.deepEqual(await tier.setMany([]), []);
    });

    test('the generation is the id in <prefix>generation; a set begun before the marker was lost is refused and tombstones the key (contract 1)', async () => {
      const prefix = nextPrefix();
      const redis = shared();
      const tier = redisTier({ client: redis, prefix });
      await tier.get('c:warm');
      const before = tier.generation!();
      assert.equal(await redis.get(`${prefix}generation`), before, 'read (and created) when the tier was created');
      assert.equal(await redis.ttl(`${prefix}generation`), -1, 'the marker never expires');
      assert.equal(await tier.set('c:a', value(5), before), true);
      // What FLUSHALL, or a restart without persistence, does to this prefix; no reconnect.
      await redis.del(`${prefix}generation`, `${prefix}{c:a}`);
      assert.equal(await tier.set('c:a', value(4), before), false, 'nothing newer is left to compare with: refused');
      assert.match((await redis.get(`${prefix}{c:a}`))!, /^tombstone 4 0 \d+\n$/, 'tombstoned at its version instead');
      const after = await redis.get(`${prefix}generation`);
      assert.match(after!, /^t\d+\.\d+$/, 'the marker is back, with an id from the server clock');
      assert.equal(tier.generation!(), after, 'the refused set told the tier');
      assert.equal(await tier.set('c:a', value(6), after), true, 'a write begun in the new generation is cached');
      // Another process with the marker gone too learns it the same way.
      const other = redisTier({ client: connect(), prefix });
      await other.get('c:warm');
      assert.equal(other.generation!(), after);
      await Promise.all([tier.close(), other.close()]);
    });

    test("a marker the tier creates carries the server's clock: a read retried after the marker was lost cannot bring back the old id", async () => {
      const prefix = nextPrefix();
      const redis = shared();
      const marker = `${prefix}generation`;
      // The same call twice, as ioredis resends a command whose reply a dropped connection lost.
      const read = () => redis.eval(REDIS_SCRIPTS.generation.lua, 1, marker, 'gsame') as Promise<string>;
      const first = await read();
      assert.match(first, /^gsame\.\d+\.\d+$/);
      assert.equal(await read(), first, 'an existing marker is answered as it is');
      await redis.del(marker); // lost: a restart without persistence
      await sleep(2);
      const second = await read();
      assert.match(second, /^gsame\.\d+\.\d+$/);
      assert.notEqual(second, first);
    });

    test('a set under a generation is refused when another process already renewed the marker; older fills stay out', async () => {
      const prefix = nextPrefix();
      const tier = redisTier({ client: shared(), prefix });
      await tier.get('c:warm');
      const before = tier.generation!();
      await shared().set(`${prefix}generation`, 'gRenewedElsewhere');
      await tier.set('c:a', value(11)); // no generation: no check
      assert.deepEqual(await tier.setMany([{ key: 'c:a', entry: value(10), generation: before }, { key: 'c:b', entry: value(3), generation: before }]), [false, false]);
      assert.deepEqual((await tier.getMany(['c:a', 'c:b'])).map((e) => [e?.kind, e?.version]), [
        ['value', 11],
        ['tombstone', 3],
      ], 'a newer entry stays; a missing one is tombstoned at the refused version');
      assert.equal(tier.generation!(), 'gRenewedElsewhere');
      const lease = await tier.lease('c:b', 60_000);
      assert.equal(await tier.fill('c:b', value(2), lease), false, 'an older row does not fill over the tombstone');
      await tier.close();
    });

    test('a client that returns numbers as strings (stringNumbers) reads the same answers', async () => {
      const tier = redisTier({ client: connect(REDIS_URL, { stringNumbers: true }), prefix: nextPrefix() });
      assert.equal(await tier.set('c:a', value(2)), true);
      assert.equal(await tier.set('c:a', value(1)), false);
      assert.deepEqual(await tier.setMany([{ key: 'c:a', entry: value(3) }]), [true]);
      assert.equal(await tier.remove('c:a', 3), true);
      await tier.get('c:warm');
      assert.equal(await tier.set('c:a', value(4), tier.generation!()), true);
      assert.equal(await tier.set('c:a', value(4), 'gOther'), false);
      assert.notEqual(tier.generation!(), 'gOther');
    });

    test('without ioredis installed, a url tier fails with E_MISSING_DEPENDENCY and a passed client needs no import', () => {
      const program = [
        "import { redisTier } from './src/tiers/redis-tier.js';",
        "try { redisTier({ url: 'redis://127.0.0.1:6379' }); console.log('created'); } catch (error) { console.log(error.code); }",
        "console.log(redisTier({ client: { isCluster: false, defineCommand() {}, options: {} } }).kind);",
      ].join('\n');
      const hide = fileURLToPath(new URL('./helpers/without-ioredis.cjs', import.meta.url));
      const run = spawnSync(process.execPath, ['--require', hide, '--import', 'tsx', '--input-type=module', '-e', program], {
        cwd: fileURLToPath(new URL('..', import.meta.url)),
        encoding: 'utf8',
      });
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(run.stdout.trim().split('\n'), ['E_MISSING_DEPENDENCY', 'redis']);
    });

    test('a passed client stays open on close(); with ownsClient: true the tier quits it', async () => {
      const client = connect();
      await redisTier({ client, prefix: nextPrefix() }).close();
      assert.equal(await client.ping(), 'PONG');
      const owned = connect();
      await owned.ping();
      const ended = new Promise((resolve) => owned.once('end', resolve));
      await redisTier({ client: owned, prefix: nextPrefix(), ownsClient: true }).close();
      await ended;
      assert.equal(owned.status, 'end');
    });

    test('calls after close() fail with E_CLOSED; close() twice is harmless', async () => {
      const tier = redisTier({ client: shared(), prefix: nextPrefix() });
      await tier.close();
      await tier.close();
      await assert.rejects(tier.get('c:a'), (error) => isCachewiseError(error, 'E_CLOSED'));
      await assert.rejects(tier.set('c:a', value(1)), (error) => isCachewiseError(error, 'E_CLOSED'));
    });

    test('bad options get E_INVALID_OPTION naming the option', () => {
      const bad: [string, unknown][] = [
        ['neither client nor url', {}],
        ['both client and url', { client: shared(), url: REDIS_URL }],
        ['a url that is not redis://', { url: 'http://127.0.0.1:6379' }],
        ['a client that is not ioredis', { client: { get() {} } }],
        ['an empty prefix', { client: shared(), prefix: '' }],
        ['a prefix with a brace', { client: shared(), prefix: 'cw{x}:' }],
        ['an unknown option', { client: shared(), ttl: 5 }],
        ['redisOptions without url', { client: shared(), redisOptions: {} }],
      ];
      for (const [what, options] of bad) {
        assert.throws(() => redisTier(options as RedisTierOptions), (error) => isCachewiseError(error, 'E_INVALID_OPTION'), what);
      }
    });

    test('a bad key or entry gets a typed error and changes nothing', async () => {
      const tier = redisTier({ client: shared(), prefix: nextPrefix() });
      await tier.set('c:a', value(2, 'kept'));
      await assert.rejects(tier.set('', value(3)), (error) => isCachewiseError(error, 'E_INVALID_KEY'));
      await assert.rejects(tier.set('}x', value(3)), (error) => isCachewiseError(error, 'E_INVALID_KEY'), 'an empty hash tag would split entry and lease');
      await assert.rejects(tier.set('c:a', { ...value(3), version: Number.NaN }), (error) => isCachewiseError(error, 'E_INVALID_VALUE'));
      await assert.rejects(tier.set('c:a', value(3, () => 1)), (error) => isCachewiseError(error, 'E_INVALID_VALUE'));
      await assert.rejects(
        tier.setMany([
          { key: 'c:a', entry: value(4) },
          { key: 'c:b', entry: { kind: 'value', version: 4, value: undefined, freshUntil: Date.now() + 1000, staleUntil: Date.now() + 1000 } },
        ]),
        (error) => isCachewiseError(error, 'E_INVALID_VALUE'),
      );
      await assert.rejects(tier.fill('c:a', value(3), null as never), (error) => isCachewiseError(error, 'E_INVALID_LEASE'));
      assert.equal(((await tier.get('c:a')) as { value: unknown; version: number }).value, 'kept');
      assert.equal((await tier.get('c:a'))?.version, 2);
      assert.equal(await tier.get('c:b'), undefined);
    });

    test("redisEvictionPolicy reads the shared server's policy, and 'unknown' when it cannot", async () => {
      const policy = await redisEvictionPolicy(shared());
      assert.match(policy, /^(noeviction|(allkeys|volatile)-(lru|lfu|random)|volatile-ttl)$/);
      const gone = connect();
      await gone.quit();
      assert.equal(await redisEvictionPolicy(gone), 'unknown');
    });
  });

  describe('redisTier on a test-owned redis-server', { skip: skipOwned }, () => {
    test('scripts run by EVALSHA and survive SCRIPT FLUSH (NOSCRIPT reloads them), one by one and pipelined', async () => {
      const server = await ownServer();
      const client = connect(server.url);
      const tier = redisTier({ client, prefix: 'cw:' });
      const setSha = createHash('sha1').update(REDIS_SCRIPTS.set.lua).digest('hex');
      const calls = async (command: string) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await client.info('commandstats'))?.[1] ?? 0);
      for (let version = 1; version <= 5; version++) await tier.set('c:a', value(version));
      assert.deepEqual(await client.script('EXISTS', setSha), [1], 'loaded on first use');
      assert.ok((await calls('evalsha')) >= 4, 'later calls run by EVALSHA');
      await client.script('FLUSH');
      assert.deepEqual(await client.script('EXISTS', setSha), [0], 'flushed');
      assert.equal(await tier.set('c:a', value(6)), true, 'NOSCRIPT, then the script is sent again');
      assert.deepEqual(await client.script('EXISTS', setSha), [1], 'reloaded');
      const evalCalls = await calls('eval');
      for (let version = 7; version <= 9; version++) await tier.set('c:a', value(version));
      assert.equal(await calls('eval'), evalCalls, 'back to EVALSHA once reloaded');
      await client.script('FLUSH');
      assert.deepEqual(await tier.setMany([{ key: 'c:a', entry: value(10) }, { key: 'c:b', entry: value(1) }]), [true, true]);
      await client.script('FLUSH');
      const lease = await tier.lease('c:c', 60_000);
      await client.script('FLUSH');
      assert.equal(await tier.fill('c:c', value(7), lease), true);
      await client.script('FLUSH');
      await tier.invalidate('c:a', undefined, 60_000);
      assert.deepEqual(await tier.getMany(['c:a', 'c:b', 'c:c']).then((es) => es.map((e) => [e?.kind, e?.version])), [
        ['tombstone', 10],
        ['value', 1],
        ['value', 7],
      ]);
    });

    test('a tier made from a url quits its own client on close()', async () => {
      const server = await ownServer();
      const tier = redisTier({ url: server.url, prefix: 'cw:' });
      await tier.set('c:a', value(1));
      const named = async () => (await server.command('CLIENT', 'LIST')).split('\n').filter((line) => / name=cachewise /.test(line)).length;
      assert.equal(await named(), 1);
      await tier.close();
      for (let i = 0; i < 50 && (await named()) > 0; i++) await sleep(20);
      assert.equal(await named(), 0);
    });

    test('while Redis is down a url tier fails fast instead of hanging, and recovers after a restart', async () => {
      const server = await ownServer();
      const tier = redisTier({ url: server.url, prefix: 'cw:' });
      await tier.set('c:a', value(1));
      await server.kill();
      const started = Date.now();
      await assert.rejects(tier.get('c:a'));
      const took = Date.now() - started;
      assert.ok(took < 2_500, `failed after ${took} ms`);
      await server.restart();
      startedPids.add(server.pid!);
      let recovered = false;
      for (let i = 0; i < 60 && !recovered; i++) {
        recovered = await tier.set('c:a', value(2)).then(
          (applied) => applied,
          () => false,
        );
        if (!recovered) await sleep(100);
      }
      assert.ok(recovered, 'the tier works again once Redis is back (an empty Redis: it kept nothing on disk)');
      await tier.close();
    });

    test('a restart that empties Redis gives the tier a new generation: a set begun before it is refused (contract 1)', async () => {
      const server = await ownServer();
      const client = connect(server.url);
      const tier = redisTier({ client, prefix: 'cw:' });
      await tier.get('c:warm');
      const before = tier.generation!();
      assert.equal(await tier.set('c:a', value(2), before), true);
      await server.restart();
      startedPids.add(server.pid!);
      // Re-read when the client reconnects, before any write is refused.
      for (let i = 0; i < 100 && tier.generation!() === before; i++) {
        await tier.get('c:warm').catch(() => undefined);
        await sleep(50);
      }
      assert.notEqual(tier.generation!(), before, 'a new generation after the restart');
      assert.equal(await client.get('cw:generation'), tier.generation!());
      assert.equal(await tier.set('c:a', value(1), before), false, 'the older write begun before the restart is not cached');
      assert.equal((await tier.get('c:a'))?.kind, 'tombstone');
      assert.equal(await tier.set('c:a', value(3), tier.generation!()), true);
      await tier.close();
    });

    test("redisEvictionPolicy reads 'allkeys-lru' from a server started with it", async () => {
      const server = await ownServer(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
      assert.equal(await redisEvictionPolicy(connect(server.url)), 'allkeys-lru');
    });
  });

  describe('redisTier on a 3-master Redis Cluster', { skip: skipOwned }, () => {
    tierConformance('redisTier on a 3-master Redis Cluster', async () => {
      const { client } = await cluster();
      const tier = redisTier({ client, prefix: nextPrefix() });
      // On a single Redis one round trip reads the generation; on a Cluster the first read of
      // 16384 markers takes longer, and the conformance suite's generation test relies on it.
      await generationsRead(tier);
      return { tier, now: () => Date.now(), cleanup: () => clearAndClose(tier) };
    });

    test('every slot has its generation marker <prefix>{<tag>}generation in the slot of its entries; generation() is a frozen snapshot of their ids', async () => {
      const { client } = await cluster();
      const prefix = nextPrefix();
      const tier = redisTier({ client, prefix });
      await generationsRead(tier);
      const snapshot = tier.generation!() as SlotGenerations;
      assert.ok(snapshot instanceof SlotGenerations && Object.isFrozen(snapshot) && snapshot.chunks.every((chunk) => Object.isFrozen(chunk)));
      assert.equal(tier.generation!(), snapshot, 'the same object while nothing changes');
      const tags = slotTags();
      assert.equal(new Set(tags).size, CLUSTER_SLOTS);
      assert.ok(tags.every((tag) => tag.length <= 4));
      for (const key of ['users:42', 'c:a', 'orders:2024-01-01', 'a}b', 'ключ:1', `k:${'x'.repeat(200)}`]) {
        const slot = await client.cluster('KEYSLOT', `${prefix}{${key}}`);
        const marker = `${prefix}{${tags[slot]}}generation`;
        assert.equal(await client.cluster('KEYSLOT', marker), slot, `${key}: the marker is in the entry's slot`);
        assert.equal(await client.cluster('KEYSLOT', `${prefix}{${key}}:lease`), slot);
        assert.equal(await client.get(marker), snapshot.idOf(slot), `${key}: the snapshot holds the marker's id`);
        assert.equal(await client.pttl(marker), -1, 'a marker never expires');
        assert.equal(await tier.set(key, value(1), snapshot), true, `${key}: a set under the current generation applies`);
      }
      // The server's slot of a sample of tags is their index.
      for (let slot = 0; slot < CLUSTER_SLOTS; slot += 997) assert.equal(await client.cluster('KEYSLOT', tags[slot]!), slot);
      await tier.clear();
      assert.deepEqual(await keysOnEveryMaster(client, `${prefix}*`), [], 'clear() deletes the markers too');
      await tier.close();
    });

    test('a set begun before its slot lost its marker is refused and tombstones the key at its version; the tier adopts the new id; other slots are unaffected', async () => {
      const { client } = await cluster();
      const prefix = nextPrefix();
      const tier = redisTier({ client, prefix });
      await generationsRead(tier);
      const [lost, kept] = await keysOnTwoMasters(client, prefix);
      const lostSlot = await client.cluster('KEYSLOT', `${prefix}{${lost}}`);
      const keptSlot = await client.cluster('KEYSLOT', `${prefix}{${kept}}`);
      const marker = `${prefix}{${slotTags()[lostSlot]}}generation`;
      const before = tier.generation!() as SlotGenerations;
      assert.deepEqual(await tier.setMany([{ key: lost, entry: value(5), generation: before }, { key: kept, entry: value(5), generation: before }]), [true, true]);
      // What a master that restarted empty does to this slot; no reconnect, so nothing re-reads it.
      await client.del(marker, `${prefix}{${lost}}`);
      assert.equal(await tier.set(lost, value(4), before), false, 'nothing newer is left to compare with: refused');
      assert.match((await client.get(`${prefix}{${lost}}`))!, /^tombstone 4 0 \d+\n$/, 'tombstoned at its version instead');
      const now = tier.generation!() as SlotGenerations;
      assert.notEqual(now, before, 'a new snapshot; the one a write holds never changes');
      assert.equal(now.idOf(lostSlot), await client.get(marker), 'the refused set told the tier the new id');
      assert.match(now.idOf(lostSlot)!, /^t\d+\.\d+$/, 'made by the set script from the server clock');
      assert.notEqual(now.idOf(lostSlot), before.idOf(lostSlot));
      assert.equal(now.idOf(keptSlot), before.idOf(keptSlot), 'another slot keeps its id');
      assert.equal(await tier.set(kept, value(6), before), true, 'a write in another slot under the same snapshot applies');
      assert.equal(await tier.set(lost, value(6), now), true, 'a write begun in the new generation applies');
      // Anything but a snapshot is no generation of a Cluster: refused.
      assert.equal(await tier.set('c:string', value(1), before.idOf(await client.cluster('KEYSLOT', `${prefix}{c:string}`))), false);
      assert.equal((await tier.get('c:string'))?.kind, 'tombstone');
      // An unknown slot (a snapshot from before the first read) is refused too.
      const fresh = redisTier({ client, prefix });
      assert.equal(await fresh.set(kept, value(7), SlotGenerations.EMPTY), false);
      await fresh.close();
      await tier.clear();
      await tier.close();
    });

    test("a client keyPrefix with a hash tag of its own puts every key in its slot, markers too: they are read one by one there, and the check holds", async () => {
      const { client, handle } = await cluster();
      const tagged = new Cluster([...handle.startupNodes], { keyPrefix: '{app}', enableAutoPipelining: true });
      tagged.on('error', () => undefined);
      clients.push(tagged);
      const prefix = nextPrefix();
      const tier = redisTier({ client: tagged, prefix });
      await generationsRead(tier);
      const appSlot = await client.cluster('KEYSLOT', '{app}');
      const slot = await client.cluster('KEYSLOT', `${prefix}{c:a}`);
      const marker = `{app}${prefix}{${slotTags()[slot]}}generation`;
      assert.equal(await client.cluster('KEYSLOT', marker), appSlot);
      const before = tier.generation!() as SlotGenerations;
      assert.equal(await client.get(marker), before.idOf(slot));
      assert.equal(await tier.set('c:a', value(5), before), true);
      await client.del(marker, `{app}${prefix}{c:a}`);
      assert.equal(await tier.set('c:a', value(4), before), false);
      assert.equal(await tier.set('c:a', value(6), tier.generation!()), true);
      await tier.clear();
      assert.deepEqual(await keysOnEveryMaster(client, `{app}${prefix}*`), []);
      await tier.close();
    });

    test('clear() deletes every marker first: a write begun before it is refused in any slot', async () => {
      const { client } = await cluster();
      const prefix = nextPrefix();
      const tier = redisTier({ client, prefix });
      const other = redisTier({ client, prefix }); // another process with the same prefix
      await Promise.all([generationsRead(tier), generationsRead(other)]);
      const before = other.generation!();
      const keys = Array.from({ length: 40 }, (_, i) => `c:${i}`);
      await tier.clear();
      assert.deepEqual(await keysOnEveryMaster(client, `${prefix}*`), []);
      const applied = await other.setMany(keys.map((key) => ({ key, entry: value(1), generation: before })));
      assert.deepEqual(applied, keys.map(() => false));
      assert.ok((await tier.getMany(keys)).every((entry) => entry?.kind === 'tombstone'));
      const after = other.generation!();
      assert.ok((await other.setMany(keys.map((key) => ({ key, entry: value(2), generation: after })))).every(Boolean), 'each slot refused once and its new id was adopted');
      await tier.clear();
      await Promise.all([tier.close(), other.close()]);
    });

    test('an entry and its lease share a slot, and keys spread over every master', async () => {
      const { client, handle } = await cluster();
      const prefix = nextPrefix();
      const tier = redisTier({ client, prefix });
      await tier.setMany(Array.from({ length: 60 }, (_, i) => ({ key: `users:${i}`, entry: value(1) })));
      assert.equal(await client.cluster('KEYSLOT', `${prefix}{users:7}`), await client.cluster('KEYSLOT', `${prefix}{users:7}:lease`));
      const sizes = await Promise.all(handle.nodes.map(async (node) => Number((await node.command('DBSIZE')).slice(1))));
      assert.ok(sizes.every((size) => size > 0), `keys per master: ${sizes.join(', ')}`);
      await tier.clear();
    });

    test('clear() deletes this prefix on every master and leaves other prefixes', async () => {
      const { client } = await cluster();
      const tier = redisTier({ client, prefix: nextPrefix() });
      const other = redisTier({ client, prefix: nextPrefix() });
      const keys = Array.from({ length: 100 }, (_, i) => `c:${i}`);
      await tier.setMany(keys.map((key) => ({ key, entry: value(1) })));
      await other.setMany(keys.map((key) => ({ key, entry: value(1) })));
      await tier.clear();
      assert.ok((await tier.getMany(keys)).every((entry) => entry === undefined));
      assert.ok((await other.getMany(keys)).every((entry) => entry?.version === 1));
      await other.clear();
    });

    test('scripts survive SCRIPT FLUSH on every node', async () => {
      const { client, handle } = await cluster();
      const tier = redisTier({ client, prefix: nextPrefix() });
      const keys = Array.from({ length: 30 }, (_, i) => `c:${i}`);
      assert.ok((await tier.setMany(keys.map((key) => ({ key, entry: value(1) })))).every(Boolean));
      for (const node of handle.nodes) assert.match(await node.command('SCRIPT', 'FLUSH'), /^\+OK/);
      assert.ok((await tier.setMany(keys.map((key) => ({ key, entry: value(2) })))).every(Boolean));
      const lease = await tier.lease('c:new', 60_000);
      for (const node of handle.nodes) await node.command('SCRIPT', 'FLUSH');
      assert.equal(await tier.fill('c:new', value(1), lease), true);
      assert.deepEqual((await tier.getMany(['c:0', 'c:29', 'c:new'])).map((e) => e?.version), [2, 2, 1]);
      await tier.clear();
    });

    test('a master that restarts empty keeps its slots (nodes.conf) but not its markers: a write begun before cannot cache its older version (contract 1)', async () => {
      const { client, handle } = await cluster();
      const prefix = nextPrefix();
      const tier = redisTier({ client, prefix });
      await generationsRead(tier);
      const [key] = await keysOnTwoMasters(client, prefix);
      const slot = await client.cluster('KEYSLOT', `${prefix}{${key}}`);
      const owner = handle.nodes.find((node) => client.slots[slot]?.[0] === `${node.host}:${node.port}`);
      assert.ok(owner !== undefined, 'the master of the slot is one of the test nodes');
      const sibling = await keyOnNode(client, prefix, client.slots[slot]![0]!, slot);
      const siblingSlot = await client.cluster('KEYSLOT', `${prefix}{${sibling}}`);
      const before = tier.generation!() as SlotGenerations;
      assert.equal(await tier.set(key, value(5), before), true);
      assert.equal(await tier.set(sibling, value(5), before), true);
      await owner.restart(); // no dump (--save ''), so it comes back empty, with its slots
      startedPids.add(owner.pid!);
      // The write that began before the restart reaches the emptied master.
      let refused: boolean | undefined;
      for (let i = 0; i < 100 && refused === undefined; i++) {
        refused = await tier.set(key, value(4), before).then(
          (applied) => !applied,
          () => undefined, // the master is still coming back
        );
        if (refused === undefined) await sleep(100);
      }
      assert.equal(refused, true, 'the older version is not cached');
      assert.deepEqual(await tier.get(key).then((e) => [e?.kind, e?.version]), ['tombstone', 4]);
      assert.equal(await tier.set(key, value(6), tier.generation!()), true, 'a write begun after the restart applies');
      // Reconnected to the restarted master, the tier re-reads its slots without a refused set.
      for (let i = 0; i < 100 && (tier.generation!() as SlotGenerations).idOf(siblingSlot) === before.idOf(siblingSlot); i++) await sleep(50);
      assert.notEqual((tier.generation!() as SlotGenerations).idOf(siblingSlot), before.idOf(siblingSlot), 'the slot was re-read after the reconnect');
      assert.equal(await tier.set(sibling, value(1), tier.generation!()), true, 'the master lost version 5: version 1 applies in the new generation');
      await tier.clear();
      await tier.close();
    });

    test("redisEvictionPolicy asks every master: 'noeviction' on the test cluster", async () => {
      const { client } = await cluster();
      assert.equal(await redisEvictionPolicy(client), 'noeviction');
    });
  });

  test('the run leaves no key on the shared Redis and no test-owned redis-server running', async () => {
    await teardown();
    const probe = connect();
    assert.deepEqual(await keysMatching(probe, `${runPrefix}*`), []);
    await probe.quit();
    assert.deepEqual(ownedRedisPids(), []);
    const alive = redisServerPidsOnMachine().filter((pid) => startedPids.has(pid));
    assert.deepEqual(alive, [], 'pgrep still lists servers this file started');
  });
}

async function keysMatching(client: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

/** Every key matching `pattern` on every master of the Cluster. */
async function keysOnEveryMaster(client: Cluster, pattern: string): Promise<string[]> {
  const keys = await Promise.all(client.nodes('master').map((node) => keysMatching(node, pattern)));
  return keys.flat();
}

/** Two tier keys whose entries (under `prefix`) are on two different masters. */
async function keysOnTwoMasters(client: Cluster, prefix: string): Promise<[string, string]> {
  const first = 'c:first';
  const master = client.slots[await client.cluster('KEYSLOT', `${prefix}{${first}}`)]![0];
  for (let i = 0; ; i++) {
    const key = `c:other:${i}`;
    if (client.slots[await client.cluster('KEYSLOT', `${prefix}{${key}}`)]![0] !== master) return [first, key];
  }
}

/** A tier key whose entry is on the master `nodeKey`, in a slot other than `slot`. */
async function keyOnNode(client: Cluster, prefix: string, nodeKey: string, slot: number): Promise<string> {
  for (let i = 0; ; i++) {
    const key = `c:same-node:${i}`;
    const keySlot = await client.cluster('KEYSLOT', `${prefix}{${key}}`);
    if (keySlot !== slot && client.slots[keySlot]![0] === nodeKey) return key;
  }
}

async function clearAndClose(tier: Tier): Promise<void> {
  await tier.clear();
  await tier.close();
}
