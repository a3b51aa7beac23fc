/**
 * The writer thread of a SQLite store that opened its file itself. better-sqlite3 is synchronous:
 * on the application's thread, every batch (hundreds of upserts, and an fsync at commit with
 * `synchronous: 'full'`) would stop the event loop while it runs. The thread has its own
 * connection to the file and commits the batches there; reads stay on the store's connection
 * (WAL mode lets them run beside the writer and see each batch once it committed).
 *
 * The thread does not keep the process alive while no batch is in flight. If it dies, the
 * batches it held get an error (their outcome is unknown: a commit may have finished), and the
 * next batch starts a new thread.
 */
import { Worker } from 'node:worker_threads';
import { CachewiseError } from '../errors.js';
import { notApplied, type StoreWrite, type WriteOutcome } from './store.js';
import { revive, type WriterData, type WriterReply, type WriteRequest } from './sqlite-writer-protocol.js';

interface InFlight {
  readonly resolve: (outcomes: WriteOutcome[]) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The worker: the compiled .js beside this file, or, when the sources run through tsx (tests,
 * benchmarks), the .ts file behind tsx's loader, which a worker thread does not inherit.
 */
function newWorker(workerData: WriterData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./sqlite-writer-worker.js', import.meta.url), { workerData });
  const entry = new URL('./sqlite-writer-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

export class SqliteWriterThread {
  private worker: Worker | undefined;
  private readonly inFlight = new Map<number, InFlight>();
  /** Called when the last batch in flight is answered (close() waits for it). */
  private whenIdle: (() => void) | undefined;
  private nextId = 0;
  private closed = false;

  constructor(private readonly data: WriterData) {}

  /** Commits `writes` (all well formed) into `table` on the writer thread. */
  write(table: string, writes: readonly StoreWrite[], now: number): Promise<WriteOutcome[]> {
    if (this.closed) return Promise.reject(notApplied(new CachewiseError('E_CLOSED', 'the SQLite store is closed', 'create a new store')));
    const request: WriteRequest = {
      type: 'write',
      id: ++this.nextId,
      table,
      keys: writes.map((w) => w.key),
      jsons: writes.map((w) => (w.op === 'set' ? w.json : null)),
      versions: writes.map((w) => w.version),
      now,
    };
    const worker = this.start();
    return new Promise<WriteOutcome[]>((resolve, reject) => {
      if (this.inFlight.size === 0) worker.ref();
      this.inFlight.set(request.id, { resolve, reject });
      worker.postMessage(request);
    });
  }

  /** Waits for the batches in flight, then stops the thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = this.worker;
    if (worker === undefined) return;
    if (this.inFlight.size > 0) await new Promise<void>((resolve) => (this.whenIdle = resolve));
    if (this.worker !== worker) return; // it stopped meanwhile
    await new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      worker.ref(); // until it has closed the file
      worker.postMessage({ type: 'close' });
    });
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = newWorker(this.data);
    worker.unref();
    worker.on('message', (reply: WriterReply) => this.answer(reply));
    worker.on('error', (error) => this.lost(worker, error));
    worker.on('exit', (code) => this.lost(worker, new Error(`the SQLite writer thread exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  private answer(reply: WriterReply): void {
    const waiting = this.inFlight.get(reply.id);
    if (waiting === undefined) return;
    this.inFlight.delete(reply.id);
    if (this.inFlight.size === 0) this.idle();
    if ('outcomes' in reply) {
      waiting.resolve(reply.outcomes.map((o) => (o.status === 'failed' ? { ...o, error: revive(o.error as never) } : o)));
    } else {
      const error = revive(reply.error);
      waiting.reject(reply.notApplied ? notApplied(error) : error);
    }
  }

  private lost(worker: Worker, error: unknown): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const failure = new CachewiseError(
      'E_STORE_FAILED',
      `the SQLite writer thread stopped: ${error instanceof Error ? error.message : String(error)}`,
      'the batches it held are retried; if this repeats, check that better-sqlite3 loads in a worker thread',
      { cause: error },
    );
    for (const waiting of this.inFlight.values()) waiting.reject(failure);
    this.inFlight.clear();
    this.idle();
  }

  private idle(): void {
    this.worker?.unref();
    this.whenIdle?.();
    this.whenIdle = undefined;
  }
}
