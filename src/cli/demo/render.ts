/**
 * The demo's text output: the feed, then the seed's comparison table with the measured columns
 * next to the seed's words (two tables, to fit 120 columns; a sixth row, write-back with a
 * journal, which the seed does not have), then what the numbers show and the checks. Rendered
 * from the same DemoReport that `--json` prints.
 */
import type { FeedResult } from './feed.js';
import { DEFAULT_DB_LATENCY_MS } from './options.js';
import type { DemoReport, DemoRow, JournalInfo, StoreInfo, TierInfo } from './report.js';
import { SEED_FEED } from './seed-table.js';
import { formatTable, ms, percent, wrap } from './table.js';

const WIDTH = 118;

export function renderText(report: DemoReport): string {
  const { options, machine, workload } = report;
  const out: string[] = [];
  const tierName = report.tier.kind === 'redis' ? 'Redis tier' : 'memory tier';
  const storeName = report.store.kind === 'postgres' ? 'PostgreSQL' : 'SQLite';
  out.push(`cachewise demo: the seed's cache write patterns, measured on ${tierName} + ${storeName}`);
  out.push(wrap(`Tier: ${tierText(report.tier)}`, WIDTH));
  out.push(wrap(`Store: ${storeText(report.store)}`, WIDTH));
  out.push(wrap(`Journal: ${journalText(report.journal)}`, WIDTH));
  out.push(wrap(`Database latency: ${dbLatencyText(report)}`, WIDTH));
  out.push(
    wrap(
      `Workload seed ${options.seed}. Node ${machine.node} on ${machine.platform} ${machine.arch}, ${machine.cpus} CPU(s) (${machine.cpuModel}), load ${machine.loadAverage}.`,
      WIDTH,
    ),
  );
  out.push('');
  out.push(...renderFeed(report.feed, workload.feed.operations, workload.feed.users));
  out.push('');
  const w = workload.pattern;
  out.push("Part 2. The seed's \"Comparison: Which Pattern When?\", measured, and write-back with a journal (not in the seed)");
  out.push(
    wrap(
      `Each pattern: its own collection and cache, the same workload of ${w.writes} writes and ${w.reads} reads by ${w.concurrency} concurrent workers ` +
        `over ${w.keys} keys (60% of reads re-read a recently written key). "Lost on kill -9": a child process writes under the ` +
        `pattern, is killed with SIGKILL once it has acknowledged ${workload.kill.killAfter} writes and run ${workload.kill.minRunMs} ms; "keys lost" ` +
        'are the keys whose newest acknowledged write is not in the database (for Write-Back + journal: after a restart on the same journal ' +
        'and database replayed it and flushed). Latencies in ms, measured around each call.',
      WIDTH,
      '  ',
    ),
  );
  const nameWidth = Math.max(...report.rows.map((row) => row.name.length));
  for (const row of report.rows) {
    // The name, then the setup wrapped under itself.
    const [first, ...rest] = wrap(row.setup, WIDTH - nameWidth - 3).split('\n');
    out.push(`  ${row.name.padEnd(nameWidth)} ${first ?? ''}`, ...rest.map((line) => `${' '.repeat(nameWidth + 3)}${line}`));
  }
  for (const row of report.rows) if (row.note) out.push(wrap(`Note: ${row.note}.`, WIDTH, '  '));
  out.push('');
  out.push(latencyTable(report.rows));
  out.push('');
  out.push(consistencyTable(report.rows));
  const footnote = lostFootnote(report);
  if (footnote !== undefined) out.push(wrap(footnote, WIDTH, '  '));
  out.push('');
  out.push('What this shows');
  const found = findings(report);
  if (found.length === 0) out.push('  Nothing to compare: the measurements failed (see the checks below).');
  for (const finding of found) out.push(wrap(finding, WIDTH, '  '));
  out.push('');
  const failed = report.checks.filter((c) => !c.ok);
  if (failed.length === 0) out.push(`Checks: all ${report.checks.length} passed. Took ${(report.durationMs / 1000).toFixed(1)} s.`);
  else {
    out.push(`Checks: ${failed.length} of ${report.checks.length} FAILED. Took ${(report.durationMs / 1000).toFixed(1)} s.`);
    for (const check of failed) out.push(wrap(`FAILED ${check.name}: ${check.detail}`, WIDTH, '  '));
  }
  return out.join('\n') + '\n';
}

function renderFeed(feed: FeedResult | null, operations: number, users: number): string[] {
  const out = ['Part 1. The seed\'s "user activity feed": four kinds of data in one cache, each with its own pattern'];
  for (const line of Object.values(SEED_FEED)) out.push(`  seed: ${line}`);
  if (feed === null) return [...out, '  (the feed did not run; see the checks below)'];
  out.push(
    wrap(
      `${operations} operations by concurrent users over ${users} users, and a background builder rebuilding feeds every 100 ms (${feed.feedBuilds} rebuilds). ` +
        'Latencies in ms, as the library measured them (collection.stats()).',
      WIDTH,
      '  ',
    ),
  );
  out.push('');
  out.push(
    formatTable(
      [
        { header: 'Collection' },
        { header: 'Write / read' },
        { header: 'Writes', align: 'right' },
        { header: 'Write p50', align: 'right' },
        { header: 'Write p99', align: 'right' },
        { header: 'Reads', align: 'right' },
        { header: 'Hit ratio', align: 'right' },
        { header: 'DB loads', align: 'right' },
        { header: 'DB writes (batches)', align: 'right' },
      ],
      feed.collections.map((c) => [
        c.name,
        `${c.write} / ${c.read}`,
        String(c.writes),
        ms(c.writeP50Ms),
        ms(c.writeP99Ms),
        String(c.reads),
        c.reads === 0 ? '-' : percent(c.hitRatio),
        String(c.loads),
        `${c.storeWrites} (${c.storeBatches})`,
      ]),
    ),
  );
  const events = feed.collections.find((c) => c.name === 'events');
  out.push(
    wrap(
      `events: ${feed.eventsAcked} acknowledged at cache speed, written to the database in ${plural(events?.storeBatches ?? 0, 'batch', 'batches')} ` +
        `(flush lag p99 ${ms(events?.flushLagP99Ms ?? 0)} ms); after the final flush the database holds ${feed.eventsInDatabase} of them. ` +
        'profiles pay the database round trip on every write; feeds and thumbnails are written around the cache, so the first view after a write ' +
        'loads from the database (DB loads) and fills the cache for the next.',
      WIDTH,
      '  ',
    ),
  );
  return out;
}

/** What write-through waits for on each write, in words. */
function waitedFor(report: DemoReport): string {
  const name = report.store.kind === 'postgres' ? 'PostgreSQL' : 'SQLite';
  const own = report.dbLatency.ownPerCall;
  const ownText = own.count === 0 ? `${name}'s own time` : `${name}'s own ${ms(own.p50Ms)} ms`;
  return report.dbLatency.injectedMs === 0 ? `${ownText}, none injected` : `${report.dbLatency.injectedMs} ms injected + ${ownText}`;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function num(value: number, format: (n: number) => string = String): string {
  return Number.isNaN(value) ? 'error' : format(value);
}

function latencyTable(rows: readonly DemoRow[]): string {
  return formatTable(
    [
      { header: 'Pattern' },
      { header: 'Write latency (seed)' },
      { header: 'Write p50', align: 'right' },
      { header: 'Write p99', align: 'right' },
      { header: 'DB writes per write', align: 'right' },
      { header: 'Hit ratio', align: 'right' },
      { header: 'Read p50', align: 'right' },
    ],
    rows.map((r) => [
      r.name,
      r.seed.writeLatency,
      num(r.writeP50Ms, ms),
      num(r.writeP99Ms, ms),
      num(r.dbWritesPerWrite, (n) => n.toFixed(2)),
      num(r.hitRatio, percent),
      num(r.readP50Ms, ms),
    ]),
  );
}

function consistencyTable(rows: readonly DemoRow[]): string {
  return formatTable(
    [
      { header: 'Pattern' },
      { header: 'Consistency (seed)' },
      { header: 'Stale reads', align: 'right' },
      { header: 'DB lag p99', align: 'right' },
      { header: 'Durability (seed)' },
      { header: 'Keys lost on kill -9', align: 'right' },
    ],
    rows.map((r) => [
      r.name,
      r.seed.consistency,
      num(r.staleReads, (n) => `${n} of ${r.reads}`),
      num(r.dbLagP99Ms, ms),
      r.seed.durability,
      lostCell(r),
    ]),
  );
}

function lostCell(row: DemoRow): string {
  const lost = row.lostOnKill;
  if (lost === null) return 'error';
  // Read-through and cache-aside have no writes of their own: say which write pattern was killed.
  // Write-back over a shared tier: marked, and explained under the table.
  const mark = lost.lostStillCached !== null && row.pattern === 'write-back' ? ' *' : '';
  return `${lost.lost} of ${lost.keys}${lost.measuredOn === row.pattern ? '' : ` (${lost.measuredOn})`}${mark}`;
}

/** Under the table: why write-back over a shared Redis tier still loses writes when its process dies. */
function lostFootnote(report: DemoReport): string | undefined {
  const wb = report.rows.find((r) => r.pattern === 'write-back')?.lostOnKill;
  if (report.tier.kind !== 'redis' || wb === undefined || wb === null || wb.lostStillCached === null) return undefined;
  return (
    "* Write-back over the shared Redis tier: each acknowledged value was in Redis, but write-back's pending database writes " +
    "live in the writing process (durability 'none'), so killing the child lost them all the same" +
    (wb.lost === 0
      ? ' (this run lost none: the flusher had caught up when the kill landed).'
      : `: ${wb.lostStillCached === wb.lost ? `all ${wb.lost}` : `${wb.lostStillCached} of the ${wb.lost}`} lost keys' values were still in Redis after the kill, ` +
        'where every reader sees them although the database never got them, until they expire and readers fall back to the older rows.')
  );
}

function tierText(tier: TierInfo): string {
  if (tier.kind === 'memory') return 'memory (in-process, lru-cache; each cache of the demo has its own, and it dies with its process).';
  return (
    `Redis ${tier.serverVersion} at ${tier.url}, shared by every cache and process of the demo, keys under ${tier.prefix} ` +
    `(${tier.kept ? 'kept afterwards' : 'deleted afterwards'}); maxmemory-policy ${tier.evictionPolicy}; PING round trip ${ms(tier.roundTripP50Ms)} ms (p50).`
  );
}

function journalText(journal: JournalInfo): string {
  return `the Write-Back + journal row's file journals (fsynced segments, whatever the tier and store) in ${journal.dir}${journal.kept ? '' : ' (removed afterwards)'}.`;
}

function storeText(store: StoreInfo): string {
  if (store.kind === 'sqlite') return `SQLite files in ${store.dir}${store.kept ? '' : ' (removed afterwards)'}.`;
  return (
    `PostgreSQL ${store.serverVersion} at ${store.url}, schema ${store.schema} (${store.kept ? 'kept afterwards' : 'dropped afterwards'}); ` +
    `SELECT 1 round trip ${ms(store.roundTripP50Ms)} ms (p50).`
  );
}

/** Says which latency the numbers carry: the injected one, or the database's own. */
function dbLatencyText(report: DemoReport): string {
  const { injectedMs, ownPerCall } = report.dbLatency;
  const own = ownPerCall.count === 0 ? '' : `${ms(ownPerCall.p50Ms)} ms p50, ${ms(ownPerCall.p99Ms)} ms p99 over ${ownPerCall.count} calls`;
  const name = report.store.kind === 'postgres' ? 'PostgreSQL' : 'SQLite';
  const poolNote = report.store.kind === 'postgres' ? '; waits for a free pool connection included' : '';
  if (injectedMs === 0) {
    return `none injected (--db-latency 0): the figures carry ${name}'s own latency only` + (own === '' ? '.' : ` (${own}, measured around each database call${poolNote}).`);
  }
  return (
    `${injectedMs} ms injected per database call (${injectedMs === DEFAULT_DB_LATENCY_MS ? "the seed's example; " : ''}--db-latency 0 measures ${name}'s own), ` +
    `on top of ${name}'s own time` +
    (own === '' ? '.' : ` (${own}, measured without the injected part${poolNote}).`)
  );
}

const usable = (row: DemoRow | undefined): row is DemoRow => row !== undefined && row.problems.length === 0;

/** The two write-back rows side by side: what the journal saves on a kill, and what its fsync costs. */
function journalFinding(wb: DemoRow, wbj: DemoRow, wt: DemoRow | undefined): string {
  const none = wb.lostOnKill!;
  const journal = wbj.lostOnKill!;
  const againstThrough = !usable(wt)
    ? ''
    : wbj.writeP50Ms < wt.writeP50Ms
      ? `, still ${times(wt.writeP50Ms / Math.max(wbj.writeP50Ms, 0.001))}x faster than write-through's ${ms(wt.writeP50Ms)} ms`
      : `, not faster than write-through's ${ms(wt.writeP50Ms)} ms in this run`;
  return (
    `Write-back with a journal: killed the same way, write-back lost ${none.lost} of ${none.keys} keys with durability 'none' and ` +
    `${journal.lost} of ${journal.keys} with durability 'journal', counted after a restart on the same journal and database had replayed ` +
    `${plural(journal.replayed ?? 0, 'journaled write', 'journaled writes')} and flushed` +
    (journal.lost === 0
      ? ': no acknowledged write lost, where the seed\'s write-back has "one cache failure = data loss". '
      : ' (acknowledged writes lost despite the journal: see the checks). ') +
    `Its price is the fsync before each acknowledgement: ${ms(wbj.writeP50Ms)} ms p50 (${ms(wbj.writeP99Ms)} ms p99) against ` +
    `${ms(wb.writeP50Ms)} ms without the journal${againstThrough}.`
  );
}

function times(ratio: number): string {
  return ratio >= 10 ? String(Math.round(ratio)) : ratio.toFixed(1);
}

/** Sentences computed from the numbers: what the measurements say about the seed's claims. */
export function findings(report: DemoReport): string[] {
  const by = (id: string) => report.rows.find((r) => r.pattern === id);
  const wt = by('write-through');
  const wb = by('write-back');
  const wa = by('write-around');
  const ca = by('cache-aside');
  const wbj = by('write-back-journal');
  const out: string[] = [];
  if (usable(wt) && usable(wb)) {
    const ratio = wt.writeP50Ms / Math.max(wb.writeP50Ms, 0.001);
    out.push(
      ratio > 1
        ? `Write latency: write-back acknowledged writes in ${ms(wb.writeP50Ms)} ms (p50) against ${ms(wt.writeP50Ms)} ms for write-through, ` +
            `${ratio >= 10 ? Math.round(ratio) : ratio.toFixed(1)}x faster: the seed's "Very Low (cache latency)" against "High (DB latency)". ` +
            `Write-through waits for the database (${waitedFor(report)}) on every write; write-back does not wait for it.`
        : `Write latency: write-back (${ms(wb.writeP50Ms)} ms p50) was not faster than write-through (${ms(wt.writeP50Ms)} ms) in this run: ` +
            `waiting for the database costs only ${waitedFor(report)} per write, so there is little for write-back to save. Try the seed's --db-latency 50.`,
    );
    out.push(
      `Database work: write-back sent ${wb.storeWrites} rows for ${wb.writes} application writes (${wb.dbWritesPerWrite.toFixed(2)} per write) ` +
        `in ${plural(wb.storeBatches, 'batch', 'batches')}, by coalescing rewrites of hot keys and batching, against 1.00 for write-through (${wt.storeBatches} round trips).`,
    );
  }
  if (usable(wb) && wb.lostOnKill !== null) {
    const safe = report.rows.filter((r) => r.lostOnKill !== null && r.pattern !== 'write-back' && r.pattern !== 'write-back-journal');
    const safeLost = safe.reduce((sum, r) => sum + r.lostOnKill!.lost, 0);
    out.push(
      `Durability: killed with SIGKILL, write-back (durability 'none') had not yet written ${wb.lostOnKill.lost} of ${wb.lostOnKill.keys} keys' newest ` +
        `acknowledged writes to the database: the seed's "Delayed", and its warning that a cache failure loses unflushed writes. ` +
        (report.tier.kind === 'redis'
          ? "A shared Redis tier does not change that: the values were in Redis, but the queue of writes still to be flushed lived in the killed process. "
          : '') +
        `${safe.map((r) => r.name).join(', ')} lost ${safeLost}: "Immediate".` +
        (wb.lostOnKill.lost === 0 ? ' (This run lost nothing: the flusher had caught up when the kill landed; losses are possible, not certain.)' : ''),
    );
  }
  if (usable(wb) && usable(wbj) && wb.lostOnKill !== null && wbj.lostOnKill !== null) out.push(journalFinding(wb, wbj, wt));
  if (usable(wt) && usable(wa)) {
    out.push(
      `Cold cache after writes: write-around's read hit ratio was ${percent(wa.hitRatio)} against ${percent(wt.hitRatio)} for write-through on the same reads, ` +
        `because each write invalidates the key and the next read goes to the database (${wa.loads} loads against ${wt.loads}): ` +
        'the seed\'s "problematic if you write-then-immediately-read the same key".',
    );
  }
  const measured = report.rows.filter((r) => !Number.isNaN(r.staleReads));
  const stale = measured.reduce((sum, r) => sum + r.staleReads, 0);
  const reads = measured.reduce((sum, r) => sum + r.reads, 0);
  if (measured.length > 0) {
    out.push(
      `Consistency: ${stale} stale reads in ${reads} reads over all patterns. ` +
        (usable(wb) ? `Write-back's "Eventual" is between the cache and the database (the database lagged ${ms(wb.dbLagP99Ms)} ms at p99), not what cache readers see: they read the newest accepted write. ` : '') +
        (usable(ca)
          ? `Cache-aside's fills are checked against the lease its miss handed out: ${plural(ca.fillsRejected, 'application fill was', 'application fills were')} ` +
            'refused because a write had revoked the lease, or because a concurrent reader of the same key had already filled it; none cached an old value.'
          : ''),
    );
  }
  return out;
}
