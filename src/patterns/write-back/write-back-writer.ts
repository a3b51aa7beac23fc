/**
 * Write-back (contract 5): a write is accepted into the write-back queue (and so is readable at
 * once), then cached; the queue flushes it to the database later.
 */
import { recordMs } from '../../stats.js';
import type { CollectionContext } from '../context.js';
import type { UnflushedWrite, WriteResult, Writer } from '../writer.js';
import type { IncomingWrite, WriteBackQueue } from './write-back-queue.js';

export class WriteBackWriter implements Writer {
  constructor(
    private readonly ctx: CollectionContext,
    private readonly queue: WriteBackQueue,
    private readonly onWritten: (key: string) => void,
  ) {}

  async write(writes: readonly IncomingWrite[]): Promise<WriteResult[]> {
    const started = performance.now();
    const accepted = await this.queue.accept(writes);
    await Promise.all(
      accepted.map(async (w) => {
        this.onWritten(w.key);
        if (w.op === 'set') await this.ctx.cacheWrite(w.key, this.ctx.valueEntry(w.value, w.version));
        else await this.ctx.protect(w.key, w.version);
      }),
    );
    this.ctx.stats.counters.writes += writes.length;
    recordMs(this.ctx.stats.writeLatency, performance.now() - started);
    return accepted.map((w) => ({ key: w.key, version: w.version }));
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
