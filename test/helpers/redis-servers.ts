/**
 * Redis servers that a test owns: started from the `redis-server` binary on free loopback ports,
 * each in its own temporary folder, and stopped by process id (never by name, never the shared
 * server of services.md). For fault tests: stop, kill (-9) and restart a server on the same
 * port and folder, or run a Redis Cluster of several masters.
 *
 * Every server still running when the process exits is killed (SIGKILL by pid), so a failed
 * test does not leave servers behind. Without the binary, `skipUnlessRedisServer()` skips
 * locally and fails under CI, as skipUnless() in servers.ts does for the shared servers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const HOST = '127.0.0.1';
const BINARY = process.env.REDIS_SERVER_BIN ?? 'redis-server';
/** A cluster node also listens on port + 10000 (the cluster bus). */
const CLUSTER_BUS_OFFSET = 10_000;
const READY_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 3000;
const CLUSTER_SLOTS = 16_384;

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory-policy', 'allkeys-lru']. */
  args?: string[];
  /** Port to listen on (127.0.0.1). Default: a free one. */
  port?: number;
  /** Also keep port + 10000 free (cluster nodes). Only with a port chosen by the helper. */
  clusterBus?: boolean;
}

/** Every server this process started and has not stopped, by pid. */
const running = new Map<number, RedisServer>();

/** A redis-server process owned by the test. */
export class RedisServer {
  readonly host = HOST;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly port: number,
    /** Temporary folder: the working dir (RDB, nodes.conf) and `redis.log`. Removed by stop(). */
    readonly dir: string,
    readonly args: readonly string[],
  ) {}

  /** Starts a server and resolves once it answers PING. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const args = options.args ?? [];
    if (options.port !== undefined) {
      const server = new RedisServer(options.port, mkdtempSync(join(tmpdir(), 'cw-redis-')), args);
      await server.launch();
      return server;
    }
    // A free port can be taken between the probe and the start: try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort(options.clusterBus === true);
      const server = new RedisServer(port, mkdtempSync(join(tmpdir(), 'cw-redis-')), args);
      try {
        await server.launch();
        return server;
      } catch (error) {
        lastError = error;
        rmSync(server.dir, { recursive: true, force: true });
      }
    }
    throw lastError;
  }

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  /** Process id while running, else undefined. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  get isRunning(): boolean {
    return this.pid !== undefined;
  }

  /**
   * Stops the process (SIGTERM, then SIGKILL after 3 s) and, unless `keepDir`, removes its
   * folder. Resolves once the process has exited. Stopping a stopped server does nothing.
   */
  async stop(options: { signal?: NodeJS.Signals; keepDir?: boolean } = {}): Promise<void> {
    const child = this.child;
    if (child !== undefined && this.isRunning) {
      // Hold the event loop open until the exit is seen (the child is otherwise unref'd).
      child.ref();
      child.kill(options.signal ?? 'SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(killer);
    }
    if (options.keepDir !== true) rmSync(this.dir, { recursive: true, force: true });
  }

  /** A crash: SIGKILL, keeping the folder so that restart() finds its files. */
  kill(): Promise<void> {
    return this.stop({ signal: 'SIGKILL', keepDir: true });
  }

  /** Stops (if running) and starts again on the same port, folder and arguments. */
  async restart(options: { signal?: NodeJS.Signals } = {}): Promise<void> {
    await this.stop({ ...options, keepDir: true });
    await this.launch();
  }

  /** Sends one command over a fresh connection and returns the raw RESP reply text. */
  command(...args: string[]): Promise<string> {
    return rawCommand(this.port, args);
  }

  /** The end of the server's log, for error messages. */
  logTail(lines = 20): string {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private async launch(): Promise<void> {
    const child = spawn(
      BINARY,
      [
        '--port', String(this.port),
        '--bind', HOST,
        '--save', '',
        '--appendonly', 'no',
        '--daemonize', 'no',
        '--dir', this.dir,
        '--logfile', join(this.dir, 'redis.log'),
        ...this.args,
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    let spawnFailure: Error | undefined;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', (error) => {
        spawnFailure = error;
        resolve();
      });
    });
    child.unref();
    if (child.pid !== undefined) running.set(child.pid, this);
    void this.exited.then(() => {
      if (child.pid !== undefined && running.get(child.pid) === this) running.delete(child.pid);
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (spawnFailure !== undefined) throw new Error(`cannot run ${BINARY}: ${spawnFailure.message}`);
      if (!this.isRunning) throw new Error(`redis-server on port ${this.port} exited while starting:\n${this.logTail()}`);
      if (await answersPing(this.port)) return;
      if (Date.now() > deadline) {
        await this.stop({ signal: 'SIGKILL', keepDir: true });
        throw new Error(`redis-server on port ${this.port} did not answer within ${READY_TIMEOUT_MS} ms:\n${this.logTail()}`);
      }
      await sleep(20);
    }
  }
}

export function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  return RedisServer.start(options);
}

/** A Redis Cluster of masters without replicas, every slot assigned, state ok. */
export interface RedisClusterHandle {
  readonly nodes: readonly RedisServer[];
  /** For `new Cluster(startupNodes)`. */
  readonly startupNodes: readonly { host: string; port: number }[];
  /** Stops every node and removes their folders. */
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Number of masters. Default 3. */
  masters?: number;
  /** Extra redis-server arguments for every node. */
  args?: string[];
  /**
   * Ports the nodes announce to clients instead of their own (node i announces
   * `announcePorts[i]` on 127.0.0.1; the cluster bus keeps the real port + 10000): an address
   * translation, as behind NAT or in containers, which clients must undo with ioredis `natMap`.
   */
  announcePorts?: readonly number[];
}

/**
 * Starts `masters` cluster-enabled servers, splits the 16384 slots between them, joins them with
 * CLUSTER MEET and resolves when every node reports cluster_state:ok and knows all the others.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', ...(options.args ?? [])];
  const nodes: RedisServer[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    nodes.push(...(await Promise.all(Array.from({ length: masters }, () => RedisServer.start({ args, clusterBus: true })))));
    await Promise.all(
      nodes.map(async (node, i) => {
        const first = Math.floor((i * CLUSTER_SLOTS) / masters);
        const last = Math.floor(((i + 1) * CLUSTER_SLOTS) / masters) - 1;
        const slots = Array.from({ length: last - first + 1 }, (_, j) => String(first + j));
        expectOk(await node.command('CLUSTER', 'ADDSLOTS', ...slots), 'CLUSTER ADDSLOTS');
        // Distinct epochs from the start, as redis-cli --cluster create does: no collisions to settle.
        expectOk(await node.command('CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1)), 'CLUSTER SET-CONFIG-EPOCH');
        const announced = options.announcePorts?.[i];
        if (announced !== undefined) {
          expectOk(await node.command('CONFIG', 'SET', 'cluster-announce-port', String(announced), 'cluster-announce-bus-port', String(node.port + 10_000)), 'CONFIG SET cluster-announce-port');
        }
      }),
    );
    const [first, ...others] = nodes;
    for (const node of others) expectOk(await first!.command('CLUSTER', 'MEET', HOST, String(node.port)), 'CLUSTER MEET');
    await waitForClusterOk(nodes);
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, startupNodes: nodes.map((node) => ({ host: node.host, port: node.port })), stop };
}

/** Process ids of the servers this process started and that still run. */
export function ownedRedisPids(): number[] {
  return [...running.keys()];
}

/** Stops every server this process started. */
export async function stopAllRedisServers(): Promise<void> {
  await Promise.all([...running.values()].map((server) => server.stop()));
}

/** Pids of all redis-server processes on the machine (pgrep), to check that none of ours remains. */
export function redisServerPidsOnMachine(): number[] {
  const result = spawnSync('pgrep', ['-x', 'redis-server'], { encoding: 'utf8' });
  return result.stdout.split('\n').filter(Boolean).map(Number);
}

let binaryAnswer: string | false | undefined;

/**
 * false when `redis-server` can run here; else the reason, after printing it. Under CI a missing
 * binary throws instead, because CI must not skip these suites.
 */
export function skipUnlessRedisServer(): false | string {
  if (binaryAnswer === undefined) {
    const probe = spawnSync(BINARY, ['--version'], { encoding: 'utf8' });
    binaryAnswer = probe.status === 0 ? false : `${BINARY} cannot run here (${probe.error?.message ?? probe.stderr.trim()}); install redis-server or set REDIS_SERVER_BIN`;
    if (binaryAnswer !== false) {
      if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`CI refuses to skip: ${binaryAnswer}`);
      console.log(`# SKIPPED suites that start their own Redis: ${binaryAnswer}`);
    }
  }
  return binaryAnswer;
}

/** SIGKILL by pid, synchronously: the only way left while the process exits. */
function killAllNow(): void {
  for (const pid of running.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

process.on('exit', killAllNow);
// A test run cancelled by a signal does not emit 'exit': kill the servers, then let the signal
// do what it would have done without this listener.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  const onSignal = () => {
    killAllNow();
    if (process.listenerCount(signal) === 1) {
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    }
  };
  process.on(signal, onSignal);
}

async function waitForClusterOk(nodes: readonly RedisServer[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS * 2;
  for (;;) {
    const infos = await Promise.all(nodes.map((node) => node.command('CLUSTER', 'INFO')));
    if (infos.every((info) => /cluster_state:ok/.test(info) && new RegExp(`cluster_known_nodes:${nodes.length}\\b`).test(info))) return;
    if (Date.now() > deadline) throw new Error(`the Redis Cluster did not reach cluster_state:ok:\n${infos.join('\n---\n')}`);
    await sleep(50);
  }
}

function expectOk(reply: string, what: string): void {
  if (!reply.startsWith('+OK')) throw new Error(`${what} failed: ${reply.trim()}`);
}

/** A free loopback port (and port + 10000 too, for a cluster bus). */
async function freePort(withBus: boolean): Promise<number> {
  for (;;) {
    const port = await listenAndClose(0);
    if (!withBus) return port;
    if (port + CLUSTER_BUS_OFFSET > 65_535) continue;
    if ((await listenAndClose(port + CLUSTER_BUS_OFFSET).catch(() => 0)) !== 0) return port;
  }
}

function listenAndClose(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, HOST, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

async function answersPing(port: number): Promise<boolean> {
  try {
    return (await rawCommand(port, ['PING'])).startsWith('+PONG');
  } catch {
    return false;
  }
}

/**
 * One RESP command over a new connection; resolves with the reply text once a complete reply has
 * arrived (the replies used here are simple strings, errors and bulk strings).
 */
function rawCommand(port: number, args: readonly string[], timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let reply = '';
    const done = (error: Error | undefined) => {
      socket.destroy();
      if (error) reject(error);
      else resolve(reply);
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`no reply from 127.0.0.1:${port} within ${timeoutMs} ms`)));
    socket.once('error', done);
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      if (replyComplete(reply)) done(undefined);
    });
    socket.connect(port, HOST, () => {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`);
    });
  });
}

function replyComplete(reply: string): boolean {
  const end = reply.indexOf('\r\n');
  if (end < 0) return false;
  if (reply[0] !== '$') return true;
  const length = Number(reply.slice(1, end));
  return length < 0 || Buffer.byteLength(reply) >= end + 2 + length + 2;
}
