/**
 * The servers a benchmark talks to, and what it leaves behind: nothing. Every run works under a
 * random name (a Redis key prefix, a PostgreSQL schema) and registers how to remove it; `main`
 * runs those clean-ups when the benchmark ends, fails, or is interrupted (Ctrl-C).
 *
 * REDIS_URL (default redis://127.0.0.1:6379) and DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/test) choose the servers, as for the tests.
 */
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import pg from 'pg';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A random name part for this run: keys `bench:<id>:...`, schema `bench_<id>`. */
export function runId(): string {
  return randomBytes(5).toString('hex');
}

/**
 * A Redis client with the options the Redis tier gives the clients it creates itself (see
 * RedisTierOptions.url), over which `options` win. Both contenders of a comparison get one each,
 * with the same options.
 */
export function redisClient(options: RedisOptions = {}, url = REDIS_URL): Redis {
  const client = new Redis(url, {
    enableAutoPipelining: true,
    commandTimeout: 1000,
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    ...options,
  });
  client.on('error', () => undefined);
  onCleanup(() => void client.disconnect());
  return client;
}

/** A pg.Pool on DATABASE_URL of `max` connections, with `config` over that; ended by the clean-up. */
export function pgPool(max: number, applicationName: string, config: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max, application_name: applicationName, ...config });
  pool.on('error', () => undefined);
  onCleanup(() => pool.end());
  return pool;
}

/** Deletes every key that starts with `prefix` (SCAN, then UNLINK in batches). */
export async function deleteKeys(client: Redis, prefix: string): Promise<number> {
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await client.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

const cleanups: (() => unknown)[] = [];

/** Registers a clean-up; they run last registered first. */
export function onCleanup(cleanup: () => unknown): void {
  cleanups.push(cleanup);
}

let cleaning: Promise<void> | undefined;

/** Runs every clean-up once; a second caller (Ctrl-C during the clean-up) waits for the same run. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const cleanup = cleanups.pop()!;
      try {
        await cleanup();
      } catch (error) {
        process.stderr.write(`clean-up failed: ${(error as Error).message}\n`);
      }
    }
  })();
  return cleaning;
}

/** Runs a benchmark, then its clean-ups, whatever happens; exits 1 on failure, 130 on Ctrl-C. */
export async function main(run: () => Promise<void>): Promise<void> {
  let interrupted = false;
  const interrupt = () => {
    interrupted = true;
    process.stderr.write('\ninterrupted: cleaning up\n');
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    await run();
  } catch (error) {
    // After Ctrl-C, operations fail because the clean-up closed their clients: not worth a report.
    if (!interrupted) {
      process.stderr.write(`benchmark failed: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  } finally {
    await cleanUp();
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

/** Progress on stderr, on one rewritten line when stderr is a terminal; silent otherwise. */
export function progress(message: string): void {
  if (!process.stderr.isTTY) return;
  process.stderr.write(`\r\x1b[K${message}`);
}

export function clearProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}
