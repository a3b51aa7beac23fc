/**
 * The PostgreSQL store (pg): one table per collection, every write a versioned upsert.
 *
 * Contract 1: a write lands only if its version is newer than the row's, and a delete is the same
 * upsert with a NULL value (a versioned delete marker), so an older write that is retried,
 * replayed or reordered can never replace a newer value or resurrect a deleted key.
 * Contract 5: a batch is one `INSERT ... SELECT FROM unnest(...)` statement (one entry: one
 * `INSERT ... VALUES`), atomic on its own. Where every connection already carries a
 * statement_timeout (the store's own pool, or a shared pool configured with one, see
 * `statementTimeout`), the statement runs in autocommit: one round trip per write. Otherwise it
 * runs in a transaction with `SET LOCAL statement_timeout` (three round trips).
 * When the database refuses the data of some entry (SQLSTATE class 21, 22, 23 or 54), the store
 * writes the entries one by one behind savepoints in one transaction, so a bad entry fails alone,
 * marked permanent, while the rest of the batch commits. A write the server refused rejects
 * marked `notApplied`, as does any failure before COMMIT is sent; a connection lost while COMMIT
 * or an autocommit statement is in flight rejects unmarked (`E_STORE_UNKNOWN_OUTCOME`): the batch
 * may have committed. Batches lock their rows in key order, so concurrent batches over the same
 * keys wait for each other but never deadlock.
 * Contract 9: schema and table names are validated and double-quoted; values are always bound
 * parameters.
 *
 * pg is an optional peer dependency, loaded only when the store creates its own pool.
 *
 * Array parameters (keys, values and versions of a batch, keys of a read) go in PostgreSQL's binary
 * array format (postgres-binary-arrays.ts): pg's text form escapes every quote of every JSON value,
 * and the server parses it back. pg's JavaScript client sends a Buffer parameter in binary format;
 * `pg-native` would send it as text, so its pools are not supported.
 *
 * Values are TEXT, not JSONB: the store hands back exactly the JSON text the cache wrote (key
 * order, repeated keys, and the `\u0000` and lone-surrogate escapes that JSONB refuses), and no
 * write or read pays for parsing JSON in the database. Query it as JSON with `value::jsonb`.
 */
import { createRequire } from 'node:module';
import type { Pool, PoolClient, PoolConfig, QueryResultRow } from 'pg';
import { CachewiseError } from '../errors.js';
import { bigintArrayParam, textArrayParam } from './postgres-binary-arrays.js';
import { notApplied, type Store, type StoreRecord, type StoreWrite, type WriteOutcome } from './store.js';

/** Where the tables live: the part of the options `postgresMigrationSql` needs too. */
export interface PostgresTableOptions {
  /**
   * The schema holding the tables. Letters, digits and underscores, not starting with a digit,
   * at most 63 characters, not starting with `pg_` (PostgreSQL reserves it). The name is quoted,
   * so its case is kept: `Cache` and `cache` are two schemas. Default `public`.
   */
  schema?: string;
  /**
   * Prefix of every table name: collection `users` lives in table `<tablePrefix>users`.
   * Letters, digits and underscores, not starting with a digit (may be empty); prefix and
   * collection together at most 63 characters. Default `cachewise_`.
   */
  tablePrefix?: string;
}

export interface PostgresStoreCommonOptions extends PostgresTableOptions {
  /**
   * Longest time, in milliseconds, that one statement may run (waiting for a row lock included)
   * before PostgreSQL cancels it with SQLSTATE 57014. A write cancelled this way committed
   * nothing and rejects marked `notApplied`, so it is retried. On a pool the store owns, every
   * connection carries it, and it also bounds the wait for a free connection. On your pool, the
   * store never changes your sessions: when the pool was created with a `statement_timeout` of at
   * most this value (`new pg.Pool({ statement_timeout: 5000, ... })`), the store relies on it and
   * sends each write and read as one statement in autocommit (one round trip); otherwise it wraps
   * them in a transaction with `SET LOCAL statement_timeout` (three round trips). An integer from
   * 1 to 2147483647. Default 5000, below the core's storeTimeout (10 s), so a slow statement is
   * reported as "not applied" rather than as an unknown outcome.
   */
  statementTimeout?: number;
  /**
   * True (default): `prepare` creates the schema and the table when they are missing, with the
   * DDL of `postgresMigrationSql`. False: `prepare` only checks that the table exists with the
   * expected columns, and fails with `E_STORE_FAILED` quoting the migration SQL when it does not;
   * use this when the application's database role may not create tables and migrations are run
   * separately.
   */
  createSchema?: boolean;
}

/** A store on a pg.Pool that your application shares with it. */
export interface PostgresSharedPoolOptions extends PostgresStoreCommonOptions {
  /**
   * Your pg.Pool (pg 8). The store borrows connections for its statements and returns them as
   * it found them (only `SET LOCAL` settings, which end with the transaction). `close()` leaves
   * the pool open: ending it stays your job. Listen for the pool's `error` event, as pg requires
   * of any pool, so that a connection lost while idle does not crash the process. Give the pool
   * a `statement_timeout` (at most the store's `statementTimeout`) and each write is one round
   * trip instead of three.
   */
  pool: Pool;
  connectionString?: never;
}

/** A store on a pool of its own. */
export interface PostgresOwnPoolOptions extends PostgresStoreCommonOptions {
  /**
   * A PostgreSQL URL, such as `postgres://user@host:5432/db`. The store creates a pg.Pool with
   * pg's defaults (10 connections) and ends it on `close()`. Pass your own `pool` for other
   * settings (size, TLS, passwords from a function).
   */
  connectionString: string;
  pool?: never;
}

/** Exactly one of `pool` (shared, left open) or `connectionString` (the store's own pool). */
export type PostgresStoreOptions = PostgresSharedPoolOptions | PostgresOwnPoolOptions;

/** Identifiers the store accepts as schema and table-name parts (contract 9). */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes; the identifiers are ASCII). */
const MAX_IDENTIFIER = 63;
/** PostgreSQL's limit for integer settings such as statement_timeout. */
const MAX_STATEMENT_TIMEOUT = 2 ** 31 - 1;
const KNOWN_OPTIONS = new Set(['pool', 'connectionString', 'schema', 'tablePrefix', 'statementTimeout', 'createSchema']);
/**
 * SQLSTATE classes of errors that the data of an entry causes: 21 cardinality violation (a key
 * repeated in a batch), 22 data exception, 23 integrity constraint violation, 54 program limit
 * exceeded. Writing the entries one by one finds which entries they are.
 */
const DATA_ERROR_CLASSES = new Set(['21', '22', '23', '54']);
/** Text PostgreSQL cannot store: NUL, and lone surrogates (they would arrive as U+FFFD). */
const UNSTORABLE_TEXT = /[\u0000\p{Cs}]/u;
/** The columns a table needs, with their types as PostgreSQL's format_type() spells them. */
const COLUMNS = { key: 'text', value: 'text', version: 'bigint', updated_at: 'timestamp with time zone' } as const;
const LAYOUT = '("key" text PRIMARY KEY, "value" text, "version" bigint NOT NULL, "updated_at" timestamptz NOT NULL)';

interface Row extends QueryResultRow {
  key: string;
  value: string | null;
  /** BIGINT arrives as text from pg. */
  version: string;
}

/** The SQL of one collection's table. */
interface Table {
  /** `"schema"."table"`, quoted. */
  readonly name: string;
  readonly load: string;
  /** The upsert of one entry: $1 key, $2 value, $3 version; its row count is 1 when written. */
  readonly upsertOne: string;
  /** The upsert of a batch: $1 keys, $2 values, $3 versions (arrays). */
  readonly upsert: string;
  readonly versions: string;
  readonly maxVersion: string;
}

/** What `inspect` finds in the catalog. */
interface Inspection {
  schemaExists: boolean;
  tableExists: boolean;
  columns: { name: string; type: string; unique: boolean }[];
}

/**
 * A store on PostgreSQL 11 or newer (the project tests on 15), through pg 8.
 *
 * Given a `pool`, the store shares it with your application and leaves it open on `close()`.
 * Given a `connectionString`, the store creates its own pool (its connections carry
 * `statement_timeout`, and `application_name` defaults to `cachewise`) and ends it on `close()`.
 * Each collection gets a table `"<schema>"."<tablePrefix><collection>"` with columns
 * `key` (text, primary key), `value` (JSON text, NULL for a delete marker), `version` (bigint)
 * and `updated_at` (timestamptz, the database's clock). See `postgresMigrationSql` for the DDL.
 */
export function postgresStore(options: PostgresStoreOptions): Store {
  const settings = validateOptions(options);
  const owned = settings.pool === undefined;
  const pool = settings.pool ?? createPool(settings.connectionString!, settings.statementTimeout);
  // Every connection already bounds its statements: one statement needs no transaction around it.
  const autocommit = owned || sessionTimeoutWithin(pool, settings.statementTimeout);
  const timeout = `SET LOCAL statement_timeout = ${settings.statementTimeout}`;
  const beginWrite = `BEGIN; ${timeout}; SAVEPOINT cachewise_batch`;
  const beginRead = `BEGIN READ ONLY; ${timeout}`;
  const tables = new Map<string, Promise<Table>>();
  let closing: Promise<void> | undefined;

  function checkOpen(): void {
    if (closing) {
      throw new CachewiseError('E_CLOSED', 'the PostgreSQL store is closed', 'create a new store, or stop using this one after close()');
    }
  }

  /** The collection's table, checked (and created when allowed) once per store. */
  function tableFor(collection: string): Promise<Table> {
    checkOpen();
    let table = tables.get(collection);
    if (!table) {
      table = prepareTable(collection);
      tables.set(collection, table);
      // A failed prepare is not remembered: the next call tries again (the server may be back).
      table.catch(() => tables.delete(collection));
    }
    return table;
  }

  async function prepareTable(collection: string): Promise<Table> {
    const ddl = tableDdl(settings, collection);
    let found = await inspect(ddl.schemaName, ddl.table);
    if (!found.tableExists) {
      if (!settings.createSchema) {
        throw new CachewiseError(
          'E_STORE_FAILED',
          `the table ${ddl.table} does not exist and createSchema is false; create it with:\n${ddl.migration.trimEnd()}`,
          'run that SQL (postgresMigrationSql() returns it) with a role that may create tables, or set createSchema: true',
          { details: { table: ddl.table, collection, sql: ddl.migration } },
        );
      }
      // A store closed meanwhile creates nothing: after close(), the application may drop the schema.
      checkOpen();
      await transaction(false, async (client) => {
        // Two processes creating the same schema or table at once can collide in the catalog (a
        // unique violation on pg_namespace or pg_type) despite IF NOT EXISTS: locks on the
        // schema's and the table's names queue them (always in this order, so no deadlock).
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`cachewise-schema:${ddl.schemaName}`]);
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`cachewise:${ddl.table}`]);
        // Look again now that the locks are held: another store may have created both meanwhile.
        // Reading pg_namespace also locks it, which makes this backend apply the catalog changes
        // committed since its transaction began (an advisory lock does not), so the IF NOT EXISTS
        // below sees them instead of colliding with them.
        const { rows } = await client.query<{ exists: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS "exists"', [ddl.schemaName]);
        // Only when missing: CREATE SCHEMA checks the CREATE privilege even when the schema exists.
        if (!rows[0]?.exists) await client.query(ddl.schema);
        await client.query(ddl.create);
      });
      found = await inspect(ddl.schemaName, ddl.table);
    }
    const problem = layoutProblem(found);
    if (problem) {
      throw new CachewiseError(
        'E_STORE_FAILED',
        `the table ${ddl.table} exists without the layout the store needs ${LAYOUT}: ${problem}`,
        'migrate or rename that table, or choose another schema or tablePrefix',
        { details: { table: ddl.table, collection } },
      );
    }
    return tableSql(ddl.table);
  }

  async function inspect(schemaName: string, table: string): Promise<Inspection> {
    const { rows } = await read<{ schema_exists: boolean; table_exists: boolean; columns: Inspection['columns'] }>(
      'SELECT to_regnamespace($1) IS NOT NULL AS schema_exists, to_regclass($2) IS NOT NULL AS table_exists, ' +
        "coalesce((SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod), " +
        "'unique', EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indnkeyatts = 1 " +
        'AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL))) ' +
        "FROM pg_attribute a WHERE a.attrelid = to_regclass($2) AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns",
      [quote(schemaName), table],
    );
    const row = rows[0]!;
    return { schemaExists: row.schema_exists, tableExists: row.table_exists, columns: row.columns };
  }

  /**
   * Runs a read. Where every connection carries statement_timeout (see `autocommit`), a read is
   * one round trip; otherwise the store may not change the session, so the read runs in a
   * read-only transaction with SET LOCAL.
   */
  async function read<R extends QueryResultRow>(text: string, values: unknown[]): Promise<{ rows: R[] }> {
    if (autocommit) return pool.query<R>(text, values);
    return transaction(true, (client) => client.query<R>(text, values));
  }

  /**
   * Runs `work` on a connection of its own, each statement in autocommit: for connections that
   * carry statement_timeout. Fails like `transaction`: a failure to connect, or an error the
   * server answered (the statement rolled back), rejects marked `notApplied`; a connection lost
   * while a statement is in flight rejects unmarked with E_STORE_UNKNOWN_OUTCOME, since the
   * statement may have committed.
   */
  async function autocommitted<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    return onClient(async (client, broke) => {
      try {
        return await work(client);
      } catch (error) {
        if (isAnsweredError(error)) throw notApplied(error);
        broke(error);
        throw new CachewiseError(
          'E_STORE_UNKNOWN_OUTCOME',
          'the PostgreSQL connection failed while a write was in flight, so the batch may or may not have committed',
          'treat the keys as unknown: invalidate them and write them again (versions make the retry safe)',
          { cause: error },
        );
      }
    });
  }

  /**
   * Runs `work` in a transaction on a connection of its own (with statement_timeout set).
   *
   * Any failure before COMMIT is sent rolls back and rejects marked `notApplied`. A COMMIT that
   * the server answers with an error rolled back too. A COMMIT whose answer never comes (the
   * connection dropped, the server shut down) rejects unmarked with E_STORE_UNKNOWN_OUTCOME,
   * except for a read-only transaction, whose result stands whatever became of its COMMIT.
   */
  async function transaction<T>(readOnly: boolean, work: (client: PoolClient) => Promise<T>): Promise<T> {
    return onClient(async (client, broke) => {
      let result: T;
      try {
        await client.query(readOnly ? beginRead : beginWrite);
        result = await work(client);
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          // The original error says why the transaction failed; this one says the client is unusable.
          broke(rollbackError);
        }
        throw notApplied(error);
      }
      let committed: { command: string };
      try {
        committed = await client.query('COMMIT');
      } catch (error) {
        if (isAnsweredError(error)) throw notApplied(error); // the server rolled back and said so
        broke(error);
        if (readOnly) return result;
        throw new CachewiseError(
          'E_STORE_UNKNOWN_OUTCOME',
          'the PostgreSQL connection failed while COMMIT was in flight, so the batch may or may not have committed',
          'treat the keys as unknown: invalidate them and write them again (versions make the retry safe)',
          { cause: error },
        );
      }
      // PostgreSQL answers COMMIT of a transaction that had failed with ROLLBACK, not an error.
      if (committed.command !== 'COMMIT') {
        throw notApplied(
          new CachewiseError('E_STORE_FAILED', `PostgreSQL answered COMMIT with ${committed.command}: the transaction was rolled back`, 'retry the batch'),
        );
      }
      return result;
    });
  }

  /**
   * Runs `work` on a connection of the pool and gives it back. A failure to connect rejects
   * marked `notApplied`. `broke(error)` marks the connection unusable: it is then discarded, not
   * returned to the pool. pg emits a connection error on the client when no query is waiting for
   * it; the listener here keeps that from crashing the process and discards the client too.
   */
  async function onClient<T>(work: (client: PoolClient, broke: (error: unknown) => void) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw notApplied(error);
    }
    let broken: Error | undefined;
    const broke = (error: unknown) => {
      broken ??= error instanceof Error ? error : new Error(String(error));
    };
    client.on('error', broke);
    try {
      return await work(client, broke);
    } finally {
      client.off('error', broke);
      client.release(broken ?? false);
    }
  }


  /**
   * Runs one upsert of `writes`; how many it did not write (superseded: the row holds the same or
   * a newer version). The row count says it, so the statement returns no rows to describe and
   * parse; which entries those are is read only when there are any (`sortOut`).
   */
  async function upsert(client: PoolClient, table: Table, writes: readonly StoreWrite[]): Promise<number> {
    if (writes.length === 1) {
      const [w] = writes as [StoreWrite];
      const { rowCount } = await client.query(table.upsertOne, [w.key, w.op === 'set' ? w.json : null, w.version]);
      return 1 - (rowCount ?? 0);
    }
    const keys = textArrayParam(writes.map((w) => w.key));
    const values = textArrayParam(writes.map((w) => (w.op === 'set' ? w.json : null)));
    const versions = bigintArrayParam(writes.map((w) => w.version));
    const { rowCount } = await client.query(table.upsert, [keys, values, versions]);
    return writes.length - (rowCount ?? 0);
  }

  /** The rows' current versions of `writes`' keys, read by `query` (on a connection, or through `read`). */
  async function currentVersions(query: VersionsQuery, table: Table, writes: readonly StoreWrite[]): Promise<Map<string, number>> {
    const current = new Map<string, number>();
    const { rows } = await query(table.versions, [textArrayParam(writes.map((w) => w.key))]);
    for (const row of rows) current.set(row.key, parseVersion(row.version, table, 'E_STORE_FAILED'));
    return current;
  }

  /** The outcome of a batch: the entries written, those that failed, the versions that superseded the rest. */
  interface Written {
    written: Set<StoreWrite>;
    failed: Map<StoreWrite, WriteOutcome>;
    current: Map<string, number>;
  }

  /**
   * The batch as one statement (unless `oneByOne`); when the data of some entry is refused, entry
   * by entry behind savepoints (in a transaction). Then the current versions of the entries it
   * did not write, in the same transaction.
   */
  async function writeEntries(client: PoolClient, table: Table, writes: readonly StoreWrite[], oneByOne: boolean): Promise<Written> {
    const query: VersionsQuery = (text, values) => client.query(text, values);
    if (!oneByOne) {
      const unwritten = await writeBatch(client, table, writes);
      if (typeof unwritten === 'number') {
        return unwritten === 0 ? allWritten(writes) : sortOut(writes, unwritten, await currentVersions(query, table, writes));
      }
      return withCurrent(query, table, writes, unwritten);
    }
    return withCurrent(query, table, writes, await writeOneByOne(client, table, writes));
  }

  /** Adds the current versions of the superseded entries (neither written nor failed). */
  async function withCurrent(query: VersionsQuery, table: Table, writes: readonly StoreWrite[], result: Omit<Written, 'current'>): Promise<Written> {
    const superseded = writes.filter((w) => !result.written.has(w) && !result.failed.has(w));
    return { ...result, current: superseded.length > 0 ? await currentVersions(query, table, superseded) : new Map() };
  }

  /** The batch as one statement: how many entries it did not write; entry by entry when the database refused some entry's data. */
  async function writeBatch(client: PoolClient, table: Table, writes: readonly StoreWrite[]): Promise<number | Omit<Written, 'current'>> {
    try {
      return await upsert(client, table, writes);
    } catch (error) {
      if (!isDataError(error)) throw error;
    }
    await client.query('ROLLBACK TO SAVEPOINT cachewise_batch');
    return writeOneByOne(client, table, writes);
  }

  /** Each entry behind a savepoint of its own, so that a refused entry fails alone. In a transaction. */
  async function writeOneByOne(client: PoolClient, table: Table, writes: readonly StoreWrite[]): Promise<Omit<Written, 'current'>> {
    const failed = new Map<StoreWrite, WriteOutcome>();
    const written = new Set<StoreWrite>();
    for (const write of writes) {
      await client.query('SAVEPOINT cachewise_entry');
      try {
        if ((await upsert(client, table, [write])) === 0) written.add(write);
        await client.query('RELEASE SAVEPOINT cachewise_entry');
      } catch (error) {
        if (!isDataError(error)) throw error;
        await client.query('ROLLBACK TO SAVEPOINT cachewise_entry');
        failed.set(write, { status: 'failed', error, permanent: true });
      }
    }
    return { written, failed };
  }

  /**
   * The batch as one autocommit statement; undefined when the database refused the data of some
   * entry (nothing was written: the caller goes entry by entry). When the row count says some
   * entries were not written, the rows' versions are read after the statement committed to tell
   * which; if that read fails, every entry reports superseded at its own version, which the row
   * holds or has passed (callers then invalidate rather than cache: always safe).
   */
  async function writeAutocommitted(table: Table, writes: readonly StoreWrite[]): Promise<Written | undefined> {
    const unwritten = await autocommitted(async (client) => {
      try {
        return await upsert(client, table, writes);
      } catch (error) {
        if (isDataError(error)) return undefined;
        throw error;
      }
    });
    if (unwritten === undefined) return undefined;
    if (unwritten === 0) return allWritten(writes);
    let current: Map<string, number>;
    try {
      current = await currentVersions(read, table, writes);
    } catch {
      return { written: new Set(), failed: new Map(), current: new Map() };
    }
    return sortOut(writes, unwritten, current);
  }

  async function loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    const table = await tableFor(collection);
    // A key PostgreSQL cannot store has no row: asking would fail (NUL) or match another key.
    const wanted = [...new Set(keys.filter(isStorableKey))];
    const found = new Map<string, StoreRecord>();
    if (wanted.length > 0) {
      const { rows } = await read<Row>(table.load, [textArrayParam(wanted)]);
      for (const row of rows) found.set(row.key, { version: parseVersion(row.version, table, 'E_LOAD_FAILED'), json: row.value ?? undefined });
    }
    return keys.map((key) => found.get(key));
  }

  return {
    kind: 'postgres',
    versioned: true,

    async prepare(collection) {
      await tableFor(collection);
    },

    async load(collection, key) {
      return (await loadMany(collection, [key]))[0];
    },

    loadMany,

    async write(collection, writes) {
      let table: Table;
      try {
        table = await tableFor(collection);
      } catch (error) {
        throw notApplied(error);
      }
      const outcomes = new Array<WriteOutcome | undefined>(writes.length);
      const toSend: StoreWrite[] = [];
      writes.forEach((write, i) => {
        const problem = invalidWrite(write);
        if (problem) outcomes[i] = { status: 'failed', error: problem, permanent: true };
        else toSend.push(write);
      });
      if (toSend.length === 0) return outcomes as WriteOutcome[];
      // Every batch locks its rows in key order, so two batches over the same keys cannot deadlock.
      toSend.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

      // In autocommit, the batch is one statement, so atomic on its own; only when the database
      // refuses the data of some entry does it go entry by entry, in a transaction.
      const batched = autocommit ? await writeAutocommitted(table, toSend) : undefined;
      const { written, failed, current } = batched ?? (await transaction(false, (client) => writeEntries(client, table, toSend, autocommit)));

      writes.forEach((write, i) => {
        if (outcomes[i]) return;
        outcomes[i] = failed.get(write) ?? (written.has(write) ? { status: 'applied' } : { status: 'superseded', current: current.get(write.key) ?? write.version });
      });
      return outcomes as WriteOutcome[];
    },

    async maxVersion(collection) {
      const table = await tableFor(collection);
      const { rows } = await read<{ max: string | null }>(table.maxVersion, []);
      const max = rows[0]?.max;
      return max == null ? 0 : parseVersion(max, table, 'E_LOAD_FAILED');
    },

    close() {
      closing ??= (async () => {
        // Preparations in flight end before close() resolves (those not yet creating anything
        // stop with E_CLOSED), so nothing is created after it, even on a shared pool.
        const preparing = [...tables.values()];
        tables.clear();
        await Promise.allSettled(preparing);
        if (owned) await pool.end();
      })();
      return closing;
    },
  };
}

/**
 * The DDL that creates a collection's schema and table, for running migrations yourself (with
 * `createSchema: false`, or a database role that may not create tables). Idempotent: every
 * statement is `IF NOT EXISTS`. Pass the same `schema` and `tablePrefix` as to `postgresStore`
 * (its whole options object works; the other options are ignored).
 *
 * ```ts
 * await admin.query(postgresMigrationSql('users', { schema: 'cache' }));
 * ```
 */
export function postgresMigrationSql(collection: string, options: PostgresTableOptions = {}): string {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', 'postgresMigrationSql options must be an object', 'pass { schema, tablePrefix } or nothing');
  }
  return tableDdl(validateTableOptions(options), collection).migration;
}

/** The validated, quoted names of a collection's table, and the statements that create it. */
function tableDdl(settings: Required<PostgresTableOptions>, collection: string) {
  if (typeof collection !== 'string' || !IDENTIFIER.test(collection)) {
    throw invalidOption(
      'collection',
      `the collection name ${JSON.stringify(collection) ?? String(collection)} is not a valid SQL identifier`,
      'use letters, digits and underscores, not starting with a digit',
    );
  }
  const tableName = settings.tablePrefix + collection;
  if (tableName.length > MAX_IDENTIFIER) {
    throw invalidOption(
      'collection',
      `the table name "${tableName}" is ${tableName.length} characters, over PostgreSQL's limit of ${MAX_IDENTIFIER}`,
      'use a shorter collection name or tablePrefix',
    );
  }
  const table = `${quote(settings.schema)}.${quote(tableName)}`;
  const schema = `CREATE SCHEMA IF NOT EXISTS ${quote(settings.schema)}`;
  // COLLATE "C": keys are ids, compared byte by byte, which is also the fastest comparison.
  const create =
    `CREATE TABLE IF NOT EXISTS ${table} (\n` +
    '  "key" text COLLATE "C" PRIMARY KEY,\n' +
    '  "value" text,\n' +
    '  "version" bigint NOT NULL,\n' +
    '  "updated_at" timestamptz NOT NULL DEFAULT now()\n' +
    ')';
  return { schemaName: settings.schema, table, schema, create, migration: `${schema};\n${create};\n` };
}

/** Reads rows' keys and versions: a statement on a connection, or the store's `read`. */
type VersionsQuery = (text: string, values: unknown[]) => Promise<{ rows: Pick<Row, 'key' | 'version'>[] }>;

/** The outcome of a batch the database wrote whole. */
function allWritten(writes: readonly StoreWrite[]): { written: Set<StoreWrite>; failed: Map<StoreWrite, WriteOutcome>; current: Map<string, number> } {
  return { written: new Set(writes), failed: new Map(), current: new Map() };
}

/**
 * Which entries of a batch were written, from the number the statement did not write and the
 * rows' versions read after it. An entry whose row holds another version was not written (or
 * was passed since: superseded either way). An entry whose row holds its own version was written,
 * unless it was already there (a replay); when the count says all such entries were replays,
 * they are superseded, as a RETURNING clause would have told. When it leaves some undecided
 * (rows changed by others between the two statements), they count as written: the row holds
 * exactly their value, so caching it is right.
 */
function sortOut(writes: readonly StoreWrite[], unwritten: number, current: Map<string, number>): { written: Set<StoreWrite>; failed: Map<StoreWrite, WriteOutcome>; current: Map<string, number> } {
  const own = writes.filter((w) => current.get(w.key) === w.version);
  const replays = unwritten - (writes.length - own.length);
  return { written: new Set(replays >= own.length ? [] : own), failed: new Map(), current };
}

function tableSql(name: string): Table {
  return {
    name,
    load: `SELECT "key", "value", "version" FROM ${name} WHERE "key" = ANY($1::text[])`,
    upsertOne:
      `INSERT INTO ${name} AS t ("key", "value", "version", "updated_at") VALUES ($1::text, $2::text, $3::bigint, now()) ` +
      'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at" ' +
      'WHERE t."version" < excluded."version"',
    upsert:
      `INSERT INTO ${name} AS t ("key", "value", "version", "updated_at") ` +
      'SELECT w."key", w."value", w."version", now() FROM unnest($1::text[], $2::text[], $3::bigint[]) AS w("key", "value", "version") ' +
      'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at" ' +
      'WHERE t."version" < excluded."version"',
    versions: `SELECT "key", "version" FROM ${name} WHERE "key" = ANY($1::text[])`,
    maxVersion: `SELECT max("version") AS "max" FROM ${name}`,
  };
}

/** Why an existing table cannot serve, or undefined when its layout fits. */
function layoutProblem(found: Inspection): string | undefined {
  if (!found.tableExists) return 'it is missing';
  for (const [name, type] of Object.entries(COLUMNS)) {
    const column = found.columns.find((c) => c.name === name);
    if (!column) return `column "${name}" is missing`;
    if (column.type !== type) return `column "${name}" is ${column.type}, not ${type}`;
  }
  if (!found.columns.find((c) => c.name === 'key')!.unique) return 'column "key" has no primary key or unique index of its own';
  return undefined;
}

/** BIGINT text to a version; a value JavaScript cannot hold exactly is refused, never rounded. */
function parseVersion(text: string, table: Table, code: 'E_LOAD_FAILED' | 'E_STORE_FAILED'): number {
  const version = Number(text);
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new CachewiseError(
      code,
      `the table ${table.name} holds version ${text}, which is not a non-negative safe integer (below 2^53)`,
      'fix or delete that row: cachewise only writes versions from its version clock',
      { details: { table: table.name, version: text } },
    );
  }
  return version;
}

function isStorableKey(key: unknown): key is string {
  return typeof key === 'string' && !UNSTORABLE_TEXT.test(key);
}

/** Why the store refuses a write before sending it, or undefined when it is well formed. */
function invalidWrite(write: StoreWrite): CachewiseError | undefined {
  if (typeof write.key !== 'string') {
    return new CachewiseError('E_INVALID_KEY', `the key ${String(write.key)} is not a string`, 'pass string keys');
  }
  if (!isStorableKey(write.key)) {
    return new CachewiseError('E_INVALID_KEY', `the key ${JSON.stringify(write.key)} holds a NUL character or a lone surrogate, which PostgreSQL text cannot store`, 'use keys of valid Unicode text without NUL', {
      details: { key: write.key },
    });
  }
  if (!Number.isSafeInteger(write.version) || write.version < 0) {
    return new CachewiseError(
      'E_STORE_FAILED',
      `the version ${String(write.version)} of key "${write.key}" is not a non-negative safe integer`,
      'pass versions from the cache version clock',
      { details: { key: write.key, version: write.version } },
    );
  }
  if (write.op === 'set' && typeof write.json !== 'string') {
    return new CachewiseError('E_INVALID_VALUE', `the value of key "${write.key}" is not JSON text`, 'encode values with encodeValue()', {
      details: { key: write.key },
    });
  }
  if (write.op !== 'set' && write.op !== 'delete') {
    return new CachewiseError('E_STORE_FAILED', `unknown write operation ${String((write as { op: unknown }).op)}`, "use op 'set' or 'delete'");
  }
  return undefined;
}

/**
 * An error the server sent about a statement, leaving the session usable (so a failed COMMIT
 * rolled back): not a lost connection, nor a FATAL one ending the session (class 08 connection
 * exception, 57P01 admin shutdown and its kin, XX internal error). pg's severity is the
 * server's localized one, so the SQLSTATE decides, and the English severity only confirms.
 */
function isAnsweredError(error: unknown): boolean {
  const { severity, code } = (error ?? {}) as { severity?: unknown; code?: unknown };
  return (
    typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof severity === 'string' && severity !== 'FATAL' && severity !== 'PANIC' && !/^(08|57P|XX)/.test(code)
  );
}

/** An error caused by the data of some entry: writing the entries one by one isolates it. */
function isDataError(error: unknown): boolean {
  return isAnsweredError(error) && DATA_ERROR_CLASSES.has((error as { code: string }).code.slice(0, 2));
}

function quote(identifier: string): string {
  // Validated identifiers hold no quotes; quoting still keeps keywords (e.g. "order") and case.
  return `"${identifier}"`;
}

interface Settings extends Required<PostgresTableOptions> {
  pool: Pool | undefined;
  connectionString: string | undefined;
  statementTimeout: number;
  createSchema: boolean;
}

function validateOptions(options: PostgresStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', 'postgresStore options must be an object', 'pass { pool } or { connectionString }, with schema, tablePrefix, statementTimeout, createSchema');
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw invalidOption(name, `unknown postgresStore option "${name}"`, `use only ${[...KNOWN_OPTIONS].join(', ')}`);
    }
  }
  const { pool, connectionString, statementTimeout = 5_000, createSchema = true } = options;
  if ((pool === undefined) === (connectionString === undefined)) {
    throw invalidOption(
      pool === undefined ? 'connectionString' : 'pool',
      `postgresStore needs exactly one of pool and connectionString, got ${pool === undefined ? 'neither' : 'both'}`,
      'pass { pool } to share your pg.Pool, or { connectionString } for a pool the store owns',
    );
  }
  if (pool !== undefined && !isPool(pool)) {
    throw invalidOption('pool', 'pool must be a pg.Pool', 'pass new pg.Pool(...); a single pg.Client cannot run the store\'s transactions side by side');
  }
  if (connectionString !== undefined && (typeof connectionString !== 'string' || connectionString.trim() === '')) {
    throw invalidOption('connectionString', 'connectionString must be a non-empty string', 'pass a URL such as postgres://user@127.0.0.1:5432/db');
  }
  if (!Number.isSafeInteger(statementTimeout) || statementTimeout < 1 || statementTimeout > MAX_STATEMENT_TIMEOUT) {
    throw invalidOption(
      'statementTimeout',
      `statementTimeout must be an integer of milliseconds from 1 to ${MAX_STATEMENT_TIMEOUT}, got ${String(statementTimeout)}`,
      'use e.g. 10000',
    );
  }
  if (typeof createSchema !== 'boolean') {
    throw invalidOption('createSchema', `createSchema must be a boolean, got ${String(createSchema)}`, 'use true (create tables in prepare) or false (run postgresMigrationSql yourself)');
  }
  return { ...validateTableOptions(options), pool, connectionString, statementTimeout, createSchema };
}

function validateTableOptions(options: PostgresTableOptions): Required<PostgresTableOptions> {
  const { schema = 'public', tablePrefix = 'cachewise_' } = options;
  if (typeof schema !== 'string' || !IDENTIFIER.test(schema) || schema.length > MAX_IDENTIFIER || /^pg_/i.test(schema)) {
    throw invalidOption(
      'schema',
      `schema ${JSON.stringify(schema) ?? String(schema)} is not a valid schema name`,
      `use letters, digits and underscores, not starting with a digit or "pg_", at most ${MAX_IDENTIFIER} characters`,
    );
  }
  if (typeof tablePrefix !== 'string' || (tablePrefix !== '' && !IDENTIFIER.test(tablePrefix)) || tablePrefix.length >= MAX_IDENTIFIER) {
    throw invalidOption(
      'tablePrefix',
      `tablePrefix ${JSON.stringify(tablePrefix) ?? String(tablePrefix)} is not a valid SQL identifier prefix`,
      `use letters, digits and underscores, not starting with a digit, under ${MAX_IDENTIFIER} characters`,
    );
  }
  return { schema, tablePrefix };
}

function invalidOption(option: string, message: string, remedy: string): CachewiseError {
  return new CachewiseError('E_INVALID_OPTION', message, remedy, { details: { option } });
}

function isPool(pool: unknown): pool is Pool {
  const candidate = pool as Partial<Record<'connect' | 'query' | 'totalCount', unknown>> | null;
  return typeof candidate === 'object' && candidate !== null && typeof candidate.connect === 'function' && typeof candidate.query === 'function' && typeof candidate.totalCount === 'number';
}

/**
 * Whether the connections of a shared pool carry a statement_timeout of at most `ms`: the pool
 * was created with pg's `statement_timeout` option, which every connection sends at start-up.
 */
function sessionTimeoutWithin(pool: Pool, ms: number): boolean {
  const configured = (pool as { options?: { statement_timeout?: unknown } }).options?.statement_timeout;
  return typeof configured === 'number' && Number.isInteger(configured) && configured >= 1 && configured <= ms;
}

function createPool(connectionString: string, statementTimeout: number): Pool {
  let Driver: { Pool: new (config: PoolConfig) => Pool };
  try {
    Driver = createRequire(import.meta.url)('pg') as typeof Driver;
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code !== 'MODULE_NOT_FOUND') {
      throw new CachewiseError('E_MISSING_DEPENDENCY', 'pg is installed but failed to load', 'reinstall it with npm install pg@8', { cause: error });
    }
    throw new CachewiseError('E_MISSING_DEPENDENCY', 'postgresStore needs the pg package, which is not installed', 'npm install pg@8', { cause: error });
  }
  const pool = new Driver.Pool({
    connectionString,
    statement_timeout: statementTimeout,
    connectionTimeoutMillis: statementTimeout,
    fallback_application_name: 'cachewise',
  });
  // An idle connection that fails (server restart) is dropped by the pool, and the next query
  // opens a new one; without a listener, pg's 'error' event would crash the process instead.
  pool.on('error', () => {});
  return pool;
}
