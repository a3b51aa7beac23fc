/**
 * A process for the journal crash test: opens a file journal and appends without end, with
 * concurrent writers, printing the version of every record whose append resolved (one line
 * each; stdout to a pipe is synchronous, so a printed line is an acknowledged write). The test
 * kills it with SIGKILL mid-stream and checks that the journal kept every printed write.
 *
 * Usage: journal-crash-child.ts <dir> <first version> <keep|release> <segmentBytes>
 *
 * Record `version` has key `k<version % 300>`, op delete when version % 11 === 0, and the JSON
 * from `crashRecordJson`. In `release` mode every acknowledged record with version % 7 !== 0 is
 * released right away (as a flusher would after writing it to the database).
 */
import { pathToFileURL } from 'node:url';
import { fileJournal } from '../../src/journal/file-journal.js';
import type { JournalRecord } from '../../src/journal/journal.js';

export const CRASH_KEYS = 300;

export function crashRecord(version: number): JournalRecord {
  const key = `k${version % CRASH_KEYS}`;
  return version % 11 === 0
    ? { collection: 'events', op: 'delete', key, version }
    : { collection: 'events', op: 'set', key, version, json: crashRecordJson(version) };
}

export function crashRecordJson(version: number): string {
  return JSON.stringify({ version, pad: 'x'.repeat(100 + (version % 50)) });
}

export function isReleasedInCrashTest(version: number, mode: string): boolean {
  return mode === 'release' && version % 7 !== 0;
}

async function main(): Promise<void> {
  const [dir, first, mode, segmentBytes] = process.argv.slice(2);
  if (dir === undefined || first === undefined || mode === undefined || segmentBytes === undefined) {
    throw new Error('usage: journal-crash-child.ts <dir> <first version> <keep|release> <segmentBytes>');
  }
  const journal = fileJournal(dir, { segmentBytes: Number(segmentBytes) });
  await journal.open();
  let next = Number(first);
  const writer = async (): Promise<never> => {
    for (;;) {
      const version = next++;
      const [position] = await journal.append([crashRecord(version)]);
      process.stdout.write(`${version}\n`);
      if (isReleasedInCrashTest(version, mode)) journal.release([position!]);
    }
  };
  await Promise.all(Array.from({ length: 32 }, writer));
}

// Run only as a program; the test imports the record helpers above.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
