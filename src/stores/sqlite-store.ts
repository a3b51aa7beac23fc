/**
 * The SQLite store (better-sqlite3): one table per collection, every write a versioned upsert.
 *
 * Contract 1: a write lands only if its version is newer than the row's, and a delete is the same
 * upsert with a NULL value (a versioned delete marker), so an older write that is retried,
 * replayed or reordered can never replace a newer value or resurrect a deleted key.
 * Contract 5: a batch commits in one transaction, and an entry the database refuses (a CHECK,
 * NOT NULL or type constraint) fails alone, marked permanent, while the rest of the batch commits.
 * Contract 9: table names are validated and double-quoted; values are always bound parameters.
 *
 * better-sqlite3 is an optional peer dependency, loaded only when the store opens a file itself.
 * The driver is synchronous; every method still returns a promise, and a driver error always
 * arrives as a rejection. Batches of a file the store opened are committed on a writer thread
 * (./sqlite-writer.ts), so they do not stop the event loop; reads run on the calling thread.
 */
import { createRequire } from 'node:module';
import { resolve as resolvePath } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { systemClock, type Clock } from '../clock.js';
import { CachewiseError } from '../errors.js';
import { batchWriter, configure, prepareUpserts, type UpsertStatements } from './sqlite-batch.js';
import { SqliteWriterThread } from './sqlite-writer.js';
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from './store.js';

export interface SqliteStoreOptions {
  /**
   * Prefix of every table name: collection `users` lives in table `<tablePrefix>users`.
   * Letters, digits and underscores, not starting with a digit (may be empty); prefix and
   * collection together at most 63 characters. Default `cachewise_`.
   */
  tablePrefix?: string;
  /**
   * SQLite's `synchronous` setting in WAL mode. `'full'` (default) fsyncs the log on every commit:
   * a committed write survives a power loss. `'normal'` fsyncs only at checkpoints: faster, and a
   * committed write survives a crash of the process but may be lost on a power failure.
   */
  synchronous?: 'full' | 'normal';
  /**
   * How long, in milliseconds, a statement waits for another connection's lock before failing
   * with SQLITE_BUSY (a transient error). Default 5000.
   */
  busyTimeout?: number;
  /** Source of the `updated_at` timestamps (milliseconds). Default: the system clock. */
  clock?: Clock;
  /**
   * Where batches are committed when the store opened the file itself. `'thread'` (default): on
   * a writer thread with its own connection, so a commit (and its fsync) never stops the event
   * loop. `'inline'`: on the calling thread. A Database you pass in, and `':memory:'`, are
   * always written inline.
   */
  writer?: 'thread' | 'inline';
}

/** Identifiers the store accepts as table-name parts (contract 9). */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** PostgreSQL's limit, kept here too so a collection name is portable between stores. */
const MAX_TABLE_NAME = 63;
/** Most keys bound in one `IN (...)` list. */
const MAX_IN_LIST = 500;
/** Sizes of the prepared `IN (...)` statements; a shorter chunk is padded to the next size. */
const IN_LIST_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_IN_LIST];
const KNOWN_OPTIONS = new Set(['tablePrefix', 'synchronous', 'busyTimeout', 'clock', 'writer']);

type Database = BetterSqlite3.Database;
type Statement<P extends unknown[], R = unknown> = BetterSqlite3.Statement<P, R>;

interface Row {
  key: string;
  value: string | null;
  version: number;
}

/** The prepared statements of one collection's table. */
interface TableStatements extends UpsertStatements {
  readonly load: Statement<[string], Row>;
  readonly maxVersion: Statement<[], number>;
  /** `IN (...)` loads, by list size, prepared on first use. */
  readonly loadIn: Map<number, Statement<string[], Row>>;
  readonly table: string;
}

/**
 * A store on a SQLite file, or on a better-sqlite3 Database you opened.
 *
 * Given a path, the store opens the file (creating it), sets WAL mode, `synchronous` and
 * `busy_timeout`, and closes it on `close()`. Given a Database, the store applies the same
 * settings to it, shares it with you and leaves it open on `close()`.
 */
export function sqliteStore(fileOrDb: string | Database, options: SqliteStoreOptions = {}): Store {
  const settings = validateOptions(options);
  const owned = typeof fileOrDb === 'string';
  const db = owned ? openDatabase(fileOrDb) : checkDatabase(fileOrDb);
  try {
    configure(db, settings);
  } catch (error) {
    if (owned) db.close();
    throw error;
  }

  const writeBatch = batchWriter(db);
  // A file the store opened itself gets a writer thread; a Database passed in (or an in-memory
  // one, which a second connection cannot see) is written on the calling thread. The thread
  // opens the file later: its path is fixed now, in case the working directory changes.
  const thread =
    owned && settings.writer === 'thread' && !isMemoryFile(fileOrDb)
      ? new SqliteWriterThread({ file: resolvePath(fileOrDb), busyTimeout: settings.busyTimeout, synchronous: settings.synchronous })
      : undefined;
  const tables = new Map<string, TableStatements>();
  let closed = false;

  function statementsFor(collection: string): TableStatements {
    if (closed) {
      throw new CachewiseError('E_CLOSED', 'the SQLite store is closed', 'create a new store, or stop using this one after close()');
    }
    const cached = tables.get(collection);
    if (cached) return cached;
    const table = quote(tableName(settings.tablePrefix, collection));
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (` +
        '"key" TEXT PRIMARY KEY NOT NULL, "value" TEXT, "version" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL)',
    );
    let statements: TableStatements;
    try {
      statements = prepareStatements(table);
    } catch (error) {
      throw new CachewiseError(
        'E_STORE_FAILED',
        `the table ${table} exists without the layout the store needs ` +
          '("key" TEXT PRIMARY KEY, "value" TEXT, "version" INTEGER NOT NULL, "updated_at" INTEGER NOT NULL)',
        'migrate or rename that table, or choose another tablePrefix',
        { cause: error, details: { table, collection } },
      );
    }
    tables.set(collection, statements);
    return statements;
  }

  function prepareStatements(table: string): TableStatements {
    return {
      table,
      load: db.prepare<[string], Row>(`SELECT "key", "value", "version" FROM ${table} WHERE "key" = ?`).safeIntegers(false),
      ...prepareUpserts(db, table),
      maxVersion: db.prepare<[], number>(`SELECT coalesce(max("version"), 0) FROM ${table}`).pluck().safeIntegers(false),
      loadIn: new Map(),
    };
  }

  function loadInStatement(s: TableStatements, size: number): Statement<string[], Row> {
    let statement = s.loadIn.get(size);
    if (!statement) {
      const params = new Array<string>(size).fill('?').join(', ');
      statement = db.prepare<string[], Row>(`SELECT "key", "value", "version" FROM ${s.table} WHERE "key" IN (${params})`).safeIntegers(false);
      s.loadIn.set(size, statement);
    }
    return statement;
  }

  return {
    kind: 'sqlite',
    versioned: true,

    async prepare(collection) {
      statementsFor(collection);
    },

    async load(collection, key) {
      const row = statementsFor(collection).load.get(key);
      return row === undefined ? undefined : toRecord(row);
    },

    async loadMany(collection, keys) {
      const s = statementsFor(collection);
      const found = new Map<string, StoreRecord>();
      for (let start = 0; start < keys.length; start += MAX_IN_LIST) {
        const chunk = keys.slice(start, start + MAX_IN_LIST);
        const size = IN_LIST_SIZES.find((n) => n >= chunk.length) ?? MAX_IN_LIST;
        // Padding repeats a key of the chunk: IN ignores duplicates.
        const params = chunk.concat(new Array<string>(size - chunk.length).fill(chunk[0]!));
        for (const row of loadInStatement(s, size).all(...params)) found.set(row.key, toRecord(row));
      }
      return keys.map((key) => found.get(key));
    },

    async write(collection, writes) {
      const s = statementsFor(collection);
      if (writes.length === 0) return [];
      // Entries the store refuses before touching the database.
      const skip = new Map<number, WriteOutcome>();
      writes.forEach((write, i) => {
        const problem = invalidWrite(write);
        if (problem) skip.set(i, { status: 'failed', error: problem, permanent: true });
      });
      const now = settings.clock.now();
      if (thread === undefined) return writeBatch(s, writes, now, skip);
      if (skip.size === writes.length) return writes.map((_, i) => skip.get(i)!);
      if (skip.size === 0) return thread.write(s.table, writes, now);
      const outcomes = await thread.write(s.table, writes.filter((_, i) => !skip.has(i)), now);
      let next = 0;
      return writes.map((_, i) => skip.get(i) ?? outcomes[next++]!);
    },

    async maxVersion(collection) {
      return statementsFor(collection).maxVersion.get() ?? 0;
    },

    async close() {
      if (closed) return;
      closed = true;
      tables.clear();
      await thread?.close();
      if (owned) db.close();
    },
  };
}

function toRecord(row: Row): StoreRecord {
  return { version: row.version, json: row.value ?? undefined };
}

/** Why the store refuses a write before sending it, or undefined when it is well formed. */
function invalidWrite(write: StoreWrite): CachewiseError | undefined {
  if (typeof write.key !== 'string') {
    return new CachewiseError('E_INVALID_KEY', `the key ${String(write.key)} is not a string`, 'pass string keys');
  }
  if (!Number.isSafeInteger(write.version) || write.version < 0) {
    return new CachewiseError(
      'E_STORE_FAILED',
      `the version ${String(write.version)} of key "${write.key}" is not a non-negative safe integer`,
      'pass versions from the cache version clock',
      { details: { key: write.key, version: write.version } },
    );
  }
  if (write.op === 'set' && typeof write.json !== 'string') {
    return new CachewiseError('E_INVALID_VALUE', `the value of key "${write.key}" is not JSON text`, 'encode values with encodeValue()', {
      details: { key: write.key },
    });
  }
  if (write.op !== 'set' && write.op !== 'delete') {
    return new CachewiseError('E_STORE_FAILED', `unknown write operation ${String((write as { op: unknown }).op)}`, "use op 'set' or 'delete'");
  }
  return undefined;
}

/** The validated table name `<prefix><collection>` (unquoted). */
function tableName(prefix: string, collection: string): string {
  if (typeof collection !== 'string' || !IDENTIFIER.test(collection)) {
    throw invalidOption(
      'collection',
      `the collection name ${JSON.stringify(collection)} is not a valid SQL identifier`,
      'use letters, digits and underscores, not starting with a digit',
    );
  }
  const name = prefix + collection;
  if (name.length > MAX_TABLE_NAME) {
    throw invalidOption(
      'collection',
      `the table name "${name}" is ${name.length} characters, over the limit of ${MAX_TABLE_NAME}`,
      'use a shorter collection name or tablePrefix',
    );
  }
  if (/^sqlite_/i.test(name)) {
    throw invalidOption('collection', `the table name "${name}" starts with "sqlite_", which SQLite reserves`, 'use another collection name or tablePrefix');
  }
  return name;
}

function quote(identifier: string): string {
  // Validated identifiers hold no quotes; quoting still keeps keywords (e.g. "order") usable.
  return `"${identifier}"`;
}

interface Settings {
  tablePrefix: string;
  synchronous: 'full' | 'normal';
  busyTimeout: number;
  clock: Clock;
  writer: 'thread' | 'inline';
}

function validateOptions(options: SqliteStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', 'sqliteStore options must be an object', 'pass { tablePrefix, synchronous, busyTimeout, clock, writer } or nothing');
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw invalidOption(name, `unknown sqliteStore option "${name}"`, `use only ${[...KNOWN_OPTIONS].join(', ')}`);
    }
  }
  const { tablePrefix = 'cachewise_', synchronous = 'full', busyTimeout = 5000, clock = systemClock, writer = 'thread' } = options;
  if (typeof tablePrefix !== 'string' || (tablePrefix !== '' && !IDENTIFIER.test(tablePrefix)) || tablePrefix.length >= MAX_TABLE_NAME) {
    throw invalidOption(
      'tablePrefix',
      `tablePrefix ${JSON.stringify(tablePrefix)} is not a valid SQL identifier prefix`,
      `use letters, digits and underscores, not starting with a digit, under ${MAX_TABLE_NAME} characters`,
    );
  }
  if (synchronous !== 'full' && synchronous !== 'normal') {
    throw invalidOption('synchronous', `synchronous must be 'full' or 'normal', got ${JSON.stringify(synchronous)}`, "use 'full' (durable on power loss) or 'normal'");
  }
  if (!Number.isSafeInteger(busyTimeout) || busyTimeout < 0) {
    throw invalidOption('busyTimeout', `busyTimeout must be a non-negative integer of milliseconds, got ${String(busyTimeout)}`, 'use e.g. 5000');
  }
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') {
    throw invalidOption('clock', 'clock must be an object with a now() method', 'pass a Clock, or leave clock unset for the system clock');
  }
  if (writer !== 'thread' && writer !== 'inline') {
    throw invalidOption('writer', `writer must be 'thread' or 'inline', got ${JSON.stringify(writer)}`, "use 'thread' (commits off the event loop) or 'inline'");
  }
  return { tablePrefix, synchronous, busyTimeout, clock, writer };
}

function invalidOption(option: string, message: string, remedy: string): CachewiseError {
  return new CachewiseError('E_INVALID_OPTION', message, remedy, { details: { option } });
}

function openDatabase(file: string): Database {
  let Driver: typeof BetterSqlite3;
  try {
    Driver = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code !== 'MODULE_NOT_FOUND') {
      throw new CachewiseError('E_MISSING_DEPENDENCY', 'better-sqlite3 is installed but failed to load', 'npm rebuild better-sqlite3, or reinstall it with npm install better-sqlite3@12', {
        cause: error,
      });
    }
    throw new CachewiseError('E_MISSING_DEPENDENCY', 'sqliteStore needs the better-sqlite3 package, which is not installed', 'npm install better-sqlite3@12', {
      cause: error,
    });
  }
  try {
    return new Driver(file);
  } catch (error) {
    throw new CachewiseError('E_STORE_FAILED', `cannot open the SQLite database ${JSON.stringify(file)}`, 'check that the directory exists and is writable', {
      cause: error,
      details: { file },
    });
  }
}

function checkDatabase(db: Database): Database {
  if (typeof db !== 'object' || db === null || typeof db.prepare !== 'function' || typeof db.pragma !== 'function') {
    throw invalidOption('fileOrDb', 'sqliteStore needs a file path or a better-sqlite3 Database', 'pass a path string, or new Database(path)');
  }
  if (!db.open) {
    throw invalidOption('fileOrDb', 'the better-sqlite3 Database is closed', 'pass an open Database');
  }
  return db;
}

/** True for SQLite's private databases, which a second connection cannot open. */
function isMemoryFile(file: string): boolean {
  return file === '' || file === ':memory:' || file.startsWith('file::memory:');
}
