/**
 * A collection's policy: one write pattern and one read pattern per kind of data (contract 8),
 * with the options each needs. `resolvePolicy` validates and fills defaults; it refuses the
 * combinations the seed calls mistakes, quoting why.
 */
import { DEFAULT_MAX_VALUE_BYTES } from './codec.js';
import { toMs, type Duration } from './duration.js';
import { CachewiseError } from './errors.js';

export type WritePattern = 'through' | 'back' | 'around';
export type ReadPattern = 'through' | 'aside';
export type Durability = 'none' | 'journal';

export interface RetryOptions {
  /** Attempts per write before it goes to the dead letters (transient errors). Default 10; Infinity retries forever. */
  maxAttempts?: number;
  /** First backoff delay. Default '100ms'. */
  baseDelay?: Duration;
  /** Cap of the exponential backoff. Default '30s'. */
  maxDelay?: Duration;
}

export interface FlushOptions {
  /** Most writes per database batch. Default 500. */
  maxBatch?: number;
  /** Longest a write waits before its batch is sent, when the batch is not full. Default '100ms'. */
  maxDelay?: Duration;
  /** Batches in flight at once (per-key order is kept regardless). Default 2. */
  concurrency?: number;
}

export interface PendingOptions {
  /** Most keys waiting to be flushed. Default 10,000. */
  maxEntries?: number;
  /** Most bytes (JSON) waiting to be flushed. Default 64 MiB. */
  maxBytes?: number;
  /** When full: 'wait' for room (up to waitTimeout), or 'reject' at once. Default 'wait'. */
  onFull?: 'wait' | 'reject';
  /** How long a writer waits for room before E_BACKPRESSURE. Default '5s'. */
  waitTimeout?: Duration;
}

export interface CollectionPolicy {
  /** 'through': database then cache; 'back': cache now, database later; 'around': database only, cache invalidated. */
  write: WritePattern;
  /** 'through': the cache loads misses from the store; 'aside': the application loads and fills (lease-protected). */
  read: ReadPattern;
  /** How long a cached value is fresh. Default '5m'. */
  ttl?: Duration;
  /** Fraction of the TTL taken off at random per entry, so entries filled together do not expire together. Default 0.1. */
  ttlJitter?: number;
  /** Data whose loss has legal or business consequences: write-back then requires durability 'journal'. */
  critical?: boolean;
  /** After the TTL, serve the old value for this long while one background load refreshes it. Default 0 (off). */
  staleWhileRevalidate?: Duration;
  /** After the TTL, serve the old value for this long when the database fails. Default 0 (off). */
  staleIfError?: Duration;
  /** Cache "not in the database" for this long (negative caching). Default 0 (off). */
  negativeTtl?: Duration;
  /** Bound on one load from the database. Default '10s'. */
  loadTimeout?: Duration;
  /**
   * On a shared tier, how long a miss waits for another process that holds the key's lease to
   * fill it, before loading itself. Default '2s'.
   */
  leaseWait?: Duration;
  /** Bound on one database write; past it the outcome is unknown and the key is invalidated. Default '10s'. */
  storeTimeout?: Duration;
  /** Bound on one cache-tier call for tiers that do I/O; past it reads go to the database. Default '1s'. */
  tierTimeout?: Duration;
  /** Largest value, as JSON bytes. Default 1 MiB. */
  maxValueBytes?: number;
  /** Write-back: 'none' (the seed's plain write-back; a crash loses unflushed writes) or 'journal'. Default 'none'. */
  durability?: Durability;
  /** Write-back batching. */
  flush?: FlushOptions;
  /** Write-back retries of transient database errors. */
  retry?: RetryOptions;
  /** Write-back bound on pending work. */
  pending?: PendingOptions;
}

export interface ResolvedPolicy {
  readonly write: WritePattern;
  readonly read: ReadPattern;
  readonly ttlMs: number;
  readonly ttlJitter: number;
  readonly critical: boolean;
  readonly staleWhileRevalidateMs: number;
  readonly staleIfErrorMs: number;
  readonly negativeTtlMs: number;
  readonly loadTimeoutMs: number;
  readonly leaseWaitMs: number;
  readonly storeTimeoutMs: number;
  readonly tierTimeoutMs: number;
  readonly maxValueBytes: number;
  readonly durability: Durability;
  readonly flush: { readonly maxBatch: number; readonly maxDelayMs: number; readonly concurrency: number };
  readonly retry: { readonly maxAttempts: number; readonly baseDelayMs: number; readonly maxDelayMs: number };
  readonly pending: { readonly maxEntries: number; readonly maxBytes: number; readonly onFull: 'wait' | 'reject'; readonly waitTimeoutMs: number };
  /** How long tombstones and leases live: longer than any load may take. */
  readonly tombstoneTtlMs: number;
}

/** What the cache tells resolvePolicy about its parts (for contract 8's checks). */
export interface PolicyContext {
  readonly hasJournal: boolean;
  readonly tierCanInvalidate: boolean;
  /** The shared tier's eviction policy when it has one ('noeviction', 'allkeys-lru', 'unknown'...). */
  readonly sharedTierEvictionPolicy: string | undefined;
  /** How long a tier write may take by design (TierCapabilities.writeWaitMs). */
  readonly tierWriteWaitMs?: number;
}

const KNOWN_KEYS = new Set([
  'write', 'read', 'ttl', 'ttlJitter', 'critical', 'staleWhileRevalidate', 'staleIfError', 'negativeTtl',
  'loadTimeout', 'leaseWait', 'storeTimeout', 'tierTimeout', 'maxValueBytes', 'durability', 'flush', 'retry', 'pending',
]);

/** The seed's words, quoted when a policy repeats one of its "common mistakes". */
export const SEED_RULES = {
  writeBackCritical: 'Using write-back for critical data. One cache failure = data loss. Unacceptable.',
  writeThroughRollback: 'Implementing write-through without rollback logic. Partial failures leave cache and database inconsistent.',
  mixingPatterns: 'Mixing patterns inconsistently. Use the same pattern for the same data type across your codebase.',
  eviction: 'Ignoring cache eviction. Write-back data in an evicting cache can disappear before flushing.',
} as const;

export function resolvePolicy(collection: string, input: unknown, context: PolicyContext): ResolvedPolicy {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw optionError(collection, 'policy', input, "pass an object such as { write: 'through', read: 'through', ttl: '1h' }");
  }
  const policy = input as Record<string, unknown>;
  for (const key of Object.keys(policy)) {
    if (!KNOWN_KEYS.has(key)) throw optionError(collection, key, policy[key], `remove it; known options are ${[...KNOWN_KEYS].join(', ')}`);
  }
  const write = oneOf(collection, 'write', policy.write, ['through', 'back', 'around'] as const, undefined);
  const read = oneOf(collection, 'read', policy.read, ['through', 'aside'] as const, undefined);
  const durability = oneOf(collection, 'durability', policy.durability, ['none', 'journal'] as const, 'none');
  const critical = bool(collection, 'critical', policy.critical, false);

  const flush = objectOf(collection, 'flush', policy.flush, ['maxBatch', 'maxDelay', 'concurrency']);
  const retry = objectOf(collection, 'retry', policy.retry, ['maxAttempts', 'baseDelay', 'maxDelay']);
  const pending = objectOf(collection, 'pending', policy.pending, ['maxEntries', 'maxBytes', 'onFull', 'waitTimeout']);
  if (write !== 'back') {
    for (const name of ['flush', 'retry', 'pending', 'durability'] as const) {
      if (policy[name] !== undefined) {
        throw optionError(collection, name, policy[name], `remove it: "${name}" applies to write: 'back' only, and this collection writes '${write}'`);
      }
    }
  }

  if (write === 'back' && critical && durability !== 'journal') {
    throw new CachewiseError(
      'E_POLICY_REFUSED',
      `collection "${collection}" is critical and uses write-back without a durable journal. The seed: "${SEED_RULES.writeBackCritical}"`,
      "use write: 'through' for this data, or write-back with durability: 'journal' (and a journal in createCache)",
      { details: { collection, rule: 'writeBackCritical' } },
    );
  }
  if (write === 'back' && durability === 'journal' && !context.hasJournal) {
    throw new CachewiseError(
      'E_POLICY_REFUSED',
      `collection "${collection}" asks for durability 'journal' but the cache has no journal`,
      "pass a journal to createCache, or use durability: 'none' for data whose loss is acceptable",
      { details: { collection } },
    );
  }
  const eviction = context.sharedTierEvictionPolicy;
  if (write === 'back' && eviction !== undefined && eviction !== 'noeviction') {
    throw new CachewiseError(
      'E_POLICY_REFUSED',
      `collection "${collection}" uses write-back on a shared tier whose eviction policy is '${eviction}': another instance could miss an evicted entry that is not yet in the database and read the old row. The seed: "${SEED_RULES.eviction}"`,
      "set maxmemory-policy noeviction on that Redis (CONFIG SET maxmemory-policy noeviction), or use write: 'through' for this data",
      { details: { collection, rule: 'eviction', evictionPolicy: eviction } },
    );
  }
  if (write === 'through' && !context.tierCanInvalidate) {
    throw new CachewiseError(
      'E_POLICY_REFUSED',
      `collection "${collection}" uses write-through on a tier that cannot invalidate keys. The seed: "${SEED_RULES.writeThroughRollback}"`,
      'use a tier that supports invalidation (all built-in tiers do)',
      { details: { collection, rule: 'writeThroughRollback' } },
    );
  }

  const tierTimeoutMs = positiveMs(collection, 'tierTimeout', policy.tierTimeout, 1_000);
  if (context.tierWriteWaitMs !== undefined && tierTimeoutMs <= context.tierWriteWaitMs) {
    throw optionError(
      collection,
      'tierTimeout',
      policy.tierTimeout ?? '1s',
      `use a tierTimeout above ${context.tierWriteWaitMs} ms: the tier's writes wait that long for the other instances' acknowledgements (twoTier), and would time out while working; or shorten the bus's trustWindow`,
    );
  }
  const ttlMs = positiveMs(collection, 'ttl', policy.ttl, 300_000);
  const loadTimeoutMs = positiveMs(collection, 'loadTimeout', policy.loadTimeout, 10_000);
  const storeTimeoutMs = positiveMs(collection, 'storeTimeout', policy.storeTimeout, 10_000);
  const staleWhileRevalidateMs = durationMs(collection, 'staleWhileRevalidate', policy.staleWhileRevalidate, 0);
  const staleIfErrorMs = durationMs(collection, 'staleIfError', policy.staleIfError, 0);
  return {
    write,
    read,
    ttlMs,
    ttlJitter: fraction(collection, 'ttlJitter', policy.ttlJitter, 0.1),
    critical,
    staleWhileRevalidateMs,
    staleIfErrorMs,
    negativeTtlMs: durationMs(collection, 'negativeTtl', policy.negativeTtl, 0),
    loadTimeoutMs,
    leaseWaitMs: durationMs(collection, 'leaseWait', policy.leaseWait, 2_000),
    storeTimeoutMs,
    tierTimeoutMs,
    maxValueBytes: integer(collection, 'maxValueBytes', policy.maxValueBytes, DEFAULT_MAX_VALUE_BYTES, 1),
    durability,
    flush: {
      maxBatch: integer(collection, 'flush.maxBatch', flush.maxBatch, 500, 1),
      maxDelayMs: durationMs(collection, 'flush.maxDelay', flush.maxDelay, 100),
      concurrency: integer(collection, 'flush.concurrency', flush.concurrency, 2, 1),
    },
    retry: {
      maxAttempts: retry.maxAttempts === Infinity ? Infinity : integer(collection, 'retry.maxAttempts', retry.maxAttempts, 10, 1),
      baseDelayMs: positiveMs(collection, 'retry.baseDelay', retry.baseDelay, 100),
      maxDelayMs: positiveMs(collection, 'retry.maxDelay', retry.maxDelay, 30_000),
    },
    pending: {
      maxEntries: integer(collection, 'pending.maxEntries', pending.maxEntries, 10_000, 1),
      maxBytes: integer(collection, 'pending.maxBytes', pending.maxBytes, 64 * 1024 * 1024, 1),
      onFull: oneOf(collection, 'pending.onFull', pending.onFull, ['wait', 'reject'] as const, 'wait'),
      waitTimeoutMs: durationMs(collection, 'pending.waitTimeout', pending.waitTimeout, 5_000),
    },
    tombstoneTtlMs: Math.max(60_000, 2 * Math.max(loadTimeoutMs, storeTimeoutMs)),
  };
}

function optionError(collection: string, option: string, value: unknown, remedy: string): CachewiseError {
  let shown: string;
  try {
    shown = JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  return new CachewiseError('E_INVALID_OPTION', `collection "${collection}": option "${option}" is invalid (got ${shown})`, remedy, {
    details: { collection, option },
  });
}

function oneOf<const T extends string>(collection: string, option: string, value: unknown, allowed: readonly T[], fallback: T | undefined): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw optionError(collection, option, value, `use one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
}

function bool(collection: string, option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value === 'boolean') return value;
  throw optionError(collection, option, value, 'use true or false');
}

function objectOf(collection: string, option: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw optionError(collection, option, value, `pass an object with ${keys.join(', ')}`);
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw optionError(collection, `${option}.${key}`, (value as Record<string, unknown>)[key], `remove it; known options are ${keys.join(', ')}`);
  }
  return value as Record<string, unknown>;
}

function durationMs(collection: string, option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  try {
    return toMs(value, option);
  } catch (error) {
    throw optionError(collection, option, value, (error as CachewiseError).remedy);
  }
}

function positiveMs(collection: string, option: string, value: unknown, fallback: number): number {
  const ms = durationMs(collection, option, value, fallback);
  if (ms <= 0) throw optionError(collection, option, value, "use a duration above zero, such as '1s'");
  return ms;
}

function integer(collection: string, option: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min) return value;
  throw optionError(collection, option, value, `use a whole number >= ${min}`);
}

function fraction(collection: string, option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && value >= 0 && value < 1) return value;
  throw optionError(collection, option, value, 'use a number from 0 (no jitter) up to, not including, 1');
}

/** True when two declarations of a collection mean the same policy. */
export function samePolicy(a: ResolvedPolicy, b: ResolvedPolicy): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
