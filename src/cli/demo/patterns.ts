/**
 * The rows of the demo as it runs them: the seed's five patterns, then write-back with a durable
 * journal (not in the seed). Each is a collection policy, a way to read, and, for the two read
 * patterns that have no writes of their own, the write pattern they are paired with (the
 * pairings the seed itself names).
 */
import type { CollectionPolicy } from '../../index.js';
import type { RowId } from './seed-table.js';

export interface PatternSpec {
  readonly id: RowId;
  /** Collection (and table) name. */
  readonly collection: string;
  readonly policy: CollectionPolicy;
  /** 'get': read-through; 'lookup-fill': cache-aside, the application loads and fills. */
  readonly reads: 'get' | 'lookup-fill';
  /** How the demo runs it, in a few words. */
  readonly setup: string;
  /** Why it is run this way, when that is a choice. */
  readonly note?: string;
  /** A read pattern's writes: the row whose write pattern they are (the kill test writes with it). */
  readonly writesOf?: RowId;
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
    writesOf: 'write-through',
  },
  {
    id: 'cache-aside',
    collection: 'demo_cache_aside',
    policy: { write: 'around', read: 'aside' },
    reads: 'lookup-fill',
    setup: 'cache-aside reads (lookup, load, fill), write-around writes',
    note: 'cache-aside has no writes of its own: its writes are write-around (the seed\'s publishArticle/getArticle example), so its write and durability columns are those of write-around',
    writesOf: 'write-around',
  },
  {
    id: 'write-back-journal',
    collection: 'demo_write_back_journal',
    policy: { write: 'back', read: 'through', durability: 'journal' },
    reads: 'get',
    setup: "write-back writes (durability 'journal': set resolves once the write is fsynced in a file journal), read-through reads",
    note:
      'Write-Back + journal is not in the seed, whose write-back has no durable journal ("One cache failure = data loss"), ' +
      'so its seed columns say "not in the seed"; after its kill, a restart (a cache opened on the same journal and database) replays ' +
      'what the database may not hold and flushes, and only then are the lost keys counted',
  },
];

/** Whether the pattern's writes go to a durable journal before they are acknowledged. */
export function isJournaled(spec: PatternSpec): boolean {
  return spec.policy.write === 'back' && spec.policy.durability === 'journal';
}

export function patternById(id: string): PatternSpec | undefined {
  return PATTERNS.find((p) => p.id === id);
}
