import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/index.js';
import { VersionClock } from '../src/version-clock.js';

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
