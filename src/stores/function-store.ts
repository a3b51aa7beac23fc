/**
 * The function store: your own tables or database behind the cache, through a few functions
 * (in the spirit of JCache's CacheLoaderWriter and Hazelcast's MapStore).
 *
 * Your functions see decoded, frozen values; the store turns them into JSON text for the cache,
 * refusing anything JSON cannot carry (contract 9). With `versioned: true` your functions keep
 * versions and guard them (contract 1 is then yours to keep: never let an older version replace a
 * newer one, and keep a versioned marker for deletes). Without it, loads report version 0.
 *
 * Outcomes per entry: a save or remove that resolves is applied, or superseded when it resolves
 * to `{ current }`. One that throws is 'unknown' (it may have committed), unless the error is
 * marked with `notApplied(error)`: then it failed, permanently if marked so.
 */
import { decodeValue, encodeValue } from '../codec.js';
import { CachewiseError, describeError } from '../errors.js';
import { isNotApplied, isPermanent, type Store, type StoreRecord, type StoreWrite, type WriteOutcome } from './store.js';

type Awaitable<T> = T | Promise<T>;

/** One entry handed to `saveMany`. */
export interface FunctionStoreEntry {
  readonly key: string;
  /** The value, decoded from JSON and deeply frozen. */
  readonly value: unknown;
  readonly version: number;
}

/** One entry handed to `removeMany`. */
export interface FunctionStoreRemoval {
  readonly key: string;
  readonly version: number;
}

/**
 * What a save or remove resolves to: `{ current }` when it did not write because the database
 * already holds version `current`, at least as new as this write; nothing when it wrote (any
 * other value, such as a driver's result object, also counts as written).
 */
export type FunctionWriteResult = void | undefined | { readonly current: number };

/**
 * What a batch save or remove resolves to: nothing when every entry was written, or an array
 * with one `FunctionWriteResult` per entry, in the order of the entries (an array of another
 * length makes every entry's outcome unknown).
 */
export type FunctionBatchResult = void | undefined | readonly FunctionWriteResult[];

/** A loaded row of a versioned function store. */
export interface FunctionStoreRecord {
  /** The value; undefined (or absent) when the row is a delete marker. */
  readonly value?: unknown;
  /** The row's version: a non-negative safe integer. */
  readonly version: number;
}

interface FunctionStoreCommonOptions {
  /**
   * Writes `value` at `version`. Resolve to nothing when written, or to `{ current }` when the
   * database already holds that version or a newer one (then write nothing). Throw when it
   * failed: mark the error with `notApplied(error)` if you know nothing was written, otherwise
   * the outcome counts as unknown.
   */
  save(key: string, value: unknown, version: number, collection: string): Awaitable<FunctionWriteResult>;
  /**
   * Optional batch `save`. Without it, the store calls `save` per entry (at most `concurrency` at
   * a time). Throwing fails the whole `write()` with your error.
   */
  saveMany?(entries: readonly FunctionStoreEntry[], collection: string): Awaitable<FunctionBatchResult>;
  /**
   * Deletes `key` as of `version`. A versioned store should keep a marker with the version, so
   * that an older save arriving later does not resurrect the key. Results and errors as `save`.
   */
  remove(key: string, version: number, collection: string): Awaitable<FunctionWriteResult>;
  /** Optional batch `remove`; without it, the store calls `remove` per entry. Errors as `saveMany`. */
  removeMany?(entries: readonly FunctionStoreRemoval[], collection: string): Awaitable<FunctionBatchResult>;
  /** Optional: makes the database ready for a collection (create a table...). Must be idempotent. */
  prepare?(collection: string): Awaitable<void>;
  /** Optional: the highest version the collection holds (0 if none), to seed the version clock. */
  maxVersion?(collection: string): Awaitable<number>;
  /** Optional: releases your resources; called once, by the store's `close()`. */
  close?(): Awaitable<void>;
  /** Most single `load`/`save`/`remove` calls in flight when a batch falls back to them. Default 16. */
  concurrency?: number;
}

/** A function store whose functions keep no versions: loads report version 0. */
export interface UnversionedFunctionStoreOptions extends FunctionStoreCommonOptions {
  /** False or absent: your database keeps no versions. */
  versioned?: false;
  /** The value stored for `key`, or undefined when there is none. */
  load(key: string, collection: string): Awaitable<unknown>;
  /**
   * Optional batch `load`: an array aligned with `keys` (undefined where missing), or a Map from
   * key to value. Without it, the store calls `load` per key.
   */
  loadMany?(keys: readonly string[], collection: string): Awaitable<readonly unknown[] | ReadonlyMap<string, unknown>>;
}

/** A function store whose functions keep and guard versions. */
export interface VersionedFunctionStoreOptions extends FunctionStoreCommonOptions {
  /** True: loads return versions and saves/removes refuse versions older than the stored one. */
  versioned: true;
  /** `{ value, version }` for `key` (value undefined for a delete marker), or undefined when there is no row. */
  load(key: string, collection: string): Awaitable<FunctionStoreRecord | undefined | null>;
  /**
   * Optional batch `load`: an array aligned with `keys`, or a Map from key to record. Without it,
   * the store calls `load` per key.
   */
  loadMany?(
    keys: readonly string[],
    collection: string,
  ): Awaitable<readonly (FunctionStoreRecord | undefined | null)[] | ReadonlyMap<string, FunctionStoreRecord | undefined | null>>;
}

export type FunctionStoreOptions = UnversionedFunctionStoreOptions | VersionedFunctionStoreOptions;

const DEFAULT_CONCURRENCY = 16;
const REQUIRED_FUNCTIONS = ['load', 'save', 'remove'] as const;
const OPTIONAL_FUNCTIONS = ['loadMany', 'saveMany', 'removeMany', 'prepare', 'maxVersion', 'close'] as const;
const KNOWN_OPTIONS = new Set<string>([...REQUIRED_FUNCTIONS, ...OPTIONAL_FUNCTIONS, 'versioned', 'concurrency']);

/** A store over your own functions. See `FunctionStoreOptions`. */
export function functionStore(options: FunctionStoreOptions): Store {
  const concurrency = validateOptions(options);
  const versioned = options.versioned === true;
  let closed = false;

  function checkOpen(): void {
    if (closed) {
      throw new CachewiseError('E_CLOSED', 'the function store is closed', 'create a new store, or stop using this one after close()');
    }
  }

  function toRecord(loaded: unknown, key: string, collection: string, fn: string): StoreRecord | undefined {
    if (loaded === undefined) return undefined;
    if (!versioned) return { version: 0, json: encodeLoaded(loaded, key, collection, fn) };
    if (loaded === null) return undefined;
    const record = loaded as Partial<FunctionStoreRecord>;
    if (typeof loaded !== 'object' || !Number.isSafeInteger(record.version) || (record.version as number) < 0) {
      throw new CachewiseError(
        'E_LOAD_FAILED',
        `${fn}() of collection "${collection}" returned ${describeLoaded(loaded)} for key "${key}", not { value, version } with a non-negative safe integer version`,
        'return { value, version } from a versioned store, undefined when there is no row, or set versioned: false',
        { details: { key, collection } },
      );
    }
    const json = record.value === undefined ? undefined : encodeLoaded(record.value, key, collection, fn);
    return { version: record.version as number, json };
  }

  async function loadOne(collection: string, key: string): Promise<StoreRecord | undefined> {
    return toRecord(await options.load(key, collection), key, collection, 'load');
  }

  /** Runs the entries through `batch` when given, else through `single` per entry. */
  async function writeGroup<E extends { readonly key: string }>(
    entries: readonly E[],
    batch: ((entries: readonly E[]) => Awaitable<FunctionBatchResult>) | undefined,
    single: (entry: E) => Awaitable<FunctionWriteResult>,
    name: string,
  ): Promise<WriteOutcome[]> {
    if (entries.length === 0) return [];
    if (batch) {
      const result = await batch(entries);
      if (!Array.isArray(result)) return entries.map(() => ({ status: 'applied' }));
      if (result.length !== entries.length) {
        const error = new CachewiseError(
          'E_STORE_UNKNOWN_OUTCOME',
          `${name}() returned ${describeLoaded(result)} for ${entries.length} entries`,
          `resolve ${name}() to nothing, or to an array with one result per entry`,
        );
        return entries.map(() => ({ status: 'unknown', error }));
      }
      return entries.map((entry, i) => interpretResult(result[i], entry.key, name));
    }
    const singleName = name.replace(/Many$/, '');
    return mapLimit(entries, concurrency, async (entry) => {
      try {
        return interpretResult(await single(entry), entry.key, singleName);
      } catch (error) {
        return outcomeOfError(error);
      }
    });
  }

  const store: Store = {
    kind: 'function',
    versioned,

    async prepare(collection) {
      checkOpen();
      await options.prepare?.(collection);
    },

    async load(collection, key) {
      checkOpen();
      return loadOne(collection, key);
    },

    async loadMany(collection, keys) {
      checkOpen();
      if (keys.length === 0) return [];
      if (!options.loadMany) return mapLimit(keys, concurrency, (key) => loadOne(collection, key));
      const loaded: unknown = await options.loadMany(keys, collection);
      if (loaded instanceof Map) return keys.map((key) => toRecord(loaded.get(key), key, collection, 'loadMany'));
      if (Array.isArray(loaded) && loaded.length === keys.length) {
        return keys.map((key, i) => toRecord(loaded[i], key, collection, 'loadMany'));
      }
      throw new CachewiseError(
        'E_LOAD_FAILED',
        `loadMany() of collection "${collection}" returned ${describeLoaded(loaded)} for ${keys.length} keys`,
        'return an array aligned with keys (undefined where missing), or a Map from key to value',
        { details: { collection } },
      );
    },

    async write(collection, writes) {
      checkOpen();
      const outcomes: WriteOutcome[] = new Array(writes.length);
      const saves: (FunctionStoreEntry & { index: number })[] = [];
      const removes: (FunctionStoreRemoval & { index: number })[] = [];
      writes.forEach((write, index) => {
        if (write.op === 'delete') {
          removes.push({ key: write.key, version: write.version, index });
          return;
        }
        try {
          saves.push({ key: write.key, value: decodeValue(write.json), version: write.version, index });
        } catch (error) {
          outcomes[index] = {
            status: 'failed',
            error: new CachewiseError('E_INVALID_VALUE', `the write of key "${write.key}" does not hold JSON text`, 'encode values with encodeValue()', {
              cause: error,
              details: { key: write.key },
            }),
            permanent: true,
          };
        }
      });

      const saveGroup = () =>
        writeGroup(
          saves,
          options.saveMany && ((entries) => options.saveMany!(entries.map(({ key, value, version }) => ({ key, value, version })), collection)),
          (e) => options.save(e.key, e.value, e.version, collection),
          'saveMany',
        );
      const removeGroup = () =>
        writeGroup(
          removes,
          options.removeMany && ((entries) => options.removeMany!(entries.map(({ key, version }) => ({ key, version })), collection)),
          (e) => options.remove(e.key, e.version, collection),
          'removeMany',
        );

      // A throwing batch function fails the whole write, unless the other group already wrote:
      // then the failed group's entries report the error and the written ones stay applied.
      const saveOutcomes = await saveGroup();
      let removeOutcomes: WriteOutcome[];
      try {
        removeOutcomes = await removeGroup();
      } catch (error) {
        if (saves.length === 0) throw error;
        removeOutcomes = removes.map(() => outcomeOfError(error));
      }
      saves.forEach((entry, i) => (outcomes[entry.index] = saveOutcomes[i]!));
      removes.forEach((entry, i) => (outcomes[entry.index] = removeOutcomes[i]!));
      return outcomes;
    },

    async close() {
      if (closed) return;
      closed = true;
      await options.close?.();
    },
  };

  if (options.maxVersion) {
    const maxVersion = options.maxVersion;
    store.maxVersion = async (collection) => {
      checkOpen();
      const max = await maxVersion(collection);
      if (!Number.isSafeInteger(max) || max < 0) {
        throw new CachewiseError(
          'E_LOAD_FAILED',
          `maxVersion() of collection "${collection}" returned ${describeLoaded(max)}`,
          'return the highest stored version as a non-negative safe integer, or 0 when there is none',
          { details: { collection } },
        );
      }
      return max;
    };
  }
  return store;
}

/** The outcome of a save or remove that threw. */
function outcomeOfError(error: unknown): WriteOutcome {
  return isNotApplied(error) ? { status: 'failed', error, permanent: isPermanent(error) } : { status: 'unknown', error };
}

/** The outcome of a save or remove that resolved to `result`. */
function interpretResult(result: unknown, key: string, fn: string): WriteOutcome {
  // Anything but `{ current }` (nothing, a driver's result object) means it wrote.
  if (typeof result !== 'object' || result === null || !('current' in result)) return { status: 'applied' };
  const current = result.current;
  if (typeof current === 'number' && Number.isSafeInteger(current) && current >= 0) {
    return { status: 'superseded', current };
  }
  return {
    status: 'unknown',
    error: new CachewiseError(
      'E_STORE_UNKNOWN_OUTCOME',
      `${fn}() returned ${describeLoaded(result)} for key "${key}"`,
      `resolve ${fn}() to { current } with the stored version (a non-negative integer) only when it refused an older version`,
      { details: { key } },
    ),
  };
}

function encodeLoaded(value: unknown, key: string, collection: string, fn: string): string {
  try {
    return encodeValue(value, Number.POSITIVE_INFINITY);
  } catch (error) {
    // The codec's message without its code prefix and remedy suffix, which are repeated below.
    const reason =
      error instanceof CachewiseError ? error.message.slice(error.code.length + 2, error.message.length - `. Remedy: ${error.remedy}`.length) : describeError(error);
    const remedy = error instanceof CachewiseError ? error.remedy : 'return plain JSON data';
    throw new CachewiseError('E_INVALID_VALUE', `${fn}() of collection "${collection}" returned a value for key "${key}" that JSON cannot carry: ${reason}`, remedy, {
      cause: error,
      details: { key, collection },
    });
  }
}

function describeLoaded(value: unknown): string {
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value === null) return 'null';
  if (value instanceof Map) return `a Map of ${value.size}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

/** Maps `items` through `fn`, at most `limit` calls in flight, results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function validateOptions(options: FunctionStoreOptions): number {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', 'functionStore needs an options object', 'pass { load, save, remove } and any optional functions');
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw invalidOption(name, `unknown functionStore option "${name}"`, `use only ${[...KNOWN_OPTIONS].join(', ')}`);
    }
  }
  const record = options as unknown as Record<string, unknown>;
  for (const name of REQUIRED_FUNCTIONS) {
    if (typeof record[name] !== 'function') {
      throw invalidOption(name, `functionStore option "${name}" must be a function, got ${describeLoaded(record[name])}`, `pass ${name}: ${signature(name)}`);
    }
  }
  for (const name of OPTIONAL_FUNCTIONS) {
    if (record[name] !== undefined && typeof record[name] !== 'function') {
      throw invalidOption(name, `functionStore option "${name}" must be a function when given, got ${describeLoaded(record[name])}`, `pass ${name}: ${signature(name)}, or leave it out`);
    }
  }
  if (record.versioned !== undefined && typeof record.versioned !== 'boolean') {
    throw invalidOption('versioned', `functionStore option "versioned" must be a boolean, got ${describeLoaded(record.versioned)}`, 'pass versioned: true when your functions keep versions, else leave it out');
  }
  const concurrency = record.concurrency ?? DEFAULT_CONCURRENCY;
  if (typeof concurrency !== 'number' || !Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw invalidOption('concurrency', `functionStore option "concurrency" must be a positive integer, got ${describeLoaded(concurrency)}`, `pass e.g. concurrency: ${DEFAULT_CONCURRENCY}`);
  }
  return concurrency;
}

function signature(name: (typeof REQUIRED_FUNCTIONS)[number] | (typeof OPTIONAL_FUNCTIONS)[number]): string {
  switch (name) {
    case 'load':
      return '(key, collection) => value | undefined';
    case 'save':
      return '(key, value, version, collection) => void';
    case 'remove':
      return '(key, version, collection) => void';
    case 'loadMany':
      return '(keys, collection) => values[] | Map';
    case 'saveMany':
      return '(entries, collection) => void';
    case 'removeMany':
      return '(entries, collection) => void';
    case 'prepare':
      return '(collection) => void';
    case 'maxVersion':
      return '(collection) => number';
    case 'close':
      return '() => void';
  }
}

function invalidOption(option: string, message: string, remedy: string): CachewiseError {
  return new CachewiseError('E_INVALID_OPTION', message, remedy, { details: { option } });
}
