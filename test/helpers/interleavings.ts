/**
 * The parts shared by the randomised interleaving tests (staleness.test.ts,
 * two-tier-interleavings.test.ts): how many runs, how to replay a failure, the database faults a
 * plan asks for, the rows a run starts from, and a deadline on anything that could hang.
 */
import fc from 'fast-check';
import type { StoreWrite } from '../../src/stores/store.js';
import type { FaultyStore, WriteFault } from './faulty-store.js';
import { tagOf, written, type History, type StoreLedger } from './history.js';

/**
 * Failures show the violations and the history, not only the counterexample. To replay one, run
 * its test alone with FC_SEED and FC_PATH set to the seed and path it printed.
 */
export function configureReplay(): void {
  fc.configureGlobal({
    includeErrorInReport: true,
    ...(process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH }),
  });
}

/** Runs per property; RUNS=n in the environment searches deeper (or faster). */
export function runs(numRuns: number): { numRuns: number } {
  return { numRuns: process.env.RUNS === undefined ? numRuns : Number(process.env.RUNS) };
}

/**
 * The database faults a plan asks for, one per written value (by its tag), each injected once,
 * when the batch holding that value reaches the store: a retried write goes through.
 */
export class PlannedWriteFaults {
  private readonly planned = new Map<string, WriteFault>();

  constructor(
    private readonly history: History,
    private readonly store: FaultyStore,
  ) {}

  plan(value: unknown, fault: WriteFault): void {
    this.planned.set(tagOf(value)!, fault);
  }

  /** For ScheduledStore's beforeWrite: records the versions sent, and arms the batch's fault. */
  readonly beforeWrite = (_collection: string, writes: readonly StoreWrite[]): void => {
    this.history.sent(writes);
    this.store.writeFaults = [];
    for (const w of writes) {
      const tag = w.op === 'set' ? tagOf(JSON.parse(w.json))! : undefined;
      const fault = tag === undefined ? undefined : this.planned.get(tag);
      if (fault === undefined) continue;
      this.planned.delete(tag!);
      this.store.writeFaults = [fault];
      break;
    }
  };
}

/** Puts a first value of each of `keys` in the database (versions 1, 2, ...), as the history's starting point. */
export async function seedRows(ledger: StoreLedger, history: History, collection: string, keys: readonly string[]): Promise<void> {
  for (const [i, key] of keys.entries()) {
    const value = written(0, i);
    await ledger.write(collection, [{ op: 'set', key, version: i + 1, json: JSON.stringify(value) }]);
    history.seed(key, tagOf(value)!, i + 1);
  }
}

/** `promise`, or an error after 10 s: something hangs. */
export async function withDeadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within 10 s: something hangs`)), 10_000);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
