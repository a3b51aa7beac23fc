/**
 * The bus's subscriber on a Redis Cluster: sharded pub/sub (SSUBSCRIBE, Redis 7) on the master
 * that owns the bus's hash slot. Every name of the bus carries one hash tag, so its member set,
 * its scripts and its shard channels all live on that one master, which runs them in one order
 * and delivers its shard messages to its subscribers in that order: the single-server argument of
 * redis-bus.ts holds there.
 *
 * The link asks the cluster (CLUSTER SLOTS, through the application's Cluster client) which
 * master owns the slot, opens its own connection there, and subscribes. It reports the
 * subscription lost, closes that connection and finds the owner again (with a growing pause
 * between tries) whenever:
 * - the connection closes or errs (a node that died or restarted);
 * - the node answers MOVED, or unsubscribes the link itself because the slot moved to another
 *   master (a resharding or a failover: Redis sends SUNSUBSCRIBE, which ioredis reports as an
 *   error since no command of the link asked for it);
 * - finding the owner, connecting and subscribing take longer than ATTEMPT_TIMEOUT_MS;
 * - the bus calls renew(): its pings stopped coming back although the connection looks fine.
 * The connection never reconnects by itself: after a failover its address may be a replica, or
 * nothing.
 */
import { createRequire } from 'node:module';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { BusLink, BusLinkEvents } from './redis-bus-link.js';
import { slotFunction } from './redis-slot-generations.js';

const ATTEMPT_TIMEOUT_MS = 2_000;
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 2_000;

type NatMap = Record<string, { host: string; port: number }> | ((key: string) => { host: string; port: number } | null | undefined);

export function shardLink(cluster: Cluster): BusLink {
  return new ShardLink(cluster);
}

class ShardLink implements BusLink {
  readonly publishCommand = 'SPUBLISH';
  private channels: readonly string[] = [];
  private events: BusLinkEvents | undefined;
  /** The connection of the current attempt or subscription; undefined while none is open. */
  private current: Redis | undefined;
  /** The bus's hash slot, asked once. */
  private slot: number | undefined;
  private homing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  /** Ends the attempt under way (its connection was lost); undefined between attempts. */
  private endAttempt: ((error: Error) => void) | undefined;

  constructor(private readonly cluster: Cluster) {}

  start(channels: readonly string[], events: BusLinkEvents): Promise<void> {
    this.channels = channels;
    this.events = events;
    return this.home();
  }

  renew(): void {
    if (this.current !== undefined && this.homing === undefined) this.lost(this.current);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const connection = this.current;
    this.current = undefined;
    connection?.disconnect();
  }

  /** One attempt to subscribe on the slot's owner; on failure, the next one is scheduled. */
  private home(): Promise<void> {
    this.homing ??= this.attempt().then(
      () => {
        this.failures = 0;
        this.homing = undefined;
      },
      (error: unknown) => {
        this.homing = undefined;
        this.failures++;
        this.retryLater();
        throw error;
      },
    );
    return this.homing;
  }

  /**
   * Finds the owner, connects and subscribes, all within ATTEMPT_TIMEOUT_MS: a Cluster client
   * that queues commands while it reconnects, or a node that answers MOVED (ioredis then never
   * settles the SSUBSCRIBE), must not hold the link in one attempt for ever.
   */
  private async attempt(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<never>((_, reject) => {
      this.endAttempt = reject;
      timer = setTimeout(() => reject(new Error(`no subscription on the bus's master within ${ATTEMPT_TIMEOUT_MS} ms`)), ATTEMPT_TIMEOUT_MS);
    });
    ended.catch(() => undefined);
    const attempt = { live: true };
    // Once the attempt is over, this may still settle (or never, after MOVED): nobody waits for it.
    const subscribing = this.subscribeOnOwner(attempt);
    subscribing.catch(() => undefined);
    try {
      await Promise.race([subscribing, ended]);
    } catch (error) {
      attempt.live = false;
      if (this.current !== undefined) this.lost(this.current);
      throw error;
    } finally {
      attempt.live = false;
      clearTimeout(timer);
      this.endAttempt = undefined;
    }
    this.events!.subscribed();
  }

  private async subscribeOnOwner(attempt: { readonly live: boolean }): Promise<void> {
    const { host, port } = await this.owner();
    // An attempt that ended (timed out, closed) opens no connection: the next attempt will.
    if (this.closed || !attempt.live) throw new Error('the attempt is over');
    const connection = this.connect(host, port);
    this.current = connection;
    // Any error means the subscription can no longer be relied on, whatever its cause.
    for (const event of ['error', 'moved', 'close', 'end'] as const) connection.on(event, () => this.lost(connection));
    connection.on('smessage', (channel: string, text: string) => {
      if (this.current === connection) this.events!.message(channel, text);
    });
    await connection.ssubscribe(...this.channels);
    if (this.current !== connection) throw new Error(`the subscription on ${host}:${port} was lost while it was made`);
  }

  /** The address of the master that owns the bus's slot, as the cluster says now. */
  private async owner(): Promise<{ host: string; port: number }> {
    this.slot ??= slotFunction()(this.channels[0]!);
    const slot = this.slot;
    const ranges = await this.cluster.cluster('SLOTS');
    const master = ranges.find(([first, last]) => first <= slot && slot <= last)?.[2];
    if (master === undefined) throw new Error(`no master of the Redis Cluster serves slot ${slot}`);
    const [host, port] = master;
    const natMap = (this.cluster.options as { natMap?: NatMap }).natMap;
    const key = `${host}:${port}`;
    const mapped = typeof natMap === 'function' ? natMap(key) : natMap?.[key];
    return mapped ?? { host, port: Number(port) };
  }

  private connect(host: string, port: number): Redis {
    const require = createRequire(import.meta.url);
    const { Redis: RedisClass } = require('ioredis') as { Redis: new (options: RedisOptions) => Redis };
    return new RedisClass({
      ...(this.cluster.options.redisOptions ?? {}),
      host,
      port,
      connectionName: 'cachewise-bus',
      // SSUBSCRIBE is sent at once and waits for the connection; channels are not keys to prefix.
      enableOfflineQueue: true,
      lazyConnect: false,
      keyPrefix: undefined,
      retryStrategy: () => null,
      autoResubscribe: false,
      maxRetriesPerRequest: 0,
    });
  }

  private lost(connection: Redis): void {
    if (this.current !== connection) return;
    this.current = undefined;
    connection.disconnect();
    this.endAttempt?.(new Error('the subscription was lost while it was made'));
    this.events!.dropped();
    this.retryLater();
  }

  private retryLater(): void {
    if (this.closed || this.homing !== undefined || this.retryTimer !== undefined) return;
    const delay = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(this.failures, 10));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.home().catch(() => undefined);
    }, delay);
    // Open connections keep a program alive, not a pending retry; close() stops it.
    this.retryTimer.unref();
  }
}
