/**
 * The demo's database: a SQLite file. `synchronous: 'normal'` makes a commit survive a killed
 * process (what the demo kills) without an fsync per commit; the injected latency, not the disk,
 * stands for the database's cost.
 */
import type { Store } from '../../index.js';
import { sqliteStore } from '../../stores/sqlite-store.js';

export function openDemoDatabase(file: string): Store {
  return sqliteStore(file, { synchronous: 'normal' });
}
