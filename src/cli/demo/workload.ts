/**
 * The workload runner: a fixed number of writes and reads, shuffled together, run by concurrent
 * workers over a key space. Writes favour a hot tenth of the keys (so write-back has something
 * to coalesce); most reads re-read a recently written key (so the write pattern matters to the
 * next read), the rest read any key. Every write stores a unique value and every read is handed
 * to the staleness checker. Each worker yields to the event loop between operations, as a
 * server between requests would, so timers (write-back's flusher) run during the workload.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { below, shuffled, type Random } from './random.js';
import { Samples, type LatencyFigures } from './samples.js';
import type { DemoValue, StalenessChecker, StalenessReport } from './staleness.js';

/** The two operations a pattern offers the workload. */
export interface WorkloadTarget {
  /** Writes `value` and resolves to the version the write was acknowledged with. */
  write(key: string, value: DemoValue): Promise<number>;
  read(key: string): Promise<unknown>;
}

export interface WorkloadShape {
  readonly writes: number;
  readonly reads: number;
  readonly keys: number;
  readonly concurrency: number;
}

export interface WorkloadResult {
  readonly write: LatencyFigures;
  readonly read: LatencyFigures;
  readonly staleness: StalenessReport;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly durationMs: number;
}

/** Share of reads that re-read one of the most recently written keys. */
const REREAD_SHARE = 0.6;
/** How many recently written keys those re-reads choose from. */
const RECENT_KEYS = 64;
/** Share of writes that go to the hot tenth of the key space. */
const HOT_WRITE_SHARE = 0.5;

export function keyName(i: number): string {
  return `k${i}`;
}

export async function runWorkload(target: WorkloadTarget, shape: WorkloadShape, random: Random, checker: StalenessChecker): Promise<WorkloadResult> {
  const plan = shuffled(random, [...new Array<'w'>(shape.writes).fill('w'), ...new Array<'r'>(shape.reads).fill('r')]);
  const hotKeys = Math.max(1, Math.floor(shape.keys / 10));
  const recent: string[] = [];
  const writes = new Samples();
  const reads = new Samples();
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;

  const writeKey = () => keyName(random() < HOT_WRITE_SHARE ? below(random, hotKeys) : below(random, shape.keys));
  const readKey = () => (recent.length > 0 && random() < REREAD_SHARE ? recent[below(random, recent.length)]! : keyName(below(random, shape.keys)));

  async function worker(id: number): Promise<void> {
    while (next < plan.length) {
      const op = plan[next++];
      try {
        if (op === 'w') {
          const key = writeKey();
          const value = checker.nextValue(id);
          const version = await writes.time(() => target.write(key, value));
          checker.acknowledged(key, value, version);
          recent.push(key);
          if (recent.length > RECENT_KEYS) recent.shift();
        } else {
          const key = readKey();
          const floor = checker.readStarted(key);
          const value = await reads.time(() => target.read(key));
          checker.readReturned(key, floor, value);
        }
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
      await yieldToEventLoop();
    }
  }

  const started = performance.now();
  await Promise.all(Array.from({ length: shape.concurrency }, (_, i) => worker(i + 1)));
  return {
    write: writes.figures(),
    read: reads.figures(),
    staleness: checker.report(),
    errors,
    firstError,
    durationMs: performance.now() - started,
  };
}
