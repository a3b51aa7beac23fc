/**
 * The store: the database behind the cache (SQLite, PostgreSQL, your own functions).
 *
 * Stores speak JSON text and versions. Every write is versioned: a store never lets an older
 * version replace a newer one (contract 1), and deletes leave a versioned row behind so that a
 * replayed or reordered older write cannot resurrect a deleted key.
 */

/** A row as loaded from the database. */
export interface StoreRecord {
  /** The row's version; 0 when the store keeps no versions (see `Store.versioned`). */
  readonly version: number;
  /** JSON text of the value; undefined when the row is a delete marker. */
  readonly json: string | undefined;
}

/** One write of a batch. */
export type StoreWrite =
  | { readonly op: 'set'; readonly key: string; readonly version: number; readonly json: string }
  | { readonly op: 'delete'; readonly key: string; readonly version: number };

/** What happened to one write of a batch. */
export type WriteOutcome =
  /** Committed. */
  | { readonly status: 'applied' }
  /** Not written because the database already holds this or a newer version (harmless). */
  | { readonly status: 'superseded'; readonly current: number }
  /** Not committed. `permanent`: retrying the same write will fail again (bad data, constraint). */
  | { readonly status: 'failed'; readonly error: unknown; readonly permanent: boolean }
  /** The store cannot tell whether it committed (a timeout after sending, a user function that threw). */
  | { readonly status: 'unknown'; readonly error: unknown };

export interface Store {
  /** Short name for stats and errors: 'sqlite', 'postgres', 'function'. */
  readonly kind: string;
  /** True when loads return real versions and writes are version-guarded. */
  readonly versioned: boolean;

  /** Makes the store ready for a collection (creates its table if needed). Idempotent. */
  prepare(collection: string): Promise<void>;

  /** The row for `key`, or undefined when the database has none. */
  load(collection: string, key: string): Promise<StoreRecord | undefined>;
  loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]>;

  /**
   * Writes a batch, in one transaction where the database allows, and reports per entry.
   * Keys in one batch are distinct. Throwing means the whole batch failed: the store marks the
   * error with `notApplied(error)` when it knows nothing was committed; otherwise the outcome is
   * treated as unknown.
   */
  write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]>;

  /** The highest version the collection holds (0 if none), to seed the version clock on start. */
  maxVersion?(collection: string): Promise<number>;

  close(): Promise<void>;
}

const NOT_APPLIED = Symbol.for('cachewise.notApplied');
const PERMANENT = Symbol.for('cachewise.permanent');

/** Marks an error thrown by a store as "nothing was committed". Returns the same error. */
export function notApplied<E>(error: E, options: { permanent?: boolean } = {}): E {
  if (typeof error === 'object' && error !== null) {
    Object.defineProperty(error, NOT_APPLIED, { value: true });
    if (options.permanent) Object.defineProperty(error, PERMANENT, { value: true });
  }
  return error;
}

/** True when a store marked the error as "nothing was committed". */
export function isNotApplied(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[NOT_APPLIED] === true;
}

/** True when a store marked the error as permanent (retrying cannot help). */
export function isPermanent(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[PERMANENT] === true;
}
