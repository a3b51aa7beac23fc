/**
 * Targeted fault injection, one case per test (contracts 2, 3, 4, 6, 7): a database that
 * refuses, loses the connection, commits then fails, or hangs; a tier that fails or hangs after
 * the commit or altogether; the stale-fill race of read-through and cache-aside.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache, isCachewiseError, ManualClock, memoryTier, type CollectionPolicy, type ErrorCode, type TierEntry } from '../src/index.js';
import { FaultyStore, type WriteFault } from './helpers/faulty-store.js';
import { FaultyTier, type TierOperation } from './helpers/faulty-tier.js';
import { HeldStore } from './helpers/held-store.js';
import { tempSqlite } from './helpers/sqlite.js';

interface Doc {
  readonly n: number;
}

const ALL_TIER_OPERATIONS: readonly TierOperation[] = ['get', 'getMany', 'set', 'setMany', 'invalidate', 'remove', 'lease', 'fill'];

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
after(() => {
  process.off('unhandledRejection', onUnhandled);
});

async function setup(policy: CollectionPolicy, options: { clock?: ManualClock } = {}) {
  const sqlite = tempSqlite();
  const held = new HeldStore(sqlite.store);
  const store = new FaultyStore(held);
  const memory = memoryTier({ clock: options.clock });
  const tier = new FaultyTier(memory);
  const cache = await createCache({ tier, store, clock: options.clock });
  const items = cache.collection<Doc>('items', { ttl: '1h', ttlJitter: 0, ...policy });
  return {
    cache,
    items,
    store,
    held,
    tier,
    /** The row the database holds, decoded. */
    async row(key: string): Promise<{ version: number; value: Doc | undefined } | undefined> {
      const record = await sqlite.store.load('items', key);
      return record === undefined ? undefined : { version: record.version, value: record.json === undefined ? undefined : (JSON.parse(record.json) as Doc) };
    },
    /** What the tier itself holds for the key (no fault, no timeout). */
    cached(key: string): Promise<TierEntry | undefined> {
      return memory.get(`items:${key}`);
    },
    /** Writes a row behind the cache's back, as another program would. */
    async writeBehind(key: string, value: Doc, version: number): Promise<void> {
      await sqlite.store.write('items', [{ op: 'set', key, version, json: JSON.stringify(value) }]);
    },
    async done(): Promise<void> {
      tier.failing.clear();
      tier.hanging.clear();
      await cache.close({ timeout: '1s' });
      sqlite.cleanup();
    },
  };
}

function code(expected: ErrorCode) {
  return (error: unknown) => {
    assert.ok(isCachewiseError(error, expected), `expected ${expected}, got ${String(error)}`);
    return true;
  };
}

/** Lets work that the library started in the background (repair, late callbacks) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

function valueOf(entry: TierEntry | undefined): unknown {
  return entry?.kind === 'value' ? entry.value : undefined;
}

/** A tier entry without its expiry times. */
function shapeOf(entry: TierEntry | undefined): { kind: string; version: number; value: unknown } | undefined {
  return entry === undefined ? undefined : { kind: entry.kind, version: entry.version, value: valueOf(entry) };
}

describe('write-through under faults (contract 3)', () => {
  test('the database refuses: set rejects with E_STORE_FAILED and the cache keeps serving the old value', async () => {
    const t = await setup({ write: 'through', read: 'through' });
    const first = await t.items.set('k', { n: 1 });
    t.store.writeFaults = ['refuse'];
    await assert.rejects(t.items.set('k', { n: 2 }), code('E_STORE_FAILED'));
    const loads = t.store.calls.load;
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    assert.equal(t.store.calls.load, loads, 'served from the cache, which still holds the old value');
    assert.deepEqual(shapeOf(await t.cached('k')), { kind: 'value', version: first.version, value: { n: 1 } });
    assert.deepEqual((await t.row('k'))?.value, { n: 1 });
    assert.ok(t.tier.applied.every((a) => a.version <= first.version), 'the new value never reached the cache');
    await t.done();
  });

  const unknownOutcomes: [WriteFault, string, Doc][] = [
    ['throw', 'the connection is lost before the commit', { n: 1 }],
    ['applied-then-throw', 'the database commits, then the connection fails', { n: 2 }],
  ];
  for (const [fault, what, inDatabase] of unknownOutcomes) {
    test(`unknown outcome (${what}): set rejects with E_STORE_UNKNOWN_OUTCOME, the key is invalidated, the next read returns what the database holds`, async () => {
      const t = await setup({ write: 'through', read: 'through' });
      await t.items.set('k', { n: 1 });
      t.store.writeFaults = [fault];
      await assert.rejects(t.items.set('k', { n: 2 }), code('E_STORE_UNKNOWN_OUTCOME'));
      assert.equal((await t.cached('k'))?.kind, 'tombstone', 'the cached copy was invalidated');
      const loads = t.store.calls.load;
      assert.deepEqual(await t.items.get('k'), inDatabase);
      assert.equal(t.store.calls.load, loads + 1, 'the read went to the database');
      assert.deepEqual((await t.row('k'))?.value, inDatabase);
      assert.deepEqual(await t.items.get('k'), inDatabase, 'and keeps returning it');
      await t.done();
    });
  }

  test('the database hangs: set rejects within storeTimeout with E_STORE_UNKNOWN_OUTCOME and only what the database holds is served', async () => {
    const t = await setup({ write: 'through', read: 'through', storeTimeout: '100ms' });
    await t.items.set('k', { n: 1 });
    t.store.writeFaults = ['hang'];
    const started = performance.now();
    const write = t.items.set('k', { n: 2 });
    assert.deepEqual(await t.items.get('k'), { n: 1 }, 'while the write hangs, reads see the committed value');
    await assert.rejects(write, code('E_STORE_UNKNOWN_OUTCOME'));
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 90 && elapsed < 1_000, `rejected after ${Math.round(elapsed)} ms, storeTimeout is 100 ms`);
    assert.equal((await t.cached('k'))?.kind, 'tombstone');
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    assert.deepEqual((await t.row('k'))?.value, { n: 1 });
    await t.done();
  });

  test('the tier set fails after the commit: set still resolves, and reads return the new value, never the old', async () => {
    const t = await setup({ write: 'through', read: 'through' });
    await t.items.set('k', { n: 1 });
    t.tier.failing = new Set(['set']);
    const second = await t.items.set('k', { n: 2 });
    assert.deepEqual(shapeOf(await t.cached('k')), { kind: 'tombstone', version: second.version, value: undefined }, 'invalidated instead');
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    t.tier.failing.clear();
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.deepEqual(valueOf(await t.cached('k')), { n: 2 }, 'the next load filled the new value');
    await t.done();
  });

  test('neither set nor invalidate reaches the tier: the key is quarantined, reads bypass the old copy, and repair removes it', async () => {
    const clock = new ManualClock();
    const t = await setup({ write: 'through', read: 'through' }, { clock });
    await t.items.set('k', { n: 1 });
    t.tier.failing = new Set(['set', 'invalidate']);
    const second = await t.items.set('k', { n: 2 });
    assert.deepEqual(valueOf(await t.cached('k')), { n: 1 }, 'the tier still holds the old value');
    assert.deepEqual(await t.items.get('k'), { n: 2 }, 'served from the database, not from the old copy');
    t.tier.failing.clear();
    assert.deepEqual(await t.items.get('k'), { n: 2 }, 'still quarantined until repaired');
    clock.advance(1_000); // REPAIR_INTERVAL_MS
    await settle();
    const repaired = await t.cached('k');
    assert.equal(repaired?.kind, 'tombstone');
    assert.equal(repaired?.version, second.version);
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.deepEqual(valueOf(await t.cached('k')), { n: 2 }, 'once repaired, the key is cached again');
    await t.done();
  });

  test('a getMany sent while the key is quarantined is not trusted when the repair lands before its answer', async () => {
    const clock = new ManualClock();
    const t = await setup({ write: 'through', read: 'through' }, { clock });
    await t.items.set('k', { n: 1 });
    t.tier.failing = new Set(['set', 'invalidate']);
    await t.items.set('k', { n: 2 }); // acknowledged; the tier keeps { n: 1 }: quarantined
    t.tier.failing.clear();
    // The tier reads the old copy at once, but its answer arrives only after the repair.
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const getMany = t.tier.getMany.bind(t.tier);
    t.tier.getMany = async (keys) => {
      const entries = await getMany(keys);
      await answered;
      return entries;
    };
    const reading = t.items.getMany(['k']);
    await settle();
    clock.advance(1_000); // REPAIR_INTERVAL_MS: the repair's invalidation lands and lifts the quarantine
    await settle();
    assert.equal((await t.cached('k'))?.kind, 'tombstone', 'repaired');
    answer();
    assert.deepEqual(await reading, [{ n: 2 }], 'not the old copy read before the repair');
    await t.done();
  });

  test('a quarantined key stays quarantined when an older write reaches the tier late (its cache step must not lift it)', async () => {
    const t = await setup({ write: 'through', read: 'through' });
    await t.items.set('k', { n: 1 });
    // The older write commits, but its acknowledgement is late: its cache step runs last.
    const hold = t.held.holdNext('write');
    const older = t.items.set('k', { n: 2 });
    await hold.reached;
    // The newer write commits while the tier is unreachable: the key is quarantined.
    t.tier.failing = new Set(['set', 'invalidate']);
    await t.items.set('k', { n: 3 });
    t.tier.failing.clear();
    hold.release();
    await older;
    assert.deepEqual((await t.row('k'))?.value, { n: 3 });
    assert.deepEqual(await t.items.get('k'), { n: 3 }, 'a read after the newer write resolved returns it');
    await t.done();
  });

  test('a tier that is down (every call throws): reads come from the database, writes commit, nothing crashes; once back and repaired, reads are fresh', async () => {
    const clock = new ManualClock();
    const t = await setup({ write: 'through', read: 'through' }, { clock });
    await t.items.set('a', { n: 1 });
    await t.items.set('b', { n: 1 });
    assert.deepEqual(await t.items.get('a'), { n: 1 });
    const errors: string[] = [];
    t.cache.events.on('tier-error', ({ operation }) => errors.push(operation));

    t.tier.failing = new Set(ALL_TIER_OPERATIONS);
    await t.items.set('a', { n: 2 });
    await t.items.delete('b');
    await t.items.set('c', { n: 2 });
    assert.deepEqual(await t.items.get('a'), { n: 2 });
    assert.deepEqual(await t.items.getMany(['a', 'b', 'c', 'd']), [{ n: 2 }, undefined, { n: 2 }, undefined]);
    await t.items.invalidate('c');
    assert.deepEqual((await t.row('a'))?.value, { n: 2 }, 'the write committed');
    assert.equal((await t.row('b'))?.value, undefined, 'the delete committed');
    assert.ok(errors.length > 0, 'tier failures were reported as events');
    assert.deepEqual(valueOf(await t.cached('a')), { n: 1 }, 'the tier still holds the old value of a');

    t.tier.failing.clear();
    assert.deepEqual(await t.items.get('a'), { n: 2 }, 'back up, but not yet repaired: the old copy is bypassed');
    clock.advance(1_000);
    await settle();
    assert.notDeepEqual(valueOf(await t.cached('a')), { n: 1 }, 'repair removed the old copy');
    assert.deepEqual(await t.items.getMany(['a', 'b', 'c']), [{ n: 2 }, undefined, { n: 2 }]);
    assert.deepEqual(valueOf(await t.cached('a')), { n: 2 }, 'and the tier is used again');
    await settle();
    assert.deepEqual(unhandled, []);
    await t.done();
  });

  test('a tier that hangs on every call: reads are served from the database within tierTimeout, writes commit; once back, reads are fresh', async () => {
    const clock = new ManualClock();
    const t = await setup({ write: 'through', read: 'through', tierTimeout: '50ms' }, { clock });
    await t.items.set('k', { n: 1 });
    assert.deepEqual(await t.items.get('k'), { n: 1 });

    t.tier.hanging = new Set(ALL_TIER_OPERATIONS);
    let started = performance.now();
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    let elapsed = performance.now() - started;
    assert.ok(elapsed < 50 + 400, `read took ${Math.round(elapsed)} ms with a 50 ms tier timeout`);

    started = performance.now();
    await t.items.set('k', { n: 2 });
    elapsed = performance.now() - started;
    assert.ok(elapsed < 2 * 50 + 400, `write took ${Math.round(elapsed)} ms: one timed-out set, one timed-out invalidate`);
    assert.deepEqual((await t.row('k'))?.value, { n: 2 });

    const tierErrors = t.items.stats().tierErrors;
    assert.deepEqual(await t.items.get('k'), { n: 2 }, 'the quarantined key is read from the database');
    assert.equal(t.items.stats().tierErrors, tierErrors, 'without waiting for the tier again');

    t.tier.hanging.clear();
    clock.advance(1_000);
    await settle();
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.deepEqual(valueOf(await t.cached('k')), { n: 2 });
    await settle();
    assert.deepEqual(unhandled, []);
    await t.done();
  });
});

describe('write-around under faults (contract 4)', () => {
  test('after set resolves no read returns the old value, even with a load of the old value in flight', async () => {
    const t = await setup({ write: 'around', read: 'through' });
    await t.writeBehind('k', { n: 1 }, 1);
    const hold = t.held.holdNext('load');
    const early = t.items.get('k');
    await hold.reached;
    await t.items.set('k', { n: 2 });
    assert.deepEqual(await t.items.get('k'), { n: 2 }, 'a read after the write does not join the older load');
    hold.release();
    assert.deepEqual(await early, { n: 1 }, 'the read that began before the write may return the old value');
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.notDeepEqual(valueOf(await t.cached('k')), { n: 1 });
    await t.done();
  });

  test('set does not populate the cache: the next read misses and loads', async () => {
    const t = await setup({ write: 'around', read: 'through' });
    await t.items.set('k', { n: 1 });
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    const { version } = await t.items.set('k', { n: 2 });
    assert.deepEqual(shapeOf(await t.cached('k')), { kind: 'tombstone', version, value: undefined });
    const loads = t.store.calls.load;
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.equal(t.store.calls.load, loads + 1, 'one load');
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.equal(t.store.calls.load, loads + 1, 'then a hit');
    assert.ok(t.tier.applied.every((a) => a.op === 'fill'), 'only loads put values in the cache');
    await t.done();
  });

  test('a refused write leaves the database, the cache and reads unchanged', async () => {
    const t = await setup({ write: 'around', read: 'through' });
    await t.items.set('k', { n: 1 });
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    const before = await t.cached('k');
    t.store.writeFaults = ['refuse'];
    await assert.rejects(t.items.set('k', { n: 2 }), code('E_STORE_FAILED'));
    assert.deepEqual(await t.cached('k'), before);
    assert.deepEqual((await t.row('k'))?.value, { n: 1 });
    const loads = t.store.calls.load;
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    assert.equal(t.store.calls.load, loads, 'still a hit');
    await t.done();
  });
});

describe('read-through under faults (contract 6)', () => {
  test('a load that fails with no stale value rejects with E_LOAD_FAILED carrying the cause', async () => {
    const t = await setup({ write: 'through', read: 'through' });
    await t.writeBehind('k', { n: 1 }, 1);
    t.store.loadFaults = ['throw'];
    await assert.rejects(t.items.get('k'), (error) => {
      assert.ok(isCachewiseError(error, 'E_LOAD_FAILED'));
      assert.equal((error.cause as Error).message, 'injected: load failed');
      return true;
    });
    assert.equal(await t.cached('k'), undefined, 'nothing cached');
    assert.deepEqual(await t.items.get('k'), { n: 1 }, 'the failure is not remembered');
    await t.done();
  });

  test('a hung load rejects within loadTimeout', async () => {
    const t = await setup({ write: 'through', read: 'through', loadTimeout: '100ms' });
    await t.writeBehind('k', { n: 1 }, 1);
    t.store.loadFaults = ['hang'];
    const started = performance.now();
    const reads = Array.from({ length: 10 }, () => t.items.get('k'));
    for (const read of reads) {
      await assert.rejects(read, (error) => {
        assert.ok(isCachewiseError(error, 'E_LOAD_FAILED'));
        assert.ok(isCachewiseError(error.cause, 'E_TIMEOUT'), `cause: ${String(error.cause)}`);
        return true;
      });
    }
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 90 && elapsed < 1_000, `rejected after ${Math.round(elapsed)} ms, loadTimeout is 100 ms`);
    assert.equal(t.store.calls.load, 1, 'the concurrent reads shared one load');
    assert.deepEqual(await t.items.get('k'), { n: 1 });
    await t.done();
  });

  for (const write of ['through', 'around'] as const) {
    test(`write-${write}: a slow load that read the old row before a write cannot fill it after the write (the memcache lease)`, async () => {
      const t = await setup({ write, read: 'through' });
      await t.writeBehind('k', { n: 1 }, 1);
      const hold = t.held.holdNext('load');
      const early = t.items.get('k');
      await hold.reached; // the load has read { n: 1 }
      const { version } = await t.items.set('k', { n: 2 });
      hold.release();
      assert.deepEqual(await early, { n: 1 });
      await settle();
      const entry = await t.cached('k');
      assert.ok(entry !== undefined && entry.version >= version, `the tier holds v${entry?.version}, the write was v${version}`);
      assert.notDeepEqual(valueOf(entry), { n: 1 }, 'the old value was not filled');
      assert.deepEqual(await t.items.get('k'), { n: 2 });
      assert.deepEqual(valueOf(await t.cached('k')), { n: 2 }, 'the cache holds the new value');
      assert.ok(t.tier.applied.every((a) => a.version >= version), 'no fill of the old version was applied');
      await t.done();
    });
  }

  test('the same race through getMany: a batch load of the old row cannot fill it after a write', async () => {
    const t = await setup({ write: 'through', read: 'through' });
    await t.writeBehind('k', { n: 1 }, 1);
    await t.writeBehind('j', { n: 1 }, 1);
    const hold = t.held.holdNext('load');
    const early = t.items.getMany(['k', 'j']);
    await hold.reached;
    await t.items.set('k', { n: 2 });
    hold.release();
    assert.deepEqual(await early, [{ n: 1 }, { n: 1 }]);
    assert.deepEqual(valueOf(await t.cached('k')), { n: 2 });
    assert.deepEqual(valueOf(await t.cached('j')), { n: 1 }, 'the other key of the batch was filled');
    assert.deepEqual(await t.items.getMany(['k', 'j']), [{ n: 2 }, { n: 1 }]);
    await t.done();
  });

  test('invalidate(): a slow load that read the old row before the invalidation cannot fill it', async () => {
    const t = await setup({ write: 'through', read: 'through' });
    await t.writeBehind('k', { n: 1 }, 1);
    const hold = t.held.holdNext('load');
    const early = t.items.get('k');
    await hold.reached;
    // Another program changes the row; the application invalidates the key.
    await t.writeBehind('k', { n: 2 }, 2);
    await t.items.invalidate('k');
    hold.release();
    assert.deepEqual(await early, { n: 1 });
    await settle();
    assert.notDeepEqual(valueOf(await t.cached('k')), { n: 1 }, 'the old value was not filled');
    assert.deepEqual(await t.items.get('k'), { n: 2 });
    assert.deepEqual(valueOf(await t.cached('k')), { n: 2 });
    assert.ok(!t.tier.applied.some((a) => a.version === 1), 'no fill of the old version was applied');
    await t.done();
  });
});

describe('cache-aside under faults (contract 7)', () => {
  for (const write of ['through', 'around'] as const) {
    test(`write-${write}: a fill under a lease taken before a set of the key returns false and caches nothing`, async () => {
      const t = await setup({ write, read: 'aside' });
      const miss = await t.items.lookup('k');
      assert.equal(miss.hit, false);
      if (miss.hit) return;
      await t.items.set('k', { n: 2 });
      assert.equal(await t.items.fill('k', { n: 1 }, miss.lease), false);
      assert.notDeepEqual(valueOf(await t.cached('k')), { n: 1 });
      const after = await t.items.lookup('k');
      if (write === 'through') assert.deepEqual(after, { hit: true, value: { n: 2 } });
      else assert.equal(after.hit, false, 'write-around leaves the key uncached');
      assert.ok(!t.tier.applied.some((a) => a.op === 'fill'));
      await t.done();
    });
  }

  test('a fill under a lease taken before invalidate() returns false and caches nothing', async () => {
    const t = await setup({ write: 'through', read: 'aside' });
    const miss = await t.items.lookup('k');
    if (miss.hit) assert.fail('expected a miss');
    await t.items.invalidate('k');
    assert.equal(await t.items.fill('k', { n: 1 }, miss.lease), false);
    assert.equal(valueOf(await t.cached('k')), undefined);
    assert.equal((await t.items.lookup('k')).hit, false);
    await t.done();
  });

  test("a fill with another key's lease, another collection's lease, a spent lease or a forged one is refused with E_INVALID_LEASE", async () => {
    const t = await setup({ write: 'through', read: 'aside' });
    const others = t.cache.collection<Doc>('others', { write: 'through', read: 'aside' });
    const mine = await t.items.lookup('k');
    const otherKey = await t.items.lookup('j');
    const otherCollection = await others.lookup('k');
    if (mine.hit || otherKey.hit || otherCollection.hit) assert.fail('expected misses');
    await assert.rejects(t.items.fill('k', { n: 1 }, otherKey.lease), code('E_INVALID_LEASE'));
    await assert.rejects(t.items.fill('k', { n: 1 }, otherCollection.lease), code('E_INVALID_LEASE'));
    await assert.rejects(t.items.fill('k', { n: 1 }, { collection: 'items', key: 'k' }), code('E_INVALID_LEASE'));
    await assert.rejects(t.items.fill('k', { n: 1 }, { ...mine.lease }), code('E_INVALID_LEASE'));
    await assert.rejects(t.items.fill('k', { n: 1 }, null as never), code('E_INVALID_LEASE'));
    assert.equal(await t.cached('k'), undefined, 'nothing cached by the refused fills');
    assert.equal(await t.items.fill('k', { n: 1 }, mine.lease), true, 'the real lease still works');
    await assert.rejects(t.items.fill('k', { n: 1 }, mine.lease), code('E_INVALID_LEASE'), 'but only once');
    await t.done();
  });

  test('getOrLoad runs the loader once for 100 concurrent callers', async () => {
    const t = await setup({ write: 'through', read: 'aside' });
    let calls = 0;
    const loader = async () => {
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      return { n: 7 };
    };
    const values = await Promise.all(Array.from({ length: 100 }, () => t.items.getOrLoad('k', loader)));
    assert.equal(calls, 1);
    assert.ok(values.every((v) => v?.n === 7));
    assert.deepEqual(await t.items.lookup('k'), { hit: true, value: { n: 7 } });
    await t.done();
  });
});
