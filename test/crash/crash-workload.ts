/** What the write-back crash harness and its child agree on: the collection, its policy, the values. */
import type { CollectionPolicy } from '../../src/policy.js';

export type CrashDurability = 'journal' | 'none';

export const CRASH_COLLECTION = 'orders';
export const CRASH_KEYS = 200;

export function crashPolicy(durability: CrashDurability): CollectionPolicy {
  return {
    write: 'back',
    read: 'through',
    durability,
    retry: { maxAttempts: Infinity },
    // The default flush settings (batches of up to 500, sent within 100 ms): the window in which
    // durability 'none' loses writes is the one users get.

  };
}

export function crashValue(id: number): { id: number; pad: string } {
  return { id, pad: 'x'.repeat(40 + (id % 60)) };
}
