/**
 * The subscriber side of the Redis invalidation bus: the connection on which an instance listens
 * to the bus's channels, and how it tells the bus that its subscription is in place or may have
 * missed messages. Two kinds:
 * - serverLink (this file), on a single Redis: one connection that ioredis reconnects by itself;
 *   after each reconnect the link subscribes again;
 * - shardLink (redis-bus-shard-link.ts), on a Redis Cluster: sharded pub/sub on the master that
 *   owns the bus's slot, found again whenever the subscription is lost.
 */
import type { Redis } from 'ioredis';

export interface BusLinkEvents {
  /** A message on one of the link's channels. */
  message(channel: string, text: string): void;
  /** Subscribed to every channel on the current connection: from now on, nothing is missed. */
  subscribed(): void;
  /** The subscription may have missed messages (the connection dropped or moved). */
  dropped(): void;
}

export interface BusLink {
  /** The command that sends to the link's channels, in scripts too: PUBLISH or SPUBLISH. */
  readonly publishCommand: 'PUBLISH' | 'SPUBLISH';
  /** Subscribes to `channels`; resolves once subscribed, rejects if the first try failed (the link goes on trying). */
  start(channels: readonly string[], events: BusLinkEvents): Promise<void>;
  /**
   * The bus has not heard its own pings for a while although the link looks subscribed: the
   * link drops this subscription and makes a new one.
   */
  renew(): void;
  close(): Promise<void>;
}

/** A link on one Redis server, over `subscriber`, which it disconnects on close when it `owns` it. */
export function serverLink(subscriber: Redis, owns: boolean): BusLink {
  let channels: readonly string[] = [];
  let closed = false;
  return {
    publishCommand: 'PUBLISH',
    async start(list, events) {
      channels = list;
      // A dropped connection is expected; `dropped` is how it is reported.
      subscriber.on('error', () => undefined);
      subscriber.on('message', (channel: string, text: string) => events.message(channel, text));
      for (const event of ['close', 'end', 'reconnecting'] as const) subscriber.on(event, () => events.dropped());
      // ioredis resubscribes by itself after a reconnect, then emits 'ready'; subscribe again to be sure.
      subscriber.on('ready', () => {
        if (closed) return;
        subscriber.subscribe(...channels).then(
          () => events.subscribed(),
          () => events.dropped(),
        );
      });
      if (subscriber.status === 'wait') await subscriber.connect();
      await subscriber.subscribe(...channels);
      events.subscribed();
    },
    renew() {
      // ioredis keeps this connection; a subscription it holds receives every message sent.
    },
    async close() {
      closed = true;
      if (owns) subscriber.disconnect();
      else await subscriber.unsubscribe(...channels).catch(() => undefined);
    },
  };
}
