/**
 * The Redis Stream journal: one stream that several instances of an application share, for
 * write-back with `durability: 'journal'` (contract 5) when the instances have no durable disk
 * of their own, or when any of them must be able to finish the work of another.
 *
 * Ownership. The instances form one consumer group; each is a consumer, named by `consumer`.
 * `append` runs one script that XADDs the records and, in the same atomic step, reads them with
 * XREADGROUP into the appender's pending entries list (PEL). So every entry belongs to exactly
 * one live consumer from the moment it exists: no other instance can read it first, and no
 * entry sits undelivered between an XADD and a read (a crash between two commands cannot
 * orphan it). An entry leaves the PEL only with XACK, sent by `release`: after the database
 * committed the write (or a dead-letter store kept it). Acknowledged entries are deleted at once
 * (XACK and XDEL in one MULTI), so the stream holds only unreleased writes, and one stuck key
 * does not pin the rest, as trimming by XTRIM MINID would.
 *
 * Recovery. `open` reads this consumer's PEL (its previous incarnation's unreleased writes, if
 * the name is stable across restarts), anything undelivered (entries added by a writer that does
 * not follow the protocol above), and claims the PELs of dead consumers. A consumer is alive
 * while its liveness key `<tag>:alive:<consumer>` exists: the instance sets it with a time to
 * live of `claimIdle` and refreshes it every third of that; `close` deletes it. A dead consumer's
 * entries are moved with XCLAIM by one script, so two claimers never both take an entry (XAUTOCLAIM
 * is not used: it picks entries by their own idle time, which would take the writes a live
 * instance holds back during a database outage). A live instance picks up the writes of
 * instances that die later with `claimAbandoned()` (./shared-journal.ts). Replaying a write
 * twice (a claimed entry whose owner was slow, not dead) is harmless: the store is
 * version-guarded (contract 1).
 *
 * The liveness key also guards the name: `open` waits up to `2 × claimIdle` for a crashed
 * predecessor's key to expire, and fails with E_INVALID_OPTION if another live instance holds it
 * (its key is refreshed meanwhile, or outlives the wait).
 *
 * Durability. `append` resolves once the records are in Redis, and, with `waitAof`, once WAITAOF
 * reports them in the append-only file of the master (and of `replicas` replicas); with `wait`,
 * once WAIT reports them on `replicas` replicas. A durability not reached in time rejects with
 * E_TIMEOUT (the records stay in the stream: the write's fate is unknown, as after a timeout).
 * Without `waitAof`, an acknowledged write survives an instance crash, not a Redis crash, unless
 * the server itself runs `appendfsync always`. WAITAOF needs Redis 7.2: `open` checks.
 *
 * Group commit: appends made while a round trip is under way go out together in the next one,
 * as one pipeline of append scripts (at most `maxBatch` records each) followed by one WAIT or
 * WAITAOF. WAIT and WAITAOF block their connection until they return: give the journal a
 * client of its own when using them (a `url`, or `client.duplicate()`).
 *
 * Cluster: the stream and the liveness keys share one hash slot (the stream name's hash tag, or
 * the whole name), so the journal runs on a Redis Cluster client; the stream lives on one node.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis, RedisOptions } from 'ioredis';
import type { Duration } from '../duration.js';
import { toMs } from '../duration.js';
import { CachewiseError } from '../errors.js';
import { redisEvictionPolicy, type RedisClient } from '../tiers/redis-tier.js';
import type { JournalPosition, JournalRecord, JournalStats, RecoveredRecord, RecoveryReport } from './journal.js';
import { NextTurnLoop } from './next-turn-loop.js';
import { checkRecord } from './record-check.js';
import { STREAM_JOURNAL_SCRIPTS, type StreamJournalScript } from './redis-stream-scripts.js';
import type { SharedJournal } from './shared-journal.js';

export interface RedisStreamJournalOptions {
  /**
   * An ioredis `Redis` or `Cluster` that the application owns; left open on close() unless
   * `ownsClient`. Give either `client` or `url`. With `wait` or `waitAof`, give the journal a
   * connection of its own (`client.duplicate()`): WAIT blocks the connection while it waits.
   */
  client?: RedisClient;
  /** `redis://` URL of a single Redis: the journal creates its own client (ioredis must be installed) and quits it on close(). */
  url?: string;
  /** ioredis options for the client created from `url`. */
  redisOptions?: RedisOptions;
  /** Quit `client` on close(). Default false. */
  ownsClient?: boolean;
  /**
   * The stream's key. Every instance that shares the journal uses the same one. Its liveness
   * keys share its hash slot: `{<stream>}:alive:<consumer>`, or `<stream>:alive:<consumer>`
   * when the name has a hash tag (`{orders}:journal`). Default `'cachewise:journal'`.
   */
  stream?: string;
  /** The consumer group of the flushers. Default `'cachewise'`. */
  consumerGroup?: string;
  /**
   * This instance's name in the group, unique among live instances. A name that stays the same
   * across restarts (a pod name, a host name) lets `open` recover the instance's own writes at
   * once; a new name recovers them only when the old one is found dead, after `claimIdle`.
   * Default `<host name>:<pid>`.
   */
  consumer?: string;
  /**
   * How long an instance may fail to refresh its liveness key before it counts as dead and the
   * others take over its unreleased writes. Too short, and a long pause (GC, a slow Redis) hands
   * writes over needlessly (harmless, only duplicated work); too long, and writes of a crashed
   * instance wait longer to reach the database. Default 10 s; at least 100 ms.
   */
  claimIdle?: Duration;
  /**
   * Wait for the append-only file (WAITAOF, Redis 7.2+): `local` 1 waits for the master's fsync
   * (needs `appendonly yes`), `replicas` for that many replicas' fsyncs; `timeout` in ms (0 waits
   * forever). Not reached in time: `append` rejects with E_TIMEOUT.
   */
  waitAof?: { local: 0 | 1; replicas?: number; timeout: number };
  /** Wait for replicas (WAIT): `replicas` must have the records within `timeout` ms, else E_TIMEOUT. */
  wait?: { replicas: number; timeout: number };
  /** Records per append script; larger groups are split into several, sent in one pipeline. Default 500. */
  maxBatch?: number;
  /** Largest record accepted, in bytes of key, collection and JSON; larger ones get E_VALUE_TOO_LARGE. Default 16 MiB. */
  maxRecordBytes?: number;
}

/** Counters of the Redis Stream journal. A stream entry plays the part of a file journal's segment. */
export interface RedisStreamJournalStats extends JournalStats {
  /** Round trips that appended (one per group of concurrent appends, with its WAIT/WAITAOF). */
  readonly syncs: number;
  /** Bytes of record fields appended. */
  readonly bytes: number;
  /** Stream entries this instance holds now: appended, recovered or claimed, not yet released. */
  readonly segments: number;
  /** Stream entries deleted (XDEL) because they were released. */
  readonly segmentsDeleted: number;
  /** Entries claimed from dead consumers (at open and by claimAbandoned). */
  readonly claimed: number;
  /** Entries acknowledged and deleted. */
  readonly acknowledged: number;
  /** Acknowledgements that failed to reach Redis (their writes come back at the next open: harmless). */
  readonly ackFailures: number;
}

const DEFAULT_STREAM = 'cachewise:journal';
const DEFAULT_GROUP = 'cachewise';
const DEFAULT_CLAIM_IDLE_MS = 10_000;
const MIN_CLAIM_IDLE_MS = 100;
const DEFAULT_MAX_BATCH = 500;
const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
/** Entries read or claimed per round trip at open. */
const READ_COUNT = 1000;
/** Ids per XACK/XDEL. */
const ACK_COUNT = 1000;
const KNOWN_OPTIONS = new Set([
  'client', 'url', 'redisOptions', 'ownsClient', 'stream', 'consumerGroup', 'consumer', 'claimIdle', 'waitAof', 'wait', 'maxBatch', 'maxRecordBytes',
]);

/** A journal on a Redis Stream, shared by several instances. */
export interface RedisStreamJournal extends SharedJournal {
  stats(): RedisStreamJournalStats;
}

/** Creates a journal on a Redis Stream; call `open()` before anything else. */
export function redisStreamJournal(options: RedisStreamJournalOptions): RedisStreamJournal {
  return new StreamJournal(options);
}

/** Unreleased entries of one (collection, key) held by this instance. */
interface KeyState {
  readonly id: string;
  readonly collection: string;
  readonly key: string;
  /** Every entry of the key up to this version is released. */
  released: number;
  /** Stream ids of the entries not yet released, and their versions (same order). */
  ids: string[];
  versions: number[];
}

/** The JournalPosition of this journal: which write of which key. */
class StreamPosition {
  constructor(
    readonly state: KeyState,
    readonly version: number,
  ) {}
}

interface PendingAppend {
  readonly records: readonly JournalRecord[];
  readonly args: readonly string[];
  readonly resolve: (positions: JournalPosition[]) => void;
  readonly reject: (error: unknown) => void;
}

/** A stream entry as Redis returns it: id, then the flat field list (null once deleted). */
type RawEntry = [id: string, fields: string[] | null];

type Phase = 'new' | 'opening' | 'open' | 'closing' | 'closed';
type ScriptCaller = (key: string, ...args: (string | number)[]) => Promise<unknown>;

class StreamJournal implements RedisStreamJournal {
  readonly claimEveryMs: number;
  private readonly client: RedisClient;
  private readonly ownsClient: boolean;
  private readonly stream: string;
  private readonly group: string;
  private readonly consumer: string;
  private readonly alivePrefix: string;
  private readonly claimIdleMs: number;
  private readonly waitAof: { local: number; replicas: number; timeout: number } | undefined;
  private readonly wait: { replicas: number; timeout: number } | undefined;
  private readonly maxBatch: number;
  private readonly maxRecordBytes: number;
  private readonly scripts: Record<StreamJournalScript, string>;
  /** Proves that a liveness key is this instance's. */
  private readonly token = randomBytes(12).toString('base64url');

  private phase: Phase = 'new';
  private readonly keys = new Map<string, KeyState>();
  private appends: PendingAppend[] = [];
  private readonly commits = new NextTurnLoop(() => this.appends.length > 0, () => this.commitLoop());
  private acks: string[] = [];
  private readonly ackSender = new NextTurnLoop(() => this.acks.length > 0, () => this.sendAcks());
  private heartbeat: NodeJS.Timeout | undefined;
  /** Entries found undelivered by an append, handed out by the next claimAbandoned(). */
  private strays: RawEntry[] = [];
  private claiming: Promise<RecoveredRecord[]> | undefined;
  private readonly counters = { appends: 0, records: 0, durableRecords: 0, syncs: 0, bytes: 0, segmentsDeleted: 0, claimed: 0, acknowledged: 0, ackFailures: 0 };

  constructor(options: RedisStreamJournalOptions) {
    const settings = validateOptions(options);
    this.stream = settings.stream;
    this.group = settings.group;
    this.consumer = settings.consumer;
    this.alivePrefix = `${hasHashTag(this.stream) ? this.stream : `{${this.stream}}`}:alive:`;
    this.claimIdleMs = settings.claimIdleMs;
    this.claimEveryMs = Math.max(MIN_CLAIM_IDLE_MS, Math.round(settings.claimIdleMs / 2));
    this.waitAof = settings.waitAof;
    this.wait = settings.wait;
    this.maxBatch = settings.maxBatch;
    this.maxRecordBytes = settings.maxRecordBytes;
    if (settings.url !== undefined) {
      this.client = createClient(settings.url, settings.redisOptions, this.commandTimeoutMs());
      this.ownsClient = true;
    } else {
      this.client = settings.client!;
      this.ownsClient = settings.ownsClient;
    }
    this.scripts = defineScripts(this.client);
  }

  async open(): Promise<RecoveryReport> {
    if (this.phase !== 'new') {
      throw new CachewiseError('E_INVALID_OPTION', `the journal on stream "${this.stream}" was already opened`, 'call open() once per journal; create a new redisStreamJournal to open the stream again');
    }
    this.phase = 'opening';
    let holding = false;
    try {
      await this.checkEviction();
      if (this.waitAof !== undefined) await this.checkWaitAof();
      await this.createGroup();
      await this.holdConsumer();
      holding = true;
      this.startHeartbeat();
      const entries = await this.readOwnPending();
      entries.push(...(await this.readUndelivered()));
      entries.push(...(await this.claimDead()));
      const { records, bad, bytes } = this.adopt(entries);
      this.phase = 'open';
      return {
        records,
        corrupt: bad.map(([id, reason]) => ({ segment: `${this.stream} ${id}`, offset: 0, bytes: 0, reason })),
        segments: 1,
        bytes,
      };
    } catch (error) {
      this.stopHeartbeat();
      if (holding) await this.letGo().catch(() => undefined);
      if (this.ownsClient) this.client.disconnect();
      this.phase = 'closed';
      throw error;
    }
  }

  append(records: readonly JournalRecord[]): Promise<JournalPosition[]> {
    if (this.phase !== 'open') return Promise.reject(this.closedError());
    let args: string[];
    try {
      args = records.flatMap((record) => this.encode(record));
    } catch (error) {
      return Promise.reject(error);
    }
    this.counters.appends++;
    this.counters.records += records.length;
    if (records.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.appends.push({ records: records.slice(), args, resolve, reject });
      this.commits.kick();
    });
  }

  release(positions: readonly JournalPosition[]): void {
    if (this.phase !== 'open' && this.phase !== 'closing') return;
    if (!positions.every((position) => position instanceof StreamPosition)) {
      throw new CachewiseError('E_INVALID_OPTION', 'release() got a position that no Redis Stream journal returned', 'pass the positions that append(), open() or claimAbandoned() returned');
    }
    for (const { state, version } of positions as unknown as readonly StreamPosition[]) {
      if (version <= state.released) continue;
      state.released = version;
      const keepIds: string[] = [];
      const keepVersions: number[] = [];
      state.versions.forEach((v, i) => {
        if (v <= version) this.acks.push(state.ids[i]!);
        else {
          keepIds.push(state.ids[i]!);
          keepVersions.push(v);
        }
      });
      state.ids = keepIds;
      state.versions = keepVersions;
      if (keepIds.length === 0 && this.keys.get(state.id) === state) this.keys.delete(state.id);
    }
    this.ackSender.kick();
  }

  async claimAbandoned(limit = Number.POSITIVE_INFINITY): Promise<RecoveredRecord[]> {
    if (this.phase !== 'open') return [];
    if (!(limit >= 1)) throw invalidOption('limit', `claimAbandoned(limit) needs a limit of at least 1, got ${String(limit)}`, 'pass how many entries the queue can take, or nothing for all');
    limit = Math.floor(limit);
    // One claim at a time: a second caller finds nothing left to take meanwhile.
    if (this.claiming !== undefined) {
      await this.claiming.catch(() => undefined);
      return [];
    }
    this.claiming = (async () => {
      const entries = this.strays.splice(0, Math.min(limit, this.strays.length));
      try {
        entries.push(...(await this.claimDead(limit - entries.length)));
      } catch (error) {
        this.strays.unshift(...entries);
        throw error;
      }
      // Closed meanwhile: the entries stay pending under this consumer, whose liveness key
      // close() deletes, so another instance claims them.
      if (this.phase !== 'open') return [];
      return this.adopt(entries).records;
    })();
    try {
      return await this.claiming;
    } finally {
      this.claiming = undefined;
    }
  }

  stats(): RedisStreamJournalStats {
    let held = 0;
    for (const state of this.keys.values()) held += state.ids.length;
    return { ...this.counters, segments: held };
  }

  async close(): Promise<void> {
    if (this.phase === 'closed' || this.phase === 'new') {
      if (this.phase === 'new' && this.ownsClient) this.client.disconnect();
      this.phase = 'closed';
      return;
    }
    if (this.phase === 'closing' || this.phase === 'opening') {
      throw new CachewiseError('E_CLOSED', `the journal on stream "${this.stream}" is already closing or still opening`, 'await the first open() or close() before calling close()');
    }
    this.phase = 'closing';
    await this.claiming?.catch(() => undefined);
    await this.commits.settled();
    await this.ackSender.settled(); // releases made as the last appends resolved
    this.stopHeartbeat();
    await this.letGo().catch(() => undefined);
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect());
    this.phase = 'closed';
  }

  // -------------------------------------------------------------------------------------------
  // Appending: group commit.

  private async commitLoop(): Promise<void> {
    while (this.appends.length > 0) {
      const appends = this.appends;
      this.appends = [];
      try {
        await this.commit(appends);
      } catch (error) {
        // Not a reply of Redis (those are handled in commit): a client that cannot build the pipeline.
        const failure = this.storeError('could not append to', error);
        for (const append of appends) append.reject(failure);
      }
    }
  }

  /** One round trip: the append scripts of the group (whole appends per script), then the wait. */
  private async commit(appends: PendingAppend[]): Promise<void> {
    const chunks: PendingAppend[][] = [];
    let chunk: PendingAppend[] = [];
    let size = 0;
    for (const append of appends) {
      if (chunk.length > 0 && size + append.records.length > this.maxBatch) {
        chunks.push(chunk);
        chunk = [];
        size = 0;
      }
      chunk.push(append);
      size += append.records.length;
    }
    chunks.push(chunk);

    const pipeline = this.client.pipeline() as unknown as Record<string, (...args: unknown[]) => unknown> & { exec(): Promise<[Error | null, unknown][] | null> };
    for (const members of chunks) {
      const args = members.flatMap((member) => member.args);
      pipeline[this.scripts.append]!(this.stream, this.group, this.consumer, String(args.length / 5), ...args);
    }
    if (this.waitAof !== undefined) pipeline.call!('WAITAOF', String(this.waitAof.local), String(this.waitAof.replicas), String(this.waitAof.timeout));
    if (this.wait !== undefined) pipeline.call!('WAIT', String(this.wait.replicas), String(this.wait.timeout));

    let replies: [Error | null, unknown][];
    try {
      const result = await pipeline.exec();
      if (result === null) throw new Error('the Redis pipeline was discarded');
      replies = result;
    } catch (error) {
      const failure = this.storeError('could not append to', error);
      for (const append of appends) append.reject(failure);
      return;
    }
    this.counters.syncs++;

    // The entries that reached the stream are held (a later release acknowledges them) even when
    // the durability wait fails.
    const appended: { append: PendingAppend; positions: JournalPosition[] }[] = [];
    chunks.forEach((members, i) => {
      const [error, reply] = replies[i]!;
      if (error) {
        const failure = this.storeError('could not append to', error);
        for (const member of members) member.reject(failure);
        return;
      }
      const [ids, strays] = reply as [string[], RawEntry[]];
      if (strays.length > 0) this.strays.push(...strays);
      let next = 0;
      for (const member of members) {
        const positions = member.records.map((record) => this.hold(ids[next++]!, record));
        for (const arg of member.args) this.counters.bytes += Buffer.byteLength(arg);
        appended.push({ append: member, positions });
      }
    });
    const shortfall = this.waitShortfall(replies.slice(chunks.length));
    for (const { append, positions } of appended) {
      if (shortfall !== undefined) append.reject(shortfall);
      else {
        this.counters.durableRecords += positions.length;
        append.resolve(positions);
      }
    }
  }

  /** The E_TIMEOUT (or E_STORE_FAILED) for a durability wait that fell short, if one did. */
  private waitShortfall(replies: [Error | null, unknown][]): CachewiseError | undefined {
    let index = 0;
    if (this.waitAof !== undefined) {
      const [error, reply] = replies[index++]!;
      if (error) return this.storeError('could not wait for the append-only file (WAITAOF) of', error);
      const [local, replicas] = (reply as [number, number]).map(Number) as [number, number];
      if (local < this.waitAof.local || replicas < this.waitAof.replicas) {
        return new CachewiseError(
          'E_TIMEOUT',
          `WAITAOF on stream "${this.stream}" reported the records fsynced on ${local} master and ${replicas} replicas within ${this.waitAof.timeout} ms, short of the ${this.waitAof.local} and ${this.waitAof.replicas} asked; the records are in the stream but not as durable as asked, so the write's fate is unknown`,
          'check that the server runs appendonly yes and that enough replicas are connected, or raise waitAof.timeout',
          { details: { stream: this.stream, local, replicas } },
        );
      }
    }
    if (this.wait !== undefined) {
      const [error, reply] = replies[index++]!;
      if (error) return this.storeError('could not wait for the replicas (WAIT) of', error);
      const replicas = Number(reply);
      if (replicas < this.wait.replicas) {
        return new CachewiseError(
          'E_TIMEOUT',
          `WAIT on stream "${this.stream}" reported the records on ${replicas} replicas within ${this.wait.timeout} ms, short of the ${this.wait.replicas} asked; the write's fate is unknown`,
          'check that enough replicas are connected, or raise wait.timeout',
          { details: { stream: this.stream, replicas } },
        );
      }
    }
    return undefined;
  }

  /** Notes an entry this instance holds and returns its position. */
  private hold(id: string, record: JournalRecord): JournalPosition {
    const state = this.keyState(record.collection, record.key);
    if (record.version <= state.released) {
      // Already superseded by a released write of the key: nothing to replay.
      this.acks.push(id);
      this.ackSender.kick();
    } else {
      state.ids.push(id);
      state.versions.push(record.version);
    }
    return new StreamPosition(state, record.version) as unknown as JournalPosition;
  }

  private keyState(collection: string, key: string): KeyState {
    const id = `${collection.length}:${collection}${key}`;
    let state = this.keys.get(id);
    if (state === undefined) this.keys.set(id, (state = { id, collection, key, released: 0, ids: [], versions: [] }));
    return state;
  }

  // -------------------------------------------------------------------------------------------
  // Releasing: XACK and XDEL, batched, in the background.

  private async sendAcks(): Promise<void> {
    while (this.acks.length > 0) {
      const ids = this.acks.splice(0, ACK_COUNT);
      try {
        const replies = await this.client.multi().xack(this.stream, this.group, ...ids).xdel(this.stream, ...ids).exec();
        const failed = replies?.find(([error]) => error !== null);
        if (replies === null || failed !== undefined) throw failed?.[0] ?? new Error('the transaction was discarded');
        this.counters.acknowledged += ids.length;
        this.counters.segmentsDeleted += Number(replies[1]![1]);
      } catch {
        // Lazily recorded: an entry left pending is replayed after a restart or a claim, harmlessly.
        this.counters.ackFailures += ids.length;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Opening and claiming.

  /** An evicted stream loses acknowledged writes: refused on a server that may evict keys without expiry. */
  private async checkEviction(): Promise<void> {
    const policy = await redisEvictionPolicy(this.client);
    if (!policy.startsWith('allkeys-')) return;
    throw new CachewiseError(
      'E_POLICY_REFUSED',
      `the Redis of journal stream "${this.stream}" runs maxmemory-policy ${policy}, which can evict the stream and lose acknowledged writes`,
      'run the journal on a Redis with maxmemory-policy noeviction (or a volatile-* policy: the stream has no expiry)',
      { details: { stream: this.stream, policy } },
    );
  }

  private async checkWaitAof(): Promise<void> {
    const info = String(await this.client.info('server'));
    const version = /redis_version:(\d+)\.(\d+)/.exec(info);
    const major = Number(version?.[1] ?? 0);
    const minor = Number(version?.[2] ?? 0);
    if (major > 7 || (major === 7 && minor >= 2)) return;
    const found = version === null ? 'an unknown version' : `${major}.${minor}`;
    throw new CachewiseError(
      'E_INVALID_OPTION',
      `the journal option waitAof needs WAITAOF, which Redis has from 7.2 on; the server of stream "${this.stream}" runs ${found}`,
      'upgrade Redis to 7.2 or newer, or drop waitAof and run the server with appendonly yes and appendfsync always (every write fsynced before its reply), or use wait for replicas',
      { details: { stream: this.stream, serverVersion: found } },
    );
  }

  private async createGroup(): Promise<void> {
    try {
      // From 0: entries added before the group existed are delivered too, never skipped.
      await this.client.xgroup('CREATE', this.stream, this.group, '0', 'MKSTREAM');
    } catch (error) {
      if (/BUSYGROUP/.test(String((error as Error)?.message))) return;
      throw this.storeError('could not create the consumer group of', error);
    }
  }

  /** Takes this consumer's liveness key, waiting for a crashed predecessor's to expire. */
  private async holdConsumer(): Promise<void> {
    const deadline = Date.now() + 2 * this.claimIdleMs;
    let lastTtl = Number.POSITIVE_INFINITY;
    for (;;) {
      const ttl = Number(await this.runScript('hold', this.aliveKey(), this.token, String(this.claimIdleMs)));
      if (ttl === 0) return;
      // A key whose time to live went up was refreshed: its holder is alive.
      if (ttl < 0 || ttl > lastTtl || Date.now() + ttl > deadline) {
        throw new CachewiseError(
          'E_INVALID_OPTION',
          `consumer "${this.consumer}" of group "${this.group}" on stream "${this.stream}" is held by another live instance`,
          'give each instance its own consumer name (option consumer), or stop the other instance first',
          { details: { stream: this.stream, group: this.group, consumer: this.consumer } },
        );
      }
      lastTtl = ttl;
      await sleep(Math.min(ttl + 5, 250));
    }
  }

  private startHeartbeat(): void {
    const every = Math.max(30, Math.floor(this.claimIdleMs / 3));
    this.heartbeat = setInterval(() => {
      // A missed refresh is retried on the next tick; missing them all for claimIdle hands this
      // instance's writes to the others (harmless: they are replayed twice).
      this.runScript('hold', this.aliveKey(), this.token, String(this.claimIdleMs)).catch(() => undefined);
    }, every);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private letGo(): Promise<unknown> {
    return this.runScript('letGo', this.aliveKey(), this.token);
  }

  private aliveKey(): string {
    return `${this.alivePrefix}${this.consumer}`;
  }

  /** This consumer's pending entries (a previous incarnation's, for a stable name). */
  private async readOwnPending(): Promise<RawEntry[]> {
    const entries: RawEntry[] = [];
    let after = '0';
    for (;;) {
      const batch = await this.readGroup(after);
      if (batch.length === 0) return entries;
      entries.push(...batch);
      after = batch[batch.length - 1]![0];
    }
  }

  /** Entries never delivered to any consumer: only a writer outside this journal leaves them. */
  private async readUndelivered(): Promise<RawEntry[]> {
    const entries: RawEntry[] = [];
    for (;;) {
      const batch = await this.readGroup('>');
      if (batch.length === 0) return entries;
      entries.push(...batch);
    }
  }

  private async readGroup(from: string): Promise<RawEntry[]> {
    try {
      const reply = (await this.client.xreadgroup('GROUP', this.group, this.consumer, 'COUNT', READ_COUNT, 'STREAMS', this.stream, from)) as [string, RawEntry[]][] | null;
      return reply?.[0]?.[1] ?? [];
    } catch (error) {
      throw this.storeError('could not read', error);
    }
  }

  /** Claims up to `limit` pending entries of dead consumers, a bounded number per round trip. */
  private async claimDead(limit = Number.POSITIVE_INFINITY): Promise<RawEntry[]> {
    const entries: RawEntry[] = [];
    while (entries.length < limit) {
      const count = Math.min(READ_COUNT, limit - entries.length);
      let batch: RawEntry[];
      try {
        batch = (await this.runScript('claim', this.stream, this.group, this.consumer, this.alivePrefix, String(count))) as RawEntry[];
      } catch (error) {
        throw this.storeError('could not claim the entries of dead consumers of', error);
      }
      this.counters.claimed += batch.length;
      entries.push(...batch);
      if (batch.length < count) break;
    }
    return entries;
  }

  /**
   * Takes entries into this instance's keeping: each becomes part of its key's state, and the
   * newest per key is returned for replay, in stream order. Entries that are not records (a
   * foreign writer, a deleted entry) are acknowledged and reported.
   */
  private adopt(entries: readonly RawEntry[]): { records: RecoveredRecord[]; bad: [string, string][]; bytes: number } {
    const newest = new Map<KeyState, { record: JournalRecord; id: string }>();
    const bad: [string, string][] = [];
    let bytes = 0;
    const seen = new Set<string>();
    for (const [id, fields] of [...entries].sort((a, b) => compareIds(a[0], b[0]))) {
      if (seen.has(id)) continue;
      seen.add(id);
      const decoded = decodeEntry(fields);
      if (typeof decoded === 'string') {
        if (fields !== null) bad.push([id, decoded]);
        this.acks.push(id);
        continue;
      }
      bytes += fields!.reduce((sum, field) => sum + Buffer.byteLength(field), 0);
      const state = this.keyState(decoded.collection, decoded.key);
      if (decoded.version <= state.released || state.ids.includes(id)) {
        if (!state.ids.includes(id)) this.acks.push(id);
        continue;
      }
      state.ids.push(id);
      state.versions.push(decoded.version);
      const known = newest.get(state);
      if (known === undefined || decoded.version >= known.record.version) newest.set(state, { record: decoded, id });
    }
    this.ackSender.kick();
    const records = [...newest]
      .sort(([, a], [, b]) => compareIds(a.id, b.id))
      .map(([state, { record }]) => ({ ...record, position: new StreamPosition(state, record.version) as unknown as JournalPosition }));
    return { records, bad, bytes };
  }

  // -------------------------------------------------------------------------------------------
  // Helpers.

  private runScript(name: StreamJournalScript, key: string, ...args: string[]): Promise<unknown> {
    return (this.client as unknown as Record<string, ScriptCaller>)[this.scripts[name]]!(key, ...args);
  }

  private encode(record: JournalRecord): string[] {
    checkRecord(record);
    const { collection, op, key, version, json } = record;
    const text = op === 'set' ? json! : '';
    const bytes = Buffer.byteLength(collection) + Buffer.byteLength(key) + Buffer.byteLength(text);
    if (bytes > this.maxRecordBytes) {
      throw new CachewiseError(
        'E_VALUE_TOO_LARGE',
        `a journal record of ${bytes} bytes (collection "${collection}", key "${key}") exceeds maxRecordBytes (${this.maxRecordBytes})`,
        'store smaller values, or raise the journal option maxRecordBytes',
        { details: { collection, key, bytes } },
      );
    }
    return [collection, op, key, String(version), text];
  }

  private commandTimeoutMs(): number {
    const waits = Math.max(this.waitAof?.timeout ?? 0, this.wait?.timeout ?? 0);
    return 2000 + waits;
  }

  private storeError(what: string, error: unknown): CachewiseError {
    const message = error instanceof Error ? error.message : String(error);
    const gone = /NOGROUP/.test(message)
      ? ' (the stream or its consumer group is gone: deleted, or lost by a Redis restart without persistence; unreleased writes in it are lost)'
      : '';
    return new CachewiseError('E_STORE_FAILED', `the journal ${what} stream "${this.stream}": ${message}${gone}`, 'check the Redis server and the connection; appends that rejected were not acknowledged', {
      cause: error,
      details: { stream: this.stream },
    });
  }

  private closedError(): CachewiseError {
    return this.phase === 'new' || this.phase === 'opening'
      ? new CachewiseError('E_CLOSED', `the journal on stream "${this.stream}" is not open yet`, 'await journal.open() before appending')
      : new CachewiseError('E_CLOSED', `the journal on stream "${this.stream}" is closed`, 'create and open a new redisStreamJournal; appends after close() are refused');
  }
}

// ---------------------------------------------------------------------------------------------
// Entries.

/** The record in an entry's fields, or why it is not one. */
function decodeEntry(fields: string[] | null): JournalRecord | string {
  if (fields === null) return 'the entry was deleted';
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  const collection = map.get('c');
  const op = map.get('o');
  const key = map.get('k');
  const version = Number(map.get('v'));
  const json = map.get('j');
  if (!collection || !key) return 'no collection or key';
  if (!Number.isSafeInteger(version) || version < 0) return 'no valid version';
  if (op === 'delete') return { collection, op, key, version };
  if (op === 'set' && json !== undefined) return { collection, op, key, version, json };
  return "op is neither 'set' (with json) nor 'delete'";
}

/** Orders stream ids ('<ms>-<seq>'). */
function compareIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  return Number(am) - Number(bm) || Number(as) - Number(bs);
}

/** Whether a key name has a Redis Cluster hash tag: a `{…}` with something inside. */
function hasHashTag(name: string): boolean {
  const open = name.indexOf('{');
  if (open < 0) return false;
  const close = name.indexOf('}', open + 1);
  return close > open + 1;
}

// ---------------------------------------------------------------------------------------------
// Client and options.

/** Defines the scripts on the client under names unique to their text, and returns the names. */
function defineScripts(client: RedisClient): Record<StreamJournalScript, string> {
  const names = {} as Record<StreamJournalScript, string>;
  for (const [name, lua] of Object.entries(STREAM_JOURNAL_SCRIPTS) as [StreamJournalScript, string][]) {
    const method = `cachewise_journal_${name}_${shortHash(lua)}`;
    if (typeof (client as unknown as Record<string, unknown>)[method] !== 'function') client.defineCommand(method, { numberOfKeys: 1, lua });
    names[name] = method;
  }
  return names;
}

function shortHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(16).padStart(8, '0');
}

function createClient(url: string, redisOptions: RedisOptions | undefined, commandTimeout: number): Redis {
  let RedisClass: typeof Redis;
  try {
    RedisClass = (createRequire(import.meta.url)('ioredis') as { Redis: typeof Redis }).Redis;
  } catch (error) {
    throw new CachewiseError('E_MISSING_DEPENDENCY', 'redisStreamJournal with a url needs the ioredis package, which is not installed or failed to load', 'npm install ioredis@5, or pass your own client', {
      cause: error,
    });
  }
  let client: Redis;
  try {
    client = new RedisClass(url, { commandTimeout, connectTimeout: 2000, maxRetriesPerRequest: 1, connectionName: 'cachewise-journal', ...redisOptions });
  } catch (error) {
    throw invalidOption('url', `cannot create a Redis client for ${JSON.stringify(url)}`, 'pass a URL such as redis://127.0.0.1:6379', error);
  }
  // Failures reach the caller as rejected appends; without a listener ioredis would also log each one.
  client.on('error', () => undefined);
  return client;
}

interface Settings {
  client: RedisClient | undefined;
  url: string | undefined;
  redisOptions: RedisOptions | undefined;
  ownsClient: boolean;
  stream: string;
  group: string;
  consumer: string;
  claimIdleMs: number;
  waitAof: { local: number; replicas: number; timeout: number } | undefined;
  wait: { replicas: number; timeout: number } | undefined;
  maxBatch: number;
  maxRecordBytes: number;
}

function validateOptions(options: RedisStreamJournalOptions): Settings {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'redisStreamJournal options must be an object', 'pass { client } or { url }');
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) throw invalidOption(name, `redisStreamJournal has no option "${name}"`, `use only ${[...KNOWN_OPTIONS].join(', ')}`);
  }
  const { client, url } = options;
  if ((client === undefined) === (url === undefined)) throw invalidOption('client', 'redisStreamJournal needs exactly one of client and url', 'pass an ioredis client as client, or a redis:// URL as url');
  if (client !== undefined && (typeof client !== 'object' || client === null || typeof (client as { defineCommand?: unknown }).defineCommand !== 'function')) {
    throw invalidOption('client', 'client must be an ioredis Redis or Cluster', 'pass new Redis(url) or new Cluster(nodes) from ioredis 5');
  }
  // ioredis adds keyPrefix to some stream commands and not others (XGROUP), and never to the
  // liveness keys a script builds: the journal would lose track of its own keys.
  const keyPrefix = (client as { options?: { keyPrefix?: unknown } } | undefined)?.options?.keyPrefix;
  if (typeof keyPrefix === 'string' && keyPrefix !== '') {
    throw invalidOption('client', `the client has keyPrefix "${keyPrefix}", which the journal cannot use`, 'pass a client without keyPrefix and put the prefix in the stream option');
  }
  if (url !== undefined && (typeof url !== 'string' || !/^rediss?:\/\//.test(url))) throw invalidOption('url', `url must be a redis:// or rediss:// URL, got ${JSON.stringify(url)}`, 'pass a URL such as redis://127.0.0.1:6379');
  const stream = nameOption('stream', options.stream, DEFAULT_STREAM);
  if (stream.includes('{') && !hasHashTag(stream)) throw invalidOption('stream', `stream "${stream}" has a "{" without a hash tag after it`, 'use braces only as a hash tag, like "{orders}:journal", or none');
  const claimIdleMs = options.claimIdle === undefined ? DEFAULT_CLAIM_IDLE_MS : toMs(options.claimIdle, 'claimIdle');
  if (claimIdleMs < MIN_CLAIM_IDLE_MS) throw invalidOption('claimIdle', `claimIdle must be at least ${MIN_CLAIM_IDLE_MS} ms, got ${claimIdleMs}`, 'pass a longer claimIdle, such as 10s');
  let waitAof: Settings['waitAof'];
  if (options.waitAof !== undefined) {
    const { local, replicas = 0, timeout } = options.waitAof ?? ({} as never);
    if ((local !== 0 && local !== 1) || !isCount(replicas) || !isCount(timeout) || local + replicas === 0) {
      throw invalidOption('waitAof', 'waitAof must be { local: 0 | 1, replicas?: integer >= 0, timeout: ms } asking for at least one fsync', 'for example { local: 1, timeout: 1000 }');
    }
    waitAof = { local, replicas, timeout };
  }
  let wait: Settings['wait'];
  if (options.wait !== undefined) {
    const { replicas, timeout } = options.wait ?? ({} as never);
    if (!isCount(replicas) || replicas < 1 || !isCount(timeout)) throw invalidOption('wait', 'wait must be { replicas: integer >= 1, timeout: ms }', 'for example { replicas: 1, timeout: 1000 }');
    wait = { replicas, timeout };
  }
  return {
    client,
    url,
    redisOptions: options.redisOptions,
    ownsClient: options.ownsClient === true,
    stream,
    group: nameOption('consumerGroup', options.consumerGroup, DEFAULT_GROUP),
    consumer: nameOption('consumer', options.consumer, `${hostname()}:${process.pid}`),
    claimIdleMs,
    waitAof,
    wait,
    maxBatch: integerOption('maxBatch', options.maxBatch, DEFAULT_MAX_BATCH, 1, 100_000),
    maxRecordBytes: integerOption('maxRecordBytes', options.maxRecordBytes, DEFAULT_MAX_RECORD_BYTES, 1, 512 * 1024 * 1024),
  };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function nameOption(name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && value.length > 0 && value.length <= 256) return value;
  throw invalidOption(name, `${name} must be a non-empty string of at most 256 characters, got ${JSON.stringify(value) ?? String(value)}`, `pass a name, or leave ${name} out for the default`);
}

function integerOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
  throw invalidOption(name, `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value) ?? String(value)}`, `pass a whole number in range, or leave ${name} out for the default (${fallback})`);
}

function invalidOption(option: string, message: string, remedy: string, cause?: unknown): CachewiseError {
  return new CachewiseError('E_INVALID_OPTION', message, remedy, { ...(cause === undefined ? {} : { cause }), details: { option } });
}
