/**
 * The seed's words: its comparison table ("Comparison: Which Pattern When?") and its "user
 * activity feed" combination, quoted so the demo can print them next to what it measures. The
 * demo's sixth row, write-back with a durable journal, is not in the seed: its seed columns say so.
 */

/** The seed's five patterns. */
export type PatternId = 'write-through' | 'write-back' | 'write-around' | 'read-through' | 'cache-aside';

/** The demo's rows: the seed's five patterns, and write-back with a durable journal. */
export type RowId = PatternId | 'write-back-journal';

export interface SeedRow {
  readonly pattern: string;
  readonly writeLatency: string;
  readonly consistency: string;
  readonly durability: string;
  readonly complexity: string;
  readonly bestFor: string;
}

export const SEED_TABLE: Readonly<Record<PatternId, SeedRow>> = {
  'write-through': {
    pattern: 'Write-Through',
    writeLatency: 'High (DB latency)',
    consistency: 'Strong',
    durability: 'Immediate',
    complexity: 'Medium',
    bestFor: 'Critical data, financial systems',
  },
  'write-back': {
    pattern: 'Write-Back',
    writeLatency: 'Very Low (cache latency)',
    consistency: 'Eventual',
    durability: 'Delayed',
    complexity: 'Medium',
    bestFor: 'High-throughput analytics, metrics',
  },
  'write-around': {
    pattern: 'Write-Around',
    writeLatency: 'Depends on DB',
    consistency: 'Strong',
    durability: 'Immediate',
    complexity: 'Low',
    bestFor: 'Infrequent rereads, write-heavy workloads',
  },
  'read-through': {
    pattern: 'Read-Through',
    writeLatency: '-',
    consistency: 'Depends on pattern',
    durability: 'Depends on pattern',
    complexity: 'Low',
    bestFor: 'Reduces app-side boilerplate',
  },
  'cache-aside': {
    pattern: 'Cache-Aside',
    writeLatency: '-',
    consistency: 'App-controlled',
    durability: 'App-controlled',
    complexity: 'High',
    bestFor: 'Maximum flexibility and control',
  },
};

/** What a seed column says for a row the seed does not have. */
export const NOT_IN_SEED = '— not in the seed';

/**
 * The seed's words for a row of the demo: the seed's own row, or, for write-back with a durable
 * journal (which the seed does not have: its write-back is "Delayed", "one cache failure = data
 * loss"), its name and NOT_IN_SEED in every column.
 */
export function seedRowOf(id: RowId): SeedRow {
  if (id !== 'write-back-journal') return SEED_TABLE[id];
  return {
    pattern: 'Write-Back + journal',
    writeLatency: NOT_IN_SEED,
    consistency: NOT_IN_SEED,
    durability: NOT_IN_SEED,
    complexity: NOT_IN_SEED,
    bestFor: NOT_IN_SEED,
  };
}

/** "Real systems rarely stick to pure patterns. Consider a user activity feed:" */
export const SEED_FEED = {
  events: 'Incoming events → Write-Back to cache (fast ingestion, eventual durability via background worker)',
  feeds: 'Feed reads → Read-Through cache (transparent cache population)',
  profiles: 'User profile updates → Write-Through (critical consistency)',
  thumbnails: 'Thumbnails → Write-Around (write to blob storage, cache on view)',
} as const;
