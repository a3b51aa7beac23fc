/**
 * Wraps a real store and injects faults around it: a thrown error (nothing committed), a hang,
 * a commit followed by an error (the unknown outcome), per-entry permanent failures, and delay.
 * The wrapped store still does the real work whenever a fault lets the call through.
 */
import { notApplied, type Store, type StoreRecord, type StoreWrite, type WriteOutcome } from '../../src/stores/store.js';

export type WriteFault =
  /** Throws before the store sees the batch; marked "not applied". */
  | 'refuse'
  /** Throws before the store sees the batch; not marked (outcome unknown to the caller). */
  | 'throw'
  /** Commits the batch, then throws an unmarked error (the timeout-after-send case). */
  | 'applied-then-throw'
  /** Never answers. */
  | 'hang';

export type LoadFault = 'throw' | 'hang';

export class FaultyStore implements Store {
  readonly kind: string;
  readonly versioned: boolean;
  /** Faults for the next write() calls, in order. */
  writeFaults: WriteFault[] = [];
  /** Faults for the next load()/loadMany() calls, in order. */
  loadFaults: LoadFault[] = [];
  /** Every write call fails while true (an outage). */
  down = false;
  /** Keys whose writes fail permanently, entry by entry. */
  poisoned = new Set<string>();
  /** Milliseconds added before each call answers. */
  delayMs = 0;
  /** While set, a write call waits for what it returns for the call's number (1, 2, ...) before going on; faults apply after it. */
  writeHold: ((call: number) => Promise<void> | undefined) | undefined;
  /** Calls seen, for assertions. */
  readonly calls = { load: 0, loadMany: 0, write: 0, writtenEntries: 0, batchSizes: [] as number[] };
  /** Every write batch handed to the inner store, in order. */
  readonly batches: StoreWrite[][] = [];

  constructor(readonly inner: Store) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }

  async load(collection: string, key: string): Promise<StoreRecord | undefined> {
    this.calls.load++;
    await this.delay();
    await this.loadFault();
    return this.inner.load(collection, key);
  }

  async loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    this.calls.loadMany++;
    await this.delay();
    await this.loadFault();
    return this.inner.loadMany(collection, keys);
  }

  async write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    this.calls.write++;
    this.calls.batchSizes.push(writes.length);
    const hold = this.writeHold?.(this.calls.write);
    if (hold !== undefined) await hold;
    await this.delay();
    if (this.down) throw notApplied(new Error('injected: database unavailable'));
    const fault = this.writeFaults.shift();
    if (fault === 'refuse') throw notApplied(new Error('injected: write refused'));
    if (fault === 'throw') throw new Error('injected: connection lost');
    if (fault === 'hang') return new Promise<never>(() => undefined);
    const healthy = writes.filter((w) => !this.poisoned.has(w.key));
    this.batches.push([...healthy]);
    this.calls.writtenEntries += healthy.length;
    const outcomes = healthy.length > 0 ? await this.inner.write(collection, healthy) : [];
    if (fault === 'applied-then-throw') throw new Error('injected: timeout after the commit');
    let next = 0;
    return writes.map((w) =>
      this.poisoned.has(w.key) ? { status: 'failed', error: new Error(`injected: key ${w.key} violates a constraint`), permanent: true } : outcomes[next++]!,
    );
  }

  maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : Promise.resolve(0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async loadFault(): Promise<void> {
    const fault = this.loadFaults.shift();
    if (fault === 'throw') throw new Error('injected: load failed');
    if (fault === 'hang') await new Promise<never>(() => undefined);
  }

  private async delay(): Promise<void> {
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
  }
}
