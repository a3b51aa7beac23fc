/**
 * The two ways of reading a cached value from Redis that bench/redis-hit.ts compares (and
 * bench/round-trips.ts dissects), set up on clients the caller made with the same options:
 *
 *   cachewise  collection.get(key): a read-through collection on redisTier({ client }) over a
 *              function store in memory (only for the prefill: every measured get is a hit);
 *   raw        client.get(key) of the pre-serialized value, then JSON.parse.
 *
 * Every key is prefilled in both (cachewise through its own write-through path). Keys live under
 * `prefix`; the caller deletes them.
 */
import type { Redis } from 'ioredis';
import { createCache, functionStore, redisTier, type Collection } from './cachewise.js';
import type { Contender } from './runner.js';
import { keyOf, profile, type Profile } from './workload.js';

export const HIT_TTL_MS = 3_600_000;
const PREFILL_BATCH = 1000;

export interface HitSetup {
  /** cachewise first, then raw. */
  readonly contenders: readonly Contender[];
  readonly profiles: Collection<Profile>;
  /** Raw gets that found nothing (should stay 0). */
  rawMisses(): number;
  /** Closes the cache (not the clients). */
  close(): Promise<void>;
}

export async function hitContenders(options: { cwClient: Redis; rawClient: Redis; prefix: string; keys: number }): Promise<HitSetup> {
  const { cwClient, rawClient, prefix, keys } = options;
  const rawPrefix = `${prefix}raw:`;
  const rows = new Map<string, unknown>();
  const cache = await createCache({
    tier: redisTier({ client: cwClient, prefix: `${prefix}cw:` }),
    store: functionStore({ load: (key) => rows.get(key), save: (key, value) => void rows.set(key, value), remove: (key) => void rows.delete(key) }),
  });
  const profiles = cache.collection<Profile>('profiles', { write: 'through', read: 'through', ttl: HIT_TTL_MS });

  for (let start = 0; start < keys; start += PREFILL_BATCH) {
    const batch = Array.from({ length: Math.min(PREFILL_BATCH, keys - start) }, (_, i) => start + i);
    await profiles.setMany(batch.map((n) => [keyOf(n, keys), profile(n)] as const));
    await rawClient.pipeline(batch.map((n) => ['set', rawPrefix + keyOf(n, keys), JSON.stringify(profile(n)), 'PX', String(HIT_TTL_MS)])).exec();
  }

  let rawMisses = 0;
  return {
    contenders: [
      { name: 'cachewise', op: (n) => profiles.get(keyOf(n, keys)) },
      {
        name: 'raw',
        op: async (n) => {
          const json = await rawClient.get(rawPrefix + keyOf(n, keys));
          if (json === null) rawMisses++;
          return json === null ? undefined : JSON.parse(json);
        },
      },
    ],
    profiles,
    rawMisses: () => rawMisses,
    close: async () => void (await cache.close()),
  };
}
