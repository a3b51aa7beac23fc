/**
 * The file journal (contract 5, durability 'journal'): what is appended comes back after a
 * reopen until it is released; released segments leave the disk; a torn tail is cut off and
 * reported, damage is reported and read around; concurrent appends share syncs and each resolves
 * only after its own sync; one process per directory; and a process killed with SIGKILL loses
 * no acknowledged write.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { isCachewiseError, type ErrorCode } from '../src/errors.js';
import { fileJournal, type FileJournalOptions, type JournalIo } from '../src/journal/file-journal.js';
import type { Journal, JournalPosition, JournalRecord, RecoveryReport } from '../src/journal/journal.js';
import { encodeRelease, encodeReleases, scanSegment, tableCrc32 } from '../src/journal/segment-format.js';
import { crashRecord, crashRecordJson, isReleasedInCrashTest } from './helpers/journal-crash-child.js';
import { runUntilAcksThenKill } from './helpers/kill-after-acks.js';

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Runs `body` with a fresh temporary directory, removed afterwards whatever happens. */
async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(join(tmpdir(), 'cachewise-journal-'));
  try {
    await body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Opens a journal on `dir`, runs `body`, and closes it. */
async function withJournal<T>(dir: string, options: FileJournalOptions, body: (journal: Journal, report: RecoveryReport) => Promise<T>): Promise<T> {
  const journal = fileJournal(dir, options);
  const report = await journal.open();
  try {
    return await body(journal, report);
  } finally {
    await journal.close();
  }
}

/** What a fresh open of `dir` recovers (the journal is closed again). */
function recover(dir: string, options: FileJournalOptions = {}): Promise<RecoveryReport> {
  return withJournal(dir, options, async (_journal, report) => report);
}

function set(key: string, version: number, collection = 'events'): JournalRecord {
  return { collection, op: 'set', key, version, json: JSON.stringify({ key, version }) };
}

function del(key: string, version: number, collection = 'events'): JournalRecord {
  return { collection, op: 'delete', key, version };
}

/** Records without their positions, to compare with what was appended. */
function plain(report: RecoveryReport): JournalRecord[] {
  return report.records.map(({ position: _position, ...record }) => record);
}

function segmentFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => name.startsWith('segment-')).sort();
}

function lastSegment(dir: string): string {
  const files = segmentFiles(dir);
  return join(dir, files[files.length - 1]!);
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isCachewiseError(error, code), `expected ${code}, got ${String(error)}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

/** The file operations of the commit path, done for real. */
const realIo: JournalIo = {
  writev: (fd, buffers) => new Promise((resolve, reject) => fs.writev(fd, buffers as Buffer[], (error, n) => (error ? reject(error) : resolve(n)))),
  datasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
};

// ---------------------------------------------------------------------------------------------

describe('file journal: what comes back after a reopen', () => {
  test('appended records come back in append order, the newest per (collection, key)', () =>
    withDir(async (dir) => {
      const first = await recover(dir);
      assert.deepEqual(first.records, []);
      assert.equal(first.segments, 0, 'an empty directory has no segments to read');

      await withJournal(dir, {}, async (journal) => {
        await journal.append([set('a', 1), set('b', 2)]);
        await journal.append([set('a', 3), set('a', 1, 'other')]);
        await Promise.all([journal.append([del('b', 4)]), journal.append([set('c', 5)])]);
        // An older version appended late does not replace the newer one.
        await journal.append([set('c', 4)]);
      });

      const report = await recover(dir);
      assert.deepEqual(plain(report), [set('a', 3), set('a', 1, 'other'), del('b', 4), set('c', 5)]);
      assert.equal(report.tornTail, undefined);
      assert.deepEqual(report.corrupt, []);
      assert.equal(report.segments, 1);
      assert.equal(report.bytes, fs.statSync(lastSegment(dir)).size);
    }));

  test('released records do not come back; releasing a write releases the older writes of its key', () =>
    withDir(async (dir) => {
      await withJournal(dir, {}, async (journal) => {
        const [a1, b2] = await journal.append([set('a', 1), set('b', 2)]);
        const [a3, c4, d5] = await journal.append([set('a', 3), set('c', 4), set('d', 5)]);
        const [e6] = await journal.append([set('e', 6)]);
        journal.release([b2!]); // b is in the database
        journal.release([a3!]); // a@3 flushed: a@1, which it coalesced, goes with it
        journal.release([a1!]); // a late release of an older write changes nothing
        journal.release([c4!, d5!]);
        const [d7] = await journal.append([set('d', 7)]); // d written again after its flush
        assert.ok(e6 !== undefined && d7 !== undefined);
      });
      const report = await recover(dir);
      assert.deepEqual(plain(report), [set('e', 6), set('d', 7)]);

      // The recovered positions release too.
      await withJournal(dir, {}, async (journal, again) => {
        journal.release(again.records.map((record) => record.position));
      });
      assert.deepEqual((await recover(dir)).records, []);
    }));

  test('a release of an older version does not release the newer write of the key', () =>
    withDir(async (dir) => {
      await withJournal(dir, {}, async (journal) => {
        const [old] = await journal.append([set('k', 10)]);
        await journal.append([set('k', 20)]);
        journal.release([old!]);
      });
      assert.deepEqual(plain(await recover(dir)), [set('k', 20)]);
    }));

  test('a fully released closed segment is deleted from disk; the active one and one with a live record stay', () =>
    withDir(async (dir) => {
      await withJournal(dir, { segmentBytes: 400 }, async (journal) => {
        const positions: JournalPosition[] = [];
        for (let version = 1; version <= 40; version++) positions.push(...(await journal.append([set(`k${version}`, version)])));
        const before = segmentFiles(dir);
        assert.ok(before.length >= 5, `rotation at 400 bytes made ${before.length} segments`);
        // Everything but k2 reaches the database.
        journal.release(positions.filter((_, i) => i !== 1));
        await journal.append([set('z', 41)]); // a commit: lets the deletions run
        // Deletion runs in the background: wait until it is done and the count matches the disk.
        await waitFor(() => journal.stats().segmentsDeleted >= before.length - 2 && journal.stats().segments === segmentFiles(dir).length);
        const after = segmentFiles(dir);
        const active = before[before.length - 1]!;
        assert.equal(after[0], before[0], 'the segment holding unreleased k2 stays');
        assert.ok(after.includes(active), 'the segment that was active stays');
        assert.deepEqual(after.filter((name) => name !== before[0] && name < active), [], 'the closed, fully released segments are gone');
        assert.equal(journal.stats().segments, after.length);
      });
      const report = await recover(dir, { segmentBytes: 400 });
      assert.deepEqual(plain(report), [set('k2', 2), set('z', 41)]);
    }));

  test('a release mark outlives the deletion of the segment that held it', () =>
    withDir(async (dir) => {
      // segmentBytes 1: every commit closes its segment.
      await withJournal(dir, { segmentBytes: 1 }, async (journal) => {
        const [a] = await journal.append([set('a', 1), set('b', 2)]); // segment 1; b keeps it
        journal.release([a!]); // the mark goes to segment 2
        const [c] = await journal.append([set('c', 3)]); // segment 2 too, then closed
        journal.release([c!]); // segment 2 is all released: deleted, its mark for a carried over
        await waitFor(() => journal.stats().segmentsDeleted >= 1);
        assert.ok(!segmentFiles(dir).includes('segment-0000000000000002.log'));
      });
      assert.deepEqual(plain(await recover(dir)), [set('b', 2)], 'a stays released, b comes back');
      assert.ok(segmentFiles(dir).includes('segment-0000000000000001.log'), 'b keeps segment 1');
    }));

  test('open deletes a released segment that a crash left behind', () =>
    withDir(async (dir) => {
      const first = join(dir, 'segment-0000000000000001.log');
      let leftBehind = Buffer.alloc(0);
      await withJournal(dir, { segmentBytes: 1 }, async (journal) => {
        const [a] = await journal.append([set('a', 1)]); // segment 1
        await journal.append([set('b', 2)]); // segment 2
        leftBehind = fs.readFileSync(first);
        journal.release([a!]);
        await waitFor(() => !fs.existsSync(first));
      });
      fs.writeFileSync(first, leftBehind); // as if the process died before the unlink
      const report = await recover(dir, { segmentBytes: 1 });
      assert.deepEqual(plain(report), [set('b', 2)]);
      assert.equal(report.segments, segmentFiles(dir).length + 1, 'segment 1 was read');
      assert.ok(!fs.existsSync(first), 'and deleted');
    }));

  test('random appends, releases and reopens: a reopen returns exactly the newest unreleased write per key', () =>
    withDir(async (dir) => {
      // JOURNAL_SEED=n replays another sequence.
      const random = seededRandom(Number(process.env.JOURNAL_SEED ?? 20260101));
      const options = { segmentBytes: 600 };
      /** The model: per key, the newest version appended and the version released up to. */
      const newest = new Map<string, number>();
      const released = new Map<string, number>();
      let positions: { key: string; version: number; position: JournalPosition }[] = [];
      let version = 0;
      for (let run = 0; run < 15; run++) {
        await withJournal(dir, options, async (journal, report) => {
          const expected = [...newest].filter(([key, v]) => v > (released.get(key) ?? 0)).map(([key, v]) => `${key}@${v}`).sort();
          assert.deepEqual(report.records.map((r) => `${r.key}@${r.version}`).sort(), expected, `run ${run}: recovered set`);
          assert.deepEqual(report.corrupt, []);
          assert.equal(report.tornTail, undefined);
          positions = report.records.map((r) => ({ key: r.key, version: r.version, position: r.position }));
          for (let op = 0; op < 100; op++) {
            if (random() < 0.5 || positions.length === 0) {
              const batch = Array.from({ length: 1 + Math.floor(random() * 3) }, () => {
                // A few hot keys, many cold ones, and one whose writes the database keeps refusing.
                const dice = random();
                const key = dice < 0.05 ? 'stuck' : `k${Math.floor(dice < 0.7 ? random() * 6 : 6 + random() * 30)}`;
                // Now and then an older version arrives late (not older than a released one: see
                // Journal.append); it never replaces the newer one.
                const late = (newest.get(key) ?? 0) - 1;
                return set(key, random() < 0.1 && late > (released.get(key) ?? 0) ? late : ++version);
              });
              const appended = await journal.append(batch);
              batch.forEach((record, i) => {
                newest.set(record.key, Math.max(newest.get(record.key) ?? 0, record.version));
                positions.push({ key: record.key, version: record.version, position: appended[i]! });
              });
            } else {
              // Mostly like a flusher (oldest first, sometimes catching up on everything), else any.
              const pick = random();
              const flushable = positions.filter((p) => p.key !== 'stuck');
              const index = pick < 0.7 ? 0 : Math.floor(random() * flushable.length);
              const done = pick < 0.15 ? flushable : flushable.slice(index, index + 1);
              positions = positions.filter((p) => !done.includes(p));
              journal.release(done.map((d) => d.position));
              for (const d of done) released.set(d.key, Math.max(released.get(d.key) ?? 0, d.version));
            }
          }
        });
        // On disk: every segment but the newest holds a record not released, and no other stays.
        const files = segmentFiles(dir);
        for (const name of files.slice(0, -1)) {
          let live = false;
          scanSegment(fs.readFileSync(join(dir, name)), (entry) => {
            if (entry.kind === 'record' && entry.record.version > (released.get(entry.record.key) ?? 0)) live = true;
          });
          assert.ok(live, `run ${run}: ${name} holds only released records and should have been deleted`);
        }
      }
      // Everything released: only the active segment stays.
      await withJournal(dir, options, async (journal, report) => {
        journal.release(report.records.map((r) => r.position));
        await journal.append([set('last', ++version)]);
        journal.release(await journal.append([set('last', ++version)]));
      });
      const report = await recover(dir, options);
      assert.deepEqual(report.records, []);
      assert.equal(segmentFiles(dir).length, 1, `left on disk: ${segmentFiles(dir).join(', ')}`);
    }));
});

describe('file journal: torn tails and damage', () => {
  async function threeRecords(dir: string): Promise<void> {
    await withJournal(dir, {}, async (journal) => {
      await journal.append([set('a', 1)]);
      await journal.append([set('b', 2)]);
      await journal.append([set('c', 3)]);
    });
  }

  for (const [name, damage] of [
    ['a record cut in the middle', (file: string) => fs.truncateSync(file, fs.statSync(file).size - 7)],
    ['a frame header cut short', (file: string) => fs.appendFileSync(file, Buffer.from([0x10, 0, 0]))],
    ['garbage after the last record', (file: string) => fs.appendFileSync(file, Buffer.from('\u0000garbage after the end of the journal'))],
    ['zeroes after the last record', (file: string) => fs.appendFileSync(file, Buffer.alloc(4096))],
  ] as const) {
    test(`a torn tail (${name}) is reported and cut off; the records before it come back; appends continue cleanly`, () =>
      withDir(async (dir) => {
        await threeRecords(dir);
        const file = lastSegment(dir);
        const goodSize = name === 'a record cut in the middle' ? sizeOfRecords(file, 2) : fs.statSync(file).size;
        damage(file);
        const damagedSize = fs.statSync(file).size;

        await withJournal(dir, {}, async (journal, report) => {
          const expected = name === 'a record cut in the middle' ? [set('a', 1), set('b', 2)] : [set('a', 1), set('b', 2), set('c', 3)];
          assert.deepEqual(plain(report), expected);
          assert.ok(report.tornTail, 'the torn tail is reported');
          assert.equal(report.tornTail.segment, file);
          assert.equal(report.tornTail.offset, goodSize);
          assert.equal(report.tornTail.bytes, damagedSize - goodSize);
          assert.match(report.tornTail.reason, /past end|header|checksum|zero-length|decode/);
          assert.deepEqual(report.corrupt, []);
          assert.equal(fs.statSync(file).size, goodSize, 'the tail is cut off');
          await journal.append([set('d', 4)]);
        });

        const again = await recover(dir);
        assert.equal(again.tornTail, undefined, 'the second recovery is clean');
        assert.deepEqual(again.corrupt, []);
        assert.deepEqual(plain(again).map((r) => r.key), name === 'a record cut in the middle' ? ['a', 'b', 'd'] : ['a', 'b', 'c', 'd']);
      }));
  }

  test('a flipped byte inside a record is reported as corrupt; the records around it come back', () =>
    withDir(async (dir) => {
      await threeRecords(dir);
      const file = lastSegment(dir);
      const bytes = fs.readFileSync(file);
      const secondStart = sizeOfRecords(file, 1);
      flipByte(bytes, secondStart + 12); // inside b's payload
      fs.writeFileSync(file, bytes);

      const report = await recover(dir);
      assert.deepEqual(plain(report), [set('a', 1), set('c', 3)]);
      assert.equal(report.tornTail, undefined, 'readable records follow: this is damage, not a torn write');
      assert.equal(report.corrupt.length, 1);
      assert.deepEqual(report.corrupt[0], { segment: file, offset: secondStart, bytes: sizeOfRecords(file, 2) - secondStart, reason: 'checksum mismatch' });
      assert.equal(fs.statSync(file).size, bytes.length, 'a damaged segment is not cut: the records after the damage are kept');
    }));

  test('damage at the end of an older segment is reported as corrupt, not as a torn tail', () =>
    withDir(async (dir) => {
      await withJournal(dir, { segmentBytes: 1 }, async (journal) => {
        await journal.append([set('a', 1), set('b', 2)]);
        await journal.append([set('c', 3)]);
      });
      const older = join(dir, segmentFiles(dir)[0]!);
      const bytes = fs.readFileSync(older);
      flipByte(bytes, bytes.length - 3);
      fs.writeFileSync(older, bytes);

      const report = await recover(dir, { segmentBytes: 1 });
      assert.deepEqual(plain(report), [set('a', 1), set('c', 3)]);
      assert.equal(report.tornTail, undefined);
      assert.equal(report.corrupt.length, 1);
      assert.equal(report.corrupt[0]!.segment, older);
      assert.equal(report.corrupt[0]!.reason, 'checksum mismatch');
      assert.equal(fs.statSync(older).size, bytes.length, 'an older segment is never cut');
    }));

  test('the portable CRC-32 agrees with zlib', () => {
    const samples = [Buffer.alloc(0), Buffer.from('123456789'), Buffer.from(JSON.stringify(set('k', 1))), Buffer.from([0, 255, 128, 7])];
    for (const sample of samples) assert.equal(tableCrc32(sample), zlib.crc32(sample));
    assert.equal(tableCrc32(Buffer.from('123456789')), 0xcbf43926, 'the CRC-32 check value');
  });

  test('a frame of many release marks and a single mark read back as the same releases', () => {
    const marks = [
      { collection: 'events', key: 'a', version: 3 },
      { collection: 'orders', key: 'b', version: 9 },
    ];
    const seen: unknown[] = [];
    const scan = scanSegment(Buffer.concat([encodeReleases(marks), encodeRelease('events', 'c', 4)]), (entry, offset) => seen.push({ ...entry, offset }));
    assert.deepEqual(scan.damaged, []);
    assert.equal(scan.tail, undefined);
    const batchBytes = encodeReleases(marks).length;
    assert.deepEqual(seen, [
      { kind: 'release', collection: 'events', key: 'a', version: 3, offset: 0 },
      { kind: 'release', collection: 'orders', key: 'b', version: 9, offset: 0 },
      { kind: 'release', collection: 'events', key: 'c', version: 4, offset: batchBytes },
    ]);
  });
});

describe('file journal: group commit and durability', () => {
  test('1,000 concurrent appends share a few syncs, and each resolves only after a sync that covers it', () =>
    withDir(async (dir) => {
      let writes = 0;
      let syncs = 0;
      let syncedThroughWrite = 0;
      const writtenIn = new Map<string, number>();
      const io: JournalIo = {
        async writev(fd, buffers) {
          const written = await realIo.writev(fd, buffers);
          writes++;
          for (const match of Buffer.concat(buffers).toString('utf8').matchAll(/"(key-\d+)"/g)) writtenIn.set(match[1]!, writes);
          return written;
        },
        async datasync(fd) {
          const covers = writes; // every write that finished before the sync began
          await realIo.datasync(fd);
          syncs++;
          syncedThroughWrite = Math.max(syncedThroughWrite, covers);
        },
      };
      await withJournal(dir, { io }, async (journal) => {
        const acknowledged: string[] = [];
        await Promise.all(
          Array.from({ length: 1000 }, (_, i) =>
            journal.append([set(`key-${i}`, i + 1)]).then(() => {
              const write = writtenIn.get(`key-${i}`);
              assert.ok(write !== undefined, `key-${i} was written before its append resolved`);
              assert.ok(syncedThroughWrite >= write, `key-${i} (write ${write}) resolved after a sync covering write ${syncedThroughWrite}`);
              acknowledged.push(`key-${i}`);
            }),
          ),
        );
        assert.equal(acknowledged.length, 1000);
        const stats = journal.stats();
        assert.equal(stats.syncs, syncs);
        assert.ok(syncs <= 10, `1,000 concurrent appends took ${syncs} syncs`);
        assert.equal(stats.appends, 1000);
        assert.equal(stats.records, 1000);
        assert.equal(stats.durableRecords, 1000);
        assert.equal(stats.bytes, fs.statSync(lastSegment(dir)).size);

        // Appends arriving while a sync runs form the next group, not one sync each.
        const waves = Array.from({ length: 20 }, (_, wave) =>
          new Promise((resolve) => setTimeout(resolve, wave)).then(() =>
            Promise.all(Array.from({ length: 50 }, (_, i) => journal.append([set(`key-${1000 + wave * 50 + i}`, 2000 + wave * 50 + i)]))),
          ),
        );
        await Promise.all(waves);
        assert.ok(journal.stats().syncs - syncs <= 40, `20 waves of 50 appends took ${journal.stats().syncs - syncs} syncs`);
      });
      assert.equal((await recover(dir)).records.length, 2000);
    }));

  test('a failed sync rejects its appends and every later one; a reopen keeps the acknowledged writes only', () =>
    withDir(async (dir) => {
      let failNext = false;
      const io: JournalIo = {
        writev: realIo.writev,
        async datasync(fd) {
          if (failNext) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          await realIo.datasync(fd);
        },
      };
      await withJournal(dir, { io }, async (journal) => {
        await journal.append([set('acknowledged', 1)]);
        failNext = true;
        await rejectsWith(journal.append([set('refused', 2)]), 'E_STORE_FAILED', /could not write or sync.*EIO/);
        failNext = false;
        await rejectsWith(journal.append([set('later', 3)]), 'E_STORE_FAILED', /refuses appends/);
      });
      const report = await recover(dir);
      assert.deepEqual(plain(report), [set('acknowledged', 1)], 'the refused write was cut off the file');
    }));

  test('close() waits for pending appends; appends before open() and after close() are refused', () =>
    withDir(async (dir) => {
      const journal = fileJournal(dir);
      await rejectsWith(journal.append([set('early', 1)]), 'E_CLOSED', /not open/);
      await journal.open();
      const pending = Promise.all(Array.from({ length: 100 }, (_, i) => journal.append([set(`k${i}`, i + 1)])));
      await journal.close();
      assert.equal((await pending).length, 100);
      await rejectsWith(journal.append([set('late', 1)]), 'E_CLOSED', /closed/);
      assert.doesNotThrow(() => journal.release([]), 'release after close is ignored');
      assert.equal((await recover(dir)).records.length, 100);
    }));

  test('bad records and options get a typed error and append nothing', () =>
    withDir(async (dir) => {
      assert.throws(() => fileJournal(dir, { segmentBytes: 0 }), (e: unknown) => isCachewiseError(e, 'E_INVALID_OPTION') && /segmentBytes/.test(e.message));
      assert.throws(() => fileJournal(dir, { groupCommitMs: -1 }), (e: unknown) => isCachewiseError(e, 'E_INVALID_OPTION'));
      await withJournal(dir, { maxRecordBytes: 200 }, async (journal) => {
        const bad = [
          { collection: '', op: 'set', key: 'k', version: 1, json: '1' },
          { collection: 'c', op: 'set', key: '', version: 1, json: '1' },
          { collection: 'c', op: 'put', key: 'k', version: 1, json: '1' },
          { collection: 'c', op: 'set', key: 'k', version: 1.5, json: '1' },
          { collection: 'c', op: 'set', key: 'k', version: 1 },
        ] as unknown as JournalRecord[];
        for (const record of bad) await rejectsWith(journal.append([set('fine', 1), record]), 'E_INVALID_VALUE');
        await rejectsWith(journal.append([{ collection: 'c', op: 'set', key: 'k', version: 1, json: JSON.stringify('x'.repeat(300)) }]), 'E_VALUE_TOO_LARGE', /maxRecordBytes/);
        assert.throws(() => journal.release([{} as JournalPosition]), (e: unknown) => isCachewiseError(e, 'E_INVALID_OPTION'));
        assert.equal(journal.stats().records, 0);
      });
      assert.deepEqual((await recover(dir)).records, []);
    }));
});

describe('file journal: one process per directory', () => {
  test('a second journal on an open directory fails with an error naming the directory and the holder; after close it opens', () =>
    withDir(async (dir) => {
      const first = fileJournal(dir);
      await first.open();
      const second = fileJournal(dir);
      await rejectsWith(second.open(), 'E_INVALID_OPTION', new RegExp(`${escapeRegExp(dir)}.*in use by this process \\(pid ${process.pid}\\)`));
      await first.close();
      assert.ok(!fs.existsSync(join(dir, 'LOCK')), 'close() removes the lock');
      await withJournal(dir, {}, async () => {
        assert.equal(fs.readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid));
      });
    }));

  test('a lock held by another live process is refused with its pid; a lock left by a dead process is taken over', () =>
    withDir(async (dir) => {
      const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
      try {
        fs.writeFileSync(join(dir, 'LOCK'), `${sleeper.pid}\n`);
        await rejectsWith(fileJournal(dir).open(), 'E_INVALID_OPTION', new RegExp(`in use by process ${sleeper.pid}.*delete .*LOCK`));
      } finally {
        sleeper.kill('SIGKILL');
      }
      const dead = spawnSync(process.execPath, ['-e', '']).pid;
      fs.writeFileSync(join(dir, 'LOCK'), `${dead}\n`);
      await withJournal(dir, {}, async (journal) => {
        await journal.append([set('k', 1)]);
        assert.equal(fs.readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid));
      });
      // A lock with this process's own pid that this process did not take: a restarted container.
      fs.writeFileSync(join(dir, 'LOCK'), `${process.pid}\n`);
      assert.deepEqual(plain(await recover(dir)), [set('k', 1)]);
      assert.ok(!fs.readdirSync(dir).some((name) => name.startsWith('LOCK.')), 'no temporary lock files are left');
    }));
});

describe('file journal: crash', () => {
  const child = fileURLToPath(new URL('./helpers/journal-crash-child.ts', import.meta.url));

  /** Runs the child until it has acknowledged about `acks` writes, kills it, returns the versions it acknowledged. */
  function runAndKill(dir: string, first: number, mode: string, acks: number): Promise<number[]> {
    return runUntilAcksThenKill(child, [dir, String(first), mode, '4096'], acks);
  }

  test('a process killed with SIGKILL loses no acknowledged write (24 rounds on one directory)', { timeout: 60_000 }, () =>
    withDir(async (dir) => {
      /** Per key: the newest acknowledged version, and whether its release was asked for. */
      const newest = new Map<string, { version: number; released: boolean }>();
      let totalAcks = 0;
      let tornTails = 0;
      for (let round = 0; round < 24; round++) {
        const mode = round % 2 === 0 ? 'keep' : 'release';
        const acked = await runAndKill(dir, (round + 1) * 1_000_000, mode, 200 + Math.floor(Math.random() * 200));
        assert.ok(acked.length >= 200, `round ${round}: ${acked.length} acknowledgements`);
        totalAcks += acked.length;
        for (const version of acked) {
          const key = crashRecord(version).key;
          if ((newest.get(key)?.version ?? -1) < version) newest.set(key, { version, released: isReleasedInCrashTest(version, mode) });
        }

        const report = await recover(dir, { segmentBytes: 4096 });
        assert.deepEqual(report.corrupt, [], `round ${round}: a crash leaves no damage in the middle`);
        if (report.tornTail) tornTails++;
        const recovered = new Map(report.records.map((record) => [record.key, record]));
        for (const [key, { version, released }] of newest) {
          const record = recovered.get(key);
          if (released) continue; // in the database already; it may or may not come back
          assert.ok(record !== undefined, `round ${round}: acknowledged ${key}@${version} was lost`);
          assert.ok(record.version >= version, `round ${round}: ${key} came back at ${record.version}, older than acknowledged ${version}`);
        }
        for (const record of report.records) {
          assert.deepEqual({ ...record, position: undefined }, { ...crashRecord(record.version), position: undefined }, 'a recovered record is intact');
          if (record.op === 'set') assert.equal(record.json, crashRecordJson(record.version));
        }
      }
      const files = segmentFiles(dir);
      const created = Number(files[files.length - 1]!.slice('segment-'.length, -'.log'.length));
      console.log(`crash test: 24 rounds, ${totalAcks} acknowledged writes, none lost; ${tornTails} torn tails cut; ${created} segments created, ${files.length} left on disk`);
    }));
});

describe('file journal: throughput', () => {
  test('appends/s with 256 concurrent appenders of ~200-byte records (printed, not asserted)', () =>
    withDir(async (dir) => {
      await withJournal(dir, {}, async (journal) => {
        const json = JSON.stringify({ payload: 'x'.repeat(140) });
        let version = 0;
        const started = performance.now();
        const until = started + 2000;
        const appender = async (id: number): Promise<void> => {
          while (performance.now() < until) await journal.append([{ collection: 'events', op: 'set', key: `user-${id}-${version}`, version: ++version, json }]);
        };
        await Promise.all(Array.from({ length: 256 }, (_, id) => appender(id)));
        const seconds = (performance.now() - started) / 1000;
        const stats = journal.stats();
        console.log(
          `file journal: ${Math.round(stats.records / seconds)} durable appends/s, ${(stats.syncs / stats.records).toFixed(4)} fdatasyncs per append ` +
            `(${Math.round(stats.records / stats.syncs)} appends per sync), ${Math.round(stats.bytes / stats.records)} bytes per record, 256 appenders, ${seconds.toFixed(1)} s`,
        );
        assert.ok(stats.records > 0);
      });
    }));
});

// ---------------------------------------------------------------------------------------------

/** Bytes taken by the first `count` frames of a segment file. */
function sizeOfRecords(file: string, count: number): number {
  const bytes = fs.readFileSync(file);
  let offset = 0;
  for (let i = 0; i < count; i++) offset += 8 + bytes.readUInt32LE(offset);
  return offset;
}

/** A small deterministic generator (mulberry32), so a failing sequence can be replayed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function flipByte(bytes: Buffer, offset: number): void {
  bytes.writeUInt8(bytes.readUInt8(offset) ^ 0xff, offset);
}

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
