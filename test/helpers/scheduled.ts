/**
 * Puts a store or a tier under the control of a scheduler (fast-check's `fc.scheduler()`): every
 * call waits at a gate before it takes effect and at another before it answers, so the scheduler
 * decides in which order concurrent calls reach the database or the cache, and in which order
 * their callers resume. Each interleaving it picks is one a real network could produce.
 */
import type { Scheduler } from 'fast-check';
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../src/stores/store.js';
import type { Lease, Tier, TierEntry } from '../../src/tiers/tier.js';
import type { TierOperation } from './faulty-tier.js';

/** Resolves when the scheduler lets the labelled step through. */
export type Gate = (label: string) => Promise<void>;

/** A gate that fast-check's scheduler opens, one task at a time, in an order of its choosing. */
export function schedulerGate(s: Scheduler): Gate {
  return (label) => s.schedule(Promise.resolve(), label);
}

/** Runs `call` between two gates: one before its effect, one before its answer. */
async function gated<T>(gate: Gate, label: string, call: () => Promise<T>): Promise<T> {
  await gate(label);
  let result: T;
  try {
    result = await call();
  } catch (error) {
    await gate(`${label} -> error`);
    throw error;
  }
  await gate(`${label} -> reply`);
  return result;
}

export interface ScheduledStoreOptions {
  /** Called just before a write batch reaches the inner store (to plan faults for it). */
  beforeWrite?(collection: string, writes: readonly StoreWrite[]): void;
}

/**
 * A store whose loads and writes the scheduler orders. Writes reach the inner store one at a
 * time, in the order the scheduler lets them through (like a database committing serially), so
 * `beforeWrite` sees each batch right before the inner store does. `prepare` and `maxVersion`
 * are not gated; `close` leaves the inner store open, so that many caches can share it.
 */
export class ScheduledStore implements Store {
  readonly kind: string;
  readonly versioned: boolean;
  private writing: Promise<unknown> = Promise.resolve();

  constructor(
    readonly inner: Store,
    private readonly gate: Gate,
    private readonly options: ScheduledStoreOptions = {},
  ) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }

  load(collection: string, key: string): Promise<StoreRecord | undefined> {
    return gated(this.gate, `store.load ${key}`, () => this.inner.load(collection, key));
  }

  loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    return gated(this.gate, `store.loadMany ${keys.join(',')}`, () => this.inner.loadMany(collection, keys));
  }

  write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    const label = `store.write ${writes.map((w) => `${w.op} ${w.key}@${w.version}`).join(',')}`;
    return gated(this.gate, label, () => {
      const done = this.writing.then(() => {
        this.options.beforeWrite?.(collection, writes);
        return this.inner.write(collection, writes);
      });
      this.writing = done.catch(() => undefined);
      return done;
    });
  }

  maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : Promise.resolve(0);
  }

  async close(): Promise<void> {}
}

export interface ScheduledTierOptions {
  /**
   * Called just before a call reaches the inner tier (to make that one call fail); may return a
   * function that is called right after the inner tier received it.
   */
  beforeCall?(operation: TierOperation, key: string): (() => void) | undefined;
}

/**
 * A tier whose every call the scheduler orders. It reports itself as doing I/O (no `getSync`,
 * `inProcess: false`), as a remote tier would.
 */
export class ScheduledTier implements Tier {
  readonly kind: string;
  readonly capabilities;

  constructor(
    readonly inner: Tier,
    private readonly gate: Gate,
    private readonly options: ScheduledTierOptions = {},
  ) {
    this.kind = inner.kind;
    this.capabilities = { ...inner.capabilities, inProcess: false };
  }

  get(key: string): Promise<TierEntry | undefined> {
    return this.call('get', key, `tier.get ${key}`, () => this.inner.get(key));
  }
  getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    return this.call('getMany', keys.join(','), `tier.getMany ${keys.join(',')}`, () => this.inner.getMany(keys));
  }
  set(key: string, entry: TierEntry): Promise<boolean> {
    return this.call('set', key, `tier.set ${key}@${entry.version}`, () => this.inner.set(key, entry));
  }
  setMany(items: readonly { key: string; entry: TierEntry }[]): Promise<boolean[]> {
    const keys = items.map((i) => i.key).join(',');
    return this.call('setMany', keys, `tier.setMany ${keys}`, () => this.inner.setMany(items));
  }
  invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    return this.call('invalidate', key, `tier.invalidate ${key}@${String(version)}`, () => this.inner.invalidate(key, version, ttlMs));
  }
  remove(key: string, version: number): Promise<boolean> {
    return this.call('remove', key, `tier.remove ${key}@${version}`, () => this.inner.remove(key, version));
  }
  lease(key: string, ttlMs: number): Promise<Lease> {
    return this.call('lease', key, `tier.lease ${key}`, () => this.inner.lease(key, ttlMs));
  }
  fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    return this.call('fill', key, `tier.fill ${key}@${entry.version}`, () => this.inner.fill(key, entry, lease));
  }
  clear(): Promise<void> {
    return this.inner.clear();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  private call<T>(operation: TierOperation, key: string, label: string, call: () => Promise<T>): Promise<T> {
    return gated(this.gate, label, () => {
      const after = this.options.beforeCall?.(operation, key);
      try {
        return call();
      } finally {
        after?.();
      }
    });
  }
}
