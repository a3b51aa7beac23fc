/**
 * The PostgreSQL store against the real server: the Store conformance suite on a pool of its
 * own and on a shared pool, then what is particular to PostgreSQL (one statement per batch,
 * per-entry failures behind savepoints, statement timeouts, COMMIT outcomes, identifiers,
 * migrations, BIGINT versions, pools). Every store works in a schema of its own, dropped after.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { isCachewiseError, type ErrorCode } from '../src/errors.js';
import { postgresMigrationSql, postgresStore, type PostgresStoreCommonOptions, type PostgresStoreOptions } from '../src/stores/postgres-store.js';
import { isNotApplied, isPermanent, type StoreWrite, type WriteOutcome } from '../src/stores/store.js';
import { storeConformance, type StoreFixture } from './conformance/store-conformance.js';
import {
  breakingPool,
  dropSchema,
  freshSchemaName,
  leftoverSchemas,
  recordingPool,
  RUN_SCHEMA_PREFIX,
  testPool,
  urlWithApplicationName,
} from './helpers/postgres.js';
import { DATABASE_URL, skipUnless } from './helpers/servers.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const APPLIED: WriteOutcome = { status: 'applied' };

function set(key: string, version: number, json: string): StoreWrite {
  return { op: 'set', key, version, json };
}

function del(key: string, version: number): StoreWrite {
  return { op: 'delete', key, version };
}

/** An assert.rejects/throws matcher for a CachewiseError with `code` whose message mentions `text`. */
function cachewiseError(code: ErrorCode, text?: string) {
  return (error: unknown): boolean => {
    assert.ok(isCachewiseError(error, code), `expected ${code}, got ${String(error)}`);
    if (text !== undefined) assert.ok(error.message.includes(text), `"${error.message}" mentions "${text}"`);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------

test('without pg installed, a connectionString store fails with E_MISSING_DEPENDENCY and a passed pool needs no import', () => {
  const program = [
    "import { postgresStore } from './src/stores/postgres-store.js';",
    "try { postgresStore({ connectionString: 'postgres://127.0.0.1/test' }); console.log('created'); } catch (error) { console.log(error.code, error.remedy); }",
    'console.log(postgresStore({ pool: { connect() {}, query() {}, totalCount: 0 } }).kind);',
  ].join('\n');
  const hide = fileURLToPath(new URL('./helpers/without-pg.cjs', import.meta.url));
  const run = spawnSync(process.execPath, ['--require', hide, '--import', 'tsx', '--input-type=module', '-e', program], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(run.stdout.trim().split('\n'), ['E_MISSING_DEPENDENCY npm install pg@8', 'postgres']);
});

const skip = await skipUnless('postgres');

if (skip) {
  test('postgresStore: the conformance suite and the PostgreSQL tests', { skip }, () => {});
} else {
  const admin = testPool();
  const shared = testPool();
  after(async () => {
    await shared.end();
    await admin.end();
  });

  interface PgFixture extends StoreFixture {
    store: ReturnType<typeof postgresStore>;
    schema: string;
    /** The quoted table of a collection. */
    table(collection?: string): string;
  }

  /** A store in a fresh schema: on its own pool, or on `pool` when given. */
  async function pgFixture(options: PostgresStoreCommonOptions & { pool?: pg.Pool; connectionString?: string } = {}): Promise<PgFixture> {
    const schema = options.schema ?? freshSchemaName();
    const { pool, connectionString = DATABASE_URL, ...rest } = options;
    const storeOptions: PostgresStoreOptions = pool ? { ...rest, schema, pool } : { ...rest, schema, connectionString };
    const store = postgresStore(storeOptions);
    return {
      store,
      schema,
      table: (collection = 'items') => `"${schema}"."${options.tablePrefix ?? 'cachewise_'}${collection}"`,
      async cleanup() {
        await store.close();
        await dropSchema(admin, schema);
      },
    };
  }

  async function withFixture(fixture: Promise<PgFixture>, fn: (f: PgFixture) => Promise<void>): Promise<void> {
    const f = await fixture;
    try {
      await fn(f);
    } finally {
      await f.cleanup();
    }
  }

  /** A connection of the admin pool inside an open transaction, for holding locks. */
  async function lockHolder(sql: string, values: unknown[] = []): Promise<{ release(): Promise<void> }> {
    const client = await admin.connect();
    await client.query('BEGIN');
    await client.query(sql, values);
    return {
      async release() {
        await client.query('ROLLBACK');
        client.release();
      },
    };
  }

  /** Resolves once a backend of `applicationName` waits for a lock. */
  async function waitForLockWait(applicationName: string): Promise<number> {
    for (let i = 0; i < 200; i++) {
      const { rows } = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", [applicationName]);
      if (rows[0]) return rows[0].pid;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no backend of ${applicationName} waited for a lock`);
  }

  storeConformance('postgresStore with a connectionString (a pool of its own)', () => pgFixture());
  storeConformance('postgresStore on a shared pg.Pool', () => pgFixture({ pool: shared }));

  describe('postgresStore', () => {
    test('a batch of 1,000 writes is one INSERT statement in one transaction; 1,200 loads are one SELECT', async () => {
      const { pool, statements } = recordingPool();
      try {
        await withFixture(pgFixture({ pool }), async ({ store }) => {
          await store.prepare('items');
          statements.length = 0;
          const writes = Array.from({ length: 1000 }, (_, i) => (i % 10 === 9 ? del(`k${i}`, i + 1) : set(`k${i}`, i + 1, `{"n":${i}}`)));
          const outcomes = await store.write('items', writes);
          assert.ok(outcomes.every((o) => o.status === 'applied'));
          assert.equal(statements.length, 3, `BEGIN, INSERT, COMMIT; got ${statements.join(' | ')}`);
          assert.match(statements[0]!, /^BEGIN; SET LOCAL statement_timeout = 5000; SAVEPOINT/);
          assert.match(statements[1]!, /^INSERT INTO .* unnest\(\$1::text\[\], \$2::text\[\], \$3::bigint\[\]\)/);
          assert.equal(statements[2], 'COMMIT');

          statements.length = 0;
          const replay = await store.write('items', writes);
          assert.ok(replay.every((o, i) => o.status === 'superseded' && o.current === i + 1), 'a replay is superseded with the current versions');
          assert.equal(statements.filter((s) => /^INSERT/.test(s)).length, 1, 'still one INSERT');
          assert.equal(statements.filter((s) => /^SELECT/.test(s)).length, 1, 'one SELECT for the superseded versions');

          statements.length = 0;
          const keys = Array.from({ length: 1200 }, (_, i) => `k${i}`);
          const rows = await store.loadMany('items', keys);
          assert.equal(rows.filter((r) => r !== undefined).length, 1000);
          assert.equal(statements.filter((s) => /^SELECT/.test(s)).length, 1, `one SELECT; got ${statements.join(' | ')}`);
        });
      } finally {
        await pool.end();
      }
    });

    test("on a pool whose connections carry a statement_timeout within the store's, a write is one autocommit statement", async () => {
      const { pool, statements } = recordingPool({ statement_timeout: 5000 });
      try {
        await withFixture(pgFixture({ pool }), async ({ store }) => {
          await store.prepare('items');
          statements.length = 0;
          assert.deepEqual(await store.write('items', [set('a', 2, '"two"')]), [APPLIED]);
          assert.equal(statements.length, 1, `one statement; got ${statements.join(' | ')}`);
          assert.match(statements[0]!, /^INSERT INTO .* VALUES \(\$1::text, \$2::text, \$3::bigint, now\(\)\) ON CONFLICT/);

          statements.length = 0;
          const outcomes = await store.write('items', [set('a', 1, '"old"'), set('b', 1, '"b"'), del('c', 1)]);
          assert.deepEqual(outcomes, [{ status: 'superseded', current: 2 }, APPLIED, APPLIED]);
          assert.equal(statements.length, 2, `the batch, then the superseded versions; got ${statements.join(' | ')}`);
          assert.match(statements[0]!, /^INSERT INTO .* unnest\(/);
          assert.match(statements[1]!, /^SELECT "key", "version"/);

          statements.length = 0;
          assert.deepEqual(await store.write('items', [set('d', 1, '"d"'), set('e', 1, '"e"'), del('f', 1)]), [APPLIED, APPLIED, APPLIED]);
          assert.equal(statements.length, 1, `every entry written: the row count says so, no SELECT; got ${statements.join(' | ')}`);
          assert.doesNotMatch(statements[0]!, /RETURNING/, 'the batch returns no rows');

          statements.length = 0;
          assert.deepEqual(await store.load('items', 'a'), { version: 2, json: '"two"' });
          assert.equal(statements.length, 1, 'a load is one statement too');
        });
      } finally {
        await pool.end();
      }

      // A pool whose timeout is longer than the store's, or none: a transaction with SET LOCAL.
      for (const config of [{ statement_timeout: 60_000 }, {}]) {
        const recording = recordingPool(config);
        try {
          await withFixture(pgFixture({ pool: recording.pool }), async ({ store }) => {
            await store.prepare('items');
            recording.statements.length = 0;
            assert.deepEqual(await store.write('items', [set('a', 1, '"one"')]), [APPLIED]);
            assert.equal(recording.statements.length, 3, `BEGIN, INSERT, COMMIT; got ${recording.statements.join(' | ')}`);
            assert.match(recording.statements[0]!, /^BEGIN; SET LOCAL statement_timeout = 5000; SAVEPOINT/);
          });
        } finally {
          await recording.pool.end();
        }
      }
    });

    test('a poisoned entry fails alone, marked permanent, while the rest of the batch commits', () =>
      withFixture(pgFixture(), async ({ store, table }) => {
        await store.prepare('items');
        await admin.query(`ALTER TABLE ${table()} ADD CONSTRAINT no_poison CHECK ("value" IS NULL OR "value" NOT LIKE '%poison%')`);
        await store.write('items', [set('k0', 100, '"newer"')]);
        const writes = Array.from({ length: 10 }, (_, i) => (i === 3 || i === 7 ? set(`k${i}`, i + 1, '"poison"') : i === 5 ? del(`k${i}`, i + 1) : set(`k${i}`, i + 1, `${i}`)));
        const outcomes = await store.write('items', writes);
        outcomes.forEach((outcome, i) => {
          if (i === 0) return assert.deepEqual(outcome, { status: 'superseded', current: 100 });
          if (i !== 3 && i !== 7) return assert.deepEqual(outcome, { status: 'applied' }, `entry ${i}`);
          assert.ok(outcome.status === 'failed' && outcome.permanent, `entry ${i} failed permanently`);
          assert.equal((outcome.error as { code?: string }).code, '23514', 'check_violation');
        });
        const rows = await store.loadMany('items', writes.map((w) => w.key));
        rows.forEach((row, i) => {
          const expected = i === 0 ? { version: 100, json: '"newer"' } : i === 3 || i === 7 ? undefined : i === 5 ? { version: 6, json: undefined } : { version: i + 1, json: `${i}` };
          assert.deepEqual(row, expected, `row ${i}`);
        });
      }));

    test('a key repeated in one batch (outside the contract) is written in order, entry by entry', () =>
      withFixture(pgFixture(), async ({ store }) => {
        const outcomes = await store.write('items', [set('a', 1, '1'), set('a', 2, '2'), set('b', 2, '2'), set('b', 1, '1')]);
        assert.deepEqual(outcomes, [APPLIED, APPLIED, APPLIED, { status: 'superseded', current: 2 }]);
        assert.deepEqual(await store.loadMany('items', ['a', 'b']), [{ version: 2, json: '2' }, { version: 2, json: '2' }]);
      }));

    test('schema, tablePrefix and collection names are validated and quoted: injection attempts create and drop nothing', async () => {
      const schema = freshSchemaName();
      await admin.query(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".y (id int)`);
      try {
        const evil = `x"; DROP TABLE "${schema}".y; --`;
        const badSchemas = [evil, '', '1abc', 'a-b', 'ünïcode', 'pg_mine', 's'.repeat(64)];
        const badPrefixes = [evil, '9x', 'a b', 'p'.repeat(63)];
        const badCollections = [evil, '', '1abc', 'a-b', 'tab\tle', 'a'.repeat(60), 'ünïcode'];
        // What these names could have touched: this test's schema, the public schema, and any
        // schema or table named after one of them. Not the whole catalog: other test processes
        // create and drop schemas of their own meanwhile.
        const suspects = [...badSchemas, ...badPrefixes, ...badCollections, ...badCollections.map((c) => `cachewise_${c}`), ...badPrefixes.map((p) => `${p}items`)];
        const snapshot = async () => {
          const { rows } = await admin.query<{ name: string }>(
            "SELECT n.nspname || '.' || coalesce(c.relname, '') AS name FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r' " +
              'WHERE n.nspname = ANY($1::text[]) OR n.nspname = ANY($2::text[]) OR c.relname = ANY($2::text[]) ORDER BY 1',
            [[schema, 'public'], suspects],
          );
          return rows.map((r) => r.name);
        };
        const before = await snapshot();
        for (const bad of badSchemas) {
          assert.throws(() => postgresStore({ connectionString: DATABASE_URL, schema: bad }), cachewiseError('E_INVALID_OPTION', 'schema'), `schema ${bad}`);
          assert.throws(() => postgresMigrationSql('items', { schema: bad }), cachewiseError('E_INVALID_OPTION', 'schema'));
        }
        for (const bad of badPrefixes) {
          assert.throws(() => postgresStore({ pool: shared, tablePrefix: bad }), cachewiseError('E_INVALID_OPTION', 'tablePrefix'), `tablePrefix ${bad}`);
        }
        const store = postgresStore({ pool: shared, schema });
        try {
          for (const bad of badCollections) {
            await assert.rejects(store.prepare(bad), cachewiseError('E_INVALID_OPTION', 'collection'), `prepare ${JSON.stringify(bad)}`);
            await assert.rejects(store.load(bad, 'k'), cachewiseError('E_INVALID_OPTION'));
            await assert.rejects(store.loadMany(bad, ['k']), cachewiseError('E_INVALID_OPTION'));
            await assert.rejects(store.write(bad, [set('k', 1, '1')]), (error: unknown) => isNotApplied(error) && cachewiseError('E_INVALID_OPTION')(error));
            await assert.rejects(store.maxVersion!(bad), cachewiseError('E_INVALID_OPTION'));
            assert.throws(() => postgresMigrationSql(bad), cachewiseError('E_INVALID_OPTION', 'collection'));
          }
          assert.deepEqual(await snapshot(), before, 'no schema or table was created or dropped');
          assert.ok(before.includes(`${schema}.y`));

          // Quoting keeps keywords and case usable as names.
          await store.prepare('order');
          await store.prepare('Order');
          assert.deepEqual(await store.write('order', [set('a', 1, '"lower"')]), [APPLIED]);
          assert.deepEqual(await store.write('Order', [set('a', 1, '"upper"')]), [APPLIED]);
          assert.deepEqual(await store.load('order', 'a'), { version: 1, json: '"lower"' });
          assert.deepEqual(await store.load('Order', 'a'), { version: 1, json: '"upper"' });
        } finally {
          await store.close();
        }
      } finally {
        await dropSchema(admin, schema);
      }
    });

    test('unknown or out-of-range options are refused, naming the option', () => {
      const cases: [unknown, string][] = [
        [undefined, 'options'],
        [{}, 'connectionString'],
        [{ pool: shared, connectionString: DATABASE_URL }, 'both'],
        [{ pool: {} }, 'pg.Pool'],
        [{ pool: { connect() {}, query() {} } }, 'pg.Pool'],
        [{ connectionString: '' }, 'connectionString'],
        [{ connectionString: DATABASE_URL, statementTimeout: 0 }, 'statementTimeout'],
        [{ connectionString: DATABASE_URL, statementTimeout: 1.5 }, 'statementTimeout'],
        [{ connectionString: DATABASE_URL, statementTimeout: 2 ** 31 }, 'statementTimeout'],
        [{ connectionString: DATABASE_URL, createSchema: 'yes' }, 'createSchema'],
        [{ connectionString: DATABASE_URL, statement_timeout: 5 }, 'unknown postgresStore option "statement_timeout"'],
      ];
      for (const [options, text] of cases) {
        assert.throws(() => postgresStore(options as PostgresStoreOptions), (error: unknown) => {
          cachewiseError('E_INVALID_OPTION', text)(error);
          assert.match((error as Error).message, /Remedy: \S/);
          return true;
        }, `case ${text}`);
      }
    });

    for (const kind of ['own', 'shared'] as const) {
      test(`statementTimeout bounds a write waiting for a row lock: it fails within the timeout, marked notApplied (${kind} pool)`, async () => {
        const applicationName = `${RUN_SCHEMA_PREFIX}timeout_${kind}`;
        const pool = kind === 'shared' ? testPool({ application_name: applicationName }) : undefined;
        try {
          await withFixture(pgFixture({ statementTimeout: 300, ...(pool ? { pool } : { connectionString: urlWithApplicationName(applicationName) }) }), async ({ store, table }) => {
            await store.write('items', [set('a', 1, '"one"')]);
            const holder = await lockHolder(`SELECT * FROM ${table()} WHERE "key" = 'a' FOR UPDATE`);
            try {
              const started = Date.now();
              await assert.rejects(store.write('items', [set('a', 2, '"two"'), set('b', 2, '"b"')]), (error: unknown) => {
                assert.ok(isNotApplied(error), 'nothing was committed');
                assert.equal(isPermanent(error), false, 'a timeout is transient');
                assert.equal((error as { code?: string }).code, '57014', 'query_canceled');
                return true;
              });
              const elapsed = Date.now() - started;
              assert.ok(elapsed >= 250 && elapsed < 2000, `failed after ${elapsed} ms`);

              // Loads are bounded too: a table lock blocks every reader.
              await holder.release();
              const tableLock = await lockHolder(`LOCK TABLE ${table()} IN ACCESS EXCLUSIVE MODE`);
              try {
                await assert.rejects(store.load('items', 'a'), (error: unknown) => (error as { code?: string }).code === '57014');
              } finally {
                await tableLock.release();
              }
            } finally {
              await holder.release().catch(() => {});
            }
            assert.deepEqual(await store.loadMany('items', ['a', 'b']), [{ version: 1, json: '"one"' }, undefined], 'nothing of the batch committed');
            assert.deepEqual(await store.write('items', [set('a', 2, '"two"'), set('b', 2, '"b"')]), [APPLIED, APPLIED], 'the retry succeeds');
          });
        } finally {
          await pool?.end();
        }
      });
    }

    test("the store leaves the shared pool's sessions as it found them (SET LOCAL only)", async () => {
      const pool = testPool({ max: 1 });
      try {
        const before = (await pool.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout;
        await withFixture(pgFixture({ pool, statementTimeout: 1234 }), async ({ store }) => {
          await store.write('items', [set('a', 1, '1')]);
          await store.load('items', 'a');
          await store.maxVersion!('items');
          const after = await pool.query<{ statement_timeout: string; in_transaction: boolean }>(
            "SELECT current_setting('statement_timeout') AS statement_timeout, now() <> statement_timestamp() AS in_transaction",
          );
          assert.deepEqual(after.rows[0], { statement_timeout: before, in_transaction: false });
        });
      } finally {
        await pool.end();
      }
    });

    test('a connection terminated before COMMIT rejects the batch marked notApplied; the next batch gets a new connection', async () => {
      const applicationName = `${RUN_SCHEMA_PREFIX}terminated`;
      // A shared pool without statement_timeout: the store writes in a transaction.
      const pool = testPool({ application_name: applicationName });
      try {
        await withFixture(pgFixture({ pool }), async ({ store, table }) => {
          await store.write('items', [set('a', 1, '"one"')]);
          const holder = await lockHolder(`SELECT * FROM ${table()} WHERE "key" = 'a' FOR UPDATE`);
          try {
            const rejected = assert.rejects(store.write('items', [set('a', 2, '"two"')]), (error: unknown) => {
              assert.ok(isNotApplied(error), `marked notApplied: ${String(error)}`);
              assert.equal((error as { code?: string }).code, '57P01', 'admin_shutdown');
              return true;
            });
            const pid = await waitForLockWait(applicationName);
            await admin.query('SELECT pg_terminate_backend($1)', [pid]);
            await rejected;
          } finally {
            await holder.release();
          }
          assert.deepEqual(await store.write('items', [set('a', 2, '"two"')]), [APPLIED]);
        });
      } finally {
        await pool.end();
      }
    });

    test('a connection terminated during an autocommit write rejects unmarked with E_STORE_UNKNOWN_OUTCOME; the next batch gets a new connection', async () => {
      const applicationName = `${RUN_SCHEMA_PREFIX}terminated_autocommit`;
      await withFixture(pgFixture({ connectionString: urlWithApplicationName(applicationName) }), async ({ store, table }) => {
        await store.write('items', [set('a', 1, '"one"')]);
        const holder = await lockHolder(`SELECT * FROM ${table()} WHERE "key" = 'a' FOR UPDATE`);
        try {
          const rejected = assert.rejects(store.write('items', [set('a', 2, '"two"')]), (error: unknown) => {
            assert.equal(isNotApplied(error), false, 'a statement that ends with its session may have committed');
            cachewiseError('E_STORE_UNKNOWN_OUTCOME')(error);
            assert.equal(((error as Error).cause as { code?: string }).code, '57P01', 'admin_shutdown');
            return true;
          });
          const pid = await waitForLockWait(applicationName);
          await admin.query('SELECT pg_terminate_backend($1)', [pid]);
          await rejected;
        } finally {
          await holder.release();
        }
        assert.deepEqual(await store.write('items', [set('a', 2, '"two"')]), [APPLIED]);
      });
    });

    test('a connection lost while an autocommit write is in flight rejects unmarked with E_STORE_UNKNOWN_OUTCOME', async () => {
      const { pool, arm } = breakingPool(/^INSERT/, { statement_timeout: 5000 });
      try {
        await withFixture(pgFixture({ pool }), async ({ store }) => {
          await store.prepare('items');
          arm();
          await assert.rejects(store.write('items', [set('a', 1, '"one"')]), (error: unknown) => {
            assert.equal(isNotApplied(error), false, 'it may have committed');
            cachewiseError('E_STORE_UNKNOWN_OUTCOME')(error);
            return true;
          });
          const row = await store.load('items', 'a');
          assert.ok(row === undefined || row.version === 1, 'either outcome is possible');
          const again = await store.write('items', [set('a', 1, '"one"')]);
          assert.ok(again[0]!.status === 'applied' || again[0]!.status === 'superseded', 'a retry of the same version is safe');
          assert.deepEqual(await store.load('items', 'a'), { version: 1, json: '"one"' });
        });
      } finally {
        await pool.end();
      }
    });

    test('a connection lost while COMMIT is in flight rejects unmarked with E_STORE_UNKNOWN_OUTCOME', async () => {
      const { pool, arm } = breakingPool(/^COMMIT$/);
      try {
        await withFixture(pgFixture({ pool }), async ({ store }) => {
          await store.prepare('items');
          arm();
          await assert.rejects(store.write('items', [set('a', 1, '"one"')]), (error: unknown) => {
            assert.equal(isNotApplied(error), false, 'it may have committed');
            cachewiseError('E_STORE_UNKNOWN_OUTCOME', 'COMMIT')(error);
            return true;
          });
          const row = await store.load('items', 'a');
          assert.ok(row === undefined || row.version === 1, 'either outcome is possible');
          const again = await store.write('items', [set('a', 1, '"one"')]);
          assert.ok(again[0]!.status === 'applied' || again[0]!.status === 'superseded', 'a retry of the same version is safe');
          assert.deepEqual(await store.load('items', 'a'), { version: 1, json: '"one"' });
        });
      } finally {
        await pool.end();
      }
    });

    test('a COMMIT the server refuses (a deferred constraint) rejects marked notApplied, and nothing is committed', () =>
      withFixture(pgFixture(), async ({ store, table }) => {
        await store.prepare('items');
        await admin.query(`ALTER TABLE ${table()} ADD CONSTRAINT same_value UNIQUE ("value") DEFERRABLE INITIALLY DEFERRED`);
        await assert.rejects(store.write('items', [set('a', 1, '"x"'), set('b', 2, '"x"')]), (error: unknown) => {
          assert.ok(isNotApplied(error));
          assert.equal((error as { code?: string }).code, '23505', 'unique_violation at COMMIT');
          return true;
        });
        assert.deepEqual(await store.loadMany('items', ['a', 'b']), [undefined, undefined]);
      }));

    test('an unreachable server rejects writes marked notApplied, and loads', async () => {
      const store = postgresStore({ connectionString: 'postgres://postgres@127.0.0.1:1/test' });
      try {
        await assert.rejects(store.write('items', [set('a', 1, '1')]), (error: unknown) => isNotApplied(error) && (error as { code?: string }).code === 'ECONNREFUSED');
        await assert.rejects(store.load('items', 'a'), /ECONNREFUSED/);
      } finally {
        await store.close();
      }
    });

    test("close() leaves the application's pool open; the store's own pool is ended; a closed store rejects with E_CLOSED", async () => {
      const pool = testPool();
      try {
        await withFixture(pgFixture({ pool }), async ({ store }) => {
          await store.write('items', [set('a', 1, '1')]);
          await store.close();
          assert.equal(pool.ended, false, 'the shared pool is not ended');
          assert.deepEqual((await pool.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
          await assert.rejects(store.load('items', 'a'), cachewiseError('E_CLOSED'));
          await assert.rejects(store.write('items', [set('b', 1, '1')]), (error: unknown) => isNotApplied(error) && cachewiseError('E_CLOSED')(error));
        });
      } finally {
        await pool.end();
      }

      const applicationName = `${RUN_SCHEMA_PREFIX}owned`;
      const connections = async () =>
        Number((await admin.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rows[0]!.n);
      await withFixture(pgFixture({ connectionString: urlWithApplicationName(applicationName) }), async ({ store }) => {
        await store.write('items', [set('a', 1, '1')]);
        assert.ok((await connections()) > 0);
        await store.close();
        for (let i = 0; i < 100 && (await connections()) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
        assert.equal(await connections(), 0, "the store's own connections are closed");
      });
    });

    test('close() during a table preparation waits for it, and a store closed before its DDL creates nothing', async () => {
      const schema = freshSchemaName();
      const store = postgresStore({ pool: shared, schema });
      try {
        const preparing = store.prepare('items').then(
          () => 'prepared',
          (error: unknown) => (isCachewiseError(error, 'E_CLOSED') ? 'closed' : error),
        );
        await store.close(); // while the preparation inspects the catalog
        assert.equal(await preparing, 'closed');
        await new Promise((resolve) => setTimeout(resolve, 100));
        const { rows } = await admin.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        assert.equal(rows.length, 0, 'no schema was created after close()');
      } finally {
        await dropSchema(admin, schema);
      }
    });

    test('createSchema: false without the table fails with E_STORE_FAILED quoting the migration SQL; after running it, the store works', () =>
      withFixture(pgFixture({ createSchema: false, pool: shared }), async ({ store, schema, table }) => {
        const sql = postgresMigrationSql('items', { schema });
        assert.match(sql, new RegExp(`^CREATE SCHEMA IF NOT EXISTS "${schema}";\\nCREATE TABLE IF NOT EXISTS "${schema}"\\."cachewise_items"`));
        await assert.rejects(store.prepare('items'), (error: unknown) => {
          cachewiseError('E_STORE_FAILED', `CREATE TABLE IF NOT EXISTS ${table()}`)(error);
          assert.equal((error as { details: { sql: string } }).details.sql, sql);
          return true;
        });
        await assert.rejects(store.write('items', [set('a', 1, '1')]), (error: unknown) => isNotApplied(error) && cachewiseError('E_STORE_FAILED')(error));
        const { rows } = await admin.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        assert.equal(rows.length, 0, 'nothing was created');

        await admin.query(sql);
        await admin.query(sql); // idempotent
        await store.prepare('items');
        assert.deepEqual(await store.write('items', [set('a', 1, '1')]), [APPLIED]);
      }));

    test('a table that exists with another layout is refused with E_STORE_FAILED naming the table and the column', async () => {
      const layouts: [string, string][] = [
        ['"key" text PRIMARY KEY, "value" jsonb, "version" bigint NOT NULL, "updated_at" timestamptz NOT NULL', 'column "value" is jsonb, not text'],
        ['"key" text, "value" text, "version" bigint NOT NULL, "updated_at" timestamptz NOT NULL', 'no primary key'],
        ['"key" text PRIMARY KEY, "value" text, "version" integer NOT NULL', 'column "version" is integer, not bigint'],
      ];
      for (const [columns, problem] of layouts) {
        await withFixture(pgFixture(), async ({ store, schema, table }) => {
          await admin.query(`CREATE SCHEMA "${schema}"; CREATE TABLE ${table()} (${columns})`);
          await assert.rejects(store.prepare('items'), cachewiseError('E_STORE_FAILED', problem));
          await assert.rejects(store.load('items', 'a'), cachewiseError('E_STORE_FAILED', table()));
        });
      }
    });

    test('stores preparing the same new table at once all succeed', () =>
      withFixture(pgFixture({ pool: shared }), async ({ schema }) => {
        const stores = Array.from({ length: 8 }, () => postgresStore({ pool: shared, schema }));
        try {
          await Promise.all(stores.map((store) => store.prepare('items')));
          assert.deepEqual(await stores[0]!.write('items', [set('a', 1, '1')]), [APPLIED]);
        } finally {
          await Promise.all(stores.map((store) => store.close()));
        }
      }));

    test('BIGINT versions round-trip exactly near 2^53; a version JavaScript cannot hold is refused, not rounded', () =>
      withFixture(pgFixture(), async ({ store, table }) => {
        const max = Number.MAX_SAFE_INTEGER;
        assert.deepEqual(await store.write('items', [set('a', max - 2, '"a"'), del('b', max - 1), set('c', max, '"c"')]), [APPLIED, APPLIED, APPLIED]);
        assert.deepEqual(await store.loadMany('items', ['a', 'b', 'c']), [
          { version: max - 2, json: '"a"' },
          { version: max - 1, json: undefined },
          { version: max, json: '"c"' },
        ]);
        assert.equal(await store.maxVersion!('items'), max);
        assert.deepEqual(await store.write('items', [set('c', max - 1, '"old"'), set('a', max - 1, '"a2"')]), [{ status: 'superseded', current: max }, APPLIED]);
        const { rows } = await admin.query<{ version: string }>(`SELECT "version"::text AS version FROM ${table()} WHERE "key" = 'c'`);
        assert.equal(rows[0]!.version, '9007199254740991', 'stored exactly');

        await admin.query(`INSERT INTO ${table()} ("key", "value", "version") VALUES ('huge', '1', 9007199254740993)`);
        await assert.rejects(store.load('items', 'huge'), cachewiseError('E_LOAD_FAILED', '9007199254740993'));
        await assert.rejects(store.maxVersion!('items'), cachewiseError('E_LOAD_FAILED', '9007199254740993'));
        const unsafe = await store.write('items', [set('d', max + 1, '1'), set('e', 1, '1')]);
        assert.ok(unsafe[0]!.status === 'failed' && unsafe[0]!.permanent, 'an unsafe version is refused before it is sent');
        assert.deepEqual(unsafe[1], APPLIED);
      }));

    test('values are kept as the exact JSON text written (TEXT, not JSONB)', () =>
      withFixture(pgFixture(), async ({ store }) => {
        const json = '{ "b" : 1, "a":[1, 2.50] ,"b":2, "nul":"\\u0000", "lone":"\\udc00" }';
        assert.deepEqual(await store.write('items', [set('a', 1, json)]), [APPLIED]);
        assert.deepEqual(await store.load('items', 'a'), { version: 1, json });
      }));

    test('keys PostgreSQL text cannot hold (NUL, lone surrogates) fail alone, permanently; loading them finds nothing', () =>
      withFixture(pgFixture(), async ({ store }) => {
        const outcomes = await store.write('items', [set('a\ud800', 1, '1'), set('nul\u0000', 1, '1'), set('a\ufffd', 2, '2')]);
        for (const outcome of outcomes.slice(0, 2)) assert.ok(outcome.status === 'failed' && outcome.permanent && isCachewiseError(outcome.error, 'E_INVALID_KEY'));
        assert.deepEqual(outcomes[2], APPLIED);
        assert.deepEqual(await store.loadMany('items', ['a\ud800', 'nul\u0000', 'a\ufffd']), [undefined, undefined, { version: 2, json: '2' }]);
      }));

    test('concurrent batches over the same keys in opposite orders never deadlock, and the newest version wins', () =>
      withFixture(pgFixture({ pool: shared }), async ({ store }) => {
        const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
        for (let round = 0; round < 10; round++) {
          const v = round * 2 + 1;
          const [up, down] = await Promise.all([
            store.write('items', keys.map((key) => set(key, v, `${v}`))),
            store.write('items', [...keys].reverse().map((key) => set(key, v + 1, `${v + 1}`))),
          ]);
          assert.equal([...up, ...down].filter((o) => o.status === 'failed' || o.status === 'unknown').length, 0);
        }
        const rows = await store.loadMany('items', keys);
        assert.ok(rows.every((row) => row?.version === 20 && row.json === '20'));
      }));

    test('rows carry updated_at from the database clock, and the table has the documented columns', () =>
      withFixture(pgFixture(), async ({ store, schema }) => {
        await store.write('items', [set('a', 1, '"x"'), del('b', 2)]);
        const columns = await admin.query(
          'SELECT column_name AS name, data_type AS type, is_nullable AS nullable FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position',
          [schema, 'cachewise_items'],
        );
        assert.deepEqual(columns.rows, [
          { name: 'key', type: 'text', nullable: 'NO' },
          { name: 'value', type: 'text', nullable: 'YES' },
          { name: 'version', type: 'bigint', nullable: 'NO' },
          { name: 'updated_at', type: 'timestamp with time zone', nullable: 'NO' },
        ]);
        const { rows } = await admin.query(`SELECT "key", "value", "version"::int AS version, abs(extract(epoch FROM now() - "updated_at")) < 60 AS recent FROM "${schema}".cachewise_items ORDER BY "key"`);
        assert.deepEqual(rows, [
          { key: 'a', value: '"x"', version: 1, recent: true },
          { key: 'b', value: null, version: 2, recent: true },
        ]);
      }));

  });

  test('the run leaves no schema behind', async () => {
    assert.deepEqual(await leftoverSchemas(admin), []);
  });
}
