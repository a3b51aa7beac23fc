import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { isCachewiseError } from '../src/errors.js';
import { withTimeout } from '../src/util/timeout.js';

test('withTimeout passes a value or an error through, and names what did not answer in time', async () => {
  assert.equal(await withTimeout(Promise.resolve(7), 1_000, 'the store'), 7);
  const own = new Error('refused');
  await assert.rejects(withTimeout(Promise.reject(own), 1_000, 'the store'), (error) => error === own);
  await assert.rejects(
    withTimeout(new Promise(() => undefined), 20, 'the store write'),
    (error) => isCachewiseError(error) && error.code === 'E_TIMEOUT' && /the store write did not answer within 20 ms/.test(error.message),
  );
  assert.equal(await withTimeout(Promise.resolve('no bound'), 0, 'x'), 'no bound');
});

test('withTimeout: a rejection that comes after the timeout is not an unhandled rejection', async () => {
  let rejectLate!: (error: Error) => void;
  const late = new Promise<never>((_, reject) => (rejectLate = reject));
  await assert.rejects(withTimeout(late, 10, 'the tier'), (error) => isCachewiseError(error) && error.code === 'E_TIMEOUT');
  rejectLate(new Error('too late'));
  await sleep(20); // an unhandled rejection would fail the run here (--unhandled-rejections=strict)
});
