/**
 * The staleness checker. Every write stores a unique value {w: writer, s: sequence}; a read is
 * stale when it returns a value older than the newest write of that key that was acknowledged
 * before the read began (or nothing, when such a write exists). "Older" is by the version each
 * write was acknowledged with, which contract 1 makes strictly increasing per key. Reads are
 * judged after the run, when every value's version is known, so a read that returns the value
 * of a write still in flight is judged correctly too.
 */

/** The value every demo write stores: who wrote it, and a sequence number unique in the run. */
export interface DemoValue {
  readonly w: number;
  readonly s: number;
}

export interface StalenessReport {
  readonly reads: number;
  readonly stale: number;
  /** Reads that returned a value no write of the run produced (should never happen). */
  readonly foreign: number;
  /** A few stale reads, to show what went wrong. */
  readonly examples: readonly string[];
}

interface ObservedRead {
  readonly key: string;
  /** Newest version of the key acknowledged when the read began (0: none). */
  readonly floor: number;
  readonly returned: unknown;
}

export class StalenessChecker {
  private seq = 0;
  private readonly newestAcked = new Map<string, number>();
  private readonly versionOf = new Map<string, number>();
  private readonly reads: ObservedRead[] = [];

  /** A fresh unique value for `writer`. */
  nextValue(writer: number): DemoValue {
    return { w: writer, s: ++this.seq };
  }

  /** Records that the write of `value` to `key` was acknowledged with `version`. */
  acknowledged(key: string, value: DemoValue, version: number): void {
    this.versionOf.set(token(value), version);
    if (version > (this.newestAcked.get(key) ?? 0)) this.newestAcked.set(key, version);
  }

  /** Call as a read begins; pass the result to readReturned. */
  readStarted(key: string): number {
    return this.newestAcked.get(key) ?? 0;
  }

  readReturned(key: string, floor: number, returned: unknown): void {
    this.reads.push({ key, floor, returned });
  }

  report(): StalenessReport {
    let stale = 0;
    let foreign = 0;
    const examples: string[] = [];
    for (const read of this.reads) {
      const returnedVersion = this.versionOfValue(read.returned);
      if (returnedVersion === 'foreign') {
        foreign++;
        if (examples.length < 3) examples.push(`key ${read.key}: read ${JSON.stringify(read.returned)}, which no write produced`);
      } else if (returnedVersion < read.floor) {
        stale++;
        if (examples.length < 3) {
          examples.push(`key ${read.key}: read version ${returnedVersion || 'none'} after version ${read.floor} was acknowledged`);
        }
      }
    }
    return { reads: this.reads.length, stale, foreign, examples };
  }

  private versionOfValue(value: unknown): number | 'foreign' {
    if (value === undefined) return 0;
    if (!isDemoValue(value)) return 'foreign';
    return this.versionOf.get(token(value)) ?? 'foreign';
  }
}

export function isDemoValue(value: unknown): value is DemoValue {
  return typeof value === 'object' && value !== null && typeof (value as DemoValue).w === 'number' && typeof (value as DemoValue).s === 'number';
}

function token(value: DemoValue): string {
  return `${value.w}:${value.s}`;
}
