/**
 * Three processes share Redis and PostgreSQL (contracts 3, 4 and 6 across processes). Each runs
 * test/helpers/multi-process-child.ts: a cache on the shared servers (redisTier, or twoTier with
 * its L1 and bus), randomised reads and writes on a few shared keys of a write-through, a
 * write-around, a short-TTL read-through and a write-back (sets only) collection, for a few
 * seconds, all three at once.
 * The parent merges the three histories (one machine-wide monotonic clock) and checks that no
 * read that began after a write of its key resolved returned an older version, and that the
 * processes wrote in different writer slots, claimed in the shared Redis. The same on a
 * 3-master Redis Cluster that this file starts.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { postgresStore } from '../src/index.js';
import { checkMerged, COLLECTIONS, type ChildConfig, type ChildHistory } from './helpers/multi-process-history.js';
import { dropSchema, freshSchemaName, testPool } from './helpers/postgres.js';
import { skipUnlessRedisServer, startRedisCluster, type RedisClusterHandle } from './helpers/redis-servers.js';
import { DATABASE_URL, REDIS_URL, skipUnless } from './helpers/servers.js';
import { deleteKeys } from './helpers/two-tier-instances.js';

const skip = (await skipUnless('redis')) || (await skipUnless('postgres'));
const CHILD = fileURLToPath(new URL('./helpers/multi-process-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROCESSES = 3;
const RUN_MS = 3_000;
/** A child that has not finished this long after "go" has hung. */
const CHILD_TIMEOUT_MS = RUN_MS + 30_000;

const runPrefix = `cw-test-mp-${randomBytes(5).toString('hex')}:`;
const schemas: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'cw-multi-process-'));

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (skip) return;
  const admin = testPool();
  for (const schema of schemas) await dropSchema(admin, schema);
  await admin.end();
  await deleteKeys(REDIS_URL, runPrefix);
});

interface Child {
  readonly process: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  stderr: string;
}

function startChild(config: ChildConfig): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(config)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const handle: Child = {
    process: child,
    stderr: '',
    ready: new Promise((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('ready\n')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`child ${config.index} exited (${code}) before it was ready:\n${handle.stderr}`)));
    }),
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  child.stderr!.on('data', (chunk: Buffer) => (handle.stderr += chunk.toString()));
  handle.ready.catch(() => undefined);
  return handle;
}

/**
 * Runs the three processes over one tier kind (on the shared Redis, or on `cluster`), then checks
 * the merged history.
 */
async function runProcesses(t: TestContext, tier: ChildConfig['tier'], cluster?: RedisClusterHandle): Promise<void> {
  const schema = freshSchemaName();
  schemas.push(schema);
  // The tables exist before the children start: they race on data, not on DDL.
  const setup = postgresStore({ connectionString: DATABASE_URL, schema });
  for (const c of COLLECTIONS) await setup.prepare(c.name);
  await setup.close();

  const where = cluster === undefined ? tier : `cluster-${tier}`;
  const prefix = `${runPrefix}${where}:`;
  const children: Child[] = [];
  const configs: ChildConfig[] = [];
  try {
    for (let index = 0; index < PROCESSES; index++) {
      const config: ChildConfig = {
        index,
        tier,
        redisUrl: REDIS_URL,
        ...(cluster === undefined ? {} : { clusterNodes: cluster.startupNodes }),
        databaseUrl: DATABASE_URL,
        schema,
        prefix,
        keys: 3,
        concurrency: 4,
        durationMs: RUN_MS,
        seed: Math.floor(Math.random() * 2 ** 31),
        historyFile: join(dir, `${where}-${index}.json`),
      };
      configs.push(config);
      children.push(startChild(config));
    }
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.process.stdin!.end('go\n');
    const codes = await Promise.race([
      Promise.all(children.map((c) => c.exited)),
      new Promise<'timeout'>((resolve) => setTimeout(resolve, CHILD_TIMEOUT_MS, 'timeout').unref()),
    ]);
    assert.notEqual(codes, 'timeout', `a child did not exit within ${CHILD_TIMEOUT_MS} ms`);
    (codes as (number | null)[]).forEach((code, i) => assert.equal(code, 0, `child ${i} exited ${code}:\n${children[i]!.stderr}`));
  } finally {
    for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
  }

  const histories = configs.map((c) => JSON.parse(readFileSync(c.historyFile, 'utf8')) as ChildHistory);
  // Each process claimed its writer slot in the shared tier (no writerId): all its versions carry
  // that slot, and no two processes share one.
  const slots = histories.map((h) => [...new Set(h.ops.filter((op) => op.kind === 'set' && op.version !== undefined).map((op) => op.version! % 16))]);
  t.diagnostic(`${where} tier: writer slots ${slots.map((s) => s.join('+')).join(', ')}`);
  assert.ok(
    slots.every((s) => s.length === 1),
    `each process writes in one slot: ${JSON.stringify(slots)}`,
  );
  assert.equal(new Set(slots.map((s) => s[0])).size, histories.length, `the processes hold different slots: ${JSON.stringify(slots)}`);
  const verdicts = checkMerged(histories);
  for (const v of verdicts) {
    const stale = v.violations.filter((x) => x.kind === 'stale').length;
    t.diagnostic(`${where} tier, ${v.collection}: ${v.reads} reads checked (${v.readsAfterAWrite} began after a resolved write of their key), ${v.writes} writes, stale=${stale}, other violations=${v.violations.length - stale} (median write ${v.medianWriteMs} ms, read ${v.medianReadMs} ms; writes over 400 ms: ${v.slowWrites})`);
  }
  for (const v of verdicts) {
    assert.ok(v.writes > 0 && v.readsAfterAWrite > 0, `${v.collection}: the run did too little to check anything`);
    assert.deepEqual(
      v.violations.slice(0, 10).map((x) => `${x.kind}: ${x.message}`),
      [],
      `${v.collection}: ${v.violations.length} violation(s)`,
    );
  }
}

if (skip) {
  test('the multi-process test needs Redis and PostgreSQL', { skip }, () => undefined);
} else {
  describe('three processes on shared Redis and PostgreSQL: zero stale reads (contracts 3, 4, 6)', () => {
    test('redisTier', (t) => runProcesses(t, 'redis'));
    test('twoTier (an L1 per process, invalidations acknowledged over the bus)', (t) => runProcesses(t, 'two'));
  });

  const skipOwned = skipUnlessRedisServer();
  describe('three processes on a 3-master Redis Cluster and PostgreSQL: zero stale reads', { skip: skipOwned }, () => {
    let cluster: RedisClusterHandle | undefined;
    before(async () => {
      cluster = await startRedisCluster({ masters: 3 });
    });
    after(async () => {
      await cluster?.stop();
    });
    test('redisTier on a Cluster client', (t) => runProcesses(t, 'redis', cluster));
    test('twoTier on a Cluster client (a sharded pub/sub bus)', (t) => runProcesses(t, 'two', cluster));
  });
}
