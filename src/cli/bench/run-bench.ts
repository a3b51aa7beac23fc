/**
 * `cachewise bench`: runs every scenario (read paths beside peer libraries and raw clients, the
 * write patterns, the seed's claims at the injected and at the database's own latency), reports
 * progress on stderr, writes bench.json, bench.html and bench.md to --out, prints the Markdown
 * (or, with --json, the JSON) on stdout, removes what it wrote on the servers, and returns the
 * exit code: 0, or 1 when a scenario failed. Targets that are missed are reported, not failed:
 * a benchmark measures, it does not assert. A server that does not answer throws a ServerError
 * before anything runs (exit code 2).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { closeEverything, probeServers, redactUrl, removeServerData, type BackendSpec } from '../demo/backend.js';
import { machineInfo } from '../demo/machine.js';
import type { DemoIo } from '../demo/run-demo.js';
import { checkClaims, seedTable } from './claims.js';
import { renderHtml } from './html.js';
import { renderMarkdown } from './markdown.js';
import type { BenchOptions, ScenarioGroup } from './options.js';
import { memoryHit, missLoad, redisHit, stampede, twoTierHit, type ReadContext } from './read-scenarios.js';
import type { BenchReport, LatencyRun, ScenarioResult } from './results.js';
import type { RoundOptions } from './runner.js';
import { coldReads, latencyLabel, readStyles, writeBackFlush, writePatterns, type WriteContext } from './write-scenarios.js';

interface Sizes {
  readonly read: Omit<RoundOptions, 'concurrency'>;
  readonly write: Omit<RoundOptions, 'concurrency'>;
  readonly keys: number;
  readonly stampedeRounds: number;
  readonly flushWrites: number;
  readonly flushRounds: number;
  readonly coldKeys: number;
  readonly styleReads: number;
  readonly styleKeys: number;
}

const FULL: Sizes = {
  read: { rounds: 5, roundMs: 500, warmupMs: 200 },
  write: { rounds: 5, roundMs: 1000, warmupMs: 300 },
  keys: 1000,
  stampedeRounds: 5,
  flushWrites: 2000,
  flushRounds: 3,
  coldKeys: 200,
  styleReads: 1000,
  styleKeys: 100,
};

const QUICK: Sizes = {
  read: { rounds: 3, roundMs: 100, warmupMs: 50 },
  write: { rounds: 3, roundMs: 150, warmupMs: 50 },
  keys: 200,
  stampedeRounds: 2,
  flushWrites: 200,
  flushRounds: 2,
  coldKeys: 32,
  styleReads: 200,
  styleKeys: 20,
};

const STAMPEDE_CALLERS = 1000;
const STAMPEDE_LOADER_MS = 20;
const WRITERS = 16;

/**
 * `command` is the command line as the user typed it (quoted in the report); `live` lets the
 * per-round progress rewrite one line of a terminal.
 */
export async function runBench(options: BenchOptions, version: string, io: DemoIo, command: string, live = false): Promise<number> {
  const started = performance.now();
  const machine = machineInfo();
  const base = options.quick ? QUICK : FULL;
  const override = (r: Omit<RoundOptions, 'concurrency'>) => ({ ...r, rounds: options.rounds ?? r.rounds, roundMs: options.roundMs ?? r.roundMs });
  const sizes: Sizes = { ...base, read: override(base.read), write: override(base.write) };
  const id = randomBytes(5).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'cachewise-bench-'));
  const backend: BackendSpec = {
    tier: options.redisUrl === undefined ? { kind: 'memory' } : { kind: 'redis', url: options.redisUrl, prefix: `cachewise-bench:${id}:cw:` },
    store: options.postgresUrl === undefined ? { kind: 'sqlite', dir } : { kind: 'postgres', url: options.postgresUrl, schema: `cachewise_bench_${id}` },
  };
  const wants = (group: ScenarioGroup) => options.only === undefined || options.only.includes(group);
  const detail = (message: string) => {
    if (live) process.stderr.write(`\r\x1b[K      ${message.slice(0, Math.max(40, (process.stderr.columns || 100) - 8))}`);
  };
  const endDetail = () => {
    if (live) process.stderr.write('\r\x1b[K');
  };
  let failed = 0;

  const cleanup = async (): Promise<string[]> => {
    await closeEverything();
    rmSync(dir, { recursive: true, force: true });
    const left = await removeServerData(backend);
    if (options.redisUrl !== undefined) left.push(...(await deleteRunKeys(options.redisUrl, id)));
    return left;
  };
  // Ctrl-C: close every tier and store, remove what the run wrote, exit 130 without a report.
  let stopping = false;
  const interrupted = () => {
    stopping = true;
    io.stderr('\ninterrupted: cleaning up\n');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);

  try {
    await probeServers(backend);
    const tierText = backend.tier.kind === 'memory' ? 'memory tier' : `Redis tier at ${redactUrl(backend.tier.url)}`;
    const storeText = backend.store.kind === 'sqlite' ? 'SQLite file' : `PostgreSQL at ${redactUrl(backend.store.url)}`;
    io.stderr(`cachewise bench on ${tierText} + ${storeText}${options.quick ? ' (--quick)' : ''}; results to ${resolve(options.out)}\n`);

    const readCtx: ReadContext = {
      rounds: sizes.read,
      keys: sizes.keys,
      stampedeRounds: sizes.stampedeRounds,
      stampedeCallers: STAMPEDE_CALLERS,
      stampedeLoaderMs: STAMPEDE_LOADER_MS,
      redisUrl: options.redisUrl,
      redisPrefix: `cachewise-bench:${id}:`,
      progress: detail,
    };
    const latencies = options.dbLatencyMs === 0 ? [0] : [options.dbLatencyMs, 0];
    const readSteps: [ScenarioGroup, string, () => Promise<ScenarioResult>][] = [
      ['memory-hit', 'memory hit path: cachewise, raw lru-cache, bentocache, cache-manager, cacheable, cachified', () => memoryHit(readCtx)],
      ['miss-load', 'miss with load (get-or-set)', () => missLoad(readCtx)],
      ['stampede', `stampede: ${STAMPEDE_CALLERS} callers on one missing key`, () => stampede(readCtx)],
      ['redis-hit', 'Redis-tier hit', () => redisHit(readCtx)],
      ['two-tier-hit', 'two-tier hit (memory L1 over Redis L2)', () => twoTierHit(readCtx)],
    ];
    const steps = readSteps.filter(([group]) => wants(group)).length + (wants('writes') ? latencies.length : 0);
    let step = 0;
    const announce = (text: string) => io.stderr(`[${++step}/${steps}] ${text} ...\n`);
    const done = (text: string) => {
      endDetail();
      io.stderr(`      ${text}\n`);
    };

    const scenarios: ScenarioResult[] = [];
    for (const [group, title, run] of readSteps) {
      if (stopping) break;
      if (!wants(group)) continue;
      announce(title);
      const result = await run().catch((error: unknown) => {
        failed++;
        return { kind: 'skipped', id: group, title, reason: `failed: ${describe(error)}` } satisfies ScenarioResult;
      });
      scenarios.push(result);
      if (!stopping) done(summary(result));
    }

    const latencyRuns: LatencyRun[] = [];
    if (wants('writes')) {
      for (const dbLatencyMs of latencies) {
        if (stopping) break;
        const label = latencyLabel(dbLatencyMs, backend);
        announce(`write patterns, write-back flush, first read after a write, read-through vs cache-aside: ${label}`);
        const ctx: WriteContext = {
          backend,
          rounds: sizes.write,
          dbLatencyMs,
          dir,
          concurrency: WRITERS,
          keys: sizes.keys,
          flushWrites: sizes.flushWrites,
          flushRounds: sizes.flushRounds,
          coldKeys: sizes.coldKeys,
          styleReads: sizes.styleReads,
          styleKeys: sizes.styleKeys,
          progress: detail,
        };
        const guard = async <T>(what: string, run: () => Promise<T>, fallback: T): Promise<T> => {
          try {
            return await run();
          } catch (error) {
            failed++;
            endDetail();
            if (!stopping) io.stderr(`      ${what} failed: ${describe(error)}\n`);
            return fallback;
          }
        };
        const failedScenario = (sid: string, title: string): ScenarioResult => ({ kind: 'skipped', id: sid, title, reason: 'failed (see stderr)' });
        const patterns = await guard('write patterns', () => writePatterns(ctx), failedScenario(`write-patterns-${dbLatencyMs}`, `Write patterns, ${label}`));
        const flush = await guard('write-back flush', () => writeBackFlush(ctx), failedScenario(`flush-${dbLatencyMs}`, `Write-back flush, ${label}`));
        const cold = await guard('first read after a write', () => coldReads(ctx), []);
        const styles = await guard('read-through vs cache-aside', () => readStyles(ctx), []);
        latencyRuns.push({ dbLatencyMs, label, writePatterns: patterns, flush, coldReads: cold, readStyles: styles });
        done(summary(patterns));
        for (const note of patterns.kind === 'throughput' ? patterns.notes : []) if (note.includes('skipped')) io.stderr(`      ${note}\n`);
      }
    }

    if (stopping) return 130;
    const report: BenchReport = {
      tool: 'cachewise bench',
      version,
      date: new Date().toISOString(),
      machine,
      command,
      backend: {
        tier: backend.tier.kind === 'memory' ? 'memory tier' : `Redis tier (${redactUrl(backend.tier.url)})`,
        store: backend.store.kind === 'sqlite' ? 'SQLite (better-sqlite3, WAL, synchronous normal)' : `PostgreSQL (${redactUrl(backend.store.url)})`,
      },
      options: { quick: options.quick, rounds: sizes.read.rounds, roundMs: sizes.read.roundMs, warmupMs: sizes.read.warmupMs, dbLatencyMs: options.dbLatencyMs },
      scenarios,
      latencyRuns,
      claims: checkClaims(latencyRuns),
      seedTable: seedTable(latencyRuns),
      durationMs: performance.now() - started,
    };
    const out = resolve(options.out);
    mkdirSync(out, { recursive: true });
    const json = `${JSON.stringify(report, null, 2)}\n`;
    const markdown = renderMarkdown(report);
    writeFileSync(join(out, 'bench.json'), json);
    writeFileSync(join(out, 'bench.html'), renderHtml(report));
    writeFileSync(join(out, 'bench.md'), markdown);
    io.stdout(options.json ? json : markdown);
    io.stderr(`wrote ${join(out, 'bench.html')}, bench.json and bench.md in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    process.off('SIGINT', interrupted);
    if (stopping) return 130;
    const left = await cleanup();
    for (const what of left) io.stderr(`cachewise: could not remove ${what}\n`);
    if (left.length > 0) failed++;
  }
  return failed === 0 ? 0 : 1;
}

function summary(s: ScenarioResult): string {
  if (s.kind === 'skipped') return `skipped: ${s.reason}`;
  if (s.kind === 'stampede') return s.rows.map((r) => `${r.name} ${r.maxLoads} load${r.maxLoads === 1 ? '' : 's'}`).join(', ');
  const ratios = s.ratios.map((r) => `${r.subject} ${r.value.toFixed(2)}x`).join(', ');
  return `ratios to ${s.baseline}: ${ratios}`;
}

/** Deletes every key of the run (tiers and peers alike carry its id). */
async function deleteRunKeys(url: string, id: string): Promise<string[]> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2000, commandTimeout: 5000, maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `*${id}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.unlink(...keys);
    } while (cursor !== '0');
    return [];
  } catch (error) {
    return [`Redis keys containing ${id} at ${redactUrl(url)} (${describe(error)})`];
  } finally {
    client.disconnect();
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${(error as { code?: string }).code ? `${(error as { code?: string }).code}: ` : ''}${error.message.split('\n')[0]}`;
  return String(error);
}
