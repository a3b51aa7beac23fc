/**
 * The writer thread of a SQLite store (see ./sqlite-writer.ts): its own connection to the file,
 * on which it commits the batches it is sent, so that SQLite's work and its fsync on commit do
 * not hold up the application's event loop. Batches that queue up while a commit runs are
 * committed together (group commit); each still gets its own per-entry outcomes.
 */
import { createRequire } from 'node:module';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { isNotApplied, type StoreWrite, type WriteOutcome } from './store.js';
import { batchWriter, configure, prepareUpserts, type UpsertStatements } from './sqlite-batch.js';
import { serializeError, type WriteRequest, type WriterData, type WriterReply, type WriterRequest } from './sqlite-writer-protocol.js';

const data = workerData as WriterData;
const port = parentPort!;
const Driver = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
const db = new Driver(data.file);
configure(db, data);
const write = batchWriter(db);
const tables = new Map<string, UpsertStatements>();

/** Most entries committed together when several batches wait (one transaction, one fsync). */
const MAX_GROUP_ENTRIES = 5000;

port.on('message', (first: WriterRequest) => {
  // Batches that arrived while the last commit ran wait in the port: take them all now and
  // commit those of one table together, so concurrent small batches (write-through sets) share
  // a transaction and its fsync instead of paying one each.
  const requests = [first];
  for (let next = receiveMessageOnPort(port); next !== undefined; next = receiveMessageOnPort(port)) requests.push(next.message as WriterRequest);
  let group: WriteRequest[] = [];
  let entries = 0;
  for (const request of requests) {
    if (request.type === 'close') {
      commitGroup(group);
      group = [];
      db.close();
      port.close();
      return;
    }
    if (group.length > 0 && (request.table !== group[0]!.table || entries + request.keys.length > MAX_GROUP_ENTRIES)) {
      commitGroup(group);
      group = [];
      entries = 0;
    }
    group.push(request);
    entries += request.keys.length;
  }
  commitGroup(group);
});

/** Commits the batches of `group` (one table) in one transaction and answers each. */
function commitGroup(group: readonly WriteRequest[]): void {
  if (group.length === 0) return;
  try {
    const table = group[0]!.table;
    let statements = tables.get(table);
    if (statements === undefined) tables.set(table, (statements = prepareUpserts(db, table)));
    const writes: StoreWrite[] = [];
    for (const request of group) {
      request.keys.forEach((key, i) => {
        const json = request.jsons[i];
        const version = request.versions[i]!;
        writes.push(json === null ? { op: 'delete', key, version } : { op: 'set', key, version, json: json! });
      });
    }
    const outcomes = write(statements, writes, group[0]!.now, new Map());
    let at = 0;
    for (const request of group) {
      const mine = outcomes.slice(at, at + request.keys.length);
      at += request.keys.length;
      port.postMessage({ id: request.id, outcomes: mine.map(encodeOutcome) } satisfies WriterReply);
    }
  } catch (error) {
    const reply = { error: serializeError(error), notApplied: isNotApplied(error) };
    for (const request of group) port.postMessage({ id: request.id, ...reply } satisfies WriterReply);
  }
}

function encodeOutcome(outcome: WriteOutcome): WriteOutcome {
  if (outcome.status !== 'failed') return outcome;
  return { status: 'failed', permanent: outcome.permanent, error: serializeError(outcome.error) };
}
