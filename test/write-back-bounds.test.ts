/**
 * Write-back (contract 5) bounds: a continuously written key cannot starve, dirty entries survive
 * an evicting tier, and pending work is bounded in keys and bytes (writers wait or get
 * E_BACKPRESSURE, and nothing of a refused write is kept anywhere). Real SQLite behind a fault
 * injector, the real memory tier, a ManualClock.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isCachewiseError } from '../src/errors.js';
import type { CacheEvents } from '../src/events.js';
import { withWriteBack } from './helpers/write-back-fixture.js';

type Item = { n: number };

/** Retries forever, quickly: an outage in these tests only ends when the test ends it. */
const RETRY_FOREVER = { maxAttempts: Infinity, baseDelay: '20ms', maxDelay: '100ms' } as const;

describe('write-back: no starvation (contract 5)', () => {
  test('a key written every millisecond beside a stream of other keys is flushed again and again, within maxDelay', async () => {
    const maxDelay = 20;
    await withWriteBack<Item>({ flush: { maxBatch: 50, maxDelay, concurrency: 1 } }, async (f) => {
      let oldestDirty = 0;
      for (let tick = 0; tick < 300; tick++) {
        await f.items.set('hot', { n: tick });
        await f.items.set(`cold${tick}`, { n: tick });
        oldestDirty = Math.max(oldestDirty, f.items.stats().oldestDirtyAgeMs);
        await f.advance(1);
      }
      const sent = f.probe.sendTimes('hot');
      assert.ok(sent.length >= 300 / (maxDelay + 2) - 1, `the hot key was flushed ${sent.length} times in 300 ms`);
      const gaps = sent.slice(1).map((at, i) => at - sent[i]!);
      assert.ok(Math.max(...gaps) <= maxDelay + 2, `longest wait between two flushes of the hot key: ${Math.max(...gaps)} ms`);
      assert.ok(oldestDirty <= maxDelay + 2, `oldest dirty age reached ${oldestDirty} ms`);

      const versions = f.store.batches.flat().filter((w) => w.key === 'hot').map((w) => w.version);
      assert.equal(new Set(versions).size, versions.length, 'every flush of the hot key carried a newer version');
      assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
      const row = await f.row('hot');
      assert.ok(row !== undefined && JSON.parse(row.json!).n >= 300 - maxDelay - 2, `the database lags the hot key by at most maxDelay (holds ${row?.json})`);
    });
  });
});

describe('write-back: dirty entries and eviction (contract 5)', () => {
  test('500 dirty keys in a 10-entry memory tier with the database down: every key reads its value, then all 500 land', async () => {
    await withWriteBack<Item>(
      { flush: { maxDelay: '10ms' }, retry: RETRY_FOREVER },
      async (f) => {
        f.store.down = true;
        for (let i = 0; i < 500; i++) await f.items.set(`k${i}`, { n: i });
        await f.advance(300, 10);
        assert.ok(f.store.calls.write >= 3, 'the flusher tried and failed');

        let inTier = 0;
        for (let i = 0; i < 500; i++) if ((await f.cache.tier.get(`items:k${i}`)) !== undefined) inTier++;
        assert.ok(inTier <= 10, `the tier evicted (it holds ${inTier} of the 500)`);
        for (let i = 0; i < 500; i++) assert.deepEqual(await f.items.get(`k${i}`), { n: i }, `k${i}`);
        const all = await f.items.getMany(Array.from({ length: 500 }, (_, i) => `k${i}`));
        assert.deepEqual(all, Array.from({ length: 500 }, (_, i) => ({ n: i })));
        assert.equal(f.items.stats().pending, 500);

        f.store.down = false;
        await f.driveUntil(f.items.flush());
        for (let i = 0; i < 500; i++) assert.deepEqual(await f.dbValue(`k${i}`), { n: i }, `k${i} in the database`);
        for (let i = 0; i < 500; i += 37) assert.deepEqual(await f.items.get(`k${i}`), { n: i });
      },
      { tierMaxEntries: 10 },
    );
  });
});

describe('write-back: bounded pending work (contract 5)', () => {
  test("onFull 'reject': the 101st new key gets E_BACKPRESSURE at once and nothing of it is written anywhere", async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: RETRY_FOREVER, pending: { maxEntries: 100, onFull: 'reject' } }, async (f) => {
      await f.items.set('late', { n: 0 });
      await f.items.flush();
      const pressure: CacheEvents['backpressure'][] = [];
      f.cache.events.on('backpressure', (event) => pressure.push(event));
      f.store.down = true;
      for (let i = 0; i < 100; i++) await f.items.set(`k${i}`, { n: i });
      await f.advance(50, 10);

      await assert.rejects(f.items.set('late', { n: 1 }), (error: unknown) => isCachewiseError(error, 'E_BACKPRESSURE') && /pending\.maxEntries/.test(error.message));
      assert.deepEqual(await f.items.get('late'), { n: 0 }, 'reads still return the old value');
      assert.deepEqual(await f.dbValue('late'), { n: 0 });
      assert.deepEqual(pressure.map((e) => [e.pending, e.rejected]), [[100, true]]);
      assert.equal(f.items.stats().backpressureRejects, 1);
      assert.equal(f.items.stats().pending, 100);

      // A key already pending coalesces: it needs no room, so it is accepted even when full.
      await f.items.set('k5', { n: 555 });
      assert.deepEqual(await f.items.get('k5'), { n: 555 });
      assert.equal(f.items.stats().pending, 100);

      f.store.down = false;
      await f.driveUntil(f.items.flush());
      assert.deepEqual(await f.dbValue('k5'), { n: 555 });
      assert.deepEqual(await f.dbValue('late'), { n: 0 });
      const lateVersions = f.store.batches.flat().filter((w) => w.key === 'late');
      assert.equal(lateVersions.length, 1, 'the refused write never went to the database');
    });
  });

  test("onFull 'wait': writers wait while the database is down, never past the bound, and succeed once it recovers", async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: RETRY_FOREVER, pending: { maxEntries: 100, onFull: 'wait', waitTimeout: '10s' } }, async (f) => {
      f.store.down = true;
      for (let i = 0; i < 100; i++) await f.items.set(`k${i}`, { n: i });
      let maxPending = 0;
      const sample = () => (maxPending = Math.max(maxPending, f.items.stats().pending));
      f.cache.events.on('backpressure', sample);

      let accepted = 0;
      const waiting = Array.from({ length: 150 }, (_, i) => f.items.set(`late${i}`, { n: i }).then(() => void accepted++));
      await f.advance(1_000, 10);
      assert.equal(accepted, 0, 'no writer got in while the queue was full');
      assert.equal(f.items.stats().pending, 100);
      assert.ok(f.items.stats().backpressureWaits >= 1);
      assert.equal(await f.items.get('late0'), undefined, 'a waiting write is not visible yet');

      f.store.down = false;
      for (let step = 0; step < 200 && accepted < 150; step++) {
        f.clock.advance(10);
        await f.settle();
        sample();
      }
      await Promise.all(waiting);
      assert.ok(maxPending <= 100, `pending reached ${maxPending}`);
      await f.driveUntil(f.items.flush());
      for (let i = 0; i < 150; i += 10) assert.deepEqual(await f.dbValue(`late${i}`), { n: i });
    });
  });

  test("onFull 'wait': a writer that waited waitTimeout gets E_BACKPRESSURE, and its write is nowhere", async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: RETRY_FOREVER, pending: { maxEntries: 100, onFull: 'wait', waitTimeout: '1s' } }, async (f) => {
      f.store.down = true;
      for (let i = 0; i < 100; i++) await f.items.set(`k${i}`, { n: i });
      let outcome: unknown = 'waiting';
      const late = f.items.set('late', { n: 1 }).then(
        () => (outcome = 'accepted'),
        (error: unknown) => (outcome = error),
      );
      await f.advance(999, 10);
      assert.equal(outcome, 'waiting');
      await f.advance(1);
      await late;
      assert.ok(isCachewiseError(outcome, 'E_BACKPRESSURE'), `got ${String(outcome)}`);
      assert.equal(f.items.stats().backpressureRejects, 1);
      assert.equal(await f.items.get('late'), undefined);
      f.store.down = false;
      await f.driveUntil(f.items.flush());
      assert.equal(await f.row('late'), undefined);
    });
  });

  test('pending bytes are bounded too: past maxBytes new keys are refused, and pendingBytes never exceeds it', async () => {
    const maxBytes = 4_000;
    await withWriteBack<{ s: string }>({ flush: { maxDelay: '10ms' }, retry: RETRY_FOREVER, pending: { maxBytes, onFull: 'reject' } }, async (f) => {
      f.store.down = true;
      const big = 'x'.repeat(300);
      let accepted = 0;
      let refused = 0;
      for (let i = 0; i < 50; i++) {
        try {
          await f.items.set(`k${i}`, { s: big });
          accepted++;
        } catch (error) {
          assert.ok(isCachewiseError(error, 'E_BACKPRESSURE'));
          refused++;
        }
        assert.ok(f.items.stats().pendingBytes <= maxBytes, `pendingBytes ${f.items.stats().pendingBytes}`);
      }
      assert.ok(accepted >= 5 && accepted <= 12, `${accepted} values of ~300 bytes fit in ${maxBytes} bytes`);
      assert.equal(refused, 50 - accepted);
      // A pending key can still take a new value of the same size.
      await f.items.set('k0', { s: big.replace('x', 'y') });
      assert.ok(f.items.stats().pendingBytes <= maxBytes);
      f.store.down = false;
      await f.driveUntil(f.items.flush());
      assert.equal(f.items.stats().pendingBytes, 0);
      assert.equal((await f.dbValue('k0'))?.s[0], 'y');
    });
  });
});
