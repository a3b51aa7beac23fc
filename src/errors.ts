/**
 * Typed errors. Every error the library throws is a CachewiseError with a stable `code`,
 * a message that names the remedy, and the underlying `cause` when there is one.
 */

export const ErrorCodes = {
  /** A key is not a non-empty string within the size limit. */
  E_INVALID_KEY: 'E_INVALID_KEY',
  /** A value cannot be stored as JSON without losing information (undefined, function, cycle...). */
  E_INVALID_VALUE: 'E_INVALID_VALUE',
  /** A value is larger than `maxValueBytes`. */
  E_VALUE_TOO_LARGE: 'E_VALUE_TOO_LARGE',
  /** An option has the wrong type or is out of range. */
  E_INVALID_OPTION: 'E_INVALID_OPTION',
  /** A policy the seed calls a mistake (write-back for critical data, ...). */
  E_POLICY_REFUSED: 'E_POLICY_REFUSED',
  /** The same collection was declared twice with different policies. */
  E_POLICY_CONFLICT: 'E_POLICY_CONFLICT',
  /** The operation does not exist for this collection's pattern. */
  E_WRONG_PATTERN: 'E_WRONG_PATTERN',
  /** The database rejected the write; nothing was committed. */
  E_STORE_FAILED: 'E_STORE_FAILED',
  /** The database may or may not have committed (timeout after send); the key was invalidated. */
  E_STORE_UNKNOWN_OUTCOME: 'E_STORE_UNKNOWN_OUTCOME',
  /**
   * The database committed the write, but a shared cache tier could neither take the new value
   * nor invalidate the old one: other processes may still read the old value until the
   * background repair reaches the tier. The write is not reported as done (contract 3).
   */
  E_TIER_UNAVAILABLE: 'E_TIER_UNAVAILABLE',
  /** A load from the database failed and no stale value could be served. */
  E_LOAD_FAILED: 'E_LOAD_FAILED',
  /** An operation did not finish within its timeout. */
  E_TIMEOUT: 'E_TIMEOUT',
  /** Write-back has too much pending work; the write was not accepted. */
  E_BACKPRESSURE: 'E_BACKPRESSURE',
  /** Some writes could not be flushed to the database (dead-lettered or deadline passed). */
  E_FLUSH_INCOMPLETE: 'E_FLUSH_INCOMPLETE',
  /** The cache or collection is closed. */
  E_CLOSED: 'E_CLOSED',
  /** An optional peer dependency (better-sqlite3, ioredis, pg) is not installed. */
  E_MISSING_DEPENDENCY: 'E_MISSING_DEPENDENCY',
  /** A lease is missing, foreign or malformed. */
  E_INVALID_LEASE: 'E_INVALID_LEASE',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class CachewiseError extends Error {
  readonly code: ErrorCode;
  /** What the caller can do about it. Also appended to the message. */
  readonly remedy: string;
  /** Extra facts for programs (key, collection, counts...). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    remedy: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(`${code}: ${message}. Remedy: ${remedy}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CachewiseError';
    this.code = code;
    this.remedy = remedy;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

export function isCachewiseError(error: unknown, code?: ErrorCode): error is CachewiseError {
  return error instanceof CachewiseError && (code === undefined || error.code === code);
}

/** Short description of any thrown thing, for events and dead letters. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
