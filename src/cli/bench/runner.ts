/**
 * The measuring loop of every benchmark: contenders run the same operation shape at the same
 * concurrency, interleaved in rounds, so that the machine's drift (other processes on shared
 * cores, a server's background work) falls on all of them alike. Ratios between contenders of
 * one comparison are the result; absolute figures belong to the machine and the moment.
 *
 * One comparison at one setting:
 *   1. warm-up: each contender runs `warmupMs`, unmeasured (JIT, pools, connections, caches);
 *   2. `rounds` rounds; in each, every contender runs `roundMs` in turn. The order rotates by
 *      one each round (A B C, B C A, C A B, ...), so no contender always runs first or last;
 *   3. per contender: ops/s of every round, their median, min and max, and an HDR histogram
 *      (hdr-histogram-js, 3 significant digits, nanoseconds) of every measured operation.
 *
 * A round runs `concurrency` async loops; each awaits one operation, then starts the next, until
 * the round's deadline. Throughput is completed operations over the time until the last loop
 * finished (operations started before the deadline count, and are waited for).
 */
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';

/** One way of doing the operation under test. */
export interface Contender {
  readonly name: string;
  /**
   * One operation. `n` is a sequence number shared by all loops of the comparison (0, 1, 2, ...):
   * use it to pick keys, so that concurrent loops work on different keys.
   */
  readonly op: (n: number) => Promise<unknown>;
  /** Unmeasured work after each run of the contender (a write-back flush), so it does not spill into the next contender's time. */
  readonly settle?: () => Promise<unknown>;
}

export interface RoundOptions {
  readonly rounds: number;
  readonly roundMs: number;
  readonly warmupMs: number;
  readonly concurrency: number;
}

/** Latency of one operation, in microseconds. */
export interface LatencySummary {
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly meanUs: number;
  /** [percentile, µs] points of the distribution, for charts (from 0 to 99.99 and the max). */
  readonly curve: readonly (readonly [number, number])[];
}

export interface ContenderResult {
  readonly name: string;
  /** Operations per second of each measured round, in round order. */
  readonly perRound: readonly number[];
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly ops: number;
  /** Latency of one operation, over every measured round. */
  readonly latency: LatencySummary;
}

export type Progress = (message: string) => void;

/** The percentiles of a latency curve: denser towards the tail, as HDR plots are. */
export const CURVE_PERCENTILES = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100] as const;

/** A latency histogram of nanosecond values, 1 ns to 10 minutes, 3 significant digits. */
export class LatencyHistogram {
  private readonly histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600e9, numberOfSignificantValueDigits: 3, useWebAssembly: false });

  recordNs(ns: number): void {
    this.histogram.recordValue(Math.min(600e9, Math.max(1, Math.round(ns))));
  }

  recordMs(ms: number): void {
    this.recordNs(ms * 1e6);
  }

  get count(): number {
    return this.histogram.totalCount;
  }

  summary(): LatencySummary {
    const h = this.histogram;
    const us = (ns: number) => Math.round(ns / 10) / 100;
    if (h.totalCount === 0) return { p50Us: 0, p90Us: 0, p99Us: 0, p999Us: 0, maxUs: 0, meanUs: 0, curve: [] };
    return {
      p50Us: us(h.getValueAtPercentile(50)),
      p90Us: us(h.getValueAtPercentile(90)),
      p99Us: us(h.getValueAtPercentile(99)),
      p999Us: us(h.getValueAtPercentile(99.9)),
      maxUs: us(h.maxValue),
      meanUs: us(h.mean),
      curve: CURVE_PERCENTILES.map((p) => [p, us(p === 100 ? h.maxValue : p === 0 ? h.minNonZeroValue : h.getValueAtPercentile(p))] as const),
    };
  }
}

/** Runs `contenders` interleaved in rounds at one concurrency; results in the contenders' order. */
export async function compare(contenders: readonly Contender[], options: RoundOptions, progress: Progress = () => undefined): Promise<ContenderResult[]> {
  let sequence = 0;
  for (const contender of contenders) {
    progress(`warm-up ${contender.name}`);
    sequence = (await runLoops(contender, options.concurrency, options.warmupMs, sequence)).next;
    await contender.settle?.();
  }
  const perRound = contenders.map(() => [] as number[]);
  const histograms = contenders.map(() => new LatencyHistogram());
  const ops = contenders.map(() => 0);
  for (let round = 0; round < options.rounds; round++) {
    for (let j = 0; j < contenders.length; j++) {
      const index = (j + round) % contenders.length;
      const contender = contenders[index]!;
      progress(`round ${round + 1}/${options.rounds} ${contender.name}`);
      const run = await runLoops(contender, options.concurrency, options.roundMs, sequence, histograms[index]);
      sequence = run.next;
      await contender.settle?.();
      perRound[index]!.push(run.ops / (run.elapsedMs / 1000));
      ops[index]! += run.ops;
    }
  }
  return contenders.map((contender, i) => ({
    name: contender.name,
    perRound: perRound[i]!,
    median: median(perRound[i]!),
    min: Math.min(...perRound[i]!),
    max: Math.max(...perRound[i]!),
    ops: ops[i]!,
    latency: histograms[i]!.summary(),
  }));
}

/** `concurrency` loops of `contender.op` for `durationMs`; sequence numbers continue from `first`. */
export async function runLoops(
  contender: Contender,
  concurrency: number,
  durationMs: number,
  first = 0,
  histogram?: LatencyHistogram,
): Promise<{ ops: number; elapsedMs: number; next: number }> {
  let next = first;
  let ops = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const loop = async (): Promise<void> => {
    let now = performance.now();
    while (now < deadline) {
      await contender.op(next++);
      const done = performance.now();
      histogram?.recordNs((done - now) * 1e6);
      ops++;
      now = done;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { ops, elapsedMs: performance.now() - started, next };
}

/** `count` operations of `contender.op` over `concurrency` loops (sequence numbers from `first`). */
export async function runCount(contender: Contender, concurrency: number, count: number, first = 0): Promise<{ elapsedMs: number }> {
  let next = first;
  const last = first + count;
  const started = performance.now();
  const loop = async (): Promise<void> => {
    while (next < last) await contender.op(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { elapsedMs: performance.now() - started };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** subject / baseline, from the medians of their per-round ops/s. */
export interface Ratio {
  readonly subject: string;
  readonly baseline: string;
  /** median(subject ops/s) / median(baseline ops/s). */
  readonly value: number;
  /** Lowest and highest ratio of the rounds, each round's subject over the same round's baseline. */
  readonly roundMin: number;
  readonly roundMax: number;
}

/** The ratio of every contender but `baseline` to `baseline`, in the contenders' order. */
export function ratiosTo(results: readonly ContenderResult[], baseline: string): Ratio[] {
  const b = results.find((r) => r.name === baseline);
  if (!b) throw new Error(`no contender named "${baseline}" among ${results.map((r) => r.name).join(', ')}`);
  return results.filter((s) => s !== b).map((s) => ratioOf(s, b));
}

/** `subject` over `baseline`, both of the same comparison (so their rounds pair up). */
export function ratioOf(subject: ContenderResult, baseline: ContenderResult): Ratio {
  const perRound = subject.perRound.map((ops, i) => ops / baseline.perRound[i]!);
  return { subject: subject.name, baseline: baseline.name, value: subject.median / baseline.median, roundMin: Math.min(...perRound), roundMax: Math.max(...perRound) };
}
