/**
 * What every pattern of one collection shares: its parts (tier, store, clocks), its policy, and
 * the guarded ways to touch the tier. A tier failure never escapes as a crash: reads fall back to
 * the database, and a key whose cached copy could not be updated or invalidated is quarantined
 * (reads of it bypass the tier) until an invalidation gets through.
 */
import type { Clock } from '../clock.js';
import type { CachedValue } from '../codec.js';
import { CachewiseError } from '../errors.js';
import type { CircuitBreaker } from '../tiers/circuit-breaker.js';
import type { CacheEventEmitter } from '../events.js';
import type { ResolvedPolicy } from '../policy.js';
import type { CollectionStats } from '../stats.js';
import type { Store } from '../stores/store.js';
import type { Lease, Tier, TierEntry } from '../tiers/tier.js';
import { withTimeout } from '../util/timeout.js';
import type { VersionClock } from '../version-clock.js';

/** How often quarantined keys retry their invalidation. */
const REPAIR_INTERVAL_MS = 1_000;
/** Past this many quarantined keys, the whole collection bypasses the tier until it is cleared. */
const MAX_QUARANTINED_KEYS = 10_000;

export class CollectionContext {
  private readonly quarantined = new Map<string, number | undefined>();
  /** Too many keys to track: every read bypasses the tier until the tier is cleared. */
  private quarantinedAll = false;
  private cancelRepair: (() => void) | undefined;
  /** The timer around a tier call; 0 for none (an in-process tier). */
  private readonly tierTimeoutMs: number;
  /** The timer around a read; 0 also when the tier bounds its reads itself within tierTimeout. */
  private readonly readTimeoutMs: number;

  constructor(
    readonly name: string,
    readonly policy: ResolvedPolicy,
    readonly tier: Tier,
    readonly store: Store,
    readonly versions: VersionClock,
    readonly clock: Clock,
    readonly events: CacheEventEmitter,
    readonly stats: CollectionStats,
    private readonly breaker: CircuitBreaker | undefined,
  ) {
    this.tierTimeoutMs = tier.capabilities.inProcess ? 0 : policy.tierTimeoutMs;
    const readBound = tier.capabilities.getTimeoutMs;
    this.readTimeoutMs = readBound !== undefined && readBound <= this.tierTimeoutMs ? 0 : this.tierTimeoutMs;
  }

  /** The tier's key for a collection key. Collection names hold no ':', so this is unambiguous. */
  tierKey(key: string): string {
    return `${this.name}:${key}`;
  }

  isQuarantined(key: string): boolean {
    return this.quarantinedAll || (this.quarantined.size > 0 && this.quarantined.has(key));
  }

  /**
   * Runs a tier call within the tier timeout and through the circuit breaker; failures are
   * counted and reported, then rethrown. An open circuit fails at once.
   *
   * Not async, like the reads below: they are the hot path of a hit, and every async layer
   * costs a promise and a microtask.
   */
  callTier<T>(operation: string, key: string | undefined, call: () => Promise<T>, timeoutMs = this.tierTimeoutMs): Promise<T> {
    return this.guardTier(operation, key, call, timeoutMs, identity, rethrow);
  }

  /** The tier's entry for `key`, within the read timeout (see TierCapabilities.getTimeoutMs). */
  tierGet(key: string): Promise<TierEntry | undefined> {
    return this.tierGetThen(key, identity, rethrow);
  }

  /**
   * tierGet with the caller's next step in the same callback: `onEntry` gets the tier's answer,
   * `onDown` runs when the tier failed, timed out or its circuit is open (the failure already
   * counted and reported). One promise hop fewer than tierGet().then(...), for a hit.
   */
  tierGetThen<R>(key: string, onEntry: (entry: TierEntry | undefined) => R, onDown: (error: unknown) => R): Promise<Awaited<R>> {
    return this.guardTier('get', key, () => this.tier.get(this.tierKey(key)), this.readTimeoutMs, onEntry, onDown);
  }

  private guardTier<T, R>(
    operation: string,
    key: string | undefined,
    call: () => Promise<T>,
    timeoutMs: number,
    onResult: (result: T) => R,
    onFailure: (error: unknown) => R,
  ): Promise<Awaited<R>> {
    if (this.breaker !== undefined && !this.breaker.allow()) {
      this.stats.counters.tierErrors++;
      const open = new CachewiseError('E_TIMEOUT', `the cache tier is unavailable (circuit open) for ${operation}`, 'wait: the tier is probed again after a cooldown; reads are served from the database meanwhile');
      return Promise.reject(open).then(undefined, onFailure) as Promise<Awaited<R>>;
    }
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (error) {
      return Promise.reject(this.tierFailed(operation, key, error)).then(undefined, onFailure) as Promise<Awaited<R>>;
    }
    if (timeoutMs > 0) pending = withTimeout(pending, timeoutMs, `cache tier ${operation}`);
    return pending.then(
      (result) => {
        this.breaker?.success();
        return onResult(result);
      },
      (error: unknown) => onFailure(this.tierFailed(operation, key, error)),
    ) as Promise<Awaited<R>>;
  }

  tierGetMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    return this.callTier('getMany', undefined, () => this.tier.getMany(keys.map((key) => this.tierKey(key))), this.readTimeoutMs);
  }

  private tierFailed(operation: string, key: string | undefined, error: unknown): unknown {
    this.breaker?.failure();
    this.stats.counters.tierErrors++;
    this.events.emit('tier-error', { collection: this.name, key, operation, error });
    return error;
  }

  /**
   * A value entry, fresh for the TTL less a random jitter. It carries the value's JSON text, and
   * its value is parsed only when first read (a write-back entry evicted unread never is).
   */
  valueEntry(data: CachedValue, version: number): TierEntry {
    const now = this.clock.now();
    const freshUntil = now + this.jitteredTtl(this.policy.ttlMs);
    return {
      kind: 'value',
      version,
      json: data.json,
      get value() {
        return data.value;
      },
      freshUntil,
      staleUntil: freshUntil + this.staleWindowMs(),
    };
  }

  /** A negative entry: the database has no row (fresh for `ttlMs`, default the negativeTtl). */
  absentEntry(version: number, ttlMs = this.policy.negativeTtlMs): TierEntry {
    const freshUntil = this.clock.now() + this.jitteredTtl(ttlMs);
    return { kind: 'absent', version, freshUntil, staleUntil: freshUntil };
  }

  /** Writes an entry to the tier; if that fails, protects the key instead. Never throws. */
  cacheWrite(key: string, entry: TierEntry, generation?: unknown): Promise<void> {
    // Not async: every write runs this, and an async frame that awaits is an allocation more.
    // Under `generation` (read before the database write): a tier that lost its memory since
    // refuses the entry and tombstones the key at its version instead (Tier.set).
    return this.callTier('set', key, () => this.tier.set(this.tierKey(key), entry, generation)).then(
      () => this.release(key, entry.version),
      () => this.protect(key, entry.version),
    );
  }

  /**
   * Makes sure no read serves a cached copy older than `version`: a tombstone in the tier, or,
   * if the tier cannot be reached, quarantine of the key in this process. Never throws.
   */
  async protect(key: string, version: number | undefined): Promise<void> {
    try {
      await this.callTier('invalidate', key, () => this.tier.invalidate(this.tierKey(key), version, this.policy.tombstoneTtlMs));
      this.release(key, version);
    } catch (error) {
      this.quarantine(key, version, error);
    }
  }

  /** Takes a fill lease, or undefined when the tier cannot be reached (the load then skips the fill). */
  async tryLease(key: string): Promise<Lease | undefined> {
    try {
      return await this.callTier('lease', key, () => this.tier.lease(this.tierKey(key), this.policy.tombstoneTtlMs));
    } catch {
      return undefined;
    }
  }

  /** Fills under a lease; a rejected or failed fill only costs a later miss. */
  async tryFill(key: string, entry: TierEntry, lease: Lease | undefined): Promise<boolean> {
    if (lease === undefined || this.isQuarantined(key)) return false;
    try {
      const filled = await this.callTier('fill', key, () => this.tier.fill(this.tierKey(key), entry, lease));
      if (!filled) this.stats.counters.fillsRejected++;
      return filled;
    } catch {
      return false;
    }
  }

  /** Stops background repair (on close). */
  stop(): void {
    this.cancelRepair?.();
    this.cancelRepair = undefined;
  }

  /**
   * Ends the quarantine of `key` once the tier holds `version`, if that is at least the version
   * it was quarantined for: an older write's late cache step must not re-expose a copy older
   * than the newer write whose cache step failed.
   */
  private release(key: string, version: number | undefined): void {
    if (this.quarantined.size === 0 || !this.quarantined.has(key)) return;
    const pending = this.quarantined.get(key);
    if (pending === undefined || (version !== undefined && version >= pending)) this.quarantined.delete(key);
  }

  private quarantine(key: string, version: number | undefined, error: unknown): void {
    if (this.quarantinedAll) return;
    if (this.quarantined.size >= MAX_QUARANTINED_KEYS && !this.quarantined.has(key)) {
      this.quarantinedAll = true;
      this.quarantined.clear();
      this.events.emit('key-quarantined', { collection: this.name, key: '*', error });
      this.scheduleRepair();
      return;
    }
    const previous = this.quarantined.get(key);
    this.quarantined.set(key, previous === undefined || (version !== undefined && version > previous) ? version : previous);
    this.events.emit('key-quarantined', { collection: this.name, key, error });
    this.scheduleRepair();
  }

  private scheduleRepair(): void {
    if (this.cancelRepair !== undefined) return;
    this.cancelRepair = this.clock.setTimer(() => {
      this.cancelRepair = undefined;
      void this.repair();
    }, REPAIR_INTERVAL_MS);
  }

  private async repair(): Promise<void> {
    if (this.quarantinedAll) {
      try {
        // The keys were not tracked: drop everything cached, so nothing stale survives.
        await this.callTier('clear', undefined, () => this.tier.clear());
        this.quarantinedAll = false;
      } catch {
        this.scheduleRepair();
      }
      return;
    }
    for (const [key, version] of [...this.quarantined]) {
      try {
        await this.callTier('invalidate', key, () => this.tier.invalidate(this.tierKey(key), version, this.policy.tombstoneTtlMs));
        if (this.quarantined.get(key) === version) this.quarantined.delete(key);
      } catch {
        // still unreachable; try again later
      }
    }
    if (this.quarantined.size > 0) this.scheduleRepair();
  }

  /**
   * The TTL less a random jitter, in whole milliseconds (rounded up, so a positive TTL never
   * becomes 0): entry times stay integers, which a remote tier writes and reads back shorter.
   */
  private jitteredTtl(ttlMs: number): number {
    const jitter = this.policy.ttlJitter;
    return jitter > 0 ? Math.ceil(ttlMs * (1 - jitter * Math.random())) : ttlMs;
  }

  private staleWindowMs(): number {
    return Math.max(this.policy.staleWhileRevalidateMs, this.policy.staleIfErrorMs);
  }
}

function identity<T>(value: T): T {
  return value;
}

function rethrow(error: unknown): never {
  throw error;
}
