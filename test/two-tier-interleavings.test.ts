/**
 * Randomised interleavings across instances (contract 3 across instances, contracts 1 and 4).
 * Two instances, each a cache over twoTier (an L1 of its own over one shared L2), share a
 * database; clients of both run short sequences of operations at once. fast-check's scheduler
 * decides the order in which every database call, every L2 call and every delivery of the
 * invalidation bus takes effect and answers. Some runs drop an instance's bus connection and
 * bring it back, refuse database writes or lose their answers, and make L2 calls fail. A
 * history checker then judges what the clients of both instances saw, as one history: once a
 * write resolved in one instance, no read that begins afterwards, in either, returns an older
 * value.
 */
import { after, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createCache, ManualClock, memoryTier, twoTier, type Cache, type Collection, type CollectionPolicy } from '../src/index.js';
import type { Tier } from '../src/tiers/tier.js';
import { VersionClock } from '../src/version-clock.js';
import { FaultyStore, type WriteFault } from './helpers/faulty-store.js';
import { FaultyTier, type TierOperation } from './helpers/faulty-tier.js';
import { assertNoViolations, checkFinal, checkReads, checkVersions, History, StoreLedger, tagOf, TierLedger, written, type Commit, type Violation, type Written } from './helpers/history.js';
import { ScheduledBusHub, type ScheduledBus } from './helpers/scheduled-bus.js';
import { configureReplay, PlannedWriteFaults, runs, seedRows, withDeadline } from './helpers/interleavings.js';
import { ScheduledStore, ScheduledTier, schedulerGate } from './helpers/scheduled.js';
import { tempSqlite } from './helpers/sqlite.js';

type Key = 'a' | 'b';
const KEYS: readonly Key[] = ['a', 'b'];
const INSTANCES = 2;
/** Distinct writer slots (createCache option writerId): equal slots would let both instances issue one version. */
const WRITER_IDS = [1, 2];

type Step =
  | { readonly op: 'set'; readonly key: Key; readonly fault: WriteFault | null }
  | { readonly op: 'setMany'; readonly keys: readonly Key[] }
  | { readonly op: 'delete'; readonly key: Key }
  | { readonly op: 'get'; readonly key: Key }
  | { readonly op: 'getMany'; readonly keys: readonly Key[] }
  | { readonly op: 'invalidate'; readonly key: Key }
  /** The bus connection of an instance drops, or comes back. */
  | { readonly op: 'bus-drop' | 'bus-restore'; readonly instance: number }
  /** Some L2 operations start failing, or all work again. */
  | { readonly op: 'l2-down'; readonly ops: readonly TierOperation[] }
  | { readonly op: 'l2-up' };

interface Plan {
  /** Client i runs on instance i % 2, its steps one after another; all clients at once. */
  readonly clients: readonly (readonly Step[])[];
  /** Entries each L1 holds: 1 makes it evict (the tombstones of invalidations too) all the time. */
  readonly l1Entries: number;
  /** Milliseconds the clocks move at every client step; at 0, writes of both instances share milliseconds. */
  readonly clockStep: number;
}

const database = tempSqlite();
let runCount = 0;
/** What the runs of a test went through, so that each test can assert that its runs met its races. */
const reached = { lostMessages: 0, deliveredMessages: 0, quarantined: 0, l1Hits: 0, unreached: 0, sameMillisecond: 0 };

beforeEach(() => {
  for (const name of Object.keys(reached) as (keyof typeof reached)[]) reached[name] = 0;
});

after(async () => {
  await database.store.close();
  database.cleanup();
});

/** The shared L2 as instances see it: a tier shared between processes (as Redis is). */
function shared(tier: Tier): Tier {
  const capabilities = { ...tier.capabilities, shared: true };
  return new Proxy(tier, {
    get(target, property) {
      if (property === 'capabilities') return capabilities;
      const value = Reflect.get(target, property) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function runScenario(s: fc.Scheduler, plan: Plan, policy: CollectionPolicy): Promise<void> {
  // A collection of its own per run, so that the history holds every write of its keys.
  const COLLECTION = `run${++runCount}`;
  const keyOf = (k: Key) => `${COLLECTION}-${k}`;
  const keys = KEYS.map(keyOf);
  const gate = schedulerGate(s);
  const history = new History();
  // One clock per instance, all showing the same time and moving plan.clockStep ms at every
  // client step: at 0, both instances write the same keys within one millisecond, and their
  // writer slots alone keep their versions apart.
  const clocks = Array.from({ length: INSTANCES }, () => new ManualClock(Date.UTC(2026, 0, 1)));
  const clock = clocks[0]!;

  const ledger = new StoreLedger(database.store, () => history.now());
  const faultyStore = new FaultyStore(ledger);
  const plannedFaults = new PlannedWriteFaults(history, faultyStore);
  const store = new ScheduledStore(faultyStore, gate, { beforeWrite: plannedFaults.beforeWrite });
  const l2Memory = memoryTier({ clock });
  const tierLedger = new TierLedger(l2Memory);
  const faultyL2 = new FaultyTier(tierLedger);
  const l2 = shared(new ScheduledTier(faultyL2, gate));
  const hub = new ScheduledBusHub(gate);

  await seedRows(ledger, history, COLLECTION, [keyOf('a')]);

  const instances: { cache: Cache; items: Collection<Written>; bus: ScheduledBus; l1: Tier }[] = [];
  let quarantined = 0;
  for (let i = 0; i < INSTANCES; i++) {
    const bus = hub.bus(`instance ${i + 1}`);
    const own = clocks[i]!;
    const l1 = memoryTier({ clock: own, maxEntries: plan.l1Entries });
    const cache = await createCache({ tier: twoTier({ l1, l2, bus, clock: own }), store, clock: own, writerId: WRITER_IDS[i] });
    cache.events.on('key-quarantined', () => quarantined++);
    const items = cache.collection<Written>(COLLECTION, policy);
    await items.flush();
    instances.push({ cache, items, bus, l1 });
  }

  const perform = async (step: Step, client: number, seq: number): Promise<void> => {
    const { items } = instances[client % INSTANCES]!;
    switch (step.op) {
      case 'set': {
        const value = written(client + 1, seq * 10);
        if (step.fault !== null) plannedFaults.plan(value, step.fault);
        return history.set(keyOf(step.key), value, () => items.set(keyOf(step.key), value));
      }
      case 'setMany': {
        const entries = step.keys.map((k, i) => [keyOf(k), written(client + 1, seq * 10 + i)] as const);
        return history.setMany(entries, () => items.setMany(entries));
      }
      case 'delete':
        return history.delete(keyOf(step.key), () => items.delete(keyOf(step.key)));
      case 'get':
        return void (await history.read(keyOf(step.key), `get in instance ${(client % INSTANCES) + 1}`, () => items.get(keyOf(step.key))));
      case 'getMany':
        return void (await history.readMany(step.keys.map(keyOf), `getMany in instance ${(client % INSTANCES) + 1}`, () => items.getMany(step.keys.map(keyOf))));
      case 'invalidate':
        return history.invalidate(keyOf(step.key), () => items.invalidate(keyOf(step.key)));
      case 'bus-drop':
        return instances[step.instance]!.bus.drop();
      case 'bus-restore':
        return instances[step.instance]!.bus.restore();
      case 'l2-down':
        faultyL2.failing = new Set(step.ops);
        return;
      case 'l2-up':
        faultyL2.failing.clear();
        return;
    }
  };

  const clients = plan.clients.map(async (steps, c) => {
    for (const [i, step] of steps.entries()) {
      await gate(`client ${c + 1} (instance ${(c % INSTANCES) + 1}) step ${i + 1}`);
      for (const each of clocks) each.advance(plan.clockStep);
      await perform(step, c, i + 1);
    }
  });
  await runUntil(s, Promise.all(clients), clocks, 'the clients');

  // Heal everything and let background repairs run (quarantines wait out the breaker's cooldown).
  faultyL2.failing.clear();
  for (const { bus } of instances) bus.restore();
  for (let i = 0; i < 12; i++) {
    for (const each of clocks) each.advance(1_000);
    await withDeadline(s.waitIdle(), 'background work');
  }
  for (const { items } of instances) await runUntil(s, items.flush(), clocks, 'the flush');

  const rows = new Map(await Promise.all(keys.map(async (key) => [key, await database.store.load(COLLECTION, key)] as const)));
  const cached = new Map(await Promise.all(keys.map(async (key) => [key, await l2Memory.get(`${COLLECTION}:${key}`)] as const)));
  // Once everything settled, a read in every instance returns exactly what the database holds.
  const finalReads: Violation[] = [];
  for (const [i, { items }] of instances.entries()) {
    for (const key of keys) {
      const expected = tagOf(rows.get(key)?.json === undefined ? undefined : JSON.parse(rows.get(key)!.json!));
      const read = history.read(key, `final read in instance ${i + 1}`, () => items.get(key));
      await runUntil(s, read, clocks, 'the final read');
      const value = await read;
      if (tagOf(value) !== expected) finalReads.push({ kind: 'final-state', message: `the final read of ${key} in instance ${i + 1} returned ${tagOf(value)}, the database holds ${expected}` });
    }
  }
  const violations: Violation[] = [
    // Write-back serves accepted writes before the database has them: no dirty-read check.
    ...checkReads(history, ledger, { noDirtyReads: policy.write !== 'back', otherProcessesMayLag: true }),
    ...checkVersions(ledger, tierLedger, faultyL2.applied),
    ...checkFinal(history, ledger, rows, cached),
    ...finalReads,
  ];
  reached.lostMessages += hub.counts.lost;
  reached.deliveredMessages += hub.counts.delivered;
  reached.quarantined += quarantined;
  for (const { items } of instances) reached.l1Hits += items.stats().hits;
  reached.sameMillisecond += sameMillisecondWrites(ledger.commits);
  reached.unreached += history.writes.filter((w) => w.status === 'unknown' && String(w.error).includes('E_TIER_UNAVAILABLE')).length;
  for (const { cache } of instances) await cache.close();
  assertNoViolations(violations, history);
}

/**
 * Lets the scheduler release calls until `work` settles. Whenever nothing is left to release,
 * time moves on by 5 ms (an instance waiting for another's fill polls the L2 on a timer).
 */
async function runUntil(s: fc.Scheduler, work: Promise<unknown>, clocks: readonly ManualClock[], what: string): Promise<void> {
  let settled = false;
  const done = work.finally(() => {
    settled = true;
  });
  const started = Date.now();
  while (!settled) {
    if (Date.now() - started > 10_000) throw new Error(`${what} did not finish within 10 s: something hangs`);
    await s.waitIdle();
    await new Promise((resolve) => setTimeout(resolve, 1)); // real I/O (the SQLite store) moves on
    if (!settled && s.count() === 0) for (const clock of clocks) clock.advance(5);
  }
  await done;
}

// ---- plans ----

const L2_OPERATIONS: readonly TierOperation[] = ['get', 'getMany', 'set', 'invalidate', 'lease', 'fill'];

function stepArb(o: PlanOptions): fc.Arbitrary<Step> {
  const key = fc.constantFrom(...KEYS);
  const keySet = fc.uniqueArray(key, { minLength: 1, maxLength: KEYS.length });
  const fault: fc.Arbitrary<WriteFault | null> = o.storeFaults
    ? fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: fc.constantFrom<WriteFault>('refuse', 'throw', 'applied-then-throw') })
    : fc.constant(null);
  const steps: fc.WeightedArbitrary<Step>[] = [
    { weight: 4, arbitrary: fc.record({ op: fc.constant('set' as const), key, fault }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('setMany' as const), keys: keySet }) },
    { weight: 6, arbitrary: fc.record({ op: fc.constant('get' as const), key }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('getMany' as const), keys: keySet }) },
  ];
  if (o.deletes !== false) steps.push({ weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) });
  if (o.invalidations !== false) steps.push({ weight: 1, arbitrary: fc.record({ op: fc.constant('invalidate' as const), key }) });
  if (o.l2Faults) {
    steps.push(
      { weight: 1, arbitrary: fc.record({ op: fc.constant('l2-down' as const), ops: fc.subarray([...L2_OPERATIONS], { minLength: 1 }) }) },
      { weight: 1, arbitrary: fc.constant({ op: 'l2-up' as const }) },
    );
  }
  return fc.oneof(...steps);
}

/** A client that drops bus connections and brings them back, at moments the scheduler picks. */
const busChaosArb: fc.Arbitrary<Step[]> = fc.array(fc.record({ op: fc.constantFrom('bus-drop' as const, 'bus-restore' as const), instance: fc.nat({ max: INSTANCES - 1 }) }), {
  minLength: 1,
  maxLength: 6,
});

/**
 * What a plan does besides reads, sets and bus drops: refused or lost database writes, failing
 * L2 calls, deletes and invalidations (see the write-back property for why it leaves some out).
 */
interface PlanOptions {
  readonly storeFaults: boolean;
  readonly l2Faults: boolean;
  readonly deletes?: boolean;
  readonly invalidations?: boolean;
}

function planArb(o: PlanOptions): fc.Arbitrary<Plan> {
  const clients = fc.array(fc.array(stepArb(o), { minLength: 1, maxLength: 5 }), { minLength: 2, maxLength: 4 });
  return fc
    .tuple(clients, busChaosArb, fc.constantFrom(1, 1000), fc.constantFrom(0, 2))
    .map(([c, chaos, l1Entries, clockStep]) => ({ clients: [...c, chaos], l1Entries, clockStep }));
}

/** Writes of one key by different writers (slots) in one millisecond: those a version tie would hit. */
function sameMillisecondWrites(commits: readonly Commit[]): number {
  const seen = new Map<string, number>();
  let count = 0;
  for (const c of commits) {
    const at = `${c.key} ${VersionClock.timeOf(c.version)}`;
    const slot = VersionClock.writerOf(c.version);
    const first = seen.get(at);
    if (first === undefined) seen.set(at, slot);
    else if (first !== slot) count++;
  }
  return count;
}

configureReplay();

/** Asserts that the runs met each case in `names`; SHOW_REACHED=1 prints every count. */
function assertReached(...names: (keyof typeof reached)[]): void {
  if (process.env.SHOW_REACHED) console.log(JSON.stringify(reached));
  for (const name of names) assert.ok(reached[name] > 0, `no run reached any case of "${name}": ${JSON.stringify(reached)}`);
}

describe('randomised interleavings across two instances over twoTier (contract 3 across instances)', () => {
  for (const write of ['through', 'around'] as const) {
    test(`write-${write} + read-through, with bus connections that drop and come back: no read in either instance is stale or dirty`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.scheduler(), planArb({ storeFaults: false, l2Faults: false }), (s, plan) => runScenario(s, plan, { write, read: 'through' })),
        runs(150),
      );
      assertReached('lostMessages', 'deliveredMessages', 'l1Hits', 'sameMillisecond');
    });

    test(`write-${write} + read-through with refused writes, unknown outcomes and failing L2 calls: still none stale or dirty`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.scheduler(), planArb({ storeFaults: true, l2Faults: true }), (s, plan) => runScenario(s, plan, { write, read: 'through' })),
        runs(250),
      );
      assertReached('lostMessages', 'deliveredMessages', 'l1Hits', 'quarantined');
    });
  }

  // No L2 faults and no invalidations: an instance that cannot read L2 (or has quarantined the
  // key), or finds it invalidated there, reads the database, which does not have the other
  // instance's unflushed writes yet (see "Write-back across instances" in the README).
  test('write-back + read-through over a shared L2, with refused database writes: a read in either instance sees the newest accepted set or delete', async () => {
    const policy: CollectionPolicy = { write: 'back', read: 'through', flush: { maxDelay: 0, maxBatch: 2 }, retry: { baseDelay: '10ms', maxDelay: '100ms' } };
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.boolean().chain((storeFaults) => planArb({ storeFaults, l2Faults: false, invalidations: false })), (s, plan) => runScenario(s, plan, policy)),
      runs(200),
    );
    assertReached('lostMessages', 'deliveredMessages', 'l1Hits', 'sameMillisecond');
  });
});
