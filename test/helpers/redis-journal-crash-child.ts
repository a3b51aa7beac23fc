/**
 * A process for the Redis Stream journal crash test: opens the journal on a stream and appends
 * without end, with concurrent writers, printing the version of every record whose append
 * resolved (one line each; stdout to a pipe is synchronous, so a printed line is an acknowledged
 * write). The test kills it with SIGKILL mid-stream and checks that a new instance with the same
 * consumer name recovers every printed write that was not released.
 *
 * Usage: redis-journal-crash-child.ts <redis url> <stream> <consumer> <claimIdle ms>
 *
 * Record `version` is `redisCrashRecord(version)`; every acknowledged record for which
 * `isReleasedInRedisCrashTest(version)` is released right away (as a flusher would after writing
 * it to the database).
 */
import { pathToFileURL } from 'node:url';
import type { JournalRecord } from '../../src/journal/journal.js';
import { redisStreamJournal } from '../../src/journal/redis-stream-journal.js';

export const REDIS_CRASH_KEYS = 50;

export function redisCrashRecord(version: number): JournalRecord {
  const key = `k${version % REDIS_CRASH_KEYS}`;
  return version % 11 === 0
    ? { collection: 'orders', op: 'delete', key, version }
    : { collection: 'orders', op: 'set', key, version, json: JSON.stringify({ version, pad: 'x'.repeat(version % 40) }) };
}

export function isReleasedInRedisCrashTest(version: number): boolean {
  return version % 7 !== 0;
}

async function main(): Promise<void> {
  const [url, stream, consumer, claimIdle] = process.argv.slice(2);
  if (url === undefined || stream === undefined || consumer === undefined || claimIdle === undefined) {
    throw new Error('usage: redis-journal-crash-child.ts <redis url> <stream> <consumer> <claimIdle ms>');
  }
  const journal = redisStreamJournal({ url, stream, consumer, claimIdle: Number(claimIdle) });
  await journal.open();
  let next = 1;
  const writer = async (): Promise<never> => {
    for (;;) {
      const version = next++;
      const [position] = await journal.append([redisCrashRecord(version)]);
      process.stdout.write(`${version}\n`);
      if (isReleasedInRedisCrashTest(version)) journal.release([position!]);
    }
  };
  await Promise.all(Array.from({ length: 16 }, writer));
}

// Run only as a program; the test imports the record helpers above.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
