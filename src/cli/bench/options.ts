/**
 * The options of `cachewise bench`, validated: `--quick`, `--json`, `--out <dir>`,
 * `--db-latency <ms>`, `--rounds <n>`, `--round-ms <ms>`, `--only <ids>`, `--redis [url]`,
 * `--postgres [url]`. A bad value is a UsageError naming the flag (exit code 2).
 */
import { demoOptions, UsageError } from '../demo/options.js';

export interface BenchOptions {
  readonly quick: boolean;
  /** Print the results as JSON on stdout (progress stays on stderr). */
  readonly json: boolean;
  /** Where bench.json and bench.html go. */
  readonly out: string;
  /** The injected database latency of the seed's claims (the real database's own is measured too). */
  readonly dbLatencyMs: number;
  readonly rounds: number | undefined;
  readonly roundMs: number | undefined;
  /** Scenario groups to run; undefined: all. */
  readonly only: readonly ScenarioGroup[] | undefined;
  readonly redisUrl: string | undefined;
  readonly postgresUrl: string | undefined;
}

export const SCENARIO_GROUPS = ['memory-hit', 'miss-load', 'stampede', 'redis-hit', 'two-tier-hit', 'writes'] as const;
export type ScenarioGroup = (typeof SCENARIO_GROUPS)[number];

export const DEFAULT_OUT = 'cachewise-bench';

export interface RawBenchFlags {
  readonly quick?: boolean | undefined;
  readonly json?: boolean | undefined;
  readonly out?: string | undefined;
  readonly 'db-latency'?: string | undefined;
  readonly rounds?: string | undefined;
  readonly 'round-ms'?: string | undefined;
  readonly only?: string | undefined;
  readonly redis?: string | undefined;
  readonly postgres?: string | undefined;
}

export function benchOptions(flags: RawBenchFlags, env: NodeJS.ProcessEnv = process.env): BenchOptions {
  // The demo's rules for --db-latency, --redis and --postgres (URL defaults, schemes, messages).
  const shared = demoOptions({ 'db-latency': flags['db-latency'], redis: flags.redis, postgres: flags.postgres }, env);
  if (flags.out !== undefined && flags.out.trim() === '') throw new UsageError('--out needs a directory path, got an empty string');
  return {
    quick: flags.quick ?? false,
    json: flags.json ?? false,
    out: flags.out ?? DEFAULT_OUT,
    dbLatencyMs: shared.dbLatencyMs,
    rounds: flags.rounds === undefined ? undefined : positive('--rounds', flags.rounds, 1000),
    roundMs: flags['round-ms'] === undefined ? undefined : positive('--round-ms', flags['round-ms'], 600_000),
    only: flags.only === undefined ? undefined : groups(flags.only),
    redisUrl: shared.redisUrl,
    postgresUrl: shared.postgresUrl,
  };
}

function positive(flag: string, text: string, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > max) throw new UsageError(`${flag} must be a whole number from 1 to ${max}, got ${JSON.stringify(text)}`);
  return value;
}

function groups(text: string): ScenarioGroup[] {
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = names.filter((n) => !(SCENARIO_GROUPS as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length > 0) {
    throw new UsageError(`--only takes a comma-separated list of ${SCENARIO_GROUPS.join(', ')}; got ${JSON.stringify(text)}`);
  }
  return names as ScenarioGroup[];
}
