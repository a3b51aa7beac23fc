/**
 * `cachewise demo`: runs the feed (part 1), the five patterns (part 2) and the kill tests on the
 * embedded default (memory tier + SQLite files), reports progress on stderr, prints the report
 * (text or JSON) on stdout, and returns the exit code: 0, or 1 when a check failed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runFeed, type FeedResult, type FeedShape } from './feed.js';
import { measureKill, type KillMeasurement } from './kill-measure.js';
import { machineInfo } from './machine.js';
import type { DemoOptions } from './options.js';
import { measurePattern, type PatternMeasurement } from './pattern-run.js';
import { PATTERNS, type PatternSpec } from './patterns.js';
import { seededRandom } from './random.js';
import { renderText } from './render.js';
import { buildChecks, buildRow, reportJson, type DemoReport, type KillShape, type PatternOutcome } from './report.js';
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

const MAIN_FILE = 'cachewise-demo.db';
const killFile = (spec: PatternSpec) => `cachewise-demo-kill-${spec.id}.db`;

export async function runDemo(options: DemoOptions, version: string, io: DemoIo): Promise<number> {
  const started = performance.now();
  const machine = machineInfo();
  const sizes = options.quick ? QUICK : FULL;
  const { dir, cleanup } = workingDirectory(options.dir);
  const steps = PATTERNS.length + 2;
  let step = 0;
  const progress = (text: string) => io.stderr(`[${++step}/${steps}] ${text}\n`);
  const detail = (text: string) => io.stderr(`      ${text}\n`);

  try {
    const { feed: f, pattern: w, kill: k } = sizes;
    progress(`user activity feed: ${f.operations} operations by ${f.concurrency} workers over ${f.users} users, DB latency ${options.dbLatencyMs} ms ...`);
    const feed = await runFeed(join(dir, MAIN_FILE), options.dbLatencyMs, f, seededRandom(options.seed)).catch(asError);
    detail(feed instanceof Error ? `failed: ${feed.message}` : `done in ${seconds(feed.durationMs)}: ${feed.eventsAcked} events, ${feed.feedBuilds} feed rebuilds`);

    const measured = new Map<PatternSpec, PatternMeasurement | Error>();
    for (const spec of PATTERNS) {
      progress(`${spec.id}: ${w.writes} writes, ${w.reads} reads, ${w.concurrency} workers, ${w.keys} keys, DB latency ${options.dbLatencyMs} ms ...`);
      // The same seed for every pattern: the same sequence of operations and keys.
      const m = await measurePattern(spec, join(dir, MAIN_FILE), options.dbLatencyMs, w, seededRandom(options.seed)).catch(asError);
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
        file: join(dir, killFile(spec)),
        latencyMs: options.dbLatencyMs,
        killAfter: k.killAfter,
        minRunMs: k.minRunMs,
        concurrency: k.concurrency,
        keys: k.keys,
        timeoutMs: killTimeoutMs(options.dbLatencyMs, k),
      }).catch(asError);
      kills.set(spec, kill);
      detail(`${spec.id}: ${kill instanceof Error ? `failed: ${kill.message}` : `${kill.acked} acknowledged writes, ${kill.lost} of ${kill.keys} keys lost`}`);
    }

    const outcomes: PatternOutcome[] = PATTERNS.map((spec) => ({ spec, measured: measured.get(spec)!, kill: kills.get(spec)! }));
    const rows = outcomes.map(buildRow);
    const checks = buildChecks(rows, PATTERNS, feed);
    const report: DemoReport = {
      tool: 'cachewise demo',
      version,
      machine,
      options: { dbLatencyMs: options.dbLatencyMs, quick: options.quick, seed: options.seed, dir, dirKept: options.dir !== undefined },
      workload: sizes,
      feed: feed instanceof Error ? null : (feed satisfies FeedResult),
      rows,
      checks,
      ok: checks.every((c) => c.ok),
      durationMs: performance.now() - started,
    };
    io.stdout(options.json ? `${reportJson(report)}\n` : renderText(report));
    return report.ok ? 0 : 1;
  } finally {
    cleanup();
  }
}

/** The directory for the SQLite files: the user's (kept), or a temporary one (removed). */
function workingDirectory(requested: string | undefined): { dir: string; cleanup: () => void } {
  if (requested === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'cachewise-demo-'));
    const remove = () => rmSync(dir, { recursive: true, force: true });
    // Ctrl-C: the children get the signal too; leave no temporary files behind.
    const interrupted = () => {
      remove();
      process.exit(130);
    };
    process.once('SIGINT', interrupted);
    return {
      dir,
      cleanup: () => {
        process.off('SIGINT', interrupted);
        remove();
      },
    };
  }
  const dir = resolve(requested);
  mkdirSync(dir, { recursive: true });
  // Start from empty databases: rows of an earlier run would not be this run's writes.
  for (const name of [MAIN_FILE, ...PATTERNS.map(killFile)]) {
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(join(dir, name + suffix))) rmSync(join(dir, name + suffix));
  }
  return { dir, cleanup: () => undefined };
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
