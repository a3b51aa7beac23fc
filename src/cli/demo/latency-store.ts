/**
 * A store wrapper that makes every database call take `latencyMs`, like a database across a
 * network: half the latency on the way there and half on the way back. A load therefore reads
 * the database mid-flight and a write commits mid-flight, so writes and loads of the same key
 * really overlap (the races that leases and versions exist for), instead of queueing politely.
 * It also times the database's own part of each call (without the injected latency), so the
 * demo can say what the real database cost per call.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../index.js';
import type { Samples } from './samples.js';

export class LatencyStore implements Store {
  readonly kind: string;
  readonly versioned: boolean;
  private readonly thereMs: number;
  private readonly backMs: number;

  constructor(
    private readonly inner: Store,
    latencyMs: number,
    /** Receives the duration of each call to the inner store (loads and writes), in ms. */
    private readonly ownTime?: Samples,
  ) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
    this.thereMs = latencyMs / 2;
    this.backMs = latencyMs - this.thereMs;
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }

  load(collection: string, key: string): Promise<StoreRecord | undefined> {
    return this.roundTrip(() => this.inner.load(collection, key));
  }

  loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    return this.roundTrip(() => this.inner.loadMany(collection, keys));
  }

  write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    return this.roundTrip(() => this.inner.write(collection, writes));
  }

  async maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : 0;
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async roundTrip<T>(call: () => Promise<T>): Promise<T> {
    if (this.thereMs > 0) await sleep(this.thereMs);
    try {
      return this.ownTime ? await this.ownTime.time(call) : await call();
    } finally {
      if (this.backMs > 0) await sleep(this.backMs);
    }
  }
}
