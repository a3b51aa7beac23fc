/**
 * One-dimensional `text[]` and `bigint[]` parameters in PostgreSQL's binary array format.
 *
 * pg sends a Buffer parameter in binary format, and the server reads it with `array_recv`: each
 * element is a length and its bytes. A JavaScript array parameter instead becomes the text
 * literal `{"...","..."}`, which pg builds by escaping every quote and backslash of every
 * element (JSON values are full of quotes) and which the server then parses back. For a batch
 * of a few hundred JSON values, the binary form costs both sides less CPU.
 *
 * Layout (all integers big-endian): ndim int32, has-nulls int32, element type oid int32, then per
 * dimension its length int32 and lower bound int32, then per element its byte length int32 (-1
 * for NULL) and its bytes (UTF-8 text, or an int8).
 */

const TEXT_OID = 25;
const INT8_OID = 20;
const HEADER_BYTES = 20;
const EMPTY_HEADER_BYTES = 12;
const TWO_TO_32 = 2 ** 32;

/** `values` as a binary `text[]` parameter; null elements are SQL NULL. */
export function textArrayParam(values: readonly (string | null)[]): Buffer {
  if (values.length === 0) return emptyArray(TEXT_OID);
  let size = HEADER_BYTES;
  let hasNulls = 0;
  for (const value of values) {
    if (value === null) hasNulls = 1;
    size += 4 + (value === null ? 0 : Buffer.byteLength(value, 'utf8'));
  }
  const buffer = Buffer.allocUnsafe(size);
  writeHeader(buffer, hasNulls, TEXT_OID, values.length);
  let offset = HEADER_BYTES;
  for (const value of values) {
    if (value === null) {
      buffer.writeInt32BE(-1, offset);
      offset += 4;
      continue;
    }
    const written = buffer.write(value, offset + 4, 'utf8');
    buffer.writeInt32BE(written, offset);
    offset += 4 + written;
  }
  return buffer;
}

/** `values` (safe integers) as a binary `bigint[]` parameter. */
export function bigintArrayParam(values: readonly number[]): Buffer {
  if (values.length === 0) return emptyArray(INT8_OID);
  const buffer = Buffer.allocUnsafe(HEADER_BYTES + values.length * 12);
  writeHeader(buffer, 0, INT8_OID, values.length);
  let offset = HEADER_BYTES;
  for (const value of values) {
    if (!Number.isSafeInteger(value)) throw new RangeError(`bigint array element ${String(value)} is not a safe integer`);
    buffer.writeInt32BE(8, offset);
    // Two's complement in two 32-bit halves: exact for every safe integer, and no BigInt.
    const high = Math.floor(value / TWO_TO_32);
    buffer.writeInt32BE(high, offset + 4);
    buffer.writeUInt32BE(value - high * TWO_TO_32, offset + 8);
    offset += 12;
  }
  return buffer;
}

function writeHeader(buffer: Buffer, hasNulls: number, oid: number, length: number): void {
  buffer.writeInt32BE(1, 0);
  buffer.writeInt32BE(hasNulls, 4);
  buffer.writeInt32BE(oid, 8);
  buffer.writeInt32BE(length, 12);
  buffer.writeInt32BE(1, 16);
}

function emptyArray(oid: number): Buffer {
  const buffer = Buffer.alloc(EMPTY_HEADER_BYTES);
  buffer.writeInt32BE(oid, 8);
  return buffer;
}
