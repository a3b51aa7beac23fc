/**
 * A write-through set: cachewise against the careful hand-written equivalent, at the same
 * concurrency.
 *
 *   cachewise  collection.set(key, value) on a write-through collection over postgresStore
 *              ({ pool }) and redisTier({ client }): the database commits, then Redis holds the
 *              new version.
 *   raw        the same by hand: one single-row INSERT ... ON CONFLICT DO UPDATE guarded by a
 *              version (autocommit, so one statement), then, if the row was written, a Redis
 *              SET ... PX of the same JSON.
 *
 * Each contender has a pg.Pool of its own of the same size (--pool) and the same statement_timeout
 * (--statement-timeout, that of postgresStore by default; 0 for none), and a Redis client of its
 * own with the same options. A pool whose connections carry a statement_timeout lets the store
 * write in autocommit, one statement per set; without one it writes in a transaction with SET
 * LOCAL (three round trips). Both tables live in one random schema, dropped at the end; every key is
 * prefilled, so the measured writes are updates. Keys of concurrent loops differ (sequence
 * numbers), so rows are not contended. See lib/write-through-contenders.ts for the set-up.
 *
 *   node --import tsx bench/write-through.ts [--json] [--quick] [--pool 10] ...
 */
import { commonFlags, parseFlags } from './lib/args.js';
import { machineInfo, printReport, ratiosTo, type CaseResult } from './lib/report.js';
import { compare } from './lib/runner.js';
import { clearProgress, deleteKeys, main, onCleanup, pgPool, progress, redisClient, runId } from './lib/services.js';
import { writeThroughContenders } from './lib/write-through-contenders.js';

const TARGET = 0.9;

const flags = parseFlags('node --import tsx bench/write-through.ts [flags]\n\nWrite-through sets (PostgreSQL + Redis) against a hand-written upsert + SET.', [
  ...commonFlags({ rounds: 5, roundMs: 1000, warmupMs: 500, concurrency: [1, 16, 64] }),
  { name: 'keys', type: 'int', description: 'distinct keys, prefilled', default: 10_000 },
  { name: 'pool', type: 'int', description: 'pg.Pool size of each contender', default: 10 },
  { name: 'statement-timeout', type: 'int', description: "statement_timeout (ms) of both pools' connections; 0 for none", default: 5000 },
  { name: 'pipelining', type: 'string', description: 'ioredis enableAutoPipelining for both contenders', default: 'on', choices: ['on', 'off'] },
]);

await main(async () => {
  const id = runId();
  const prefix = `bench:${id}:`;
  const schema = `bench_${id}`;
  const keys = flags.keys as number;
  const poolSize = flags.pool as number;
  const statementTimeout = flags['statement-timeout'] as number;
  const poolConfig = statementTimeout > 0 ? { statement_timeout: statementTimeout } : {};
  const pipelining = flags.pipelining === 'on';
  const options = { rounds: flags.rounds as number, roundMs: flags['round-ms'] as number, warmupMs: flags['warmup-ms'] as number };
  const machine = machineInfo();

  // Created first, so that their clean-ups (the schema, the keys) run before they close.
  const admin = pgPool(1, 'bench-admin');
  const adminRedis = redisClient();
  onCleanup(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  onCleanup(() => deleteKeys(adminRedis, prefix));

  progress(`prefill ${keys} keys`);
  const setup = await writeThroughContenders({
    admin,
    cwPool: pgPool(poolSize, 'bench-cachewise', poolConfig),
    rawPool: pgPool(poolSize, 'bench-raw', poolConfig),
    cwRedis: redisClient({ enableAutoPipelining: pipelining, connectionName: 'bench-cachewise' }),
    rawRedis: redisClient({ enableAutoPipelining: pipelining, connectionName: 'bench-raw' }),
    schema,
    prefix,
    keys,
  });
  onCleanup(() => setup.close());

  const before = setup.profiles.stats();
  const cases: CaseResult[] = [];
  for (const concurrency of flags.concurrency as number[]) {
    const results = await compare(setup.contenders, { ...options, concurrency }, (m) => progress(`concurrency ${concurrency}: ${m}`));
    cases.push({ setting: { concurrency }, contenders: results, ratios: ratiosTo(results, 'raw', TARGET) });
  }
  const after = setup.profiles.stats();
  clearProgress();

  const { rows } = await admin.query<{ cw: string; raw: string }>(`SELECT (SELECT count(*) FROM ${setup.tables.cachewise}) AS cw, (SELECT count(*) FROM ${setup.tables.raw}) AS raw`);
  const notes = [
    `cachewise: ${after.writes - before.writes} sets, ${after.writeErrors - before.writeErrors} errors, ${after.tierErrors - before.tierErrors} tier errors; raw: ${setup.rawSuperseded()} superseded`,
    `rows: cachewise ${rows[0]!.cw}, raw ${rows[0]!.raw} (${keys} keys prefilled, so every measured write is an update)`,
    `a pg.Pool of ${poolSize} per contender, statement_timeout ${statementTimeout > 0 ? `${statementTimeout} ms` : 'none'}; Redis auto-pipelining ${pipelining ? 'on' : 'off'} for both; schema ${schema} and keys ${prefix}* dropped at the end`,
  ];
  printReport(
    {
      benchmark: 'write-through',
      title: 'Write-through set: cachewise (postgresStore + redisTier) vs raw upsert + SET',
      machine,
      options: { ...options, keys, pool: poolSize, statementTimeout, pipelining },
      cases,
      notes,
    },
    flags.json === true,
  );
});
