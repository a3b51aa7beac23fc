/**
 * Versions (contract 1): a hybrid logical clock. A version is
 * (milliseconds since 2020-01-01) * 4096 + a logical counter * 16 + the writer's slot, so
 * versions follow wall time, stay below 2^53 until the year 2089, and still strictly increase
 * when more than 256 writes share a millisecond or the wall clock steps back.
 *
 * The slot (0 to 15, the low four bits) tells writers apart: two processes with different slots
 * can never give two writes the same version, so the database and a shared tier, which both keep
 * the higher version, cannot keep different writes of one version.
 *
 * The clock is seeded from the store's highest version on start and observes every version it
 * reads, so a restarted process, or one whose clock lags, still writes newer versions than any it
 * has seen.
 */
import { randomInt } from 'node:crypto';
import type { Clock } from './clock.js';
import { CachewiseError } from './errors.js';

const EPOCH_MS = Date.UTC(2020, 0, 1);
const PER_MS = 4096;
/** Writer slots: the low bits of a version. */
export const WRITER_SLOTS = 16;

export class VersionClock {
  private last = 0;
  private slot: number;

  /** `writerId`: the slot, 0 to 15; a random one when undefined. */
  constructor(
    private readonly clock: Clock,
    writerId?: number,
  ) {
    this.slot = writerId ?? randomInt(WRITER_SLOTS);
  }

  /** The slot this clock writes in. */
  get writerId(): number {
    return this.slot;
  }

  /** Issues later versions in `slot` (0 to 15): one claimed for this process in a shared tier. */
  moveTo(slot: number): void {
    this.slot = slot;
  }

  /** A version greater than every version issued or observed so far, in this clock's slot. */
  next(): number {
    const physical = Math.floor(this.clock.now() - EPOCH_MS) * PER_MS + this.slot;
    if (physical > this.last) return (this.last = physical);
    const after = this.last + 1;
    return (this.last = after + ((this.slot - (after % WRITER_SLOTS) + WRITER_SLOTS) % WRITER_SLOTS));
  }

  /** Makes later versions exceed `version` (seen in a tier, a store or a journal). */
  observe(version: number): void {
    if (version > this.last) this.last = version;
  }

  /** The wall-clock time (ms since the epoch) a version was issued at, for ages and lag. */
  static timeOf(version: number): number {
    return Math.floor(version / PER_MS) + EPOCH_MS;
  }

  /** The writer slot a version was issued in. */
  static writerOf(version: number): number {
    return version % WRITER_SLOTS;
  }
}

/** Checks the `writerId` option of createCache. */
export function assertWriterId(writerId: unknown): asserts writerId is number | undefined {
  if (writerId === undefined) return;
  if (typeof writerId !== 'number' || !Number.isInteger(writerId) || writerId < 0 || writerId >= WRITER_SLOTS) {
    throw new CachewiseError(
      'E_INVALID_OPTION',
      `createCache option "writerId" must be a whole number from 0 to ${WRITER_SLOTS - 1}, got ${typeof writerId === 'number' ? String(writerId) : typeof writerId}`,
      `give each process that writes to the same database its own writerId from 0 to ${WRITER_SLOTS - 1} (for example its replica index), or leave it out for a random one`,
      { details: { writerId } },
    );
  }
}
