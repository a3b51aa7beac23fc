/**
 * The seed's claims, checked against this run's figures, and the seed's comparison table with
 * the measured columns beside its words. Each verdict says what was measured, with the numbers,
 * whatever they are: a claim that does not hold is reported as such.
 */
import { SEED_TABLE, type PatternId } from '../demo/seed-table.js';
import type { ClaimCheck, LatencyRun, ScenarioResult, SeedTableRow, ThroughputScenario } from './results.js';
import { DATABASE_WRITE } from './write-scenarios.js';

export const SEED_CLAIMS = {
  throughput: 'Write-back achieves 10-100x higher write throughput than write-through by accepting eventual consistency.',
  latency: 'it carries write latency equal to database latency. If your database takes 50ms to persist, every write waits 50ms.',
  coldCache: 'The penalty: cold cache after writes. The next read triggers a cache miss and database fetch.',
  readThrough: 'Read-Through makes the cache library itself responsible for database interaction. [...] Your application code is simpler—it only talks to the cache.',
} as const;

function throughput(s: ScenarioResult): ThroughputScenario | undefined {
  return s.kind === 'throughput' ? s : undefined;
}

function contender(s: ScenarioResult, name: string) {
  return throughput(s)?.contenders.find((c) => c.name === name);
}

function ratio(s: ScenarioResult, subject: string): number | undefined {
  return throughput(s)?.ratios.find((r) => r.subject === subject)?.value;
}

export function fmtRatio(value: number): string {
  return value >= 100 ? `${Math.round(value)}x` : value >= 10 ? `${value.toFixed(1)}x` : `${value.toFixed(2)}x`;
}

/** A latency given in µs: "0.42 µs", "13 µs", "1.5 ms", "52 ms". */
export function fmtMs(us: number): string {
  const ms = us / 1000;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 1) return `${ms.toFixed(1)} ms`;
  return us >= 10 ? `${Math.round(us)} µs` : `${us.toFixed(2)} µs`;
}

export function checkClaims(runs: readonly LatencyRun[]): ClaimCheck[] {
  const checks: ClaimCheck[] = [];
  for (const run of runs) {
    const at = run.dbLatencyMs;
    const ack = ratio(run.writePatterns, 'write-back');
    const endToEnd = ratio(run.flush, 'write-back');
    if (ack === undefined) {
      checks.push({ claim: 'write-back throughput', seed: SEED_CLAIMS.throughput, dbLatencyMs: at, measured: `not measured (${skipReason(run.writePatterns)})`, verdict: 'not measured' });
    } else {
      const inRange = ack >= 10 && ack <= 100;
      checks.push({
        claim: 'write-back throughput',
        seed: SEED_CLAIMS.throughput,
        dbLatencyMs: at,
        measured:
          `${run.label}: write-back acknowledged ${fmtRatio(ack)} the writes per second of write-through` +
          (endToEnd === undefined ? '' : `; counted until every write was in the database (flush included), ${fmtRatio(endToEnd)}`) +
          (ack > 100 ? '; more than the seed\'s 10-100x: with a slow database, write-through is bounded by writers x database latency while write-back runs at cache speed' : ''),
        verdict: ack >= 10 ? (inRange ? 'holds' : 'holds') : ack > 1 ? 'partly' : 'does not hold',
      });
    }
    const wt = contender(run.writePatterns, 'write-through');
    const db = contender(run.writePatterns, DATABASE_WRITE);
    if (wt && db) {
      const over = wt.latency.p50Us / db.latency.p50Us;
      const close = Math.abs(wt.latency.p50Us - db.latency.p50Us) <= Math.max(0.2 * db.latency.p50Us, 200);
      checks.push({
        claim: 'write-through latency',
        seed: SEED_CLAIMS.latency,
        dbLatencyMs: at,
        measured: `${run.label}: write-through set p50 ${fmtMs(wt.latency.p50Us)} (p99 ${fmtMs(wt.latency.p99Us)}) against one database write p50 ${fmtMs(db.latency.p50Us)} (p99 ${fmtMs(db.latency.p99Us)}): ${over.toFixed(2)}x`,
        verdict: close ? 'holds' : over < 2 ? 'partly' : 'does not hold',
      });
    } else {
      checks.push({ claim: 'write-through latency', seed: SEED_CLAIMS.latency, dbLatencyMs: at, measured: 'not measured', verdict: 'not measured' });
    }
    const wa = run.coldReads.find((r) => r.pattern === 'write-around');
    const others = run.coldReads.filter((r) => r.pattern !== 'write-around');
    if (wa) {
      checks.push({
        claim: 'write-around cold cache',
        seed: SEED_CLAIMS.coldCache,
        dbLatencyMs: at,
        measured:
          `${run.label}: the first read after a write missed ${pct(wa.missRate)} of the time with write-around (first read p50 ${wa.firstReadP50Ms.toFixed(2)} ms), ` +
          others.map((o) => `${pct(o.missRate)} with ${o.pattern} (${o.firstReadP50Ms.toFixed(2)} ms)`).join(', '),
        verdict: wa.missRate >= 0.99 && others.every((o) => o.missRate <= 0.01) ? 'holds' : wa.missRate > 0.5 ? 'partly' : 'does not hold',
      });
    }
    const rt = run.readStyles.find((r) => r.style.startsWith('read-through'));
    const asides = run.readStyles.filter((r) => r.style.startsWith('cache-aside'));
    const byHand = run.readStyles.find((r) => r.style.startsWith('cache-aside by hand'));
    if (rt && byHand) {
      // The seed's claim is about the code an application writes around a passive cache (its getArticle).
      const simpler = byHand.appCodeLines > rt.appCodeLines;
      checks.push({
        claim: 'read-through vs cache-aside',
        seed: SEED_CLAIMS.readThrough,
        dbLatencyMs: at,
        measured:
          `${run.label}: for ${rt.reads} reads of ${rt.distinctKeys} keys (10 callers per key at once), read-through took ${rt.appCodeLines} lines of application code and caused ${rt.loads} loads; ` +
          asides.map((a) => `${a.style}: ${a.appCodeLines} lines, ${a.loads} loads`).join('; ') +
          '. The seed\'s cache-aside code is longer and loads once per caller; a cache-aside helper with single-flight (getOrLoad) is as short as read-through',
        verdict: simpler ? 'holds' : 'does not hold',
      });
    }
  }
  return checks;
}

function skipReason(s: ScenarioResult): string {
  return s.kind === 'skipped' ? s.reason : 'no figures';
}

function pct(x: number): string {
  return `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;
}

const TABLE_PATTERNS: readonly { id: PatternId; writes: string | undefined; style: string | undefined }[] = [
  { id: 'write-through', writes: 'write-through', style: undefined },
  { id: 'write-back', writes: 'write-back', style: undefined },
  { id: 'write-around', writes: 'write-around', style: undefined },
  { id: 'read-through', writes: undefined, style: 'read-through' },
  { id: 'cache-aside', writes: undefined, style: 'cache-aside (cachewise lookup' },
];

export function seedTable(runs: readonly LatencyRun[]): SeedTableRow[] {
  return TABLE_PATTERNS.map(({ id, writes, style }) => {
    const seed = SEED_TABLE[id];
    return {
      pattern: seed.pattern,
      seedWriteLatency: seed.writeLatency,
      seedDurability: seed.durability,
      seedComplexity: seed.complexity,
      measured: runs.map((run) => {
        const c = writes === undefined ? undefined : contender(run.writePatterns, writes);
        const cold = writes === undefined ? undefined : run.coldReads.find((r) => r.pattern === writes);
        const s = style === undefined ? undefined : run.readStyles.find((r) => r.style.startsWith(style));
        return {
          label: run.label,
          writeP50Ms: c ? c.latency.p50Us / 1000 : null,
          writeP99Ms: c ? c.latency.p99Us / 1000 : null,
          opsPerSec: c ? c.median : null,
          firstReadMissRate: cold ? cold.missRate : null,
          appCodeLines: s ? s.appCodeLines : null,
        };
      }),
    };
  });
}
