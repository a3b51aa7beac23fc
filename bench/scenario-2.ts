/**
 * The seed's practice scenario 2: 50,000 orders per second that must not be lost. Durable
 * write-back (a file journal, fsynced before `set` resolves) against write-back with durability
 * 'none' and against write-through (into SQLite, and into PostgreSQL when it answers), at the
 * same concurrency, in one run:
 *
 *   1. ingest: acknowledged sets per second of new orders (one key each) into SQLite, contenders
 *      interleaved in rounds; after each run the contender's queue is flushed, unmeasured, so no
 *      backlog spills into the next contender's time;
 *   2. flush: how fast a backlog of queued orders reaches the database (SQLite, and PostgreSQL
 *      when it answers), against a hand-written batched upsert of the same batch size and
 *      concurrency (one unnest statement per batch), interleaved;
 *   3. with --sustain N: durable ingest alone for N seconds, sampling pending writes and memory
 *      every second, to show that memory stays within the pending bound.
 *
 *   node --import tsx bench/scenario-2.ts [--quick] [--json] [--concurrency 256] [--sustain 60] [--postgres auto|on|off]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import { createCache, fileJournal, postgresStore, sqliteStore, type Cache, type Collection, type CollectionPolicy, type Store, type StoreWrite } from './lib/cachewise.js';
import { commonFlags, parseFlags } from './lib/args.js';
import { machineInfo, printReport, ratiosTo, type CaseResult } from './lib/report.js';
import { compare, median, type Contender, type ContenderResult } from './lib/runner.js';
import { clearProgress, main, onCleanup, pgPool, progress, runId } from './lib/services.js';

const flags = parseFlags('node --import tsx bench/scenario-2.ts [flags]\n\nScenario 2: durable write-back of orders, beside write-back without a journal and write-through.', [
  ...commonFlags({ rounds: 5, roundMs: 2000, warmupMs: 1000, concurrency: [256] }),
  { name: 'batch', type: 'int', description: 'write-back flush batch size (flush.maxBatch), also the raw upsert batch', default: 500 },
  { name: 'backlog', type: 'int', description: 'orders queued per flush measurement', default: 50_000 },
  { name: 'pending', type: 'int', description: 'write-back pending bound (pending.maxEntries)', default: 100_000 },
  { name: 'sustain', type: 'int', description: 'seconds of sustained durable ingest with memory sampling (0: skip)', default: 0 },
  { name: 'postgres', type: 'string', description: 'measure the flush into PostgreSQL (DATABASE_URL)', default: 'auto', choices: ['auto', 'on', 'off'] },
]);

interface Order {
  readonly id: number;
  readonly customer: string;
  readonly items: readonly { readonly sku: string; readonly qty: number }[];
  readonly total: number;
}

function order(n: number): Order {
  return { id: n, customer: `c${n % 9973}`, items: [{ sku: `s${n % 101}`, qty: 1 + (n % 3) }], total: (n % 10_000) / 100 };
}

/** statement_timeout of the benchmark's pools, and the stores' statementTimeout. */
const STATEMENT_TIMEOUT_MS = 10_000;

const quick = flags.quick === true;
const rounds = quick ? 3 : (flags.rounds as number);
const roundMs = quick ? 300 : (flags['round-ms'] as number);
const warmupMs = quick ? 100 : (flags['warmup-ms'] as number);
const batch = flags.batch as number;
const backlog = quick ? 5_000 : (flags.backlog as number);
const pendingBound = flags.pending as number;
const writeBack = (durability: 'journal' | 'none'): CollectionPolicy => ({
  write: 'back',
  read: 'through',
  durability,
  flush: { maxBatch: batch, maxDelay: '100ms', concurrency: 2 },
  pending: { maxEntries: pendingBound, waitTimeout: '10m' },
});

await main(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cachewise-scenario-2-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const machine = machineInfo();
  const notes: string[] = [];
  const cases: CaseResult[] = [];
  let place = 0;

  /** A fresh cache on its own SQLite file (and journal), closed at the end. */
  const open = async (journal: boolean, store?: Store): Promise<Cache> => {
    const where = join(dir, `c${place++}`);
    const cache = await createCache({ store: store ?? sqliteStore(`${where}.db`), journal: journal ? fileJournal(`${where}.journal`) : undefined });
    onCleanup(() => cache.close({ timeout: '30s' }));
    return cache;
  };

  const usePostgres = flags.postgres === 'on' || (flags.postgres === 'auto' && (await postgresAnswers()));
  const schema = `bench_${runId()}`;
  if (usePostgres) {
    const admin = pgPool(1, 'bench-admin');
    onCleanup(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
    await admin.query(`CREATE SCHEMA "${schema}"`);
  }

  // 1. Ingest. Write-through into PostgreSQL too, when it answers: each set then pays a round
  // trip to a database server, as in most deployments, where SQLite's is a local call.
  const durable = (await open(true)).collection<Order>('orders', writeBack('journal'));
  const none = (await open(false)).collection<Order>('orders', writeBack('none'));
  const through = (await open(false)).collection<Order>('orders', { write: 'through', read: 'through' });
  const ingest: Contender[] = [
    { name: 'write-back, journal', op: (n) => durable.set(`o${n}`, order(n)), settle: () => durable.flush() },
    { name: 'write-back, none', op: (n) => none.set(`o${n}`, order(n)), settle: () => none.flush() },
    { name: 'write-through', op: (n) => through.set(`o${n}`, order(n)) },
  ];
  if (usePostgres) {
    // The pool's statement_timeout is the store's: each write is one autocommit statement.
    const pool = pgPool(10, 'bench-write-through', { statement_timeout: STATEMENT_TIMEOUT_MS });
    const throughPg = (await open(false, postgresStore({ pool, schema, tablePrefix: 'through_', statementTimeout: STATEMENT_TIMEOUT_MS }))).collection<Order>('orders', { write: 'through', read: 'through' });
    ingest.push({ name: 'write-through, PostgreSQL', op: (n) => throughPg.set(`o${n}`, order(n)) });
  }
  for (const concurrency of flags.concurrency as number[]) {
    const results = await compare(ingest, { rounds, roundMs, warmupMs, concurrency }, (m) => progress(`ingest, concurrency ${concurrency}: ${m}`));
    const ratios = [ratiosTo(results, 'write-back, none', 0.5)[0]!, ratiosTo(results, 'write-through', 20)[0]!];
    if (usePostgres) ratios.push(ratiosTo(results, 'write-through, PostgreSQL', 20)[0]!);
    cases.push({ setting: { part: 'ingest (SQLite)', concurrency }, contenders: results, ratios });
    const journaled = results[0]!;
    notes.push(`durable ingest at concurrency ${concurrency}: ${Math.round(journaled.median).toLocaleString('en-US')} acknowledged writes/s (target >= 50,000): ${journaled.median >= 50_000 ? 'met' : 'below'}`);
  }

  // 2. Flush.
  const flushCase = async (label: string, cwStore: () => Store, raw: (rows: number, first: number) => Promise<void>): Promise<void> => {
    const gate = newGate();
    const cache = await open(true, gatedStore(cwStore(), gate));
    const orders = cache.collection<Order>('orders', writeBack('journal'));
    await orders.flush();
    let next = 0;
    const cw = async () => {
      gate.close();
      const first = next;
      next += backlog;
      for (let i = first; i < first + backlog; i += 1_000) {
        await orders.setMany(Array.from({ length: Math.min(1_000, first + backlog - i) }, (_, j) => [`o${i + j}`, order(i + j)] as const));
      }
      const started = performance.now();
      gate.open();
      await orders.flush();
      return backlog / ((performance.now() - started) / 1000);
    };
    const rawRun = async () => {
      const first = next;
      next += backlog;
      const started = performance.now();
      await raw(backlog, first);
      return backlog / ((performance.now() - started) / 1000);
    };
    const perRound = { cw: [] as number[], raw: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      progress(`flush into ${label}: round ${round + 1}/${rounds}`);
      if (round % 2 === 0) {
        perRound.cw.push(await cw());
        perRound.raw.push(await rawRun());
      } else {
        perRound.raw.push(await rawRun());
        perRound.cw.push(await cw());
      }
    }
    const results: ContenderResult[] = [asResult('cachewise flush', perRound.cw, backlog), asResult('raw batched upsert', perRound.raw, backlog)];
    cases.push({ setting: { part: `flush (${label})`, concurrency: 2 }, contenders: results, ratios: ratiosTo(results, 'raw batched upsert', label === 'PostgreSQL' ? 0.8 : 0) });
  };

  const sqliteRawFile = join(dir, 'raw.db');
  const rawSqlite = openRawSqlite(sqliteRawFile);
  onCleanup(() => rawSqlite.close());
  await flushCase('SQLite', () => sqliteStore(join(dir, 'flush.db')), async (rows, first) => {
    for (let i = first; i < first + rows; i += batch) rawSqlite.upsert(rowsOf(i, Math.min(batch, first + rows - i)));
  });

  if (usePostgres) {
    const admin = pgPool(1, 'bench-admin');
    await admin.query(`CREATE TABLE "${schema}".raw_orders ("key" text COLLATE "C" PRIMARY KEY, "value" text, "version" bigint NOT NULL, "updated_at" timestamptz NOT NULL DEFAULT now())`);
    // Both pools' connections carry the store's statement_timeout: the store then sends each batch
    // as one autocommit statement, as the raw upsert does. (With none, or a longer one than its
    // own, it wraps each batch in a transaction with SET LOCAL: three round trips.)
    const rawPool = pgPool(2, 'bench-raw', { statement_timeout: STATEMENT_TIMEOUT_MS });
    const cwPool = pgPool(2, 'bench-cachewise', { statement_timeout: STATEMENT_TIMEOUT_MS });
    const upsert =
      `INSERT INTO "${schema}".raw_orders AS t ("key", "value", "version", "updated_at") ` +
      'SELECT w."key", w."value", w."version", now() FROM unnest($1::text[], $2::text[], $3::bigint[]) AS w("key", "value", "version") ' +
      'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at" ' +
      'WHERE t."version" < excluded."version"';
    await flushCase('PostgreSQL', () => postgresStore({ pool: cwPool, schema, statementTimeout: STATEMENT_TIMEOUT_MS }), async (rows, first) => {
      let nextBatch = first;
      const end = first + rows;
      const loop = async () => {
        while (nextBatch < end) {
          const start = nextBatch;
          nextBatch += batch;
          const part = rowsOf(start, Math.min(batch, end - start));
          await rawPool.query(upsert, [part.map((r) => r.key), part.map((r) => r.json), part.map((r) => r.version)]);
        }
      };
      await Promise.all([loop(), loop()]);
    });
  } else {
    notes.push(flags.postgres === 'off' ? 'flush into PostgreSQL: skipped (--postgres off)' : 'flush into PostgreSQL: skipped (no server answered at DATABASE_URL; --postgres on requires it)');
  }

  // 3. Sustained durable ingest.
  const sustain = quick ? 0 : (flags.sustain as number);
  if (sustain > 0) {
    const cache = await open(true);
    const orders = cache.collection<Order>('orders', writeBack('journal'));
    const concurrency = (flags.concurrency as number[])[0]!;
    let acked = 0;
    let stop = false;
    let next = 0;
    const samples: { pending: number; rssMb: number; rate: number }[] = [];
    const loops = Array.from({ length: concurrency }, async () => {
      while (!stop) {
        const n = next++;
        await orders.set(`o${n}`, order(n));
        acked++;
      }
    });
    for (let s = 1; s <= sustain; s++) {
      const before = acked;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      samples.push({ pending: orders.stats().pending, rssMb: Math.round(process.memoryUsage().rss / 2 ** 20), rate: acked - before });
      progress(`sustained durable ingest: ${s}/${sustain} s, ${acked - before} writes/s, pending ${orders.stats().pending}`);
    }
    stop = true;
    await Promise.all(loops);
    await orders.flush();
    const maxPending = Math.max(...samples.map((x) => x.pending));
    const rss = samples.map((x) => x.rssMb);
    notes.push(
      `sustained durable ingest for ${sustain} s at concurrency ${concurrency}: median ${Math.round(median(samples.map((x) => x.rate))).toLocaleString('en-US')} writes/s, ` +
        `max pending ${maxPending} (bound ${pendingBound}), RSS ${Math.min(...rss)}-${Math.max(...rss)} MiB (first ${rss[0]}, last ${rss.at(-1)})`,
    );
  }
  clearProgress();

  notes.push(`flush: ${backlog} orders queued behind a closed gate, then timed from opening it until flush() resolved; batches of ${batch}, 2 in flight; the raw upsert sends the same batches over 2 connections (PostgreSQL) or in one transaction each (SQLite)`);
  notes.push('ingest ratios: durable against durability none (target >= 0.5x), durable against write-through (target >= 20x) into SQLite and, when it answers, into PostgreSQL (a pool of 10)');
  printReport(
    {
      benchmark: 'scenario-2',
      title: 'Scenario 2: durable write-back of orders (file journal + SQLite / PostgreSQL)',
      machine,
      options: { rounds, roundMs, warmupMs, batch, backlog, pending: pendingBound },
      cases,
      notes,
    },
    flags.json === true,
  );
});

interface Gate {
  close(): void;
  open(): void;
  pass(): Promise<void>;
}

/** Holds store writes while closed, so a backlog can build up and then be timed as it drains. */
function newGate(): Gate {
  const waiting: (() => void)[] = [];
  let shut = false;
  return {
    close: () => {
      shut = true;
    },
    open: () => {
      shut = false;
      for (const wake of waiting.splice(0)) wake();
    },
    pass: () => (shut ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve()),
  };
}

function gatedStore(inner: Store, gate: Gate): Store {
  return {
    kind: inner.kind,
    versioned: inner.versioned,
    prepare: (collection) => inner.prepare(collection),
    load: (collection, key) => inner.load(collection, key),
    loadMany: (collection, keys) => inner.loadMany(collection, keys),
    maxVersion: inner.maxVersion?.bind(inner),
    async write(collection, writes: readonly StoreWrite[]) {
      await gate.pass();
      return inner.write(collection, writes);
    },
    close: () => inner.close(),
  };
}

function rowsOf(first: number, count: number): { key: string; json: string; version: number }[] {
  return Array.from({ length: count }, (_, i) => ({ key: `o${first + i}`, json: JSON.stringify(order(first + i)), version: first + i + 1 }));
}

function openRawSqlite(file: string): { upsert(rows: readonly { key: string; json: string; version: number }[]): void; close(): void } {
  const Driver = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
  const db = new Driver(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE raw_orders ("key" TEXT PRIMARY KEY, "value" TEXT, "version" INTEGER NOT NULL)');
  const statement = db.prepare(
    'INSERT INTO raw_orders ("key", "value", "version") VALUES (?, ?, ?) ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version" WHERE raw_orders."version" < excluded."version"',
  );
  const upsert = db.transaction((rows: readonly { key: string; json: string; version: number }[]) => {
    for (const row of rows) statement.run(row.key, row.json, row.version);
  });
  return { upsert: (rows) => upsert(rows), close: () => db.close() };
}

function asResult(name: string, perRound: number[], ops: number): ContenderResult {
  return {
    name,
    perRound,
    median: median(perRound),
    min: Math.min(...perRound),
    max: Math.max(...perRound),
    ops: ops * perRound.length,
    latency: { p50Us: Number.NaN, p90Us: Number.NaN, p99Us: Number.NaN, p999Us: Number.NaN, maxUs: Number.NaN, meanUs: Number.NaN, curve: [] },
  };
}

async function postgresAnswers(): Promise<boolean> {
  const pool: pg.Pool = pgPool(1, 'bench-probe');
  try {
    await pool.query('SELECT 1');
    return true;
  } catch {
    return false;
  }
}
