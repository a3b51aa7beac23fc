/**
 * An invalidation bus on Redis pub/sub (ioredis 5). Publishing goes through a normal client;
 * listening needs a connection of its own in subscriber mode. Messages carry the sender's id, so
 * an instance ignores its own. The bus counts as connected only while the subscriber connection
 * is ready and subscribed: when it drops, messages are being lost, and the two-tier cache clears
 * its L1 until it is back.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import { CachewiseError } from '../errors.js';
import type { Invalidation, InvalidationBus } from './invalidation-bus.js';
import type { RedisClient } from './redis-tier.js';

export interface RedisBusOptions {
  /** Client used to PUBLISH (it may be the tier's client). */
  publisher: RedisClient;
  /**
   * A dedicated connection for SUBSCRIBE, or a URL to open one. It must not be used for anything
   * else: a subscribed connection can run no other command. Default: `publisher.duplicate()`.
   */
  subscriber?: Redis | string;
  /** The channel; give each cache its own. Default 'cachewise:invalidations'. */
  channel?: string;
}

export function redisBus(options: RedisBusOptions): InvalidationBus {
  return new RedisBus(options);
}

class RedisBus implements InvalidationBus {
  private readonly id = randomBytes(8).toString('base64url');
  private readonly channel: string;
  private readonly subscriber: Redis;
  private readonly ownsSubscriber: boolean;
  private ready = false;
  private closed = false;

  constructor(private readonly options: RedisBusOptions) {
    if (options.publisher === undefined || typeof (options.publisher as { publish?: unknown }).publish !== 'function') {
      throw new CachewiseError('E_INVALID_OPTION', 'redisBus needs a "publisher" ioredis client', 'pass publisher: the Redis client your tier uses');
    }
    this.channel = options.channel ?? 'cachewise:invalidations';
    if (typeof options.subscriber === 'string') {
      const require = createRequire(import.meta.url);
      const { Redis: RedisClass } = require('ioredis') as { Redis: new (url: string, options: object) => Redis };
      this.subscriber = new RedisClass(options.subscriber, { lazyConnect: true, maxRetriesPerRequest: 1, connectionName: 'cachewise-bus' });
      this.ownsSubscriber = true;
    } else if (options.subscriber !== undefined) {
      this.subscriber = options.subscriber;
      this.ownsSubscriber = false;
    } else {
      this.subscriber = (options.publisher as Redis).duplicate({ lazyConnect: true, connectionName: 'cachewise-bus' });
      this.ownsSubscriber = true;
    }
    // A dropped connection is expected; the state change below is how it is reported.
    this.subscriber.on('error', () => undefined);
  }

  get connected(): boolean {
    return this.ready;
  }

  async subscribe(onMessage: (message: Invalidation) => void, onState: (connected: boolean) => void): Promise<void> {
    const setReady = (ready: boolean) => {
      if (this.ready === ready) return;
      this.ready = ready;
      onState(ready);
    };
    this.subscriber.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return;
      const message = parse(text);
      if (message !== undefined && message.from !== this.id) onMessage({ key: message.key, version: message.version });
    });
    for (const event of ['close', 'end', 'reconnecting'] as const) this.subscriber.on(event, () => setReady(false));
    // ioredis resubscribes by itself after a reconnect, then emits 'ready'; subscribe again to be sure.
    this.subscriber.on('ready', () => {
      if (this.closed) return;
      this.subscriber.subscribe(this.channel).then(
        () => setReady(true),
        () => setReady(false),
      );
    });
    if (this.subscriber.status === 'wait') await this.subscriber.connect();
    await this.subscriber.subscribe(this.channel);
    setReady(true);
  }

  async publish(message: Invalidation): Promise<void> {
    await this.options.publisher.publish(this.channel, JSON.stringify({ from: this.id, key: message.key, version: message.version ?? null }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.ready = false;
    if (this.ownsSubscriber) {
      this.subscriber.disconnect();
    } else {
      await this.subscriber.unsubscribe(this.channel).catch(() => undefined);
    }
  }
}

function parse(text: string): { from: string; key: string; version: number | undefined } | undefined {
  try {
    const data = JSON.parse(text) as { from?: unknown; key?: unknown; version?: unknown };
    if (typeof data.from !== 'string' || typeof data.key !== 'string') return undefined;
    const version = typeof data.version === 'number' && Number.isSafeInteger(data.version) ? data.version : undefined;
    return { from: data.from, key: data.key, version };
  } catch {
    return undefined;
  }
}
