/**
 * Write-around (contract 4): the database commits and the cached copy is invalidated; the cache
 * is not populated. The tombstone at the write's version keeps older loads from refilling it.
 */
import type { CacheStep } from './database-first.js';

export const writeAroundStep: CacheStep = async (ctx, write, version) => {
  await ctx.protect(write.key, version);
};
