/**
 * The Store conformance suite: what every store (SQLite, PostgreSQL, function store, yours) must
 * do. Contract 1 above all: an older version never replaces a newer one, for sets and deletes,
 * within a batch or across batches, in any order.
 *
 * Usage: `storeConformance('my store', async () => ({ store, cleanup }))`. `makeStore` is called
 * once per test and must return an empty store; `cleanup` closes it and removes what it created.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../src/stores/store.js';

export interface StoreFixture {
  store: Store;
  cleanup(): Promise<void>;
}

const COLLECTION = 'items';
const OTHER_COLLECTION = 'others';
const APPLIED: WriteOutcome = { status: 'applied' };

export function storeConformance(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`Store conformance: ${name}`, async () => {
    const probe = await makeStore();
    const versioned = probe.store.versioned;
    const hasMaxVersion = typeof probe.store.maxVersion === 'function';
    await probe.cleanup();

    /** A test that needs version guards: skipped, and named so, on an unversioned store. */
    function versionedTest(title: string, fn: (store: Store) => Promise<void>): void {
      if (versioned) test(title, () => withStore(fn));
      else test(`${title} (skipped: unversioned store, no version guard)`, { skip: 'the store keeps no versions' }, () => {});
    }

    async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
      const { store, cleanup } = await makeStore();
      try {
        await store.prepare(COLLECTION);
        await fn(store);
      } finally {
        await cleanup();
      }
    }

    /** The version a store reports for a write of `version`. */
    const reported = (version: number): number => (versioned ? version : 0);

    test('prepare is idempotent and keeps existing rows', () =>
      withStore(async (store) => {
        await store.prepare(COLLECTION);
        assert.deepEqual(await store.write(COLLECTION, [set('a', 1, '"kept"')]), [APPLIED]);
        await store.prepare(COLLECTION);
        await store.prepare(COLLECTION);
        assert.deepEqual(await store.load(COLLECTION, 'a'), record(reported(1), '"kept"'));
      }));

    test('load of a missing key resolves to undefined', () =>
      withStore(async (store) => {
        assert.equal(await store.load(COLLECTION, 'missing'), undefined);
      }));

    test(`set then load returns the JSON and ${versioned ? 'the version' : 'version 0 (unversioned store)'}`, () =>
      withStore(async (store) => {
        const big = Number.MAX_SAFE_INTEGER;
        assert.deepEqual(await store.write(COLLECTION, [set('a', 7, '{"name":"Ada","tags":[1,2]}'), set('b', big, 'null')]), [APPLIED, APPLIED]);
        assert.deepEqual(await store.load(COLLECTION, 'a'), record(reported(7), '{"name":"Ada","tags":[1,2]}'));
        assert.deepEqual(await store.load(COLLECTION, 'b'), record(reported(big), 'null'));
      }));

    test('a newer set replaces the value', () =>
      withStore(async (store) => {
        await store.write(COLLECTION, [set('a', 1, '"one"')]);
        assert.deepEqual(await store.write(COLLECTION, [set('a', 2, '"two"')]), [APPLIED]);
        assert.deepEqual(await store.load(COLLECTION, 'a'), record(reported(2), '"two"'));
      }));

    test('delete removes the value', () =>
      withStore(async (store) => {
        await store.write(COLLECTION, [set('a', 1, '"one"')]);
        assert.deepEqual(await store.write(COLLECTION, [del('a', 2)]), [APPLIED]);
        const row = await store.load(COLLECTION, 'a');
        assert.equal(row?.json, undefined);
      }));

    test('collections are isolated', () =>
      withStore(async (store) => {
        await store.prepare(OTHER_COLLECTION);
        await store.write(COLLECTION, [set('a', 1, '"items"')]);
        await store.write(OTHER_COLLECTION, [set('a', 2, '"others"')]);
        assert.deepEqual(await store.load(COLLECTION, 'a'), record(reported(1), '"items"'));
        assert.deepEqual(await store.load(OTHER_COLLECTION, 'a'), record(reported(2), '"others"'));
        assert.equal(await store.load(OTHER_COLLECTION, 'only-in-items'), undefined);
      }));

    test('loadMany aligns with keys, including missing and repeated keys', () =>
      withStore(async (store) => {
        await store.write(COLLECTION, [set('a', 1, '"A"'), set('c', 3, '"C"')]);
        assert.deepEqual(await store.loadMany(COLLECTION, []), []);
        assert.deepEqual(await store.loadMany(COLLECTION, ['x', 'c', 'b', 'a', 'c']), [
          undefined,
          record(reported(3), '"C"'),
          undefined,
          record(reported(1), '"A"'),
          record(reported(3), '"C"'),
        ]);
      }));

    test('a batch of 1,000 writes applies and loads back in one loadMany', () =>
      withStore(async (store) => {
        const writes = Array.from({ length: 1000 }, (_, i): StoreWrite => (i % 10 === 9 ? del(`k${i}`, i + 1) : set(`k${i}`, i + 1, `{"n":${i}}`)));
        const outcomes = await store.write(COLLECTION, writes);
        assert.equal(outcomes.length, 1000);
        assert.ok(outcomes.every((o) => o.status === 'applied'), 'every write of the batch is applied');
        // 1,200 keys, a missing one after every fifth: the result stays aligned.
        const keys = Array.from({ length: 1200 }, (_, i) => (i % 6 === 5 ? `missing${i}` : `k${i - Math.floor(i / 6)}`));
        const rows = await store.loadMany(COLLECTION, keys);
        assert.equal(rows.length, keys.length);
        keys.forEach((key, i) => {
          if (key.startsWith('missing')) return assert.equal(rows[i], undefined, key);
          const n = Number(key.slice(1));
          if (n % 10 === 9) return assert.equal(rows[i]?.json, undefined, key);
          assert.deepEqual(rows[i], record(reported(n + 1), `{"n":${n}}`), key);
        });
      }));

    test('values with unicode and __proto__ keys round-trip without polluting prototypes', () =>
      withStore(async (store) => {
        const json =
          '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},' +
          '"text":"Grüße, 漢字, שלום, 😀👍🏽","nul":"a\\u0000b","lone":"\\ud800","quote":"\'\\";--"}';
        const key = `ключ 🔑 键 '"; DROP TABLE ${COLLECTION}; --`;
        assert.deepEqual(await store.write(COLLECTION, [set(key, 1, json)]), [APPLIED]);
        const [single, [many]] = [await store.load(COLLECTION, key), await store.loadMany(COLLECTION, [key])];
        for (const row of [single, many]) {
          assert.ok(row?.json !== undefined, 'the row is found by its unicode key');
          const value = JSON.parse(row.json) as Record<string, unknown>;
          assert.deepStrictEqual(value, JSON.parse(json));
          assert.ok(Object.hasOwn(value, '__proto__'), '__proto__ stays an own property');
          assert.equal(Object.getPrototypeOf(value), Object.prototype);
        }
        assert.equal((({}) as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');
      }));

    test('writes to keys never written report applied', () =>
      withStore(async (store) => {
        assert.deepEqual(await store.write(COLLECTION, [set('a', 5, '1'), del('b', 6)]), [APPLIED, APPLIED]);
      }));

    versionedTest('an older set never replaces a newer one across batches; it is superseded with the current version', async (store) => {
      await store.write(COLLECTION, [set('a', 5, '"five"')]);
      assert.deepEqual(await store.write(COLLECTION, [set('a', 3, '"three"')]), [{ status: 'superseded', current: 5 }]);
      assert.deepEqual(await store.load(COLLECTION, 'a'), record(5, '"five"'));
    });

    versionedTest('a replayed write of the same version is superseded, not applied twice', async (store) => {
      await store.write(COLLECTION, [set('a', 5, '"five"'), del('b', 4)]);
      assert.deepEqual(await store.write(COLLECTION, [set('a', 5, '"other"'), del('b', 4)]), [
        { status: 'superseded', current: 5 },
        { status: 'superseded', current: 4 },
      ]);
      assert.deepEqual(await store.load(COLLECTION, 'a'), record(5, '"five"'));
    });

    versionedTest('a delete leaves a versioned marker that blocks older sets', async (store) => {
      await store.write(COLLECTION, [set('a', 1, '"one"'), del('never-set', 3)]);
      await store.write(COLLECTION, [del('a', 3)]);
      assert.deepEqual(await store.load(COLLECTION, 'a'), record(3, undefined));
      assert.deepEqual(await store.load(COLLECTION, 'never-set'), record(3, undefined));
      assert.deepEqual(await store.write(COLLECTION, [set('a', 2, '"two"'), set('never-set', 1, '"old"')]), [
        { status: 'superseded', current: 3 },
        { status: 'superseded', current: 3 },
      ]);
      assert.deepEqual(await store.loadMany(COLLECTION, ['a', 'never-set']), [record(3, undefined), record(3, undefined)]);
      assert.deepEqual(await store.write(COLLECTION, [set('a', 4, '"four"')]), [APPLIED], 'a newer set revives the key');
      assert.deepEqual(await store.load(COLLECTION, 'a'), record(4, '"four"'));
    });

    versionedTest('an older delete never removes a newer value', async (store) => {
      await store.write(COLLECTION, [set('a', 5, '"five"')]);
      assert.deepEqual(await store.write(COLLECTION, [del('a', 4)]), [{ status: 'superseded', current: 5 }]);
      assert.deepEqual(await store.load(COLLECTION, 'a'), record(5, '"five"'));
    });

    versionedTest('one batch reports applied and superseded per entry', async (store) => {
      await store.write(COLLECTION, [set('a', 10, '"a10"'), set('b', 10, '"b10"'), del('c', 10)]);
      const outcomes = await store.write(COLLECTION, [set('a', 11, '"a11"'), set('b', 9, '"b9"'), set('c', 9, '"c9"'), del('d', 1), del('a2', 1)]);
      assert.deepEqual(outcomes, [APPLIED, { status: 'superseded', current: 10 }, { status: 'superseded', current: 10 }, APPLIED, APPLIED]);
      assert.deepEqual(await store.loadMany(COLLECTION, ['a', 'b', 'c', 'd']), [record(11, '"a11"'), record(10, '"b10"'), record(10, undefined), record(1, undefined)]);
    });

    versionedTest('random versioned sets and deletes, in random order and batches, leave the max-version write (property)', async (store) => {
      let run = 0;
      const writeArb = fc.record({
        key: fc.integer({ min: 0, max: 3 }),
        version: fc.integer({ min: 1, max: 40 }),
        op: fc.constantFrom('set' as const, 'delete' as const),
        payload: fc.oneof(fc.integer(), fc.string({ maxLength: 8 })),
        newBatch: fc.boolean(),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(writeArb, { minLength: 1, maxLength: 24 }), async (generated) => {
          run += 1;
          // Versions are unique per key (the version clock guarantees it): drop repeats.
          const seen = new Set<string>();
          const writes = generated.filter((w) => !seen.has(`${w.key}@${w.version}`) && seen.add(`${w.key}@${w.version}`));
          const keyOf = (k: number) => `run${run}-key${k}`;
          const toWrite = (w: (typeof writes)[number]): StoreWrite =>
            w.op === 'set' ? set(keyOf(w.key), w.version, JSON.stringify({ payload: w.payload, v: w.version })) : del(keyOf(w.key), w.version);

          // Split into batches of distinct keys, where the generator asked for a cut.
          const batches: (typeof writes)[] = [];
          for (const w of writes) {
            const last = batches.at(-1);
            if (!last || w.newBatch || last.some((o) => o.key === w.key)) batches.push([w]);
            else last.push(w);
          }

          const newest = new Map<number, (typeof writes)[number]>();
          for (const batch of batches) {
            const outcomes = await store.write(COLLECTION, batch.map(toWrite));
            batch.forEach((w, i) => {
              const held = newest.get(w.key);
              const expected: WriteOutcome = held === undefined || w.version > held.version ? APPLIED : { status: 'superseded', current: held.version };
              assert.deepEqual(outcomes[i], expected, `write ${w.op} ${w.key}@${w.version}`);
              if (expected.status === 'applied') newest.set(w.key, w);
            });
          }

          const keys = [0, 1, 2, 3];
          const rows = await store.loadMany(COLLECTION, keys.map(keyOf));
          keys.forEach((k, i) => {
            const w = newest.get(k);
            const expected = w === undefined ? undefined : record(w.version, w.op === 'set' ? (toWrite(w) as { json: string }).json : undefined);
            assert.deepEqual(rows[i], expected, `final row of key ${k}`);
          });
        }),
        { numRuns: 100 },
      );
    });

    if (hasMaxVersion) {
      test('maxVersion is 0 for an empty collection, then the highest version written, deletes included', () =>
        withStore(async (store) => {
          assert.equal(await store.maxVersion!(COLLECTION), 0);
          await store.write(COLLECTION, [set('a', 3, '1'), del('b', 9), set('c', 5, '1')]);
          assert.equal(await store.maxVersion!(COLLECTION), reported(9));
          await store.prepare(OTHER_COLLECTION);
          assert.equal(await store.maxVersion!(OTHER_COLLECTION), 0, 'per collection');
        }));
    } else {
      test('maxVersion (skipped: the store does not implement it)', { skip: 'no maxVersion' }, () => {});
    }

    test('close() can be called twice', async () => {
      const { store, cleanup } = await makeStore();
      try {
        await store.close();
        await store.close();
      } finally {
        await cleanup();
      }
    });
  });
}

function set(key: string, version: number, json: string): StoreWrite {
  return { op: 'set', key, version, json };
}

function del(key: string, version: number): StoreWrite {
  return { op: 'delete', key, version };
}

function record(version: number, json: string | undefined): StoreRecord {
  return { version, json };
}
