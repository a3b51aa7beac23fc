/** A fresh SQLite file per test, removed afterwards. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sqliteStore, type SqliteStoreOptions } from '../../src/stores/sqlite-store.js';
import type { Store } from '../../src/stores/store.js';

export function tempSqlite(options: SqliteStoreOptions = {}): { store: Store; file: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'cachewise-test-'));
  const file = join(dir, 'test.db');
  // 'normal' keeps tests fast; durability of SQLite itself is not what these tests check.
  // 'inline': these tests step a manual clock and expect a store write to be over within a few
  // turns of the event loop (the writer thread has its own tests in stores.test.ts).
  const store = sqliteStore(file, { synchronous: 'normal', writer: 'inline', ...options });
  return { store, file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
