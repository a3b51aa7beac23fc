/**
 * Sends writes to the store within the store timeout and turns every way a batch can fail into
 * per-entry outcomes: a store error marked "not applied" failed; anything else (a timeout after
 * sending, a dropped connection) has an unknown outcome.
 */
import { CachewiseError } from '../errors.js';
import { isNotApplied, isPermanent, type StoreWrite, type WriteOutcome } from '../stores/store.js';
import { withTimeout } from '../util/timeout.js';
import type { CollectionContext } from './context.js';

export async function commit(ctx: CollectionContext, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
  ctx.stats.counters.storeBatches++;
  ctx.stats.counters.storeWrites += writes.length;
  try {
    const outcomes = await withTimeout(ctx.store.write(ctx.name, writes), ctx.policy.storeTimeoutMs, `${ctx.store.kind} write`);
    if (!Array.isArray(outcomes) || outcomes.length !== writes.length) {
      throw new CachewiseError(
        'E_STORE_FAILED',
        `the ${ctx.store.kind} store returned ${Array.isArray(outcomes) ? outcomes.length : 'no'} outcomes for ${writes.length} writes`,
        'fix the store: write() must return one outcome per write, in order',
      );
    }
    return outcomes;
  } catch (error) {
    if (isNotApplied(error)) return writes.map(() => ({ status: 'failed', error, permanent: isPermanent(error) }));
    return writes.map(() => ({ status: 'unknown', error }));
  }
}
