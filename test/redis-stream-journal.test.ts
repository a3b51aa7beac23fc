/**
 * The Redis Stream journal (contract 5, durability 'journal', several instances): what is
 * appended comes back to a reopened consumer until it is released; released entries leave the
 * stream; the unreleased writes of a dead instance are claimed by a live one, and never those of
 * a live one; concurrent appends share a round trip; durability waits that fall short reject
 * with a typed error, and WAITAOF on a server without it is refused at open with the reason; a
 * process killed with SIGKILL loses no acknowledged write.
 *
 * Real Redis (REDIS_URL, the shared server) and, for the durability waits, servers the test
 * starts itself. Each test uses its own stream and deletes it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import { isCachewiseError, type ErrorCode } from '../src/errors.js';
import type { JournalRecord, RecoveryReport } from '../src/journal/journal.js';
import { redisStreamJournal, type RedisStreamJournalOptions } from '../src/journal/redis-stream-journal.js';
import { isSharedJournal } from '../src/journal/shared-journal.js';
import { runUntilAcksThenKill } from './helpers/kill-after-acks.js';
import { isReleasedInRedisCrashTest, redisCrashRecord } from './helpers/redis-journal-crash-child.js';
import { startRedisCluster, startRedisServer, skipUnlessRedisServer, type RedisServer } from './helpers/redis-servers.js';
import { REDIS_URL, skipUnless } from './helpers/servers.js';

const skip = await skipUnless('redis');

// ---------------------------------------------------------------------------------------------
// Fixtures

let admin: Redis;
/** Streams made by the tests, deleted at the end with their liveness keys. */
const streams: string[] = [];

function newStream(): string {
  const stream = `cw-test:journal:${randomBytes(6).toString('hex')}`;
  streams.push(stream);
  return stream;
}

type Options = Omit<RedisStreamJournalOptions, 'client' | 'url' | 'stream'>;

/** A journal on `stream` with a connection of its own (quit on close). */
function journalOn(stream: string, options: Options = {}, url = REDIS_URL) {
  return redisStreamJournal({ url, stream, claimIdle: 200, ...options });
}

/** Opens a journal, runs `body`, and closes it. */
async function withJournal<T>(stream: string, options: Options, body: (journal: ReturnType<typeof journalOn>, report: RecoveryReport) => Promise<T>): Promise<T> {
  const journal = journalOn(stream, options);
  const report = await journal.open();
  try {
    return await body(journal, report);
  } finally {
    await journal.close();
  }
}

/** What consumer `consumer` recovers on a fresh open (the journal is closed again). */
function recover(stream: string, consumer: string): Promise<RecoveryReport> {
  return withJournal(stream, { consumer }, async (_journal, report) => report);
}

function set(key: string, version: number, collection = 'events'): JournalRecord {
  return { collection, op: 'set', key, version, json: JSON.stringify({ key, version }) };
}

function del(key: string, version: number, collection = 'events'): JournalRecord {
  return { collection, op: 'delete', key, version };
}

/** Records without their positions, to compare with what was appended. */
function plain(records: RecoveryReport['records']): JournalRecord[] {
  return records.map(({ position: _position, ...record }) => record);
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isCachewiseError(error, code), `expected ${code}, got ${String(error)}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

/** Polls `condition` (no timing is asserted: the deadline only keeps a broken run from hanging). */
async function waitFor<T>(condition: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ---------------------------------------------------------------------------------------------

describe('redis stream journal', { skip }, () => {
  before(() => {
    admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  });

  after(async () => {
    for (const stream of streams) {
      const alive = await admin.keys(`{${stream}}:alive:*`);
      await admin.del(stream, ...alive);
    }
    await admin.quit();
  });

  describe('what comes back after a reopen', () => {
    test('appended records come back to the same consumer, the newest per (collection, key), in append order', async () => {
      const stream = newStream();
      const first = await recover(stream, 'a');
      assert.deepEqual(first.records, []);
      await withJournal(stream, { consumer: 'a' }, async (journal) => {
        assert.ok(isSharedJournal(journal));
        await journal.append([set('a', 1), set('b', 2)]);
        await journal.append([set('a', 3), set('a', 1, 'other')]);
        await Promise.all([journal.append([del('b', 4)]), journal.append([set('c', 5)])]);
        await journal.append([set('c', 4)]); // an older version appended late does not replace the newer
      });
      const report = await recover(stream, 'a');
      assert.deepEqual(plain(report.records), [set('a', 3), set('a', 1, 'other'), del('b', 4), set('c', 5)]);
      assert.deepEqual(report.corrupt, []);
      assert.equal(report.tornTail, undefined);
    });

    test('released records do not come back; releasing a write releases the older writes of its key, not the newer', async () => {
      const stream = newStream();
      await withJournal(stream, { consumer: 'a' }, async (journal) => {
        const [a1, b2] = await journal.append([set('a', 1), set('b', 2)]);
        const [a3, c4, d5] = await journal.append([set('a', 3), set('c', 4), set('d', 5)]);
        const [k10] = await journal.append([set('k', 10)]);
        await journal.append([set('k', 20), set('e', 6)]);
        journal.release([b2!]);
        journal.release([a3!]); // a@1, which it coalesced, goes with it
        journal.release([a1!]); // a late release of an older write changes nothing
        journal.release([c4!, d5!]);
        journal.release([k10!]); // k@20 stays
        await journal.append([set('d', 7)]); // d written again after its flush
      });
      const report = await recover(stream, 'a');
      assert.deepEqual(plain(report.records), [set('k', 20), set('e', 6), set('d', 7)]);

      // The recovered positions release too; then nothing is left, in the journal or the stream.
      await withJournal(stream, { consumer: 'a' }, async (journal, again) => {
        journal.release(again.records.map((record) => record.position));
      });
      assert.deepEqual((await recover(stream, 'a')).records, []);
      assert.equal(await admin.xlen(stream), 0);
    });

    test('acknowledged entries are deleted from the stream; unreleased ones stay', async () => {
      const stream = newStream();
      await withJournal(stream, { consumer: 'a' }, async (journal) => {
        const positions = await journal.append(Array.from({ length: 300 }, (_, i) => set(`k${i}`, i + 1)));
        assert.equal(await admin.xlen(stream), 300);
        journal.release(positions.filter((_, i) => i !== 150));
        await waitFor(async () => (journal.stats().acknowledged === 299 ? true : undefined), 'acknowledgements sent');
        assert.equal(await admin.xlen(stream), 1, 'only the unreleased entry is left');
        assert.equal(journal.stats().segmentsDeleted, 299);
        assert.equal(journal.stats().segments, 1, 'one entry held');
        const pending = (await admin.xpending(stream, 'cachewise')) as [number, ...unknown[]];
        assert.equal(pending[0], 1, 'and one entry pending in the group');
      });
      assert.deepEqual(plain((await recover(stream, 'a')).records), [set('k150', 151)]);
    });

    test('concurrent appends share one round trip, and each gets its own positions', async () => {
      const stream = newStream();
      await withJournal(stream, { consumer: 'a', maxBatch: 50 }, async (journal) => {
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => journal.append([set(`k${i}`, i + 1)])));
        assert.equal(journal.stats().syncs, 1, 'appends of one turn form one group');
        assert.equal(journal.stats().durableRecords, 200);
        journal.release(results.filter((_, i) => i % 2 === 0).flat());
      });
      const report = await recover(stream, 'a');
      assert.deepEqual(
        plain(report.records),
        Array.from({ length: 100 }, (_, i) => set(`k${2 * i + 1}`, 2 * i + 2)),
      );
    });

    test('bad records are refused with E_INVALID_VALUE and nothing is appended; appends after close get E_CLOSED', async () => {
      const stream = newStream();
      const journal = journalOn(stream, { consumer: 'a', maxRecordBytes: 100 });
      await rejectsWith(journal.append([set('a', 1)]), 'E_CLOSED', /not open yet/);
      await journal.open();
      await rejectsWith(journal.append([set('a', 1), { collection: 'events', op: 'set', key: 'b', version: 2 }]), 'E_INVALID_VALUE', /json/);
      await rejectsWith(journal.append([set('a', -1)]), 'E_INVALID_VALUE', /version/);
      await rejectsWith(journal.append([set('a', 1, 'x'.repeat(200))]), 'E_VALUE_TOO_LARGE', /maxRecordBytes/);
      assert.equal(await admin.xlen(stream), 0);
      const [position] = await journal.append([set('a', 1)]);
      await journal.close();
      await rejectsWith(journal.append([set('a', 2)]), 'E_CLOSED', /closed/);
      journal.release([position!]); // ignored after close
      assert.deepEqual(plain((await recover(stream, 'a')).records), [set('a', 1)]);
    });

    test('bad options are refused with E_INVALID_OPTION', () => {
      assert.throws(() => redisStreamJournal({ stream: 'x' } as RedisStreamJournalOptions), (error: unknown) => isCachewiseError(error, 'E_INVALID_OPTION'));
      assert.throws(() => redisStreamJournal({ url: REDIS_URL, claimIdle: 5 }), /claimIdle/);
      assert.throws(() => redisStreamJournal({ url: REDIS_URL, stream: 'a{b' }), /hash tag/);
      assert.throws(() => redisStreamJournal({ url: REDIS_URL, waitAof: { local: 0, timeout: 10 } }), /waitAof/);
      assert.throws(() => redisStreamJournal({ url: REDIS_URL, wait: { replicas: 0, timeout: 10 } }), /wait/);
      assert.throws(() => redisStreamJournal({ url: REDIS_URL, bogus: 1 } as RedisStreamJournalOptions), /no option "bogus"/);
      const prefixed = new Redis(REDIS_URL, { keyPrefix: 'app:', lazyConnect: true });
      assert.throws(() => redisStreamJournal({ client: prefixed }), /keyPrefix "app:".*put the prefix in the stream option/);
      prefixed.disconnect();
    });
  });

  describe('several instances', () => {
    test('a consumer name held by a live instance is refused; the names of closed instances are free', async () => {
      const stream = newStream();
      await withJournal(stream, { consumer: 'a', claimIdle: 2000 }, async () => {
        // Refused once the holder's key is seen refreshed, or outlasts the wait.
        await rejectsWith(journalOn(stream, { consumer: 'a', claimIdle: 200 }).open(), 'E_INVALID_OPTION', /consumer "a".*held by another live instance/);
        await rejectsWith(journalOn(stream, { consumer: 'a', claimIdle: 5000 }).open(), 'E_INVALID_OPTION', /consumer "a".*held by another live instance/);
      });
      await withJournal(stream, { consumer: 'a' }, async (journal) => {
        await journal.append([set('k', 1)]);
      });
    });

    test("an instance that closed without releasing: the next instance to open takes its writes, and never a live instance's", async () => {
      const stream = newStream();
      // Live for the whole test: its liveness key lasts 60 s and is refreshed.
      const live = journalOn(stream, { consumer: 'live', claimIdle: 60_000 });
      await live.open();
      const [liveK] = await live.append([set('live-k', 1)]);

      await withJournal(stream, { consumer: 'gone' }, async (journal) => {
        await journal.append([set('a', 1), set('b', 2)]);
        await journal.append([set('a', 3)]);
      });
      const report = await withJournal(stream, { consumer: 'heir' }, async (heir, report) => {
        assert.equal(heir.stats().claimed, 3);
        heir.release(report.records.map((record) => record.position));
        return report;
      });
      assert.deepEqual(plain(report.records), [set('b', 2), set('a', 3)]);
      const consumers = (await admin.xinfo('CONSUMERS', stream, 'cachewise')) as string[][];
      assert.ok(!consumers.some((info) => info[1] === 'gone'), 'the dead consumer is removed from the group');

      live.release([liveK!]);
      await live.close();
      assert.equal(await admin.xlen(stream), 0, 'everything was released and deleted');
    });

    test('claimAbandoned(limit) takes no more than the queue can hold; the rest come with later calls', async () => {
      const stream = newStream();
      await withJournal(stream, { consumer: 'heir', claimIdle: 60_000 }, async (heir) => {
        await withJournal(stream, { consumer: 'gone' }, async (gone) => {
          await gone.append([set('a', 1), set('b', 2), set('c', 3), set('d', 4), set('e', 5)]);
        });
        const first = await heir.claimAbandoned(2);
        const rest = await heir.claimAbandoned();
        assert.deepEqual(plain(first), [set('a', 1), set('b', 2)]);
        assert.deepEqual(plain(rest), [set('c', 3), set('d', 4), set('e', 5)]);
        assert.deepEqual(await heir.claimAbandoned(), []);
        heir.release([...first, ...rest].map((record) => record.position));
      });
      assert.equal(await admin.xlen(stream), 0);
    });

    test('an instance that dies (stops heartbeating) has its writes claimed by a live instance after claimIdle', { timeout: 20_000 }, async () => {
      const stream = newStream();
      const doomedClient = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
      doomedClient.on('error', () => undefined);
      const doomed = redisStreamJournal({ client: doomedClient, stream, consumer: 'doomed', claimIdle: 2000 });
      await doomed.open();
      const survivor = journalOn(stream, { consumer: 'survivor', claimIdle: 60_000 });
      await survivor.open();
      try {
        await doomed.append([set('a', 1), del('b', 2)]);
        await survivor.append([set('c', 3)]);
        assert.deepEqual(await survivor.claimAbandoned(), [], 'a live instance keeps its writes');

        doomedClient.disconnect(); // no heartbeat, no goodbye: a crash as Redis sees it
        const claimed = await waitFor(async () => {
          const records = await survivor.claimAbandoned();
          return records.length > 0 ? records : undefined;
        }, 'the dead instance is claimed');
        assert.deepEqual(plain(claimed), [set('a', 1), del('b', 2)]);
        survivor.release(claimed.map((record) => record.position));
      } finally {
        await doomed.close();
        await survivor.close();
      }
      assert.deepEqual(plain((await recover(stream, 'survivor')).records), [set('c', 3)]);
    });

    test('the writes a live instance holds longer than claimIdle (a database outage) stay its own', { timeout: 20_000 }, async () => {
      const stream = newStream();
      const slow = journalOn(stream, { consumer: 'slow', claimIdle: 1500 });
      await slow.open();
      const other = journalOn(stream, { consumer: 'other', claimIdle: 60_000 });
      await other.open();
      try {
        const [position] = await slow.append([set('a', 1)]);
        // Past 2 × claimIdle: the entry is idle that long, its owner keeps heartbeating.
        await new Promise((resolve) => setTimeout(resolve, 3200));
        const pending = (await admin.xpending(stream, 'cachewise', '-', '+', 10)) as [string, string, number, number][];
        assert.ok(pending[0]![2] > 1500, 'the entry is idle longer than claimIdle');
        assert.deepEqual(await other.claimAbandoned(), []);
        slow.release([position!]);
      } finally {
        await slow.close();
        await other.close();
      }
      assert.equal(await admin.xlen(stream), 0);
    });

    test('entries added to the stream by another writer are delivered, and malformed ones reported and dropped', async () => {
      const stream = newStream();
      const foreign: JournalRecord = { collection: 'events', op: 'set', key: 'foreign', version: 7, json: '{"x":1}' };
      await withJournal(stream, { consumer: 'a' }, async (journal) => {
        await journal.append([set('a', 1)]);
        await admin.xadd(stream, '*', 'c', 'events', 'o', 'set', 'k', 'foreign', 'v', '7', 'j', '{"x":1}');
        await journal.append([set('b', 2)]);
        const taken = await journal.claimAbandoned();
        assert.deepEqual(plain(taken), [foreign]);
        await admin.xadd(stream, '*', 'garbage', '1');
      });
      const report = await recover(stream, 'a');
      assert.deepEqual(plain(report.records), [set('a', 1), foreign, set('b', 2)]);
      assert.equal(report.corrupt.length, 1);
      assert.match(report.corrupt[0]!.reason, /no collection or key/);
      assert.equal(await admin.xlen(stream), 3, 'the malformed entry was dropped');
    });
  });

  describe('durability waits', () => {
    const noServer = skipUnlessRedisServer();
    let server: RedisServer | undefined;
    let serverVersion = '';

    before(async () => {
      if (noServer) return;
      server = await startRedisServer({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
      const info = await server.command('INFO', 'server');
      serverVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? '';
    });

    after(async () => {
      await server?.stop();
    });

    test('waitAof: refused at open, with the reason, by a server older than 7.2; else appends wait for the fsync', { skip: noServer }, async () => {
      const stream = newStream();
      const [major = 0, minor = 0] = serverVersion.split('.').map(Number);
      const journal = journalOn(stream, { consumer: 'a', waitAof: { local: 1, timeout: 5000 } }, server!.url);
      if (major < 7 || (major === 7 && minor < 2)) {
        await rejectsWith(journal.open(), 'E_INVALID_OPTION', new RegExp(`waitAof needs WAITAOF.*from 7\\.2 on.*runs ${major}\\.${minor}.*Remedy: upgrade Redis.*appendfsync always`));
        await rejectsWith(journal.append([set('a', 1)]), 'E_CLOSED');
        return;
      }
      await journal.open();
      try {
        await journal.append([set('a', 1)]);
        assert.equal(journal.stats().durableRecords, 1);
      } finally {
        await journal.close();
      }
    });

    test('a Redis that may evict the stream is refused at open with E_POLICY_REFUSED', { skip: noServer }, async () => {
      await server!.command('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
      try {
        await rejectsWith(journalOn(newStream(), { consumer: 'a' }, server!.url).open(), 'E_POLICY_REFUSED', /maxmemory-policy allkeys-lru.*noeviction/);
      } finally {
        await server!.command('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
      }
    });

    test('wait: replicas that are not there reject the append with E_TIMEOUT; the record is kept, its fate unknown', { skip: noServer }, async () => {
      const stream = newStream();
      const journal = journalOn(stream, { consumer: 'a', wait: { replicas: 1, timeout: 20 } }, server!.url);
      await journal.open();
      try {
        await rejectsWith(journal.append([set('a', 1)]), 'E_TIMEOUT', /WAIT .* on 0 replicas .* short of the 1 asked/);
        assert.equal(journal.stats().durableRecords, 0);
      } finally {
        await journal.close();
      }
      const again = journalOn(stream, { consumer: 'a' }, server!.url);
      const report = await again.open();
      await again.close();
      assert.deepEqual(plain(report.records), [set('a', 1)]);
    });

    test('wait: with a replica connected, appends resolve once it has the records', { skip: noServer }, async () => {
      await server!.command('CONFIG', 'SET', 'repl-diskless-sync-delay', '0'); // a full sync at once, not after 5 s
      const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(server!.port)] });
      try {
        await waitFor(async () => (/master_link_status:up/.test(await replica.command('INFO', 'replication')) ? true : undefined), 'the replica is in sync');
        const stream = newStream();
        const journal = journalOn(stream, { consumer: 'a', wait: { replicas: 1, timeout: 0 } }, server!.url);
        await journal.open();
        try {
          await journal.append([set('a', 1)]);
          assert.match(await replica.command('XLEN', stream), /^:1\r\n/);
        } finally {
          await journal.close();
        }
      } finally {
        await replica.stop();
      }
    });
  });

  describe('redis cluster', () => {
    const noServer = skipUnlessRedisServer();

    test('on a Cluster client: appends, a claim by a second instance, and deletion on release (the keys share one slot)', { skip: noServer, timeout: 30_000 }, async () => {
      const cluster = await startRedisCluster({ masters: 3 });
      const client = new Cluster([...cluster.startupNodes], { redisOptions: { maxRetriesPerRequest: 1 } });
      client.on('error', () => undefined);
      try {
        const stream = 'orders:journal'; // no hash tag: the liveness keys take the whole name as theirs
        const gone = redisStreamJournal({ client, stream, consumer: 'gone', claimIdle: 200 });
        await gone.open();
        await Promise.all([gone.append([set('a', 1)]), gone.append([del('b', 2), set('a', 3)])]);
        await gone.close();
        const heir = redisStreamJournal({ client, stream, consumer: 'heir', claimIdle: 200 });
        const report = await heir.open();
        assert.deepEqual(plain(report.records), [del('b', 2), set('a', 3)]);
        heir.release(report.records.map((record) => record.position));
        await heir.close();
        assert.equal(await client.xlen(stream), 0);
      } finally {
        await client.quit().catch(() => client.disconnect());
        await cluster.stop();
      }
    });
  });

  describe('crash', () => {
    const child = fileURLToPath(new URL('./helpers/redis-journal-crash-child.ts', import.meta.url));
    /** Runs the child until it has acknowledged `acks` writes, kills it, returns the versions it acknowledged. */
    const runAndKill = (stream: string, acks: number) => runUntilAcksThenKill(child, [REDIS_URL, stream, 'crasher', '300'], acks);

    /** Asserts that `records` hold every acknowledged write whose release was not asked for, and only appended writes. */
    function assertRecovered(acked: readonly number[], records: RecoveryReport['records']): void {
      // Per key, the newest acknowledged version, and whether its release was asked for.
      const newest = new Map<string, { version: number; released: boolean }>();
      for (const version of acked) {
        const { key } = redisCrashRecord(version);
        if ((newest.get(key)?.version ?? -1) < version) newest.set(key, { version, released: isReleasedInRedisCrashTest(version) });
      }
      const recovered = new Map(records.map((record) => [record.key, record]));
      for (const record of records) assert.deepEqual(plain([record]), [redisCrashRecord(record.version)], 'a recovered record is what was appended');
      let mustRecover = 0;
      for (const [key, { version, released }] of newest) {
        if (released) continue; // its release may or may not have reached Redis
        mustRecover++;
        const found = recovered.get(key);
        assert.ok(found !== undefined && found.version >= version, `key ${key}: acknowledged version ${version} unreleased, recovered ${found?.version}`);
      }
      assert.ok(mustRecover > 0, 'the run left unreleased acknowledged writes to check');
    }

    test('a process killed with SIGKILL loses no acknowledged write: its successor under the same name recovers them at open', { timeout: 30_000 }, async () => {
      const stream = newStream();
      const acked = await runAndKill(stream, 3000);
      assert.ok(acked.length >= 3000);
      // Same name: open waits for the dead process's liveness key to expire, then reads its pending entries.
      const journal = journalOn(stream, { consumer: 'crasher', claimIdle: 300 });
      const report = await journal.open();
      try {
        assertRecovered(acked, report.records);
        journal.release(report.records.map((record) => record.position));
      } finally {
        await journal.close();
      }
      assert.deepEqual((await recover(stream, 'crasher')).records, [], 'a second replay finds nothing once released');
      assert.equal(await admin.xlen(stream), 0);
    });

    test('a process killed with SIGKILL loses no acknowledged write: a running instance claims them once it is found dead', { timeout: 30_000 }, async () => {
      const stream = newStream();
      const survivor = journalOn(stream, { consumer: 'survivor', claimIdle: 60_000 });
      await survivor.open();
      try {
        const acked = await runAndKill(stream, 3000);
        const claimed = await waitFor(async () => {
          const records = await survivor.claimAbandoned();
          return records.length > 0 ? records : undefined;
        }, 'the dead process is claimed');
        assertRecovered(acked, claimed);
        assert.deepEqual(await survivor.claimAbandoned(), [], 'claimed once');
        survivor.release(claimed.map((record) => record.position));
      } finally {
        await survivor.close();
      }
      assert.deepEqual((await recover(stream, 'crasher')).records, []);
      assert.equal(await admin.xlen(stream), 0);
    });
  });
});
