/**
 * The writer thread of a SQLite store (see ./sqlite-writer.ts): its own connection to the file,
 * on which it commits the batches it is sent, so that SQLite's work and its fsync on commit do
 * not hold up the application's event loop.
 */
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { isNotApplied, type StoreWrite, type WriteOutcome } from './store.js';
import { batchWriter, prepareUpserts, type UpsertStatements } from './sqlite-batch.js';
import { serializeError, type WriterData, type WriterReply, type WriterRequest } from './sqlite-writer-protocol.js';

const data = workerData as WriterData;
const port = parentPort!;
const Driver = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
const db = new Driver(data.file);
db.pragma(`busy_timeout = ${data.busyTimeout}`);
db.pragma(`synchronous = ${data.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
const write = batchWriter(db);
const tables = new Map<string, UpsertStatements>();

port.on('message', (request: WriterRequest) => {
  if (request.type === 'close') {
    db.close();
    port.close();
    return;
  }
  let reply: WriterReply;
  try {
    let statements = tables.get(request.table);
    if (statements === undefined) tables.set(request.table, (statements = prepareUpserts(db, request.table)));
    const writes: StoreWrite[] = request.keys.map((key, i) => {
      const json = request.jsons[i];
      return json === null ? { op: 'delete', key, version: request.versions[i]! } : { op: 'set', key, version: request.versions[i]!, json: json! };
    });
    const outcomes = write(statements, writes, request.now, new Map());
    reply = { id: request.id, outcomes: outcomes.map(encodeOutcome) };
  } catch (error) {
    reply = { id: request.id, error: serializeError(error), notApplied: isNotApplied(error) };
  }
  port.postMessage(reply);
});

function encodeOutcome(outcome: WriteOutcome): WriteOutcome {
  if (outcome.status !== 'failed') return outcome;
  return { status: 'failed', permanent: outcome.permanent, error: serializeError(outcome.error) };
}
