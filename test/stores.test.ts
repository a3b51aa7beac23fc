/**
 * The stores: the conformance suite over every built-in store, then what is particular to each
 * (SQLite: per-entry failures, transactions, identifiers, pragmas; function store: options,
 * value checks, outcomes of throwing functions, batch fallback).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { ManualClock } from '../src/clock.js';
import { isCachewiseError, type ErrorCode } from '../src/errors.js';
import { functionStore, type FunctionBatchResult, type FunctionStoreOptions, type FunctionStoreRecord } from '../src/stores/function-store.js';
import { sqliteStore, type SqliteStoreOptions } from '../src/stores/sqlite-store.js';
import { SqliteWriterThread } from '../src/stores/sqlite-writer.js';
import { isNotApplied, notApplied, type Store, type StoreWrite } from '../src/stores/store.js';
import { storeConformance, type StoreFixture } from './conformance/store-conformance.js';

// ---------------------------------------------------------------------------------------------
// Fixtures

/** A fresh temporary directory; `remove` deletes it with everything in it (WAL and SHM files too). */
function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'cachewise-sqlite-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

async function sqliteFileFixture(options?: SqliteStoreOptions, setup?: (db: Database.Database) => void): Promise<StoreFixture & { file: string }> {
  const { dir, remove } = tempDir();
  const file = join(dir, 'store.db');
  if (setup) {
    const db = new Database(file);
    setup(db);
    db.close();
  }
  const store = sqliteStore(file, options);
  return {
    store,
    file,
    async cleanup() {
      await store.close();
      remove();
    },
  };
}

async function sqliteHandleFixture(setup?: (db: Database.Database) => void, options?: SqliteStoreOptions): Promise<StoreFixture & { db: Database.Database; file: string }> {
  const { dir, remove } = tempDir();
  const file = join(dir, 'store.db');
  const db = new Database(file);
  setup?.(db);
  const store = sqliteStore(db, options);
  return {
    store,
    db,
    file,
    async cleanup() {
      await store.close();
      assert.equal(db.open, true, "close() leaves a caller's Database open");
      db.close();
      remove();
    },
  };
}

interface MapRow {
  value: unknown;
  version: number;
  deleted: boolean;
}

/** Tables in a Map, one per collection, as a user's functions would keep them. */
function mapTables() {
  const tables = new Map<string, Map<string, MapRow>>();
  const table = (collection: string): Map<string, MapRow> => {
    let rows = tables.get(collection);
    if (!rows) tables.set(collection, (rows = new Map()));
    return rows;
  };
  return { tables, table };
}

/** A versioned function store over Maps; its functions keep the version guard themselves. */
function versionedMapStore(withBatches: boolean): Store {
  const { table } = mapTables();
  const guarded = (collection: string, key: string, version: number, row: MapRow) => {
    const held = table(collection).get(key);
    if (held && held.version >= version) return { current: held.version };
    table(collection).set(key, row);
    return undefined;
  };
  const loadRow = (collection: string, key: string): FunctionStoreRecord | undefined => {
    const row = table(collection).get(key);
    return row && { value: row.deleted ? undefined : row.value, version: row.version };
  };
  const options: FunctionStoreOptions = {
    versioned: true,
    load: async (key, collection) => loadRow(collection, key),
    save: async (key, value, version, collection) => guarded(collection, key, version, { value, version, deleted: false }),
    remove: async (key, version, collection) => guarded(collection, key, version, { value: undefined, version, deleted: true }),
    maxVersion: async (collection) => Math.max(0, ...[...table(collection).values()].map((row) => row.version)),
  };
  if (withBatches) {
    options.loadMany = async (keys, collection) => new Map(keys.map((key) => [key, loadRow(collection, key)]));
    options.saveMany = async (entries, collection) => entries.map((e) => guarded(collection, e.key, e.version, { value: e.value, version: e.version, deleted: false }));
    options.removeMany = async (entries, collection) => entries.map((e) => guarded(collection, e.key, e.version, { value: undefined, version: e.version, deleted: true }));
  }
  return functionStore(options);
}

/** An unversioned function store over Maps: plain set and delete. */
function unversionedMapStore(): Store {
  const { table } = mapTables();
  return functionStore({
    load: (key, collection) => table(collection).get(key)?.value,
    save: (key, value, version, collection) => {
      table(collection).set(key, { value, version, deleted: false });
    },
    remove: (key, _version, collection) => {
      table(collection).delete(key);
    },
  });
}

const functionFixture = (make: () => Store) => async (): Promise<StoreFixture> => {
  const store = make();
  return { store, cleanup: () => store.close() };
};

storeConformance('sqliteStore on a file', () => sqliteFileFixture());
storeConformance('sqliteStore on an open better-sqlite3 Database', () => sqliteHandleFixture());
storeConformance('functionStore, versioned, with batch functions', functionFixture(() => versionedMapStore(true)));
storeConformance('functionStore, versioned, single functions only', functionFixture(() => versionedMapStore(false)));
storeConformance('functionStore, unversioned', functionFixture(unversionedMapStore));

// ---------------------------------------------------------------------------------------------
// Helpers

function set(key: string, version: number, json: string): StoreWrite {
  return { op: 'set', key, version, json };
}

function del(key: string, version: number): StoreWrite {
  return { op: 'delete', key, version };
}

/** An assert.rejects/throws matcher for a CachewiseError with `code` whose message mentions `text`. */
function cachewiseError(code: ErrorCode, text?: string | RegExp) {
  return (error: unknown): boolean => {
    assert.ok(isCachewiseError(error, code), `expected ${code}, got ${String(error)}`);
    if (text !== undefined) assert.match(error.message, typeof text === 'string' ? new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : text);
    return true;
  };
}

function tableNames(db: Database.Database): string[] {
  return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[]).sort();
}

async function withFixture<F extends StoreFixture>(fixture: Promise<F>, fn: (f: F) => Promise<void>): Promise<void> {
  const f = await fixture;
  try {
    await fn(f);
  } finally {
    await f.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// SQLite

describe('sqliteStore', () => {
  // Batches of a file the store opened run on its writer thread; those of a Database passed in,
  // on the calling thread: per-entry failures must come back the same way from both.
  const writers: [string, (setup: (db: Database.Database) => void) => Promise<StoreFixture>][] = [
    ['on a Database passed in', (setup) => sqliteHandleFixture(setup)],
    ['on the writer thread', (setup) => sqliteFileFixture(undefined, setup)],
  ];
  for (const [where, fixture] of writers) {
    test(`a bad entry fails alone, marked permanent, while the rest of the batch commits (${where})`, () =>
      withFixture(
        fixture((db) =>
          db.exec(`CREATE TABLE cachewise_items ("key" TEXT PRIMARY KEY NOT NULL, "value" TEXT CHECK ("value" IS NULL OR "value" NOT LIKE '%poison%'),
                   "version" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL)`),
        ),
        async ({ store }) => {
          await store.prepare('items');
          const writes = Array.from({ length: 10 }, (_, i) => set(`k${i}`, i + 1, i === 4 ? '"poison"' : `${i}`));
          const outcomes = await store.write('items', writes);
          outcomes.forEach((outcome, i) => {
            if (i !== 4) return assert.deepEqual(outcome, { status: 'applied' }, `entry ${i}`);
            assert.equal(outcome.status, 'failed');
            assert.ok(outcome.status === 'failed' && outcome.permanent, 'a constraint failure is permanent');
            assert.equal((outcome as { error: { code?: string } }).error.code, 'SQLITE_CONSTRAINT_CHECK');
          });
          const rows = await store.loadMany('items', writes.map((w) => w.key));
          rows.forEach((row, i) => assert.deepEqual(row, i === 4 ? undefined : { version: i + 1, json: `${i}` }, `row ${i}`));
        },
      ));

    test(`an entry whose constraint rolls back the whole transaction fails alone; the others commit on a retry (${where})`, () =>
      withFixture(
        fixture((db) =>
          db.exec(`CREATE TABLE cachewise_items ("key" TEXT PRIMARY KEY NOT NULL, "value" TEXT NOT NULL ON CONFLICT ROLLBACK,
                   "version" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL)`),
        ),
        async ({ store }) => {
          await store.prepare('items');
          const outcomes = await store.write('items', [set('a', 1, '"a"'), del('b', 2), set('c', 3, '"c"'), del('d', 4)]);
          assert.deepEqual(outcomes[0], { status: 'applied' });
          assert.deepEqual(outcomes[2], { status: 'applied' });
          for (const i of [1, 3]) {
            const outcome = outcomes[i]!;
            assert.ok(outcome.status === 'failed' && outcome.permanent, `entry ${i} failed permanently`);
            assert.equal((outcome.error as { code?: string }).code, 'SQLITE_CONSTRAINT_NOTNULL');
          }
          assert.deepEqual(await store.loadMany('items', ['a', 'b', 'c', 'd']), [{ version: 1, json: '"a"' }, undefined, { version: 3, json: '"c"' }, undefined]);
        },
      ));
  }

  test('concurrent batches on the writer thread, committed together: each gets its own outcomes, a refused entry fails alone', () =>
    withFixture(
      sqliteFileFixture(undefined, (db) =>
        db.exec(`CREATE TABLE cachewise_items ("key" TEXT PRIMARY KEY NOT NULL, "value" TEXT CHECK ("value" IS NULL OR "value" NOT LIKE '%poison%'),
                 "version" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL)`),
      ),
      async ({ store }) => {
        await store.prepare('items');
        // 300 one-entry batches on 30 keys, versions 1..300 sent in a shuffled order, all at once.
        const versions = Array.from({ length: 300 }, (_, i) => i + 1).sort((a, b) => ((a * 7919) % 300) - ((b * 7919) % 300));
        const poisoned = versions[150]!;
        const sent = versions.map((version) => {
          const key = `k${version % 30}`;
          return { key, version, outcome: store.write('items', [set(key, version, version === poisoned ? '"poison"' : `${version}`)]) };
        });
        const newest = new Map<string, number>();
        for (const { key, version } of sent) {
          if (version !== poisoned) newest.set(key, Math.max(newest.get(key) ?? 0, version));
        }
        const seen = new Map<string, number>(); // highest version applied so far per key, in send order
        for (const { key, version, outcome } of sent) {
          const [result] = await outcome;
          if (version === poisoned) {
            assert.ok(result!.status === 'failed' && result!.permanent, 'the poisoned entry fails, permanently');
            assert.equal((result as { error: { code?: string } }).error.code, 'SQLITE_CONSTRAINT_CHECK');
            continue;
          }
          if (result!.status === 'applied') {
            assert.ok(version > (seen.get(key) ?? 0), `v${version} of ${key} applied over a newer one`);
            seen.set(key, version);
          } else {
            assert.equal(result!.status, 'superseded', `v${version} of ${key}`);
            assert.ok((result as { current: number }).current > version, 'superseded by a newer version');
          }
        }
        const rows = await store.loadMany('items', [...newest.keys()]);
        [...newest.values()].forEach((version, i) => assert.deepEqual(rows[i], { version, json: `${version}` }));
      },
    ));

  test('a relative path names the same file for the writer thread, even after the working directory changed', async () => {
    const { dir, remove } = tempDir();
    const before = process.cwd();
    let store: ReturnType<typeof sqliteStore> | undefined;
    try {
      process.chdir(dir);
      store = sqliteStore('relative.db');
      process.chdir(before); // the writer thread starts at the first write, from here
      await store.prepare('items');
      assert.deepEqual(await store.write('items', [set('a', 1, '1')]), [{ status: 'applied' }]);
      assert.deepEqual(await store.load('items', 'a'), { version: 1, json: '1' });
      assert.equal(existsSync(join(before, 'relative.db')), false, 'no file was created in the new working directory');
    } finally {
      process.chdir(before);
      await store?.close();
      remove();
    }
  });

  test('a writer thread that dies fails its batches with E_STORE_FAILED (outcome unknown, not notApplied); the next batch starts a new one', async () => {
    const { dir, remove } = tempDir();
    const file = join(dir, 'later', 'store.db');
    const writer = new SqliteWriterThread({ file, busyTimeout: 1000, synchronous: 'normal' });
    try {
      // The directory does not exist yet: the thread cannot open the file and stops.
      await assert.rejects(writer.write('"cachewise_items"', [set('a', 1, '1')], 0), (error: unknown) => {
        assert.ok(isCachewiseError(error) && error.code === 'E_STORE_FAILED', String(error));
        assert.match((error as Error).message, /writer thread stopped/);
        assert.equal(isNotApplied(error), false, 'a commit may have finished: the outcome is unknown');
        return true;
      });
      mkdirSync(dirname(file));
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE cachewise_items ("key" TEXT PRIMARY KEY NOT NULL, "value" TEXT, "version" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL)');
      assert.deepEqual(await writer.write('"cachewise_items"', [set('a', 1, '1')], 0), [{ status: 'applied' }]);
      assert.deepEqual(db.prepare('SELECT "value", "version" FROM cachewise_items').get(), { value: '1', version: 1 });
      db.close();
    } finally {
      await writer.close();
      remove();
    }
  });

  test('close() waits for the batches on the writer thread; a process that never closes the store still exits', async () => {
    const f = await sqliteFileFixture();
    try {
      await f.store.prepare('items');
      const writing = f.store.write('items', Array.from({ length: 500 }, (_, i) => set(`k${i}`, i + 1, `${i}`)));
      await f.store.close();
      assert.equal((await writing).filter((o) => o.status === 'applied').length, 500, 'the batch sent before close() committed');
      const again = sqliteStore(f.file, { writer: 'inline' });
      assert.deepEqual(await again.load('items', 'k499'), { version: 500, json: '499' });
      await again.close();

      const child = fileURLToPath(new URL('./helpers/sqlite-unclosed-child.ts', import.meta.url));
      const file = join(dirname(f.file), 'child.db');
      const run = spawnSync(process.execPath, ['--import', 'tsx', child, file], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(run.error, undefined, `the child exited by itself (${String(run.error)})`);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), [{ status: 'applied' }]);
    } finally {
      await f.cleanup();
    }
  });

  test('a batch that cannot begin its transaction (database locked) rejects marked notApplied and writes nothing', () =>
    withFixture(sqliteFileFixture({ busyTimeout: 0 }), async ({ store, file }) => {
      await store.prepare('items');
      const other = new Database(file);
      try {
        other.exec('BEGIN IMMEDIATE');
        await assert.rejects(store.write('items', [set('a', 1, '1'), set('b', 2, '2')]), (error: unknown) => {
          assert.ok(isNotApplied(error), 'the error says nothing was committed');
          assert.match((error as { code: string }).code, /^SQLITE_BUSY/);
          return true;
        });
        other.exec('ROLLBACK');
      } finally {
        other.close();
      }
      assert.deepEqual(await store.loadMany('items', ['a', 'b']), [undefined, undefined]);
      assert.deepEqual(await store.write('items', [set('a', 1, '1')]), [{ status: 'applied' }], 'the retry succeeds');
    }));

  test("a batch on a Database inside the caller's own transaction is refused, marked notApplied", () =>
    withFixture(sqliteHandleFixture(), async ({ store, db }) => {
      await store.prepare('items');
      db.exec('BEGIN');
      await assert.rejects(store.write('items', [set('a', 1, '1')]), (error: unknown) => isNotApplied(error) && cachewiseError('E_STORE_FAILED', 'inside a transaction')(error));
      db.exec('ROLLBACK');
      assert.equal(await store.load('items', 'a'), undefined);
    }));

  test('a malformed write (version not an integer) fails alone, permanently, before reaching SQLite', () =>
    withFixture(sqliteFileFixture(), async ({ store }) => {
      await store.prepare('items');
      const outcomes = await store.write('items', [set('a', 1.5, '1'), set('b', -1, '1'), set('c', 3, '3')]);
      for (const outcome of outcomes.slice(0, 2)) {
        assert.ok(outcome.status === 'failed' && outcome.permanent && isCachewiseError(outcome.error, 'E_STORE_FAILED'));
      }
      assert.deepEqual(outcomes[2], { status: 'applied' });
      assert.deepEqual(await store.loadMany('items', ['a', 'b', 'c']), [undefined, undefined, { version: 3, json: '3' }]);
    }));

  test('collection names are validated before any SQL runs: injection attempts create and drop nothing', () =>
    withFixture(
      sqliteHandleFixture((db) => db.exec('CREATE TABLE y (id INTEGER)')),
      async ({ store, db }) => {
        const before = tableNames(db);
        const bad = ['x"; DROP TABLE y; --', '', '1abc', 'a-b', 'tab\tle', 'a'.repeat(60), 'ünïcode'];
        for (const name of bad) {
          await assert.rejects(store.prepare(name), cachewiseError('E_INVALID_OPTION', 'collection'), `prepare ${JSON.stringify(name)}`);
          await assert.rejects(store.load(name, 'k'), cachewiseError('E_INVALID_OPTION'));
          await assert.rejects(store.loadMany(name, ['k']), cachewiseError('E_INVALID_OPTION'));
          await assert.rejects(store.write(name, [set('k', 1, '1')]), cachewiseError('E_INVALID_OPTION'));
          await assert.rejects(store.maxVersion!(name), cachewiseError('E_INVALID_OPTION'));
        }
        assert.deepEqual(tableNames(db), before);
        assert.deepEqual(before, ['y']);
      },
    ));

  test('tablePrefix is validated, may be empty, and may not form a name SQLite reserves', async () => {
    const { dir, remove } = tempDir();
    try {
      const file = join(dir, 'prefix.db');
      for (const tablePrefix of ['bad-prefix', '9x', 'a"b', 'p'.repeat(63)]) {
        assert.throws(() => sqliteStore(file, { tablePrefix }), cachewiseError('E_INVALID_OPTION', 'tablePrefix'));
      }
      assert.equal(existsSync(file), false, 'a refused option opens no file');
      const db = new Database(file);
      try {
        const store = sqliteStore(db, { tablePrefix: '' });
        await store.prepare('order'); // a keyword, usable because names are quoted
        await assert.rejects(store.prepare('sqlite_items'), cachewiseError('E_INVALID_OPTION', 'reserves'));
        assert.deepEqual(await store.write('order', [set('a', 1, '1')]), [{ status: 'applied' }]);
        assert.deepEqual(tableNames(db), ['order']);
        await store.close();
      } finally {
        db.close();
      }
    } finally {
      remove();
    }
  });

  test('unknown or out-of-range options are refused, naming the option', () => {
    const cases: [unknown, string][] = [
      [{ synchronous: 'off' }, 'synchronous'],
      [{ busyTimeout: -1 }, 'busyTimeout'],
      [{ busyTimeout: 1.5 }, 'busyTimeout'],
      [{ clock: {} }, 'clock'],
      [{ synchronus: 'full' }, 'synchronus'],
      [{ writer: 'worker' }, 'writer'],
      [null, 'options'],
    ];
    for (const [options, name] of cases) {
      assert.throws(() => sqliteStore(':memory:', options as SqliteStoreOptions), cachewiseError('E_INVALID_OPTION', name));
    }
    assert.throws(() => sqliteStore({} as Database.Database), cachewiseError('E_INVALID_OPTION', 'Database'));
  });

  test('the file is in WAL mode', () =>
    withFixture(sqliteFileFixture(), async ({ store, file }) => {
      await store.prepare('items');
      const reader = new Database(file, { readonly: true });
      try {
        assert.equal(reader.pragma('journal_mode', { simple: true }), 'wal');
      } finally {
        reader.close();
      }
    }));

  test('pragmas follow the options on a Database handle', async () => {
    await withFixture(sqliteHandleFixture(), async ({ db }) => {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('synchronous', { simple: true }), 2, 'FULL');
      assert.equal(db.pragma('busy_timeout', { simple: true }), 5000);
    });
    await withFixture(sqliteHandleFixture(undefined, { synchronous: 'normal', busyTimeout: 1234 }), async ({ db }) => {
      assert.equal(db.pragma('synchronous', { simple: true }), 1, 'NORMAL');
      assert.equal(db.pragma('busy_timeout', { simple: true }), 1234);
    });
  });

  test('a table that exists with another layout is refused with E_STORE_FAILED naming the table', () =>
    withFixture(
      sqliteHandleFixture((db) => db.exec('CREATE TABLE cachewise_items ("key" TEXT, "value" TEXT)')),
      async ({ store }) => {
        await assert.rejects(store.prepare('items'), cachewiseError('E_STORE_FAILED', '"cachewise_items"'));
        await assert.rejects(store.write('items', [set('a', 1, '1')]), cachewiseError('E_STORE_FAILED'));
      },
    ));

  test('rows carry updated_at from the clock, and the table has the documented columns', () => {
    const clock = new ManualClock(Date.UTC(2030, 0, 1));
    return withFixture(sqliteHandleFixture(undefined, { clock }), async ({ store, db }) => {
      await store.prepare('items');
      await store.write('items', [set('a', 1, '"x"'), del('b', 2)]);
      const rows = db.prepare('SELECT "key", "value", "version", "updated_at" FROM cachewise_items ORDER BY "key"').all();
      assert.deepEqual(rows, [
        { key: 'a', value: '"x"', version: 1, updated_at: clock.now() },
        { key: 'b', value: null, version: 2, updated_at: clock.now() },
      ]);
    });
  });

  test('an in-memory database works (":memory:")', async () => {
    const store = sqliteStore(':memory:');
    await store.prepare('items');
    assert.deepEqual(await store.write('items', [set('a', 1, '1')]), [{ status: 'applied' }]);
    assert.deepEqual(await store.load('items', 'a'), { version: 1, json: '1' });
    await store.close();
  });

  test('driver errors arrive as rejections, never as synchronous throws', async () => {
    const { dir, remove } = tempDir();
    const db = new Database(join(dir, 'store.db'));
    const store = sqliteStore(db);
    try {
      await store.prepare('items');
      db.close(); // the caller closes the handle under the store
      const calls = [
        () => store.load('items', 'a'),
        () => store.loadMany('items', ['a']),
        () => store.write('items', [set('a', 1, '1')]),
        () => store.maxVersion!('items'),
        () => store.prepare('others'),
        () => store.load('bad name', 'a'),
      ];
      for (const call of calls) {
        let promise: Promise<unknown> | undefined;
        assert.doesNotThrow(() => {
          promise = call();
        });
        await assert.rejects(promise!);
      }
    } finally {
      await store.close();
      remove();
    }
  });

  test('a store that opened its file closes it; afterwards every method rejects with E_CLOSED', async () => {
    const { store, file, cleanup } = await sqliteFileFixture();
    try {
      await store.prepare('items');
      await store.write('items', [set('a', 1, '1')]);
      await store.close();
      await assert.rejects(store.load('items', 'a'), cachewiseError('E_CLOSED'));
      await assert.rejects(store.write('items', [set('b', 1, '1')]), cachewiseError('E_CLOSED'));
      const reader = new Database(file, { readonly: true });
      try {
        assert.deepEqual(reader.prepare('SELECT "key" FROM cachewise_items').pluck().all(), ['a'], 'the committed row is on disk');
      } finally {
        reader.close();
      }
    } finally {
      await cleanup();
    }
  });

  test('opening a file in a missing directory fails with E_STORE_FAILED naming the file', () => {
    const file = join(tmpdir(), `cachewise-missing-${process.pid}-${Date.now()}`, 'nested', 'x.db');
    assert.throws(() => sqliteStore(file), cachewiseError('E_STORE_FAILED', file));
  });

  // A missing better-sqlite3 (E_MISSING_DEPENDENCY) cannot be simulated here: it is installed.
});

// ---------------------------------------------------------------------------------------------
// Function store

describe('functionStore', () => {
  const minimal = { load: () => undefined, save: () => undefined, remove: () => undefined };

  test('invalid options are refused with E_INVALID_OPTION naming the option and the remedy', () => {
    const cases: [unknown, string][] = [
      [undefined, 'options object'],
      [{ save: minimal.save, remove: minimal.remove }, '"load" must be a function'],
      [{ ...minimal, save: 'save' }, '"save" must be a function'],
      [{ ...minimal, remove: null }, '"remove" must be a function'],
      [{ ...minimal, loadMany: {} }, '"loadMany" must be a function when given'],
      [{ ...minimal, saveMany: 1 }, '"saveMany"'],
      [{ ...minimal, versioned: 'yes' }, '"versioned" must be a boolean'],
      [{ ...minimal, concurrency: 0 }, '"concurrency" must be a positive integer'],
      [{ ...minimal, concurency: 4 }, 'unknown functionStore option "concurency"'],
    ];
    for (const [options, text] of cases) {
      assert.throws(() => functionStore(options as FunctionStoreOptions), (error: unknown) => {
        cachewiseError('E_INVALID_OPTION', text)(error);
        assert.match((error as Error).message, /Remedy: \S/);
        return true;
      });
    }
  });

  test('a loaded value JSON cannot carry is refused with E_INVALID_VALUE naming the key', async () => {
    const values: Record<string, unknown> = { fn: { run: () => 1 }, big: { n: 10n }, nan: [Number.NaN], map: new Map() };
    const store = functionStore({ ...minimal, load: (key) => values[key], loadMany: (keys) => keys.map((key) => values[key]) });
    for (const key of Object.keys(values)) {
      await assert.rejects(store.load('items', key), cachewiseError('E_INVALID_VALUE', `key "${key}"`));
      await assert.rejects(store.loadMany('items', ['ok', key]), cachewiseError('E_INVALID_VALUE'));
    }
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    await assert.rejects(functionStore({ ...minimal, load: () => cycle }).load('items', 'c'), cachewiseError('E_INVALID_VALUE', 'cycle'));
  });

  test('a malformed versioned load is refused with E_LOAD_FAILED', async () => {
    const loaded: Record<string, unknown> = { noVersion: { value: 1 }, negative: { value: 1, version: -1 }, text: 'plain', fraction: { value: 1, version: 0.5 } };
    const store = functionStore({ ...minimal, versioned: true, load: (key) => loaded[key] as FunctionStoreRecord });
    for (const key of Object.keys(loaded)) {
      await assert.rejects(store.load('items', key), cachewiseError('E_LOAD_FAILED', `key "${key}"`));
    }
    assert.equal(await store.load('items', 'none'), undefined);
  });

  test('loadMany may return a Map; an array of the wrong length is refused with E_LOAD_FAILED', async () => {
    const withMap = functionStore({ ...minimal, loadMany: () => new Map([['b', { x: 1 }]]) });
    assert.deepEqual(await withMap.loadMany('items', ['a', 'b']), [undefined, { version: 0, json: '{"x":1}' }]);
    const short = functionStore({ ...minimal, loadMany: () => [1] });
    await assert.rejects(short.loadMany('items', ['a', 'b']), cachewiseError('E_LOAD_FAILED', 'array of 1 for 2 keys'));
  });

  test('save receives the value decoded from JSON, deeply frozen, with version and collection', async () => {
    const calls: unknown[][] = [];
    const store = functionStore({ ...minimal, save: (...args) => void calls.push(args) });
    await store.write('items', [set('a', 7, '{"list":[1,{"b":2}],"__proto__":{"x":1}}')]);
    const [key, value, version, collection] = calls[0]!;
    assert.deepEqual([key, version, collection], ['a', 7, 'items']);
    assert.deepEqual(value, JSON.parse('{"list":[1,{"b":2}],"__proto__":{"x":1}}'));
    assert.ok(Object.isFrozen(value) && Object.isFrozen((value as { list: object[] }).list[1]), 'deeply frozen');
    assert.equal(Object.getPrototypeOf(value), Object.prototype);
  });

  test('a save or remove that throws is unknown; marked notApplied it failed (permanent only if marked so)', async () => {
    const errors: Record<string, unknown> = {
      unmarked: new Error('timeout after send'),
      marked: notApplied(new Error('connection refused')),
      permanent: notApplied(new Error('check constraint'), { permanent: true }),
    };
    const fail = (key: string) => {
      if (key === 'sync') throw new Error('thrown synchronously');
      if (key in errors) return Promise.reject(errors[key]);
      return undefined;
    };
    const store = functionStore({ ...minimal, save: (key) => fail(key), remove: (key) => fail(key) });
    for (const op of ['set', 'delete'] as const) {
      const write = (key: string): StoreWrite => (op === 'set' ? set(key, 1, '1') : del(key, 1));
      const outcomes = await store.write('items', [write('unmarked'), write('marked'), write('permanent'), write('sync'), write('fine')]);
      assert.deepEqual(outcomes, [
        { status: 'unknown', error: errors.unmarked },
        { status: 'failed', error: errors.marked, permanent: false },
        { status: 'failed', error: errors.permanent, permanent: true },
        { status: 'unknown', error: (outcomes[3] as { error: unknown }).error },
        { status: 'applied' },
      ], op);
    }
  });

  test('a batch function that throws rejects the whole write with its error', async () => {
    const failure = notApplied(new Error('batch refused'));
    const store = functionStore({ ...minimal, saveMany: async () => Promise.reject(failure) });
    await assert.rejects(store.write('items', [set('a', 1, '1'), del('b', 2)]), (error) => error === failure);
    const syncThrow = functionStore({ ...minimal, removeMany: () => {
      throw failure;
    } });
    await assert.rejects(syncThrow.write('items', [del('b', 2)]), (error) => error === failure);
  });

  test('when removeMany throws after the saves were written, the saves stay applied and the removes report the error', async () => {
    const failure = new Error('lost connection');
    const store = functionStore({ ...minimal, saveMany: () => undefined, removeMany: () => Promise.reject(failure) });
    assert.deepEqual(await store.write('items', [set('a', 1, '1'), del('b', 2)]), [{ status: 'applied' }, { status: 'unknown', error: failure }]);
  });

  test('without batch functions, writes and loads fall back to single calls, at most `concurrency` in flight', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const saved = new Map<string, unknown>();
    const track = async <T>(fn: () => T): Promise<T> => {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise<void>((resolve) => setImmediate(resolve)); // yield, so calls overlap
      inFlight -= 1;
      return fn();
    };
    const store = functionStore({
      load: (key) => track(() => saved.get(key)),
      save: (key, value) => track(() => void saved.set(key, value)),
      remove: (key) => track(() => void saved.delete(key)),
      concurrency: 5,
    });
    const writes = Array.from({ length: 40 }, (_, i) => set(`k${i}`, i + 1, `${i}`));
    assert.deepEqual(await store.write('items', writes), writes.map(() => ({ status: 'applied' })));
    assert.equal(saved.size, 40);
    assert.equal(maxInFlight, 5, 'saves overlap up to the bound and never beyond');
    maxInFlight = 0;
    const rows = await store.loadMany('items', ['k3', 'nope', 'k39']);
    assert.deepEqual(rows, [{ version: 0, json: '3' }, undefined, { version: 0, json: '39' }]);
    assert.ok(maxInFlight <= 5);
    assert.deepEqual(await store.write('items', [del('k3', 99)]), [{ status: 'applied' }]);
    assert.equal(saved.has('k3'), false);
  });

  test('batch results are per entry: { current } is superseded; a malformed result is unknown', async () => {
    const store = functionStore({
      ...minimal,
      versioned: true,
      load: () => undefined,
      // Results a JavaScript caller could return despite the types.
      saveMany: () => [undefined, { current: 9 }, { current: 'nine' }, { rowCount: 1 }] as unknown as FunctionBatchResult,
      removeMany: () => [1, 2] as unknown as FunctionBatchResult,
    });
    const outcomes = await store.write('items', [set('a', 1, '1'), set('b', 2, '2'), set('c', 3, '3'), set('d', 4, '4'), del('e', 5)]);
    assert.deepEqual(outcomes.slice(0, 2), [{ status: 'applied' }, { status: 'superseded', current: 9 }]);
    assert.ok(outcomes[2]!.status === 'unknown' && isCachewiseError(outcomes[2]!.error, 'E_STORE_UNKNOWN_OUTCOME'), 'malformed { current }');
    assert.deepEqual(outcomes[3], { status: 'applied' }, "a driver's result object counts as written");
    assert.ok(outcomes[4]!.status === 'unknown' && isCachewiseError(outcomes[4]!.error, 'E_STORE_UNKNOWN_OUTCOME'), 'misaligned batch result');
  });

  test('prepare, maxVersion and close reach the user functions; close runs once; a closed store rejects with E_CLOSED', async () => {
    const calls: string[] = [];
    const store = functionStore({
      ...minimal,
      prepare: (collection) => void calls.push(`prepare ${collection}`),
      maxVersion: () => 42,
      close: () => void calls.push('close'),
    });
    await store.prepare('items');
    assert.equal(await store.maxVersion!('items'), 42);
    await store.close();
    await store.close();
    assert.deepEqual(calls, ['prepare items', 'close']);
    await assert.rejects(store.load('items', 'a'), cachewiseError('E_CLOSED'));
    assert.equal(functionStore(minimal).maxVersion, undefined, 'no maxVersion unless given');
    await assert.rejects(functionStore({ ...minimal, maxVersion: () => -1 }).maxVersion!('items'), cachewiseError('E_LOAD_FAILED'));
  });

  test('a user function that throws synchronously still gives a rejected promise', async () => {
    const boom = () => {
      throw new Error('boom');
    };
    const store = functionStore({ ...minimal, load: boom, prepare: boom });
    let promise: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      promise = store.load('items', 'a');
    });
    await assert.rejects(promise!, /boom/);
    await assert.rejects(store.prepare('items'), /boom/);
  });
});
