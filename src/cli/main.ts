/**
 * The `cachewise` command line. Commands: `demo` (the seed's write patterns, measured), `bench`
 * (cachewise beside peer libraries and raw clients, and the seed's claims checked), `help`.
 * Exit codes: 0 success, 1 a check failed or the command crashed, 2 bad usage (an unknown
 * command or flag, or a bad value; the message names it and the usage follows) or a server that
 * does not answer (one line naming its URL and how to start it).
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { demoOptions, UsageError } from './demo/options.js';
import { ServerError } from './demo/backend.js';
import { runDemo, type DemoIo } from './demo/run-demo.js';

export const USAGE = `Usage: cachewise <command> [options]

Commands:
  demo               Runs the seed's five cache patterns (write-through, write-back, write-around,
                     read-through, cache-aside) side by side, and its "user activity feed"
                     combination, and prints the seed's comparison table next to the measured
                     numbers, with a sixth row the seed does not have: write-back with a durable
                     journal (file journal), killed and recovered. By default on the embedded
                     parts (memory tier + SQLite file, no server); --redis and --postgres run it
                     on real servers (the journal stays a file in a temporary directory).
  bench              Benchmarks: cachewise's hit, miss and stampede paths beside raw lru-cache,
                     raw ioredis, bentocache, cache-manager, cacheable and cachified; each write
                     pattern and the write-back flush; the seed's claims checked at the injected
                     and at the database's own latency. Writes bench.html (charts), bench.json
                     and bench.md to --out. Runs from a clone (it needs the devDependencies).
  help               Shows this help.

Demo options:
  --db-latency <ms>  Latency added to every database call (default 50, the seed's example);
                     0 measures the database's own latency.
  --json             Prints the figures as JSON on stdout, and nothing else (progress: stderr).
  --quick            A smaller workload (a few seconds).
  --dir <path>       Where the SQLite files and the journals go, kept afterwards (default: a
                     temporary directory, removed afterwards).
  --seed <n>         Seed of the workload's random choices (default 1).
  --redis [url]      Cache tier: this Redis (default $REDIS_URL, else redis://127.0.0.1:6379),
                     under a fresh random key prefix, deleted afterwards.
  --postgres [url]   Database: this PostgreSQL (default $DATABASE_URL, else
                     postgres://postgres@127.0.0.1:5432/test), in a fresh schema
                     cachewise_demo_<random>, dropped afterwards.
  --keep             Keeps the Redis keys and the PostgreSQL schema (names printed on stderr).

Bench options (also --db-latency, --json, --quick, --redis, --postgres, as above):
  --out <dir>        Where bench.html, bench.json and bench.md go (default ./cachewise-bench).
  --rounds <n>       Interleaved rounds per comparison (default 5; --quick 3).
  --round-ms <ms>    Length of one contender's round (default 500 for reads, 1000 for writes).
  --only <list>      Only these scenarios: memory-hit, miss-load, stampede, redis-hit,
                     two-tier-hit, writes (comma-separated).
  With --redis, the Redis-tier and two-tier scenarios run, and the write patterns use the Redis
  tier; with --postgres, the write patterns and the seed's claims use PostgreSQL.

Options:
  -h, --help         Shows this help.
  -v, --version      Prints the version.

Exit codes: 0 success; 1 a check failed (demo: a stale read, or an acknowledged write lost by
write-through, write-around or write-back with a journal; bench: a scenario failed; a missed
target is reported, not failed); 2 bad usage, or a server that does not answer.
`;

const COMMANDS = ['demo', 'bench', 'help'] as const;

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  'db-latency': { type: 'string' },
  json: { type: 'boolean' },
  quick: { type: 'boolean' },
  dir: { type: 'string' },
  seed: { type: 'string' },
  redis: { type: 'string' },
  postgres: { type: 'string' },
  keep: { type: 'boolean' },
  out: { type: 'string' },
  rounds: { type: 'string' },
  'round-ms': { type: 'string' },
  only: { type: 'string' },
} as const;

/** The flags each command takes (help and version belong to none). */
const COMMAND_FLAGS: Readonly<Record<string, ReadonlySet<string>>> = {
  demo: new Set(['db-latency', 'json', 'quick', 'dir', 'seed', 'redis', 'postgres', 'keep']),
  bench: new Set(['db-latency', 'json', 'quick', 'redis', 'postgres', 'out', 'rounds', 'round-ms', 'only']),
};
/** Flags whose value is optional: `--redis`, `--redis <url>`, `--redis=<url>`. */
const OPTIONAL_VALUE_FLAGS = new Set(['--redis', '--postgres']);

const processIo: DemoIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

let pipesGuarded = false;

/**
 * Output piped into a reader that quit (`| head`): drop the rest and run on to the clean-up,
 * instead of crashing with the demo's Redis keys and schema left behind.
 */
function ignoreClosedPipes(): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
  }
}

/** Runs the command line `args` (without node and the script) and resolves to the exit code. */
export async function run(args: readonly string[], io: DemoIo = processIo): Promise<number> {
  if (io === processIo) ignoreClosedPipes();
  try {
    const { values, positionals } = parse(args);
    if (values.version) {
      io.stdout(`${packageVersion()}\n`);
      return 0;
    }
    const command = positionals[0];
    if (values.help || command === undefined || command === 'help') {
      io.stdout(USAGE);
      return 0;
    }
    if (!(COMMANDS as readonly string[]).includes(command)) throw new UsageError(`unknown command "${command}"; the commands are ${COMMANDS.join(', ')}`);
    if (positionals.length > 1) throw new UsageError(`"${command}" takes no arguments, got "${positionals.slice(1).join(' ')}"`);
    if (command === 'bench') {
      const { benchOptions } = await import('./bench/options.js');
      const options = benchOptions(values);
      // Loaded only now: the bench needs the peer libraries, which are devDependencies.
      const { runBench } = await loadBench();
      return await runBench(options, packageVersion(), io, `cachewise ${args.join(' ')}`, io === processIo && process.stderr.isTTY === true);
    }
    return await runDemo(demoOptions(values), packageVersion(), io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`cachewise: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof ServerError) {
      io.stderr(`cachewise: ${error.message}\n`);
      return 2;
    }
    io.stderr(`cachewise: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return 1;
  }
}

function parse(args: readonly string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args: withOptionalValues(args), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    // parseArgs names the flag ("Unknown option '--x'", "Option '--dir <value>' argument missing").
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const command = parsed.positionals[0];
  if (command !== undefined) {
    const own = COMMAND_FLAGS[command] ?? new Set<string>();
    const misplaced = Object.keys(parsed.values).find((flag) => flag !== 'help' && flag !== 'version' && !own.has(flag));
    if (misplaced !== undefined) {
      const owners = Object.keys(COMMAND_FLAGS).filter((c) => COMMAND_FLAGS[c]!.has(misplaced));
      throw new UsageError(`--${misplaced} is an option of ${owners.map((c) => `"${c}"`).join(' and ')}, not of "${command}"`);
    }
  }
  return parsed;
}

/**
 * parseArgs has no optional values: `--redis` alone becomes `--redis=` (the default URL), and
 * `--redis <url>` becomes `--redis=<url>` when the next word is neither a flag nor a command.
 */
function withOptionalValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    if (!OPTIONAL_VALUE_FLAGS.has(arg)) {
      out.push(arg);
      continue;
    }
    const next = args[i + 1];
    if (next !== undefined && !next.startsWith('-') && !(COMMANDS as readonly string[]).includes(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(`${arg}=`);
  }
  return out;
}

async function loadBench(): Promise<typeof import('./bench/run-bench.js')> {
  try {
    return await import('./bench/run-bench.js');
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new ServerError(
      `bench needs the development dependencies (peer libraries and hdr-histogram-js), which are not installed (${(error as Error).message.split('\n')[0]}); run it from a clone of the repository after npm ci`,
    );
  }
}

function packageVersion(): string {
  // src/cli/main.ts and dist/cli/main.js are both two levels below the package root.
  const file = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) process.exitCode = await run(process.argv.slice(2));
