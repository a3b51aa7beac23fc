/**
 * The measuring loop shared by every benchmark: contenders run the same operation shape at the
 * same concurrency, interleaved in rounds, so that the machine's drift (other processes on the
 * two shared cores, a server's background work) falls on all of them alike.
 *
 * One comparison at one setting:
 *   1. warm-up: each contender runs `warmupMs`, unmeasured (JIT, pools, connections, caches);
 *   2. `rounds` rounds; in each round every contender runs `roundMs` in turn. The order rotates
 *      by one each round (A B, B A, A B, ...), so no contender always runs first or last;
 *   3. per contender: ops/s of every round, their median, min and max, and a latency histogram
 *      of every measured operation (node:perf_hooks, nanoseconds).
 *
 * A round runs `concurrency` async loops; each loop awaits one operation, then starts the next,
 * until the round's deadline. Throughput is completed operations over the time until the last
 * loop finished (operations started before the deadline are counted, and waited for).
 */
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';

/** One way of doing the operation under test. */
export interface Contender {
  readonly name: string;
  /**
   * One operation. `n` is a sequence number shared by all loops of the round (0, 1, 2, ...):
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

export interface LatencySummary {
  readonly p50Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
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

export interface Progress {
  (message: string): void;
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
  const histograms = contenders.map(() => createHistogram());
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
    latency: summarize(histograms[i]!),
  }));
}

/** `concurrency` loops of `contender.op` for `durationMs`; sequence numbers continue from `first`. */
export async function runLoops(
  contender: Contender,
  concurrency: number,
  durationMs: number,
  first = 0,
  histogram?: RecordableHistogram,
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
      histogram?.record(Math.max(1, Math.round((done - now) * 1e6)));
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

function summarize(histogram: RecordableHistogram): LatencySummary {
  const us = (ns: number) => Math.round(ns / 100) / 10;
  return { p50Us: us(histogram.percentile(50)), p99Us: us(histogram.percentile(99)), maxUs: us(histogram.max) };
}
