/**
 * Which journal records are released, and which segments still hold records that are not.
 *
 * Kept per (collection, key), not per record: a release of version v releases every record of
 * the key up to v, so a key needs only the highest version it has in each segment (a segment
 * entry is live while that version is above the key's released version) and a segment is live
 * while some key has a live entry in it. Keys usually sit in one or two segments, so the
 * entries are a short flat array. Memory is one small object per key on disk, not per record.
 *
 * The same operations rebuild the index at recovery, applied in append order: a record, then
 * later a mark that releases it, leave the same state as the live append and release did.
 */

import { worthRebuilding } from '../util/worth-rebuilding.js';

/** Keys forgotten between two pauses of dropSegments. */
const DROP_CHUNK = 4096;

export interface KeyEntry {
  readonly collection: string;
  readonly key: string;
  /** Every record of the key with a version up to this one is released. */
  released: number;
  /** Pairs [segment, highest version of the key's records in that segment], by segment. */
  segments: number[];
  /** The segment holding the key's newest release mark on disk, if any. */
  markSegment: number | undefined;
  /** Dropped: the key's next record gets a new entry. */
  forgotten: boolean;
}

export class ReleaseIndex {
  /**
   * Per collection, the entry of each key. A forgotten entry stays in its map, marked, until the
   * forgotten ones outnumber the rest four to one; then the map is rebuilt without them in one
   * pass. Deleting each at once cost a random access into a large table per key.
   */
  private readonly collections = new Map<string, Map<string, KeyEntry>>();
  private forgottenInMaps = 0;
  /** Segment → number of keys with a live entry in it. */
  private readonly live = new Map<number, number>();
  /**
   * Segment → the entries with a record or their newest mark in it (an entry may stay listed
   * after it moved on; dropSegments checks): deleting a segment visits these, not every key.
   */
  private readonly members = new Map<number, KeyEntry[]>();

  /** Entries held in the maps, forgotten ones not yet dropped included (for tests and stats). */
  get heldEntries(): number {
    let held = 0;
    for (const keys of this.collections.values()) held += keys.size;
    return held;
  }

  entry(collection: string, key: string): KeyEntry {
    let keys = this.collections.get(collection);
    if (keys === undefined) this.collections.set(collection, (keys = new Map()));
    let entry = keys.get(key);
    if (entry === undefined || entry.forgotten) {
      if (entry !== undefined) this.forgottenInMaps--;
      keys.set(key, (entry = { collection, key, released: 0, segments: [], markSegment: undefined, forgotten: false }));
    }
    return entry;
  }

  /** Notes a record of `entry` at `version` in `segment` (segments only grow, per key). */
  addRecord(entry: KeyEntry, version: number, segment: number): void {
    const pairs = entry.segments;
    const last = pairs.length - 2;
    if (last >= 0 && pairs[last] === segment) {
      const highest = pairs[last + 1] as number;
      if (version <= highest) return;
      pairs[last + 1] = version;
      if (highest <= entry.released && version > entry.released) this.addLive(segment, 1);
      return;
    }
    // A literal of the exact size: push() on an empty array reserves room for 17 numbers.
    entry.segments = pairs.length === 0 ? [segment, version] : [...pairs, segment, version];
    this.addMember(segment, entry);
    if (version > entry.released) this.addLive(segment, 1);
  }

  /**
   * Releases the records of `entry` up to `version`. Calls `freed` with each segment that holds
   * no live record any more. Returns false when nothing new was released.
   */
  release(entry: KeyEntry, version: number, freed: (segment: number) => void): boolean {
    const before = entry.released;
    if (version <= before) return false;
    entry.released = version;
    const pairs = entry.segments;
    for (let i = 0; i < pairs.length; i += 2) {
      const highest = pairs[i + 1] as number;
      if (highest > before && highest <= version && this.addLive(pairs[i] as number, -1) === 0) freed(pairs[i] as number);
    }
    return true;
  }

  /** Notes that the newest release mark of `entry` is in `segment`. */
  noteMark(entry: KeyEntry, segment: number): void {
    if (entry.markSegment === segment) return;
    entry.markSegment = segment;
    this.addMember(segment, entry);
  }

  /** Keys with a live entry in `segment`. */
  liveIn(segment: number): number {
    return this.live.get(segment) ?? 0;
  }

  /**
   * Forgets deleted segments. Returns the keys whose newest mark was in one of them and that
   * still have released records elsewhere: their mark must be written again. A segment holds up
   * to hundreds of thousands of keys: between chunks of keys it awaits `pause()`, so the event
   * loop is not held up; records and releases may come in meanwhile.
   */
  async dropSegments(deleted: ReadonlySet<number>, pause: () => Promise<void>): Promise<KeyEntry[]> {
    const remark: KeyEntry[] = [];
    // A deleted segment had no live record: a release in a pause cannot reach its pairs.
    for (const segment of deleted) this.live.delete(segment);
    let visited = 0;
    for (const segment of deleted) {
      const entries = this.members.get(segment) ?? [];
      this.members.delete(segment);
      for (const entry of entries) {
        if (++visited % DROP_CHUNK === 0) await pause();
        const pairs = entry.segments;
        for (let i = pairs.length - 2; i >= 0; i -= 2) if (deleted.has(pairs[i] as number)) pairs.splice(i, 2);
        if (pairs.length === 0) {
          this.forget(entry);
        } else if (entry.markSegment !== undefined && deleted.has(entry.markSegment)) {
          entry.markSegment = undefined;
          if (pairs.some((value, i) => i % 2 === 1 && value <= entry.released)) remark.push(entry);
        }
      }
    }
    this.dropForgotten();
    return remark;
  }

  /**
   * Drops `entry` from its collection. An entry not yet forgotten is its key's current one: a key
   * gets a new entry only after its old one was forgotten.
   */
  private forget(entry: KeyEntry): void {
    if (entry.forgotten) return;
    entry.forgotten = true;
    this.forgottenInMaps++;
  }

  /** Rebuilds the collections' maps without their forgotten entries once that is worth it (worthRebuilding). */
  private dropForgotten(): void {
    if (!worthRebuilding(this.forgottenInMaps, this.heldEntries - this.forgottenInMaps)) return;
    for (const [collection, keys] of this.collections) {
      const kept = new Map<string, KeyEntry>();
      for (const [key, entry] of keys) if (!entry.forgotten) kept.set(key, entry);
      if (kept.size === 0) this.collections.delete(collection);
      else this.collections.set(collection, kept);
    }
    this.forgottenInMaps = 0;
  }

  private addMember(segment: number, entry: KeyEntry): void {
    const entries = this.members.get(segment);
    if (entries === undefined) this.members.set(segment, [entry]);
    else entries.push(entry);
  }

  private addLive(segment: number, delta: number): number {
    const count = (this.live.get(segment) ?? 0) + delta;
    this.live.set(segment, count);
    return count;
  }
}
