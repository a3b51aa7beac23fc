/**
 * The five patterns as the demo runs them: each a collection policy, a way to read, and, for the
 * two read patterns that have no writes of their own, the write pattern they are paired with
 * (the pairings the seed itself names).
 */
import type { CollectionPolicy } from '../../index.js';
import type { PatternId } from './seed-table.js';

export interface PatternSpec {
  readonly id: PatternId;
  /** Collection (and table) name. */
  readonly collection: string;
  readonly policy: CollectionPolicy;
  /** 'get': read-through; 'lookup-fill': cache-aside, the application loads and fills. */
  readonly reads: 'get' | 'lookup-fill';
  /** How the demo runs it, in a few words. */
  readonly setup: string;
  /** Why it is run this way, when that is a choice. */
  readonly note?: string;
}

export const PATTERNS: readonly PatternSpec[] = [
  {
    id: 'write-through',
    collection: 'demo_write_through',
    policy: { write: 'through', read: 'through' },
    reads: 'get',
    setup: 'write-through writes, read-through reads',
  },
  {
    id: 'write-back',
    collection: 'demo_write_back',
    policy: { write: 'back', read: 'through', durability: 'none' },
    reads: 'get',
    setup: "write-back writes (durability 'none', flush every 100 ms), read-through reads",
  },
  {
    id: 'write-around',
    collection: 'demo_write_around',
    policy: { write: 'around', read: 'through' },
    reads: 'get',
    setup: 'write-around writes, read-through reads',
  },
  {
    id: 'read-through',
    collection: 'demo_read_through',
    policy: { write: 'through', read: 'through' },
    reads: 'get',
    setup: 'read-through reads, write-through writes',
    note: 'read-through has no writes of its own: its writes are write-through (the seed\'s "Write-Through + Read-Through"), so its write and durability columns are those of write-through',
  },
  {
    id: 'cache-aside',
    collection: 'demo_cache_aside',
    policy: { write: 'around', read: 'aside' },
    reads: 'lookup-fill',
    setup: 'cache-aside reads (lookup, load, fill), write-around writes',
    note: 'cache-aside has no writes of its own: its writes are write-around (the seed\'s publishArticle/getArticle example), so its write and durability columns are those of write-around',
  },
];

export function patternById(id: string): PatternSpec | undefined {
  return PATTERNS.find((p) => p.id === id);
}
