/**
 * The shared path of write-through and write-around (contracts 3 and 4): the database commits
 * first, then the cache step runs. The cache is never touched before the commit, so no read can
 * see a value the database does not hold. When the database refused, nothing changed; when its
 * outcome is unknown, the key is invalidated before the write rejects. A write the database
 * found superseded by a newer version still invalidates anything older than itself.
 *
 * The tier's generation is read before the commit and handed to the cache step: should the tier
 * lose its memory (a Redis restart) between the commit and the cache step, a newer version
 * cached meanwhile may be gone, and the step must not cache this older one in its place
 * (contract 1; see Tier.set).
 */
import { CachewiseError, describeError } from '../errors.js';
import type { StoreWrite, WriteOutcome } from '../stores/store.js';
import { recordMs } from '../stats.js';
import { commit } from './commit.js';
import type { CollectionContext } from './context.js';
import type { IncomingWrite } from './write-back/write-back-queue.js';
import type { UnflushedWrite, WriteResult, Writer } from './writer.js';

/**
 * What the pattern does to the cache once the database holds `write`; `generation` is the tier's
 * generation read before the commit (Tier.generation), to pass to every Tier.set of the step.
 */
export type CacheStep = (ctx: CollectionContext, write: IncomingWrite, version: number, generation: unknown) => Promise<void>;

/** A write the database refused or may not have committed; `reached`: no shared tier may still serve the old copy. */
interface Failure {
  readonly key: string;
  readonly outcome: WriteOutcome;
  readonly reached: boolean;
}

export class DatabaseFirstWriter implements Writer {
  constructor(
    private readonly ctx: CollectionContext,
    private readonly cacheStep: CacheStep,
    private readonly onWritten: (key: string) => void,
  ) {}

  async write(writes: readonly IncomingWrite[]): Promise<WriteResult[]> {
    const started = performance.now();
    const versioned: StoreWrite[] = writes.map((w) =>
      w.op === 'set' ? { op: 'set', key: w.key, version: this.ctx.versions.next(), json: w.data!.json } : { op: 'delete', key: w.key, version: this.ctx.versions.next() },
    );
    const generation = this.ctx.tier.generation?.();
    const outcomes = await commit(this.ctx, versioned);
    const failures: Failure[] = [];
    const unreached: { key: string; version: number }[] = [];
    await Promise.all(
      writes.map(async (write, i) => {
        const { version } = versioned[i]!;
        const outcome = outcomes[i]!;
        if (outcome.status === 'applied') await this.cacheStep(this.ctx, write, version, generation);
        else if (outcome.status === 'superseded' || outcome.status === 'unknown') await this.ctx.protect(write.key, version);
        if (outcome.status !== 'failed') this.onWritten(write.key);
        // Quarantine keeps this process from serving the old copy, but not the other processes
        // that share the tier: until the repair reaches it, the write cannot be called done.
        const reached = outcome.status === 'failed' || !this.ctx.tier.capabilities.shared || !this.ctx.isQuarantined(write.key);
        if (outcome.status === 'failed' || outcome.status === 'unknown') failures.push({ key: write.key, outcome, reached });
        else if (!reached) unreached.push({ key: write.key, version });
      }),
    );
    this.ctx.stats.counters.writes += writes.length;
    recordMs(this.ctx.stats.writeLatency, performance.now() - started);
    if (failures.length > 0) {
      this.ctx.stats.counters.writeErrors += failures.length;
      throw this.failureError(failures, writes.length);
    }
    if (unreached.length > 0) {
      this.ctx.stats.counters.writeErrors += unreached.length;
      throw this.unreachedError(unreached, writes.length);
    }
    return versioned.map((w) => ({ key: w.key, version: w.version }));
  }

  private unreachedError(unreached: { key: string; version: number }[], total: number): CachewiseError {
    const keys = unreached.map((u) => u.key);
    const of = total > 1 ? ` (${unreached.length} of ${total} writes: ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''})` : ` of key "${keys[0]}"`;
    return new CachewiseError(
      'E_TIER_UNAVAILABLE',
      `the database committed the write${of}, but the shared cache tier could neither take the new value nor invalidate the old one; other processes may read the old value until the background repair reaches the tier`,
      'the write is in the database: do not treat it as lost (writing it again is safe, writes are versioned); check the cache tier (Redis). Reads of the key in this process go to the database meanwhile',
      { details: { collection: this.ctx.name, keys, committed: true, versions: unreached.map((u) => u.version) } },
    );
  }

  async flush(): Promise<void> {}

  async persisted(): Promise<void> {}

  async close(): Promise<UnflushedWrite[]> {
    return [];
  }

  private failureError(failures: Failure[], total: number): CachewiseError {
    const unknown = failures.filter((f) => f.outcome.status === 'unknown');
    const unreached = unknown.filter((f) => !f.reached).map((f) => f.key);
    const first = failures[0]!;
    const cause = 'error' in first.outcome ? first.outcome.error : undefined;
    const keys = failures.map((f) => f.key);
    const of = total > 1 ? ` (${failures.length} of ${total} writes: ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', ...' : ''})` : ` of key "${first.key}"`;
    if (unknown.length > 0) {
      const invalidated =
        unreached.length === 0
          ? 'the cached copy was invalidated'
          : `the shared cache tier could not be invalidated either (${unreached.slice(0, 5).join(', ')}${unreached.length > 5 ? ', ...' : ''}), so other processes may read the old value until the background repair reaches it`;
      return new CachewiseError(
        'E_STORE_UNKNOWN_OUTCOME',
        `the database may or may not have committed the write${of} (${describeError(cause)}); ${invalidated}`,
        'read the key back to learn its state, or write it again (writes are versioned, so a repeat is safe)',
        { cause, details: { collection: this.ctx.name, keys, unknown: unknown.map((f) => f.key), ...(unreached.length > 0 ? { unreached } : {}) } },
      );
    }
    return new CachewiseError('E_STORE_FAILED', `the database refused the write${of} (${describeError(cause)}); the cache was not changed`, 'fix the cause (data or database) and write again', {
      cause,
      details: { collection: this.ctx.name, keys },
    });
  }
}
