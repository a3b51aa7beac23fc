/**
 * Reading a Redis-tier entry from its stored string: a header line
 * `<kind> <version> <freshUntil> <staleUntil>`, a newline, then the value as JSON (values only).
 * The Lua scripts (redis-scripts.ts) write it; this runs on every read hit, so it walks the
 * header once, character by character, instead of cutting it into strings.
 */
import { decodeValue } from '../codec.js';
import type { TierEntry } from './tier.js';

const SPACE = 32;
const NEWLINE = 10;
/** Whole numbers of up to 15 digits are exact in a double when read digit by digit. */
const MAX_EXACT_DIGITS = 15;

/** The entry, or undefined when the string is missing or malformed. */
export function decodeEntry(text: string | null | undefined): TierEntry | undefined {
  if (typeof text !== 'string') return undefined;
  const kind = kindOf(text);
  if (kind === undefined) return undefined;
  const header = new HeaderReader(text, kind.length + 1);
  const version = header.field(SPACE);
  const freshUntil = header.field(SPACE);
  const staleUntil = header.field(NEWLINE);
  if (!Number.isFinite(version) || Number.isNaN(freshUntil) || Number.isNaN(staleUntil)) return undefined;
  if (kind !== 'value') return { kind, version, freshUntil, staleUntil };
  let value: unknown;
  try {
    value = decodeValue(text.slice(header.position));
  } catch {
    return undefined;
  }
  return { kind, version, value, freshUntil, staleUntil };
}

/** The kind before the first space, without cutting a string out. */
function kindOf(text: string): TierEntry['kind'] | undefined {
  switch (text.indexOf(' ')) {
    case 5:
      return text.startsWith('value') ? 'value' : undefined;
    case 6:
      return text.startsWith('absent') ? 'absent' : undefined;
    case 9:
      return text.startsWith('tombstone') ? 'tombstone' : undefined;
    default:
      return undefined;
  }
}

/** Reads the header's number fields in order; `position` is just past the last one read. */
class HeaderReader {
  constructor(
    private readonly text: string,
    public position: number,
  ) {}

  /**
   * The number up to the `end` character, as Number() reads it; NaN when the field is empty,
   * holds a newline, or `end` never comes. Digits only, up to 15 of them (versions and
   * millisecond times), are read here; anything else ('Infinity', a fraction, a sign) by Number().
   */
  field(end: number): number {
    const { text } = this;
    const start = this.position;
    let n = 0;
    let digitsOnly = true;
    let i = start;
    for (; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === end) break;
      if (code === NEWLINE) return Number.NaN;
      const digit = code - 48;
      if (digit >= 0 && digit <= 9) n = n * 10 + digit;
      else digitsOnly = false;
    }
    this.position = i + 1;
    if (i === text.length || i === start) return Number.NaN;
    return digitsOnly && i - start <= MAX_EXACT_DIGITS ? n : Number(text.slice(start, i));
  }
}
