/**
 * The peer libraries and raw clients that `cachewise bench` runs beside cachewise, each behind the
 * same three calls (a hit, a get-or-set, a set for the prefill), set up the way each one's
 * README sets it up, with a one-hour TTL:
 *
 *   lru-cache        a raw LRUCache (10,000 entries); get-or-set by hand: get, load on a miss, set
 *   ioredis          raw GET + JSON.parse; get-or-set by hand with SET PX
 *   bentocache       BentoCache with a memory L1 (10,000 items), a Redis L2, or both with its Redis bus
 *   cache-manager    cache-manager 7 over Keyv stores (in-memory Keyv, @keyv/redis, or both)
 *   cacheable        Cacheable with its in-memory primary, @keyv/redis as primary, or as secondary
 *   cachified        @epic-web/cachified over an LRUCache adapter (its documented set-up)
 *
 * None of them writes to a database: they only cache. They are development dependencies, so this
 * module is loaded by `cachewise bench` only.
 */
import { cachified, totalTtl, type Cache as CachifiedCache, type CacheEntry } from '@epic-web/cachified';
import KeyvRedis from '@keyv/redis';
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import { createCache as createCacheManager } from 'cache-manager';
import { Cacheable } from 'cacheable';
import { Redis } from 'ioredis';
import { Keyv } from 'keyv';
import { LRUCache } from 'lru-cache';

export const PEER_TTL_MS = 3_600_000;
const MAX_ENTRIES = 10_000;

/** One library behind the calls the scenarios need. */
export interface PeerCache {
  readonly name: string;
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<unknown>;
  /** The value of `key`, loaded with `load` (and cached) on a miss. */
  getOrSet(key: string, load: () => Promise<unknown>): Promise<unknown>;
  close(): Promise<void>;
}

export type PeerLayout = 'memory' | 'redis' | 'two-tier';

export function rawLru(): PeerCache {
  const lru = new LRUCache<string, object>({ max: MAX_ENTRIES, ttl: PEER_TTL_MS });
  return {
    name: 'lru-cache (raw)',
    // An awaited get: what a caller of an async cache API pays at least.
    get: async (key) => lru.get(key),
    set: async (key, value) => lru.set(key, value as object),
    getOrSet: async (key, load) => {
      const found = lru.get(key);
      if (found !== undefined) return found;
      const value = (await load()) as object;
      lru.set(key, value);
      return value;
    },
    close: async () => lru.clear(),
  };
}

/** Raw ioredis, `prefix` before every key. */
export function rawIoredis(url: string, prefix: string): PeerCache {
  const client = redisClient(url, 'bench-raw');
  return {
    name: 'ioredis (raw)',
    get: async (key) => {
      const json = await client.get(prefix + key);
      return json === null ? undefined : JSON.parse(json);
    },
    set: (key, value) => client.set(prefix + key, JSON.stringify(value), 'PX', PEER_TTL_MS),
    getOrSet: async (key, load) => {
      const json = await client.get(prefix + key);
      if (json !== null) return JSON.parse(json);
      const value = await load();
      await client.set(prefix + key, JSON.stringify(value), 'PX', PEER_TTL_MS);
      return value;
    },
    close: async () => void client.disconnect(),
  };
}

/** A raw lru-cache in front of raw ioredis: a hand-written two-tier cache without invalidation. */
export function rawLruOverIoredis(url: string, prefix: string): PeerCache {
  const lru = rawLru();
  const redis = rawIoredis(url, prefix);
  return {
    name: 'lru-cache + ioredis (raw)',
    get: async (key) => (await lru.get(key)) ?? redis.get(key),
    set: async (key, value) => {
      await redis.set(key, value);
      await lru.set(key, value);
    },
    getOrSet: (key, load) => lru.getOrSet(key, () => redis.getOrSet(key, load)),
    close: async () => {
      await lru.close();
      await redis.close();
    },
  };
}

export function bentocache(layout: PeerLayout, url: string, prefix: string): PeerCache {
  const connection = () => redisClient(url, 'bench-bentocache');
  let store = bentostore();
  if (layout !== 'redis') store = store.useL1Layer(memoryDriver({ maxItems: MAX_ENTRIES }));
  if (layout !== 'memory') store = store.useL2Layer(redisDriver({ connection: connection() }));
  if (layout === 'two-tier') store = store.useBus(redisBusDriver({ connection: redisOptions(url) }));
  const bento = new BentoCache({ default: 'bench', prefix: prefix.replace(/:$/, ''), ttl: PEER_TTL_MS, stores: { bench: store } });
  return {
    name: 'bentocache',
    get: (key) => bento.get({ key }),
    set: (key, value) => bento.set({ key, value }),
    getOrSet: (key, load) => bento.getOrSet({ key, factory: load }),
    close: () => bento.disconnect(),
  };
}

export function cacheManager(layout: PeerLayout, url: string, prefix: string): PeerCache {
  const stores: Keyv[] = [];
  if (layout !== 'redis') stores.push(new Keyv());
  if (layout !== 'memory') stores.push(new Keyv({ store: new KeyvRedis(url), namespace: `${prefix}cache-manager` }));
  const cache = createCacheManager({ stores, ttl: PEER_TTL_MS });
  return {
    name: 'cache-manager',
    get: (key) => cache.get(key),
    set: (key, value) => cache.set(key, value),
    getOrSet: (key, load) => cache.wrap(key, load),
    close: async () => void (await cache.disconnect()),
  };
}

export function cacheable(layout: PeerLayout, url: string, prefix: string): PeerCache {
  const redis = () => new KeyvRedis(url);
  const cache =
    layout === 'memory'
      ? new Cacheable({ ttl: PEER_TTL_MS })
      : layout === 'redis'
        ? new Cacheable({ primary: new Keyv({ store: redis(), namespace: `${prefix}cacheable` }), ttl: PEER_TTL_MS })
        : new Cacheable({ secondary: redis(), namespace: `${prefix}cacheable`, ttl: PEER_TTL_MS });
  return {
    name: 'cacheable',
    get: (key) => cache.get(key),
    set: (key, value) => cache.set(key, value),
    getOrSet: (key, load) => cache.getOrSet(key, load),
    close: async () => void (await cache.disconnect()),
  };
}

/** @epic-web/cachified over an LRUCache, as its README sets it up. */
export function cachifiedLru(): PeerCache {
  const lru = new LRUCache<string, CacheEntry>({ max: MAX_ENTRIES });
  const cache: CachifiedCache = {
    name: 'lru',
    get: (key) => lru.get(key),
    set: (key, entry) => void lru.set(key, entry, { ttl: totalTtl(entry?.metadata) }),
    delete: (key) => void lru.delete(key),
  };
  return {
    name: 'cachified',
    get: (key) => cachified({ key, cache, ttl: PEER_TTL_MS, getFreshValue: () => undefined }),
    set: (key, value) => cachified({ key, cache, ttl: PEER_TTL_MS, forceFresh: true, getFreshValue: () => value }),
    getOrSet: (key, load) => cachified({ key, cache, ttl: PEER_TTL_MS, getFreshValue: load }),
    close: async () => lru.clear(),
  };
}

/** Every peer that supports `layout`, raw clients first. */
export function peersFor(layout: PeerLayout, url: string, prefix: string): PeerCache[] {
  switch (layout) {
    case 'memory':
      return [rawLru(), bentocache('memory', url, prefix), cacheManager('memory', url, prefix), cacheable('memory', url, prefix), cachifiedLru()];
    case 'redis':
      return [rawIoredis(url, `${prefix}raw:`), bentocache('redis', url, `${prefix}bento`), cacheManager('redis', url, prefix), cacheable('redis', url, prefix)];
    case 'two-tier':
      return [rawLruOverIoredis(url, `${prefix}raw:`), bentocache('two-tier', url, `${prefix}bento`), cacheManager('two-tier', url, prefix), cacheable('two-tier', url, prefix)];
  }
}

function redisOptions(url: string): { host: string; port: number; username?: string; password?: string; db?: number } {
  const parsed = new URL(url);
  const db = Number(parsed.pathname.slice(1));
  return {
    host: parsed.hostname,
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    ...(parsed.username !== '' ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password !== '' ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(Number.isInteger(db) && db > 0 ? { db } : {}),
  };
}

/** A client with the options the Redis tier gives the clients it creates (the same for every contender). */
export function redisClient(url: string, connectionName: string): Redis {
  const client = new Redis(url, { enableAutoPipelining: true, commandTimeout: 1000, connectTimeout: 2000, maxRetriesPerRequest: 1, connectionName });
  client.on('error', () => undefined);
  return client;
}
