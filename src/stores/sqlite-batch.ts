/**
 * What the store's two writers share: the connection settings, and one batch of versioned
 * upserts in one SQLite transaction. The writers: the calling thread (a Database the application
 * passed in) and the writer thread (a file the store opened itself, ./sqlite-writer.ts).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { CachewiseError } from '../errors.js';
import { notApplied, type StoreWrite, type WriteOutcome } from './store.js';

type Database = BetterSqlite3.Database;

/** SQLite result codes that fail again on retry: the data itself is refused. */
const PERMANENT_CODES = /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/;

/** Sets busy_timeout, WAL mode and `synchronous` on a connection. */
export function configure(db: Database, settings: { readonly busyTimeout: number; readonly synchronous: 'full' | 'normal' }): void {
  // busy_timeout first, so that switching the journal mode waits for other connections too.
  db.pragma(`busy_timeout = ${settings.busyTimeout}`);
  const mode = String(db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
  if (mode !== 'wal' && mode !== 'memory') {
    throw new CachewiseError('E_STORE_FAILED', `the SQLite database could not switch to WAL mode (it stays in "${mode}" mode)`, 'use a writable database file on a local filesystem');
  }
  db.pragma(`synchronous = ${settings.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
}

/** The statements a batch needs for one table. */
export interface UpsertStatements {
  readonly upsert: BetterSqlite3.Statement<[string, string | null, number, number]>;
  readonly version: BetterSqlite3.Statement<[string], number>;
}

export function prepareUpserts(db: Database, table: string): UpsertStatements {
  return {
    upsert: db.prepare<[string, string | null, number, number]>(
      `INSERT INTO ${table} ("key", "value", "version", "updated_at") VALUES (?, ?, ?, ?) ` +
        'ON CONFLICT("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", ' +
        `"updated_at" = excluded."updated_at" WHERE excluded."version" > ${table}."version"`,
    ),
    version: db.prepare<[string], number>(`SELECT "version" FROM ${table} WHERE "key" = ?`).pluck().safeIntegers(false),
  };
}

/**
 * Writes batches on `db`: each commits in one transaction; an entry SQLite refuses fails alone,
 * and one whose bad data rolls the whole transaction back (a constraint declared `ON CONFLICT
 * ROLLBACK`, a trigger's RAISE(ROLLBACK)) is reported and the rest committed without it.
 * Entries already in `skip` are not sent; their outcome is taken from there.
 */
export function batchWriter(db: Database): (s: UpsertStatements, writes: readonly StoreWrite[], now: number, skip: Map<number, WriteOutcome>) => WriteOutcome[] {
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');

  function attempt(s: UpsertStatements, writes: readonly StoreWrite[], now: number, skip: ReadonlyMap<number, WriteOutcome>): WriteOutcome[] | { rolledBackBy: number; error: unknown } {
    if (db.inTransaction) {
      throw notApplied(
        new CachewiseError(
          'E_STORE_FAILED',
          'the SQLite connection is already inside a transaction, so the batch could not commit on its own',
          'finish your transaction before the cache writes, or give the store its own connection',
        ),
      );
    }
    try {
      begin.run();
    } catch (error) {
      throw notApplied(error);
    }
    try {
      const outcomes: WriteOutcome[] = [];
      for (let i = 0; i < writes.length; i++) {
        const skipped = skip.get(i);
        if (skipped) {
          outcomes.push(skipped);
          continue;
        }
        const write = writes[i]!;
        try {
          const json = write.op === 'set' ? write.json : null;
          if (s.upsert.run(write.key, json, write.version, now).changes === 1) {
            outcomes.push({ status: 'applied' });
          } else {
            outcomes.push({ status: 'superseded', current: s.version.get(write.key) ?? write.version });
          }
        } catch (error) {
          if (!db.inTransaction) {
            if (isPermanentSqliteError(error)) return { rolledBackBy: i, error };
            throw error;
          }
          // SQLite aborted only this statement; the transaction and the other entries stand.
          outcomes.push({ status: 'failed', error, permanent: isPermanentSqliteError(error) });
        }
      }
      commit.run();
      return outcomes;
    } catch (error) {
      if (db.inTransaction) {
        try {
          rollback.run();
        } catch {
          // The rollback error adds nothing: the original error says why the batch failed.
        }
      }
      throw notApplied(error);
    }
  }

  return (s, writes, now, skip) => {
    for (;;) {
      const result = attempt(s, writes, now, skip);
      if (Array.isArray(result)) return result;
      // That entry's own bad data rolled everything back: report it and commit the others
      // without it. Each round skips one more entry, so this ends.
      skip.set(result.rolledBackBy, { status: 'failed', error: result.error, permanent: true });
    }
  };
}

export function isPermanentSqliteError(error: unknown): boolean {
  if (error instanceof TypeError || error instanceof RangeError) return true; // a parameter the driver cannot bind
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && PERMANENT_CODES.test(code);
}
