/**
 * Reading a collection: the newest accepted write-back value first, then the tier, then, for
 * read-through, the database under a single-flight load whose fill holds a lease (contracts 2
 * and 6). Expired values may be served while one background load refreshes them
 * (stale-while-revalidate) or when the database fails (stale-if-error), within their bounds.
 * A tier that fails or times out sends reads to the database; nothing here hangs or crashes.
 */
import { decodeValue, type CachedValue } from '../codec.js';
import { CachewiseError, describeError } from '../errors.js';
import { recordMs } from '../stats.js';
import type { StoreRecord } from '../stores/store.js';
import type { Lease, TierEntry } from '../tiers/tier.js';
import { withTimeout } from '../util/timeout.js';
import type { CollectionContext } from './context.js';
import { SingleFlight } from './single-flight.js';
import type { PendingWrite, WriteBackQueue } from './write-back/write-back-queue.js';

/**
 * The version of "no row" in a store that keeps versions (and delete markers): nothing was ever
 * written, so the answer is older than any write. Below every version the clock issues, so a
 * tombstone, left by a write that may still commit, never admits it; any write replaces it. (Version 0,
 * "unknown", would take the tombstone's version instead, and then hide a write of another process
 * that commits later with a lower version of the same millisecond.)
 */
const NEVER_WRITTEN = 1;

/** With negativeTtl 0, how long a lease holder's "absent" stays visible to the processes waiting for it. */
const SHARED_ABSENT_MS = 250;

/** What the cache alone says about a key. */
export type Cached =
  | { readonly state: 'hit'; readonly value: unknown }
  | { readonly state: 'stale'; readonly value: unknown; readonly entry: TierEntry }
  | { readonly state: 'miss'; readonly entry: TierEntry | undefined; readonly tierDown: boolean };

export class ReadPath {
  readonly flights = new SingleFlight<unknown>();

  constructor(
    private readonly ctx: CollectionContext,
    private readonly writeBack: WriteBackQueue | undefined,
  ) {}

  /** Looks in the write-back buffer and the tier only. */
  cached(key: string): Cached | Promise<Cached> {
    return (
      this.cachedInProcess(key) ??
      this.ctx.tierGet(key).then(
        (entry) => this.judgeWithPending(key, entry),
        () => this.miss(undefined, true),
      )
    );
  }

  /** Read-through get: the value itself on a hit, a promise of it otherwise. */
  get(key: string): unknown {
    const cached = this.cachedInProcess(key);
    if (cached !== undefined) return this.settle(key, cached);
    // One callback from the tier's answer to the caller's value: a hit on a remote tier is hot.
    return this.ctx.tierGetThen(
      key,
      (entry) => this.settle(key, this.judgeWithPending(key, entry)),
      () => this.settle(key, this.miss(undefined, true)),
    );
  }

  /**
   * What the cache says without asking a remote tier: the write-back buffer, a quarantined key,
   * an in-process tier (which answers without a promise). Undefined when the tier must be asked.
   */
  private cachedInProcess(key: string): Cached | undefined {
    const pending = this.writeBack?.peek(key);
    // A tier shared with other processes may hold a newer write of theirs: it is asked first.
    if (pending !== undefined && !this.ctx.tier.capabilities.shared) return this.pendingHit(pending);
    if (this.ctx.isQuarantined(key)) return this.miss(undefined, true);
    const tier = this.ctx.tier;
    if (tier.getSync !== undefined) return this.judgeWithPending(key, tier.getSync(this.ctx.tierKey(key)));
    return undefined;
  }

  /**
   * This process's write-back write of `key` when it is newer than `version` (what the tier or
   * the database holds): on a tier or a database shared with other processes, theirs may be newer.
   */
  private pendingOver(key: string, version: number): PendingWrite | undefined {
    const pending = this.writeBack?.peek(key);
    // An equal version is this write (or a marker that adopted its version): the write wins.
    return pending !== undefined && pending.version >= version ? pending : undefined;
  }

  private pendingHit(pending: PendingWrite): { readonly state: 'hit'; readonly value: unknown } {
    this.ctx.stats.counters.hits++;
    return { state: 'hit', value: pending.data?.value };
  }

  /** The tier's answer, unless this process holds a newer write-back write of the key. */
  private judgeWithPending(key: string, entry: TierEntry | undefined): Cached {
    const pending = this.pendingOver(key, entry?.version ?? 0);
    return pending !== undefined ? this.pendingHit(pending) : this.judge(entry);
  }

  private settle(key: string, cached: Cached): unknown {
    switch (cached.state) {
      case 'hit':
        return cached.value;
      case 'stale':
        this.refreshInBackground(key, cached.entry);
        return cached.value;
      case 'miss':
        return this.flights.run(key, () => this.loadOne(key, cached.entry, !cached.tierDown), cached.entry?.version ?? 0);
    }
  }

  /** Read-through getMany: one tier round trip, then one database batch for the misses. */
  async getMany(keys: readonly string[]): Promise<unknown[]> {
    const results: unknown[] = new Array(keys.length);
    const toTier: number[] = [];
    const shared = this.ctx.tier.capabilities.shared;
    keys.forEach((key, i) => {
      const pending = this.writeBack?.peek(key);
      if (pending !== undefined && !shared) results[i] = this.pendingHit(pending).value;
      else toTier.push(i);
    });
    if (toTier.length === 0) return results;
    // Quarantine is judged when the read is sent, as get() does: a key whose quarantine ends
    // while the read is out may have been read before the invalidation that ended it landed.
    const quarantined = toTier.map((i) => this.ctx.isQuarantined(keys[i]!));
    let entries: (TierEntry | undefined)[] | undefined;
    try {
      entries = await this.ctx.tierGetMany(toTier.map((i) => keys[i]!));
    } catch {
      entries = undefined;
    }
    const waits: Promise<void>[] = [];
    const toLoad = new Map<string, { entry: TierEntry | undefined; indexes: number[] }>();
    toTier.forEach((i, n) => {
      const key = keys[i]!;
      const cached = entries === undefined || quarantined[n] || this.ctx.isQuarantined(key) ? this.miss(undefined, true) : this.judgeWithPending(key, entries[n]);
      if (cached.state === 'hit') results[i] = cached.value;
      else if (cached.state === 'stale') {
        results[i] = cached.value;
        this.refreshInBackground(key, cached.entry);
      } else {
        const flight = this.flights.get(key, cached.entry?.version ?? 0);
        if (flight !== undefined) waits.push(flight.then((value) => void (results[i] = value)));
        else {
          const slot = toLoad.get(key) ?? { entry: cached.entry, indexes: [] };
          slot.indexes.push(i);
          toLoad.set(key, slot);
        }
      }
    });
    if (toLoad.size > 0) {
      const batchKeys = [...toLoad.keys()];
      const batch = this.loadBatch(batchKeys, entries !== undefined);
      for (const [n, [key, slot]] of [...toLoad].entries()) {
        const flight = this.flights.run(
          key,
          () => batch.then((loaded) => (loaded.records === undefined ? this.loadFailed(key, slot.entry, loaded.error) : this.accept(key, loaded.records[n], loaded.leases[n]))),
          slot.entry?.version ?? 0,
        );
        waits.push(flight.then((value) => slot.indexes.forEach((i) => (results[i] = value))));
      }
    }
    await Promise.all(waits);
    return results;
  }

  /** Loads one key from the database and fills the tier under a lease. */
  async loadOne(key: string, stale: TierEntry | undefined, fill: boolean): Promise<unknown> {
    const lease = fill ? await this.ctx.tryLease(key) : undefined;
    if (lease !== undefined && !lease.holder && this.ctx.tier.capabilities.shared) {
      // Another process holds the lease and is loading: wait for its fill rather than stampede.
      const filled = await this.awaitFill(key);
      if (filled !== undefined) {
        const pending = this.pendingOver(key, filled.version);
        return pending !== undefined ? pending.data?.value : filled.value;
      }
    }
    const started = performance.now();
    let record: StoreRecord | undefined;
    try {
      record = await withTimeout(this.ctx.store.load(this.ctx.name, key), this.ctx.policy.loadTimeoutMs, `${this.ctx.store.kind} load`);
    } catch (error) {
      return this.loadFailed(key, stale, error);
    }
    this.ctx.stats.counters.loads++;
    recordMs(this.ctx.stats.loadLatency, performance.now() - started);
    return this.accept(key, record, lease);
  }

  /** Serves a value loaded by the application (cache-aside) or the store (undefined: none), filling under `lease`. */
  async fillLoaded(key: string, data: CachedValue | undefined, version: number, lease: Lease | undefined): Promise<boolean> {
    if (this.writeBack?.peek(key) !== undefined) return false;
    if (data !== undefined) return this.ctx.tryFill(key, this.ctx.valueEntry(data, version), lease);
    // "Not in the database" is cached for negativeTtl. Without one, a lease holder on a shared
    // tier still shares the answer briefly with the processes waiting for its fill; otherwise
    // they would wait out the whole leaseWait and load the same missing key again.
    const absentMs = this.ctx.policy.negativeTtlMs > 0 ? this.ctx.policy.negativeTtlMs : lease !== undefined && this.ctx.tier.capabilities.shared ? Math.min(this.ctx.policy.leaseWaitMs, SHARED_ABSENT_MS) : 0;
    return absentMs > 0 ? this.ctx.tryFill(key, this.ctx.absentEntry(version, absentMs), lease) : false;
  }

  /** Handles a failed load: an expired value within stale-if-error, or E_LOAD_FAILED. */
  loadFailed(key: string, stale: TierEntry | undefined, error: unknown): unknown {
    this.ctx.stats.counters.loadErrors++;
    this.ctx.events.emit('load-error', { collection: this.ctx.name, key, error });
    const now = this.ctx.clock.now();
    if (stale?.kind === 'value' && stale.freshUntil + this.ctx.policy.staleIfErrorMs > now) {
      this.ctx.stats.counters.staleHits++;
      this.ctx.events.emit('stale-served', { collection: this.ctx.name, key, ageMs: now - stale.freshUntil, error });
      return stale.value;
    }
    throw new CachewiseError('E_LOAD_FAILED', `loading key "${key}" of collection "${this.ctx.name}" failed (${describeError(error)})`, 'check the database; set staleIfError to serve expired values while it fails', {
      cause: error,
      details: { collection: this.ctx.name, key },
    });
  }

  /** One database round trip for many keys; each key then settles on its own. */
  private async loadBatch(keys: string[], fill: boolean): Promise<{ records?: (StoreRecord | undefined)[]; error?: unknown; leases: (Lease | undefined)[] }> {
    const leases = fill ? await Promise.all(keys.map((key) => this.ctx.tryLease(key))) : keys.map(() => undefined);
    const started = performance.now();
    try {
      const records = await withTimeout(this.ctx.store.loadMany(this.ctx.name, keys), this.ctx.policy.loadTimeoutMs, `${this.ctx.store.kind} loadMany`);
      this.ctx.stats.counters.loads += keys.length;
      recordMs(this.ctx.stats.loadLatency, performance.now() - started);
      return { records, leases };
    } catch (error) {
      return { error, leases };
    }
  }

  private async accept(key: string, record: StoreRecord | undefined, lease: Lease | undefined): Promise<unknown> {
    if (record !== undefined && record.version > 0) this.ctx.versions.observe(record.version);
    // A write-back write accepted while the load ran is newer than the row, unless another
    // process sharing the database wrote a newer one.
    const pending = this.pendingOver(key, record?.version ?? 0);
    if (pending !== undefined) return pending.data?.value;
    let data: CachedValue | undefined;
    if (record?.json !== undefined) {
      try {
        data = { json: record.json, value: decodeValue(record.json) };
      } catch (error) {
        return this.loadFailed(key, undefined, error);
      }
    }
    await this.fillLoaded(key, data, record?.version ?? (this.ctx.store.versioned ? NEVER_WRITTEN : 0), lease);
    return data?.value;
  }

  /** Polls the tier until another holder's fill lands, or until leaseWait passes (undefined). */
  private async awaitFill(key: string): Promise<{ value: unknown; version: number } | undefined> {
    const deadline = this.ctx.clock.now() + this.ctx.policy.leaseWaitMs;
    let delay = 5;
    while (this.ctx.clock.now() < deadline) {
      await new Promise<void>((resolve) => this.ctx.clock.setTimer(resolve, Math.min(delay, Math.max(1, deadline - this.ctx.clock.now()))));
      delay = Math.min(delay * 2, 50);
      let entry: TierEntry | undefined;
      try {
        entry = await this.ctx.tierGet(key);
      } catch {
        return undefined;
      }
      if (entry !== undefined && entry.kind !== 'tombstone' && entry.freshUntil > this.ctx.clock.now()) {
        this.ctx.stats.counters.leaseWaits++;
        return { value: entry.kind === 'value' ? entry.value : undefined, version: entry.version };
      }
    }
    return undefined;
  }

  private refreshInBackground(key: string, entry: TierEntry): void {
    if (this.flights.get(key) !== undefined) return;
    // Failures are reported by loadOne through events; the stale value was already served.
    this.flights.run(key, () => this.loadOne(key, entry, true), entry.version).catch(() => undefined);
  }

  private judge(entry: TierEntry | undefined): Cached {
    if (entry !== undefined && entry.kind !== 'tombstone') {
      const now = this.ctx.clock.now();
      if (entry.freshUntil > now) {
        this.ctx.stats.counters.hits++;
        return { state: 'hit', value: entry.kind === 'value' ? entry.value : undefined };
      }
      if (entry.kind === 'value' && entry.freshUntil + this.ctx.policy.staleWhileRevalidateMs > now) {
        this.ctx.stats.counters.staleHits++;
        return { state: 'stale', value: entry.value, entry };
      }
    }
    return this.miss(entry, false);
  }

  private miss(entry: TierEntry | undefined, tierDown: boolean): Cached {
    this.ctx.stats.counters.misses++;
    return { state: 'miss', entry, tierDown };
  }
}
