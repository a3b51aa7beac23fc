/**
 * The process the demo kills. It opens the same kind of cache as the demo (the same tier and
 * store kinds, on the same servers, with the injected latency, and with the part's file journal
 * for write-back with durability 'journal'; the BackendSpec comes in the environment variable
 * CACHEWISE_DEMO_BACKEND), writes keys under one pattern's policy from concurrent writers, and
 * prints one line per acknowledged write, each writer pausing 1 ms between writes:
 * "<key> <version> <writer>:<sequence>". It never stops by itself (except after a safety
 * deadline); the parent kills it with SIGKILL.
 *
 *   CACHEWISE_DEMO_BACKEND=<json> node kill-child.js --pattern <id> --latency <ms> --concurrency <n> --keys <n>
 */
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { backendSpecFromEnv, openCache, openStore } from './backend.js';
import { LatencyStore } from './latency-store.js';
import { isJournaled, patternById } from './patterns.js';
import type { DemoValue } from './staleness.js';

/** The child gives up on its own if nobody killed it by then (a parent that died). */
const SAFETY_DEADLINE_MS = 120_000;
/** Each writer's pause between writes: a steady stream, during which timers (the flusher) run. */
const PAUSE_MS = 1;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      pattern: { type: 'string' },
      latency: { type: 'string' },
      concurrency: { type: 'string' },
      keys: { type: 'string' },
    },
    strict: true,
  });
  const spec = patternById(values.pattern ?? '');
  if (spec === undefined) throw new Error('kill-child needs a known --pattern');
  const backend = backendSpecFromEnv();
  const latencyMs = Number(values.latency ?? 0);
  const concurrency = Number(values.concurrency ?? 8);
  const keys = Number(values.keys ?? 1000);

  setTimeout(() => process.exit(3), SAFETY_DEADLINE_MS).unref();
  // The parent closing the pipe ends the child too.
  process.stdout.on('error', () => process.exit(0));

  const part = `kill-${spec.id}` as const;
  const cache = await openCache(backend, part, new LatencyStore(openStore(backend, part), latencyMs), { journal: isJournaled(spec) });
  const collection = cache.collection<DemoValue>(spec.collection, spec.policy);
  let seq = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      const writer = i + 1;
      for (;;) {
        const key = `k${Math.floor(Math.random() * keys)}`;
        const value: DemoValue = { w: writer, s: ++seq };
        const { version } = await collection.set(key, value);
        process.stdout.write(`${key} ${version} ${writer}:${value.s}\n`);
        await sleep(PAUSE_MS);
      }
    }),
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`kill-child: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
