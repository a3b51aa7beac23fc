/**
 * One process per journal directory: a `LOCK` file holding the owner's pid.
 *
 * The lock file is written in full under a temporary name and then hard-linked to `LOCK`; the
 * link fails when `LOCK` exists, so taking the lock is atomic and a reader never sees a lock
 * without its pid. A lock whose pid is not alive (a process killed before it could clean up)
 * is stale and is taken over. A lock holding this process's own pid that this process did not
 * take is stale too: a restarted container often gets the same pid again.
 *
 * Pids mean something only on one host and in one pid namespace: a journal directory must not
 * be shared between hosts or containers (each process needs its own journal anyway).
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CachewiseError } from '../errors.js';

export const LOCK_FILE = 'LOCK';

/** Directories (real paths) this process holds. */
const heldHere = new Set<string>();

export interface DirectoryLock {
  /** Gives the directory up (deletes the lock file if it is still ours). */
  release(): Promise<void>;
}

/** Takes `dir` (which must exist) for this process, or throws E_INVALID_OPTION naming the holder. */
export async function lockDirectory(dir: string): Promise<DirectoryLock> {
  const real = await realpath(dir);
  const lockPath = join(dir, LOCK_FILE);
  if (heldHere.has(real)) throw lockedError(dir, lockPath, process.pid);
  const mine = `${process.pid}\n`;
  const temp = join(dir, `${LOCK_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let taken = false;
  // Reserved before the first await, so two journals of this process cannot both pass the check.
  heldHere.add(real);
  try {
    await writeFile(temp, mine);
    // A few rounds: a stale lock is moved away, then taken; a racing opener may win a round.
    for (let round = 0; round < 5; round++) {
      try {
        await link(temp, lockPath);
        taken = true;
        return {
          async release() {
            // Still held while the file goes, so no journal of this process takes it meanwhile.
            const content = await readFile(lockPath, 'utf8').catch(() => undefined);
            if (content === mine) await rm(lockPath, { force: true });
            heldHere.delete(real);
          },
        };
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      const content = await readFile(lockPath, 'utf8').catch((error: unknown) => {
        if (errorCode(error) === 'ENOENT') return undefined;
        throw error;
      });
      if (content === undefined) continue; // released meanwhile
      const pid = parsePid(content);
      // Our own pid in a lock we did not take: left by an earlier process that had the same pid.
      const stale = pid === undefined || pid === process.pid || !isAlive(pid);
      if (!stale) throw lockedError(dir, lockPath, pid);
      await moveAwayIfUnchanged(lockPath, content);
    }
    throw lockedError(dir, lockPath, parsePid(await readFile(lockPath, 'utf8').catch(() => '')));
  } finally {
    if (!taken) heldHere.delete(real);
    await rm(temp, { force: true });
  }
}

/**
 * Removes the lock file if it still holds `stale`. Renaming first makes the removal atomic: if
 * another opener replaced the stale lock meanwhile, its lock is put back.
 */
async function moveAwayIfUnchanged(lockPath: string, stale: string): Promise<void> {
  const aside = `${lockPath}.stale.${process.pid}.${randomBytes(6).toString('hex')}`;
  try {
    await rename(lockPath, aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  const moved = await readFile(aside, 'utf8').catch(() => stale);
  if (moved !== stale) await link(aside, lockPath).catch(() => undefined);
  await rm(aside, { force: true });
}

function parsePid(content: string): number | undefined {
  const pid = Number(content.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errorCode(error) !== 'ESRCH';
  }
}

function lockedError(dir: string, lockPath: string, pid: number | undefined): CachewiseError {
  const holder = pid === undefined ? 'another process' : pid === process.pid ? `this process (pid ${pid})` : `process ${pid}`;
  return new CachewiseError(
    'E_INVALID_OPTION',
    `journal directory "${dir}" is in use by ${holder}; a journal directory serves one journal at a time`,
    pid === process.pid
      ? 'close the journal already open on this directory, or give each journal its own directory'
      : `give each process its own journal directory, or stop ${holder} first; if no process uses the directory, delete ${lockPath}`,
    { details: { dir, pid, lockFile: lockPath } },
  );
}

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}
