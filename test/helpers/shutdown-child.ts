/**
 * A process for the shutdown test: a write-back collection whose database hangs (so nothing
 * flushes), closeOnSignals hooked, then writes; it prints "ready <n>" once n writes are
 * acknowledged and waits for a signal.
 *
 * Usage: shutdown-child.ts <dir> <journal|none> <n>
 */
import { join } from 'node:path';
import { createCache } from '../../src/cache.js';
import { fileJournal } from '../../src/journal/file-journal.js';
import { closeOnSignals } from '../../src/shutdown.js';
import { sqliteStore } from '../../src/stores/sqlite-store.js';
import { FaultyStore } from './faulty-store.js';

const [dir, durability, n] = process.argv.slice(2) as [string, 'journal' | 'none', string];
const store = new FaultyStore(sqliteStore(join(dir, 'app.db')));
const cache = await createCache({ store, journal: durability === 'journal' ? fileJournal(join(dir, 'journal')) : undefined });
closeOnSignals(cache, { timeout: '200ms' });
const orders = cache.collection('orders', { write: 'back', read: 'through', durability, retry: { maxAttempts: Infinity } });
await orders.get('warm-up');
store.down = true;
for (let i = 0; i < Number(n); i++) await orders.set(`o${i}`, { i });
process.stdout.write(`ready ${n}\n`);
setInterval(() => undefined, 1000);
