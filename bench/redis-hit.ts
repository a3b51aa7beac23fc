/**
 * A read hit on the Redis tier: cachewise against a raw ioredis GET, at the same concurrency.
 *
 *   cachewise  collection.get(key) on a read-through collection over redisTier({ client }),
 *              every key prefilled, so every get is a hit. The tier is shared (no in-process
 *              copy), so each get goes to Redis: that is the path measured.
 *   raw        client.get(key) of the same value, stored pre-serialized as a plain string, then
 *              JSON.parse: what hand-written cache code does to get a usable value.
 *
 * Both contenders have a client of their own with the same options (the Redis tier's defaults),
 * with ioredis auto-pipelining on, off, or both in turn (--pipelining). Keys live under a random
 * prefix, deleted at the end. See lib/hit-contenders.ts for the set-up.
 *
 *   node --import tsx bench/redis-hit.ts [--json] [--quick] [--pipelining both|on|off] ...
 */
import { commonFlags, parseFlags } from './lib/args.js';
import { hitContenders } from './lib/hit-contenders.js';
import { machineInfo, printReport, ratiosTo, type CaseResult } from './lib/report.js';
import { compare } from './lib/runner.js';
import { clearProgress, deleteKeys, main, onCleanup, progress, redisClient, runId } from './lib/services.js';
import { profile } from './lib/workload.js';

const TARGET = 0.9;

const flags = parseFlags('node --import tsx bench/redis-hit.ts [flags]\n\nRead hits on the Redis tier against raw ioredis GET + JSON.parse.', [
  ...commonFlags({ rounds: 5, roundMs: 700, warmupMs: 300, concurrency: [1, 16, 64] }),
  { name: 'keys', type: 'int', description: 'distinct keys, prefilled', default: 10_000 },
  { name: 'pipelining', type: 'string', description: 'ioredis enableAutoPipelining for both contenders', default: 'both', choices: ['both', 'on', 'off'] },
]);

await main(async () => {
  const prefix = `bench:${runId()}:`;
  const keys = flags.keys as number;
  const options = { rounds: flags.rounds as number, roundMs: flags['round-ms'] as number, warmupMs: flags['warmup-ms'] as number };
  const modes = flags.pipelining === 'both' ? [true, false] : [flags.pipelining === 'on'];
  const machine = machineInfo();
  const notes: string[] = [];

  // Created first, so that its clean-up (deleting every key of the run) runs before it disconnects.
  const admin = redisClient();
  onCleanup(() => deleteKeys(admin, prefix));

  const cases: CaseResult[] = [];
  for (const pipelining of modes) {
    const mode = pipelining ? 'on' : 'off';
    const cwClient = redisClient({ enableAutoPipelining: pipelining, connectionName: 'bench-cachewise' });
    const rawClient = redisClient({ enableAutoPipelining: pipelining, connectionName: 'bench-raw' });
    progress(`prefill ${keys} keys (pipelining ${mode})`);
    const setup = await hitContenders({ cwClient, rawClient, prefix, keys });

    const before = setup.profiles.stats();
    for (const concurrency of flags.concurrency as number[]) {
      const results = await compare(setup.contenders, { ...options, concurrency }, (m) => progress(`pipelining ${mode}, concurrency ${concurrency}: ${m}`));
      cases.push({ setting: { pipelining: mode, concurrency }, contenders: results, ratios: ratiosTo(results, 'raw', TARGET) });
    }
    const after = setup.profiles.stats();
    const misses = after.misses - before.misses + setup.rawMisses();
    notes.push(
      `pipelining ${mode}: cachewise ${after.hits - before.hits} hits, ${after.misses - before.misses} misses, ${after.tierErrors - before.tierErrors} tier errors; ` +
        `raw ${setup.rawMisses()} misses${misses > 0 ? ' (NOT all hits: the comparison is off)' : ''}`,
    );
    await setup.close();
    cwClient.disconnect();
    rawClient.disconnect();
  }
  clearProgress();
  notes.push(`${keys} keys of about ${JSON.stringify(profile(keys)).length} bytes of JSON each, under ${prefix} (deleted at the end)`);
  printReport(
    { benchmark: 'redis-hit', title: 'Redis tier read hit: cachewise get vs raw ioredis GET + JSON.parse', machine, options: { ...options, keys }, cases, notes },
    flags.json === true,
  );
});
