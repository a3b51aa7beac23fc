/**
 * Cache-aside (contract 7): the application loads and fills, but a fill is accepted only under
 * the lease its miss handed out, and any write or invalidation of the key since the miss revokes
 * that lease. Application code gets "no stale fill" (contract 2) without thinking about it.
 */
import { normalizeValue } from '../codec.js';
import { CachewiseError } from '../errors.js';
import type { Lease } from '../tiers/tier.js';
import { withTimeout } from '../util/timeout.js';
import type { CollectionContext } from './context.js';
import type { ReadPath } from './read-path.js';

/** Handed out by a miss; pass it to fill(). Opaque. */
export interface FillLease {
  readonly collection: string;
  readonly key: string;
}

export type LookupResult<T> = { readonly hit: true; readonly value: T | undefined } | { readonly hit: false; readonly lease: FillLease };

export class CacheAside {
  private readonly issued = new WeakMap<FillLease, Lease | undefined>();

  constructor(
    private readonly ctx: CollectionContext,
    private readonly reads: ReadPath,
  ) {}

  async lookup(key: string): Promise<LookupResult<unknown>> {
    const cached = await this.reads.cached(key);
    if (cached.state !== 'miss') return { hit: true, value: cached.value };
    const tierLease = cached.tierDown ? undefined : await this.ctx.tryLease(key);
    const lease: FillLease = Object.freeze({ collection: this.ctx.name, key });
    this.issued.set(lease, tierLease);
    return { hit: false, lease };
  }

  async fill(key: string, value: unknown, lease: FillLease): Promise<boolean> {
    if (typeof lease !== 'object' || lease === null || !this.issued.has(lease) || lease.key !== key || lease.collection !== this.ctx.name) {
      throw new CachewiseError(
        'E_INVALID_LEASE',
        `fill of key "${key}" in collection "${this.ctx.name}" was given a lease that this collection did not issue for that key`,
        'pass the lease returned by lookup(key) for the same key',
      );
    }
    const normalized = value === undefined ? undefined : normalizeValue(value, this.ctx.policy.maxValueBytes);
    const tierLease = this.issued.get(lease);
    this.issued.delete(lease);
    return this.reads.fillLoaded(key, normalized, 0, tierLease);
  }

  /** lookup, then on a miss one `loader` call per key at a time, then a lease-protected fill. */
  async getOrLoad(key: string, loader: (key: string) => Promise<unknown> | unknown): Promise<unknown> {
    if (typeof loader !== 'function') {
      throw new CachewiseError('E_INVALID_OPTION', 'getOrLoad needs a loader function', 'pass (key) => value or a promise of it');
    }
    const cached = await this.reads.cached(key);
    if (cached.state !== 'miss') return cached.value;
    return this.reads.flights.run(key, async () => {
      const tierLease = cached.tierDown ? undefined : await this.ctx.tryLease(key);
      let loaded: unknown;
      try {
        loaded = await withTimeout(Promise.resolve().then(() => loader(key)), this.ctx.policy.loadTimeoutMs, 'loader');
      } catch (error) {
        return this.reads.loadFailed(key, cached.entry, error);
      }
      this.ctx.stats.counters.loads++;
      const normalized = loaded === undefined ? undefined : normalizeValue(loaded, this.ctx.policy.maxValueBytes);
      await this.reads.fillLoaded(key, normalized, 0, tierLease);
      return normalized?.value;
    });
  }
}
