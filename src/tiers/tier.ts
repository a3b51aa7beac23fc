/**
 * The cache tier: where cached values live (process memory, Redis, two tiers).
 *
 * A tier keeps versions. Every write to a tier is conditional, so that no caller can replace a
 * newer version with an older one (contract 1), and loads fill the tier only under a lease that
 * any write to the key revokes (contract 2, the memcache lease).
 *
 * Keys reaching a tier are already namespaced by collection (`collection:key`).
 */

/** What a tier holds for a key. */
export type TierEntry =
  /**
   * A cached value: frozen JSON data. `json`, when present, is that value's JSON text (the core
   * sets it): a tier that stores text may store it instead of serializing `value` again.
   */
  | { kind: 'value'; version: number; value: unknown; json?: string; freshUntil: number; staleUntil: number }
  /** The database has no row for the key (negative caching). */
  | { kind: 'absent'; version: number; freshUntil: number; staleUntil: number }
  /**
   * The key was invalidated at `version`: reads miss, and nothing older than `version` may be
   * cached again while the tombstone lives (until `staleUntil`).
   */
  | { kind: 'tombstone'; version: number; freshUntil: number; staleUntil: number };

/** A permission to fill a missed key; revoked by any write or invalidation of that key. */
export interface Lease {
  readonly key: string;
  readonly token: string;
  /**
   * True when this call created the lease; false when another miss (in this process or, on a
   * shared tier, in another) already holds it and is loading: the caller may wait for that fill
   * instead of loading too (single-flight across processes).
   */
  readonly holder: boolean;
}

export interface TierCapabilities {
  /** Answers in-process without I/O (memory); the core then skips per-call timeouts on the hot path. */
  readonly inProcess: boolean;
  /** Other processes see this tier (Redis); a memory tier is private to the process. */
  readonly shared: boolean;
  /** The tier can invalidate a key (all built-in tiers can; contract 8 requires it for write-through). */
  readonly invalidate: boolean;
  /** Entries may be evicted under memory pressure (write-back keeps dirty entries elsewhere). */
  readonly evicts: boolean;
  /**
   * Optional: `get` and `getMany` settle on their own within this many milliseconds (the Redis
   * tier on a client with a command timeout). When it is at most a collection's tierTimeout, the
   * core sets no timer of its own around reads, which saves a timer per hit. Leave it undefined
   * unless the bound always holds.
   */
  readonly getTimeoutMs?: number;
  /**
   * Optional: a write may take this long by design (twoTier waits for the other instances'
   * acknowledgements). A collection whose tierTimeout is not above it is refused: its writes would
   * time out while working as intended.
   */
  readonly writeWaitMs?: number;
}

export interface Tier {
  /** Short name for stats and errors: 'memory', 'redis', ... */
  readonly kind: string;
  readonly capabilities: TierCapabilities;

  /** The entry for `key`, expired or not (the caller judges freshness), or undefined. */
  get(key: string): Promise<TierEntry | undefined>;
  getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]>;
  /** In-process tiers only: `get` without a promise, for the hot path of a hit. */
  getSync?(key: string): TierEntry | undefined;

  /**
   * Stores `entry` unless the tier holds something at least as new: a value or absent marker
   * with version >= entry.version, or a tombstone with version > entry.version.
   * Revokes leases on the key when it applies. Resolves to whether it applied.
   *
   * `generation`: what `generation()` returned before the write that produced `entry` began (before
   * its database commit). If the tier lost its memory since (a Redis restarted empty, flushed or
   * cleared), an older version may be all that is left to compare with, so the entry is not
   * stored: the key is invalidated at `entry.version` instead (revoking leases, so no older load
   * fills it) and set resolves to false. Ignored by tiers without `generation()`.
   */
  set(key: string, entry: TierEntry, generation?: unknown): Promise<boolean>;
  setMany(items: readonly { key: string; entry: TierEntry; generation?: unknown }[]): Promise<boolean[]>;

  /**
   * Optional: the tier's current generation, an opaque token that changes whenever the tier may
   * have lost what it held (contract 1 across a Redis restart). A write reads it before it
   * commits to the database and passes it to `set`. Undefined: the tier cannot tell (no check).
   * A tier that wraps another forwards both this and set's `generation` (twoTier does), or the
   * check is off.
   */
  generation?(): unknown;

  /**
   * Replaces whatever is cached with a tombstone at `version` (or at the cached entry's version
   * when omitted), unless the cached entry is newer; revokes leases. The tombstone lives `ttlMs`.
   */
  invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void>;

  /** Removes the entry only if its version is exactly `version` (no tombstone); revokes leases. */
  remove(key: string, version: number): Promise<boolean>;

  /** Takes a lease for filling `key` after a miss. */
  lease(key: string, ttlMs: number): Promise<Lease>;

  /**
   * Stores `entry` only if `lease` is still valid (nothing wrote or invalidated the key since the
   * lease was taken) and the entry is not older than what the tier holds. Consumes the lease.
   * Version 0 means "unknown" (a store without versions, a cache-aside fill, a key the database
   * has no row for): the entry then takes the version of whatever the tier holds, so any later
   * write replaces it; but it never replaces a fresh value, which was written after the miss
   * that led to the fill (the lease is taken after the miss) and may be newer than the load.
   */
  fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean>;

  /**
   * Shared tiers that may evict: the server's eviction policy ('noeviction', 'allkeys-lru', ...,
   * or 'unknown'), read once when the cache is created (contract 8's eviction check).
   */
  evictionPolicy?(): Promise<string>;

  /**
   * Shared tiers: a claim on one of `slots` writer slots (the low bits of versions), unique among
   * the processes sharing the tier while they hold it. createCache claims one when no `writerId`
   * is given, renews it every third of its lease and releases it on close.
   */
  writerSlots?(slots: number): WriterSlotClaim;

  /** Drops everything this tier holds for this cache. */
  clear(): Promise<void>;
  close(): Promise<void>;
}

/** A writer slot held in a shared tier (Tier.writerSlots). */
export interface WriterSlotClaim {
  /** How long a claim or renewal holds the slot (ms). */
  readonly leaseMs: number;
  /** Takes a free slot; resolves to it, or to undefined when every slot is held. */
  claim(): Promise<number | undefined>;
  /** Extends the lease; when another process took the slot meanwhile, claims a free one. Resolves to the slot held after it. */
  renew(): Promise<number | undefined>;
  /** Gives the slot back, if one is held. */
  release(): Promise<void>;
}

/** Whether `next` may replace `current` under the version rules above. */
export function isNewer(next: TierEntry, current: TierEntry | undefined): boolean {
  if (current === undefined) return true;
  return current.kind === 'tombstone' ? next.version >= current.version : next.version > current.version;
}
