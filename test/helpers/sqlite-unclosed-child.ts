/**
 * A process that writes through a SQLite store's writer thread and never closes the store: it
 * must still exit by itself once its work is done.
 *
 * Usage: sqlite-unclosed-child.ts <file>
 */
import { sqliteStore } from '../../src/stores/sqlite-store.js';

const store = sqliteStore(process.argv[2]!);
await store.prepare('items');
const outcomes = await store.write('items', [{ op: 'set', key: 'a', version: 1, json: '"written"' }]);
process.stdout.write(`${JSON.stringify(outcomes)}\n`);
