/**
 * Write-back (contract 5): a write is accepted into the write-back queue (and so is readable at
 * once), then cached; the queue flushes it to the database later.
 */
import { recordMs } from '../../stats.js';
import type { CollectionContext } from '../context.js';
import type { UnflushedWrite, WriteResult, Writer } from '../writer.js';
import type { IncomingWrite, PendingWrite, WriteBackQueue } from './write-back-queue.js';

export class WriteBackWriter implements Writer {
  constructor(
    private readonly ctx: CollectionContext,
    private readonly queue: WriteBackQueue,
    private readonly onWritten: (key: string) => void,
  ) {}

  write(writes: readonly IncomingWrite[]): Promise<WriteResult[]> {
    // Not async: promise callbacks cost less than an async frame suspended twice, on every write.
    const started = performance.now();
    // Read before the versions are given: a tier that lost its memory since refuses the entries.
    const generation = this.ctx.tier.generation?.();
    return this.queue.accept(writes).then((accepted) => {
      // One write (set, delete) is the common case: no array of promises for it.
      const cached = accepted.length === 1 ? this.cache(accepted[0]!, generation) : Promise.all(accepted.map((w) => this.cache(w, generation)));
      return cached.then(() => {
        this.ctx.stats.counters.writes += writes.length;
        recordMs(this.ctx.stats.writeLatency, performance.now() - started);
        return accepted.map((w) => ({ key: w.key, version: w.version }));
      });
    });
  }

  /**
   * Puts an accepted write in the cache; never throws. A delete leaves "absent" at its version
   * for the TTL, not a tombstone: other processes sharing the tier read the key as gone, where a
   * tombstone would send them to the database, which keeps the old row until the flush.
   */
  private cache(w: PendingWrite, generation: unknown): Promise<void> {
    this.onWritten(w.key);
    const entry = w.op === 'set' ? this.ctx.valueEntry(w.data!, w.version) : this.ctx.absentEntry(w.version, this.ctx.policy.ttlMs);
    return this.ctx.cacheWrite(w.key, entry, generation);
  }

  flush(timeoutMs: number): Promise<void> {
    return this.queue.flush(timeoutMs);
  }

  persisted(key: string, version: number, timeoutMs: number): Promise<void> {
    return this.queue.persisted(key, version, timeoutMs);
  }

  async close(deadlineMs: number): Promise<UnflushedWrite[]> {
    const unflushed = await this.queue.close(deadlineMs);
    return unflushed.map((w) => ({ key: w.key, version: w.version, op: w.op, journaled: w.position !== undefined }));
  }
}
