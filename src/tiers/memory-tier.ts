/**
 * The in-process tier, on lru-cache. Private to the process, so every write to it comes from
 * this process: leases are a per-key token that any write revokes, and versions are compared
 * in plain code with no await in between (the check and the write are atomic).
 *
 * Entries may be evicted under memory pressure; that only ever causes a miss. Write-back keeps
 * its dirty entries in its own buffer, out of eviction's reach.
 */
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../clock.js';
import { CachewiseError } from '../errors.js';
import { isNewer, type Lease, type Tier, type TierEntry } from './tier.js';

export interface MemoryTierOptions {
  /** Most entries kept (values, negative entries and tombstones together). Default 10,000. */
  maxEntries?: number;
  /** Time source; tests pass a ManualClock. Default: the system clock. */
  clock?: Clock;
}

const DEFAULT_MAX_ENTRIES = 10_000;
/** Above this many outstanding leases, expired ones are swept before adding another. */
const LEASE_SWEEP_THRESHOLD = 10_000;

export function memoryTier(options: MemoryTierOptions = {}): Tier {
  return new MemoryTier(options);
}

class MemoryTier implements Tier {
  readonly kind = 'memory';
  readonly capabilities = { inProcess: true, shared: false, invalidate: true, evicts: true } as const;

  private readonly clock: Clock;
  private readonly entries: LRUCache<string, TierEntry>;
  private readonly leases = new Map<string, { token: string; expiresAt: number }>();
  private nextToken = 0;

  constructor(options: MemoryTierOptions) {
    const max = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isInteger(max) || max < 1) {
      throw new CachewiseError(
        'E_INVALID_OPTION',
        `memoryTier option "maxEntries" must be a positive integer, got ${String(max)}`,
        'pass a whole number of entries such as 10000',
      );
    }
    this.clock = options.clock ?? systemClock;
    const clock = this.clock;
    this.entries = new LRUCache<string, TierEntry>({ max, ttlResolution: 0, perf: { now: () => clock.now() } });
  }

  async get(key: string): Promise<TierEntry | undefined> {
    return this.read(key);
  }

  getSync(key: string): TierEntry | undefined {
    return this.read(key);
  }

  async getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    return keys.map((key) => this.read(key));
  }

  async set(key: string, entry: TierEntry): Promise<boolean> {
    return this.setNow(key, entry);
  }

  async setMany(items: readonly { key: string; entry: TierEntry }[]): Promise<boolean[]> {
    return items.map(({ key, entry }) => this.setNow(key, entry));
  }

  async invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    this.leases.delete(key);
    const current = this.entries.peek(key, { allowStale: true });
    const at = version ?? current?.version;
    if (at === undefined) return;
    if (current !== undefined && current.version > at) return; // something newer is cached
    const now = this.clock.now();
    this.store(key, { kind: 'tombstone', version: at, freshUntil: now, staleUntil: now + ttlMs });
  }

  async remove(key: string, version: number): Promise<boolean> {
    this.leases.delete(key);
    const current = this.entries.peek(key, { allowStale: true });
    if (current === undefined || current.version !== version) return false;
    this.entries.delete(key);
    return true;
  }

  async lease(key: string, ttlMs: number): Promise<Lease> {
    const now = this.clock.now();
    if (this.leases.size >= LEASE_SWEEP_THRESHOLD) this.sweepLeases(now);
    const existing = this.leases.get(key);
    // Concurrent misses of one key share a lease: a write revokes it for all of them at once.
    if (existing !== undefined && existing.expiresAt > now) return { key, token: existing.token, holder: false };
    const token = String(++this.nextToken);
    this.leases.set(key, { token, expiresAt: now + ttlMs });
    return { key, token, holder: true };
  }

  async fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    const held = this.leases.get(key);
    if (held === undefined || held.token !== lease.token || lease.key !== key || held.expiresAt <= this.clock.now()) {
      return false;
    }
    this.leases.delete(key);
    const current = this.entries.peek(key, { allowStale: true });
    // Under a valid lease nothing was written since the lease; still never step back a version,
    // and never put an unknown version over a fresh value, which was written since the miss.
    if (entry.version === 0) {
      if (current?.kind === 'value' && current.freshUntil > this.clock.now()) return false;
      this.store(key, { ...entry, version: current?.version ?? 0 });
      return true;
    }
    if (current !== undefined && entry.version < current.version) return false;
    this.store(key, entry);
    return true;
  }

  async clear(): Promise<void> {
    this.entries.clear();
    this.leases.clear();
  }

  async close(): Promise<void> {
    await this.clear();
  }

  private setNow(key: string, entry: TierEntry): boolean {
    const current = this.entries.peek(key, { allowStale: true });
    if (!isNewer(entry, current)) return false;
    this.leases.delete(key);
    this.store(key, entry);
    return true;
  }

  /**
   * The entry of `key`. A value entry that still carries its JSON text (the core's entries do:
   * they parse their value when first read, so a write-back entry evicted unread never is) is
   * replaced at its first read by one that holds the value alone, so that a cached value does
   * not keep its text as well.
   */
  private read(key: string): TierEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.kind !== 'value' || entry.json === undefined) return entry;
    const kept: TierEntry = { kind: 'value', version: entry.version, value: entry.value, freshUntil: entry.freshUntil, staleUntil: entry.staleUntil };
    this.store(key, kept);
    return kept;
  }

  private store(key: string, entry: TierEntry): void {
    const ttl = entry.staleUntil - this.clock.now();
    if (ttl <= 0) {
      this.entries.delete(key);
      return;
    }
    // Stored as given (no copy: an object literal with a getter costs about a microsecond to
    // create, more than the rest of a write to this tier); read() drops the text later.
    this.entries.set(key, entry, { ttl: Number.isFinite(ttl) ? Math.ceil(ttl) : 0 });
  }

  private sweepLeases(now: number): void {
    for (const [key, lease] of this.leases) if (lease.expiresAt <= now) this.leases.delete(key);
  }
}
