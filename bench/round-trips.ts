/**
 * Where an operation's time goes: for the contenders of bench/redis-hit.ts and
 * bench/write-through.ts, how many commands each operation sends to Redis (and which ones run
 * inside Lua), how many statements it sends to PostgreSQL (and how long each takes), and the CPU
 * it costs in Node and in Redis. Not a throughput benchmark: counts and costs per operation.
 *
 * Redis is a redis-server this run starts on a free loopback port and stops (by pid), so that its
 * MONITOR stream, command statistics and CPU time hold this run's traffic only. PostgreSQL is the
 * shared server (DATABASE_URL), in a random schema dropped at the end; statements are counted by
 * wrapping each pool connection's query().
 *
 *   node --import tsx bench/round-trips.ts [--json] [--quick] [--ops 20000] [--concurrency 16]
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { performance } from 'node:perf_hooks';
import { startRedisServer } from '../test/helpers/redis-servers.js';
import { parseFlags } from './lib/args.js';
import { hitContenders } from './lib/hit-contenders.js';
import { machineInfo } from './lib/report.js';
import { runCount, type Contender } from './lib/runner.js';
import { clearProgress, main, onCleanup, pgPool, progress, redisClient, runId } from './lib/services.js';
import { writeThroughContenders } from './lib/write-through-contenders.js';

/** Unmeasured operations before each dissection. */
const WARM_UP_OPS = 3000;

const flags = parseFlags('node --import tsx bench/round-trips.ts [flags]\n\nCommands, statements and CPU per operation, cachewise against raw.', [
  { name: 'json', type: 'boolean', description: 'print JSON instead of text', default: false },
  { name: 'ops', type: 'int', description: 'operations per contender for the CPU figures', default: 20_000 },
  { name: 'concurrency', type: 'int', description: 'concurrent loops for the CPU figures', default: 16 },
  { name: 'sample', type: 'int', description: 'operations watched with MONITOR', default: 20 },
  { name: 'quick', type: 'boolean', description: 'a smoke run: 2,000 operations, 500 of warm-up, 5 watched', default: false },
  { name: 'help', type: 'boolean', description: 'print this help', default: false },
]);

/** One contender's operation, dissected. */
interface Dissection {
  readonly operation: string;
  readonly contender: string;
  /** Commands the client sent per operation, by name (EVALSHA counted once, its Lua body apart). */
  readonly redisSent: Record<string, number>;
  /** Commands run inside Lua scripts per operation, by name. */
  readonly redisInLua: Record<string, number>;
  /** The exact Redis commands of one operation, as MONITOR shows them (values elided). */
  readonly redisExample: readonly string[];
  /** PostgreSQL statements per operation, with their mean latency. */
  readonly pgStatements: readonly { readonly statement: string; readonly perOp: number; readonly meanMs: number }[];
  /** Node CPU (user + system) per operation, µs, at the given concurrency. */
  readonly nodeCpuUs: number;
  /** redis-server CPU per operation, µs (its whole process: I/O included). */
  readonly redisCpuUs: number;
  /** Wall time per operation at that concurrency, µs (elapsed / ops). */
  readonly wallUs: number;
}

/** PostgreSQL statements sent through the watched pools while started, with their latencies. */
class StatementLog {
  private recording = false;
  private readonly byText = new Map<string, { count: number; totalMs: number }>();

  /** Wraps every connection `pool` opens from now on; returns the pool. */
  watch(pool: pg.Pool): pg.Pool {
    pool.on('connect', (client) => {
      const original = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        const config = args[0];
        const text = typeof config === 'string' ? config : String((config as { text?: unknown } | null)?.text ?? '');
        if (!this.recording) return original(...args);
        const started = performance.now();
        const record = () => {
          const entry = this.byText.get(text) ?? { count: 0, totalMs: 0 };
          entry.count++;
          entry.totalMs += performance.now() - started;
          this.byText.set(text, entry);
        };
        // pool.query() calls client.query with a callback; the store awaits the promise form.
        const callback = args.at(-1);
        if (typeof callback === 'function') {
          args[args.length - 1] = (...results: unknown[]) => {
            record();
            return (callback as (...r: unknown[]) => unknown)(...results);
          };
          return original(...args);
        }
        const result = original(...args);
        if (result instanceof Promise) result.then(record, record);
        return result;
      };
    });
    return pool;
  }

  start(): void {
    this.byText.clear();
    this.recording = true;
  }

  stop(operations: number): { statement: string; perOp: number; meanMs: number }[] {
    this.recording = false;
    return [...this.byText].map(([text, { count, totalMs }]) => ({ statement: shorten(text), perOp: count / operations, meanMs: totalMs / count }));
  }
}

async function redisCpu(client: Redis): Promise<number> {
  const info = await client.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return field('used_cpu_sys') + field('used_cpu_user');
}

function sameCommand(a: readonly string[], b: readonly string[]): boolean {
  return a[0]?.toLowerCase() === b[0]?.toLowerCase();
}

/** A command with its long arguments (values, hashes) elided. */
function describe(args: readonly string[]): string {
  return args.map((a) => (a.length > 24 ? `${a.slice(0, 12)}…(${a.length})` : a)).join(' ');
}

function shorten(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim();
  return flat.length > 90 ? `${flat.slice(0, 87)}...` : flat;
}

function render(dissections: readonly Dissection[], options: { ops: number; concurrency: number; sample: number }): string {
  const out: string[] = [];
  const m = machineInfo();
  out.push(`Per-operation round trips and CPU (${m.date.slice(0, 10)}, nproc ${m.nproc}, Node ${m.node}, load ${m.loadAverageAtStart})`);
  out.push(`Commands and statements (with their latency) over ${options.sample} sequential operations; CPU and wall time over ${options.ops} operations at concurrency ${options.concurrency}.`);
  out.push('Redis is a redis-server of this run; PostgreSQL the shared one.');
  for (const d of dissections) {
    out.push('');
    out.push(`${d.operation}, ${d.contender}`);
    const perOp = (r: Record<string, number>) =>
      Object.entries(r)
        .map(([name, n]) => `${+n.toFixed(2)} ${name}`)
        .join(', ') || 'none';
    out.push(`  Redis commands sent per op: ${perOp(d.redisSent)}; run inside Lua per op: ${perOp(d.redisInLua)}`);
    for (const line of d.redisExample) out.push(`    ${line}`);
    if (d.pgStatements.length > 0) {
      const total = d.pgStatements.reduce((sum, s) => sum + s.perOp, 0);
      out.push(`  PostgreSQL statements per op: ${+total.toFixed(2)} (each one round trip)`);
      for (const s of d.pgStatements) out.push(`    ${s.perOp.toFixed(2)} x ${s.meanMs.toFixed(3)} ms  ${s.statement}`);
    }
    out.push(`  CPU per op: Node ${d.nodeCpuUs.toFixed(1)} µs, redis-server ${d.redisCpuUs.toFixed(1)} µs; wall ${d.wallUs.toFixed(1)} µs per op`);
  }
  out.push('');
  return out.join('\n');
}

await main(async () => {
  const quick = flags.quick === true;
  const ops = quick ? 2_000 : (flags.ops as number);
  const concurrency = flags.concurrency as number;
  const sample = quick ? 5 : (flags.sample as number);
  const warmUpOps = quick ? 500 : WARM_UP_OPS;
  const id = runId();
  const prefix = `bench:${id}:`;
  const schema = `bench_${id}`;

  progress('starting redis-server');
  const server = await startRedisServer();
  onCleanup(() => server.stop());
  const url = server.url;
  const admin = pgPool(1, 'bench-admin');
  onCleanup(() => admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
  const statements = new StatementLog();

  const dissections: Dissection[] = [];

  // Read hits.
  const hit = await hitContenders({
    cwClient: redisClient({ connectionName: 'bench-cachewise' }, url),
    rawClient: redisClient({ connectionName: 'bench-raw' }, url),
    prefix,
    keys: 1000,
  });
  for (const contender of hit.contenders) {
    progress(`get: ${contender.name}`);
    dissections.push(await dissect('get (hit)', contender, url, statements));
  }
  await hit.close();

  // Write-through sets, on pools whose connections carry statement_timeout as in write-through.ts
  // (so the store writes in autocommit).
  const cwPool = statements.watch(pgPool(10, 'bench-cachewise', { statement_timeout: 5000 }));
  const rawPool = statements.watch(pgPool(10, 'bench-raw', { statement_timeout: 5000 }));
  const wt = await writeThroughContenders({
    admin,
    cwPool,
    rawPool,
    cwRedis: redisClient({ connectionName: 'bench-cachewise' }, url),
    rawRedis: redisClient({ connectionName: 'bench-raw' }, url),
    schema,
    prefix,
    keys: 1000,
  });
  onCleanup(() => wt.close());
  for (const contender of wt.contenders) {
    progress(`write-through set: ${contender.name}`);
    dissections.push(await dissect('write-through set', contender, url, statements));
  }
  clearProgress();

  if (flags.json === true) {
    process.stdout.write(`${JSON.stringify({ benchmark: 'round-trips', machine: machineInfo(), options: { ops, concurrency, sample }, dissections }, null, 2)}\n`);
    return;
  }
  process.stdout.write(render(dissections, { ops, concurrency, sample }));

  /** MONITOR over `sample` sequential operations, then CPU over `ops` operations at `concurrency`. */
  async function dissect(operation: string, contender: Contender, redisUrl: string, log: StatementLog): Promise<Dissection> {
    let sequence = 1_000_000;
    await runCount(contender, concurrency, warmUpOps, sequence); // scripts loaded, pools filled, code compiled
    sequence += warmUpOps;

    const monitorClient = redisClient({ connectionName: 'bench-monitor' }, redisUrl);
    const monitor = await monitorClient.monitor();
    const seen: { args: string[]; lua: boolean }[] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => seen.push({ args, lua: source === 'lua' }));
    log.start();
    for (let i = 0; i < sample; i++) await contender.op(sequence++);
    const pgStatements = log.stop(sample);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the last MONITOR lines arrive after the replies
    monitor.disconnect();
    monitorClient.disconnect();

    const counts = (lua: boolean) => {
      const out: Record<string, number> = {};
      for (const command of seen.filter((s) => s.lua === lua)) {
        const name = command.args[0]!.toUpperCase();
        out[name] = (out[name] ?? 0) + 1 / sample;
      }
      return out;
    };
    const firstSent = seen.findIndex((s) => !s.lua);
    // One operation's commands: from the first one the client sent to the next of the same name.
    const nextSent = seen.findIndex((s, i) => i > firstSent && !s.lua && sameCommand(s.args, seen[firstSent]!.args));
    const redisExample = seen.slice(firstSent, nextSent === -1 ? undefined : nextSent).map((s) => `${s.lua ? '  (lua) ' : ''}${describe(s.args)}`);

    const stats = redisClient({ connectionName: 'bench-stats' }, redisUrl);
    const cpuBefore = await redisCpu(stats);
    const nodeBefore = process.cpuUsage();
    const { elapsedMs } = await runCount(contender, concurrency, ops, sequence);
    const node = process.cpuUsage(nodeBefore);
    const cpuAfter = await redisCpu(stats);
    stats.disconnect();
    return {
      operation,
      contender: contender.name,
      redisSent: counts(false),
      redisInLua: counts(true),
      redisExample,
      pgStatements,
      nodeCpuUs: (node.user + node.system) / ops,
      redisCpuUs: ((cpuAfter - cpuBefore) * 1e6) / ops,
      wallUs: (elapsedMs * 1000) / ops,
    };
  }
});
