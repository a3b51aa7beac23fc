/**
 * Application instances of a two-tier cache in one test process: each has its own Redis
 * connections (client and bus subscriber), its own L1 and bus, over an L2 shared under one key
 * prefix and one bus channel, on one Redis server or on a Redis Cluster. A group closes
 * everything it opened, so the test process exits.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis, type NatMap } from 'ioredis';
import type { InvalidationBus } from '../../src/tiers/invalidation-bus.js';
import { redisBus } from '../../src/tiers/redis-bus.js';
import { redisTier } from '../../src/tiers/redis-tier.js';
import type { Tier } from '../../src/tiers/tier.js';
import { twoTier } from '../../src/tiers/two-tier.js';
import type { Duration } from '../../src/duration.js';
import { knowsEverySlot } from './cluster-generations.js';

export interface TwoTierInstance {
  readonly tier: Tier;
  readonly bus: InvalidationBus;
  /** The client of L2 and of the bus's scripts. */
  readonly client: Redis | Cluster;
  /** The bus's subscriber connection; undefined on a Cluster, where the bus opens its own. */
  readonly subscriber: Redis | undefined;
}

export interface InstanceOptions {
  /** Wrap the L2 (a fault injector). */
  wrapL2?: (l2: Tier) => Tier;
  /** This instance's L1 (default: the twoTier's own memory tier). */
  l1?: Tier;
  trustWindow?: Duration;
}

/**
 * A client as an application would give a tier: it fails fast (no offline queue, no retry after a
 * dropped connection), so that no cache write the core gave up on is delivered late, after a
 * restart. `failFast: false` for a plain client (clean-up), whose commands wait for the connection.
 */
export function redisClient(url: string, options: { failFast?: boolean } = {}): Redis {
  const failFast = options.failFast ?? true;
  const client = new Redis(url, {
    maxRetriesPerRequest: failFast ? 0 : 1,
    enableOfflineQueue: !failFast,
    commandTimeout: 2000,
    enableAutoPipelining: true,
  });
  client.on('error', () => undefined);
  return client;
}

/** Deletes every key on `url` that starts with `prefix` (SCAN, then UNLINK), for a test's clean-up. */
export async function deleteKeys(url: string, prefix: string): Promise<void> {
  const cleaner = redisClient(url, { failFast: false });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await cleaner.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await cleaner.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    cleaner.disconnect();
  }
}

/** A Cluster client that fails fast, as redisClient() is for one server. */
export function clusterClient(startupNodes: readonly { host: string; port: number }[], natMap?: NatMap): Cluster {
  const client = new Cluster([...startupNodes], {
    natMap,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    redisOptions: { maxRetriesPerRequest: 0, commandTimeout: 2000 },
  });
  client.on('error', () => undefined);
  return client;
}

export class TwoTierGroup {
  private readonly opened: TwoTierInstance[] = [];
  private readonly clients: (Redis | Cluster)[] = [];

  /**
   * `prefix` names the L2 keys and the bus channel (`<prefix>bus`). `url` is one Redis server;
   * `cluster`, when given, the startup nodes of a Redis Cluster to use instead, with the address
   * translation `natMap` when its nodes announce other addresses.
   */
  constructor(
    readonly url: string,
    readonly prefix: string,
    private readonly cluster?: readonly { host: string; port: number }[],
    private readonly natMap?: NatMap,
  ) {}

  instance(options: InstanceOptions = {}): TwoTierInstance {
    // On a Cluster the bus opens its own subscriber connection.
    const client = this.cluster === undefined ? this.client() : this.clusterClient();
    const subscriber = this.cluster === undefined ? this.client() : undefined;
    const l2 = redisTier({ client, prefix: this.prefix });
    const bus = redisBus({ publisher: client, subscriber, channel: `${this.prefix}bus`, trustWindow: options.trustWindow });
    const tier = twoTier({ l2: options.wrapL2 ? options.wrapL2(l2) : l2, bus, l1: options.l1 });
    const instance = { tier, bus, client, subscriber };
    this.opened.push(instance);
    return instance;
  }


  /** A plain client on the same server, closed with the group. */
  client(): Redis {
    const client = redisClient(this.url);
    this.clients.push(client);
    return client;
  }

  /** A client of the group's Cluster, closed with the group. */
  clusterClient(): Cluster {
    const client = clusterClient(this.cluster!, this.natMap);
    this.clients.push(client);
    return client;
  }

  /**
   * Resolves once every client is connected and every instance's bus trusts its L1; on a Cluster,
   * also once every instance's L2 knows the generation of every slot (until then a write under
   * generation() is refused, safely).
   */
  async ready(instances: readonly TwoTierInstance[] = this.opened, timeoutMs = 10_000): Promise<void> {
    await waitFor(
      () =>
        this.clients.every((c) => c.status === 'ready') &&
        instances.every((i) => i.bus.connected && (this.cluster === undefined || knowsEverySlot(i.tier.generation?.()))),
      timeoutMs,
      'every client and bus to be ready',
    );
  }

  /** Closes every instance (bus, L1, L2) and every connection. */
  async close(): Promise<void> {
    await Promise.allSettled(this.opened.splice(0).map((i) => i.tier.close()));
    // disconnect, not quit: quit waits for a server that a fault test may have stopped.
    for (const c of this.clients.splice(0)) c.disconnect();
  }
}

/** Polls `condition` every 10 ms; rejects after `timeoutMs` naming `what`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
