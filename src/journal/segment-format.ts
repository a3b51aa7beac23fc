/**
 * The on-disk format of a file journal segment, and the scanner that reads it back.
 *
 * A segment is a sequence of frames, nothing else (no header):
 *
 *   [u32 LE payload length][u32 LE CRC-32 of the payload][payload: UTF-8 JSON array]
 *
 * Payloads:
 *   ["s", collection, key, version, json]   a set
 *   ["d", collection, key, version]         a delete
 *   ["r", collection, key, version]         a release mark: every record of this key with a
 *                                           version <= `version` is done (in the database)
 *   ["R", [[collection, key, version], ...]] the release marks of one commit, in one frame
 *
 * The scanner never throws on bad bytes: a frame that is cut short, has a checksum mismatch or
 * does not decode ends the readable run; it then looks for the next frame that checks out, so
 * that damage in the middle of a segment costs only the damaged records, and reports the
 * stretch it skipped. A bad stretch that runs to the end is reported as the tail (a torn write
 * when it is the end of the newest segment).
 */
import * as zlib from 'node:zlib';
import type { JournalRecord } from './journal.js';

/** Bytes of framing before each payload. */
export const FRAME_HEADER_BYTES = 8;

/** What a frame holds. */
export type SegmentEntry =
  | { readonly kind: 'record'; readonly record: JournalRecord }
  | { readonly kind: 'release'; readonly collection: string; readonly key: string; readonly version: number };

/** CRC-32 (IEEE), from zlib when the runtime has it (Node >= 20.15), else from a table. */
export const crc32: (data: Uint8Array) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (data) => zlib.crc32(data) : tableCrc32;

let crcTable: Uint32Array | undefined;

/** The portable CRC-32; exported so tests can check it against zlib's. */
export function tableCrc32(data: Uint8Array): number {
  const table = (crcTable ??= makeCrcTable());
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = (table[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function makeCrcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

/** The frame of one record. */
export function encodeRecord(record: JournalRecord): Buffer {
  const payload =
    record.op === 'set'
      ? JSON.stringify(['s', record.collection, record.key, record.version, record.json])
      : JSON.stringify(['d', record.collection, record.key, record.version]);
  return frame(payload);
}

/** The frame of a release mark. */
export function encodeRelease(collection: string, key: string, version: number): Buffer {
  return frame(JSON.stringify(['r', collection, key, version]));
}

/** One frame holding many release marks (a commit writes its marks together). */
export function encodeReleases(marks: readonly { readonly collection: string; readonly key: string; readonly version: number }[]): Buffer {
  return frame(JSON.stringify(['R', marks.map((m) => [m.collection, m.key, m.version])]));
}

function frame(payload: string): Buffer {
  const length = Buffer.byteLength(payload);
  const buffer = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
  buffer.write(payload, FRAME_HEADER_BYTES, 'utf8');
  buffer.writeUInt32LE(length, 0);
  buffer.writeUInt32LE(crc32(buffer.subarray(FRAME_HEADER_BYTES)), 4);
  return buffer;
}

/** A stretch of a segment that did not read back. */
export interface BadStretch {
  readonly offset: number;
  readonly bytes: number;
  readonly reason: string;
}

export interface ScanResult {
  /** Damage followed by readable frames. */
  readonly damaged: readonly BadStretch[];
  /** Damage that runs to the end of the buffer. */
  readonly tail?: BadStretch;
}

/**
 * Reads every frame of `buffer`, calling `onEntry` with each readable entry and its offset, in
 * order, and reports the stretches that did not read.
 */
export function scanSegment(buffer: Buffer, onEntry: (entry: SegmentEntry, offset: number) => void): ScanResult {
  const damaged: BadStretch[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    const read = readFrame(buffer, offset);
    if (typeof read !== 'string') {
      for (const entry of read.entries) onEntry(entry, offset);
      offset = read.next;
      continue;
    }
    const resume = findNextFrame(buffer, offset + 1);
    if (resume < 0) return { damaged, tail: { offset, bytes: buffer.length - offset, reason: read } };
    damaged.push({ offset, bytes: resume - offset, reason: read });
    offset = resume;
  }
  return { damaged };
}

/** The entry at `offset` and where the next frame starts, or why there is no readable frame. */
function readFrame(buffer: Buffer, offset: number): { entries: readonly SegmentEntry[]; next: number } | string {
  const available = buffer.length - offset;
  if (available < FRAME_HEADER_BYTES) return 'incomplete frame header';
  const length = buffer.readUInt32LE(offset);
  if (length === 0) return 'zero-length frame';
  if (length > available - FRAME_HEADER_BYTES) return 'record extends past end of segment';
  const start = offset + FRAME_HEADER_BYTES;
  const payload = buffer.subarray(start, start + length);
  if (crc32(payload) !== buffer.readUInt32LE(offset + 4)) return 'checksum mismatch';
  const entries = decodePayload(payload);
  if (entries === undefined) return 'checksum matches but the record does not decode';
  return { entries, next: start + length };
}

/** Offset of the first frame at or after `from` that reads back, or -1. */
function findNextFrame(buffer: Buffer, from: number): number {
  for (let offset = from; offset + FRAME_HEADER_BYTES < buffer.length; offset++) {
    const length = buffer.readUInt32LE(offset);
    // Cheap rejections first: most offsets inside JSON text read as a huge length.
    if (length === 0 || length > buffer.length - offset - FRAME_HEADER_BYTES) continue;
    if (typeof readFrame(buffer, offset) !== 'string') return offset;
  }
  return -1;
}

function decodePayload(payload: Buffer): readonly SegmentEntry[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  if (parsed[0] === 'R') return parsed.length === 2 && Array.isArray(parsed[1]) ? decodeReleases(parsed[1] as unknown[]) : undefined;
  const entry = decodeEntry(parsed);
  return entry === undefined ? undefined : [entry];
}

function decodeReleases(marks: readonly unknown[]): SegmentEntry[] | undefined {
  const entries: SegmentEntry[] = [];
  for (const mark of marks) {
    if (!Array.isArray(mark) || mark.length !== 3) return undefined;
    const entry = decodeEntry(['r', ...(mark as unknown[])]);
    if (entry === undefined) return undefined;
    entries.push(entry);
  }
  return entries;
}

function decodeEntry(parsed: readonly unknown[]): SegmentEntry | undefined {
  const [tag, collection, key, version, json] = parsed;
  if (typeof collection !== 'string' || typeof key !== 'string' || typeof version !== 'number') return undefined;
  if (tag === 's' && parsed.length === 5 && typeof json === 'string') {
    return { kind: 'record', record: { collection, op: 'set', key, version, json } };
  }
  if (parsed.length !== 4) return undefined;
  if (tag === 'd') return { kind: 'record', record: { collection, op: 'delete', key, version } };
  if (tag === 'r') return { kind: 'release', collection, key, version };
  return undefined;
}
