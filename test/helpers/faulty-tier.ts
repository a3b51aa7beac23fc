/**
 * Wraps a real tier and makes chosen operations throw or hang, to prove that a tier failure never
 * crashes, hangs or leaves a stale copy behind. It reports itself as doing I/O, so the core
 * applies its tier timeout.
 */
import type { Lease, Tier, TierEntry } from '../../src/tiers/tier.js';

export type TierOperation = 'get' | 'getMany' | 'set' | 'setMany' | 'invalidate' | 'remove' | 'lease' | 'fill';

export class FaultyTier implements Tier {
  readonly kind: string;
  readonly capabilities;
  /** Operations that throw while listed. */
  failing = new Set<TierOperation>();
  /** Operations that never answer while listed. */
  hanging = new Set<TierOperation>();
  /** Every applied set/fill/invalidate, for version-regression checks. */
  readonly applied: { op: string; key: string; version: number }[] = [];

  constructor(readonly inner: Tier) {
    this.kind = inner.kind;
    this.capabilities = { ...inner.capabilities, inProcess: false };
  }

  get(key: string): Promise<TierEntry | undefined> {
    return this.guard('get', () => this.inner.get(key));
  }
  getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    return this.guard('getMany', () => this.inner.getMany(keys));
  }
  set(key: string, entry: TierEntry): Promise<boolean> {
    return this.guard('set', async () => {
      const done = await this.inner.set(key, entry);
      if (done) this.applied.push({ op: 'set', key, version: entry.version });
      return done;
    });
  }
  setMany(items: readonly { key: string; entry: TierEntry }[]): Promise<boolean[]> {
    return this.guard('setMany', () => this.inner.setMany(items));
  }
  invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    return this.guard('invalidate', () => this.inner.invalidate(key, version, ttlMs));
  }
  remove(key: string, version: number): Promise<boolean> {
    return this.guard('remove', () => this.inner.remove(key, version));
  }
  lease(key: string, ttlMs: number): Promise<Lease> {
    return this.guard('lease', () => this.inner.lease(key, ttlMs));
  }
  fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    return this.guard('fill', async () => {
      const done = await this.inner.fill(key, entry, lease);
      if (done) this.applied.push({ op: 'fill', key, version: entry.version });
      return done;
    });
  }
  clear(): Promise<void> {
    return this.inner.clear();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  private async guard<T>(operation: TierOperation, call: () => Promise<T>): Promise<T> {
    if (this.hanging.has(operation)) return new Promise<never>(() => undefined);
    if (this.failing.has(operation)) throw new Error(`injected: tier ${operation} failed`);
    return call();
  }
}
