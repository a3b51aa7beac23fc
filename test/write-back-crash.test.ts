/**
 * Contract 5 under SIGKILL: the crash harness (test/crash/harness.ts) kills a writing child
 * process at random moments and checks the database after each recovery. With durability
 * 'journal' no acknowledged write may be lost, even when the journal is cut back to its last
 * fsync; with 'none' the losses are counted and reported. CRASH_ROUNDS sets the round count
 * (default 100); the harness also runs on its own with --rounds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCrashRounds } from './crash/harness.js';

const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 100);

test(`durability 'journal': ${ROUNDS} SIGKILL rounds lose no acknowledged write`, { timeout: 30 * 60_000 }, async (t) => {
  const report = await runCrashRounds({ rounds: ROUNDS, durability: 'journal', seed: Date.now() % 100_000 });
  const { failures, ...counts } = report;
  t.diagnostic(JSON.stringify(counts));
  assert.deepEqual(failures, []);
  assert.equal(report.rounds, ROUNDS);
  assert.equal(report.lost, 0);
  assert.equal(report.secondReplayChanges, 0);
  assert.ok(report.cutRounds >= Math.floor(ROUNDS / 2));
  assert.ok(report.acknowledged > 0 && report.replayed > 0, 'the rounds wrote and replayed something');
});

test(`durability 'none': the acknowledged writes a SIGKILL loses are counted`, { timeout: 10 * 60_000 }, async (t) => {
  const rounds = Math.max(5, Math.ceil(ROUNDS / 5));
  const report = await runCrashRounds({ rounds, durability: 'none', seed: Date.now() % 100_000 });
  const { failures, ...counts } = report;
  t.diagnostic(JSON.stringify(counts));
  t.diagnostic(`${report.lost} of ${report.keysChecked} keys lost their newest acknowledged write over ${rounds} rounds`);
  assert.equal(report.wrongValues, 0);
  assert.equal(report.rounds, rounds);
});
