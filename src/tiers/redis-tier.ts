/**
 * The Redis tier (ioredis 5, a single Redis or a Redis Cluster): a cache that every process of
 * the application shares.
 *
 * Contract 1: every conditional operation (set-if-newer, invalidate, compare-and-remove, lease,
 * fill) is one Lua script (redis-scripts.ts), so the version check and the write are atomic on
 * the server, whoever else writes the key. Contract 2 and 6: a lease is a Redis key holding a
 * random token; concurrent misses in any process share it, and any write or invalidation of the
 * key deletes it, so a fill that raced with a write is refused.
 *
 * Layout: the entry of tier key K is the string `<prefix>{K}`, a header line
 * `<kind> <version> <freshUntil> <staleUntil>` and then the value JSON (redis-scripts.ts), so a
 * read is one GET of one bulk string; its lease is the string `<prefix>{K}:lease`. The hash tag
 * puts both in one cluster slot. Every entry expires at its staleUntil (PX), computed with the
 * tier's clock; leases expire by the server's clock.
 *
 * Cached data is never evaluated: values are JSON, parsed by decodeValue (deeply frozen, and a
 * `__proto__` key is a plain own property). An entry this tier cannot read (written by something
 * else under its prefix, or a hash of the layout before this one) reads as a miss, and the
 * version rules treat it as nothing cached: the next write replaces it.
 *
 * Contract 1 across a restart: a Redis that restarted empty (or was flushed) holds nothing that
 * could refuse an older version, so a write that began before the loss must not cache its value
 * after it. The tier keeps a generation marker, the string `<prefix>generation` holding an id
 * made of random bytes and the server's clock when it was created (so that no id comes back
 * after a loss, not even from a read the client resent), read (or created) when the client
 * connects and again after every reconnect;
 * `generation()` is the id last known. A write passes the generation it began under to `set`,
 * whose script stores the entry only if the marker still holds it, and otherwise tombstones the
 * key at the entry's version (revoking its lease) and answers the marker's current id, which the
 * tier adopts. The check is on the server: an id the tier has not yet re-read only costs refused
 * sets (misses), never a wrong one. The marker has no TTL; clear() deletes it first.
 * Fills need no marker: their lease, a key too, is lost with the data, so a fill begun before
 * the loss is refused.
 * On a Redis Cluster one marker would sit in one slot, out of reach of the scripts of every other
 * slot, and a Cluster loses data per slot anyway: there every slot has its own marker, in the
 * slot of the entries it guards, and `generation()` answers a snapshot of the ids of all of them
 * (redis-slot-generations.ts has the argument).
 *
 * Reads carry no timer of their own when the client bounds every command (a single Redis with
 * `commandTimeout`): `capabilities.getTimeoutMs` tells the core, which then skips its own.
 *
 * ioredis is an optional peer dependency, loaded only when the tier creates its own client from
 * a URL. Unlike the memory tier, close() keeps the cached data: other processes still use it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { systemClock, type Clock } from '../clock.js';
import { encodeValue } from '../codec.js';
import { toMs, type Duration } from '../duration.js';
import { CachewiseError } from '../errors.js';
import { withTimeout } from '../util/timeout.js';
import { decodeEntry } from './redis-entry-text.js';
import { REDIS_SCRIPTS, type RedisScriptName } from './redis-scripts.js';
import { isGenerationId, SlotMarkers } from './redis-slot-generations.js';
import type { Lease, Tier, TierCapabilities, TierEntry, WriterSlotClaim } from './tier.js';
import { DEFAULT_WRITER_SLOT_LEASE_MS, RedisWriterSlotClaim } from './redis-writer-slots.js';

/** A client of ioredis 5: a single Redis (or Sentinel-managed) connection, or a Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisTierOptions {
  /**
   * An ioredis `Redis` or `Cluster` that the application created and owns: the tier shares it,
   * and leaves it open on close() unless `ownsClient` is true. Give either `client` or `url`.
   * The tier defines its scripts on it (methods named `cachewise_<script>_<sha>`).
   */
  client?: RedisClient;
  /**
   * `redis://` or `rediss://` URL of a single Redis: the tier creates its own client (ioredis must
   * be installed) and quits it on close(). For a Redis Cluster, pass a `Cluster` as `client`.
   * The client answers or fails fast: commands time out after 1 s (`commandTimeout`), are
   * retried once after a reconnect (`maxRetriesPerRequest: 1`), and are auto-pipelined. The
   * offline queue stays on, so calls made while the first connection opens wait for it instead of
   * failing, but never longer than the command timeout.
   */
  url?: string;
  /** ioredis options for the client created from `url`, over the defaults above. */
  redisOptions?: RedisOptions;
  /** Quit the `client` on close(), as if the tier had created it. Default false. */
  ownsClient?: boolean;
  /**
   * Prefix of every key of this tier; clear() deletes its cached entries and generation marker,
   * not the writer-slot claims (`<prefix>writer:<n>`) of caches still open. Non-empty, at most
   * 128 characters, without `{` or `}` (the tier adds the hash tag). Default `'cw:'`. Give each
   * cache sharing a Redis its own prefix; the processes of one cache share it.
   */
  prefix?: string;
  /** Time source for TTLs (staleUntil - now) and for dropping expired entries on read. Default: the system clock. */
  clock?: Clock;
  /**
   * Whether Redis may evict entries under memory pressure (`capabilities.evicts`). Default true;
   * set false only when the server runs `maxmemory-policy noeviction` (see redisEvictionPolicy).
   */
  evicts?: boolean;
  /**
   * How long a writer slot claimed in this Redis holds without renewal (createCache claims one
   * when it has no `writerId` and renews it every third of this). Default 30 s.
   */
  writerSlotLease?: Duration;
}

const DEFAULT_PREFIX = 'cw:';
const MAX_PREFIX_LENGTH = 128;
/** Keys asked for per SCAN round trip in clear(). */
const SCAN_COUNT = 1000;
/** TTLs past this (about 31,000 years) are kept without expiry: PEXPIRE takes a 64-bit integer. */
const MAX_TTL_MS = 1e15;
/** How long redisEvictionPolicy waits for CONFIG GET. */
const CONFIG_TIMEOUT_MS = 2000;
const KNOWN_OPTIONS = new Set(['client', 'url', 'redisOptions', 'ownsClient', 'prefix', 'clock', 'evicts', 'writerSlotLease']);
const ENTRY_KINDS = new Set<string>(['value', 'absent', 'tombstone']);

/** Defaults of the client that the tier creates from a URL (see RedisTierOptions.url). */
const URL_CLIENT_DEFAULTS: RedisOptions = {
  enableAutoPipelining: true,
  commandTimeout: 1000,
  connectTimeout: 2000,
  maxRetriesPerRequest: 1,
  enableOfflineQueue: true,
  connectionName: 'cachewise',
};

export function redisTier(options: RedisTierOptions): Tier {
  return new RedisTier(options);
}

/** A script call or a plain command, as ioredis method name and arguments. */
type Command = [method: string, ...args: string[]];
type Method = (...args: string[]) => Promise<unknown>;

class RedisTier implements Tier {
  readonly kind = 'redis';
  readonly capabilities: TierCapabilities;

  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  private readonly prefix: string;
  private readonly clock: Clock;
  /** ioredis method name of each script, defined on the client. */
  private readonly scripts: Record<RedisScriptName, string>;
  private readonly writerSlotLeaseMs: number;
  private closed = false;
  /** The latest read of the generation marker, settled (never rejects). Single Redis only. */
  private markerRead: Promise<void> | undefined;
  /** The generation marker's key on a single Redis. */
  private readonly generationKey: string;
  /** The marker's id as last read or learned from a refused set; undefined until then. Single Redis only. */
  private epoch: string | undefined;
  /** On a Cluster, the marker of every slot and the ids known; undefined on a single Redis. */
  private readonly slotMarkers: SlotMarkers | undefined;
  /** Stops re-reading the marker on reconnects (on close). */
  private readonly unwatch: () => void = () => undefined;

  constructor(options: RedisTierOptions) {
    const settings = validateOptions(options);
    this.prefix = settings.prefix;
    this.clock = settings.clock;
    this.writerSlotLeaseMs = settings.writerSlotLeaseMs;
    if (settings.url !== undefined) {
      this.client = createClient(settings.url, settings.redisOptions);
      this.ownsClient = true;
    } else {
      this.client = settings.client!;
      this.ownsClient = settings.ownsClient;
    }
    const getTimeoutMs = commandTimeout(this.client);
    this.capabilities = Object.freeze({
      inProcess: false,
      shared: true,
      invalidate: true,
      evicts: settings.evicts,
      ...(getTimeoutMs === undefined ? {} : { getTimeoutMs }),
    } as const);
    this.scripts = defineScripts(this.client);
    this.generationKey = `${this.prefix}generation`;
    if (isCluster(this.client)) {
      this.slotMarkers = new SlotMarkers(this.client, this.prefix, this.scripts.generation, (command) => this.call(command));
    } else {
      this.unwatch = onReady(this.client, this.readGeneration);
      // Now, unless the client waits for a first command (lazyConnect): a client still connecting
      // queues the read ahead of the commands that follow, so the first writes know the id.
      if (this.client.status !== 'wait') this.readGeneration();
    }
  }

  generation(): unknown {
    // A Cluster: the ids of every slot, an immutable snapshot (a change makes a new one).
    if (this.slotMarkers !== undefined) return this.slotMarkers.current();
    // Unknown (not read yet, or just cleared): a write under it is refused, as under a changed one.
    return this.epoch ?? UNKNOWN_GENERATION;
  }

  // Not async: a hit is on the hot path, and each async layer costs a promise and a microtask.
  get(key: string): Promise<TierEntry | undefined> {
    let entryKey: string;
    try {
      this.assertOpen();
      entryKey = this.entryKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.client.get(entryKey).then(this.decodeReply, unreadableAsMiss);
  }

  async getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    this.assertOpen();
    if (keys.length === 0) return [];
    const entryKeys = keys.map((key) => this.entryKey(key));
    // MGET answers nil for a key of another type. On a Cluster, a multi-key command must stay
    // within one slot, and these keys spread over all of them: one GET each (batched per node
    // when the client has enableAutoPipelining).
    const replies = isCluster(this.client)
      ? await Promise.all(entryKeys.map((entryKey) => this.client.get(entryKey).then(undefined, unreadableAsMiss)))
      : await this.client.mget(entryKeys);
    return replies.map(this.decodeReply);
  }

  set(key: string, entry: TierEntry, generation?: unknown): Promise<boolean> {
    let command: Command;
    try {
      this.assertOpen();
      command = this.setCommand(key, entry, generation);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.slotMarkers === undefined) return this.call(command).then(this.setApplied);
    return this.call(command).then((reply) => this.setAppliedInSlot(reply, command));
  }

  async setMany(items: readonly { key: string; entry: TierEntry; generation?: unknown }[]): Promise<boolean[]> {
    this.assertOpen();
    // Build every command first, so that one bad entry rejects the batch before anything is sent.
    const commands = items.map(({ key, entry, generation }) => this.setCommand(key, entry, generation));
    const replies = await this.callMany(commands);
    if (this.slotMarkers === undefined) return replies.map(this.setApplied);
    return replies.map((reply, i) => this.setAppliedInSlot(reply, commands[i]!));
  }

  async invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    this.assertOpen();
    if (version !== undefined) assertNumber(version, 'version');
    assertNumber(ttlMs, 'ttlMs');
    const now = this.clock.now();
    const entryKey = this.entryKey(key);
    await this.call([
      this.scripts.invalidate,
      entryKey,
      leaseKeyOf(entryKey),
      version === undefined ? '' : String(version),
      String(now),
      String(now + ttlMs),
      ttlArgument(ttlMs),
    ]);
  }

  async remove(key: string, version: number): Promise<boolean> {
    this.assertOpen();
    assertNumber(version, 'version');
    const entryKey = this.entryKey(key);
    return applied(await this.call([this.scripts.remove, entryKey, leaseKeyOf(entryKey), String(version)]));
  }

  async lease(key: string, ttlMs: number): Promise<Lease> {
    this.assertOpen();
    assertNumber(ttlMs, 'ttlMs');
    const candidate = randomBytes(16).toString('base64url');
    const ms = ttlMs > 0 ? Math.ceil(Math.min(ttlMs, MAX_TTL_MS)) : 0;
    const token = await this.call([this.scripts.lease, leaseKeyOf(this.entryKey(key)), candidate, String(ms)]);
    return { key, token: String(token), holder: String(token) === candidate };
  }

  async fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    this.assertOpen();
    if (typeof lease !== 'object' || lease === null || typeof lease.token !== 'string' || typeof lease.key !== 'string') {
      throw new CachewiseError('E_INVALID_LEASE', 'fill needs the lease that tier.lease() returned', 'take a lease with tier.lease(key, ttlMs) after the miss, and pass it unchanged');
    }
    const args = this.entryArguments(key, entry);
    if (lease.key !== key) return false;
    const entryKey = this.entryKey(key);
    return applied(await this.call([this.scripts.fill, entryKey, leaseKeyOf(entryKey), lease.token, ...args, String(this.clock.now())]));
  }

  evictionPolicy(): Promise<string> {
    return redisEvictionPolicy(this.client);
  }

  writerSlots(slots: number): WriterSlotClaim {
    this.assertOpen();
    return new RedisWriterSlotClaim(
      {
        setIfAbsent: async (key, token, leaseMs) => (await this.client.set(key, token, 'PX', leaseMs, 'NX')) === 'OK',
        renew: async (key, token, leaseMs) => applied(await this.call([this.scripts.renewWriterSlot, key, token, String(leaseMs)])),
        release: async (key, token) => void (await this.call([this.scripts.releaseWriterSlot, key, token])),
      },
      this.prefix,
      slots,
      this.writerSlotLeaseMs,
    );
  }

  async clear(): Promise<void> {
    this.assertOpen();
    const start = escapeGlob(`${this.client.options.keyPrefix ?? ''}${this.prefix}{`);
    const nodes = await masterNodes(this.client);
    // The generation goes first: a write begun before must not cache into the emptied tier.
    if (this.slotMarkers !== undefined) {
      await this.slotMarkers.forget();
      // Every slot's marker, before any entry. SCAN returns every key present throughout it, so
      // each marker a write begun before could hold is deleted; one made since has a new id.
      for (const node of nodes) await clearNode(node, SlotMarkers.markerPattern(start));
    } else {
      // A marker read still on its way (a fresh tier) would create the marker again after the delete.
      await this.markerRead;
      this.epoch = undefined;
      await this.client.del(this.generationKey);
    }
    for (const node of nodes) await clearNode(node, `${start}*`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    this.slotMarkers?.close();
    if (!this.ownsClient) return;
    try {
      await this.client.quit();
    } catch {
      // Quit failed (the server is gone): drop the connection instead of waiting for it.
      this.client.disconnect();
    }
  }

  /**
   * The set script for one item: `set` without a generation; else `setInGeneration` with the
   * marker (on a Cluster, the marker of the entry's slot, and the snapshot's id for that slot).
   */
  private setCommand(key: string, entry: TierEntry, generation: unknown): Command {
    const entryKey = this.entryKey(key);
    const leaseKey = leaseKeyOf(entryKey);
    const args = this.entryArguments(key, entry);
    if (generation === undefined) return [this.scripts.set, entryKey, leaseKey, ...args];
    if (this.slotMarkers === undefined) return [this.scripts.setInGeneration, entryKey, leaseKey, this.generationKey, ...args, String(generation)];
    const slot = this.slotMarkers.slotOf(entryKey);
    return [this.scripts.setInGeneration, entryKey, leaseKey, this.slotMarkers.markerKey(slot), ...args, this.slotMarkers.idFor(generation, slot)];
  }

  /** A set script's reply: 1 applied, 0 not; a generation (a string) when it refused for that. */
  private readonly setApplied = (reply: unknown): boolean => {
    if (isGenerationId(reply)) {
      this.epoch = reply;
      return false;
    }
    return applied(reply);
  };

  /** As setApplied, on a Cluster: a refused set's generation is the one of its entry's slot. */
  private setAppliedInSlot(reply: unknown, command: Command): boolean {
    if (isGenerationId(reply)) {
      this.slotMarkers!.adopt(this.slotMarkers!.slotOf(command[1]!), reply);
      return false;
    }
    return applied(reply);
  }

  /** Reads the generation marker, creating it when missing: on creation and on every 'ready'. */
  private readonly readGeneration = (): void => {
    let reply: Promise<unknown>;
    try {
      reply = this.call([this.scripts.generation, this.generationKey, freshGeneration()]);
    } catch {
      return; // not a working client: its sets fail too
    }
    this.markerRead = reply.then(
      (id) => {
        if (isGenerationId(id) && !this.closed) this.epoch = id;
      },
      // Unread, the generation stays as it was: the server refuses sets under a wrong one, and the
      // first refused set brings the current id.
      () => undefined,
    );
  };

  /** kind, version, JSON, freshUntil, staleUntil, ttl: the entry as the scripts take it. */
  private entryArguments(key: string, entry: TierEntry): string[] {
    assertEntry(key, entry);
    // The core's entries carry the value's JSON text: no second serialization of the value.
    const json = entry.kind !== 'value' ? '' : typeof entry.json === 'string' ? entry.json : encodeValue(entry.value, Number.POSITIVE_INFINITY);
    const ttl = ttlArgument(entry.staleUntil - this.clock.now());
    return [entry.kind, String(entry.version), json, String(entry.freshUntil), String(entry.staleUntil), ttl];
  }

  /** An entry as GET returns it, or undefined when missing, unreadable or past its staleUntil. */
  private readonly decodeReply = (text: string | null | undefined): TierEntry | undefined => {
    const entry = decodeEntry(text);
    // Redis expires entries by its own clock; the tier's clock decides too, as in the memory tier.
    if (entry === undefined || entry.staleUntil <= this.clock.now()) return undefined;
    return entry;
  };

  private entryKey(key: string): string {
    assertTierKey(key);
    return `${this.prefix}{${key}}`;
  }

  private call(command: Command): Promise<unknown> {
    const [method, ...args] = command;
    return (this.client as unknown as Record<string, Method>)[method]!(...args);
  }

  /**
   * Runs commands in one round trip where the client allows it: a pipeline on a single Redis.
   * A Cluster pipeline must stay within one node's slots, and these keys spread over all of
   * them, so on a Cluster each command goes on its own (batched per node when the client has
   * enableAutoPipelining).
   */
  private async callMany(commands: Command[]): Promise<unknown[]> {
    if (commands.length === 0) return [];
    if (isCluster(this.client)) return Promise.all(commands.map((command) => this.call(command)));
    const replies = await this.client.pipeline(commands).exec();
    if (replies === null) throw new Error('the Redis pipeline was discarded');
    return replies.map(([error, reply]) => {
      if (error) throw error;
      return reply;
    });
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new CachewiseError('E_CLOSED', 'this redis tier is closed', 'create a new tier, or close it only after the last call');
    }
  }
}

/**
 * The server's `maxmemory-policy` ('noeviction', 'allkeys-lru', 'volatile-ttl', ...), read with
 * CONFIG GET; 'unknown' when the server refuses it (CONFIG disabled by a managed service) or
 * does not answer within 2 s. On a Cluster, every master is asked: the answer is their common
 * policy, or the first evicting one when they differ (the riskiest wins).
 */
export async function redisEvictionPolicy(client: RedisClient): Promise<string> {
  try {
    const policies = await withTimeout(
      (async () => {
        const nodes = await masterNodes(client);
        return Promise.all(nodes.map(async (node) => configValue(await node.config('GET', 'maxmemory-policy'))));
      })(),
      CONFIG_TIMEOUT_MS,
      'CONFIG GET maxmemory-policy',
    );
    if (policies.length === 0 || policies.some((policy) => policy === undefined)) return 'unknown';
    return policies.find((policy) => policy !== 'noeviction') ?? 'noeviction';
  } catch {
    return 'unknown';
  }
}

/**
 * A key of another type under the prefix (a hash of the earlier layout) makes GET fail with
 * WRONGTYPE: it reads as a miss, as any unreadable entry does. Other errors stay errors.
 */
function unreadableAsMiss(error: unknown): undefined {
  if (error instanceof Error && error.message.startsWith('WRONGTYPE')) return undefined;
  throw error;
}

/**
 * The client's own bound on a command (ioredis `commandTimeout`, armed when the command is sent
 * or queued offline, and kept across a retry after a reconnect), or undefined when it has none.
 * Not for a Cluster: commands queued while it looks up its slots carry no timer yet.
 */
function commandTimeout(client: RedisClient): number | undefined {
  if (isCluster(client)) return undefined;
  const ms = (client.options as RedisOptions | undefined)?.commandTimeout;
  return typeof ms === 'number' && ms > 0 && Number.isFinite(ms) ? ms : undefined;
}

/** What generation() answers before the marker was first read: no marker holds it. */
const UNKNOWN_GENERATION = '-';

/** A new generation id. Ids start with a letter, so that no reply of 1 or 0 reads as one. */
/** The lease key of an entry: the entry's key (and so its hash tag), then `:lease`. */
function leaseKeyOf(entryKey: string): string {
  return `${entryKey}:lease`;
}

function freshGeneration(): string {
  return `g${randomBytes(12).toString('base64url')}`;
}

/** A script's 1 (applied) or 0; a client with `stringNumbers` returns it as a string. */
function applied(reply: unknown): boolean {
  return Number(reply) === 1;
}

/** Milliseconds to live as the scripts take them: '0' already expired, '-1' never expires. */
function ttlArgument(ms: number): string {
  if (ms <= 0) return '0';
  if (!(ms <= MAX_TTL_MS)) return '-1';
  return String(Math.ceil(ms));
}

function assertEntry(key: string, entry: TierEntry): void {
  const ok =
    typeof entry === 'object' &&
    entry !== null &&
    ENTRY_KINDS.has(entry.kind) &&
    Number.isFinite(entry.version) &&
    typeof entry.freshUntil === 'number' &&
    !Number.isNaN(entry.freshUntil) &&
    typeof entry.staleUntil === 'number' &&
    !Number.isNaN(entry.staleUntil);
  if (!ok) {
    throw new CachewiseError(
      'E_INVALID_VALUE',
      `the tier entry for key ${JSON.stringify(key)} is malformed`,
      "pass { kind: 'value' | 'absent' | 'tombstone', version: finite number, freshUntil, staleUntil: numbers }",
      { details: { key } },
    );
  }
}

function assertNumber(n: number, name: string): void {
  if (typeof n !== 'number' || Number.isNaN(n)) {
    throw new CachewiseError('E_INVALID_VALUE', `${name} must be a number, got ${String(n)}`, `pass ${name} as a number`);
  }
}

/** A key whose hash tag would be empty (`{}`) would put the entry and its lease in different slots. */
function assertTierKey(key: string): void {
  if (typeof key === 'string' && key.length > 0 && !key.startsWith('}')) return;
  throw new CachewiseError(
    'E_INVALID_KEY',
    `a redis tier key must be a non-empty string not starting with "}", got ${typeof key === 'string' ? JSON.stringify(key) : typeof key}`,
    'namespace keys as collection:key',
  );
}

/** Glob pattern escaping for SCAN MATCH: the prefix is matched literally. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** Per client, what to run when it is ready: one 'ready' listener per client, however many tiers share it. */
const readyRuns = new WeakMap<Redis, Set<() => void>>();

/** Runs `run` whenever `client` (re)connects; returns the function that stops it. */
function onReady(client: Redis, run: () => void): () => void {
  if (typeof client.on !== 'function') return () => undefined; // not an event emitter: nothing to watch
  let runs = readyRuns.get(client);
  if (runs === undefined) {
    const all = (runs = new Set());
    readyRuns.set(client, all);
    client.on('ready', () => {
      for (const each of all) each();
    });
  }
  runs.add(run);
  const added = runs;
  return () => void added.delete(run);
}

function isCluster(client: RedisClient): client is Cluster {
  return client.isCluster === true;
}

/** The connections that hold data: the client itself, or every master of a Cluster. */
async function masterNodes(client: RedisClient): Promise<Redis[]> {
  if (!isCluster(client)) return [client];
  // The node list is known once the Cluster is ready; a command waits for that.
  if (client.status !== 'ready') await client.ping();
  return client.nodes('master');
}

async function clearNode(node: Redis, pattern: string): Promise<void> {
  // SCAN returns whole keys; the node adds its own keyPrefix back to each UNLINK.
  const nodePrefix = node.options.keyPrefix ?? '';
  let cursor = '0';
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
    cursor = next;
    if (keys.length === 0) continue;
    // One UNLINK per key: on a Cluster node, a multi-key UNLINK must stay within one slot.
    const replies = await node.pipeline(keys.map((key) => ['unlink', key.slice(nodePrefix.length)])).exec();
    const failed = replies?.find(([error]) => error !== null);
    if (failed) throw failed[0];
  } while (cursor !== '0');
}

function configValue(reply: unknown): string | undefined {
  return Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : undefined;
}

/** Defines each script on the client once (ioredis runs it by EVALSHA and reloads it after NOSCRIPT). */
function defineScripts(client: RedisClient): Record<RedisScriptName, string> {
  const names = {} as Record<RedisScriptName, string>;
  for (const [script, source] of Object.entries(REDIS_SCRIPTS) as [RedisScriptName, (typeof REDIS_SCRIPTS)[RedisScriptName]][]) {
    // The digest in the name keeps two versions of this library sharing a client apart.
    const sha = createHash('sha1').update(source.lua).digest('hex').slice(0, 12);
    const method = `cachewise_${script}_${sha}`;
    if (typeof (client as unknown as Record<string, unknown>)[method] !== 'function') {
      client.defineCommand(method, { numberOfKeys: source.numberOfKeys, lua: source.lua });
    }
    names[script] = method;
  }
  return names;
}

function createClient(url: string, redisOptions: RedisOptions | undefined): Redis {
  const ioredis = loadIoredis();
  let client: Redis;
  try {
    client = new ioredis.Redis(url, { ...URL_CLIENT_DEFAULTS, ...redisOptions });
  } catch (error) {
    throw invalidOption('url', `cannot create a Redis client for ${JSON.stringify(url)}`, 'pass a URL such as redis://127.0.0.1:6379', error);
  }
  // Failures reach the caller as rejected commands; without a listener ioredis would also log each one.
  client.on('error', () => undefined);
  return client;
}

function loadIoredis(): { Redis: typeof Redis } {
  try {
    return createRequire(import.meta.url)('ioredis') as { Redis: typeof Redis };
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code !== 'MODULE_NOT_FOUND') {
      throw new CachewiseError('E_MISSING_DEPENDENCY', 'ioredis is installed but failed to load', 'reinstall it with npm install ioredis@5', { cause: error });
    }
    throw new CachewiseError('E_MISSING_DEPENDENCY', 'redisTier with a url needs the ioredis package, which is not installed', 'npm install ioredis@5, or pass your own client', {
      cause: error,
    });
  }
}

interface Settings {
  client: RedisClient | undefined;
  url: string | undefined;
  redisOptions: RedisOptions | undefined;
  ownsClient: boolean;
  prefix: string;
  clock: Clock;
  evicts: boolean;
  writerSlotLeaseMs: number;
}

function validateOptions(options: RedisTierOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', 'redisTier options must be an object', 'pass { client } or { url }');
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) throw invalidOption(name, `unknown redisTier option "${name}"`, `use only ${[...KNOWN_OPTIONS].join(', ')}`);
  }
  const { client, url, redisOptions, ownsClient = false, prefix = DEFAULT_PREFIX, clock = systemClock, evicts = true } = options;
  if ((client === undefined) === (url === undefined)) {
    throw invalidOption('client', 'redisTier needs exactly one of "client" and "url"', 'pass an ioredis Redis or Cluster as client, or a redis:// URL as url');
  }
  if (client !== undefined && (typeof client !== 'object' || client === null || typeof client.defineCommand !== 'function' || typeof client.isCluster !== 'boolean')) {
    throw invalidOption('client', 'client must be an ioredis 5 Redis or Cluster', 'pass new Redis(...) or new Cluster(...) from ioredis@5');
  }
  if (url !== undefined && (typeof url !== 'string' || !/^rediss?:\/\//.test(url))) {
    throw invalidOption('url', `url must be a redis:// or rediss:// URL, got ${JSON.stringify(url) ?? String(url)}`, 'pass e.g. redis://127.0.0.1:6379');
  }
  if (redisOptions !== undefined && (url === undefined || typeof redisOptions !== 'object' || redisOptions === null)) {
    throw invalidOption('redisOptions', 'redisOptions applies only to the client created from url, and must be an object', 'configure your own client directly, or pass url');
  }
  if (typeof prefix !== 'string' || prefix.length === 0 || prefix.length > MAX_PREFIX_LENGTH || /[{}]/.test(prefix)) {
    throw invalidOption(
      'prefix',
      `prefix must be a non-empty string of at most ${MAX_PREFIX_LENGTH} characters without "{" or "}", got ${JSON.stringify(prefix) ?? String(prefix)}`,
      "use e.g. 'cw:' or 'myapp:cache:'",
    );
  }
  if (typeof ownsClient !== 'boolean') throw invalidOption('ownsClient', 'ownsClient must be a boolean', 'pass true or false');
  if (typeof evicts !== 'boolean') throw invalidOption('evicts', 'evicts must be a boolean', 'pass true or false');
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') {
    throw invalidOption('clock', 'clock must be an object with a now() method', 'pass a Clock, or leave clock unset for the system clock');
  }
  const writerSlotLeaseMs = Math.round(toMs(options.writerSlotLease ?? DEFAULT_WRITER_SLOT_LEASE_MS, 'writerSlotLease'));
  if (writerSlotLeaseMs < 30) throw invalidOption('writerSlotLease', `writerSlotLease must be at least 30 ms, got ${writerSlotLeaseMs} ms`, "pass e.g. '30s' (the default), or leave it out");
  return { client, url, redisOptions, ownsClient, prefix, clock, evicts, writerSlotLeaseMs };
}

function invalidOption(option: string, message: string, remedy: string, cause?: unknown): CachewiseError {
  return new CachewiseError('E_INVALID_OPTION', message, remedy, { cause, details: { option } });
}
