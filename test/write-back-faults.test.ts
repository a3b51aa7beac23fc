/**
 * Write-back (contract 5) when the database fails: capped exponential backoff with jitter,
 * idempotent retry of unknown outcomes, dead letters per entry, bounded retries, and close()
 * draining within its deadline. A real SQLite file behind a fault injector; a ManualClock drives
 * the flush timer, the backoff and the close deadline.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isCachewiseError } from '../src/errors.js';
import type { CacheEvents } from '../src/events.js';
import { backoffMs } from '../src/patterns/write-back/backoff.js';
import { readBack, withWriteBack } from './helpers/write-back-fixture.js';

type Item = { n: number };

describe('write-back: backoff (contract 5)', () => {
  test('the delay is exponential, capped at maxDelay, and jittered within [cap/2, cap]', () => {
    const base = 100;
    const max = 5_000;
    for (let attempt = 1; attempt <= 2_000; attempt++) {
      const cap = Math.min(max, base * 2 ** (attempt - 1));
      assert.equal(backoffMs(attempt, base, max, () => 0), cap / 2, `attempt ${attempt}, least jitter`);
      assert.equal(backoffMs(attempt, base, max, () => 0.999999), cap / 2 + (cap / 2) * 0.999999, `attempt ${attempt}, most jitter`);
      const delay = backoffMs(attempt, base, max);
      assert.ok(delay >= cap / 2 && delay <= cap && delay <= max, `attempt ${attempt}: ${delay} outside [${cap / 2}, ${cap}]`);
    }
    assert.equal(backoffMs(1, base, max, () => 0.5), 75);
    assert.equal(backoffMs(3, base, max, () => 0.5), 300);
    // Jitter: retries that failed together do not come back together.
    const samples = new Set(Array.from({ length: 100 }, () => backoffMs(4, base, max)));
    assert.ok(samples.size > 50, 'delays are spread, not identical');
  });
});

describe('write-back: retries (contract 5)', () => {
  test('transient failures are retried with capped exponential backoff and jitter, counted, reported, and land', async () => {
    const policy = { flush: { maxDelay: '10ms' as const }, retry: { maxAttempts: 10, baseDelay: '100ms' as const, maxDelay: '400ms' as const } };
    await withWriteBack<Item>(policy, async (f) => {
      const retries: CacheEvents['flush-retry'][] = [];
      f.cache.events.on('flush-retry', (event) => retries.push(event));
      f.store.writeFaults = ['throw', 'refuse', 'throw', 'refuse', 'throw'];
      const result = await f.items.set('a', { n: 1 });
      await f.driveUntil(f.items.persisted(result), { stepMs: 1 });

      assert.deepEqual(await f.dbValue('a'), { n: 1 });
      assert.equal(retries.length, 5);
      assert.equal(f.items.stats().retries, 5);
      retries.forEach((event, i) => {
        const cap = Math.min(400, 100 * 2 ** i);
        assert.equal(event.attempt, i + 1);
        assert.equal(event.keys, 1);
        assert.ok(event.delayMs >= cap / 2 && event.delayMs <= cap, `attempt ${i + 1}: delay ${event.delayMs} outside [${cap / 2}, ${cap}]`);
        assert.match(String(event.error), /injected/);
      });
      // The attempts really were spaced by the announced delays.
      const sent = f.probe.sendTimes('a');
      assert.equal(sent.length, 6);
      for (let i = 1; i < sent.length; i++) {
        const gap = sent[i]! - sent[i - 1]!;
        const announced = retries[i - 1]!.delayMs;
        assert.ok(gap >= announced - 0.01 && gap <= announced + 1.01, `attempt ${i + 1} came ${gap} ms after the previous one, announced ${announced}`);
      }
      assert.deepEqual(f.items.deadLetters(), []);
    });
  });

  test('through an outage every write is retried, the reads keep serving it, and it lands once the database is back', async () => {
    const policy = { flush: { maxDelay: '10ms' as const }, retry: { maxAttempts: Infinity, baseDelay: '20ms' as const, maxDelay: '200ms' as const } };
    await withWriteBack<Item>(policy, async (f) => {
      let retriedKeys = 0;
      f.cache.events.on('flush-retry', (event) => {
        retriedKeys += event.keys;
        assert.ok(event.delayMs <= 200, `delay ${event.delayMs} above the cap`);
      });
      f.store.down = true;
      for (let i = 0; i < 20; i++) await f.items.set(`k${i}`, { n: i });
      await f.advance(2_000, 5);
      const failedCalls = f.store.calls.write;
      assert.ok(failedCalls >= 5, `retried during the outage (${failedCalls} attempts)`);
      // Without backoff that would be one attempt per 5 ms step (400); with it, after the ramp,
      // at most one per half of the 200 ms cap.
      assert.ok(failedCalls <= 2_000 / 100 + 6, `the capped backoff kept the attempts few (${failedCalls})`);
      assert.deepEqual(f.store.calls.batchSizes, Array(failedCalls).fill(20), 'the 20 writes that failed together are retried together');
      assert.equal(f.store.batches.length, 0, 'nothing reached the database while it was down');
      for (let i = 0; i < 20; i++) assert.deepEqual(await f.items.get(`k${i}`), { n: i });

      f.store.down = false;
      await f.driveUntil(f.items.flush(), { stepMs: 5 });
      for (let i = 0; i < 20; i++) assert.deepEqual(await f.dbValue(`k${i}`), { n: i });
      assert.equal(f.items.stats().retries, retriedKeys);
      assert.equal(retriedKeys, 20 * failedCalls);
      assert.equal(f.items.stats().pending, 0);
      assert.deepEqual(f.items.deadLetters(), []);
    });
  });

  test('a write to a hung database times out after storeTimeout and is retried', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, storeTimeout: '30ms', retry: { baseDelay: '50ms' } }, async (f) => {
      f.store.writeFaults = ['hang'];
      const result = await f.items.set('a', { n: 1 });
      await f.advance(10);
      assert.equal(f.store.calls.write, 1);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the store timeout is real time
      await f.driveUntil(f.items.persisted(result), { stepMs: 5 });
      assert.equal(f.store.calls.write, 2);
      assert.equal(f.items.stats().retries, 1);
      assert.deepEqual(await f.dbValue('a'), { n: 1 });
    });
  });

  test('a batch that committed but reported an error (unknown outcome) is retried idempotently', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: { baseDelay: '50ms' } }, async (f) => {
      f.store.writeFaults = ['applied-then-throw'];
      const result = await f.items.set('a', { n: 1 });
      await f.driveUntil(f.items.persisted(result), { stepMs: 5 });

      assert.equal(f.store.batches.length, 2, 'committed once, then sent again');
      assert.equal(f.items.stats().retries, 1);
      assert.deepEqual(await f.row('a'), { version: result.version, json: '{"n":1}' });
      assert.deepEqual(f.items.deadLetters(), []);
      assert.deepEqual(await f.items.get('a'), { n: 1 });
    });
  });

  test('a newer write accepted while an unknown-outcome batch is in flight wins; the database version never goes back', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: { baseDelay: '50ms' } }, async (f) => {
      f.store.writeFaults = ['applied-then-throw'];
      f.store.delayMs = 5;
      const first = await f.items.set('a', { n: 1 });
      f.clock.advance(10); // the batch with n=1 is on its way
      await f.settle();
      assert.equal(f.store.calls.write, 1);
      const second = await f.items.set('a', { n: 2 });
      await f.driveUntil(f.items.persisted(second), { stepMs: 5 });
      await f.items.persisted(first);

      assert.deepEqual(await f.row('a'), { version: second.version, json: '{"n":2}' });
      const versions = f.store.batches.flat().filter((w) => w.key === 'a').map((w) => w.version);
      assert.deepEqual(versions, [...versions].sort((x, y) => x - y), `versions written: ${versions.join(', ')}`);
      assert.ok(!versions.slice(1).includes(first.version), 'the older write was not sent again after the newer one');
      assert.deepEqual(await f.items.get('a'), { n: 2 });
    });
  });
});

describe('write-back: waiting through failures (contract 10)', () => {
  test('flush() and persisted() waiting for a failed write that a newer write replaced resolve once the newer write is in the database', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: { baseDelay: '50ms' } }, async (f) => {
      f.store.writeFaults = ['throw'];
      let answer!: () => void;
      const held = new Promise<void>((resolve) => (answer = resolve));
      f.store.writeHold = () => held;
      const first = await f.items.set('a', { n: 1 });
      f.clock.advance(10); // the batch with n=1 is on its way, and will fail once answered
      await f.settle();
      assert.equal(f.store.calls.write, 1);
      f.store.writeHold = undefined;
      const seen: string[] = [];
      const track = (name: string, promise: Promise<unknown>) =>
        promise.then(async () => {
          seen.push(name);
          assert.deepEqual(await f.dbValue('a'), { n: 2 }, `${name} resolved with the newer write in the database`);
        });
      const flushedBefore = track('flush before', f.items.flush());
      const persistedFirst = track('persisted(first)', f.items.persisted(first));
      const second = await f.items.set('a', { n: 2 });
      const flushedAfter = track('flush after', f.items.flush());
      assert.equal(f.store.calls.write, 1, 'the failing batch is still out');
      answer();
      await f.advance(2_000, 5);
      assert.equal(f.items.stats().retries, 0, 'the failed write was dropped for the newer one, not retried');
      assert.deepEqual(seen.sort(), ['flush after', 'flush before', 'persisted(first)']);
      await Promise.all([flushedBefore, persistedFirst, flushedAfter]);
      assert.deepEqual(await f.row('a'), { version: second.version, json: '{"n":2}' });
    });
  });

  test('a flush() waiting for a write in backoff follows the newer write of its key that replaces it in the queue', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: { baseDelay: '100ms', maxDelay: '100ms' } }, async (f) => {
      f.store.writeFaults = ['refuse'];
      await f.items.set('a', { n: 1 });
      await f.advance(10); // the batch fails; n=1 waits out its backoff in the queue
      assert.equal(f.items.stats().retries, 1);
      let resolved = false;
      const flushed = f.items.flush().then(() => (resolved = true));
      const second = await f.items.set('a', { n: 2 }); // coalesces with n=1
      await f.advance(1_000, 10);
      assert.ok(resolved, 'flush() resolved');
      await flushed;
      assert.deepEqual(await f.row('a'), { version: second.version, json: '{"n":2}' });
    });
  });

  test('a flush that times out names the keys still dirty, and the writes land later', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, retry: { baseDelay: '10ms', maxDelay: '20ms' } }, async (f) => {
      await f.items.set('done', { n: 0 });
      await f.items.flush();
      f.store.down = true;
      for (const key of ['c', 'a', 'b']) await f.items.set(key, { n: 1 });
      const timedOut = f.items.flush({ timeout: '100ms' });
      await assert.rejects(f.driveUntil(timedOut, { stepMs: 5 }), (error: unknown) => {
        assert.ok(isCachewiseError(error, 'E_TIMEOUT'), String(error));
        assert.deepEqual([...(error.details.keys as string[])].sort(), ['a', 'b', 'c']);
        assert.match(error.message, /3 key\(s\) still dirty/);
        return true;
      });
      f.store.down = false;
      await f.driveUntil(f.items.flush(), { stepMs: 5 });
      for (const key of ['a', 'b', 'c']) assert.deepEqual(await f.dbValue(key), { n: 1 });
    });
  });
});

describe('write-back: dead letters (contract 5)', () => {
  test('one permanently failing entry in a batch of 100 is dead-lettered alone; the other 99 commit', async () => {
    await withWriteBack<Item>({ flush: { maxBatch: 100, maxDelay: '10ms' } }, async (f) => {
      await f.items.set('k42', { n: -1 });
      await f.items.flush();
      const letters: CacheEvents['dead-letter'][] = [];
      f.cache.events.on('dead-letter', (event) => letters.push(event));
      f.store.poisoned.add('k42');

      await f.items.setMany(Array.from({ length: 100 }, (_, i) => [`k${i}`, { n: i }] as const));
      await assert.rejects(f.items.flush(), (error: unknown) => {
        assert.ok(isCachewiseError(error, 'E_FLUSH_INCOMPLETE'));
        const failed = error.details.failed as { key: string; reason: string }[];
        assert.deepEqual(failed.map((x) => x.key), ['k42']);
        assert.match(failed[0]!.reason, /constraint/);
        assert.match(error.message, /k42/, 'the message names the key');
        return true;
      });

      assert.equal(f.store.calls.batchSizes.filter((size) => size === 100).length, 1, 'the 100 writes went out as one batch');
      for (let i = 0; i < 100; i++) if (i !== 42) assert.deepEqual(await f.dbValue(`k${i}`), { n: i }, `k${i}`);
      assert.deepEqual(await f.dbValue('k42'), { n: -1 }, 'the database kept its old value of the poisoned key');

      const dead = f.items.deadLetters();
      assert.deepEqual(dead.map((letter) => [letter.key, letter.op]), [['k42', 'set']]);
      assert.match(dead[0]!.reason, /constraint/);
      assert.equal(dead[0]!.json, '{"n":42}', 'the letter keeps the value, to be written again');
      assert.deepEqual(f.cache.deadLetters(), dead);
      assert.deepEqual(letters.map((x) => [x.key, x.version]), [['k42', dead[0]!.version]]);
      assert.equal(f.items.stats().deadLetters, 1);
      assert.deepEqual(await f.items.get('k42'), { n: -1 }, "the cache no longer serves the dead-lettered value: it reads the database's");
      assert.deepEqual(await f.items.get('k7'), { n: 7 });
    });
  });

  test('flush() reports a write that went to the dead letters before it was called, once', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' } }, async (f) => {
      f.store.poisoned.add('bad');
      const dead = new Promise((resolve) => f.cache.events.once('dead-letter', resolve));
      await f.items.set('bad', { n: 1 });
      await f.items.set('good', { n: 2 });
      await f.driveUntil(dead); // flushed and dead-lettered with no flush() waiting
      await assert.rejects(f.items.flush(), (error: unknown) => {
        assert.ok(isCachewiseError(error, 'E_FLUSH_INCOMPLETE'));
        assert.deepEqual((error.details.failed as { key: string }[]).map((x) => x.key), ['bad']);
        return true;
      });
      await f.items.flush(); // reported once: nothing failed since
      assert.deepEqual(await f.dbValue('good'), { n: 2 });
    });
  });

  test('persisted() of a dead-lettered write rejects with the reason', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' } }, async (f) => {
      f.store.poisoned.add('bad');
      const result = await f.items.set('bad', { n: 1 });
      await assert.rejects(f.driveUntil(f.items.persisted(result)), (error: unknown) => isCachewiseError(error, 'E_FLUSH_INCOMPLETE') && /constraint/.test(error.message));
      // Asking again after the fact gives the same answer.
      await assert.rejects(f.items.persisted(result), (error: unknown) => isCachewiseError(error, 'E_FLUSH_INCOMPLETE') && /bad/.test(error.message));
      assert.equal(await f.items.get('bad'), undefined);
    });
  });

  test('retries are not endless: with maxAttempts 3 and the database down, the write is dead-lettered after 3 attempts', async () => {
    const policy = { flush: { maxDelay: '10ms' as const }, retry: { maxAttempts: 3, baseDelay: '100ms' as const, maxDelay: '1s' as const } };
    await withWriteBack<Item>(policy, async (f) => {
      const letters: CacheEvents['dead-letter'][] = [];
      f.cache.events.on('dead-letter', (event) => letters.push(event));
      f.store.down = true;
      const result = await f.items.set('a', { n: 1 });
      await assert.rejects(f.driveUntil(f.items.persisted(result), { stepMs: 5 }), (error: unknown) => isCachewiseError(error, 'E_FLUSH_INCOMPLETE'));

      assert.equal(f.store.calls.write, 3);
      assert.equal(f.items.stats().retries, 2);
      const [letter] = f.items.deadLetters();
      assert.equal(letter?.key, 'a');
      assert.equal(letter?.version, result.version);
      assert.equal(letter?.attempts, 3);
      assert.match(letter?.reason ?? '', /3 attempts/);
      assert.match(letter?.reason ?? '', /database unavailable/);
      assert.equal(letters.length, 1);
      await f.advance(10_000, 100);
      assert.equal(f.store.calls.write, 3, 'no attempt after giving up');
      assert.equal(f.items.stats().pending, 0);
    });
  });
});

describe('write-back: close (contract 5)', () => {
  test('close() flushes pending writes before it resolves', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '1h' } }, async (f) => {
      for (let i = 0; i < 50; i++) await f.items.set(`k${i}`, { n: i });
      await f.items.delete('k0');
      // No clock movement: the drain does not wait for maxDelay.
      const report = await f.cache.close({ timeout: '5s' });
      assert.deepEqual(report, { unflushed: [], lost: 0 });
      assert.equal(f.items.stats().lostWrites, 0);
      // What close() flushed is in the file, read by a fresh connection.
      assert.equal((await readBack(f.file, 'k49'))?.json, '{"n":49}');
      const deleted = await readBack(f.file, 'k0');
      assert.ok(deleted !== undefined && deleted.json === undefined, 'the delete marker is on disk');
    });
  });

  test('with the database hung, close() resolves at its deadline and reports and counts the lost writes', async () => {
    await withWriteBack<Item>({ flush: { maxDelay: '10ms' }, storeTimeout: '100ms' }, async (f) => {
      const lostEvents: CacheEvents['writes-lost'][] = [];
      f.cache.events.on('writes-lost', (event) => lostEvents.push(event));
      const flushed = await f.items.set('safe', { n: 0 });
      await f.driveUntil(f.items.persisted(flushed));
      f.store.writeFaults = Array.from({ length: 20 }, () => 'hang' as const);
      for (const key of ['a', 'b', 'c']) await f.items.set(key, { n: 1 });

      let resolved = false;
      const closing = f.cache.close({ timeout: '2s' }).finally(() => (resolved = true));
      await f.advance(1_999, 100);
      assert.equal(resolved, false, 'close waits for the drain until its deadline');
      await f.advance(1);
      assert.equal(resolved, true, 'close resolves at its deadline');
      const report = await closing;

      assert.deepEqual(report.unflushed.map((w) => w.key).sort(), ['a', 'b', 'c']);
      assert.ok(report.unflushed.every((w) => w.collection === 'items' && w.op === 'set'));
      assert.equal(report.lost, 3, "durability 'none': the unflushed writes are lost");
      assert.deepEqual(lostEvents.map((e) => [e.count, [...e.keys].sort()]), [[3, ['a', 'b', 'c']]]);
      assert.equal(f.items.stats().lostWrites, 3);
      await assert.rejects(f.items.set('d', { n: 1 }), (error: unknown) => isCachewiseError(error, 'E_CLOSED'));
      await assert.rejects(f.items.delete('a'), (error: unknown) => isCachewiseError(error, 'E_CLOSED'));

      // Once closed, the flusher sends nothing more, even when the hung batch times out later.
      const callsAtClose = f.store.calls.write;
      await new Promise((resolve) => setTimeout(resolve, 150));
      await f.advance(60_000, 1_000);
      assert.equal(f.store.calls.write, callsAtClose, 'no write after close() reported its result');
      assert.equal(f.items.stats().deadLetters, 0, 'writes already reported lost are not dead-lettered afterwards');
      await assert.rejects(f.items.flush(), (error: unknown) => isCachewiseError(error, 'E_CLOSED') && /3 write/.test(error.message), 'flush() after close answers, it does not hang');
      await f.close();
    });
  });
});
