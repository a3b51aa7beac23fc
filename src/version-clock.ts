/**
 * Versions (contract 1): a hybrid logical clock. A version is
 * (milliseconds since 2020-01-01) * 4096 + a logical counter, so versions follow wall time,
 * stay below 2^53 until the year 2089, and still strictly increase when more than 4096 writes
 * share a millisecond or the wall clock steps back.
 *
 * The clock is seeded from the store's highest version on start and observes every version it
 * reads, so a restarted process, or one whose clock lags, still writes newer versions than any it
 * has seen.
 */
import type { Clock } from './clock.js';

const EPOCH_MS = Date.UTC(2020, 0, 1);
const LOGICAL_BITS_FACTOR = 4096;

export class VersionClock {
  private last = 0;

  constructor(private readonly clock: Clock) {}

  /** A version greater than every version issued or observed so far. */
  next(): number {
    const physical = Math.floor(this.clock.now() - EPOCH_MS) * LOGICAL_BITS_FACTOR;
    this.last = physical > this.last ? physical : this.last + 1;
    return this.last;
  }

  /** Makes later versions exceed `version` (seen in a tier, a store or a journal). */
  observe(version: number): void {
    if (version > this.last) this.last = version;
  }

  /** The wall-clock time (ms since the epoch) a version was issued at, for ages and lag. */
  static timeOf(version: number): number {
    return Math.floor(version / LOGICAL_BITS_FACTOR) + EPOCH_MS;
  }
}
