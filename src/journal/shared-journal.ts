/**
 * A journal that several instances share (the Redis Stream journal): each instance owns the
 * records it appended, and when an instance dies, the records it never released are taken over
 * by a live one, which must replay them (flush them to the database, then release them).
 *
 * `open` already returns the records of dead instances found at start. While running, the
 * write-back queue calls `claimAbandoned` every `claimEveryMs` and replays what it returns
 * exactly as it replays the records of `open`: replay is idempotent because the store is
 * version-guarded (contract 1), and the positions returned release like any other.
 */
import type { Journal, RecoveredRecord } from './journal.js';

export interface SharedJournal extends Journal {
  /**
   * Takes over the unreleased records of instances that died (stopped heartbeating for the
   * journal's claim idle time, or closed), and records that no instance owned: at most `limit`
   * of them (default all), so that a queue near its pending bound takes only what fits; the
   * rest wait for a later call. Resolves to the newest record per (collection, key) among them,
   * in append order; the caller replays them and releases their positions once they are in the
   * database. Resolves to [] when there is nothing to take, or when the journal is not open.
   * Rejects with E_STORE_FAILED when Redis cannot be reached (nothing is lost: call again later).
   */
  claimAbandoned(limit?: number): Promise<RecoveredRecord[]>;

  /** How often a live instance should call `claimAbandoned`, in milliseconds. */
  readonly claimEveryMs: number;
}

/** Whether `journal` is shared between instances and needs `claimAbandoned` calls. */
export function isSharedJournal(journal: Journal): journal is SharedJournal {
  return typeof (journal as Partial<SharedJournal>).claimAbandoned === 'function';
}
