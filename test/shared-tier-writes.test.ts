/**
 * Writes of two processes on one shared tier (contracts 3 and 5 across processes). Two caches on
 * one real Redis prefix, over one SQLite file, stand for two processes.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { createCache } from '../src/cache.js';
import { ManualClock } from '../src/clock.js';
import { isCachewiseError } from '../src/errors.js';
import { redisTier } from '../src/tiers/redis-tier.js';
import { FaultyStore } from './helpers/faulty-store.js';
import { FaultyTier } from './helpers/faulty-tier.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';
import { deleteKeys } from './helpers/two-tier-instances.js';
import { tempSqlite } from './helpers/sqlite.js';

const skip = await skipUnless('redis');

describe('writes of two processes on a shared tier', { skip }, () => {
  test("write-back: a process's unflushed older write does not hide another process's newer one", { timeout: 60_000 }, async () => {
    const prefix = `cw-test:shared-writes:${randomBytes(5).toString('hex')}:`;
    const sqlite = tempSqlite();
    const policy = { write: 'back', read: 'through', flush: { maxDelay: '1h' } } as const;
    const a = await createCache({ store: sqlite.store, tier: redisTier({ url: REDIS_URL, prefix }) });
    const b = await createCache({ store: sqlite.store, tier: redisTier({ url: REDIS_URL, prefix }) });
    try {
      const inA = a.collection<{ n: number }>('orders', policy);
      const inB = b.collection<{ n: number }>('orders', policy);
      const first = await inA.set('k', { n: 1 });
      await sleep(5); // a later millisecond: a newer version from the other clock
      const second = await inB.set('k', { n: 2 });
      assert.ok(second.version > first.version);
      assert.equal(inA.stats().pending, 1, 'the first write is still waiting for the database');
      assert.deepEqual(await inA.get('k'), { n: 2 }, 'the process holding the older write read it back');
      assert.deepEqual(await inA.getMany(['k']), [{ n: 2 }]);
      assert.deepEqual(await inB.get('k'), { n: 2 });
      await inA.flush();
      await inB.flush();
      assert.equal((await sqlite.store.load('orders', 'k'))?.version, second.version);
    } finally {
      await a.close();
      await b.close();
      await deleteKeys(REDIS_URL, prefix);
      sqlite.cleanup();
    }
  });

  test('write-through: an unknown outcome whose invalidation cannot reach the shared tier says so, naming the key', { timeout: 60_000 }, async () => {
    const prefix = `cw-test:shared-writes:${randomBytes(5).toString('hex')}:`;
    const sqlite = tempSqlite();
    const store = new FaultyStore(sqlite.store);
    const tier = new FaultyTier(redisTier({ url: REDIS_URL, prefix }));
    const cache = await createCache({ store, tier, tierBreaker: false });
    try {
      const users = cache.collection<{ name: string }>('users', { write: 'through', read: 'through' });
      await users.set('u1', { name: 'old' });
      store.writeFaults = ['applied-then-throw'];
      tier.failing = new Set(['set', 'invalidate']);
      const error = await users.set('u1', { name: 'new' }).then(
        () => assert.fail('the write resolved'),
        (e: unknown) => e,
      );
      assert.ok(isCachewiseError(error, 'E_STORE_UNKNOWN_OUTCOME'), String(error));
      assert.deepEqual((error.details as { unreached?: string[] }).unreached, ['u1']);
      assert.match(error.message, /could not be invalidated either/);

      // With the tier reachable, the same fault says the cached copy was invalidated.
      tier.failing.clear();
      store.writeFaults = ['applied-then-throw'];
      const reached = await users.set('u2', { name: 'x' }).then(
        () => assert.fail('the write resolved'),
        (e: unknown) => e,
      );
      assert.ok(isCachewiseError(reached, 'E_STORE_UNKNOWN_OUTCOME'), String(reached));
      assert.equal((reached.details as { unreached?: string[] }).unreached, undefined);
      assert.match(reached.message, /the cached copy was invalidated/);
    } finally {
      await cache.close();
      await deleteKeys(REDIS_URL, prefix);
      sqlite.cleanup();
    }
  });
  test('write-around: a key no row holds, tombstoned by a write of unknown outcome, still shows a write of another process committed later with a lower version of the same millisecond', { timeout: 60_000 }, async () => {
    const prefix = `cw-test:shared-writes:${randomBytes(5).toString('hex')}:`;
    const sqlite = tempSqlite();
    const clock = new ManualClock();
    const faulty = new FaultyStore(sqlite.store);
    const policy = { write: 'around', read: 'through' } as const;
    // One millisecond for both: slot 2's versions of it are above slot 1's.
    const high = await createCache({ store: faulty, tier: redisTier({ url: REDIS_URL, prefix, clock }), clock, writerId: 2, tierBreaker: false });
    const low = await createCache({ store: sqlite.store, tier: redisTier({ url: REDIS_URL, prefix, clock }), clock, writerId: 1, tierBreaker: false });
    try {
      const inHigh = high.collection<{ n: number }>('items', policy);
      const inLow = low.collection<{ n: number }>('items', policy);
      faulty.writeFaults = ['throw'];
      await assert.rejects(inHigh.set('k', { n: 1 }), (error) => isCachewiseError(error) && error.code === 'E_STORE_UNKNOWN_OUTCOME');
      assert.equal(await inLow.get('k'), undefined, 'the row is not there: the write did not commit');
      const written = await inLow.set('k', { n: 2 });
      assert.equal(written.version % 16, 1);
      assert.deepEqual(await inLow.get('k'), { n: 2 }, 'the committed write is read back');
      assert.deepEqual(await inHigh.get('k'), { n: 2 });
    } finally {
      await high.close();
      await low.close();
      await deleteKeys(REDIS_URL, prefix);
      sqlite.cleanup();
    }
  });
});
