import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache, CachewiseError, ErrorCodes, isCachewiseError, type CollectionPolicy } from '../src/index.js';
import { FaultyStore } from './helpers/faulty-store.js';
import { tempSqlite } from './helpers/sqlite.js';

async function setup(write: CollectionPolicy['write'] = 'through') {
  const sqlite = tempSqlite();
  const store = new FaultyStore(sqlite.store);
  const cache = await createCache({ store });
  const items = cache.collection<unknown>('items', { write, read: 'through' });
  await items.set('existing', { ok: true });
  await items.flush();
  const writesBefore = store.calls.write;
  const done = async () => {
    await cache.close();
    sqlite.cleanup();
  };
  return { cache, items, store, writesBefore, done };
}

function expectCode(code: keyof typeof ErrorCodes) {
  return (error: unknown) => {
    assert.ok(error instanceof CachewiseError, `expected a CachewiseError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.ok(error.remedy.length > 10, 'the error carries a remedy');
    assert.match(error.message, /Remedy: /);
    return true;
  };
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

const badValues: [string, unknown, keyof typeof ErrorCodes][] = [
  ['undefined', undefined, 'E_INVALID_VALUE'],
  ['a function', () => 1, 'E_INVALID_VALUE'],
  ['a nested function', { a: { f: () => 1 } }, 'E_INVALID_VALUE'],
  ['a symbol', Symbol('s'), 'E_INVALID_VALUE'],
  ['a symbol property value', { s: Symbol('s') }, 'E_INVALID_VALUE'],
  ['a cycle', cyclic, 'E_INVALID_VALUE'],
  ['a BigInt', 10n, 'E_INVALID_VALUE'],
  ['a nested BigInt', { n: [1n] }, 'E_INVALID_VALUE'],
  ['NaN', Number.NaN, 'E_INVALID_VALUE'],
  ['Infinity', { x: Infinity }, 'E_INVALID_VALUE'],
  ['a Map', new Map([['a', 1]]), 'E_INVALID_VALUE'],
  ['a Set', { s: new Set([1]) }, 'E_INVALID_VALUE'],
  ['a class instance', new Point(1, 2), 'E_INVALID_VALUE'],
  ['undefined inside an array', [1, undefined], 'E_INVALID_VALUE'],
  ['a value over 1 MiB', 'x'.repeat(1024 * 1024 + 1), 'E_VALUE_TOO_LARGE'],
];

const badKeys: [string, unknown][] = [
  ['an empty string', ''],
  ['a 513-character string', 'k'.repeat(513)],
  ['a NUL character', 'a\u0000b'],
  ['a lone surrogate', 'a\ud800b'],
  ['a number', 42],
  ['null', null],
  ['undefined', undefined],
  ['an object', { id: 1 }],
];

describe('bad input gets a typed error and changes nothing (contract 9)', () => {
  for (const write of ['through', 'back', 'around'] as const) {
    test(`write-${write}: every invalid value is refused with its code and nothing is written`, async () => {
      const { items, store, writesBefore, done } = await setup(write);
      for (const [name, value, code] of badValues) {
        await assert.rejects(items.set('existing', value), expectCode(code), name);
        await assert.rejects(items.setMany([['fine', 1], ['existing', value]]), expectCode(code), `${name} in setMany`);
      }
      await items.flush();
      assert.equal(store.calls.write, writesBefore, 'no database write happened');
      assert.deepEqual(await items.get('existing'), { ok: true });
      assert.equal(await items.get('fine'), undefined, 'the good entry of a refused setMany was not written either');
      await done();
    });
  }

  test('every invalid key is refused by every operation', async () => {
    const { items, store, writesBefore, done } = await setup();
    for (const [name, key] of badKeys) {
      const k = key as string;
      await assert.rejects(items.get(k), expectCode('E_INVALID_KEY'), `get: ${name}`);
      await assert.rejects(items.set(k, 1), expectCode('E_INVALID_KEY'), `set: ${name}`);
      await assert.rejects(items.delete(k), expectCode('E_INVALID_KEY'), `delete: ${name}`);
      await assert.rejects(items.invalidate(k), expectCode('E_INVALID_KEY'), `invalidate: ${name}`);
      await assert.rejects(items.getMany(['ok', k]), expectCode('E_INVALID_KEY'), `getMany: ${name}`);
    }
    await assert.rejects(items.setMany([['a', 1], ['a', 2]]), expectCode('E_INVALID_KEY'), 'duplicate keys in setMany');
    assert.equal(store.calls.write, writesBefore);
    await done();
  });

  test('Dates are accepted and stored as ISO strings, as JSON does', async () => {
    const { items, done } = await setup();
    await items.set('d', { at: new Date(Date.UTC(2026, 0, 2)) });
    assert.deepEqual(await items.get('d'), { at: '2026-01-02T00:00:00.000Z' });
    await done();
  });

  test('JSON from the cache or the database cannot pollute prototypes', async () => {
    const { items, store, done } = await setup();
    const payload = JSON.parse('{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}');
    await items.set('evil', payload);
    const read = (await items.get('evil')) as Record<string, unknown>;
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.ok(Object.prototype.hasOwnProperty.call(read, '__proto__'), '__proto__ stays a plain own property');
    await store.inner.write('items', [{ op: 'set', key: 'raw', version: Number.MAX_SAFE_INTEGER - 1, json: '{"__proto__":{"polluted":true}}' }]);
    await items.invalidate('raw');
    await items.get('raw');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    await done();
  });

  test('policy options are validated with the option named and a remedy', async () => {
    const sqlite = tempSqlite();
    const cache = await createCache({ store: sqlite.store });
    const cases: [string, unknown, keyof typeof ErrorCodes][] = [
      ['not an object', 'through', 'E_INVALID_OPTION'],
      ['unknown option', { write: 'through', read: 'through', tll: '1h' }, 'E_INVALID_OPTION'],
      ['unknown write pattern', { write: 'sideways', read: 'through' }, 'E_INVALID_OPTION'],
      ['missing read pattern', { write: 'through' }, 'E_INVALID_OPTION'],
      ['unparseable ttl', { write: 'through', read: 'through', ttl: '5 parsecs' }, 'E_INVALID_OPTION'],
      ['negative ttl', { write: 'through', read: 'through', ttl: -1 }, 'E_INVALID_OPTION'],
      ['zero ttl', { write: 'through', read: 'through', ttl: 0 }, 'E_INVALID_OPTION'],
      ['jitter of 1', { write: 'through', read: 'through', ttlJitter: 1 }, 'E_INVALID_OPTION'],
      ['flush options on write-through', { write: 'through', read: 'through', flush: { maxBatch: 10 } }, 'E_INVALID_OPTION'],
      ['fractional batch size', { write: 'back', read: 'through', flush: { maxBatch: 1.5 } }, 'E_INVALID_OPTION'],
      ['unknown flush option', { write: 'back', read: 'through', flush: { size: 10 } }, 'E_INVALID_OPTION'],
      ['bad onFull', { write: 'back', read: 'through', pending: { onFull: 'drop' } }, 'E_INVALID_OPTION'],
      ['bad durability', { write: 'back', read: 'through', durability: 'maybe' }, 'E_INVALID_OPTION'],
      ['journal without a journal', { write: 'back', read: 'through', durability: 'journal' }, 'E_POLICY_REFUSED'],
      ['critical write-back', { write: 'back', read: 'through', critical: true }, 'E_POLICY_REFUSED'],
    ];
    for (const [name, policy, code] of cases) {
      assert.throws(() => cache.collection('items', policy as CollectionPolicy), expectCode(code), name);
    }
    for (const name of ['', '1abc', 'a-b', 'x"; DROP TABLE y; --', 'a:b', 'x'.repeat(49)]) {
      assert.throws(() => cache.collection(name, { write: 'through', read: 'through' }), expectCode('E_INVALID_OPTION'), name);
    }
    await cache.close();
    sqlite.cleanup();
  });

  test('write-back for critical data is refused quoting the seed', async () => {
    const sqlite = tempSqlite();
    const cache = await createCache({ store: sqlite.store });
    assert.throws(
      () => cache.collection('orders', { write: 'back', read: 'through', critical: true }),
      (error) => isCachewiseError(error, 'E_POLICY_REFUSED') && /One cache failure = data loss/.test(error.message),
    );
    await cache.close();
    sqlite.cleanup();
  });

  test('one pattern per kind of data: redeclaring a collection with another policy is refused', async () => {
    const sqlite = tempSqlite();
    const cache = await createCache({ store: sqlite.store });
    const users = cache.collection('users', { write: 'through', read: 'through', ttl: '1h' });
    assert.equal(cache.collection('users', { write: 'through', read: 'through', ttl: '1h' }), users, 'same policy: same handle');
    assert.throws(
      () => cache.collection('users', { write: 'back', read: 'through' }),
      (error) => isCachewiseError(error, 'E_POLICY_CONFLICT') && /Mixing patterns inconsistently/.test(error.message),
    );
    await cache.close();
    sqlite.cleanup();
  });

  test('cache-aside operations on a read-through collection are refused with E_WRONG_PATTERN', async () => {
    const { items, done } = await setup();
    await assert.rejects(items.lookup('a'), expectCode('E_WRONG_PATTERN'));
    await assert.rejects(items.getOrLoad('a', () => 1), expectCode('E_WRONG_PATTERN'));
    await done();
  });

  test('createCache refuses missing or wrong parts', async () => {
    await assert.rejects(createCache(undefined as never), expectCode('E_INVALID_OPTION'));
    await assert.rejects(createCache({} as never), expectCode('E_INVALID_OPTION'));
    await assert.rejects(createCache({ store: { load() {} } } as never), expectCode('E_INVALID_OPTION'));
  });

  test('after close, writes are refused with E_CLOSED', async () => {
    const { cache, items, done } = await setup();
    await cache.close();
    await assert.rejects(items.set('a', 1), expectCode('E_CLOSED'));
    assert.throws(() => cache.collection('other', { write: 'through', read: 'through' }), expectCode('E_CLOSED'));
    await done();
  });

  test('every error code is documented in the README', async () => {
    const { readFileSync } = await import('node:fs');
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const code of Object.keys(ErrorCodes)) assert.ok(readme.includes(code), `README documents ${code}`);
  });
});

describe('value encoding', () => {
  test('any JSON data encodes exactly as JSON.stringify does, and decodes to an equal frozen copy', async () => {
    const fc = await import('fast-check');
    const { normalizeValue } = await import('../src/codec.js');
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const { json, value: copy } = normalizeValue(value);
        assert.equal(json, JSON.stringify(value));
        assert.deepEqual(copy, JSON.parse(json));
        assert.ok(typeof copy !== 'object' || copy === null || Object.isFrozen(copy));
      }),
      { numRuns: 500 },
    );
  });

  test('undefined properties are left out, Dates become ISO strings, and a null-prototype object is plain data', async () => {
    const { encodeValue } = await import('../src/codec.js');
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 });
    assert.equal(encodeValue({ a: 1, b: undefined, at: new Date(0), bare }), '{"a":1,"at":"1970-01-01T00:00:00.000Z","bare":{"a":1}}');
    assert.throws(() => encodeValue({ deep: { list: [1, undefined] } }), { code: 'E_INVALID_VALUE', message: /array holds undefined/ });
    assert.throws(() => encodeValue({ list: [{ n: Number.NaN }] }), { code: 'E_INVALID_VALUE', message: /NaN/ });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => encodeValue(cyclic), { code: 'E_INVALID_VALUE', message: /cycle/ });
  });
});
