/**
 * twoTier over the real Redis: the Tier conformance suite, then what two instances sharing an
 * L2 must see: a write by one drops the other's L1 copy, a failed L2 write still reaches the
 * other instances, and a dropped bus connection clears L1 until it is back.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createCache } from '../src/index.js';
import { redisBus } from '../src/tiers/redis-bus.js';
import { redisTier } from '../src/tiers/redis-tier.js';
import type { Tier, TierEntry } from '../src/tiers/tier.js';
import { twoTier } from '../src/tiers/two-tier.js';
import { tierConformance } from './conformance/tier-conformance.js';
import { FaultyTier } from './helpers/faulty-tier.js';
import { startRedisServer, type RedisServer } from './helpers/redis-servers.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';
import { tempSqlite } from './helpers/sqlite.js';

const skip = await skipUnless('redis');
const clients: Redis[] = [];
const servers: RedisServer[] = [];
const runPrefix = `cw-test-2t-${randomBytes(5).toString('hex')}:`;
let instances = 0;

function connect(url = REDIS_URL): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 2000, enableAutoPipelining: true });
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

/** One application instance: its own client, bus and L1 over the shared L2 under `prefix`. */
function instance(prefix: string, url = REDIS_URL, channel = `${prefix}bus`): { tier: Tier; client: Redis } {
  const client = connect(url);
  const tier = twoTier({ l2: redisTier({ client, prefix }), bus: redisBus({ publisher: client, channel }) });
  instances++;
  return { tier, client };
}

async function busReady(): Promise<void> {
  await sleep(100); // subscriptions are confirmed asynchronously
}

const value = (version: number, v: unknown = version): TierEntry => ({ kind: 'value', version, value: v, freshUntil: Date.now() + 60_000, staleUntil: Date.now() + 60_000 });

after(async () => {
  if (skip) return;
  const cleaner = connect();
  let cursor = '0';
  do {
    const [next, keys] = await cleaner.scan(cursor, 'MATCH', `${runPrefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await cleaner.unlink(...keys);
  } while (cursor !== '0');
  for (const client of clients) client.disconnect();
  for (const server of servers) await server.stop();
});

if (skip) {
  test('twoTier suites need Redis', { skip }, () => undefined);
} else {
  tierConformance('twoTier (memory L1 over Redis L2)', async () => {
    const { tier } = instance(`${runPrefix}${instances}:`);
    await busReady();
    return { tier, now: () => Date.now(), cleanup: () => tier.clear() };
  });

  describe('twoTier across instances (contract 1, 3)', () => {
    test("a write by one instance drops the other instance's L1 copy", async () => {
      const prefix = `${runPrefix}cross:`;
      const a = instance(prefix);
      const b = instance(prefix);
      await busReady();
      await a.tier.set('c:k', value(1, 'one'));
      assert.equal(((await b.tier.get('c:k')) as { value: unknown }).value, 'one', 'b reads it and keeps it in its L1');
      await a.tier.set('c:k', value(2, 'two'));
      await sleep(50);
      assert.equal(((await b.tier.get('c:k')) as { value: unknown }).value, 'two', "b's L1 copy was dropped by the message");
      await a.tier.invalidate('c:k', 3, 60_000);
      await sleep(50);
      assert.equal((await b.tier.get('c:k'))?.kind, 'tombstone');
    });

    test('a failed L2 write still invalidates the other instances before it is reported', async () => {
      const prefix = `${runPrefix}failed-l2:`;
      const client = connect();
      const faultyL2 = new FaultyTier(redisTier({ client, prefix }));
      const a = twoTier({ l2: faultyL2, bus: redisBus({ publisher: client, channel: `${prefix}bus` }) });
      const b = instance(prefix);
      await busReady();
      await a.set('c:k', value(1, 'one'));
      await b.tier.get('c:k'); // into b's L1
      faultyL2.failing.add('set');
      await assert.rejects(a.set('c:k', value(2, 'two')), /injected/);
      await sleep(50);
      // b must not serve its L1 copy of version 1 any more: it goes to L2 (which still holds 1,
      // and which the core then invalidates or quarantines; here we only check the L1 drop).
      const l1 = (b.tier as unknown as { l1: Tier }).l1;
      assert.equal((await l1.get('c:k'))?.kind, 'tombstone');
    });

    test('a dropped bus connection clears L1 and bypasses it until the bus is back', async () => {
      const server = await startRedisServer({});
      servers.push(server);
      const prefix = `${runPrefix}drop:`;
      const a = instance(prefix, server.url);
      const b = instance(prefix, server.url);
      await busReady();
      await a.tier.set('c:k', value(1, 'one'));
      await b.tier.get('c:k');
      const l1 = (b.tier as unknown as { l1: Tier }).l1;
      assert.equal((await l1.get('c:k'))?.version, 1);
      await server.command('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await sleep(30);
      assert.equal(await l1.get('c:k'), undefined, 'L1 cleared when the bus dropped');
      // messages sent while b's bus is down are lost; b must not trust an L1 filled meanwhile
      await a.tier.set('c:k', value(2, 'two'));
      for (let i = 0; i < 50 && !(b.tier as unknown as { bus: { connected: boolean } }).bus.connected; i++) await sleep(50);
      assert.equal(((await b.tier.get('c:k')) as { value: unknown }).value, 'two');
    });
  });

  describe('caches on twoTier across instances (contract 3)', () => {
    test('after a write-through set resolves in one instance, the other reads the new value', { todo: 'pub/sub delivery is asynchronous: the writer does not yet wait for other instances to drop their L1 copy' }, async () => {
      const prefix = `${runPrefix}cache:`;
      const sqlite = tempSqlite();
      const a = await createCache({ store: sqlite.store, tier: instance(prefix).tier });
      const b = await createCache({ store: sqlite.store, tier: instance(prefix).tier });
      await busReady();
      const usersA = a.collection<{ n: number }>('users', { write: 'through', read: 'through' });
      const usersB = b.collection<{ n: number }>('users', { write: 'through', read: 'through' });
      for (let n = 0; n < 20; n++) {
        await usersA.set('u', { n });
        assert.equal((await usersB.get('u'))?.n, n, `read ${n} in the other instance`);
      }
      await a.close();
      await b.close();
      sqlite.cleanup();
    });
  });
}
