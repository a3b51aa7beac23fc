/**
 * Counters and latency histograms per collection (contract 10). Latencies are recorded in
 * microseconds in Node's built-in HDR histograms (perf_hooks.createHistogram).
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';

export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

export interface CollectionStatsSnapshot {
  readonly collection: string;
  readonly write: string;
  readonly read: string;
  readonly hits: number;
  readonly staleHits: number;
  readonly misses: number;
  readonly loads: number;
  readonly loadErrors: number;
  readonly fillsRejected: number;
  /** Misses served by waiting for another process's load of the same key (shared tiers). */
  readonly leaseWaits: number;
  readonly writes: number;
  readonly writeErrors: number;
  /** Rows the database was asked to write (after write-back coalescing). */
  readonly storeWrites: number;
  readonly storeBatches: number;
  readonly retries: number;
  readonly deadLetters: number;
  readonly tierErrors: number;
  readonly backpressureWaits: number;
  readonly backpressureRejects: number;
  /** Write-back: keys waiting for the database (pending and in flight). */
  readonly pending: number;
  readonly pendingBytes: number;
  /** Write-back: age of the oldest write not yet in the database (0 when none). */
  readonly oldestDirtyAgeMs: number;
  /** Write-back: acknowledged writes known lost (durability 'none', closed or crashed before flushing). */
  readonly lostWrites: number;
  readonly readLatency: LatencySummary;
  readonly loadLatency: LatencySummary;
  readonly writeLatency: LatencySummary;
  /** Write-back: time from acknowledgement to commit in the database. */
  readonly flushLag: LatencySummary;
}

type Counter = Exclude<
  {
    [K in keyof CollectionStatsSnapshot]: CollectionStatsSnapshot[K] extends number ? K : never;
  }[keyof CollectionStatsSnapshot],
  'pending' | 'pendingBytes' | 'oldestDirtyAgeMs'
>;

export class CollectionStats {
  readonly counters: Record<Counter, number> = {
    hits: 0, staleHits: 0, misses: 0, loads: 0, loadErrors: 0, fillsRejected: 0, leaseWaits: 0, writes: 0, writeErrors: 0,
    storeWrites: 0, storeBatches: 0, retries: 0, deadLetters: 0, tierErrors: 0, backpressureWaits: 0,
    backpressureRejects: 0, lostWrites: 0,
  };
  readonly readLatency = createHistogram();
  readonly loadLatency = createHistogram();
  readonly writeLatency = createHistogram();
  readonly flushLag = createHistogram();

  constructor(
    readonly collection: string,
    readonly write: string,
    readonly read: string,
  ) {}

  snapshot(pending: { pending: number; pendingBytes: number; oldestDirtyAgeMs: number }): CollectionStatsSnapshot {
    return {
      collection: this.collection,
      write: this.write,
      read: this.read,
      ...this.counters,
      ...pending,
      readLatency: summarize(this.readLatency),
      loadLatency: summarize(this.loadLatency),
      writeLatency: summarize(this.writeLatency),
      flushLag: summarize(this.flushLag),
    };
  }
}

/** Records milliseconds (fractions allowed) into a microsecond histogram. */
export function recordMs(histogram: RecordableHistogram, ms: number): void {
  histogram.record(Math.max(1, Math.round(ms * 1000)));
}

function summarize(h: RecordableHistogram): LatencySummary {
  if (h.count === 0) return { count: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0 };
  return { count: h.count, p50Ms: h.percentile(50) / 1000, p99Ms: h.percentile(99) / 1000, maxMs: h.max / 1000, meanMs: h.mean / 1000 };
}
