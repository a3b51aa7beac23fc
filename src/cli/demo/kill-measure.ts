/**
 * Measures "acknowledged writes lost when the process dies": a child process writes under a
 * pattern and reports each acknowledged write on stdout; once it has acknowledged `killAfter`
 * writes and run for `minRunMs` (several write-back flush intervals, so that the kill lands in a
 * steady state, not before the first flush) it is killed with SIGKILL (no close(), no flush, no
 * exit handlers). With durability 'journal' the parent then recovers, as a restart would: it opens
 * a cache on the child's journal directory and database, declares the collection (which replays
 * the journaled writes the database may not hold), flushes and closes it. The parent then opens
 * the database itself (the child's SQLite file, or its tables in PostgreSQL) and counts the keys
 * whose newest acknowledged write is not in the database (no row, or a row with an older
 * version). With a shared tier (Redis), whose data outlives the child, it also counts how many of
 * those lost writes the tier still holds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKEND_ENV, openCache, openStore, openTier, tierKeyOf, type BackendSpec, type Part } from './backend.js';
import { LatencyStore } from './latency-store.js';
import { isJournaled, type PatternSpec } from './patterns.js';
import type { DemoValue } from './staleness.js';

export interface KillMeasurement {
  /** Acknowledged writes the child reported before it died. */
  readonly acked: number;
  /** Distinct keys among them. */
  readonly keys: number;
  /** Keys whose newest acknowledged write is not in the database. */
  readonly lost: number;
  readonly lostExamples: readonly string[];
  /**
   * With a shared tier: of the lost keys, how many the tier still holds at the acknowledged
   * version (readers see a value the database never got). Null with an in-process tier, which
   * died with the child.
   */
  readonly lostStillCached: number | null;
  /**
   * With durability 'journal': the writes of the collection that the recovery found in the
   * journal, not yet released as in the database, and replayed. Null without a journal.
   */
  readonly replayed: number | null;
  readonly durationMs: number;
}

export interface KillOptions {
  readonly backend: BackendSpec;
  readonly latencyMs: number;
  readonly killAfter: number;
  /** Shortest time from the first acknowledgement to the kill. */
  readonly minRunMs: number;
  readonly concurrency: number;
  readonly keys: number;
  /** Give up (and fail) if the child has not acknowledged enough writes by then. */
  readonly timeoutMs: number;
}

interface Ack {
  readonly version: number;
  readonly token: string;
}

export async function measureKill(spec: PatternSpec, options: KillOptions): Promise<KillMeasurement> {
  const started = performance.now();
  const acks = await runAndKill(spec, options);
  const part = `kill-${spec.id}` as const;
  const replayed = isJournaled(spec) ? await recover(spec, options, part) : null;
  const store = openStore(options.backend, part);
  const lostKeys: string[] = [];
  let result: Omit<KillMeasurement, 'lostStillCached' | 'replayed'>;
  try {
    const keys = [...acks.newest.keys()];
    const rows = await store.loadMany(spec.collection, keys);
    const lostExamples: string[] = [];
    let lost = 0;
    keys.forEach((key, i) => {
      const acked = acks.newest.get(key)!;
      const row = rows[i];
      const held = row?.version ?? 0;
      // A newer (unacknowledged) write may have landed too; that keeps the acknowledged one's effect.
      const kept = held > acked.version || (held === acked.version && row?.json !== undefined && tokenOf(row.json) === acked.token);
      if (!kept) {
        lost++;
        lostKeys.push(key);
        if (lostExamples.length < 3) lostExamples.push(`${key}: acknowledged version ${acked.version}, database holds ${held || 'nothing'}`);
      }
    });
    result = { acked: acks.count, keys: keys.length, lost, lostExamples, durationMs: 0 };
  } finally {
    await store.close();
  }
  const lostStillCached = options.backend.tier.kind === 'memory' ? null : await stillCached(options.backend, part, spec, lostKeys, acks.newest);
  return { ...result, lostStillCached, replayed, durationMs: performance.now() - started };
}

/**
 * The restart after the kill, for write-back with a journal: a cache on the same journal
 * directory and database (with the injected latency, like the child's), the collection declared
 * (which replays what the journal kept), flushed, closed. Resolves to how many writes of the
 * collection the journal held.
 */
async function recover(spec: PatternSpec, options: KillOptions, part: Part): Promise<number> {
  const store = new LatencyStore(openStore(options.backend, part), options.latencyMs);
  const cache = await openCache(options.backend, part, store, { journal: true });
  try {
    const replayed = cache.recovery()?.collections[spec.collection] ?? 0;
    const collection = cache.collection<DemoValue>(spec.collection, spec.policy);
    await collection.flush({ timeout: '30s' });
    return replayed;
  } finally {
    await cache.close({ timeout: '10s' });
  }
}

/** How many of the lost keys the shared tier still holds at (or past) the acknowledged version. */
async function stillCached(backend: BackendSpec, part: Part, spec: PatternSpec, keys: readonly string[], newest: Map<string, Ack>): Promise<number> {
  if (keys.length === 0) return 0;
  const tier = openTier(backend, part);
  try {
    const entries = await tier.getMany(keys.map((key) => tierKeyOf(spec.collection, key)));
    return entries.filter((entry, i) => entry?.kind === 'value' && entry.version >= newest.get(keys[i]!)!.version).length;
  } finally {
    await tier.close();
  }
}

/** Children still running, killed by stopChildren(). */
const children = new Set<ChildProcess>();

/** Kills every child still running (an interrupted run), so none writes on after it. */
export function stopChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}

/** The child script next to this module, with this module's extension (.ts under tsx, .js built). */
function childScript(): string {
  const here = fileURLToPath(import.meta.url);
  return join(here, '..', `kill-child${extname(here)}`);
}

function runAndKill(spec: PatternSpec, options: KillOptions): Promise<{ count: number; newest: Map<string, Ack> }> {
  const args = [
    ...process.execArgv,
    childScript(),
    '--pattern', spec.id,
    '--latency', String(options.latencyMs),
    '--concurrency', String(options.concurrency),
    '--keys', String(options.keys),
  ];
  // The spec (URLs with any password) goes in the environment, not on the command line.
  const env = { ...process.env, [BACKEND_ENV]: JSON.stringify(options.backend) };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const newest = new Map<string, Ack>();
  let count = 0;
  let partial = '';
  let stderr = '';
  let killed = false;
  let firstAckAt: number | undefined;

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the ${spec.id} child acknowledged ${count} of ${options.killAfter} writes within ${options.timeoutMs} ms${stderrTail(stderr)}`));
    }, options.timeoutMs);

    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const [key, version, token] = line.split(' ');
        if (key === undefined || version === undefined || token === undefined) continue;
        count++;
        firstAckAt ??= performance.now();
        const v = Number(version);
        if (v > (newest.get(key)?.version ?? 0)) newest.set(key, { version: v, token });
      }
      if (!killed && count >= options.killAfter && performance.now() - firstAckAt! >= options.minRunMs) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // 'close': the pipes are drained, so every line the child wrote before it died was counted.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killed && signal === 'SIGKILL') resolve({ count, newest });
      else reject(new Error(`the ${spec.id} child exited (${signal ?? `code ${code}`}) before ${options.killAfter} acknowledged writes${stderrTail(stderr)}`));
    });
  });
}

function tokenOf(json: string): string | undefined {
  try {
    const value = JSON.parse(json) as { w?: unknown; s?: unknown };
    return `${String(value.w)}:${String(value.s)}`;
  } catch {
    return undefined;
  }
}

function stderrTail(stderr: string): string {
  return stderr.trim() === '' ? '' : `; its stderr:\n${stderr.trim()}`;
}
