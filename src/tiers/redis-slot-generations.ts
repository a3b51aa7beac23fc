/**
 * The generation check of the Redis tier on a Redis Cluster: one generation marker per hash slot.
 *
 * On a single Redis one marker, `<prefix>generation`, tells whether the server lost its data since
 * a write began (redis-tier.ts). On a Cluster a script can only touch keys of one slot, and data
 * is lost per slot (a master that restarted empty loses its slots only), so every slot s gets its
 * own marker, `<prefix>{<tag_s>}generation`, where `<tag_s>` is a short string whose hash slot is
 * s (slotTags: the first base-36 number with that slot, at most 4 characters). The entry of tier
 * key K is `<prefix>{K}`, in the slot of K: its marker is the one of that slot, so the set script
 * takes entry, lease and marker as KEYS of a single slot.
 *
 * The argument for safety, slot by slot. `generation()` answers a SlotGenerations: for each slot,
 * the id its marker held when the tier last read it or was told it by a refused set (an immutable
 * snapshot: a change makes a new one). A write takes it before its database commit and passes it
 * to `set`, whose script (setInGeneration, run on the node that owns the slot) stores the entry
 * only if the slot's marker still holds the snapshot's id for that slot. The ids of a slot are
 * never used twice (as long as the server's clock does not go back): a marker is created either
 * by the set script (`t<seconds>.<microseconds>` of the server's clock) or by a read (a random id
 * of the read, then the server's clock, so that a read retried after a reconnect does not bring
 * back an id that was lost). So if the slot's
 * data was lost after the snapshot's id was read (a master that restarted empty, a flush, a
 * failover to a replica that had not copied the marker yet, clear()), the marker is missing or
 * holds a newer id when the set runs, and the write, which began before the loss, is refused: the
 * key is tombstoned at the entry's version instead, and the tier adopts the id the script answers.
 * A slot whose id is unknown (not read yet, or just cleared) passes UNKNOWN_SLOT_GENERATION, which
 * no marker holds: refused too. Every decision is the server's, so what the tier has not re-read
 * yet costs refused sets (misses), never a wrong entry; re-reading only makes refusals rarer.
 * Slot migration (resharding) moves the marker with the slot's entries. clear() forgets every id,
 * then deletes every marker of the prefix (found by SCAN, which returns each key present
 * throughout the scan) before it deletes any entry, so a write begun before it, in this process
 * or another, is refused wherever it lands; afterwards each slot's first checked set is refused
 * once and brings the slot's new id.
 *
 * What this cannot see: data lost in part while the marker stays (a failover to a replica that
 * lagged behind by a few writes but had copied the marker long before, the last second of an
 * `appendfsync everysec` file, eviction of single keys), as on a single Redis.
 *
 * Re-reading: every marker is read (created when missing) when the tier starts on a ready
 * Cluster and on every Cluster 'ready'; the slots of a node when that node connects again (a
 * restart: same address, new connection); the slots whose master changed when the slot table is
 * refreshed (a failover). One read runs at a time; slots asked for meanwhile wait for the next.
 * Each master reads its slots' markers itself, 1024 per script (SLOT_GENERATIONS_ON_NODE_LUA,
 * Redis 7 and later), and its ids are taken as soon as they come: all 16384 take some 50-100 ms
 * on a small machine (a script holds its master about 5 ms).
 * Where that script fails (an older Redis, slots that moved, a keyPrefix with a hash tag), each
 * slot is read by a script of its own, in Cluster pipelines of 2048 slots: some 0.2-0.3 s for
 * all of them. Until its marker is read, a slot's sets are refused. The markers cost 16384 small
 * keys per prefix.
 *
 * A client `keyPrefix` without braces changes nothing above. One that holds a hash tag of its own
 * puts every key in that tag's slot, markers included, so entry and marker still share a slot.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Cluster, Redis } from 'ioredis';
import { CachewiseError } from '../errors.js';
import { SLOT_GENERATIONS_ON_NODE_LUA } from './redis-scripts.js';

/** Hash slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16_384;
/** Slots per chunk of a SlotGenerations (a change copies one chunk and the chunk list). */
const CHUNK_BITS = 7;
const CHUNK_SIZE = 1 << CHUNK_BITS;
const CHUNK_COUNT = CLUSTER_SLOTS / CHUNK_SIZE;

/**
 * Slots per script when a master reads many of its markers at once: the script holds the server
 * for a few milliseconds, so commands of the application do not wait long behind it.
 */
const NODE_SCRIPT_SLOTS = 1024;
/**
 * Slots per Cluster pipeline when each is read by a script of its own (a Redis before 7): the
 * pipelines of a master go one after the other, so the tier's own commands wait behind one
 * pipeline rather than behind all of them.
 */
const PIPELINE_BATCH = 2048;

/** What a set passes for a slot whose id is unknown: no marker holds it, so the set is refused. */
export const UNKNOWN_SLOT_GENERATION = '-';

/**
 * What `generation()` answers on a Cluster: the id of each slot's marker as the tier knew it at
 * that moment. Immutable; copy-on-write in chunks of 128 slots, so a change costs two small copies.
 */
export class SlotGenerations {
  /** Nothing known: every slot's set is refused. */
  static readonly EMPTY = new SlotGenerations(Object.freeze(new Array(CHUNK_COUNT).fill(Object.freeze(new Array<string | undefined>(CHUNK_SIZE).fill(undefined)))));

  /** The ids, 128 chunks of 128 slots (public only so that two snapshots compare by content). */
  readonly chunks: readonly (readonly (string | undefined)[])[];

  private constructor(chunks: readonly (readonly (string | undefined)[])[]) {
    this.chunks = chunks;
    Object.freeze(this);
  }

  /** The id known for `slot`, or undefined. */
  idOf(slot: number): string | undefined {
    return this.chunks[slot >>> CHUNK_BITS]?.[slot & (CHUNK_SIZE - 1)];
  }

  /** A snapshot with `changes` (slot, id) applied; this one when nothing differs. */
  with(changes: Iterable<readonly [slot: number, id: string]>): SlotGenerations {
    let chunks: (readonly (string | undefined)[])[] | undefined;
    const copied = new Map<number, (string | undefined)[]>();
    for (const [slot, id] of changes) {
      const index = slot >>> CHUNK_BITS;
      const position = slot & (CHUNK_SIZE - 1);
      if ((copied.get(index) ?? this.chunks[index]!)[position] === id) continue;
      chunks ??= this.chunks.slice();
      let chunk = copied.get(index);
      if (chunk === undefined) {
        chunk = chunks[index]!.slice();
        copied.set(index, chunk);
        chunks[index] = chunk;
      }
      chunk[position] = id;
    }
    if (chunks === undefined) return this;
    for (const chunk of copied.values()) Object.freeze(chunk);
    return new SlotGenerations(Object.freeze(chunks));
  }
}

/** A generation id as the scripts answer it: it starts with a letter, so no reply of 1 or 0 reads as one. */
export function isGenerationId(reply: unknown): reply is string {
  return typeof reply === 'string' && /^[a-z]/.test(reply);
}

/** A command as the tier sends it: ioredis method name (a script's too), then keys and arguments. */
export type SlotCommand = [method: string, ...args: string[]];

/**
 * The markers of one tier on one Cluster: which key holds each slot's marker, the ids known,
 * and the reads that learn them.
 */
export class SlotMarkers {
  private known = SlotGenerations.EMPTY;
  /** Slots asked to be read and not yet sent. */
  private readonly queued = new Set<number>();
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  /** Bumped by forget(): replies of reads sent before are dropped. */
  private epoch = 0;
  private closed = false;
  private readonly stopWatching: () => void;
  private readonly keySlot = slotFunction();

  constructor(
    private readonly client: Cluster,
    private readonly prefix: string,
    /** ioredis method of the generation script (redis-scripts.ts). */
    private readonly readScript: string,
    /** Sends one command through the Cluster client. */
    private readonly send: (command: SlotCommand) => Promise<unknown>,
  ) {
    this.stopWatching = watchCluster(client, (slots) => void this.read(slots ?? allSlots()));
    // Not before the Cluster is ready: its 'ready' reads them all then, and a read queued now
    // would run twice.
    if (client.status === 'ready') void this.readAll();
  }

  /** The snapshot that `generation()` answers. */
  current(): SlotGenerations {
    return this.known;
  }

  /** The slot of an entry key (its hash tag is the tier key). */
  slotOf(entryKey: string): number {
    return this.keySlot(entryKey);
  }

  /**
   * SCAN MATCH pattern of every marker of the prefix (`<prefix>{<tag>}generation`), whose
   * glob-escaped start (keyPrefix, prefix and `{`) the tier gives. No entry key matches: an entry
   * ends with `}`, its lease with `}:lease`.
   */
  static markerPattern(escapedStart: string): string {
    return `${escapedStart}*}generation`;
  }

  /** The key of `slot`'s marker: in that slot, beside every entry of it. */
  markerKey(slot: number): string {
    return `${this.prefix}{${slotTags()[slot]}}generation`;
  }

  /** The id that a set under `generation` checks in `slot`; anything but a snapshot is refused. */
  idFor(generation: unknown, slot: number): string {
    return (generation instanceof SlotGenerations ? generation.idOf(slot) : undefined) ?? UNKNOWN_SLOT_GENERATION;
  }

  /** Takes the id a refused set answered for `slot`. */
  adopt(slot: number, id: string): void {
    if (!this.closed) this.known = this.known.with([[slot, id]]);
  }

  /**
   * Reads (creating when missing) the markers of `slots`; resolves once they are read, never
   * rejects (a slot that could not be read keeps the id known before).
   */
  read(slots: readonly number[]): Promise<void> {
    if (this.closed) return this.drained;
    for (const slot of slots) this.queued.add(slot);
    if (!this.draining) {
      this.draining = true;
      this.drained = this.drain();
    }
    return this.drained;
  }

  /** Reads every slot's marker (see read). */
  readAll(): Promise<void> {
    return this.read(allSlots());
  }

  /**
   * clear(), first: forgets every id, so that this process's next set in each slot is refused
   * once and brings the slot's new id. Waits for a read on its way, which would otherwise create
   * markers again while clear() deletes them, and drops the replies of any read sent before.
   * clear() then deletes the markers themselves (markerPattern), before the entries.
   */
  async forget(): Promise<void> {
    this.queued.clear();
    await this.drained;
    this.epoch++;
    this.known = SlotGenerations.EMPTY;
  }

  close(): void {
    this.closed = true;
    this.queued.clear();
    this.stopWatching();
  }

  private async drain(): Promise<void> {
    try {
      while (this.queued.size > 0 && !this.closed) {
        const slots = [...this.queued];
        this.queued.clear();
        await this.readNow(slots);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Reads `slots`, master by master; each master's ids are taken as soon as they come. */
  private async readNow(slots: readonly number[]): Promise<void> {
    const epoch = this.epoch;
    const base = `g${randomBytes(12).toString('base64url')}`;
    const readGroup = async (group: string, members: number[]): Promise<void> => {
      const ids = await this.readGroup(group, members, base);
      // A slot not read keeps its id, and its first refused set brings the current one.
      if (epoch !== this.epoch || this.closed) return;
      this.known = this.known.with(members.flatMap((slot, i) => (isGenerationId(ids[i]) ? [[slot, ids[i]] as const] : [])));
    };
    await Promise.all([...groupByNodes(this.client, slots)].map(([group, members]) => readGroup(group, members)));
  }

  /**
   * The ids of the markers of `slots`, which share a node group (`master;replicas` of the slot
   * table, '' when unknown): one script per 1024 slots on the master itself where it can
   * (SLOT_GENERATIONS_ON_NODE_LUA), else one script per slot. Never rejects; a slot not read
   * answers something that is no id.
   */
  private async readGroup(group: string, slots: readonly number[], base: string): Promise<unknown[]> {
    const master = group === '' ? undefined : this.client.nodes('master').find((node) => nodeKey(node) === group.split(';')[0]);
    if (master !== undefined) {
      try {
        return await this.readOnNode(master, slots, base);
      } catch {
        // An older Redis, or slots that moved: one by one below.
      }
    }
    const ids: unknown[] = [];
    for (let from = 0; from < slots.length; from += PIPELINE_BATCH) {
      ids.push(...(await this.readOneByOne(group, slots.slice(from, from + PIPELINE_BATCH), base)));
    }
    return ids;
  }

  private async readOnNode(node: Redis, slots: readonly number[], base: string): Promise<unknown[]> {
    const keyPrefix = this.client.options.keyPrefix ?? '';
    const chunks: (readonly number[])[] = [];
    for (let from = 0; from < slots.length; from += NODE_SCRIPT_SLOTS) chunks.push(slots.slice(from, from + NODE_SCRIPT_SLOTS));
    const replies = await Promise.all(
      chunks.map((chunk) => node.eval(SLOT_GENERATIONS_ON_NODE_LUA, 0, base, ...chunk.map((slot) => `${keyPrefix}${this.markerKey(slot)}`))),
    );
    return replies.flatMap((ids, i) => {
      if (!Array.isArray(ids) || ids.length !== chunks[i]!.length) throw new Error('unexpected reply to the slot generations script');
      return ids as unknown[];
    });
  }

  /**
   * One generation script per slot: in one Cluster pipeline when the node group is known,
   * else each on its own. Never rejects.
   */
  private async readOneByOne(group: string, slots: readonly number[], base: string): Promise<unknown[]> {
    const command = (slot: number): SlotCommand => [this.readScript, this.markerKey(slot), base];
    if (group === '') return Promise.all(slots.map((slot) => this.send(command(slot)).catch(() => undefined)));
    try {
      const results = await this.client.pipeline(slots.map(command)).exec();
      return results === null ? [] : results.map(([error, id]) => (error ? undefined : id));
    } catch {
      return [];
    }
  }
}

/** Slots by node group (`master;replicas` in the client's slot table; '' when not known). */
function groupByNodes(client: Cluster, slots: readonly number[]): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const slot of slots) {
    const group = client.slots[slot]?.join(';') ?? '';
    const members = groups.get(group);
    if (members === undefined) groups.set(group, [slot]);
    else members.push(slot);
  }
  return groups;
}

let loadedSlotFunction: ((key: string) => number) | undefined;

/**
 * The CRC16 hash slot of a key, honouring hash tags: the function of the cluster-key-slot
 * package (the one ioredis routes by), loaded on first Cluster use.
 */
export function slotFunction(): (key: string) => number {
  if (loadedSlotFunction !== undefined) return loadedSlotFunction;
  let generate: unknown;
  try {
    generate = createRequire(import.meta.url)('cluster-key-slot');
  } catch (error) {
    throw new CachewiseError('E_MISSING_DEPENDENCY', 'redisTier on a Redis Cluster needs the cluster-key-slot package, which failed to load', 'reinstall cachewise (npm install), which depends on cluster-key-slot', {
      cause: error,
    });
  }
  if (typeof generate !== 'function') {
    throw new CachewiseError('E_MISSING_DEPENDENCY', 'the installed cluster-key-slot package does not export a function', 'npm install cluster-key-slot@1');
  }
  return (loadedSlotFunction = generate as (key: string) => number);
}

let tags: readonly string[] | undefined;

/**
 * For each slot, the first base-36 number (as a string) whose hash slot it is: 0..16383 are all
 * reached by about 88,000 numbers of at most 4 characters. Computed once, on first Cluster use,
 * in some 20 ms. Every process computes the same table, so they share each slot's marker.
 */
export function slotTags(): readonly string[] {
  if (tags !== undefined) return tags;
  const slot = slotFunction();
  const found = new Array<string | undefined>(CLUSTER_SLOTS).fill(undefined);
  for (let n = 0, missing = CLUSTER_SLOTS; missing > 0; n++) {
    const tag = n.toString(36);
    const s = slot(tag);
    if (found[s] === undefined) {
      found[s] = tag;
      missing--;
    }
  }
  tags = Object.freeze(found as string[]);
  return tags;
}

let everySlot: readonly number[] | undefined;

function allSlots(): readonly number[] {
  return (everySlot ??= Object.freeze(Array.from({ length: CLUSTER_SLOTS }, (_, slot) => slot)));
}

/** What to re-read: some slots, or undefined for all of them. */
type Reread = (slots: readonly number[] | undefined) => void;

/**
 * Per Cluster client, one set of listeners, however many tiers share it: the masters last seen
 * per slot and the nodes that were ready once, to tell a reconnect from a first connection.
 */
interface ClusterWatch {
  readonly rereads: Set<Reread>;
  masters: readonly (string | undefined)[];
  readonly readyNodes: Set<string>;
}

const watches = new WeakMap<Cluster, ClusterWatch>();

/** Calls `reread` with the slots whose markers may have changed; returns the function that stops it. */
function watchCluster(client: Cluster, reread: Reread): () => void {
  if (typeof client.on !== 'function') return () => undefined; // not an event emitter: nothing to watch
  let watch = watches.get(client);
  if (watch === undefined) {
    watch = { rereads: new Set(), masters: mastersOf(client), readyNodes: new Set() };
    watches.set(client, watch);
    listen(client, watch);
  }
  watch.rereads.add(reread);
  const added = watch;
  return () => void added.rereads.delete(reread);
}

function listen(client: Cluster, watch: ClusterWatch): void {
  const tell = (slots: readonly number[] | undefined) => {
    if (slots !== undefined && slots.length === 0) return;
    for (const reread of watch.rereads) reread(slots);
  };
  // The whole Cluster (re)connected: every slot.
  client.on('ready', () => {
    watch.masters = mastersOf(client);
    tell(undefined);
  });
  // A new slot table: the slots whose master changed (a failover, a resharding).
  client.on('refresh', () => {
    const masters = mastersOf(client);
    const moved = masters.flatMap((master, slot) => (watch.masters[slot] !== undefined && master !== watch.masters[slot] ? [slot] : []));
    watch.masters = masters;
    tell(moved);
  });
  // A node connected again (a restart empties it, yet keeps its slots through nodes.conf): its slots.
  const watchNode = (node: Redis) => {
    // Already connected when the first tier came: its next 'ready' is a reconnect.
    if (node.status === 'ready') watch.readyNodes.add(nodeKey(node));
    node.on('ready', () => {
      const key = nodeKey(node);
      if (!watch.readyNodes.has(key)) {
        watch.readyNodes.add(key); // a first connection: the Cluster's 'ready' read covers it
        return;
      }
      tell(slotsServedBy(client, key));
    });
  };
  client.on('+node', watchNode);
  for (const node of client.nodes('all')) watchNode(node);
}

function nodeKey(node: Redis): string {
  return `${node.options.host}:${node.options.port}`;
}

function mastersOf(client: Cluster): (string | undefined)[] {
  return Array.from({ length: CLUSTER_SLOTS }, (_, slot) => client.slots[slot]?.[0]);
}

function slotsServedBy(client: Cluster, key: string): number[] {
  const slots: number[] = [];
  for (let slot = 0; slot < CLUSTER_SLOTS; slot++) if (client.slots[slot]?.[0] === key) slots.push(slot);
  return slots;
}
