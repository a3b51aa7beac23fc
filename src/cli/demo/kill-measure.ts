/**
 * Measures "acknowledged writes lost when the process dies": a child process writes under a
 * pattern and reports each acknowledged write on stdout; once it has acknowledged `killAfter`
 * writes and run for `minRunMs` (several write-back flush intervals, so that the kill lands in a
 * steady state, not before the first flush) it is killed with SIGKILL (no close(), no flush, no
 * exit handlers). The parent then opens the
 * SQLite file itself and counts the keys whose newest acknowledged write is not in the database
 * (no row, or a row with an older version).
 */
import { spawn } from 'node:child_process';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDemoDatabase } from './demo-store.js';
import type { PatternSpec } from './patterns.js';

export interface KillMeasurement {
  /** Acknowledged writes the child reported before it died. */
  readonly acked: number;
  /** Distinct keys among them. */
  readonly keys: number;
  /** Keys whose newest acknowledged write is not in the database. */
  readonly lost: number;
  readonly lostExamples: readonly string[];
  readonly durationMs: number;
}

export interface KillOptions {
  readonly file: string;
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
  const store = openDemoDatabase(options.file);
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
        if (lostExamples.length < 3) lostExamples.push(`${key}: acknowledged version ${acked.version}, database holds ${held || 'nothing'}`);
      }
    });
    return { acked: acks.count, keys: keys.length, lost, lostExamples, durationMs: performance.now() - started };
  } finally {
    await store.close();
  }
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
    '--file', options.file,
    '--pattern', spec.id,
    '--latency', String(options.latencyMs),
    '--concurrency', String(options.concurrency),
    '--keys', String(options.keys),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
