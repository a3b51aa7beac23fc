/**
 * Graceful shutdown (contract 5): on SIGTERM or SIGINT, close the cache with a deadline so that
 * write-back queues drain, report what stayed unflushed (a journal keeps it for the next start),
 * then exit. A second signal while draining exits at once.
 */
import type { Cache, CloseReport } from './cache.js';
import { toMs, type Duration } from './duration.js';
import { CachewiseError } from './errors.js';

export interface ShutdownOptions {
  /** How long the drain may take. Default '10s' (most orchestrators kill after 30 s). */
  timeout?: Duration;
  /** Signals to hook. Default ['SIGTERM', 'SIGINT']. */
  signals?: readonly NodeJS.Signals[];
  /**
   * Called with the report once the cache is closed, before the exit. Default: a line on stderr
   * when something stayed unflushed.
   */
  onClosed?: (report: CloseReport, signal: NodeJS.Signals) => void | Promise<void>;
  /**
   * Exit the process after closing: code 0, or 1 when acknowledged writes were lost
   * (durability 'none'). Default true. With false, only the cache is closed.
   */
  exit?: boolean;
}

/**
 * Closes `cache` when the process gets one of `signals`. Returns a function that removes the
 * handlers again.
 */
export function closeOnSignals(cache: Cache, options: ShutdownOptions = {}): () => void {
  const timeoutMs = toMs(options.timeout ?? '10s', 'timeout');
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  if (!Array.isArray(signals) || signals.length === 0 || !signals.every((s) => typeof s === 'string' && s.startsWith('SIG'))) {
    throw new CachewiseError('E_INVALID_OPTION', 'closeOnSignals option "signals" must list signal names', "pass signals such as ['SIGTERM', 'SIGINT']");
  }
  const exit = options.exit ?? true;
  const onClosed = options.onClosed ?? describeReport;
  let closing = false;

  const handler = (signal: NodeJS.Signals) => {
    if (closing) {
      // A second signal: the operator does not want to wait.
      process.stderr.write(`cachewise: ${signal} again while closing; exiting now\n`);
      process.exit(130);
    }
    closing = true;
    void (async () => {
      let code = 0;
      try {
        const report = await cache.close({ timeout: timeoutMs });
        await onClosed(report, signal);
        if (report.lost > 0) code = 1;
      } catch (error) {
        process.stderr.write(`cachewise: closing on ${signal} failed: ${String(error)}\n`);
        code = 1;
      }
      if (exit) process.exit(code);
      remove();
    })();
  };
  const remove = () => {
    for (const signal of signals) process.off(signal, handler);
  };
  for (const signal of signals) process.on(signal, handler);
  return remove;
}

function describeReport(report: CloseReport, signal: NodeJS.Signals): void {
  if (report.unflushed.length === 0) return;
  const kept = report.unflushed.length - report.lost;
  const parts = [];
  if (kept > 0) parts.push(`${kept} kept in the journal for the next start`);
  if (report.lost > 0) parts.push(`${report.lost} lost (durability 'none')`);
  process.stderr.write(`cachewise: closed on ${signal}; ${report.unflushed.length} write(s) were not in the database: ${parts.join(', ')}\n`);
}
