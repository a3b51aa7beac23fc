/** Keys and collection names (contract 9): validated before anything is read or written. */
import { CachewiseError } from './errors.js';

export const MAX_KEY_LENGTH = 512;
const COLLECTION_NAME = /^[A-Za-z][A-Za-z0-9_]{0,47}$/;

export function assertKey(key: unknown): asserts key is string {
  if (typeof key === 'string' && key.length > 0 && key.length <= MAX_KEY_LENGTH && !key.includes('\u0000') && key.isWellFormed()) return;
  const got =
    typeof key !== 'string'
      ? `a ${key === null ? 'null' : typeof key}`
      : key.length === 0
        ? 'an empty string'
        : key.length > MAX_KEY_LENGTH
          ? `a string of ${key.length} characters`
          : key.includes('\u0000')
            ? 'a string with a NUL character'
            : 'a string with a lone surrogate (not valid Unicode)';
  throw new CachewiseError(
    'E_INVALID_KEY',
    `a key must be a non-empty string of valid Unicode, at most ${MAX_KEY_LENGTH} characters, without NUL; got ${got}`,
    'convert ids with String(id), and hash long keys',
  );
}

export function assertCollectionName(name: unknown): asserts name is string {
  if (typeof name === 'string' && COLLECTION_NAME.test(name)) return;
  throw new CachewiseError(
    'E_INVALID_OPTION',
    `a collection name must match ${COLLECTION_NAME.source}, got ${JSON.stringify(name) ?? String(name)}`,
    'use a letter followed by letters, digits or underscores (it also names a database table)',
  );
}
