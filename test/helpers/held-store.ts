/**
 * Passes every call through to a real store, and can hold the answer of a chosen call after the
 * store did the work: a load that read the row and is slow to come back, or a write that
 * committed and whose acknowledgement is late. The race tests use it to put another operation
 * exactly in that window.
 */
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../src/stores/store.js';

export interface Hold {
  /** Resolves once the held call did its work in the store and is waiting to answer. */
  readonly reached: Promise<void>;
  /** Lets the held call answer. */
  release(): void;
}

type HeldCall = 'load' | 'write';

interface PendingHold {
  readonly arrive: () => void;
  readonly released: Promise<void>;
}

export class HeldStore implements Store {
  readonly kind: string;
  readonly versioned: boolean;
  private readonly holds: Record<HeldCall, PendingHold[]> = { load: [], write: [] };

  constructor(readonly inner: Store) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
  }

  /** Holds the answer of the next load (or loadMany), or of the next write. */
  holdNext(call: HeldCall): Hold {
    let arrive!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => (arrive = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.holds[call].push({ arrive, released });
    return { reached, release };
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }

  load(collection: string, key: string): Promise<StoreRecord | undefined> {
    return this.held('load', this.inner.load(collection, key));
  }

  loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    return this.held('load', this.inner.loadMany(collection, keys));
  }

  write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    return this.held('write', this.inner.write(collection, writes));
  }

  maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : Promise.resolve(0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async held<T>(call: HeldCall, work: Promise<T>): Promise<T> {
    const hold = this.holds[call].shift();
    const result = await work;
    if (hold !== undefined) {
      hold.arrive();
      await hold.released;
    }
    return result;
  }
}
