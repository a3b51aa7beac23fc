/**
 * What `cachewise bench` measured, as data: the JSON file is this object as it is, and the HTML
 * report and the text summary are rendered from it, so all three carry the same numbers.
 */
import type { MachineInfo } from '../demo/machine.js';
import type { ContenderResult, Ratio } from './runner.js';

export type ScenarioResult = ThroughputScenario | StampedeScenario | SkippedScenario;

/** A target the issue sets, checked on this run's figures. */
export interface TargetCheck {
  readonly description: string;
  readonly subject: string;
  readonly baseline: string;
  /** subject ops/s over baseline ops/s (medians of the same run). */
  readonly ratio: number;
  /** The target: ratio >= atLeast. */
  readonly atLeast: number;
  readonly met: boolean;
}

/** Contenders interleaved in rounds; ops/s per round, latency histograms, ratios to a baseline. */
export interface ThroughputScenario {
  readonly kind: 'throughput';
  readonly id: string;
  readonly title: string;
  /** What each contender does, in a sentence. */
  readonly what: string;
  readonly setting: Readonly<Record<string, string | number>>;
  readonly baseline: string;
  readonly contenders: readonly ContenderResult[];
  readonly ratios: readonly Ratio[];
  readonly targets: readonly TargetCheck[];
  readonly notes: readonly string[];
}

export interface StampedeRow {
  readonly name: string;
  /** Loads of the one missing key, per round (each round a fresh key). */
  readonly loadsPerRound: readonly number[];
  readonly maxLoads: number;
  /** Time until all callers had their value, per round, in ms. */
  readonly settleMs: readonly number[];
  readonly medianSettleMs: number;
  /** Callers that got no value or an error, over all rounds. */
  readonly wrongAnswers: number;
}

export interface StampedeScenario {
  readonly kind: 'stampede';
  readonly id: string;
  readonly title: string;
  readonly what: string;
  readonly callers: number;
  readonly loaderMs: number;
  readonly rows: readonly StampedeRow[];
  readonly targets: readonly TargetCheck[];
  readonly notes: readonly string[];
}

export interface SkippedScenario {
  readonly kind: 'skipped';
  readonly id: string;
  readonly title: string;
  readonly reason: string;
}

/** Write-around's cold cache: the first read after a write, per write pattern. */
export interface ColdReadRow {
  readonly pattern: string;
  readonly keys: number;
  /** Misses of the first read after each write, over keys. */
  readonly missRate: number;
  readonly firstReadP50Ms: number;
  readonly writeP50Ms: number;
}

/** The same reads done by read-through and by cache-aside code. */
export interface ReadStyleRow {
  readonly style: string;
  /** Non-blank lines of the application's read function (its source as run). */
  readonly appCodeLines: number;
  readonly appCode: string;
  readonly reads: number;
  readonly distinctKeys: number;
  /** Database loads the reads caused. */
  readonly loads: number;
  readonly durationMs: number;
}

/** The seed's claims at one database latency. */
export interface LatencyRun {
  /** Injected latency per database call; 0: the database's own. */
  readonly dbLatencyMs: number;
  readonly label: string;
  readonly writePatterns: ScenarioResult;
  readonly flush: ScenarioResult;
  readonly coldReads: readonly ColdReadRow[];
  readonly readStyles: readonly ReadStyleRow[];
}

export interface ClaimCheck {
  readonly claim: string;
  /** The seed's words. */
  readonly seed: string;
  readonly dbLatencyMs: number;
  /** What this run measured, in words with the figures. */
  readonly measured: string;
  /** 'holds', 'does not hold', 'partly', or 'not measured'. */
  readonly verdict: 'holds' | 'does not hold' | 'partly' | 'not measured';
}

export interface SeedTableRow {
  readonly pattern: string;
  readonly seedWriteLatency: string;
  readonly seedDurability: string;
  readonly seedComplexity: string;
  /** Measured columns, per database latency label. */
  readonly measured: readonly { readonly label: string; readonly writeP50Ms: number | null; readonly writeP99Ms: number | null; readonly opsPerSec: number | null; readonly firstReadMissRate: number | null; readonly appCodeLines: number | null }[];
}

export interface BenchReport {
  readonly tool: 'cachewise bench';
  readonly version: string;
  readonly date: string;
  readonly machine: MachineInfo;
  readonly command: string;
  readonly backend: { readonly tier: string; readonly store: string };
  readonly options: { readonly quick: boolean; readonly rounds: number; readonly roundMs: number; readonly warmupMs: number; readonly dbLatencyMs: number };
  readonly scenarios: readonly ScenarioResult[];
  readonly latencyRuns: readonly LatencyRun[];
  readonly claims: readonly ClaimCheck[];
  readonly seedTable: readonly SeedTableRow[];
  readonly durationMs: number;
}
