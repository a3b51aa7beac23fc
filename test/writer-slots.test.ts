/**
 * Writer slots claimed in a shared Redis (createCache without writerId): the processes sharing a
 * tier hold different slots, so they never issue the same version. Caches on one real Redis
 * prefix stand for processes; a short lease makes renewals come every 100 ms.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCache, type Cache } from '../src/cache.js';
import type { CachewiseError } from '../src/errors.js';
import { fileJournal } from '../src/journal/file-journal.js';
import type { Journal } from '../src/journal/journal.js';
import type { CacheEvents } from '../src/events.js';
import { memoryTier } from '../src/tiers/memory-tier.js';
import { redisTier } from '../src/tiers/redis-tier.js';
import { WRITER_SLOTS } from '../src/version-clock.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';
import { deleteKeys, redisClient, TwoTierGroup, waitFor } from './helpers/two-tier-instances.js';
import { tempSqlite } from './helpers/sqlite.js';

const skip = await skipUnless('redis');
const LEASE = '300ms';

/** Caches on one prefix, closed (and the prefix's keys deleted) by `end`. */
function group() {
  const prefix = `cw-test:writer-slots:${randomBytes(5).toString('hex')}:`;
  const sqlite = tempSqlite();
  const caches: Cache[] = [];
  const admin = redisClient(REDIS_URL, { failFast: false });
  return {
    prefix,
    admin,
    slotKey: (slot: number) => `${prefix}writer:${slot}`,
    async cache(options: { writerId?: number; journal?: Journal } = {}): Promise<Cache> {
      const tier = redisTier({ url: REDIS_URL, prefix, writerSlotLease: LEASE });
      const cache = await createCache({ store: sqlite.store, tier, ...options }).catch(async (error: unknown) => {
        await tier.close(); // createCache leaves what it was given open when it fails
        throw error;
      });
      caches.push(cache);
      return cache;
    },
    async end(): Promise<void> {
      await Promise.all(caches.map((c) => c.close()));
      await deleteKeys(REDIS_URL, prefix);
      admin.disconnect();
      sqlite.cleanup();
    },
  };
}

function slotEvents(cache: Cache): CacheEvents['writer-slot'][] {
  const events: CacheEvents['writer-slot'][] = [];
  cache.events.on('writer-slot', (e) => events.push(e));
  return events;
}

describe('writer slots claimed in a shared Redis', { skip }, () => {
  test('sixteen caches on one prefix hold sixteen different slots; a seventeenth goes on with a random one and claims the first slot freed', { timeout: 60_000 }, async () => {
    const g = group();
    try {
      const caches = [];
      for (let i = 0; i < WRITER_SLOTS; i++) caches.push(await g.cache());
      assert.deepEqual(
        caches.map((c) => c.writerIdSource),
        caches.map(() => 'claimed'),
      );
      assert.equal(new Set(caches.map((c) => c.writerId)).size, WRITER_SLOTS, 'every slot held once');

      const late = await g.cache();
      const events = slotEvents(late);
      assert.equal(late.writerIdSource, 'random', 'all sixteen were held');
      const freed = caches[3]!.writerId;
      await caches[3]!.close();
      assert.equal(await g.admin.exists(g.slotKey(freed)), 0, 'close() gave the slot back');
      await waitFor(() => late.writerIdSource === 'claimed', 5_000, 'the late cache to claim the freed slot');
      assert.equal(late.writerId, freed);
      assert.deepEqual(events.at(-1), { slot: freed, previous: events.at(-1)!.previous, claimed: true });
    } finally {
      await g.end();
    }
  });

  test('a slot taken by another process while this one could not renew: the claim moves to a free slot', { timeout: 30_000 }, async () => {
    const g = group();
    try {
      const cache = await g.cache();
      const events = slotEvents(cache);
      const lost = cache.writerId;
      await g.admin.set(g.slotKey(lost), 'another process', 'PX', 60_000);
      await waitFor(() => cache.writerId !== lost, 5_000, 'the cache to move to another slot');
      assert.equal(cache.writerIdSource, 'claimed');
      assert.deepEqual(events, [{ slot: cache.writerId, previous: lost, claimed: true }]);
      assert.equal(await g.admin.get(g.slotKey(lost)), 'another process', 'the other holder keeps its slot');
      assert.ok((await g.admin.pttl(g.slotKey(cache.writerId))) > 0, 'the new slot is held under a lease');
      const version = await cache.collection<number>('n', { write: 'through', read: 'through' }).set('k', 1);
      assert.equal(version.version % WRITER_SLOTS, cache.writerId, 'versions are issued in the new slot');
    } finally {
      await g.end();
    }
  });

  test('a slot taken by another process while every other slot is held: the cache says so and goes on unclaimed, until a slot frees up', { timeout: 60_000 }, async () => {
    const g = group();
    try {
      const caches = [];
      for (let i = 0; i < WRITER_SLOTS; i++) caches.push(await g.cache());
      const loser = caches[0]!;
      const events = slotEvents(loser);
      const lost = loser.writerId;
      await g.admin.set(g.slotKey(lost), 'another process', 'PX', 60_000);
      await waitFor(() => loser.writerIdSource === 'random', 5_000, 'the cache to give up its claim');
      assert.deepEqual(events, [{ slot: lost, previous: lost, claimed: false }]);
      const freed = caches[5]!.writerId;
      await caches[5]!.close();
      await waitFor(() => loser.writerIdSource === 'claimed', 5_000, 'the cache to claim the freed slot');
      assert.equal(loser.writerId, freed);
      assert.deepEqual(events.at(-1), { slot: freed, previous: lost, claimed: true });
    } finally {
      await g.end();
    }
  });

  test('a slot key gone (Redis restarted empty, or the lease ran out unseen): the renewal takes the same slot again', { timeout: 30_000 }, async () => {
    const g = group();
    try {
      const cache = await g.cache();
      const events = slotEvents(cache);
      const slot = cache.writerId;
      await g.admin.del(g.slotKey(slot));
      await waitFor(async () => (await g.admin.exists(g.slotKey(slot))) === 1, 5_000, 'the slot key to be back');
      assert.equal(cache.writerId, slot);
      assert.deepEqual(events, []);
      const held = await g.admin.pttl(g.slotKey(slot));
      assert.ok(held > 0 && held <= 300, `held under the lease (${held} ms left)`);
    } finally {
      await g.end();
    }
  });

  test('createCache failing after its claim (a journal held by another cache) gives the slot back', { timeout: 30_000 }, async () => {
    const g = group();
    const dir = mkdtempSync(join(tmpdir(), 'cw-writer-slots-'));
    try {
      const first = await g.cache({ journal: fileJournal(dir) });
      await assert.rejects(g.cache({ journal: fileJournal(dir) }), (error: CachewiseError) => error.code === 'E_INVALID_OPTION' && /is in use/.test(error.message));
      assert.deepEqual(await g.admin.keys(`${g.prefix}writer:*`), [g.slotKey(first.writerId)], 'only the open cache holds a slot');
    } finally {
      await g.end();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('with writerId, nothing is claimed', { timeout: 30_000 }, async () => {
    const g = group();
    try {
      const cache = await g.cache({ writerId: 9 });
      assert.equal(cache.writerId, 9);
      assert.equal(cache.writerIdSource, 'option');
      assert.deepEqual(await g.admin.keys(`${g.prefix}writer:*`), []);
    } finally {
      await g.end();
    }
  });

  test('twoTier claims in its L2, which its instances share', { timeout: 30_000 }, async () => {
    const prefix = `cw-test:writer-slots:${randomBytes(5).toString('hex')}:`;
    const instances = new TwoTierGroup(REDIS_URL, prefix);
    const sqlite = tempSqlite();
    const caches: Cache[] = [];
    const admin = redisClient(REDIS_URL, { failFast: false });
    try {
      for (let i = 0; i < 3; i++) caches.push(await createCache({ store: sqlite.store, tier: instances.instance().tier }));
      assert.deepEqual(
        caches.map((c) => c.writerIdSource),
        ['claimed', 'claimed', 'claimed'],
      );
      assert.equal(new Set(caches.map((c) => c.writerId)).size, 3);
      assert.equal((await admin.keys(`${prefix}writer:*`)).length, 3);
    } finally {
      admin.disconnect();
      await Promise.all(caches.map((c) => c.close()));
      await instances.close();
      await deleteKeys(REDIS_URL, prefix);
      sqlite.cleanup();
    }
  });

  test('a Redis that does not answer: createCache goes on with a random slot, and a memory tier has nothing to claim in', { timeout: 30_000 }, async () => {
    const sqlite = tempSqlite();
    const caches: Cache[] = [];
    try {
      const unreachable = await createCache({ store: sqlite.store, tier: redisTier({ url: 'redis://127.0.0.1:1', redisOptions: { retryStrategy: () => null } }) });
      caches.push(unreachable);
      assert.equal(unreachable.writerIdSource, 'random');
      const local = await createCache({ store: sqlite.store, tier: memoryTier() });
      caches.push(local);
      assert.equal(local.writerIdSource, 'random');
    } finally {
      await Promise.all(caches.map((c) => c.close()));
      sqlite.cleanup();
    }
  });
});
