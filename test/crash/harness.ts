/**
 * The write-back crash harness (contract 5). Each round starts a child process that writes under
 * load through write-back, kills it with SIGKILL at a random moment (sometimes during its own
 * recovery), then recovers in this process and checks the database:
 *
 * - durability 'journal': every acknowledged write (the newest acknowledged version of each key)
 *   is in the database, no row holds a version older than it, the row's value is the one that
 *   was acknowledged, and a second replay of the same journal changes nothing. Every other round
 *   first cuts each journal segment back to its last fsync, as a power cut would lose what the
 *   page cache held: acks wait for the fsync, so nothing acknowledged may be lost even then.
 * - durability 'none': the same load, and the harness counts the acknowledged writes that the
 *   database does not hold: the seed's trade-off, measured.
 *
 * Run on its own: node --import tsx test/crash/harness.ts [--rounds 100] [--durability journal|none|both]
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createCache } from '../../src/cache.js';
import { fileJournal } from '../../src/journal/file-journal.js';
import { sqliteStore } from '../../src/stores/sqlite-store.js';
import type { StoreRecord } from '../../src/stores/store.js';
import { seededRandom } from '../helpers/write-back-fixture.js';
import { CRASH_COLLECTION, CRASH_KEYS, crashPolicy, type CrashDurability } from './crash-workload.js';

export interface CrashRoundsOptions {
  readonly rounds: number;
  readonly durability: CrashDurability;
  readonly seed?: number;
  /** Called after each round with a one-line summary. */
  readonly progress?: (line: string) => void;
}

export interface CrashReport {
  readonly durability: CrashDurability;
  readonly rounds: number;
  /** Rounds whose journal was cut back to the last fsync before recovery. */
  readonly cutRounds: number;
  /** Rounds killed before the child finished its own recovery. */
  readonly killedDuringRecovery: number;
  /** Writes acknowledged by the children. */
  readonly acknowledged: number;
  /** Keys checked after recovery (the newest acknowledged write of each key per round). */
  readonly keysChecked: number;
  /** Keys whose newest acknowledged write the database did not hold after recovery. */
  readonly lost: number;
  /** Keys whose row held an older version than the newest acknowledged one (subset of lost). */
  readonly olderRows: number;
  /** Keys whose row had the acknowledged version with another value. */
  readonly wrongValues: number;
  /** Rows a second replay of the same journal changed (must be 0). */
  readonly secondReplayChanges: number;
  /** Journal records replayed by recoveries. */
  readonly replayed: number;
  /** Recoveries that found a torn tail (a write cut short by the kill). */
  readonly tornTails: number;
  /** Failures, one line each (empty when every check passed). */
  readonly failures: readonly string[];
}

interface Ack {
  readonly version: number;
  /** The value id, or undefined for a delete. */
  readonly id: number | undefined;
}

const CHILD = fileURLToPath(new URL('./write-back-child.ts', import.meta.url));
const KEYS = Array.from({ length: CRASH_KEYS }, (_, i) => `k${i}`);

export async function runCrashRounds(options: CrashRoundsOptions): Promise<CrashReport> {
  const dir = mkdtempSync(join(tmpdir(), `cachewise-crash-${options.durability}-`));
  const random = seededRandom(options.seed ?? 1);
  const report = {
    durability: options.durability,
    rounds: 0,
    cutRounds: 0,
    killedDuringRecovery: 0,
    acknowledged: 0,
    keysChecked: 0,
    lost: 0,
    olderRows: 0,
    wrongValues: 0,
    secondReplayChanges: 0,
    replayed: 0,
    tornTails: 0,
    failures: [] as string[],
  };
  try {
    for (let round = 1; round <= options.rounds; round++) {
      const journalDir = join(dir, 'journal');
      const sizesBefore = segmentSizes(journalDir);
      const killEarly = random() < 0.15;
      const run = await runChild(dir, options.durability, Math.floor(random() * 2 ** 31), killEarly ? random() * 400 : 20 + random() * 580, killEarly);
      if (!run.ready) report.killedDuringRecovery++;
      report.acknowledged += run.acks;
      let cut = false;
      if (options.durability === 'journal' && round % 2 === 0) {
        cut = true;
        report.cutRounds++;
        cutToLastSync(journalDir, sizesBefore, run.syncedTo);
      }
      const before = options.durability === 'journal' ? copyJournal(journalDir, join(dir, 'journal-copy')) : undefined;
      const recovered = await recover(dir, options.durability, journalDir);
      report.replayed += recovered.replayed;
      if (recovered.tornTail) report.tornTails++;
      const rows = await readRows(dir);
      for (const [key, ack] of run.newest) {
        report.keysChecked++;
        const row = rows.get(key);
        const version = row?.version ?? 0;
        if (version < ack.version) {
          report.lost++;
          if (row !== undefined) report.olderRows++;
          if (options.durability === 'journal') {
            report.failures.push(`round ${round}${cut ? ' (cut)' : ''}: ${key} acknowledged at version ${ack.version}, database holds ${row === undefined ? 'nothing' : version}`);
          }
        } else if (version === ack.version && valueId(row) !== ack.id) {
          report.wrongValues++;
          report.failures.push(`round ${round}: ${key} at version ${version} holds value ${valueId(row)}, acknowledged ${ack.id}`);
        }
      }
      if (before !== undefined) {
        await recover(dir, options.durability, before);
        const again = await readRows(dir);
        for (const key of KEYS) {
          if (JSON.stringify(rows.get(key)) !== JSON.stringify(again.get(key))) {
            report.secondReplayChanges++;
            report.failures.push(`round ${round}: a second replay changed ${key}`);
          }
        }
        rmSync(before, { recursive: true, force: true });
      }
      report.rounds++;
      options.progress?.(
        `round ${round}/${options.rounds}: ${run.acks} acknowledged${run.ready ? '' : ' (killed during recovery)'}${cut ? ', journal cut to last fsync' : ''}, ${recovered.replayed} replayed, lost so far ${report.lost}`,
      );
    }
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ChildRun {
  readonly ready: boolean;
  readonly acks: number;
  /** The newest acknowledged write per key. */
  readonly newest: Map<string, Ack>;
  /** The last fsynced size per segment path. */
  readonly syncedTo: Map<string, number>;
}

function runChild(dir: string, durability: CrashDurability, seed: number, killAfterMs: number, fromStart: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, durability, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const newest = new Map<string, Ack>();
    const syncedTo = new Map<string, number>();
    let ready = false;
    let acks = 0;
    let rest = '';
    let stderr = '';
    const kill = () => child.kill('SIGKILL');
    const timer = fromStart ? setTimeout(kill, killAfterMs) : undefined;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.stdout.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        const [kind, a, b, c] = line.split(' ');
        if (kind === 'A') {
          acks++;
          const version = Number(b);
          if ((newest.get(a!)?.version ?? 0) < version) newest.set(a!, { version, id: c === '-' ? undefined : Number(c) });
        } else if (kind === 'S') {
          syncedTo.set(line.slice(line.indexOf(' ', 2) + 1), Number(a));
        } else if (kind === 'R') {
          ready = true;
          if (!fromStart) setTimeout(kill, killAfterMs);
        }
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`the crash child ended by itself (code ${code}): ${stderr}`));
      else resolve({ ready, acks, newest, syncedTo });
    });
  });
}

/** Sizes of the journal's segment files now. */
function segmentSizes(journalDir: string): Map<string, number> {
  const sizes = new Map<string, number>();
  if (!existsSync(journalDir)) return sizes;
  for (const name of readdirSync(journalDir)) {
    if (name.startsWith('segment-')) sizes.set(join(journalDir, name), statSync(join(journalDir, name)).size);
  }
  return sizes;
}

/**
 * Cuts every segment back to what was fsynced: the size of its last sync in this round, or its
 * size before the round when the round never synced it (then everything it got was unsynced).
 */
function cutToLastSync(journalDir: string, before: Map<string, number>, syncedTo: Map<string, number>): void {
  for (const [path, size] of segmentSizes(journalDir)) {
    const keep = syncedTo.get(path) ?? Math.min(size, before.get(path) ?? 0);
    if (keep < size) truncateSync(path, keep);
  }
}

function copyJournal(journalDir: string, to: string): string | undefined {
  if (!existsSync(journalDir)) return undefined;
  rmSync(to, { recursive: true, force: true });
  cpSync(journalDir, to, { recursive: true });
  return to;
}

/** What a restart does: open the cache on the journal, declare the collection, flush, close. */
async function recover(dir: string, durability: CrashDurability, journalDir: string): Promise<{ replayed: number; tornTail: boolean }> {
  const journal = durability === 'journal' ? fileJournal(journalDir, { segmentBytes: 256 * 1024 }) : undefined;
  const cache = await createCache({ store: sqliteStore(join(dir, 'app.db')), journal });
  const recovery = cache.recovery();
  const orders = cache.collection(CRASH_COLLECTION, crashPolicy(durability));
  await orders.flush({ timeout: '30s' });
  const closed = await cache.close({ timeout: '30s' });
  if (closed.unflushed.length > 0) throw new Error(`recovery left ${closed.unflushed.length} writes unflushed`);
  return { replayed: recovery?.records ?? 0, tornTail: recovery?.tornTail !== undefined };
}

async function readRows(dir: string): Promise<Map<string, StoreRecord>> {
  const store = sqliteStore(join(dir, 'app.db'));
  try {
    await store.prepare(CRASH_COLLECTION);
    const rows = await store.loadMany(CRASH_COLLECTION, KEYS);
    const map = new Map<string, StoreRecord>();
    rows.forEach((row, i) => row !== undefined && map.set(KEYS[i]!, row));
    return map;
  } finally {
    await store.close();
  }
}

function valueId(row: StoreRecord | undefined): number | undefined {
  return row?.json === undefined ? undefined : (JSON.parse(row.json) as { id: number }).id;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
  };
  const rounds = Number(option('rounds', '100'));
  const which = option('durability', 'both');
  if (!Number.isSafeInteger(rounds) || rounds < 1 || !['journal', 'none', 'both'].includes(which)) {
    console.error('usage: node --import tsx test/crash/harness.ts [--rounds N] [--durability journal|none|both] [--seed N]');
    process.exit(2);
  }
  let failed = false;
  for (const durability of (which === 'both' ? ['journal', 'none'] : [which]) as CrashDurability[]) {
    const started = Date.now();
    const report = await runCrashRounds({ rounds, durability, seed: Number(option('seed', '1')), progress: (line) => process.stderr.write(`[${durability}] ${line}\n`) });
    const { failures, ...counts } = report;
    console.log(JSON.stringify({ ...counts, seconds: Math.round((Date.now() - started) / 100) / 10, failures: failures.slice(0, 20) }, null, 2));
    if (durability === 'journal' && failures.length > 0) failed = true;
  }
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
