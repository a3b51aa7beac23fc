/**
 * PostgreSQL for tests: every store gets a schema of its own (named after the run, dropped with
 * CASCADE afterwards), an admin pool for looking behind the store's back, and pools that record
 * every statement their connections send or break a connection on demand.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { DATABASE_URL } from './servers.js';

/** The prefix of every schema this test process creates: `cw_test_<random>_`. */
export const RUN_SCHEMA_PREFIX = `cw_test_${randomBytes(4).toString('hex')}_`;

let schemas = 0;

/** A schema name no other test (or test process) uses. */
export function freshSchemaName(): string {
  schemas += 1;
  return `${RUN_SCHEMA_PREFIX}${schemas}`;
}

/** A pool on DATABASE_URL whose idle-connection errors do not crash the test process. */
export function testPool(config: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, ...config });
  pool.on('error', () => {});
  return pool;
}

export async function dropSchema(admin: pg.Pool, schema: string): Promise<void> {
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** Schemas of this run still in the database. */
export async function leftoverSchemas(admin: pg.Pool): Promise<string[]> {
  const { rows } = await admin.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname', [RUN_SCHEMA_PREFIX]);
  return rows.map((row) => row.nspname);
}

/** DATABASE_URL with an application_name, to find the store's own connections in pg_stat_activity. */
export function urlWithApplicationName(name: string): string {
  const url = new URL(DATABASE_URL);
  url.searchParams.set('application_name', name);
  return url.toString();
}

type QueryFn = (...args: unknown[]) => unknown;

/**
 * Calls `before(text, client)` before every statement any connection of the pool sends
 * (through pool.query or a checked-out client).
 */
export function interceptQueries(pool: pg.Pool, before: (text: string, client: pg.PoolClient) => void): void {
  pool.on('connect', (client) => {
    const original = client.query.bind(client) as QueryFn;
    (client as unknown as { query: QueryFn }).query = (...args: unknown[]) => {
      const config = args[0];
      const text = typeof config === 'string' ? config : String((config as { text?: unknown } | null)?.text ?? '');
      before(text, client as pg.PoolClient);
      return original(...args);
    };
  });
}

/** A pool that records the text of every statement its connections send. */
export function recordingPool(config: pg.PoolConfig = {}): { pool: pg.Pool; statements: string[] } {
  const pool = testPool(config);
  const statements: string[] = [];
  interceptQueries(pool, (text) => statements.push(text));
  return { pool, statements };
}

/**
 * A pool whose connection is destroyed right after it sends the next statement matching
 * `pattern`, once `arm()` was called: the statement may reach the server, its answer never
 * arrives.
 */
export function breakingPool(pattern: RegExp, config: pg.PoolConfig = {}): { pool: pg.Pool; arm(): void } {
  const pool = testPool(config);
  let armed = false;
  interceptQueries(pool, (text, client) => {
    if (!armed || !pattern.test(text)) return;
    armed = false;
    // After pg has written the statement (query() sends synchronously when the client is idle).
    queueMicrotask(() => (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy());
  });
  return { pool, arm: () => void (armed = true) };
}
