/**
 * Write-back (contract 5), the healthy path: read-your-writes before the database has the write,
 * coalescing per key, batching by size and delay, per-key order under concurrent batches,
 * waiting for persistence, buffered deletes, and the refusal of write-back for critical data.
 * A real SQLite file and the real memory tier; time moves by a ManualClock.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache } from '../src/cache.js';
import { isCachewiseError } from '../src/errors.js';
import { SEED_RULES } from '../src/policy.js';
import { memoryTier } from '../src/tiers/memory-tier.js';
import { ManualClock } from '../src/clock.js';
import type { WriteResult } from '../src/collection.js';
import { tempSqlite } from './helpers/sqlite.js';
import { COLLECTION, seededRandom, withWriteBack } from './helpers/write-back-fixture.js';

type Item = { n: number };

describe('write-back: acknowledgement and reads (contract 5)', () => {
  test('read-your-writes: set resolves before the database has the row, and get returns the new value at once', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '1s' } }, async (f) => {
      const result = await f.items.set('a', { n: 1 });
      assert.equal(f.store.calls.write, 0, 'set resolved without a database write');
      assert.equal(await f.row('a'), undefined, 'the row is absent until the flush');
      assert.deepEqual(await f.items.get('a'), { n: 1 });
      assert.equal(f.store.calls.load, 0, 'the read was served from the write-back buffer, not the database');

      await f.advance(1000);
      const row = await f.row('a');
      assert.equal(row?.version, result.version);
      assert.deepEqual(await f.dbValue('a'), { n: 1 });
    });
  });

  test('coalescing per key: 1,000 writes over 10 keys before a flush become at most 10 row writes, each the last value', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '1s' } }, async (f) => {
      const last = new Map<string, number>();
      for (let i = 0; i < 1000; i++) {
        const key = `k${i % 10}`;
        await f.items.set(key, { n: i });
        last.set(key, i);
      }
      assert.equal(f.store.calls.write, 0);
      await f.items.flush();

      assert.ok(f.store.calls.writtenEntries <= 10, `row writes: ${f.store.calls.writtenEntries}`);
      assert.equal(f.store.batches.flat().length, f.store.calls.writtenEntries);
      assert.ok(f.items.stats().storeWrites <= 10);
      assert.equal(f.items.stats().writes, 1000);
      for (const [key, n] of last) assert.deepEqual(await f.dbValue(key), { n }, key);
    });
  });
});

describe('write-back: batches (contract 5)', () => {
  test('a partial batch goes out when its oldest write is maxDelay old, not before', async () => {
    await withWriteBack<Item>({ flush: { maxBatch: 25, maxDelay: '50ms' } }, async (f) => {
      for (let i = 0; i < 10; i++) await f.items.set(`k${i}`, { n: i });
      await f.advance(49);
      assert.equal(f.store.calls.write, 0, 'nothing sent before maxDelay');
      await f.advance(1);
      assert.deepEqual(f.store.calls.batchSizes, [10], 'one batch at maxDelay');
      for (let i = 0; i < 10; i++) assert.deepEqual(await f.dbValue(`k${i}`), { n: i });
    });
  });

  test('no batch is bigger than maxBatch, and a full batch goes out without waiting for maxDelay', async () => {
    await withWriteBack<Item>({ flush: { maxBatch: 25, maxDelay: '1h' } }, async (f) => {
      for (let i = 0; i < 200; i++) await f.items.set(`k${i}`, { n: i });
      await f.settle();
      assert.ok(f.store.calls.batchSizes.length >= 8);
      assert.ok(Math.max(...f.store.calls.batchSizes) <= 25, `batch sizes: ${f.store.calls.batchSizes.join(',')}`);
      // 200 keys are eight full batches: all of them are in the database with no time passing.
      for (let i = 0; i < 200; i++) assert.deepEqual(await f.dbValue(`k${i}`), { n: i }, `k${i}`);
      assert.equal(f.items.stats().pending, 0);
    });
  });

  test('per-key order: with 4 concurrent batches and random writes, a key is never in two batches at once and versions never go back', async () => {
    for (const seed of [1, 2, 3]) {
      await withWriteBack<Item>({ flush: { maxBatch: 4, maxDelay: '5ms', concurrency: 4 } }, async (f) => {
        const random = seededRandom(seed);
        f.store.delayMs = 1; // batches stay in flight for a moment, so they overlap
        const newest = new Map<string, { version: number; n: number | undefined }>();
        const record = (result: WriteResult, n: number | undefined) => {
          const seen = newest.get(result.key);
          if (seen === undefined || result.version > seen.version) newest.set(result.key, { version: result.version, n });
        };
        let n = 0;
        for (let group = 0; group < 150; group++) {
          const calls: Promise<void>[] = [];
          for (let i = 0; i < 8; i++) {
            const key = `k${Math.floor(random() * 20)}`;
            const value = n++;
            if (random() < 0.1) calls.push(f.items.delete(key).then((r) => record(r, undefined)));
            else calls.push(f.items.set(key, { n: value }).then((r) => record(r, value)));
          }
          await Promise.all(calls);
          if (random() < 0.3) f.clock.advance(5);
          await new Promise((resolve) => setTimeout(resolve, random() < 0.5 ? 0 : 1));
        }
        await f.items.flush();

        assert.deepEqual(f.probe.overlaps, [], 'a key was sent while an earlier batch holding it was in flight');
        assert.ok(f.probe.maxConcurrent > 1, `batches overlapped (max in flight ${f.probe.maxConcurrent})`);
        assert.ok(f.probe.maxConcurrent <= 4, `at most 4 batches in flight, saw ${f.probe.maxConcurrent}`);
        const lastSent = new Map<string, number>();
        for (const batch of f.store.batches) {
          for (const w of batch) {
            assert.ok(w.version > (lastSent.get(w.key) ?? 0), `key ${w.key}: version ${w.version} sent after ${lastSent.get(w.key)}`);
            lastSent.set(w.key, w.version);
          }
        }
        for (const [key, want] of newest) {
          const row = await f.row(key);
          assert.equal(row?.version, want.version, `key ${key} holds its last accepted version`);
          assert.deepEqual(row?.json === undefined ? undefined : JSON.parse(row.json), want.n === undefined ? undefined : { n: want.n });
          assert.deepEqual(await f.items.get(key), want.n === undefined ? undefined : { n: want.n });
        }
      });
    }
  });
});

describe('write-back: waiting for the database (contract 10)', () => {
  test('persisted(result) resolves once that write is in the database, not before', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '100ms' } }, async (f) => {
      const result = await f.items.set('a', { n: 1 });
      let rowWhenResolved: unknown = 'not resolved';
      const persisted = f.items.persisted(result).then(async () => {
        rowWhenResolved = await f.dbValue('a');
      });
      await f.advance(99);
      assert.equal(rowWhenResolved, 'not resolved');
      await f.advance(1);
      await persisted;
      assert.deepEqual(rowWhenResolved, { n: 1 }, 'the row was there when persisted() resolved');
    });
  });

  test('persisted() of an older write resolves when a newer write of its key is in the database', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '100ms' } }, async (f) => {
      const first = await f.items.set('a', { n: 1 });
      await f.items.set('a', { n: 2 });
      await f.driveUntil(f.items.persisted(first));
      assert.deepEqual(await f.dbValue('a'), { n: 2 });
    });
  });

  test('persisted() waiting for a queued write follows the newer write of its key that replaces it', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '100ms' } }, async (f) => {
      const first = await f.items.set('a', { n: 1 });
      let resolved = false;
      const waiting = f.items.persisted(first).then(() => (resolved = true));
      await f.items.set('a', { n: 2 }); // coalesces: the queue now holds n=2 in place of n=1
      await f.advance(1_000, 10);
      assert.ok(resolved);
      await waiting;
      assert.deepEqual(await f.dbValue('a'), { n: 2 });
      assert.equal(f.store.calls.writtenEntries, 1, 'only the newer write was sent');
    });
  });

  test('10,000 keys flushed, with batches held in flight when the queue forgets the flushed keys: reads still see the queued writes, which land', async () => {
    // Keys whose writes left the queue stay known to it until they outnumber the queued ones four
    // to one: here after the 32nd batch of 250, with batches 33 and 34 (k8000-k8499) out.
    await withWriteBack<Item>(
      { flush: { maxBatch: 250, maxDelay: '1h', concurrency: 2 } },
      async (f) => {
        const keys = Array.from({ length: 10_000 }, (_, i) => `k${i}`);
        await f.items.setMany(keys.map((key, i) => [key, { n: i }] as const));
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        f.store.writeHold = (call) => (call > 32 ? held : undefined);
        const flushing = f.items.flush();
        try {
          while (f.store.calls.write < 34) await f.settle();
          await f.settle();
          assert.equal(f.store.calls.write, 34, 'two batches held in flight');
          assert.equal(f.items.stats().pending, 2_000);
          // The small tier dropped these long ago: only the queue has them.
          for (const i of [8_000, 8_249, 8_250, 8_499, 8_500, 9_999]) assert.deepEqual(await f.items.get(`k${i}`), { n: i }, `k${i} read while queued`);
          await f.items.set('k8100', { n: -1 }); // written again while its batch is out
          assert.equal(f.items.stats().pending, 2_000, 'a key in flight and written again counts once');
        } finally {
          release();
        }
        await flushing;
        await f.items.flush();
        assert.equal(f.items.stats().pending, 0);
        assert.deepEqual(f.probe.overlaps, [], 'no key was sent while a batch holding it was out');
        for (const i of [0, 7_999, 8_000, 8_100, 8_499, 8_500, 9_999]) {
          const expected = i === 8_100 ? -1 : i;
          assert.deepEqual(await f.dbValue(`k${i}`), { n: expected }, `k${i} in the database`);
          assert.deepEqual(await f.items.get(`k${i}`), { n: expected }, `k${i} read`);
        }
      },
      { tierMaxEntries: 100 },
    );
  });

  test('flush() resolves when every write accepted so far is in the database, without waiting for maxDelay', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '1h' } }, async (f) => {
      for (let i = 0; i < 30; i++) await f.items.set(`k${i}`, { n: i });
      await f.items.delete('k3');
      await f.items.flush();
      for (let i = 0; i < 30; i++) assert.deepEqual(await f.dbValue(`k${i}`), i === 3 ? undefined : { n: i });
      assert.equal(f.items.stats().pending, 0);
      assert.equal(f.items.stats().oldestDirtyAgeMs, 0);
    });
  });
});

describe('write-back: deletes (contracts 1 and 5)', () => {
  test('a delete is buffered, reads miss at once, and the flushed delete marker blocks an older replayed write', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '1s' } }, async (f) => {
      const written = await f.items.set('a', { n: 1 });
      await f.items.flush();

      const deleted = await f.items.delete('a');
      assert.equal(await f.items.get('a'), undefined, 'the delete is visible at once');
      assert.deepEqual(await f.dbValue('a'), { n: 1 }, 'the database still has the row until the flush');

      await f.items.flush();
      const marker = await f.row('a');
      assert.deepEqual(marker, { version: deleted.version, json: undefined }, 'a versioned delete marker');

      // An older write replayed (a retry, a journal replay) cannot resurrect the key.
      const [outcome] = await f.store.inner.write(COLLECTION, [{ op: 'set', key: 'a', version: written.version, json: '{"n":1}' }]);
      assert.equal(outcome?.status, 'superseded');
      assert.deepEqual(await f.row('a'), marker);
      assert.equal(await f.items.get('a'), undefined);
    });
  });
});

describe('write-back on a private tier: the flush leaves the cache alone (contracts 2 and 5)', () => {
  test('a write evicted from the memory tier while dirty is served from the queue, then from the database after its flush', async () => {
    await withWriteBack<Item>(
      { flush: { maxDelay: '1s' } },
      async (f) => {
        await f.items.set('a', { n: 1 });
        await f.items.set('b', { n: 2 }); // evicts a's entry: the queue still serves it
        assert.deepEqual(await f.items.get('a'), { n: 1 });
        await f.items.flush();
        const loads = f.store.calls.load;
        assert.deepEqual(await f.items.get('b'), { n: 2 });
        assert.equal(f.store.calls.load, loads, 'b is still cached from its write');
        assert.deepEqual(await f.items.get('a'), { n: 1 }, 'the flushed value, from the database');
        assert.equal(f.store.calls.load, loads + 1, 'one load, of the flushed row');
      },
      { tierMaxEntries: 1 },
    );
  });

  for (const order of ['the miss resolves first', 'both begin in one tick'] as const) {
    test(`cache-aside: a fill of the row read while a write was dirty is refused after the flush, even with the new entry evicted (${order})`, async () => {
      await withWriteBack<Item>(
        { read: 'aside', flush: { maxDelay: '1s' } },
        async (f) => {
          await f.items.set('a', { n: 1 });
          await f.items.flush();
          await f.items.set('x', { n: 0 }); // evicts a
          let miss: Awaited<ReturnType<typeof f.items.lookup>>;
          if (order === 'the miss resolves first') {
            miss = await f.items.lookup('a');
            await f.items.set('a', { n: 2 });
          } else {
            const lookup = f.items.lookup('a');
            const write = f.items.set('a', { n: 2 });
            miss = await lookup;
            await write;
          }
          assert.equal(miss.hit, false, 'a was evicted: the lookup missed');
          const old = await f.dbValue('a'); // the application's load, while the write is dirty
          assert.deepEqual(old, { n: 1 });
          await f.items.set('y', { n: 0 }); // evicts the new entry of a
          await f.items.flush();
          assert.equal(miss.hit === false && (await f.items.fill('a', old, miss.lease)), false, 'the write revoked the lease');
          const after = await f.items.lookup('a');
          assert.ok(!after.hit || (after.value as Item).n === 2, `no stale value cached: ${JSON.stringify(after)}`);
        },
        { tierMaxEntries: 1 },
      );
    });
  }
});

describe('write-back: configuration (contract 8)', () => {
  test("critical data with write-back and no journal is refused, quoting the seed's rule", async () => {
    const sqlite = tempSqlite();
    const clock = new ManualClock();
    const cache = await createCache({ store: sqlite.store, clock, tier: memoryTier({ clock }) });
    try {
      assert.throws(
        () => cache.collection('payments', { write: 'back', read: 'through', critical: true }),
        (error: unknown) =>
          isCachewiseError(error, 'E_POLICY_REFUSED') && error.message.includes(SEED_RULES.writeBackCritical) && error.details.rule === 'writeBackCritical',
      );
      assert.throws(
        () => cache.collection('payments', { write: 'back', read: 'through', critical: true, durability: 'journal' }),
        (error: unknown) => isCachewiseError(error, 'E_POLICY_REFUSED') && /no journal/.test(error.message),
        'a journal that the cache does not have is refused too',
      );
      // The same data written through is accepted.
      assert.equal(cache.collection('payments', { write: 'through', read: 'through', critical: true }).policy.write, 'through');
    } finally {
      await cache.close();
      sqlite.cleanup();
    }
  });
});
