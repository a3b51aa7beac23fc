/**
 * Write-through (contract 3): the database commits, then the cache holds the new version
 * (or, for a delete, a tombstone). `set` resolves only after both.
 */
import type { TierEntry } from '../tiers/tier.js';
import type { CollectionContext } from './context.js';
import type { CacheStep } from './database-first.js';

export const writeThroughStep: CacheStep = async (ctx, write, version, generation) => {
  if (write.op === 'set') await cacheWriteIn(ctx, write.key, ctx.valueEntry(write.value, version), generation);
  else await ctx.protect(write.key, version);
};

/**
 * ctx.cacheWrite under the generation the write began in: a tier that lost its memory since
 * refuses the entry and invalidates the key at its version instead (Tier.set), so the key holds
 * this version, a newer one, or a tombstone that sends reads to the database. Never throws.
 */
async function cacheWriteIn(ctx: CollectionContext, key: string, entry: TierEntry, generation: unknown): Promise<void> {
  if (generation === undefined) return ctx.cacheWrite(key, entry);
  try {
    await ctx.callTier('set', key, () => ctx.tier.set(ctx.tierKey(key), entry, generation));
  } catch {
    await ctx.protect(key, entry.version);
    return;
  }
  // A key quarantined in this process stays so until an invalidation at this version or newer
  // gets through (cacheWrite would release it here, but takes no generation).
  if (ctx.isQuarantined(key)) await ctx.protect(key, entry.version);
}
