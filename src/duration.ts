/**
 * Human durations: a number of milliseconds, or a string such as '250ms', '90s', '5m', '1h', '2d'.
 */
import { CachewiseError } from './errors.js';

export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** Parses a duration to milliseconds; `option` names the option in the error. */
export function toMs(value: unknown, option: string): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return value;
  } else if (typeof value === 'string') {
    const match = PATTERN.exec(value.trim());
    if (match) return Number(match[1]) * UNIT_MS[match[2]!]!;
  }
  throw new CachewiseError(
    'E_INVALID_OPTION',
    `option "${option}" must be a duration, got ${JSON.stringify(value) ?? String(value)}`,
    `pass milliseconds (a finite number >= 0) or a string like '250ms', '90s', '5m', '1h', '2d'`,
    { details: { option, value: String(value) } },
  );
}
