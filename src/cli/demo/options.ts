/**
 * The demo's options, validated: `--db-latency <ms>`, `--json`, `--quick`, `--dir <path>`,
 * `--seed <n>`, `--redis [url]`, `--postgres [url]`, `--keep`. A bad value is a UsageError
 * naming the flag (exit code 2).
 */
import { DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, redactUrl } from './backend.js';

export interface DemoOptions {
  /** Added to every database call (load, loadMany, write). The seed's example: 50 ms. */
  readonly dbLatencyMs: number;
  readonly json: boolean;
  readonly quick: boolean;
  /** Where the SQLite files go; undefined: a temporary directory, removed afterwards. */
  readonly dir: string | undefined;
  readonly seed: number;
  /** The Redis to use as the cache tier; undefined: the in-process memory tier. */
  readonly redisUrl: string | undefined;
  /** The PostgreSQL to use as the database; undefined: SQLite files. */
  readonly postgresUrl: string | undefined;
  /** Keep the Redis keys and the PostgreSQL schema after the run (default: removed). */
  readonly keep: boolean;
}

/** A mistake on the command line: printed with the usage, exit code 2. */
export class UsageError extends Error {}

export const DEFAULT_DB_LATENCY_MS = 50;
const MAX_DB_LATENCY_MS = 10_000;

export interface RawDemoFlags {
  readonly 'db-latency'?: string | undefined;
  readonly json?: boolean | undefined;
  readonly quick?: boolean | undefined;
  readonly dir?: string | undefined;
  readonly seed?: string | undefined;
  /** The URL, or '' for the flag without one (then REDIS_URL, or the default). */
  readonly redis?: string | undefined;
  /** The URL, or '' for the flag without one (then DATABASE_URL, or the default). */
  readonly postgres?: string | undefined;
  readonly keep?: boolean | undefined;
}

export function demoOptions(flags: RawDemoFlags, env: NodeJS.ProcessEnv = process.env): DemoOptions {
  const redisUrl = flags.redis === undefined ? undefined : serverUrl('--redis', flags.redis, 'REDIS_URL', env.REDIS_URL, DEFAULT_REDIS_URL, ['redis:', 'rediss:']);
  const postgresUrl =
    flags.postgres === undefined ? undefined : serverUrl('--postgres', flags.postgres, 'DATABASE_URL', env.DATABASE_URL, DEFAULT_POSTGRES_URL, ['postgres:', 'postgresql:']);
  if (flags.dir !== undefined && postgresUrl !== undefined) {
    throw new UsageError('--dir is where the SQLite files go; with --postgres the demo writes to a schema of its own (keep it with --keep)');
  }
  if (flags.keep && redisUrl === undefined && postgresUrl === undefined) {
    throw new UsageError('--keep keeps the Redis keys and the PostgreSQL schema; it needs --redis or --postgres (to keep the SQLite files, use --dir)');
  }
  return {
    dbLatencyMs: flags['db-latency'] === undefined ? DEFAULT_DB_LATENCY_MS : latency(flags['db-latency']),
    json: flags.json ?? false,
    quick: flags.quick ?? false,
    dir: flags.dir === undefined ? undefined : directory(flags.dir),
    seed: flags.seed === undefined ? 1 : seed(flags.seed),
    redisUrl,
    postgresUrl,
    keep: flags.keep ?? false,
  };
}

/** The flag's URL, else the environment variable's, else the default; checked for its scheme. */
function serverUrl(flag: string, given: string, variable: string, fromEnv: string | undefined, fallback: string, schemes: readonly string[]): string {
  const fromFlag = given.trim() !== '';
  const url = fromFlag ? given.trim() : fromEnv?.trim() || fallback;
  const source = fromFlag ? flag : fromEnv?.trim() ? `${variable} (used by ${flag} without a URL)` : flag;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || !schemes.includes(parsed.protocol) || parsed.hostname === '') {
    // Without its password, if it has one.
    const shown = parsed === undefined ? JSON.stringify(url) : redactUrl(url);
    throw new UsageError(`${source} must be a ${schemes.map((s) => `${s}//`).join(' or ')} URL such as ${fallback}, got ${shown}`);
  }
  return url;
}

function latency(text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isFinite(value) || value > MAX_DB_LATENCY_MS) {
    throw new UsageError(`--db-latency must be a number of milliseconds from 0 to ${MAX_DB_LATENCY_MS}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function directory(text: string): string {
  if (text.trim() === '') throw new UsageError('--dir needs a directory path, got an empty string');
  return text;
}

function seed(text: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value > 0xffffffff) {
    throw new UsageError(`--seed must be a whole number from 0 to ${0xffffffff}, got ${JSON.stringify(text)}`);
  }
  return value;
}
