/**
 * createCache: wires a tier, a store and a clock, and owns the collections declared on it.
 * One declaration per kind of data; declaring a name again with another policy is refused
 * (the seed's "mixing patterns inconsistently").
 */
import { systemClock, type Clock } from './clock.js';
import { Collection } from './collection.js';
import { toMs, type Duration } from './duration.js';
import { CachewiseError } from './errors.js';
import { CacheEventEmitter } from './events.js';
import { assertCollectionName } from './keys.js';
import { CollectionContext } from './patterns/context.js';
import { DeadLetterList, type DeadLetter } from './patterns/write-back/dead-letters.js';
import type { UnflushedWrite } from './patterns/writer.js';
import { resolvePolicy, samePolicy, SEED_RULES, type CollectionPolicy } from './policy.js';
import { CollectionStats, type CollectionStatsSnapshot } from './stats.js';
import type { Store } from './stores/store.js';
import { breakerOptions, CircuitBreaker, type CircuitBreakerOptions } from './tiers/circuit-breaker.js';
import { memoryTier } from './tiers/memory-tier.js';
import { withTimeout } from './util/timeout.js';
import type { DamagedRange, Journal, JournalStats, RecoveredRecord } from './journal/journal.js';
import { isSharedJournal } from './journal/shared-journal.js';
import type { Tier } from './tiers/tier.js';
import { Once } from './util/once.js';
import { assertWriterId, VersionClock } from './version-clock.js';
import { claimFirstSlot, WriterSlot, type FirstClaim, type WriterSlotSource } from './writer-slot.js';

export interface CacheOptions {
  /** Where cached values live. Default: memoryTier(). */
  tier?: Tier;
  /** The database. Required: cachewise writes to it (sqliteStore, functionStore, ...). */
  store: Store;
  /** Time source; tests pass a ManualClock. Default: the system clock. */
  clock?: Clock;
  /**
   * Circuit breaker in front of a tier that does I/O (Redis): after `threshold` consecutive
   * failures, tier calls fail at once for a cooldown and reads go to the database. `false` turns
   * it off. Default { threshold: 5, cooldownMs: 1000, maxCooldownMs: 10000 }.
   */
  tierBreaker?: CircuitBreakerOptions | false;
  /**
   * Where write-back with durability 'journal' makes writes durable before `set` resolves
   * (fileJournal(dir) embedded). Opened by createCache: what it kept from an earlier run is
   * replayed into the database when each collection is declared. Closed by cache.close().
   */
  journal?: Journal;
  /**
   * This process's writer slot, 0 to 15: the low bits of every version it issues. Processes
   * that write to the same database with different slots never give two writes the same version
   * (see "Versions across processes" in the README). Default: on a shared tier (Redis, or twoTier
   * over it), a slot no other process sharing the tier holds, claimed there under a lease (30 s,
   * renewed every 10 s; see redisTier's writerSlotLease); otherwise, or when all 16 are held or
   * Redis does not answer within 3 s, a random one (cache.writerIdSource tells which).
   */
  writerId?: number;
}

/** What createCache found in the journal. */
export interface JournalRecovery {
  /** Writes found appended and not released, to replay. */
  readonly records: number;
  /** Of those, per collection. */
  readonly collections: Readonly<Record<string, number>>;
  /** Collections with records waiting to be replayed because they are not declared yet. */
  readonly waiting: readonly string[];
  /** The end of a write a crash cut short (never acknowledged), cut off. */
  readonly tornTail?: DamagedRange;
  /** Damaged stretches followed by readable records: lost records (a broken disk, an outside edit). */
  readonly corrupt: readonly DamagedRange[];
}

export interface CloseReport {
  /** Write-back writes that were not in the database when the deadline passed. */
  readonly unflushed: readonly (UnflushedWrite & { readonly collection: string })[];
  /** Of those, acknowledged writes that are lost for good (durability 'none'). */
  readonly lost: number;
}

export interface CacheStats {
  readonly collections: Readonly<Record<string, CollectionStatsSnapshot>>;
  /** The journal's counters, when the cache has one. */
  readonly journal?: JournalStats;
}

export async function createCache(options: CacheOptions): Promise<Cache> {
  if (typeof options !== 'object' || options === null) {
    throw new CachewiseError('E_INVALID_OPTION', 'createCache needs an options object', 'pass { store: sqliteStore(file) } at least');
  }
  const store = options.store;
  if (!isStore(store)) {
    throw new CachewiseError('E_INVALID_OPTION', 'createCache option "store" is missing or is not a store', 'pass store: sqliteStore(file), functionStore({...}) or another Store');
  }
  const tier = options.tier ?? memoryTier({ clock: options.clock });
  if (!isTier(tier)) {
    throw new CachewiseError('E_INVALID_OPTION', 'createCache option "tier" is not a tier', 'pass tier: memoryTier() or another Tier');
  }
  const journal = options.journal;
  if (journal !== undefined && !isJournal(journal)) {
    throw new CachewiseError('E_INVALID_OPTION', 'createCache option "journal" is not a journal', 'pass journal: fileJournal(dir) or another Journal');
  }
  assertWriterId(options.writerId);
  const clock = options.clock ?? systemClock;
  const [evictionPolicy, firstSlot] = await Promise.all([
    tier.capabilities.shared && tier.evictionPolicy ? readEvictionPolicy(tier) : undefined,
    claimFirstSlot(tier, options.writerId),
  ]);
  const cache = new Cache(tier, store, clock, evictionPolicy, journal, { first: firstSlot, writerId: options.writerId });
  if (journal !== undefined) {
    try {
      await cache.openJournal(journal);
    } catch (error) {
      await cache.releaseWriterSlot();
      throw error;
    }
  }
  if (!tier.capabilities.inProcess && options.tierBreaker !== false) {
    cache.breaker = new CircuitBreaker(clock, breakerOptions(options.tierBreaker), (state) => cache.events.emit('tier-circuit', { state }));
  }
  return cache;
}

async function readEvictionPolicy(tier: Tier): Promise<string> {
  try {
    return await withTimeout(tier.evictionPolicy!(), 3_000, 'reading the eviction policy');
  } catch {
    return 'unknown';
  }
}

export class Cache {
  /** Events for every failure the cache absorbed: cache.events.on('dead-letter', ...). */
  readonly events = new CacheEventEmitter();
  private readonly collections = new Map<string, Collection<unknown>>();
  private readonly versions: VersionClock;
  private readonly deadLetterList = new DeadLetterList();
  private closing: Promise<CloseReport> | undefined;
  /** Records recovered from the journal, per collection, until the collection is declared. */
  private readonly recovered = new Map<string, RecoveredRecord[]>();
  private recoveryReport: JournalRecovery | undefined;
  private stopClaims: (() => void) | undefined;
  private readonly slot: WriterSlot;
  /** @internal Set by createCache for tiers that do I/O. */
  breaker: CircuitBreaker | undefined;

  /** @internal Use createCache(). */
  constructor(
    readonly tier: Tier,
    readonly store: Store,
    private readonly clock: Clock,
    private readonly evictionPolicy: string | undefined,
    private readonly journal: Journal | undefined,
    slot: { first: FirstClaim; writerId: number | undefined },
  ) {
    this.versions = new VersionClock(clock);
    this.slot = new WriterSlot(this.versions, this.events, slot.first, slot.writerId);
  }

  /** @internal Gives a claimed writer slot back (createCache failing after the claim). */
  releaseWriterSlot(): Promise<void> {
    return this.slot.stop();
  }

  /** The writer slot in the low bits of this cache's versions (createCache option writerId). */
  get writerId(): number {
    return this.versions.writerId;
  }

  /**
   * Where the writer slot came from: 'option' (writerId), 'claimed' (held in the shared tier,
   * so no other process sharing it has the same), or 'random' (no shared tier, or none free).
   */
  get writerIdSource(): WriterSlotSource {
    return this.slot.source;
  }

  /** @internal Opens the journal and keeps what it recovered for the collections' declarations. */
  async openJournal(journal: Journal): Promise<void> {
    const report = await journal.open();
    const collections: Record<string, number> = {};
    for (const [name, records] of this.byCollection(report.records)) {
      this.recovered.set(name, records);
      collections[name] = records.length;
    }
    this.recoveryReport = { records: report.records.length, collections, waiting: [], tornTail: report.tornTail, corrupt: report.corrupt };
    if (isSharedJournal(journal)) this.claimEvery(journal.claimEveryMs, () => journal.claimAbandoned());
  }

  /**
   * A shared journal: every `ms`, take over the writes of instances that died and replay them
   * like the ones found at start (a declared collection queues them at once).
   */
  private claimEvery(ms: number, claim: () => Promise<RecoveredRecord[]>): void {
    let running = false;
    const tick = async () => {
      if (running || this.closing !== undefined) return;
      running = true;
      try {
        for (const [name, records] of this.byCollection(await claim())) {
          const collection = this.collections.get(name);
          if (collection === undefined) {
            this.recovered.set(name, [...(this.recovered.get(name) ?? []), ...records]);
            this.events.emit('journal-claimed', { collection: undefined, count: records.length });
            continue;
          }
          // Queued (write-back) or written (other patterns) before the event: a flush() after it covers them.
          await collection
            .replayClaimed(records)
            .then(() => this.events.emit('journal-claimed', { collection: name, count: records.length }))
            .catch((error: unknown) => this.events.emit('journal-error', { operation: `replay of claimed writes of "${name}"`, error }));
        }
      } catch (error) {
        this.events.emit('journal-error', { operation: 'claimAbandoned', error });
      } finally {
        running = false;
      }
    };
    const timer = setInterval(() => void tick(), Math.max(50, ms));
    timer.unref();
    this.stopClaims = () => clearInterval(timer);
  }

  /** Journal records per collection, in their order; later versions will exceed theirs. */
  private byCollection(records: readonly RecoveredRecord[]): Map<string, RecoveredRecord[]> {
    const grouped = new Map<string, RecoveredRecord[]>();
    for (const record of records) {
      this.versions.observe(record.version);
      let list = grouped.get(record.collection);
      if (list === undefined) grouped.set(record.collection, (list = []));
      list.push(record);
    }
    return grouped;
  }

  /** What createCache found in the journal (undefined without a journal). */
  recovery(): JournalRecovery | undefined {
    if (this.recoveryReport === undefined) return undefined;
    return { ...this.recoveryReport, waiting: [...this.recovered.keys()] };
  }

  /**
   * Declares a kind of data with its policy and returns its typed handle. Declaring the same
   * name again returns the same handle if the policy is the same, and is refused otherwise.
   */
  collection<T>(name: string, policy: CollectionPolicy): Collection<T> {
    if (this.closing !== undefined) throw new CachewiseError('E_CLOSED', 'the cache is closed', 'create a new cache');
    assertCollectionName(name);
    const resolved = resolvePolicy(name, policy, {
      hasJournal: this.journal !== undefined,
      tierCanInvalidate: this.tier.capabilities.invalidate,
      sharedTierEvictionPolicy: this.evictionPolicy,
      tierWriteWaitMs: this.tier.capabilities.writeWaitMs,
    });
    const existing = this.collections.get(name);
    if (existing !== undefined) {
      if (samePolicy(existing.policy, resolved)) return existing as Collection<T>;
      throw new CachewiseError(
        'E_POLICY_CONFLICT',
        `collection "${name}" is already declared with another policy. The seed: "${SEED_RULES.mixingPatterns}"`,
        'declare each kind of data once, and share its handle',
        { details: { collection: name } },
      );
    }
    const stats = new CollectionStats(name, resolved.write, resolved.read);
    const ctx = new CollectionContext(name, resolved, this.tier, this.store, this.versions, this.clock, this.events, stats, this.breaker);
    const preparation = new Once(async () => {
      await this.store.prepare(name);
      if (this.store.maxVersion) this.versions.observe(await this.store.maxVersion(name));
      const records = this.recovered.get(name) ?? [];
      this.recovered.delete(name);
      await collection.recover(records);
    });
    const collection: Collection<T> = new Collection<T>(ctx, this.deadLetterList, preparation, this.journal);
    // Start early; a failure surfaces (and is retried) on the first operation.
    preparation.wait().catch(() => undefined);
    this.collections.set(name, collection as Collection<unknown>);
    return collection;
  }

  /** Counters and latencies of every collection. */
  stats(): CacheStats {
    const collections: Record<string, CollectionStatsSnapshot> = {};
    for (const [name, collection] of this.collections) collections[name] = collection.stats();
    return this.journal === undefined ? { collections } : { collections, journal: this.journal.stats() };
  }

  /** Write-back writes that went to the dead letters (the newest 10,000), with their reasons. */
  deadLetters(): readonly DeadLetter[] {
    return this.deadLetterList.list();
  }

  /**
   * Stops accepting writes, drains write-back queues until `timeout` (default '10s'), then closes
   * the tier and the store. Reports what could not be flushed. Safe to call more than once.
   */
  close(options: { timeout?: Duration } = {}): Promise<CloseReport> {
    const timeoutMs = options.timeout === undefined ? 10_000 : toMs(options.timeout, 'timeout');
    this.closing ??= this.closeNow(timeoutMs);
    return this.closing;
  }

  private async closeNow(timeoutMs: number): Promise<CloseReport> {
    this.stopClaims?.();
    const drained = await Promise.all(
      [...this.collections.values()].map(async (collection) => {
        const unflushed = await collection.close(timeoutMs);
        const lost = unflushed.filter((w) => !w.journaled).length;
        return { lost, unflushed: unflushed.map((w) => ({ ...w, collection: collection.name })) };
      }),
    );
    // The journal keeps what is unflushed for the next start.
    await Promise.allSettled([this.journal?.close(), this.slot.stop()]);
    await Promise.allSettled([this.tier.close(), this.store.close()]);
    return { unflushed: drained.flatMap((d) => d.unflushed), lost: drained.reduce((sum, d) => sum + d.lost, 0) };
  }
}

function isStore(value: unknown): value is Store {
  const s = value as Store;
  return typeof s === 'object' && s !== null && typeof s.load === 'function' && typeof s.write === 'function' && typeof s.prepare === 'function';
}

function isJournal(value: unknown): value is Journal {
  const j = value as Journal;
  return typeof j === 'object' && j !== null && typeof j.open === 'function' && typeof j.append === 'function' && typeof j.release === 'function' && typeof j.close === 'function';
}

function isTier(value: unknown): value is Tier {
  const t = value as Tier;
  return typeof t === 'object' && t !== null && typeof t.get === 'function' && typeof t.fill === 'function' && typeof t.capabilities === 'object';
}
