/**
 * Events for every failure the library absorbed (contract 10). None is named 'error', so an
 * application without listeners never crashes because of one.
 */
import { EventEmitter } from 'node:events';

export interface CacheEvents {
  /** A cache-tier call failed or timed out; the operation went on without it. */
  'tier-error': { collection: string; key?: string; operation: string; error: unknown };
  /** The circuit breaker in front of a tier that does I/O changed state (open: calls fail at once). */
  'tier-circuit': { state: 'closed' | 'open' | 'half-open' };
  /** A key's cached copy could not be invalidated; reads of it bypass the tier until repaired. */
  'key-quarantined': { collection: string; key: string; error: unknown };
  /** A load from the database failed. */
  'load-error': { collection: string; key: string; error: unknown };
  /** An expired value was served because the database failed (stale-if-error). */
  'stale-served': { collection: string; key: string; ageMs: number; error: unknown };
  /** A write-back batch failed; the writes will be retried after `delayMs`. */
  'flush-retry': { collection: string; keys: number; attempt: number; delayMs: number; error: unknown };
  /** A write-back write gave up and went to the dead letters. */
  'dead-letter': { collection: string; key: string; version: number; reason: string; attempts: number };
  /** A writer waited for, or was refused, room in the write-back queue. */
  'backpressure': { collection: string; pending: number; pendingBytes: number; rejected: boolean };
  /** Acknowledged write-back writes that will never reach the database (durability 'none'). */
  'writes-lost': { collection: string; count: number; keys: string[] };
  /** Writes of dead instances taken over from a shared journal, to replay (`collection` undefined: not declared yet). */
  'journal-claimed': { collection: string | undefined; count: number };
  /**
   * The cache's writer slot changed (see createCache's writerId): `claimed` true when it now holds
   * `slot` in the shared tier (another process took `previous` while this one could not renew
   * it, or a claim that failed at start succeeded); false when it lost its claim and found no
   * free slot, and goes on in `previous`, unclaimed.
   */
  'writer-slot': { slot: number; previous: number; claimed: boolean };
  /** A journal call made by the cache in the background failed (a claim of dead instances' writes). */
  'journal-error': { operation: string; error: unknown };
}

export type CacheEventName = keyof CacheEvents;

/** EventEmitter with typed events. */
export class CacheEventEmitter extends EventEmitter {
  override on<E extends CacheEventName>(event: E, listener: (payload: CacheEvents[E]) => void): this {
    return super.on(event, listener);
  }
  override once<E extends CacheEventName>(event: E, listener: (payload: CacheEvents[E]) => void): this {
    return super.once(event, listener);
  }
  override off<E extends CacheEventName>(event: E, listener: (payload: CacheEvents[E]) => void): this {
    return super.off(event, listener);
  }
  override emit<E extends CacheEventName>(event: E, payload: CacheEvents[E]): boolean {
    return super.emit(event, payload);
  }
}
