/**
 * `cachewise demo`: the seed's comparison table, measured. Runs the real command (a child
 * process, as a user would) with a small workload and checks that the numbers say what the
 * seed says: write-back acknowledges faster than write-through, loses acknowledged writes when
 * killed while write-through and write-around lose none, and no pattern serves a stale read;
 * and that the sixth row, write-back with a durable journal, loses none once it recovered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { run } from '../src/cli/main.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function cachewise(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs the CLI in this process, capturing its output. */
async function runInProcess(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, { stdout: (text) => void (stdout += text), stderr: (text) => void (stderr += text) });
  return { code, stdout, stderr };
}

interface Row {
  pattern: string;
  name: string;
  seed: { writeLatency: string; consistency: string; durability: string };
  writes: number;
  reads: number;
  writeP50Ms: number;
  writeP99Ms: number;
  hitRatio: number;
  staleReads: number;
  dbWritesPerWrite: number;
  lostOnKill: { measuredOn: string; acked: number; keys: number; lost: number; replayed: number | null } | null;
  problems: string[];
}

test('demo --quick --json measures the five patterns and write-back with a journal, and the numbers match the seed\'s table', { timeout: 60_000 }, async () => {
  const { code, stdout, stderr } = await cachewise(['demo', '--quick', '--json', '--db-latency', '5']);
  assert.equal(code, 0, `exit code ${code}; stderr:\n${stderr}`);
  assert.match(stderr, /\[1\/8\] user activity feed/, 'progress goes to stderr');
  const report = JSON.parse(stdout) as {
    rows: Row[];
    checks: { name: string; ok: boolean }[];
    ok: boolean;
    options: { dbLatencyMs: number };
    feed: { eventsAcked: number; eventsInDatabase: number; collections: unknown[] };
  };
  assert.equal(report.ok, true);
  assert.equal(report.options.dbLatencyMs, 5);

  const rows = new Map(report.rows.map((row) => [row.pattern, row]));
  assert.deepEqual([...rows.keys()], ['write-through', 'write-back', 'write-around', 'read-through', 'cache-aside', 'write-back-journal']);
  for (const row of rows.values()) {
    for (const field of ['writes', 'reads', 'writeP50Ms', 'writeP99Ms', 'hitRatio', 'staleReads', 'dbWritesPerWrite'] as const) {
      assert.ok(Number.isFinite(row[field]), `${row.pattern}.${field} is a number (got ${row[field]})`);
    }
    assert.ok(row.writes > 0 && row.reads > 0, `${row.pattern} ran its workload`);
    assert.deepEqual(row.problems, [], `${row.pattern} ran without errors`);
    assert.ok(row.lostOnKill !== null && row.lostOnKill.acked >= 100, `${row.pattern} was killed after 100+ acknowledged writes`);
    // Contracts 3-7: whatever the pattern, a cache reader never sees an older value than an acknowledged write.
    assert.equal(row.staleReads, 0, `${row.pattern}: no stale reads`);
  }
  const wt = rows.get('write-through')!;
  const wb = rows.get('write-back')!;
  const wa = rows.get('write-around')!;
  assert.equal(wt.seed.writeLatency, 'High (DB latency)');
  assert.equal(wb.seed.writeLatency, 'Very Low (cache latency)');

  // "Write-Back: Very Low (cache latency)" against "Write-Through: High (DB latency)".
  assert.ok(wb.writeP50Ms < wt.writeP50Ms, `write-back p50 ${wb.writeP50Ms} ms < write-through p50 ${wt.writeP50Ms} ms`);
  // "Immediate" durability: nothing acknowledged is lost by a kill -9.
  assert.equal(wt.lostOnKill!.lost, 0, 'write-through loses no acknowledged write');
  assert.equal(wa.lostOnKill!.lost, 0, 'write-around loses no acknowledged write');
  assert.equal(rows.get('read-through')!.lostOnKill!.lost, 0);
  assert.equal(rows.get('cache-aside')!.lostOnKill!.lost, 0);
  // "Delayed" durability: the child writes continuously and the flusher waits up to 100 ms, so
  // the newest writes of some keys are always still in memory when SIGKILL lands.
  assert.ok(wb.lostOnKill!.lost > 0, `write-back with durability 'none' lost acknowledged writes (${wb.lostOnKill!.lost})`);
  // Coalescing: write-back sends fewer rows than it acknowledges; the others one per write.
  assert.ok(wb.dbWritesPerWrite < 1, `write-back coalesces (${wb.dbWritesPerWrite} DB writes per write)`);
  assert.equal(wt.dbWritesPerWrite, 1);

  // Write-back with a journal (contract 5), not in the seed: the same kill, then a restart on the
  // same journal and database replays and flushes, and no acknowledged write is missing.
  const wbj = rows.get('write-back-journal')!;
  assert.equal(wbj.name, 'Write-Back + journal');
  assert.match(wbj.seed.durability, /not in the seed/);
  assert.equal(wbj.lostOnKill!.measuredOn, 'write-back-journal');
  assert.equal(wbj.lostOnKill!.lost, 0, `write-back with a journal lost no acknowledged write (${wbj.lostOnKill!.lost} of ${wbj.lostOnKill!.keys})`);
  assert.equal(typeof wbj.lostOnKill!.replayed, 'number', 'the recovery replayed the journal');
  assert.equal(wb.lostOnKill!.replayed, null, "durability 'none' has no journal to replay");
  // Acknowledged after the journal's fsync, not after the database's commit: at this test's 5 ms
  // of database latency an fsync on a loaded machine may cost as much, but not the seed's 50 ms.
  assert.ok(wbj.writeP50Ms < 50, `write-back with a journal p50 ${wbj.writeP50Ms} ms < the seed's 50 ms database latency`);
  assert.ok(
    report.checks.some((c) => c.name.startsWith('write-back-journal: no acknowledged write lost on kill -9') && c.ok),
    'the check list has the journal row\'s kill check, passed',
  );

  assert.equal(report.feed.collections.length, 4);
  assert.equal(report.feed.eventsInDatabase, report.feed.eventsAcked, 'every event reached the database after the flush');
});

test('a bad flag value exits 2 with a message naming the flag, and the usage', async () => {
  const { code, stdout, stderr } = await cachewise(['demo', '--db-latency', 'abc']);
  assert.equal(code, 2);
  assert.equal(stdout, '');
  assert.match(stderr, /--db-latency must be a number of milliseconds/);
  assert.match(stderr, /Usage: cachewise <command>/);
});

test('usage errors exit 2 and name what was wrong', async () => {
  const cases: [string[], RegExp][] = [
    [['demo', '--db-latency=-5'], /--db-latency must be a number.*"-5"/],
    [['demo', '--db-latency', '-5'], /--db-latency/],
    [['demo', '--seed', '1.5'], /--seed must be a whole number/],
    [['demo', '--frobnicate'], /Unknown option '--frobnicate'/],
    [['demo', '--dir'], /--dir/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['demo', 'extra'], /takes no arguments/],
    [['help', '--quick'], /--quick is an option of "demo"/],
  ];
  for (const [args, message] of cases) {
    const result = await runInProcess(args);
    assert.equal(result.code, 2, `${args.join(' ')} exits 2`);
    assert.match(result.stderr, message, `${args.join(' ')}: ${result.stderr.split('\n')[0]}`);
    assert.match(result.stderr, /Usage: cachewise/);
  }
});

test('help and version', async () => {
  for (const args of [[], ['help'], ['--help'], ['-h'], ['demo', '--help']]) {
    const result = await runInProcess(args);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage: cachewise <command>/);
  }
  const version = await runInProcess(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
});
