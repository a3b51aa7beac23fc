/** Validation of a journal record, the same for every journal (contract 9: bad input changes nothing). */
import { CachewiseError } from '../errors.js';
import type { JournalRecord } from './journal.js';

/** Throws E_INVALID_VALUE, naming the problem, unless `record` is a well-formed JournalRecord. */
export function checkRecord(record: JournalRecord): void {
  if (record === null || typeof record !== 'object') throw recordError('a record must be an object', record);
  const { collection, op, key, version, json } = record;
  if (typeof collection !== 'string' || collection.length === 0) throw recordError('collection must be a non-empty string', record);
  if (typeof key !== 'string' || key.length === 0) throw recordError('key must be a non-empty string', record);
  if (op !== 'set' && op !== 'delete') throw recordError("op must be 'set' or 'delete'", record);
  if (!Number.isSafeInteger(version) || version < 0) throw recordError('version must be a non-negative safe integer', record);
  if (op === 'set' && typeof json !== 'string') throw recordError("a 'set' record needs its value as JSON text in `json`", record);
}

function recordError(problem: string, record: unknown): CachewiseError {
  const key = typeof record === 'object' && record !== null ? (record as { key?: unknown }).key : undefined;
  return new CachewiseError('E_INVALID_VALUE', `a journal record is malformed: ${problem}`, 'append records of the form { collection, op, key, version, json }', {
    details: { key },
  });
}
