/**
 * Values in and out of the cache (contract 9). A value is stored as JSON text; what the cache
 * hands back is a deeply frozen copy parsed from that text, so callers can neither mutate cached
 * data nor receive anything JSON cannot carry. Cached data is never evaluated, and `__proto__`
 * keys arrive as plain own properties (JSON.parse never touches prototypes).
 */
import { CachewiseError } from './errors.js';

/** Default bound on one serialized value. */
export const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024;

/** Serializes `value` to JSON text, refusing anything that would not round-trip. */
export function encodeValue(value: unknown, maxBytes = DEFAULT_MAX_VALUE_BYTES): string {
  if (value === undefined) {
    throw invalidValue('the value is undefined', '', 'store null for "no value", or call delete(key)');
  }
  let json: string;
  try {
    json = JSON.stringify(value, function replacer(this: unknown, key: string, v: unknown) {
      return checkJsonValue(this, key, v);
    });
  } catch (error) {
    if (error instanceof CachewiseError) throw error;
    if (error instanceof TypeError && /circular/i.test(error.message)) {
      throw invalidValue('the value contains a cycle', '', 'store a tree: replace back-references by ids', error);
    }
    if (error instanceof TypeError && /bigint/i.test(error.message)) {
      throw invalidValue('the value contains a BigInt', '', 'store BigInt values as strings', error);
    }
    throw invalidValue(`the value cannot be serialized (${(error as Error).message})`, '', 'store plain JSON data', error);
  }
  // Multi-byte characters take up to 3 bytes; measure exactly only when it could matter.
  if (json.length > maxBytes / 3) {
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > maxBytes) {
      throw new CachewiseError(
        'E_VALUE_TOO_LARGE',
        `the value is ${bytes} bytes as JSON, over the limit of ${maxBytes}`,
        'store large blobs elsewhere and cache a reference, or raise maxValueBytes',
        { details: { bytes, maxBytes } },
      );
    }
  }
  return json;
}

/** Parses JSON text from a store or tier into a deeply frozen value. */
export function decodeValue(json: string): unknown {
  return deepFreeze(JSON.parse(json));
}

/** Encodes then decodes: the frozen, JSON-clean copy that the cache keeps. */
export function normalizeValue(value: unknown, maxBytes?: number): { json: string; value: unknown } {
  const json = encodeValue(value, maxBytes);
  return { json, value: decodeValue(json) };
}

function checkJsonValue(holder: unknown, key: string, v: unknown): unknown {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw invalidValue(`${String(v)} is not valid JSON`, key, 'store a finite number, or null');
      return v;
    case 'undefined':
      if (Array.isArray(holder)) throw invalidValue('an array holds undefined', key, 'use null in arrays');
      return v; // an undefined property is omitted, as JSON does
    case 'function':
      throw invalidValue('the value contains a function', key, 'store data only; functions are never cached');
    case 'symbol':
      throw invalidValue('the value contains a symbol', key, 'store strings instead of symbols');
    case 'bigint':
      throw invalidValue('the value contains a BigInt', key, 'store BigInt values as strings');
    case 'object': {
      if (v === null || Array.isArray(v)) return v;
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        const name = (proto?.constructor?.name as string | undefined) ?? 'unknown';
        throw invalidValue(`the value contains a ${name} instance`, key, 'convert it to a plain object, array or string first (Dates are accepted and stored as ISO strings)');
      }
      if (Object.getOwnPropertySymbols(v).length > 0) {
        throw invalidValue('the value has symbol keys', key, 'use string keys');
      }
      return v;
    }
    default:
      return v;
  }
}

function invalidValue(message: string, key: string, remedy: string, cause?: unknown): CachewiseError {
  const where = key === '' ? '' : ` (at property "${key}")`;
  return new CachewiseError('E_INVALID_VALUE', `${message}${where}`, remedy, { cause, details: { property: key } });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
