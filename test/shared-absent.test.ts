/**
 * Read-through across processes (contract 6) for a key the database does not hold: the process
 * holding the lease shares its "absent" with the processes waiting for its fill, so they neither
 * wait out the whole leaseWait nor load the same missing key again. Two caches on one real Redis
 * prefix stand for two processes; the SQLite store is slowed so that both miss at once.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { createCache } from '../src/cache.js';
import { redisTier } from '../src/tiers/redis-tier.js';
import { FaultyStore } from './helpers/faulty-store.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';
import { deleteKeys } from './helpers/two-tier-instances.js';
import { tempSqlite } from './helpers/sqlite.js';

const skip = await skipUnless('redis');

describe('a missing key on a shared tier', { skip }, () => {
  test('one load for two processes, and the waiter is answered long before leaseWait', { timeout: 60_000 }, async () => {
    const prefix = `cw-test:absent:${randomBytes(5).toString('hex')}:`;
    const sqlite = tempSqlite();
    const store = new FaultyStore(sqlite.store);
    store.delayMs = 300;
    const policy = { write: 'through', read: 'through', leaseWait: '20s' } as const;
    const a = await createCache({ store, tier: redisTier({ url: REDIS_URL, prefix }) });
    const b = await createCache({ store, tier: redisTier({ url: REDIS_URL, prefix }) });
    try {
      const inA = a.collection('users', policy);
      const inB = b.collection('users', policy);
      await inA.get('warm-up');
      await inB.get('warm-up-too');
      const loadsBefore = store.calls.load;
      const started = performance.now();
      const [fromA, fromB] = await Promise.all([inA.get('nobody'), inB.get('nobody')]);
      const tookMs = performance.now() - started;
      assert.equal(fromA, undefined);
      assert.equal(fromB, undefined);
      assert.equal(store.calls.load - loadsBefore, 1, 'one process loaded, the other took its answer');
      // Not a timing test: 20 s is the bound a waiter would have sat out before.
      assert.ok(tookMs < 15_000, `the waiter sat out the lease wait (${Math.round(tookMs)} ms)`);
      // A write replaces the shared "absent" at once.
      await inA.set('nobody', { name: 'now somebody' });
      assert.deepEqual(await inB.get('nobody'), { name: 'now somebody' });
    } finally {
      await a.close();
      await b.close();
      await deleteKeys(REDIS_URL, prefix);
      sqlite.cleanup();
    }
  });
});
