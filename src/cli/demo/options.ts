/**
 * The demo's options, validated: `--db-latency <ms>`, `--json`, `--quick`, `--dir <path>`,
 * `--seed <n>`. A bad value is a UsageError naming the flag (exit code 2).
 */

export interface DemoOptions {
  /** Added to every database call (load, loadMany, write). The seed's example: 50 ms. */
  readonly dbLatencyMs: number;
  readonly json: boolean;
  readonly quick: boolean;
  /** Where the SQLite files go; undefined: a temporary directory, removed afterwards. */
  readonly dir: string | undefined;
  readonly seed: number;
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
}

export function demoOptions(flags: RawDemoFlags): DemoOptions {
  return {
    dbLatencyMs: flags['db-latency'] === undefined ? DEFAULT_DB_LATENCY_MS : latency(flags['db-latency']),
    json: flags.json ?? false,
    quick: flags.quick ?? false,
    dir: flags.dir === undefined ? undefined : directory(flags.dir),
    seed: flags.seed === undefined ? 1 : seed(flags.seed),
  };
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
