/**
 * Durable write-back over a shared journal (the Redis Stream journal): the writes an instance
 * acknowledged and never flushed are taken over by a live instance, which replays them into the
 * database without being restarted. Real Redis and SQLite; the first instance's database is
 * made to fail so that its writes stay unflushed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createCache } from '../src/cache.js';
import { redisStreamJournal } from '../src/journal/redis-stream-journal.js';
import type { CollectionPolicy } from '../src/policy.js';
import { sqliteStore } from '../src/stores/sqlite-store.js';
import { FaultyStore } from './helpers/faulty-store.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';
import { deleteKeys } from './helpers/two-tier-instances.js';

const skip = await skipUnless('redis');
const DURABLE: CollectionPolicy = { write: 'back', read: 'through', durability: 'journal', retry: { maxAttempts: Infinity }, flush: { maxDelay: '5ms' } };

describe('write-back over a shared journal', { skip }, () => {
  test('a live instance takes over and flushes the acknowledged writes of an instance that stopped', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cachewise-shared-journal-'));
    const stream = `cw-test:journal:${randomBytes(6).toString('hex')}`;
    const journal = (consumer: string) => redisStreamJournal({ url: REDIS_URL, stream, consumer, claimIdle: 300 });
    try {
      const downStore = new FaultyStore(sqliteStore(join(dir, 'app.db')));
      const a = await createCache({ store: downStore, journal: journal('a') });
      const b = await createCache({ store: sqliteStore(join(dir, 'app.db')), journal: journal('b') });
      const ordersA = a.collection<{ n: number }>('orders', DURABLE);
      const ordersB = b.collection<{ n: number }>('orders', DURABLE);
      await ordersA.get('warm-up');
      await ordersB.get('warm-up');

      downStore.down = true;
      const acked = new Map<string, number>();
      for (let i = 0; i < 20; i++) acked.set(`o${i}`, (await ordersA.set(`o${i}`, { n: i })).version);
      const claimed = new Promise<number>((resolve) => b.events.on('journal-claimed', ({ count }) => resolve(count)));
      const report = await a.close({ timeout: '20ms' });
      assert.equal(report.lost, 0);
      assert.equal(report.unflushed.length, 20);

      assert.equal(await claimed, 20, 'instance b took over the 20 writes');
      await ordersB.flush();
      const check = sqliteStore(join(dir, 'app.db'));
      await check.prepare('orders');
      for (const [key, version] of acked) {
        const row = await check.load('orders', key);
        assert.equal(row?.version, version, `${key} reached the database through instance b`);
      }
      await check.close();
      assert.deepEqual(await ordersB.get('o7'), { n: 7 });
      await b.close();
    } finally {
      await deleteKeys(REDIS_URL, stream);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
