/**
 * Deliberately broken parts, to prove that the history checks catch what they claim to catch:
 * a check that never fails on a broken system proves nothing about a correct one.
 */
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../src/stores/store.js';
import type { Lease, Tier, TierEntry } from '../../src/tiers/tier.js';

export interface Carelessness {
  /** fill() ignores leases and versions: it always stores (the memcache stale-set bug). */
  fillAlwaysApplies?: boolean;
  /** set() ignores versions: it always stores, so an older write can replace a newer one. */
  setAlwaysApplies?: boolean;
}

/**
 * A tier that forgets some of its rules. It needs an inner tier with `getSync` (the memory tier)
 * so that a forced store happens within the call, like every other tier call.
 */
export class CarelessTier implements Tier {
  readonly kind: string;
  readonly capabilities;

  constructor(
    readonly inner: Tier,
    private readonly flaws: Carelessness,
  ) {
    if (inner.getSync === undefined) throw new Error('CarelessTier needs an in-process tier');
    this.kind = inner.kind;
    this.capabilities = inner.capabilities;
  }

  get(key: string): Promise<TierEntry | undefined> {
    return this.inner.get(key);
  }
  getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    return this.inner.getMany(keys);
  }
  set(key: string, entry: TierEntry): Promise<boolean> {
    return this.flaws.setAlwaysApplies ? this.force(key, entry) : this.inner.set(key, entry);
  }
  setMany(items: readonly { key: string; entry: TierEntry }[]): Promise<boolean[]> {
    return Promise.all(items.map(({ key, entry }) => this.set(key, entry)));
  }
  invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    return this.inner.invalidate(key, version, ttlMs);
  }
  remove(key: string, version: number): Promise<boolean> {
    return this.inner.remove(key, version);
  }
  lease(key: string, ttlMs: number): Promise<Lease> {
    return this.inner.lease(key, ttlMs);
  }
  fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    return this.flaws.fillAlwaysApplies ? this.force(key, entry) : this.inner.fill(key, entry, lease);
  }
  clear(): Promise<void> {
    return this.inner.clear();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Stores `entry` whatever the tier holds (an unknown version 0 keeps the held one). */
  private force(key: string, entry: TierEntry): Promise<boolean> {
    const current = this.inner.getSync!(key);
    if (current !== undefined) void this.inner.remove(key, current.version);
    const version = entry.version === 0 ? (current?.version ?? 0) : entry.version;
    return this.inner.set(key, { ...entry, version });
  }
}

/**
 * A store that swallows write errors and reports every write as committed (what bentocache does
 * with a failed L2 write): a refused write then looks applied to the cache.
 */
export class ErrorSwallowingStore implements Store {
  readonly kind: string;
  readonly versioned: boolean;

  constructor(readonly inner: Store) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }
  load(collection: string, key: string): Promise<StoreRecord | undefined> {
    return this.inner.load(collection, key);
  }
  loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    return this.inner.loadMany(collection, keys);
  }
  async write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    try {
      return await this.inner.write(collection, writes);
    } catch {
      return writes.map(() => ({ status: 'applied' }));
    }
  }
  maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : Promise.resolve(0);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
