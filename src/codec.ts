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
    // Plain data (the common case) is checked by a quick walk and serialized without a replacer,
    // which is several times faster; anything else goes through the replacer, which names the
    // property at fault.
    json = isPlainJson(value, 0)
      ? JSON.stringify(value)
      : JSON.stringify(value, function replacer(this: unknown, key: string, v: unknown) {
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
  const value: unknown = JSON.parse(json);
  freezeTree(value);
  return value;
}

/**
 * A value as the cache keeps it: its JSON text, and the deeply frozen value parsed from that text.
 * `value` is always the same object, so a reader never gets a copy that differs from another's.
 */
export interface CachedValue {
  readonly json: string;
  readonly value: unknown;
}

/** Encodes then decodes: the frozen, JSON-clean copy that the cache keeps. */
export function normalizeValue(value: unknown, maxBytes?: number): CachedValue {
  const json = encodeValue(value, maxBytes);
  return { json, value: decodeValue(json) };
}

/**
 * Encodes `value` now (so bad input is refused at once) and parses the copy only when something
 * reads it: a write that nobody reads before it leaves the cache never pays for the parse.
 */
export function encodedValue(value: unknown, maxBytes?: number): CachedValue {
  return new ParsedOnDemand(encodeValue(value, maxBytes));
}

class ParsedOnDemand implements CachedValue {
  private parsed: unknown;
  private done = false;

  constructor(readonly json: string) {}

  get value(): unknown {
    if (!this.done) {
      this.parsed = decodeValue(this.json);
      this.done = true;
    }
    return this.parsed;
  }
}

/** Past this depth the quick walk gives up (a cycle, or very deep data) and the replacer decides. */
const MAX_QUICK_DEPTH = 64;

/**
 * True when `value` is made only of strings, finite numbers, booleans, null, arrays without
 * holes or undefined, and objects with Object.prototype (or null) as prototype, no symbol keys
 * and no toJSON: then JSON.stringify alone gives exactly what the replacer path would.
 */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object': {
      if (value === null) return true;
      if (depth >= MAX_QUICK_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          if (item === undefined || !isPlainJson(item, depth + 1)) return false;
        }
        return true;
      }
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      if (Object.getOwnPropertySymbols(value).length > 0) return false;
      for (const key in value) {
        const item = (value as Record<string, unknown>)[key];
        if (item === undefined) continue; // omitted, as JSON does
        if (key === 'toJSON' || !isPlainJson(item, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
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

/**
 * Freezes a tree fresh from JSON.parse: no node is shared or frozen yet, so each is visited once,
 * without the allocations of Object.values.
 */
function freezeTree(value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) freezeTree(value[i]);
  } else {
    const record = value as Record<string, unknown>;
    for (const key in record) freezeTree(record[key]);
  }
  Object.freeze(value);
}
