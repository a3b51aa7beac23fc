/**
 * A process for the write-back crash harness: opens a cache over a SQLite file with a write-back
 * collection (durability 'journal' with a file journal, or 'none'), replays what the journal kept,
 * then writes without end from 32 concurrent writers until it is killed with SIGKILL.
 *
 * It prints one line per event on stdout (a pipe, synchronous on Linux, so a printed line
 * survives the kill):
 *   R                         recovery finished, the load starts
 *   S <bytes> <segment path>  the journal fsynced that segment up to <bytes>
 *   A <key> <version> <id>    set/delete resolved: the write is acknowledged (<id> is '-' for a delete)
 *
 * Usage: write-back-child.ts <dir> <journal|none> <seed>
 */
import { fdatasync, fstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCache } from '../../src/cache.js';
import { fileJournal } from '../../src/journal/file-journal.js';
import { sqliteStore } from '../../src/stores/sqlite-store.js';
import { CRASH_COLLECTION, CRASH_KEYS, crashPolicy, crashValue, type CrashDurability } from './crash-workload.js';
import { seededRandom } from '../helpers/write-back-fixture.js';

const datasync = promisify(fdatasync);

async function main(): Promise<void> {
  const [dir, durability, seed] = process.argv.slice(2) as [string, CrashDurability, string];
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const journal =
    durability === 'journal'
      ? fileJournal(join(dir, 'journal'), {
          segmentBytes: 256 * 1024,
          io: {
            async datasync(fd) {
              await datasync(fd);
              out(`S ${fstatSync(fd).size} ${readlinkSync(`/proc/self/fd/${fd}`)}`);
            },
          },
        })
      : undefined;
  const cache = await createCache({ store: sqliteStore(join(dir, 'app.db')), journal });
  const orders = cache.collection<ReturnType<typeof crashValue>>(CRASH_COLLECTION, crashPolicy(durability));
  await orders.flush(); // prepares the collection and replays what the journal kept
  out('R');
  const random = seededRandom(Number(seed));
  let next = 0;
  const writer = async (): Promise<never> => {
    for (;;) {
      const id = next++;
      const key = `k${Math.floor(random() * CRASH_KEYS)}`;
      if (random() < 0.1) {
        const { version } = await orders.delete(key);
        out(`A ${key} ${version} -`);
      } else {
        const { version } = await orders.set(key, crashValue(id));
        out(`A ${key} ${version} ${id}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, writer));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
