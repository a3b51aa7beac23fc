/**
 * Two tiers: an in-process L1 per instance over a shared L2 (Redis), kept in step by an
 * invalidation bus. Every write goes to L2 first (the shared truth of the cache), then to this
 * instance's L1, then to the bus, so every other instance drops its L1 copy of the key.
 *
 * Contract 3 across instances: a write resolves only after the bus's publish resolved, that is
 * after every other live instance acknowledged that it dropped its L1 copy, or after long enough
 * that an instance that did not acknowledge no longer trusts its L1 (see redis-bus.ts for the
 * argument). So once a write-through `set` resolved, a read in any instance finds the new version
 * in its L1, or goes to L2, which got it before the bus did. An L2 read that started before the
 * write and answers after the invalidation cannot put the old copy into L1: the invalidation left
 * a tombstone in L1, and, should L1 have evicted it, the read is known to have been overtaken by
 * an invalidation of its key (counted per key while L2 calls are in flight). This instance's own
 * changes of a key count too: a set once L2 took it, an invalidation or removal both before and
 * after it reached L2 (a read sent in between may have found the old copy).
 *
 * L1 is read only while the bus says it may be trusted (`bus.connected`). Whenever that changes
 * (the bus connection dropped, or trust came back after a gap in which messages may have been
 * lost), L1 is emptied and the epoch moves on: an L2 read begun before does not fill L1. L1
 * entries also live at most `l1MaxTtl`. A failed L2 write never skips the bus: the invalidation
 * is published (and waited for) before the error is reported, and the error lets the core
 * quarantine the key.
 *
 * Leases and fills go to L2, so single-flight holds across instances. The generation is L2's
 * (contract 1 across a Redis restart, see Tier.set): a set refused by L2 under a changed
 * generation is not applied, so L1 is invalidated at its version as for any refused set.
 */
import { systemClock, type Clock } from '../clock.js';
import { toMs, type Duration } from '../duration.js';
import { CachewiseError } from '../errors.js';
import type { Invalidation, InvalidationBus } from './invalidation-bus.js';
import { memoryTier } from './memory-tier.js';
import type { Lease, Tier, TierEntry, WriterSlotClaim } from './tier.js';

export interface TwoTierOptions {
  /** The shared tier (a redisTier). */
  l2: Tier;
  /** The bus that carries invalidations between instances (a redisBus). */
  bus: InvalidationBus;
  /** This instance's in-process tier. Default: memoryTier({ maxEntries: 10000 }). */
  l1?: Tier;
  /** Longest an entry stays in L1, whatever its TTL: the bound on staleness if a message is lost. Default '1m'. */
  l1MaxTtl?: Duration;
  /** Time source. Default: the system clock. */
  clock?: Clock;
}

export function twoTier(options: TwoTierOptions): Tier {
  return new TwoTier(options);
}

class TwoTier implements Tier {
  readonly kind: string;
  readonly capabilities;
  readonly writerSlots?: (slots: number) => WriterSlotClaim;
  private readonly l1: Tier;
  private readonly l2: Tier;
  private readonly bus: InvalidationBus;
  private readonly clock: Clock;
  private readonly l1MaxTtlMs: number;
  /** Changes whenever L1 was emptied (bus state, clear); an L1 write started before is dropped. */
  private epoch = 0;
  /**
   * L2 calls in flight whose answer may go into L1, per key, with the number of invalidations of
   * the key received so far: one received meanwhile keeps that answer out of L1, even if L1 has
   * evicted the tombstone it left.
   */
  private readonly pending = new Map<string, { calls: number; invalidations: number }>();

  constructor(options: TwoTierOptions) {
    if (typeof options !== 'object' || options === null || options.l2 === undefined || options.bus === undefined) {
      throw new CachewiseError('E_INVALID_OPTION', 'twoTier needs { l2, bus }', 'pass l2: redisTier({...}) and bus: redisBus({...})');
    }
    this.clock = options.clock ?? systemClock;
    this.l1 = options.l1 ?? memoryTier({ clock: this.clock });
    if (!this.l1.capabilities.inProcess) {
      throw new CachewiseError('E_INVALID_OPTION', `twoTier option "l1" must be an in-process tier, got a ${this.l1.kind} tier`, 'pass memoryTier() as l1 (or leave it out)');
    }
    this.l2 = options.l2;
    this.bus = options.bus;
    // Instances sharing L2 share its writer slots.
    if (this.l2.writerSlots) this.writerSlots = this.l2.writerSlots.bind(this.l2);
    this.l1MaxTtlMs = toMs(options.l1MaxTtl ?? '1m', 'l1MaxTtl');
    this.kind = `two-tier(${this.l1.kind}+${this.l2.kind})`;
    const writeWaitMs = this.bus.publishWaitMs;
    this.capabilities = {
      inProcess: false,
      shared: this.l2.capabilities.shared,
      invalidate: true,
      evicts: this.l2.capabilities.evicts,
      ...(writeWaitMs === undefined ? {} : { writeWaitMs }),
    } as const;
    this.bus
      .subscribe(
        (message) => this.onInvalidation(message),
        () => this.onBusState(),
      )
      .catch(() => this.onBusState());
    // Until the bus first confirms delivery, L1 is neither read nor filled.
  }

  async get(key: string): Promise<TierEntry | undefined> {
    const local = this.freshInL1(key);
    if (local !== undefined) return local;
    const call = this.begin(key);
    try {
      const entry = await this.l2.get(key);
      if (entry !== undefined) await this.keepInL1(key, entry, call);
      return entry;
    } finally {
      this.end(key);
    }
  }

  async getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    const results = keys.map((key) => this.freshInL1(key));
    const missing = keys.filter((_, i) => results[i] === undefined);
    if (missing.length === 0) return results;
    const calls = missing.map((key) => this.begin(key));
    try {
      const remote = await this.l2.getMany(missing);
      let next = 0;
      for (let i = 0; i < keys.length; i++) {
        if (results[i] !== undefined) continue;
        const entry = remote[next];
        results[i] = entry;
        if (entry !== undefined) await this.keepInL1(keys[i]!, entry, calls[next]!);
        next++;
      }
      return results;
    } finally {
      for (const key of missing) this.end(key);
    }
  }

  generation(): unknown {
    return this.l2.generation?.();
  }

  async set(key: string, entry: TierEntry, generation?: unknown): Promise<boolean> {
    let applied: boolean;
    const call = this.begin(key);
    try {
      applied = await this.l2.set(key, entry, generation);
      if (applied) {
        // L2 reads of the key already out may answer with what L2 held before: they must not
        // fill L1 now, even after L1 evicted this entry. This write still may, unless an
        // invalidation overtook it.
        const overtaken = this.pending.get(key)!.invalidations !== call.invalidations;
        const now = this.overtake(key);
        const kept = !overtaken && (await this.keepInL1(key, entry, { epoch: call.epoch, invalidations: now }));
        // Not kept: L1 must still hold nothing older than this write.
        if (!kept) await this.dropFromL1(key, entry.version);
      }
    } catch (error) {
      await this.dropEverywhere(key, entry.version);
      throw error;
    } finally {
      this.end(key);
    }
    if (!applied) await this.dropFromL1(key, entry.version);
    await this.bus.publish({ key, version: entry.version });
    return applied;
  }

  async setMany(items: readonly { key: string; entry: TierEntry; generation?: unknown }[]): Promise<boolean[]> {
    return Promise.all(items.map(({ key, entry, generation }) => this.set(key, entry, generation)));
  }

  async invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    const l1TtlMs = Math.min(ttlMs, this.l1MaxTtlMs);
    await this.dropFromL1(key, version, l1TtlMs);
    let failure: unknown;
    try {
      await this.l2.invalidate(key, version, ttlMs);
    } catch (error) {
      failure = error;
    }
    // An L2 read of this instance sent while the invalidation was on its way may have found the
    // old copy and put it into L1 (should L1 have evicted the tombstone): drop it again.
    await this.dropFromL1(key, version, l1TtlMs);
    try {
      await this.bus.publish({ key, version });
    } catch (error) {
      failure ??= error;
    }
    if (failure !== undefined) throw failure;
  }

  async remove(key: string, version: number): Promise<boolean> {
    this.overtake(key);
    await this.l1.remove(key, version);
    const removed = await this.l2.remove(key, version);
    // As in invalidate: an L2 read sent meanwhile may have put the entry back into L1.
    this.overtake(key);
    await this.l1.remove(key, version);
    await this.bus.publish({ key, version });
    return removed;
  }

  lease(key: string, ttlMs: number): Promise<Lease> {
    return this.l2.lease(key, ttlMs);
  }

  async fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    const call = this.begin(key);
    try {
      const filled = await this.l2.fill(key, entry, lease);
      // A version-0 fill took L2's version, which this instance does not know: read it from L2 next time.
      if (filled && entry.version !== 0) await this.keepInL1(key, entry, call);
      return filled;
    } finally {
      this.end(key);
    }
  }

  evictionPolicy(): Promise<string> {
    return this.l2.evictionPolicy ? this.l2.evictionPolicy() : Promise.resolve('noeviction');
  }

  async clear(): Promise<void> {
    this.epoch++;
    await this.l1.clear();
    await this.l2.clear();
    await this.bus.publish({ key: null, version: undefined });
  }

  async close(): Promise<void> {
    await this.bus.close();
    await this.l1.close();
    await this.l2.close();
  }

  private freshInL1(key: string): TierEntry | undefined {
    if (!this.bus.connected) return undefined;
    const entry = this.l1.getSync!(key);
    return entry !== undefined && entry.kind !== 'tombstone' && entry.freshUntil > this.clock.now() ? entry : undefined;
  }

  /** Marks an L2 call on `key` whose answer may go into L1; pair with end(key). */
  private begin(key: string): { epoch: number; invalidations: number } {
    let slot = this.pending.get(key);
    if (slot === undefined) this.pending.set(key, (slot = { calls: 0, invalidations: 0 }));
    slot.calls++;
    return { epoch: this.epoch, invalidations: slot.invalidations };
  }

  private end(key: string): void {
    const slot = this.pending.get(key)!;
    if (--slot.calls === 0) this.pending.delete(key);
  }

  /** Counts a change of `key` against the L2 calls on it in flight (their answers stay out of L1); the new count. */
  private overtake(key: string): number {
    const slot = this.pending.get(key);
    return slot === undefined ? 0 : ++slot.invalidations;
  }

  /** Invalidates `key` in L1 at `version`, and keeps the L2 answers in flight for it out of L1. */
  private dropFromL1(key: string, version: number | undefined, ttlMs = this.l1MaxTtlMs): Promise<void> {
    this.overtake(key);
    return this.l1.invalidate(key, version, ttlMs);
  }

  /** Puts an L2 answer into L1 unless L1 was emptied or the key invalidated meanwhile; says whether it tried. */
  private async keepInL1(key: string, entry: TierEntry, call: { epoch: number; invalidations: number }): Promise<boolean> {
    if (!this.bus.connected || call.epoch !== this.epoch || this.pending.get(key)?.invalidations !== call.invalidations) return false;
    const cap = this.clock.now() + this.l1MaxTtlMs;
    await this.l1.set(key, { ...entry, freshUntil: Math.min(entry.freshUntil, cap), staleUntil: Math.min(entry.staleUntil, cap) });
    return true;
  }

  /** After a failed L2 write: no instance may keep serving its L1 copy of the key. */
  private async dropEverywhere(key: string, version: number): Promise<void> {
    await this.dropFromL1(key, version);
    await this.bus.publish({ key, version }).catch(() => undefined);
  }

  /** Applied before the bus acknowledges it to the writer. */
  private async onInvalidation(message: Invalidation): Promise<void> {
    if (message.key === null) {
      this.epoch++;
      await this.l1.clear();
      return;
    }
    await this.dropFromL1(message.key, message.version);
  }

  private onBusState(): void {
    this.epoch++;
    void this.l1.clear();
  }
}
