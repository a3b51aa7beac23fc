/**
 * The seed's words: its comparison table ("Comparison: Which Pattern When?") and its "user
 * activity feed" combination, quoted so the demo can print them next to what it measures.
 */

export type PatternId = 'write-through' | 'write-back' | 'write-around' | 'read-through' | 'cache-aside';

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

/** "Real systems rarely stick to pure patterns. Consider a user activity feed:" */
export const SEED_FEED = {
  events: 'Incoming events → Write-Back to cache (fast ingestion, eventual durability via background worker)',
  feeds: 'Feed reads → Read-Through cache (transparent cache population)',
  profiles: 'User profile updates → Write-Through (critical consistency)',
  thumbnails: 'Thumbnails → Write-Around (write to blob storage, cache on view)',
} as const;
