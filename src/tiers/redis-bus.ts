/**
 * An invalidation bus on Redis pub/sub (ioredis 5) that lets a writer know when every other
 * instance has dropped its L1 copy (contract 3 across instances).
 *
 * Parts, all under the bus's channel name C:
 * - C: invalidations `{from, id, key, version}`, one subscriber connection per instance;
 * - C:to:<instance id>: this instance's own channel, on the same subscriber connection, that
 *   carries its pings and the acknowledgements of its invalidations;
 * - C:members: a sorted set of live instances (`<id> <trustWindowMs>`), each scored with its
 *   expiry (Redis server time).
 *
 * Every `trustWindow / 4` an instance runs one script that renews its membership (expiry: now +
 * memberTtl, memberTtl >= trustWindow) and publishes a ping on its own channel. An instance
 * trusts its L1 (`connected`) only until `trustWindow` after it sent the newest ping that came
 * back, by its monotonic clock. A receiver applies an invalidation, then acknowledges it.
 * `publish` runs one script that publishes and reads the live members in the same instant, then
 * waits for the acknowledgement of every member other than itself, or for `trustWindow + margin`
 * after the script answered, whichever comes first, with the largest trustWindow among the
 * members it waits for (instances may run with different windows).
 *
 * Why a resolved publish leaves no instance serving what it cached before (single Redis server):
 * let e be when Redis ran the publish. An instance X that acknowledged has applied it. Otherwise:
 * - X was a member at e: Redis sends every message to one subscriber connection in the order it
 *   ran them, so a ping that ran after e reaches X after the invalidation, which X has applied.
 *   If X's newest returned ping ran before e, it was sent before e, so X's trust ends before
 *   e + trustWindow, by durations measured on X's monotonic clock; the writer waited until later
 *   than that on its own (the margin covers clock rate differences). No clock sync is needed.
 * - X was not a member at e: then X did not trust its L1 at e (a returned ping proves
 *   membership at least trustWindow past its sending). When X trusts again it first empties its
 *   L1 and drops every L2 read still in flight (the two-tier's epoch), so all it caches later was
 *   read from L2 after e, and L2 was written before the publish.
 * A dropped subscriber connection ends trust at once (messages may be lost); trust comes back
 * with the next ping through the new connection, after the L1 was emptied.
 *
 * Costs: a write waits for one round trip of the slowest live instance. An instance that died
 * without close() stays a member for up to memberTtl, and writes wait trustWindow + margin
 * meanwhile; close() leaves the set at once. An instance whose pings return late (a blocked event
 * loop, a slow Redis) loses trust and reads from L2 until they return, never stale data.
 * On a Redis Cluster (the publisher is an ioredis Cluster), every name above starts with the hash
 * tag `{C}`, so the member set, the scripts and the channels share one slot; messages go by
 * sharded pub/sub (SPUBLISH in the scripts, SSUBSCRIBE on a connection to the master that owns
 * the slot, see redis-bus-shard-link.ts). One master runs every script of the bus and delivers
 * its shard messages in that order, so the argument above holds with "the slot's master" for
 * "Redis". After a failover or a resharding the subscriber finds the new owner; trust comes back
 * only through a ping that ran on the server the subscription is on. An instance whose pings stop
 * coming back while its connection looks alive drops and renews its subscription.
 *
 * Limits: the order argument needs the publisher's scripts and the subscriber on one server (on
 * a Cluster: the slot's master, or a replica of it, which gets the same stream in the same
 * order); while a partition leaves two masters for the slot (until the cluster's node timeout),
 * instances on different sides do not see each other's invalidations, as they do not see each
 * other's L2 writes. A forward jump of the Redis server's wall clock by more than
 * memberTtl - trustWindow could expire a live member early. Keep the tier timeout (default 1 s)
 * above trustWindow + margin.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Cluster, Redis } from 'ioredis';
import { toMs, type Duration } from '../duration.js';
import { CachewiseError } from '../errors.js';
import type { Invalidation, InvalidationBus } from './invalidation-bus.js';
import { serverLink, type BusLink } from './redis-bus-link.js';
import { shardLink } from './redis-bus-shard-link.js';
import type { RedisClient } from './redis-tier.js';

export interface RedisBusOptions {
  /** Client used to PUBLISH and run the bus's scripts (it may be the tier's client). */
  publisher: RedisClient;
  /**
   * A dedicated connection for SUBSCRIBE, or a URL to open one. It must not be used for anything
   * else: a subscribed connection can run no other command. Default: `publisher.duplicate()`.
   * Not with a Cluster publisher: the bus then opens its own connection to the master that owns
   * its channel's slot.
   */
  subscriber?: Redis | string;
  /**
   * The channel; give each cache its own. Default 'cachewise:invalidations'. On a Cluster the
   * bus's names are `{<channel>}...`, one hash slot.
   */
  channel?: string;
  /**
   * How long after its last confirmed ping an instance still trusts its L1, and so the longest a
   * write (of any instance) waits for this one when it does not acknowledge: each instance
   * announces its window in the member set. Pings go every quarter of it. Keep it below the
   * collections' tierTimeout, on every instance. Default '400ms'.
   */
  trustWindow?: Duration;
}

export function redisBus(options: RedisBusOptions): InvalidationBus {
  return new RedisBus(options);
}

/** A script, run by EVALSHA and sent again after NOSCRIPT (a restarted or flushed Redis). */
interface Script {
  readonly text: string;
  readonly sha: string;
}

function script(text: string): Script {
  return { text, sha: createHash('sha1').update(text).digest('hex') };
}

const SERVER_NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** The bus's scripts, sending with `command` (PUBLISH, or SPUBLISH on a Cluster). */
function busScripts(command: BusLink['publishCommand']): { heartbeat: Script; publish: Script } {
  return {
    /** KEYS[1] members; ARGV id, memberTtlMs, own channel, ping payload. */
    heartbeat: script(`${SERVER_NOW}
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('${command}', ARGV[3], ARGV[4])
`),
    /** KEYS[1] members; ARGV channel, payload. Returns the live members when the message went out. */
    publish: script(`${SERVER_NOW}
redis.call('${command}', ARGV[1], ARGV[2])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`),
  };
}

const DEFAULT_TRUST_WINDOW_MS = 400;
/** Pings sent and not yet back that are remembered (older ones are lost anyway). */
const MAX_PINGS_IN_FLIGHT = 64;
/** Trust windows without a ping back, while subscribed, after which the subscription is renewed. */
const RENEW_AFTER_WINDOWS = 5;

interface PendingPublish {
  /** Members still to acknowledge; undefined until the publish script answered. */
  waiting: Set<string> | undefined;
  /** Acknowledgements that arrived before the script's answer. */
  readonly early: Set<string>;
  done(): void;
}

type ScriptClient = {
  evalsha(sha: string, numKeys: number, ...args: string[]): Promise<unknown>;
  eval(text: string, numKeys: number, ...args: string[]): Promise<unknown>;
  publish(channel: string, message: string): Promise<unknown>;
  spublish(channel: string, message: string): Promise<unknown>;
  zrem(key: string, member: string): Promise<number>;
};

class RedisBus implements InvalidationBus {
  private readonly id = randomBytes(8).toString('base64url');
  /** This instance in the member set: its id and its trust window, which writers wait out for it. */
  private readonly member: string;
  private readonly channel: string;
  private readonly ownChannel: string;
  private readonly membersKey: string;
  private readonly publisher: ScriptClient;
  private readonly link: BusLink;
  private readonly scripts: { heartbeat: Script; publish: Script };
  /** Sends acknowledgements: PUBLISH, or SPUBLISH on a Cluster. */
  private readonly sendAcks: (channel: string, text: string) => Promise<unknown>;
  private readonly trustWindowMs: number;
  private readonly memberTtlMs: number;
  private readonly ackBoundMs: number;

  /**
   * The longest `publish` waits for the other instances' acknowledgements, when none of them has
   * a longer trust window than this one.
   */
  get publishWaitMs(): number {
    return this.ackBoundMs;
  }
  /** Subscribed to both channels on the current connection. */
  private ready = false;
  /** close() began: no new writes, no more heartbeats. */
  private closing = false;
  private closed = false;
  /** Monotonic time (performance.now) until which L1 may be trusted. */
  private trustedUntil = 0;
  private onState: (connected: boolean) => void = () => undefined;
  private pingSeq = 0;
  /** Monotonic time of the latest ping back, or of the latest subscription (the renewal watchdog). */
  private lastHeardAt = 0;
  private readonly pingsSent = new Map<number, number>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatRunning = false;
  private publishSeq = 0;
  private readonly pending = new Map<string, PendingPublish>();
  private readonly inFlight = new Set<Promise<void>>();
  /** Acknowledgements to send, by the sender they go to, flushed once per turn of the event loop. */
  private readonly acksToSend = new Map<string, string[]>();
  private acksScheduled = false;

  constructor(options: RedisBusOptions) {
    if (options === null || typeof options !== 'object' || options.publisher === undefined || typeof (options.publisher as { publish?: unknown }).publish !== 'function') {
      throw new CachewiseError('E_INVALID_OPTION', 'redisBus needs a "publisher" ioredis client', 'pass publisher: the Redis client your tier uses');
    }
    this.channel = options.channel ?? 'cachewise:invalidations';
    if (typeof this.channel !== 'string' || this.channel.length === 0) {
      throw new CachewiseError('E_INVALID_OPTION', 'redisBus option "channel" must be a non-empty string', 'give each cache its own channel name');
    }
    this.trustWindowMs = toMs(options.trustWindow ?? DEFAULT_TRUST_WINDOW_MS, 'trustWindow');
    if (this.trustWindowMs < 20) {
      throw new CachewiseError('E_INVALID_OPTION', `redisBus option "trustWindow" must be at least 20ms, got ${this.trustWindowMs}ms`, "pass a window such as '400ms'");
    }
    this.memberTtlMs = Math.max(2_000, 4 * this.trustWindowMs);
    this.ackBoundMs = ackBound(this.trustWindowMs);
    this.member = `${this.id} ${this.trustWindowMs}`;
    this.publisher = options.publisher as unknown as ScriptClient;
    if ((options.publisher as { isCluster?: unknown }).isCluster === true) {
      if (options.subscriber !== undefined) {
        throw new CachewiseError(
          'E_INVALID_OPTION',
          'redisBus option "subscriber" cannot be used with a Cluster publisher',
          "leave it out: on a Redis Cluster the bus opens its own connection to the master that owns its channel's slot",
        );
      }
      if ((options.publisher as Cluster).options?.keyPrefix) {
        throw new CachewiseError(
          'E_INVALID_OPTION',
          'redisBus cannot use a Cluster publisher with a keyPrefix: ioredis prefixes shard channels in some commands and not in scripts, so messages would miss their subscribers',
          'give the bus a Cluster client without keyPrefix (the tier may keep its own), and name the bus by its channel option',
        );
      }
      // One hash tag: the member set, the scripts and the shard channels share one slot.
      this.channel = `{${this.channel}}`;
      this.link = shardLink(options.publisher as Cluster);
    } else {
      this.link = serverLink(...subscriberOf(options));
    }
    this.ownChannel = `${this.channel}:to:${this.id}`;
    this.membersKey = `${this.channel}:members`;
    this.scripts = busScripts(this.link.publishCommand);
    const publisher = this.publisher;
    this.sendAcks = this.link.publishCommand === 'SPUBLISH' ? (channel, text) => publisher.spublish(channel, text) : (channel, text) => publisher.publish(channel, text);
  }

  get connected(): boolean {
    return this.ready && !this.closed && performance.now() < this.trustedUntil;
  }

  async subscribe(onMessage: (message: Invalidation) => void | Promise<void>, onState: (connected: boolean) => void): Promise<void> {
    this.onState = onState;
    this.scheduleHeartbeat(0);
    await this.link.start([this.channel, this.ownChannel], {
      message: (channel, text) => {
        if (channel === this.channel) this.onInvalidation(text, onMessage);
        else if (channel === this.ownChannel) this.onOwnMessage(text);
      },
      subscribed: () => this.subscribed(),
      dropped: () => this.dropped(),
    });
  }

  async publish(message: Invalidation): Promise<void> {
    if (this.closing) throw new CachewiseError('E_CLOSED', 'the invalidation bus is closed', 'create a new cache');
    const id = `${this.id}.${++this.publishSeq}`;
    const payload = JSON.stringify({ from: this.id, id, key: message.key, version: message.version ?? null });
    let finish!: () => void;
    const acknowledged = new Promise<void>((resolve) => (finish = resolve));
    const entry: PendingPublish = {
      waiting: undefined,
      early: new Set(),
      done: () => {
        this.pending.delete(id);
        finish();
      },
    };
    this.pending.set(id, entry);
    const run = (async () => {
      let members: unknown;
      try {
        members = await this.runScript(this.scripts.publish, [this.membersKey], [this.channel, payload]);
      } catch (error) {
        entry.done();
        throw error;
      }
      const waiting = new Set<string>();
      let boundMs = 0;
      for (const member of Array.isArray(members) ? members : []) {
        const { id: memberId, trustWindowMs } = parseMember(member);
        if (memberId === undefined || memberId === this.id || entry.early.has(memberId)) continue;
        waiting.add(memberId);
        boundMs = Math.max(boundMs, trustWindowMs === undefined ? this.ackBoundMs : ackBound(trustWindowMs));
      }
      if (waiting.size === 0) return entry.done();
      entry.waiting = waiting;
      // The bound runs from the script's answer, which came after Redis sent the message; it is
      // that of the member that trusts its L1 the longest.
      const timer = setTimeout(() => entry.done(), boundMs);
      await acknowledged;
      clearTimeout(timer);
    })();
    const tracked = run.catch(() => undefined);
    this.inFlight.add(tracked);
    void tracked.then(() => this.inFlight.delete(tracked));
    await run;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.heartbeatTimer);
    // Writes already sent still wait for their acknowledgements, which come over the subscriber;
    // not longer than their bound (a script stuck on a dead connection must not hold close()).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, this.ackBoundMs)))]);
    clearTimeout(timer);
    this.closed = true;
    this.ready = false;
    this.trustedUntil = 0;
    this.flushAcks();
    await this.publisher.zrem(this.membersKey, this.member).catch(() => undefined);
    await this.link.close();
  }

  private subscribed(): void {
    if (this.closed) return;
    this.ready = true;
    this.lastHeardAt = performance.now();
    // Trust returns only with a ping sent through this subscription.
    this.scheduleHeartbeat(0);
  }

  private dropped(): void {
    if (!this.ready) return;
    this.ready = false;
    this.trustedUntil = 0;
    this.pingsSent.clear();
    if (!this.closed) this.onState(false);
  }

  private onInvalidation(text: string, onMessage: (message: Invalidation) => void | Promise<void>): void {
    const message = parseInvalidation(text);
    if (message === undefined || message.from === this.id) return;
    let applied: void | Promise<void>;
    try {
      applied = onMessage({ key: message.key, version: message.version });
    } catch {
      return this.notApplied();
    }
    if (applied instanceof Promise) applied.then(() => this.acknowledge(message.from, message.id), () => this.notApplied());
    else this.acknowledge(message.from, message.id);
  }

  /**
   * A message this instance could not apply is not acknowledged, so its sender waits out the
   * trust window; this instance must then stop trusting its L1 at once, not when pings stop.
   */
  private notApplied(): void {
    if (this.closed || this.trustedUntil === 0) return;
    this.trustedUntil = 0;
    this.onState(false);
  }

  private onOwnMessage(text: string): void {
    let data: { ping?: unknown; acks?: unknown; from?: unknown };
    try {
      data = JSON.parse(text) as typeof data;
    } catch {
      return;
    }
    if (typeof data.ping === 'number') this.onPing(data.ping);
    else if (Array.isArray(data.acks) && typeof data.from === 'string') {
      for (const id of data.acks) {
        const entry = typeof id === 'string' ? this.pending.get(id) : undefined;
        if (entry === undefined) continue;
        if (entry.waiting === undefined) entry.early.add(data.from);
        else {
          entry.waiting.delete(data.from);
          if (entry.waiting.size === 0) entry.done();
        }
      }
    }
  }

  private onPing(seq: number): void {
    const sentAt = this.pingsSent.get(seq);
    if (sentAt === undefined || !this.ready || this.closed) return;
    for (const s of this.pingsSent.keys()) if (s <= seq) this.pingsSent.delete(s);
    this.lastHeardAt = performance.now();
    const was = this.connected;
    this.trustedUntil = Math.max(this.trustedUntil, sentAt + this.trustWindowMs);
    if (!was && this.connected) this.onState(true);
  }

  private acknowledge(to: string, id: string): void {
    if (this.closed) return;
    const list = this.acksToSend.get(to);
    if (list === undefined) this.acksToSend.set(to, [id]);
    else list.push(id);
    if (this.acksScheduled) return;
    this.acksScheduled = true;
    setImmediate(() => this.flushAcks());
  }

  private flushAcks(): void {
    this.acksScheduled = false;
    for (const [to, ids] of this.acksToSend) {
      this.sendAcks(`${this.channel}:to:${to}`, JSON.stringify({ from: this.id, acks: ids })).catch(() => undefined);
    }
    this.acksToSend.clear();
  }

  private scheduleHeartbeat(delayMs: number): void {
    if (this.closing) return;
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = setTimeout(() => void this.heartbeat(), delayMs);
    // Open connections keep a program alive, not the heartbeat; close() stops it.
    this.heartbeatTimer.unref();
  }

  private async heartbeat(): Promise<void> {
    if (this.closing) return;
    this.scheduleHeartbeat(this.trustWindowMs / 4);
    if (this.ready && performance.now() - this.lastHeardAt > RENEW_AFTER_WINDOWS * this.trustWindowMs) {
      // Subscribed, yet no ping came back for a long while: the subscription is no longer heard.
      this.lastHeardAt = performance.now();
      this.link.renew();
    }
    if (this.heartbeatRunning) return; // the previous one has not answered: Redis is slow or gone
    this.heartbeatRunning = true;
    const seq = ++this.pingSeq;
    this.pingsSent.set(seq, performance.now());
    if (this.pingsSent.size > MAX_PINGS_IN_FLIGHT) this.pingsSent.delete(this.pingsSent.keys().next().value!);
    try {
      await this.runScript(this.scripts.heartbeat, [this.membersKey], [this.member, String(this.memberTtlMs), this.ownChannel, JSON.stringify({ ping: seq })]);
    } catch {
      // no ping comes back; trust runs out by itself
    } finally {
      this.heartbeatRunning = false;
    }
  }

  private async runScript(s: Script, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.publisher.evalsha(s.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error;
      return this.publisher.eval(s.text, keys.length, ...keys, ...args);
    }
  }
}

/** How long a writer waits for a member that trusts its L1 for `trustWindowMs` (the margin covers clock rates). */
function ackBound(trustWindowMs: number): number {
  return trustWindowMs + Math.max(50, trustWindowMs / 4);
}

/** A member of the set is `<id> <trustWindowMs>`; a bare id (no window) is waited for with this instance's bound. */
function parseMember(member: unknown): { id: string | undefined; trustWindowMs: number | undefined } {
  if (typeof member !== 'string') return { id: undefined, trustWindowMs: undefined };
  const space = member.indexOf(' ');
  if (space < 0) return { id: member, trustWindowMs: undefined };
  const trustWindowMs = Number(member.slice(space + 1));
  return { id: member.slice(0, space), trustWindowMs: Number.isFinite(trustWindowMs) && trustWindowMs > 0 ? trustWindowMs : undefined };
}

function parseInvalidation(text: string): { from: string; id: string; key: string | null; version: number | undefined } | undefined {
  try {
    const data = JSON.parse(text) as { from?: unknown; id?: unknown; key?: unknown; version?: unknown };
    if (typeof data.from !== 'string' || typeof data.id !== 'string' || (typeof data.key !== 'string' && data.key !== null)) return undefined;
    const version = typeof data.version === 'number' && Number.isSafeInteger(data.version) ? data.version : undefined;
    return { from: data.from, id: data.id, key: data.key, version };
  } catch {
    return undefined;
  }
}

/** The subscriber connection of a bus on one Redis server, and whether the bus opened it (and closes it). */
function subscriberOf(options: RedisBusOptions): [Redis, boolean] {
  if (typeof options.subscriber === 'string') {
    const require = createRequire(import.meta.url);
    const { Redis: RedisClass } = require('ioredis') as { Redis: new (url: string, options: object) => Redis };
    return [new RedisClass(options.subscriber, { lazyConnect: true, maxRetriesPerRequest: 1, connectionName: 'cachewise-bus' }), true];
  }
  if (options.subscriber !== undefined) return [options.subscriber, false];
  return [(options.publisher as Redis).duplicate({ lazyConnect: true, connectionName: 'cachewise-bus' }), true];
}
