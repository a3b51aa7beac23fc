/**
 * `cachewise demo`: runs the feed (part 1), the five patterns and write-back with a journal
 * (part 2) and the kill tests on the embedded default (memory tier + SQLite files) or on real
 * servers (--redis, --postgres); the journals are files in the demo's directory whatever the tier
 * and store. It reports progress on stderr, prints the report (text or JSON) on stdout, removes
 * what it wrote (temporary files, Redis keys, PostgreSQL schema) unless asked to keep it, and
 * returns the exit code: 0, or 1 when a check failed or something could not be removed. A server
 * that does not answer throws a ServerError before anything runs (exit code 2).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  closeEverything,
  keptServerData,
  newBackendSpec,
  probeServers,
  redactUrl,
  removeServerData,
  journalDirName,
  sqliteFile,
  type BackendSpec,
  type Part,
  type ServerFacts,
} from './backend.js';
import { runFeed, type FeedResult, type FeedShape } from './feed.js';
import { measureKill, stopChildren, type KillMeasurement } from './kill-measure.js';
import { machineInfo } from './machine.js';
import type { DemoOptions } from './options.js';
import { measurePattern, type PatternMeasurement } from './pattern-run.js';
import { PATTERNS, type PatternSpec } from './patterns.js';
import { seededRandom } from './random.js';
import { renderText } from './render.js';
import { buildChecks, buildRow, reportJson, type DemoReport, type KillShape, type PatternOutcome, type StoreInfo, type TierInfo } from './report.js';
import { Samples } from './samples.js';
import { ms, percent } from './table.js';
import type { WorkloadShape } from './workload.js';

export interface DemoIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

interface Sizes {
  readonly pattern: WorkloadShape;
  readonly feed: FeedShape;
  readonly kill: KillShape;
}

const FULL: Sizes = {
  pattern: { writes: 1500, reads: 6000, keys: 1000, concurrency: 32 },
  feed: { operations: 3000, users: 100, concurrency: 32 },
  kill: { killAfter: 300, minRunMs: 500, concurrency: 32, keys: 1000 },
};

const QUICK: Sizes = {
  pattern: { writes: 300, reads: 1200, keys: 200, concurrency: 16 },
  feed: { operations: 600, users: 30, concurrency: 16 },
  kill: { killAfter: 100, minRunMs: 300, concurrency: 16, keys: 200 },
};

/** How long an interrupted run (Ctrl-C) may spend removing its Redis keys and schema. */
const INTERRUPT_CLEANUP_MS = 5000;

export async function runDemo(options: DemoOptions, version: string, io: DemoIo): Promise<number> {
  const started = performance.now();
  const machine = machineInfo();
  const sizes = options.quick ? QUICK : FULL;
  const usesSqlite = options.postgresUrl === undefined;
  // Nothing is created before the servers answered: an unreachable one leaves nothing behind.
  const provisional = newBackendSpec(options.redisUrl, options.postgresUrl, '');
  const facts = await probeServers(provisional);
  const work = workingDirectory(usesSqlite ? options.dir : undefined, usesSqlite, provisional, options.keep, io);
  const backend: BackendSpec = {
    ...provisional,
    store: provisional.store.kind === 'sqlite' ? { kind: 'sqlite', dir: work.dir } : provisional.store,
    journalDir: work.dir,
  };
  const dirKept = usesSqlite && options.dir !== undefined;
  const steps = PATTERNS.length + 2;
  let step = 0;
  const progress = (text: string) => io.stderr(`[${++step}/${steps}] ${text}\n`);
  const detail = (text: string) => io.stderr(`      ${text}\n`);
  const dbOwnTime = new Samples();
  const latencyText = options.dbLatencyMs === 0 ? 'no DB latency injected' : `DB latency ${options.dbLatencyMs} ms`;
  let exitCode = 1;

  try {
    io.stderr(`cachewise demo on ${describeBackend(backend)}\n`);
    const { feed: f, pattern: w, kill: k } = sizes;
    progress(`user activity feed: ${f.operations} operations by ${f.concurrency} workers over ${f.users} users, ${latencyText} ...`);
    const feed = await runFeed(backend, options.dbLatencyMs, f, seededRandom(options.seed), dbOwnTime).catch(asError);
    detail(feed instanceof Error ? `failed: ${feed.message}` : `done in ${seconds(feed.durationMs)}: ${feed.eventsAcked} events, ${feed.feedBuilds} feed rebuilds`);

    const measured = new Map<PatternSpec, PatternMeasurement | Error>();
    for (const spec of PATTERNS) {
      progress(`${spec.id}: ${w.writes} writes, ${w.reads} reads, ${w.concurrency} workers, ${w.keys} keys, ${latencyText} ...`);
      // The same seed for every pattern: the same sequence of operations and keys.
      const m = await measurePattern(spec, backend, options.dbLatencyMs, w, seededRandom(options.seed), dbOwnTime).catch(asError);
      measured.set(spec, m);
      detail(
        m instanceof Error
          ? `failed: ${m.message}`
          : `done in ${seconds(m.durationMs)}: write p50 ${ms(m.write.p50Ms)} ms, hit ratio ${percent(m.hitRatio)}, ${m.staleReads} stale reads`,
      );
    }

    progress(`kill -9: per pattern, a child process writes and is killed with SIGKILL after ${k.killAfter}+ acknowledged writes and ${k.minRunMs} ms ...`);
    const kills = new Map<PatternSpec, KillMeasurement | Error>();
    for (const spec of PATTERNS) {
      const kill = await measureKill(spec, {
        backend,
        latencyMs: options.dbLatencyMs,
        killAfter: k.killAfter,
        minRunMs: k.minRunMs,
        concurrency: k.concurrency,
        keys: k.keys,
        timeoutMs: killTimeoutMs(options.dbLatencyMs, k),
      }).catch(asError);
      kills.set(spec, kill);
      detail(
        `${spec.id}: ${kill instanceof Error ? `failed: ${kill.message}` : `${kill.acked} acknowledged writes, ${kill.lost} of ${kill.keys} keys lost`}` +
          (kill instanceof Error || kill.replayed === null ? '' : ` after the recovery replayed ${kill.replayed} journaled writes`) +
          (kill instanceof Error || kill.lostStillCached === null || kill.lost === 0 ? '' : ` (${kill.lostStillCached} of them still in Redis)`),
      );
    }

    const outcomes: PatternOutcome[] = PATTERNS.map((spec) => ({ spec, measured: measured.get(spec)!, kill: kills.get(spec)! }));
    const rows = outcomes.map(buildRow);
    const checks = buildChecks(rows, PATTERNS, feed);
    const report: DemoReport = {
      tool: 'cachewise demo',
      version,
      machine,
      options: { dbLatencyMs: options.dbLatencyMs, quick: options.quick, seed: options.seed, dir: usesSqlite ? work.dir : null, dirKept },
      tier: tierInfo(backend, facts, options.keep),
      store: storeInfo(backend, facts, options.keep, options.dir !== undefined),
      journal: { kind: 'file', dir: work.dir, kept: dirKept },
      dbLatency: { injectedMs: options.dbLatencyMs, source: options.dbLatencyMs === 0 ? 'database' : 'injected', ownPerCall: dbOwnTime.figures() },
      workload: sizes,
      feed: feed instanceof Error ? null : (feed satisfies FeedResult),
      rows,
      checks,
      ok: checks.every((c) => c.ok),
      durationMs: performance.now() - started,
    };
    io.stdout(options.json ? `${reportJson(report)}\n` : renderText(report));
    exitCode = report.ok ? 0 : 1;
  } finally {
    const left = await work.cleanup();
    if (left.length > 0) {
      for (const what of left) io.stderr(`cachewise: could not remove ${what}\n`);
      exitCode = 1;
    }
  }
  return exitCode;
}

interface WorkingArea {
  /** The directory of the SQLite files (unless the database is PostgreSQL) and of the journals. */
  readonly dir: string;
  /** Removes what the run created (unless kept); resolves to what it could not remove. */
  cleanup(): Promise<string[]>;
}

/**
 * Where the run's data goes, and how it is removed: the directory of the SQLite files and the
 * journals (the user's --dir, kept; or a temporary one, removed; with PostgreSQL it holds only
 * the journals), and the Redis keys and PostgreSQL schema (removed unless `keep`). Ctrl-C removes
 * them too, within a few seconds, then exits 130.
 */
function workingDirectory(requested: string | undefined, usesSqlite: boolean, spec: BackendSpec, keep: boolean, io: DemoIo): WorkingArea {
  let dir: string;
  let removeDir = () => undefined as void;
  if (!usesSqlite || requested === undefined) {
    const temporary = mkdtempSync(join(tmpdir(), 'cachewise-demo-'));
    dir = temporary;
    removeDir = () => rmSync(temporary, { recursive: true, force: true });
  } else {
    dir = resolve(requested);
    mkdirSync(dir, { recursive: true });
    // Start from empty databases and journals: rows and journaled writes of an earlier run would not be this run's writes.
    const parts: Part[] = ['main', ...PATTERNS.map((p) => `kill-${p.id}` as const)];
    for (const name of parts.map(sqliteFile)) {
      for (const suffix of ['', '-wal', '-shm']) if (existsSync(join(dir, name + suffix))) rmSync(join(dir, name + suffix));
    }
    for (const name of parts.map(journalDirName)) rmSync(join(dir, name), { recursive: true, force: true });
  }
  const onServers = spec.tier.kind !== 'memory' || spec.store.kind !== 'sqlite';
  const removeServers = async (): Promise<string[]> => {
    if (!onServers) return [];
    if (keep) {
      for (const what of keptServerData(spec)) io.stderr(`kept: ${what}\n`);
      return [];
    }
    return removeServerData(spec);
  };
  // Ctrl-C: leave no temporary files, keys or schema behind. First stop every writer of this
  // run (the kill test's child, this process's tiers and stores), then remove what they wrote.
  const interrupted = () => {
    removeDir();
    stopChildren();
    const removal = closeEverything().then(removeServers);
    const deadline = new Promise<string[]>((resolve) => setTimeout(() => resolve(['the demo\'s data on the servers (interrupted; timed out)']), INTERRUPT_CLEANUP_MS).unref());
    void Promise.race([removal, deadline])
      .then((left) => left.forEach((what) => io.stderr(`cachewise: could not remove ${what}\n`)))
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  return {
    dir,
    cleanup: async () => {
      process.off('SIGINT', interrupted);
      removeDir();
      return removeServers();
    },
  };
}

function describeBackend(spec: BackendSpec): string {
  const tier = spec.tier.kind === 'memory' ? 'memory tier' : `Redis tier at ${redactUrl(spec.tier.url)} (key prefix ${spec.tier.prefix})`;
  const store = spec.store.kind === 'sqlite' ? `SQLite files in ${spec.store.dir}` : `PostgreSQL at ${redactUrl(spec.store.url)} (schema ${spec.store.schema})`;
  return `${tier} + ${store}`;
}

function tierInfo(spec: BackendSpec, facts: ServerFacts, keep: boolean): TierInfo {
  if (spec.tier.kind === 'memory') return { kind: 'memory' };
  return {
    kind: 'redis',
    url: redactUrl(spec.tier.url),
    prefix: spec.tier.prefix,
    kept: keep,
    serverVersion: facts.redisVersion ?? 'unknown',
    evictionPolicy: facts.redisEvictionPolicy ?? 'unknown',
    roundTripP50Ms: facts.redisRoundTripMs ?? NaN,
  };
}

function storeInfo(spec: BackendSpec, facts: ServerFacts, keep: boolean, dirGiven: boolean): StoreInfo {
  if (spec.store.kind === 'sqlite') return { kind: 'sqlite', dir: spec.store.dir, kept: dirGiven };
  return {
    kind: 'postgres',
    url: redactUrl(spec.store.url),
    schema: spec.store.schema,
    kept: keep,
    serverVersion: facts.postgresVersion ?? 'unknown',
    roundTripP50Ms: facts.postgresRoundTripMs ?? NaN,
  };
}

/** Enough time for the slowest pattern (write-through) to reach killAfter acknowledgements, with room to spare. */
function killTimeoutMs(latencyMs: number, k: KillShape): number {
  return 30_000 + k.minRunMs + Math.ceil(k.killAfter / k.concurrency + 1) * latencyMs * 3;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function seconds(durationMs: number): string {
  return `${(durationMs / 1000).toFixed(1)} s`;
}
