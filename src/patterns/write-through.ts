/**
 * Write-through (contract 3): the database commits, then the cache holds the new version
 * (or, for a delete, a tombstone). `set` resolves only after both.
 */
import type { CacheStep } from './database-first.js';

export const writeThroughStep: CacheStep = async (ctx, write, version, generation) => {
  if (write.op === 'set') await ctx.cacheWrite(write.key, ctx.valueEntry(write.data!, version), generation);
  else await ctx.protect(write.key, version);
};
