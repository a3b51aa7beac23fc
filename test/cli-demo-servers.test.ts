/**
 * `cachewise demo --redis --postgres`: the same demo on the shared Redis and PostgreSQL. Runs the
 * real command (a child process) with a small workload, checks the figures that must hold on any
 * tier and store, and that the run leaves nothing behind: no key under its prefix in Redis, no
 * demo schema in PostgreSQL. A server that does not answer exits 2 with one clear line.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { run } from '../src/cli/main.js';
import { DATABASE_URL, REDIS_URL, skipUnless } from './helpers/servers.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function cachewise(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Row {
  pattern: string;
  writes: number;
  reads: number;
  staleReads: number;
  problems: string[];
  lostOnKill: { measuredOn: string; acked: number; keys: number; lost: number; lostStillCached: number | null; replayed: number | null } | null;
}

interface Report {
  ok: boolean;
  rows: Row[];
  options: { dbLatencyMs: number };
  tier: { kind: string; url: string; prefix: string; kept: boolean };
  store: { kind: string; url: string; schema: string; kept: boolean };
  journal: { kind: string; dir: string; kept: boolean };
  dbLatency: { injectedMs: number; source: string; ownPerCall: { count: number } };
  feed: { eventsAcked: number; eventsInDatabase: number };
}

const skipRedis = await skipUnless('redis');
const skipPostgres = await skipUnless('postgres');

describe('demo on the shared Redis and PostgreSQL', { skip: skipRedis || skipPostgres }, () => {
  test('demo --quick --json --db-latency 5 --redis --postgres: six rows, no stale reads, none lost with the journal, nothing left behind', { timeout: 60_000 }, async () => {
    // Bare flags: the demo takes REDIS_URL and DATABASE_URL (or the defaults), as the helpers do.
    const env = { ...process.env, REDIS_URL, DATABASE_URL };
    const { code, stdout, stderr } = await cachewise(['demo', '--quick', '--json', '--db-latency', '5', '--redis', '--postgres'], env);
    assert.equal(code, 0, `exit code ${code}; stderr:\n${stderr}`);
    assert.match(stderr, /\[1\/8\] user activity feed/, 'progress goes to stderr');
    const report = JSON.parse(stdout) as Report;
    assert.equal(report.ok, true);

    assert.equal(report.tier.kind, 'redis');
    assert.equal(report.store.kind, 'postgres');
    assert.equal(report.tier.url, redacted(REDIS_URL));
    assert.equal(report.store.url, redacted(DATABASE_URL));
    assert.match(report.tier.prefix, /^cachewise-demo:[0-9a-f]{8}:$/);
    assert.match(report.store.schema, /^cachewise_demo_[0-9a-f]{8}$/);
    assert.equal(report.tier.kept, false);
    assert.equal(report.store.kept, false);
    assert.deepEqual([report.options.dbLatencyMs, report.dbLatency.injectedMs, report.dbLatency.source], [5, 5, 'injected']);
    assert.ok(report.dbLatency.ownPerCall.count > 0, 'the database\'s own time per call was measured');

    assert.deepEqual(
      report.rows.map((row) => row.pattern),
      ['write-through', 'write-back', 'write-around', 'read-through', 'cache-aside', 'write-back-journal'],
    );
    for (const row of report.rows) {
      assert.deepEqual(row.problems, [], `${row.pattern} ran without errors`);
      assert.ok(row.writes > 0 && row.reads > 0, `${row.pattern} ran its workload`);
      assert.equal(row.staleReads, 0, `${row.pattern}: no stale reads`);
      assert.ok(row.lostOnKill !== null && row.lostOnKill.acked >= 100, `${row.pattern} was killed after 100+ acknowledged writes`);
      // The child ran on the same Redis: the parent could look at what the tier still held.
      assert.equal(typeof row.lostOnKill.lostStillCached, 'number', `${row.pattern}: the kill was measured over Redis`);
    }
    const rows = new Map(report.rows.map((row) => [row.pattern, row]));
    assert.equal(rows.get('write-through')!.lostOnKill!.lost, 0, 'write-through loses no acknowledged write');
    assert.equal(rows.get('write-around')!.lostOnKill!.lost, 0, 'write-around loses no acknowledged write');
    // The journal stays a file journal on Redis and PostgreSQL: a restart on it replays what PostgreSQL lacks.
    assert.equal(rows.get('write-back-journal')!.lostOnKill!.lost, 0, 'write-back with a journal loses no acknowledged write');
    assert.equal(typeof rows.get('write-back-journal')!.lostOnKill!.replayed, 'number', 'the recovery replayed the journal');
    assert.deepEqual([report.journal.kind, report.journal.kept], ['file', false]);
    assert.equal(existsSync(report.journal.dir), false, `the journals' temporary directory ${report.journal.dir} was removed`);
    assert.equal(report.feed.eventsInDatabase, report.feed.eventsAcked, 'every event reached PostgreSQL after the flush');

    // Nothing left behind.
    const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    try {
      await redis.connect();
      let left = 0;
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${escapeGlob(report.tier.prefix)}*`, 'COUNT', 1000);
        left += keys.length;
        cursor = next;
      } while (cursor !== '0');
      assert.equal(left, 0, `no keys left under ${report.tier.prefix}`);
      await admin.connect();
      const { rows: schemas } = await admin.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname = $1', [report.store.schema]);
      assert.deepEqual(schemas, [], `schema ${report.store.schema} was dropped`);
    } finally {
      redis.disconnect();
      await admin.end();
    }
  });
});

test('a server that does not answer: exit 2 and one line naming the URL and how to start it', { timeout: 20_000 }, async () => {
  const redis = await cachewise(['demo', '--quick', '--redis', 'redis://127.0.0.1:1']);
  assert.equal(redis.code, 2, redis.stderr);
  assert.equal(redis.stdout, '');
  assert.match(redis.stderr, /^cachewise: Redis does not answer at redis:\/\/127\.0\.0\.1:1 .*Start it with: redis-server /);
  assert.equal(redis.stderr.trim().split('\n').length, 1, `one line, no stack trace:\n${redis.stderr}`);

  const postgres = await cachewise(['demo', '--quick', '--postgres', 'postgres://demo:secret@127.0.0.1:1/test']);
  assert.equal(postgres.code, 2, postgres.stderr);
  assert.match(postgres.stderr, /^cachewise: PostgreSQL does not answer at postgres:\/\/demo:\*\*\*@127\.0\.0\.1:1\/test .*Start it with: pg_ctlcluster /);
  assert.doesNotMatch(postgres.stderr, /secret/, 'the password is not printed');
  assert.equal(postgres.stderr.trim().split('\n').length, 1, `one line, no stack trace:\n${postgres.stderr}`);
});

test('bad server flags exit 2 and name the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['demo', '--redis', 'localhost:6379'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
    [['demo', '--postgres=mysql://127.0.0.1/test'], /--postgres must be a postgres:\/\/ or postgresql:\/\/ URL/],
    [['demo', '--postgres', '--dir', 'x'], /--dir is where the SQLite files go/],
    [['demo', '--keep'], /--keep .* needs --redis or --postgres/],
  ];
  for (const [args, message] of cases) {
    let stderr = '';
    const code = await run(args, { stdout: () => undefined, stderr: (text) => void (stderr += text) });
    const result = { code, stderr };
    assert.equal(result.code, 2, `${args.join(' ')} exits 2`);
    assert.match(result.stderr, message, `${args.join(' ')}: ${result.stderr.split('\n')[0]}`);
  }
});

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** The URL as the demo prints it: without a password. */
function redacted(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}
