import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache, ManualClock, memoryTier, isCachewiseError, type CollectionPolicy } from '../src/index.js';
import { FaultyStore } from './helpers/faulty-store.js';
import { tempSqlite } from './helpers/sqlite.js';

async function setup(policy: Partial<CollectionPolicy> = {}, clock = new ManualClock()) {
  const sqlite = tempSqlite();
  const store = new FaultyStore(sqlite.store);
  const cache = await createCache({ store, clock, tier: memoryTier({ clock }) });
  const items = cache.collection<{ n: number }>('items', { write: 'through', read: 'through', ttl: '1m', ttlJitter: 0, ...policy });
  const done = async () => {
    await cache.close();
    sqlite.cleanup();
  };
  return { cache, items, store, clock, done };
}

/** Writes a row behind the cache's back, as another program would. */
async function writeRow(store: FaultyStore, key: string, n: number, version: number) {
  await store.inner.write('items', [{ op: 'set', key, version, json: JSON.stringify({ n }) }]);
}

describe('read-through (contract 6)', () => {
  test('1,000 concurrent reads of one missing key cause exactly one load', async () => {
    const { items, store, done } = await setup();
    await writeRow(store, 'hot', 1, 1);
    store.delayMs = 20;
    const values = await Promise.all(Array.from({ length: 1000 }, () => items.get('hot')));
    assert.equal(store.calls.load, 1);
    assert.ok(values.every((v) => v?.n === 1));
    assert.equal(items.stats().loads, 1);
    await done();
  });

  test('1,000 concurrent reads of a key missing from the database too cause one load', async () => {
    const { items, store, done } = await setup();
    store.delayMs = 10;
    const values = await Promise.all(Array.from({ length: 1000 }, () => items.get('nowhere')));
    assert.equal(store.calls.load, 1);
    assert.ok(values.every((v) => v === undefined));
    await done();
  });

  test('getMany loads all misses in one database round trip and serves hits from the cache', async () => {
    const { items, store, done } = await setup();
    for (let i = 0; i < 20; i++) await writeRow(store, `k${i}`, i, i + 1);
    await items.get('k0');
    const loadsBefore = store.calls.load;
    const values = await items.getMany(Array.from({ length: 20 }, (_, i) => `k${i}`).concat(['missing', 'k3']));
    assert.deepEqual(values.map((v) => v?.n), [...Array.from({ length: 20 }, (_, i) => i), undefined, 3]);
    assert.equal(store.calls.loadMany, 1);
    assert.equal(store.calls.load, loadsBefore);
    await items.getMany(['k1', 'k2']);
    assert.equal(store.calls.loadMany, 1, 'the second getMany is served from the cache');
    await done();
  });

  test('a value stays fresh for its TTL, then is loaded again', async () => {
    const { items, store, clock, done } = await setup({ ttl: '1m' });
    await writeRow(store, 'a', 1, 1);
    assert.equal((await items.get('a'))?.n, 1);
    clock.advance(59_000);
    await writeRow(store, 'a', 2, 2);
    assert.equal((await items.get('a'))?.n, 1, 'still fresh: served from the cache');
    clock.advance(2_000);
    assert.equal((await items.get('a'))?.n, 2, 'expired: loaded again');
    assert.equal(store.calls.load, 2);
    await done();
  });

  test('TTL jitter spreads expiry over [ttl * (1 - jitter), ttl]', async () => {
    const clock = new ManualClock();
    const tier = memoryTier({ clock });
    const sqlite = tempSqlite();
    const cache = await createCache({ store: sqlite.store, clock, tier });
    const items = cache.collection<number>('items', { write: 'through', read: 'through', ttl: 100_000, ttlJitter: 0.2 });
    for (let i = 0; i < 200; i++) await items.set(`k${i}`, i);
    const expiries = [];
    for (let i = 0; i < 200; i++) {
      const entry = await tier.get(`items:k${i}`);
      expiries.push(entry!.freshUntil - clock.now());
    }
    assert.ok(expiries.every((ttl) => ttl >= 80_000 && ttl <= 100_000), 'within bounds');
    assert.ok(expiries.every(Number.isInteger), 'whole milliseconds');
    assert.ok(new Set(expiries.map((e) => Math.round(e / 1000))).size > 10, 'spread out, not one instant');
    await cache.close();
    sqlite.cleanup();
  });

  test('stale-while-revalidate serves the expired value at once and refreshes it with one background load', async () => {
    const { items, store, clock, done } = await setup({ ttl: '1m', staleWhileRevalidate: '30s' });
    await writeRow(store, 'a', 1, 1);
    await items.get('a');
    await writeRow(store, 'a', 2, 2);
    clock.advance(61_000);
    const stale = await Promise.all(Array.from({ length: 50 }, () => items.get('a')));
    assert.ok(stale.every((v) => v?.n === 1), 'expired value served without waiting');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(store.calls.load, 2, 'one background refresh for 50 readers');
    assert.equal((await items.get('a'))?.n, 2, 'the refreshed value is served next');
    assert.ok(items.stats().staleHits >= 50);
    await done();
  });

  test('past the stale-while-revalidate window, a read waits for the load', async () => {
    const { items, store, clock, done } = await setup({ ttl: '1m', staleWhileRevalidate: '30s' });
    await writeRow(store, 'a', 1, 1);
    await items.get('a');
    await writeRow(store, 'a', 2, 2);
    clock.advance(60_000 + 31_000);
    assert.equal((await items.get('a'))?.n, 2);
    await done();
  });

  test('stale-if-error serves the expired value when the database fails, within its bound, and says so', async () => {
    const { cache, items, store, clock, done } = await setup({ ttl: '1m', staleIfError: '5m' });
    await writeRow(store, 'a', 1, 1);
    await items.get('a');
    clock.advance(2 * 60_000);
    const served: unknown[] = [];
    cache.events.on('stale-served', (event) => served.push(event));
    store.loadFaults.push('throw');
    assert.equal((await items.get('a'))?.n, 1);
    assert.equal(served.length, 1);
    clock.advance(5 * 60_000);
    store.loadFaults.push('throw');
    await assert.rejects(items.get('a'), (error) => isCachewiseError(error, 'E_LOAD_FAILED') && error.cause instanceof Error);
    await done();
  });

  test('without stale-if-error a failed load rejects with E_LOAD_FAILED and its cause', async () => {
    const { items, store, done } = await setup();
    store.loadFaults.push('throw');
    await assert.rejects(items.get('a'), (error) => isCachewiseError(error, 'E_LOAD_FAILED') && /injected/.test(String((error.cause as Error).message)));
    await done();
  });

  test('negative caching is off by default, and caches "not in the database" for negativeTtl when set', async () => {
    const off = await setup();
    await off.items.get('none');
    await off.items.get('none');
    assert.equal(off.store.calls.load, 2);
    await off.done();

    const on = await setup({ negativeTtl: '10s' });
    await on.items.get('none');
    await on.items.get('none');
    assert.equal(on.store.calls.load, 1);
    on.clock.advance(11_000);
    await on.items.get('none');
    assert.equal(on.store.calls.load, 2);
    await on.done();
  });

  test('a value written through is read back without a load', async () => {
    const { items, store, done } = await setup();
    await items.set('a', { n: 7 });
    assert.equal((await items.get('a'))?.n, 7);
    assert.equal(store.calls.load, 0);
    await done();
  });

  test('values handed out are deeply frozen copies', async () => {
    const { items, done } = await setup();
    const original = { n: 1, nested: { list: [1, 2] } };
    await items.set('a', original as { n: number });
    original.n = 99;
    const read = (await items.get('a')) as unknown as typeof original;
    assert.equal(read.n, 1, 'mutating the written object changes nothing cached');
    assert.ok(Object.isFrozen(read) && Object.isFrozen(read.nested) && Object.isFrozen(read.nested.list));
    assert.throws(() => {
      (read as { n: number }).n = 2;
    }, TypeError);
    await done();
  });
});
