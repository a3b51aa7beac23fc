/**
 * Where a write-through set loses against the hand-written one: the raw write changed one part
 * at a time toward what cachewise does, every step a contender, interleaved in rounds and
 * compared with the first.
 *
 *   raw                   autocommit single-row upsert with a version guard, then SET PX
 *                         (the baseline of bench/write-through.ts)
 *   raw, in a transaction the statements postgresStore sends for a one-entry write on a pool
 *                         without statement_timeout: BEGIN + SET LOCAL statement_timeout +
 *                         SAVEPOINT, the upsert, COMMIT (three round trips on a checked-out
 *                         connection), then SET PX
 *   raw, store's SQL      the statement postgresStore sends for a one-entry write on a pool whose
 *                         connections carry statement_timeout (as here): the single-row upsert
 *                         in autocommit on a checked-out connection, then SET PX
 *   raw, store's SQL+Lua  the same, with the Redis step done by redisTier.set() (the set-if-newer
 *                         Lua script) instead of SET
 *   cachewise             collection.set(): all of the above, plus value validation, version
 *                         clock, timeouts and stats
 *
 * Each step has its own table (prefilled, so writes are updates), its own pg.Pool of --pool
 * connections (all with the same statement_timeout) and its own Redis client with the same
 * options. A diagnostic for changing the write path: the store's statements are copied from
 * src/stores/postgres-store.ts (update them with it).
 *
 *   node --import tsx bench/write-breakdown.ts [--json] [--quick] [--concurrency 1,16]
 */
import type pg from 'pg';
import { redisTier } from './lib/cachewise.js';
import { commonFlags, parseFlags } from './lib/args.js';
import { machineInfo, printReport, ratiosTo, type CaseResult } from './lib/report.js';
import { compare, type Contender } from './lib/runner.js';
import { clearProgress, deleteKeys, main, onCleanup, pgPool, progress, redisClient, runId } from './lib/services.js';
import { prefilledTable, rawVersionStart, WRITE_TTL_MS, writeThroughContenders } from './lib/write-through-contenders.js';
import { keyOf, profile } from './lib/workload.js';

/** postgresStore's default statementTimeout. */
const STATEMENT_TIMEOUT_MS = 5000;

const flags = parseFlags('node --import tsx bench/write-breakdown.ts [flags]\n\nA write-through set changed step by step from the hand-written one to cachewise.', [
  ...commonFlags({ rounds: 5, roundMs: 800, warmupMs: 300, concurrency: [1, 16] }),
  { name: 'keys', type: 'int', description: 'distinct keys, prefilled', default: 10_000 },
  { name: 'pool', type: 'int', description: 'pg.Pool size of each step', default: 10 },
]);

await main(async () => {
  const id = runId();
  const prefix = `bench:${id}:`;
  const schema = `bench_${id}`;
  const keys = flags.keys as number;
  const poolSize = flags.pool as number;
  const options = { rounds: flags.rounds as number, roundMs: flags['round-ms'] as number, warmupMs: flags['warmup-ms'] as number };

  const pool = (name: string) => pgPool(poolSize, name, { statement_timeout: STATEMENT_TIMEOUT_MS });
  const admin = pgPool(1, 'bench-admin');
  const adminRedis = redisClient();
  onCleanup(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  onCleanup(() => deleteKeys(adminRedis, prefix));

  progress(`prefill ${keys} keys`);
  const setup = await writeThroughContenders({
    admin,
    cwPool: pool('bench-cachewise'),
    rawPool: pool('bench-raw'),
    cwRedis: redisClient({ connectionName: 'bench-cachewise' }),
    rawRedis: redisClient({ connectionName: 'bench-raw' }),
    schema,
    prefix,
    keys,
  });
  onCleanup(() => setup.close());
  const [cachewise, raw] = setup.contenders as [Contender, Contender];

  const transactionPool = pool('bench-transaction');
  const transactionRedis = redisClient({ connectionName: 'bench-transaction' });
  const inTransaction = storeStatements(await prefilledTable(admin, transactionPool, schema, 'tx_', keys), transactionPool, true);
  const storeSqlPool = pool('bench-store-sql');
  const storeSqlRedis = redisClient({ connectionName: 'bench-store-sql' });
  const storeSql = storeStatements(await prefilledTable(admin, storeSqlPool, schema, 'sql_', keys), storeSqlPool, false);
  const luaPool = pool('bench-store-sql-lua');
  const lua = storeStatements(await prefilledTable(admin, luaPool, schema, 'lua_', keys), luaPool, false);
  const tier = redisTier({ client: redisClient({ connectionName: 'bench-store-sql-lua' }), prefix: `${prefix}lua:` });

  const contenders: Contender[] = [
    raw,
    {
      name: 'raw, in a transaction',
      op: async (n) => {
        const key = keyOf(n, keys);
        const json = JSON.stringify(profile(n));
        if (await inTransaction(key, json)) await transactionRedis.set(`${prefix}tx:${key}`, json, 'PX', WRITE_TTL_MS);
      },
    },
    {
      name: "raw, store's SQL",
      op: async (n) => {
        const key = keyOf(n, keys);
        const json = JSON.stringify(profile(n));
        if (await storeSql(key, json)) await storeSqlRedis.set(`${prefix}sql:${key}`, json, 'PX', WRITE_TTL_MS);
      },
    },
    {
      name: "raw, store's SQL+Lua",
      op: async (n) => {
        const key = keyOf(n, keys);
        const value = profile(n);
        const version = await lua(key, JSON.stringify(value));
        const now = Date.now();
        if (version) await tier.set(`profiles:${key}`, { kind: 'value', version, value, freshUntil: now + WRITE_TTL_MS, staleUntil: now + WRITE_TTL_MS });
      },
    },
    cachewise,
  ];
  const cases: CaseResult[] = [];
  for (const concurrency of flags.concurrency as number[]) {
    const results = await compare(contenders, { ...options, concurrency }, (m) => progress(`concurrency ${concurrency}: ${m}`));
    cases.push({ setting: { concurrency }, contenders: results, ratios: ratiosTo(results, 'raw', 0.9) });
  }
  clearProgress();
  printReport(
    {
      benchmark: 'write-breakdown',
      title: 'Write-through set, step by step from the hand-written one to cachewise',
      machine: machineInfo(),
      options: { ...options, keys, pool: poolSize },
      cases,
      notes: [
        `a pg.Pool of ${poolSize} (statement_timeout ${STATEMENT_TIMEOUT_MS} ms) and a Redis client (auto-pipelining on) per step; schema ${schema} and keys ${prefix}* dropped at the end`,
      ],
    },
    flags.json === true,
  );
});

/**
 * A one-entry write as postgresStore sends it: the single-row upsert on a checked-out connection,
 * in autocommit, or (`transaction`) inside BEGIN with the statement timeout set locally and
 * COMMIT. Resolves to the version written, or 0 when the row held a newer one.
 */
function storeStatements(table: string, pool: pg.Pool, transaction: boolean): (key: string, json: string) => Promise<number> {
  const begin = `BEGIN; SET LOCAL statement_timeout = ${STATEMENT_TIMEOUT_MS}; SAVEPOINT cachewise_batch`;
  const upsert =
    `INSERT INTO ${table} AS t ("key", "value", "version", "updated_at") VALUES ($1::text, $2::text, $3::bigint, now()) ` +
    'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at" ' +
    'WHERE t."version" < excluded."version"';
  let version = rawVersionStart();
  return async (key, json) => {
    const client = await pool.connect();
    try {
      if (transaction) await client.query(begin);
      const mine = ++version;
      const { rowCount } = await client.query(upsert, [key, json, mine]);
      if (transaction) await client.query('COMMIT');
      return rowCount === 1 ? mine : 0;
    } catch (error) {
      if (transaction) await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  };
}
