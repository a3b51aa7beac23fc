/**
 * Part 1: the seed's "user activity feed", four kinds of data in one cache, each with the pattern
 * the seed gives it:
 *   events      write-back, read-through    (fast ingestion, flushed by the background flusher)
 *   feeds       read-through, write-around  (a feed builder writes the database; views fill the cache)
 *   profiles    write-through, read-through (critical: the policy refuses write-back for it)
 *   thumbnails  write-around, read-through  (written to storage, cached on view)
 * Concurrent users ingest events, read feeds, update and read profiles, upload and view
 * thumbnails, while a background feed builder turns each user's newest events into a feed.
 * At the end the events are flushed and counted in the database.
 */
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { type CollectionPolicy, type CollectionStatsSnapshot, type Store } from '../../index.js';
import { openCache, openStore, type BackendSpec } from './backend.js';
import { LatencyStore } from './latency-store.js';
import { below, type Random } from './random.js';
import type { Samples } from './samples.js';
import { SEED_FEED } from './seed-table.js';

export type FeedCollection = keyof typeof SEED_FEED;

export const FEED_POLICIES: Readonly<Record<FeedCollection, CollectionPolicy>> = {
  events: { write: 'back', read: 'through', durability: 'none' },
  feeds: { write: 'around', read: 'through' },
  profiles: { write: 'through', read: 'through', critical: true },
  thumbnails: { write: 'around', read: 'through' },
};

export interface FeedShape {
  readonly operations: number;
  readonly users: number;
  readonly concurrency: number;
}

export interface FeedCollectionFigures {
  readonly name: FeedCollection;
  readonly seed: string;
  readonly write: string;
  readonly read: string;
  readonly writes: number;
  readonly writeP50Ms: number;
  readonly writeP99Ms: number;
  readonly reads: number;
  readonly hitRatio: number;
  readonly loads: number;
  readonly storeWrites: number;
  readonly storeBatches: number;
  readonly flushLagP99Ms: number;
}

export interface FeedResult {
  readonly collections: readonly FeedCollectionFigures[];
  readonly feedBuilds: number;
  /** Events acknowledged, and how many of them the database held after the final flush. */
  readonly eventsAcked: number;
  readonly eventsInDatabase: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly durationMs: number;
}

/** Share of each operation in the mix (the rest of 1 after the listed ones: feed reads). */
const MIX = { event: 0.5, profileUpdate: 0.04, profileRead: 0.06, thumbnailUpload: 0.02, thumbnailView: 0.08 } as const;
const FEED_LENGTH = 10;
const FEED_BUILD_INTERVAL_MS = 100;
const EVENT_TYPES = ['post', 'like', 'comment', 'follow'] as const;

interface Event {
  readonly user: number;
  readonly type: string;
  readonly n: number;
}

export async function runFeed(backend: BackendSpec, latencyMs: number, shape: FeedShape, random: Random, dbOwnTime?: Samples): Promise<FeedResult> {
  const inner = openStore(backend, 'main');
  try {
    await preload(inner, shape.users);
  } catch (error) {
    await inner.close();
    throw error;
  }
  const cache = await openCache(backend, 'main', new LatencyStore(inner, latencyMs, dbOwnTime));
  const events = cache.collection<Event>('events', FEED_POLICIES.events);
  const feeds = cache.collection<{ user: number; items: readonly Event[] }>('feeds', FEED_POLICIES.feeds);
  const profiles = cache.collection<{ user: number; name: string; rev: number }>('profiles', FEED_POLICIES.profiles);
  const thumbnails = cache.collection<{ user: number; url: string; rev: number }>('thumbnails', FEED_POLICIES.thumbnails);

  const newestEvents = new Map<number, string[]>();
  const dirtyUsers = new Set<number>();
  const eventKeys: string[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let feedBuilds = 0;
  let next = 0;
  let running = true;
  const failed = (error: unknown) => {
    errors++;
    firstError ??= error instanceof Error ? error.message : String(error);
  };

  async function operation(n: number): Promise<void> {
    const user = below(random, shape.users);
    const id = `u${user}`;
    let r = random();
    if ((r -= MIX.event) < 0) {
      const key = `${id}-e${n}`;
      await events.set(key, { user, type: EVENT_TYPES[n % EVENT_TYPES.length]!, n });
      eventKeys.push(key);
      const list = newestEvents.get(user) ?? [];
      list.push(key);
      if (list.length > FEED_LENGTH) list.shift();
      newestEvents.set(user, list);
      dirtyUsers.add(user);
    } else if ((r -= MIX.profileUpdate) < 0) await profiles.set(id, { user, name: `user ${user}`, rev: n });
    else if ((r -= MIX.profileRead) < 0) await profiles.get(id);
    else if ((r -= MIX.thumbnailUpload) < 0) await thumbnails.set(id, { user, url: `https://img.example/${id}/${n}.jpg`, rev: n });
    else if ((r -= MIX.thumbnailView) < 0) await thumbnails.get(id);
    else await feeds.get(id);
  }

  /** The background worker: rebuilds the feeds of users with new events, from the cache. */
  async function buildFeeds(): Promise<void> {
    const users = [...dirtyUsers];
    dirtyUsers.clear();
    await Promise.all(
      users.map(async (user) => {
        const keys = newestEvents.get(user) ?? [];
        const items = (await events.getMany(keys)).filter((e): e is Event => e !== undefined);
        await feeds.set(`u${user}`, { user, items });
        feedBuilds++;
      }),
    );
  }

  const started = performance.now();
  const builder = (async () => {
    while (running) {
      await sleep(FEED_BUILD_INTERVAL_MS);
      await buildFeeds().catch(failed);
    }
  })();
  await Promise.all(
    Array.from({ length: shape.concurrency }, async () => {
      while (next < shape.operations) {
        await operation(next++).catch(failed);
        await yieldToEventLoop();
      }
    }),
  );
  running = false;
  await builder;
  await buildFeeds().catch(failed);
  await events.flush({ timeout: '30s' }).catch(failed);
  const durationMs = performance.now() - started;

  const stats = cache.stats().collections;
  let eventsInDatabase: number;
  try {
    eventsInDatabase = (await inner.loadMany('events', eventKeys)).filter((row) => row?.json !== undefined).length;
  } finally {
    await cache.close({ timeout: '10s' });
  }
  return {
    collections: (Object.keys(SEED_FEED) as FeedCollection[]).map((name) => figures(name, stats[name]!)),
    feedBuilds,
    eventsAcked: eventKeys.length,
    eventsInDatabase,
    errors,
    firstError: firstError ?? null,
    durationMs,
  };
}

function figures(name: FeedCollection, s: CollectionStatsSnapshot): FeedCollectionFigures {
  const reads = s.hits + s.staleHits + s.misses;
  return {
    name,
    seed: SEED_FEED[name],
    write: s.write,
    read: s.read,
    writes: s.writes,
    writeP50Ms: s.writeLatency.p50Ms,
    writeP99Ms: s.writeLatency.p99Ms,
    reads,
    hitRatio: reads === 0 ? 0 : s.hits / reads,
    loads: s.loads,
    storeWrites: s.storeWrites,
    storeBatches: s.storeBatches,
    flushLagP99Ms: s.flushLag.p99Ms,
  };
}

/** Every user starts with a profile, a thumbnail and an empty feed in the database. */
async function preload(store: Store, users: number): Promise<void> {
  const ids = Array.from({ length: users }, (_, user) => user);
  const rows: Record<Exclude<FeedCollection, 'events'>, (user: number) => unknown> = {
    feeds: (user) => ({ user, items: [] }),
    profiles: (user) => ({ user, name: `user ${user}`, rev: 0 }),
    thumbnails: (user) => ({ user, url: `https://img.example/u${user}/0.jpg`, rev: 0 }),
  };
  await store.prepare('events');
  for (const [table, row] of Object.entries(rows)) {
    await store.prepare(table);
    await store.write(
      table,
      ids.map((user) => ({ op: 'set' as const, key: `u${user}`, version: 1, json: JSON.stringify(row(user)) })),
    );
  }
}
