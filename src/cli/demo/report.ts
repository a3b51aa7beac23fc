/**
 * The demo's figures as data: one row per pattern (the seed's words next to the measurements;
 * the sixth row, write-back with a journal, says that the seed has no such row), the feed, and
 * the checks that decide the exit code. `--json` prints this object as it is;
 * the text output is rendered from it, so both always carry the same numbers.
 */
import type { FeedResult, FeedShape } from './feed.js';
import type { KillMeasurement } from './kill-measure.js';
import type { MachineInfo } from './machine.js';
import type { LatencyFigures } from './samples.js';
import type { PatternMeasurement } from './pattern-run.js';
import { isJournaled, type PatternSpec } from './patterns.js';
import { seedRowOf, type RowId, type SeedRow } from './seed-table.js';
import type { WorkloadShape } from './workload.js';

export interface LostOnKill {
  /** The row whose writes the killed child made: the row's own, or the write pattern a read pattern is paired with. */
  readonly measuredOn: RowId;
  readonly acked: number;
  readonly keys: number;
  readonly lost: number;
  readonly examples: readonly string[];
  /**
   * With a shared tier (Redis): of the lost keys, how many the tier still held at the
   * acknowledged version after the kill. Null with the in-process memory tier.
   */
  readonly lostStillCached: number | null;
  /**
   * With a journal: the writes the recovery after the kill found in the journal and replayed
   * before the keys were counted. Null without a journal.
   */
  readonly replayed: number | null;
}

/** Numbers are null (NaN before serialization) when that measurement failed; `problems` says why. */
export interface DemoRow {
  readonly pattern: RowId;
  readonly name: string;
  readonly setup: string;
  readonly note: string | null;
  readonly seed: SeedRow;
  readonly writes: number;
  readonly reads: number;
  readonly writeP50Ms: number;
  readonly writeP99Ms: number;
  readonly readP50Ms: number;
  readonly readP99Ms: number;
  /** Cache hits / reads. */
  readonly hitRatio: number;
  readonly loads: number;
  /** Fills (after a miss) refused because the key was written meanwhile: the stale fills prevented. */
  readonly fillsRejected: number;
  readonly staleReads: number;
  readonly staleExamples: readonly string[];
  /** How long acknowledged writes waited for the database, p99 (write-back; 0 when writes commit first). */
  readonly dbLagP99Ms: number;
  readonly storeWrites: number;
  readonly storeBatches: number;
  readonly dbWritesPerWrite: number;
  readonly lostOnKill: LostOnKill | null;
  readonly problems: readonly string[];
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface KillShape {
  /** The child is killed once it has acknowledged this many writes... */
  readonly killAfter: number;
  /** ...and run this long since its first acknowledgement. */
  readonly minRunMs: number;
  readonly concurrency: number;
  readonly keys: number;
}

/** The cache tier the demo ran on. URLs never carry a password. */
export type TierInfo =
  | { readonly kind: 'memory' }
  | {
      readonly kind: 'redis';
      readonly url: string;
      /** Every key the demo wrote starts with it. */
      readonly prefix: string;
      /** Whether the keys were left in Redis (--keep). */
      readonly kept: boolean;
      readonly serverVersion: string;
      readonly evictionPolicy: string;
      /** PING round trip before the run, p50 of 20. */
      readonly roundTripP50Ms: number;
    };

/** The database the demo ran on. URLs never carry a password. */
export type StoreInfo =
  | { readonly kind: 'sqlite'; readonly dir: string; readonly kept: boolean }
  | {
      readonly kind: 'postgres';
      readonly url: string;
      readonly schema: string;
      /** Whether the schema was left in the database (--keep). */
      readonly kept: boolean;
      readonly serverVersion: string;
      /** `SELECT 1` round trip before the run, p50 of 20. */
      readonly roundTripP50Ms: number;
    };

/** Where write-back with a journal keeps it: file journals, whatever the tier and store. */
export interface JournalInfo {
  readonly kind: 'file';
  /** The directory holding the journal directories (the SQLite directory, or a temporary one). */
  readonly dir: string;
  /** Whether they were left there (--dir). */
  readonly kept: boolean;
}

/** What a database call cost: the injected latency, and the database's own time, measured. */
export interface DbLatencyInfo {
  /** Added to every database call (--db-latency). */
  readonly injectedMs: number;
  /** 'injected': the injected latency dominates; 'database': none injected, the database's own. */
  readonly source: 'injected' | 'database';
  /** The database's own time per call (load, loadMany, write batch) during the run, without the injected latency. */
  readonly ownPerCall: LatencyFigures;
}

export interface DemoReport {
  readonly tool: 'cachewise demo';
  readonly version: string;
  readonly machine: MachineInfo;
  /** `dir`: where the SQLite files went (null with PostgreSQL). */
  readonly options: { readonly dbLatencyMs: number; readonly quick: boolean; readonly seed: number; readonly dir: string | null; readonly dirKept: boolean };
  readonly tier: TierInfo;
  readonly store: StoreInfo;
  readonly journal: JournalInfo;
  readonly dbLatency: DbLatencyInfo;
  readonly workload: { readonly pattern: WorkloadShape; readonly feed: FeedShape; readonly kill: KillShape };
  readonly feed: FeedResult | null;
  readonly rows: readonly DemoRow[];
  readonly checks: readonly Check[];
  readonly ok: boolean;
  readonly durationMs: number;
}

/** What one pattern produced: its measurement and kill test, or the error each ended with. */
export interface PatternOutcome {
  readonly spec: PatternSpec;
  readonly measured: PatternMeasurement | Error;
  readonly kill: KillMeasurement | Error;
}

export function buildRow({ spec, measured, kill }: PatternOutcome): DemoRow {
  const m = measured instanceof Error ? undefined : measured;
  const problems: string[] = [];
  if (measured instanceof Error) problems.push(`measurement failed: ${measured.message}`);
  else if (measured.errors > 0) problems.push(`${measured.errors} operation(s) failed, the first: ${measured.firstError ?? 'unknown'}`);
  if (m !== undefined && m.foreignReads > 0) problems.push(`${m.foreignReads} read(s) returned a value no write produced`);
  if (kill instanceof Error) problems.push(`kill test failed: ${kill.message}`);
  const n = (value: number | undefined) => value ?? NaN;
  return {
    pattern: spec.id,
    name: seedRowOf(spec.id).pattern,
    setup: spec.setup,
    note: spec.note ?? null,
    seed: seedRowOf(spec.id),
    writes: n(m?.writes),
    reads: n(m?.reads),
    writeP50Ms: n(m?.write.p50Ms),
    writeP99Ms: n(m?.write.p99Ms),
    readP50Ms: n(m?.read.p50Ms),
    readP99Ms: n(m?.read.p99Ms),
    hitRatio: n(m?.hitRatio),
    loads: n(m?.loads),
    fillsRejected: n(m?.fillsRejected),
    staleReads: n(m?.staleReads),
    staleExamples: m?.staleExamples ?? [],
    dbLagP99Ms: n(m?.dbLagP99Ms),
    storeWrites: n(m?.storeWrites),
    storeBatches: n(m?.storeBatches),
    dbWritesPerWrite: n(m?.dbWritesPerWrite),
    lostOnKill:
      kill instanceof Error
        ? null
        : {
            measuredOn: spec.writesOf ?? spec.id,
            acked: kill.acked,
            keys: kill.keys,
            lost: kill.lost,
            examples: kill.lostExamples,
            lostStillCached: kill.lostStillCached,
            replayed: kill.replayed,
          },
    problems,
  };
}

/**
 * Whether every row ran, nobody read stale data, and no acknowledged write was lost on kill -9 by
 * write-through, write-around (and the read patterns paired with them), or write-back with a
 * journal once it recovered. Write-back with durability 'none' may lose writes: counted, not checked.
 */
export function buildChecks(rows: readonly DemoRow[], specs: readonly PatternSpec[], feed: FeedResult | Error): Check[] {
  const checks: Check[] = [];
  for (const row of rows) {
    const spec = specs.find((s) => s.id === row.pattern)!;
    checks.push({ name: `${row.pattern}: ran without errors`, ok: row.problems.length === 0, detail: row.problems.join('; ') || 'ok' });
    if (!Number.isNaN(row.staleReads)) {
      checks.push({
        name: `${row.pattern}: no stale reads`,
        ok: row.staleReads === 0,
        detail: row.staleReads === 0 ? `0 of ${row.reads} reads` : `${row.staleReads} of ${row.reads} reads were stale, e.g. ${row.staleExamples.join('; ')}`,
      });
    }
    if (row.lostOnKill !== null && (spec.policy.write !== 'back' || isJournaled(spec))) {
      const { lost, keys, examples, replayed } = row.lostOnKill;
      const recovery = replayed === null ? '' : ` after the recovery replayed ${replayed} journaled write(s)`;
      checks.push({
        name: `${row.pattern}: no acknowledged write lost on kill -9 (${row.lostOnKill.measuredOn}${replayed === null ? '' : ', after recovery'})`,
        ok: lost === 0,
        detail: lost === 0 ? `0 of ${keys} keys${recovery}` : `${lost} of ${keys} keys lost${recovery}, e.g. ${examples.join('; ')}`,
      });
    }
  }
  if (feed instanceof Error) checks.push({ name: 'feed: ran', ok: false, detail: feed.message });
  else {
    checks.push({ name: 'feed: ran without errors', ok: feed.errors === 0, detail: feed.errors === 0 ? 'ok' : `${feed.errors} operation(s) failed, the first: ${feed.firstError}` });
    checks.push({
      name: 'feed: every acknowledged event is in the database after the flush',
      ok: feed.eventsInDatabase === feed.eventsAcked,
      detail: `${feed.eventsInDatabase} of ${feed.eventsAcked}`,
    });
  }
  return checks;
}

/** JSON with NaN written as null (JSON.stringify does that already; this documents it). */
export function reportJson(report: DemoReport): string {
  return JSON.stringify(report, null, 2);
}
