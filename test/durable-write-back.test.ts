/**
 * Write-back with durability 'journal' (contract 5): `set` resolves only after the journal made
 * the write durable; nothing acknowledged is lost across a close with a dead database, a journal
 * failure, or a database outage; recovery on start replays what the database may not hold.
 * Real SQLite, real file journal, system clock; faults are injected around them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { fdatasync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createCache, type Cache, type CloseReport } from '../src/cache.js';
import type { Collection } from '../src/collection.js';
import { CachewiseError } from '../src/errors.js';
import { fileJournal, type FileJournalOptions } from '../src/journal/file-journal.js';
import { sqliteStore } from '../src/stores/sqlite-store.js';
import type { CollectionPolicy } from '../src/policy.js';
import { FaultyStore } from './helpers/faulty-store.js';

const datasync = promisify(fdatasync);
const DURABLE: CollectionPolicy = { write: 'back', read: 'through', durability: 'journal', flush: { maxDelay: '5ms' } };

interface Place {
  readonly dir: string;
  readonly db: string;
  readonly journalDir: string;
  cleanup(): void;
}

function place(): Place {
  const dir = mkdtempSync(join(tmpdir(), 'cachewise-durable-'));
  return { dir, db: join(dir, 'app.db'), journalDir: join(dir, 'journal'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function open(p: Place, options: { journal?: FileJournalOptions } = {}): Promise<{ cache: Cache; store: FaultyStore }> {
  const store = new FaultyStore(sqliteStore(p.db, { synchronous: 'normal' }));
  const cache = await createCache({ store, journal: fileJournal(p.journalDir, options.journal) });
  return { cache, store };
}

/** The row of `key` in the SQLite file, read by a store of its own. */
async function row(p: Place, collection: string, key: string) {
  const store = sqliteStore(p.db);
  try {
    await store.prepare(collection);
    return await store.load(collection, key);
  } finally {
    await store.close();
  }
}

/** Opens a cache, writes with the database down (nothing flushes), and closes it. */
async function closeWithDatabaseDown(p: Place, write: (orders: Collection<{ n: number }>) => Promise<void>): Promise<CloseReport> {
  const { cache, store } = await open(p);
  const orders = cache.collection<{ n: number }>('orders', { ...DURABLE, retry: { maxAttempts: Infinity } });
  await orders.get('warm-up');
  store.down = true;
  await write(orders);
  return cache.close({ timeout: '20ms' });
}

/** A datasync that waits for `release()` before it syncs: acks must wait for it. */
function heldSync() {
  let held = true;
  const waiting: (() => void)[] = [];
  return {
    io: {
      datasync: async (fd: number) => {
        if (held) await new Promise<void>((resolve) => waiting.push(resolve));
        await datasync(fd);
      },
    },
    release() {
      held = false;
      for (const wake of waiting.splice(0)) wake();
    },
    get waiting() {
      return waiting.length;
    },
  };
}

describe('durable write-back', () => {
  test('critical data may use write-back once the cache has a journal; without one it is refused', async () => {
    const p = place();
    try {
      const bare = await createCache({ store: sqliteStore(p.db) });
      assert.throws(() => bare.collection('orders', { write: 'back', read: 'through', critical: true }), { code: 'E_POLICY_REFUSED' });
      assert.throws(() => bare.collection('orders', { ...DURABLE }), { code: 'E_POLICY_REFUSED' });
      await bare.close();
      const { cache } = await open(p);
      const orders = cache.collection('orders', { ...DURABLE, critical: true });
      await orders.set('o1', { total: 1 });
      await cache.close();
    } finally {
      p.cleanup();
    }
  });

  test('set resolves only after the fsync, and no reader sees the write before it is durable', async () => {
    const p = place();
    const sync = heldSync();
    try {
      const { cache } = await open(p, { journal: { io: sync.io } });
      const orders = cache.collection<{ n: number }>('orders', DURABLE);
      await orders.get('warm-up'); // the collection is prepared
      let acked = false;
      const setting = orders.set('o1', { n: 1 }).then((r) => {
        acked = true;
        return r;
      });
      while (sync.waiting === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      assert.equal(acked, false, 'set resolved before the journal synced');
      assert.equal(await orders.get('o1'), undefined, 'a reader saw a write that is not durable yet');
      sync.release();
      await setting;
      assert.deepEqual(await orders.get('o1'), { n: 1 });
      await cache.close();
    } finally {
      sync.release();
      p.cleanup();
    }
  });

  test('a journal that cannot sync rejects the write with a typed error, and the write is nowhere', async () => {
    const p = place();
    try {
      const failing = { datasync: async () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })) };
      const { cache } = await open(p, { journal: { io: failing } });
      const orders = cache.collection<{ n: number }>('orders', DURABLE);
      await orders.get('warm-up');
      await assert.rejects(orders.set('o1', { n: 1 }), (error: unknown) => error instanceof CachewiseError && error.code === 'E_STORE_FAILED');
      assert.equal(await orders.get('o1'), undefined);
      await orders.flush();
      assert.equal(await row(p, 'orders', 'o1'), undefined);
      assert.equal(orders.stats().pending, 0);
      await cache.close();
    } finally {
      p.cleanup();
    }
  });

  test('a close with the database down loses nothing: the next start replays the journal', async () => {
    const p = place();
    try {
      const report = await closeWithDatabaseDown(p, async (orders) => {
        for (let i = 0; i < 50; i++) await orders.set(`o${i}`, { n: i });
        await orders.delete('o7');
      });
      assert.equal(report.lost, 0);
      assert.equal(report.unflushed.length, 50);
      assert.ok(report.unflushed.every((w) => w.journaled));
      assert.equal(await row(p, 'orders', 'o3'), undefined, 'the database was down');

      const second = await open(p);
      assert.deepEqual(second.cache.recovery()?.collections, { orders: 50 });
      assert.deepEqual(second.cache.recovery()?.waiting, ['orders']);
      const again = second.cache.collection<{ n: number }>('orders', DURABLE);
      assert.deepEqual(await again.get('o3'), { n: 3 }, 'recovered writes are readable at once');
      assert.equal(await again.get('o7'), undefined, 'the delete was recovered too');
      await again.flush();
      assert.deepEqual(second.cache.recovery()?.waiting, []);
      const v = await again.set('o3', { n: 333 });
      assert.ok(v.version > (report.unflushed.find((w) => w.key === 'o3')?.version ?? Infinity), 'new versions follow the recovered ones');
      await again.flush();
      const closing = await second.cache.close();
      assert.equal(closing.unflushed.length, 0);
      assert.equal(JSON.parse((await row(p, 'orders', 'o3'))!.json!).n, 333);
      assert.equal(JSON.parse((await row(p, 'orders', 'o49'))!.json!).n, 49);
      assert.equal((await row(p, 'orders', 'o7'))?.json, undefined);

      const third = await open(p);
      assert.equal(third.cache.recovery()?.records, 0, 'flushed writes were released');
      await third.cache.close();
    } finally {
      p.cleanup();
    }
  });

  test('records of a collection that now writes through are in the database before its first read', async () => {
    const p = place();
    try {
      await closeWithDatabaseDown(p, async (orders) => {
        await orders.set('o1', { n: 1 });
      });

      const second = await open(p);
      const through = second.cache.collection<{ n: number }>('orders', { write: 'through', read: 'through' });
      assert.deepEqual(await through.get('o1'), { n: 1 });
      assert.equal(JSON.parse((await row(p, 'orders', 'o1'))!.json!).n, 1);
      await second.cache.close();
    } finally {
      p.cleanup();
    }
  });

  test('a write the database refuses goes to the dead letters and stays in the journal for the next start', async () => {
    const p = place();
    try {
      const first = await open(p);
      const orders = first.cache.collection<{ n: number }>('orders', DURABLE);
      await orders.get('warm-up');
      first.store.poisoned.add('bad');
      const bad = await orders.set('bad', { n: 1 });
      await orders.set('good', { n: 2 });
      await assert.rejects(orders.persisted(bad), { code: 'E_FLUSH_INCOMPLETE' });
      await orders.flush();
      assert.equal(first.cache.deadLetters().length, 1);
      await first.cache.close();

      const second = await open(p);
      assert.deepEqual(second.cache.recovery()?.collections, { orders: 1 }, 'only the dead letter was kept');
      const again = second.cache.collection<{ n: number }>('orders', DURABLE);
      await again.flush();
      assert.equal(JSON.parse((await row(p, 'orders', 'bad'))!.json!).n, 1, 'replayed once the database took it');
      await second.cache.close();
    } finally {
      p.cleanup();
    }
  });

  test('a database outage: retries with backoff, pending stays bounded, nothing is lost, all flushed once it is back', async () => {
    const p = place();
    try {
      const { cache, store } = await open(p);
      const events = cache.collection<{ n: number }>('events', {
        ...DURABLE,
        retry: { maxAttempts: Infinity, baseDelay: '5ms', maxDelay: '40ms' },
        pending: { maxEntries: 100, waitTimeout: '30s' },
        flush: { maxBatch: 50, maxDelay: '5ms' },
      });
      await events.get('warm-up');
      let retries = 0;
      cache.events.on('flush-retry', () => retries++);
      store.down = true;
      let maxPending = 0;
      const acked = new Map<string, number>();
      const writers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 60; i++) {
          const key = `k${(w * 60 + i) % 150}`;
          const { version } = await events.set(key, { n: w * 1000 + i });
          acked.set(key, Math.max(version, acked.get(key) ?? 0));
          maxPending = Math.max(maxPending, events.stats().pending);
        }
      });
      // While the database is down, writers fill the bound and then wait.
      while (events.stats().pending < 100) await new Promise((resolve) => setTimeout(resolve, 2));
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(retries > 0, 'the flusher retried');
      assert.ok(events.stats().pending <= 100);
      store.down = false;
      await Promise.all(writers);
      await events.flush();
      assert.ok(maxPending <= 100, `pending reached ${maxPending}`);
      await cache.close();
      assert.equal(acked.size, 150);
      for (const [key, version] of acked) {
        const stored = await row(p, 'events', key);
        assert.equal(stored?.version, version, `${key}: the database holds the newest acknowledged write`);
      }
    } finally {
      p.cleanup();
    }
  });
});

describe('shutdown on a signal', () => {
  const child = fileURLToPath(new URL('./helpers/shutdown-child.ts', import.meta.url));

  function runUntilSignal(dir: string, durability: 'journal' | 'none', signal: NodeJS.Signals) {
    return new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', child, dir, durability, '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        if (chunk.includes('ready')) proc.kill(signal);
      });
      proc.on('error', reject);
      proc.on('close', (code) => resolve({ code, stderr }));
    });
  }

  test('SIGTERM drains within the deadline, reports what the journal keeps, and the next start flushes it', async () => {
    const p = place();
    try {
      const { code, stderr } = await runUntilSignal(p.dir, 'journal', 'SIGTERM');
      assert.equal(code, 0, stderr);
      assert.match(stderr, /closed on SIGTERM; 20 write\(s\) were not in the database: 20 kept in the journal for the next start/);
      const { cache } = await open(p);
      const orders = cache.collection('orders', DURABLE);
      await orders.flush();
      await cache.close();
      assert.equal(JSON.parse((await row(p, 'orders', 'o19'))!.json!).i, 19);
    } finally {
      p.cleanup();
    }
  });

  test("SIGINT with durability 'none' reports the lost writes and exits with code 1", async () => {
    const p = place();
    try {
      const { code, stderr } = await runUntilSignal(p.dir, 'none', 'SIGINT');
      assert.equal(code, 1, stderr);
      assert.match(stderr, /closed on SIGINT; 20 write\(s\) were not in the database: 20 lost \(durability 'none'\)/);
    } finally {
      p.cleanup();
    }
  });
});
