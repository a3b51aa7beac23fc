import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CachewiseError, createCache, functionStore, ManualClock } from '../src/index.js';
import { VersionClock, WRITER_SLOTS } from '../src/version-clock.js';

test('versions strictly increase, even when many share a millisecond', () => {
  const versions = new VersionClock(new ManualClock());
  let last = 0;
  for (let i = 0; i < 10_000; i++) {
    const v = versions.next();
    assert.ok(v > last);
    last = v;
  }
  assert.ok(Number.isSafeInteger(last));
});

test('versions strictly increase when the wall clock steps back', () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1));
  const versions = new VersionClock(clock);
  const before = versions.next();
  const backwards = new VersionClock({ ...clock, now: () => Date.UTC(2026, 0, 1), setTimer: clock.setTimer.bind(clock) });
  backwards.observe(before);
  assert.ok(backwards.next() > before, 'a lagging clock still issues newer versions after observing one');
});

test('a restarted process seeded with the highest stored version issues newer ones', () => {
  const clock = new ManualClock();
  const first = new VersionClock(clock);
  const stored = first.next() + 1_000_000; // a version from a process whose clock ran ahead
  const restarted = new VersionClock(clock);
  restarted.observe(stored);
  assert.ok(restarted.next() > stored);
});

test('a version tells when it was issued', () => {
  const clock = new ManualClock(Date.UTC(2030, 3, 4, 5, 6, 7));
  assert.equal(VersionClock.timeOf(new VersionClock(clock).next()), clock.now());
});

test('clocks in different writer slots never issue the same version, even from one highest version', () => {
  const clock = new ManualClock();
  const clocks = Array.from({ length: WRITER_SLOTS }, (_, slot) => new VersionClock(clock, slot));
  const seen = new Set<number>();
  const highest = clocks[0]!.next() + 5_000; // ahead of the wall clock: every clock runs on its counter
  for (const versions of clocks) versions.observe(highest);
  for (let i = 0; i < 1_000; i++) {
    for (const versions of clocks) {
      const v = versions.next();
      assert.ok(!seen.has(v), `version ${v} issued twice`);
      assert.equal(VersionClock.writerOf(v), versions.writerId);
      seen.add(v);
    }
    if (i % 100 === 0) clock.advance(1);
  }
});

test('a clock stays in its slot after observing versions of other slots, and still moves past them', () => {
  const clock = new ManualClock();
  const versions = new VersionClock(clock, 7);
  for (const ahead of [1, 8, 9, 4096 * 3 + 15]) {
    const other = versions.next() + ahead;
    versions.observe(other);
    const v = versions.next();
    assert.ok(v > other);
    assert.ok(v - other <= WRITER_SLOTS, 'the next version in the slot, not a later one');
    assert.equal(VersionClock.writerOf(v), 7);
  }
});

test('256 writes of one slot share a millisecond before the clock runs ahead of the wall clock', () => {
  const clock = new ManualClock();
  const versions = new VersionClock(clock, 3);
  let v = 0;
  for (let i = 0; i < 256; i++) v = versions.next();
  assert.equal(VersionClock.timeOf(v), clock.now());
  assert.equal(VersionClock.timeOf(versions.next()), clock.now() + 1);
});

test('without a writer slot, a clock draws one', () => {
  const slots = new Set(Array.from({ length: 200 }, () => new VersionClock(new ManualClock()).writerId));
  for (const slot of slots) assert.ok(Number.isInteger(slot) && slot >= 0 && slot < WRITER_SLOTS);
  assert.ok(slots.size > 1);
});

test('createCache refuses a writerId outside 0 to 15 with a remedy', async () => {
  for (const writerId of [-1, 16, 1.5, Number.NaN, '3']) {
    await assert.rejects(
      createCache({ store: functionStore({ load: () => undefined, save: () => undefined, remove: () => undefined }), writerId: writerId as number }),
      (error: CachewiseError) => error.code === 'E_INVALID_OPTION' && /writerId/.test(error.message) && /0 to 15/.test(error.remedy),
    );
  }
  const cache = await createCache({ store: functionStore({ load: () => undefined, save: () => undefined, remove: () => undefined }), writerId: 15, clock: new ManualClock() });
  assert.equal(cache.writerId, 15);
  await cache.close();
});
