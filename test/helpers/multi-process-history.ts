/**
 * The multi-process test's shared parts: the collections every child declares, what a child is
 * told and what it reports, and the merge of the children's histories into one History for the
 * checker of history.ts (stale, future and unknown-value reads).
 */
import type { CollectionPolicy } from '../../src/index.js';
import { checkReads, History, type StoreLedger, type Violation } from './history.js';

/** One collection per pattern under test; the share of operations that are writes. */
export const COLLECTIONS: readonly { name: string; policy: CollectionPolicy; writeShare: number }[] = [
  { name: 'through', policy: { write: 'through', read: 'through', ttl: '1h' }, writeShare: 0.3 },
  { name: 'around', policy: { write: 'around', read: 'through', ttl: '1h' }, writeShare: 0.3 },
  // Read-through under churn: mostly reads, entries expire quickly, so misses load and fill
  // (under the shared lease) while other processes write.
  { name: 'loaded', policy: { write: 'around', read: 'through', ttl: '150ms', ttlJitter: 0.5 }, writeShare: 0.1 },
  // Write-back (sets only, see the README's "Write-back across instances"): a write is in the
  // shared tier before it resolves, and flushed within 50 ms, by whichever process wrote it.
  { name: 'back', policy: { write: 'back', read: 'through', ttl: '1h', flush: { maxDelay: '50ms' } }, writeShare: 0.3 },
];

export interface ChildConfig {
  readonly index: number;
  readonly tier: 'redis' | 'two';
  readonly redisUrl: string;
  /** The startup nodes of a Redis Cluster to use instead of `redisUrl`. */
  readonly clusterNodes?: readonly { host: string; port: number }[];
  readonly databaseUrl: string;
  readonly schema: string;
  readonly prefix: string;
  readonly keys: number;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly seed: number;
  readonly historyFile: string;
}

export interface RecordedOp {
  readonly kind: 'set' | 'get';
  readonly collection: string;
  readonly key: string;
  /** The value's tag "writer.seq": written (set), or read (get; null: no value). */
  tag: string | null;
  /** process.hrtime in microseconds, the same clock in every process. */
  readonly start: number;
  end: number;
  /** The version a set resolved with. */
  version?: number | undefined;
  error?: string;
}

export interface ChildHistory {
  readonly index: number;
  readonly ops: readonly RecordedOp[];
  readonly stats: unknown;
}

export interface CollectionVerdict {
  readonly collection: string;
  readonly reads: number;
  /** Reads that began after some write of their key had resolved: those the stale check bites on. */
  readonly readsAfterAWrite: number;
  readonly writes: number;
  /** Median durations in ms, for the report. */
  readonly medianWriteMs: number;
  readonly medianReadMs: number;
  /** Writes that took longer than 400 ms (for twoTier: likely waited out the bus's trust window). */
  readonly slowWrites: number;
  readonly violations: readonly Violation[];
}

/**
 * Merges the histories and checks each collection: a read that began after a write of version v
 * resolved must return version v or newer (stale), and only values some write wrote (unknown
 * value) and that were written before the read ended (future). Failed operations are violations.
 */
export function checkMerged(children: readonly ChildHistory[]): CollectionVerdict[] {
  const ops = children.flatMap((c) => c.ops);
  return COLLECTIONS.map(({ name }) => {
    const history = new History();
    const mine = ops.filter((op) => op.collection === name);
    for (const op of mine) {
      if (op.kind === 'set') {
        history.writes.push({
          kind: 'set',
          key: op.key,
          tag: op.tag!,
          invokedAt: op.start,
          respondedAt: op.end,
          status: op.error === undefined ? 'ok' : 'error',
          version: op.version,
          error: op.error,
        });
      } else {
        history.reads.push({ key: op.key, via: 'get', invokedAt: op.start, respondedAt: op.end, result: op.error === undefined ? op.tag : undefined, error: op.error });
      }
    }
    // Only the read checks that need no view of the database: dirty reads are checked in-process
    // by staleness.test.ts. The ledger is asked nothing else (there are no deletes here).
    const noDatabaseView = { isApplied: () => true, commits: [] } as unknown as StoreLedger;
    const violations = checkReads(history, noDatabaseView, { noDirtyReads: false });
    const writesOk = history.writes.filter((w) => w.status === 'ok');
    const readsAfterAWrite = history.reads.filter((r) => writesOk.some((w) => w.key === r.key && w.respondedAt < r.invokedAt)).length;
    return {
      collection: name,
      reads: history.reads.length,
      readsAfterAWrite,
      writes: history.writes.length,
      medianWriteMs: median(history.writes.map((w) => (w.respondedAt - w.invokedAt) / 1000)),
      medianReadMs: median(history.reads.map((r) => (r.respondedAt - r.invokedAt) / 1000)),
      slowWrites: history.writes.filter((w) => w.respondedAt - w.invokedAt > 400_000).length,
      violations,
    };
  });
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.floor(sorted.length / 2)]! * 10) / 10;
}
