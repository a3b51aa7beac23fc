/**
 * The text form of the bench report: Markdown tables, printed on stdout and written as bench.md,
 * so that BENCHMARKS.md can quote a run as it was printed.
 */
import { fmtMs, fmtRatio } from './claims.js';
import type { BenchReport, LatencyRun, ScenarioResult } from './results.js';

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`# cachewise bench, ${report.date.slice(0, 10)}`);
  out.push('');
  out.push(`- Machine: ${m.cpus} CPUs (\`nproc\`), ${m.cpuModel}, ${m.memoryMb} MiB, ${m.platform} ${m.osRelease}; Node ${m.node}; 1-minute load ${m.loadAverage} at start`);
  out.push(`- Parts: ${report.backend.tier} + ${report.backend.store}`);
  out.push(`- Rounds: ${report.options.rounds} interleaved rounds of ${report.options.roundMs} ms per contender after ${report.options.warmupMs} ms of warm-up${report.options.quick ? ' (--quick)' : ''}; ${(report.durationMs / 1000).toFixed(0)} s in all`);
  out.push(`- Command: \`${report.command}\``);
  out.push('');
  out.push('## The seed\'s claims');
  out.push('');
  out.push('| claim | database | measured | verdict |');
  out.push('|---|---|---|---|');
  for (const c of report.claims) out.push(`| ${c.claim} | ${c.dbLatencyMs === 0 ? 'own latency' : `+${c.dbLatencyMs} ms`} | ${cell(c.measured)} | **${c.verdict}** |`);
  out.push('');
  out.push('## The seed\'s table, measured');
  out.push('');
  const labels = report.latencyRuns.map((r) => r.label);
  out.push(`| pattern | the seed: write latency | ${labels.map((l) => `${l}: write p50 / p99, writes/s, first read missed, app lines`).join(' | ')} |`);
  out.push(`|---|---|${labels.map(() => '---').join('|')}|`);
  for (const row of report.seedTable) {
    const cells = row.measured.map((x) =>
      [
        x.writeP50Ms === null ? null : `${num(x.writeP50Ms)} / ${num(x.writeP99Ms!)} ms`,
        x.opsPerSec === null ? null : `${Math.round(x.opsPerSec).toLocaleString('en-US')}/s`,
        x.firstReadMissRate === null ? null : `${Math.round(x.firstReadMissRate * 100)}% missed`,
        x.appCodeLines === null ? null : `${x.appCodeLines} lines`,
      ]
        .filter((v) => v !== null)
        .join(', '),
    );
    out.push(`| ${row.pattern} | ${row.seedWriteLatency} | ${cells.join(' | ')} |`);
  }
  out.push('');
  for (const s of report.scenarios) out.push(...scenario(s));
  for (const run of report.latencyRuns) out.push(...latencyRun(run));
  return `${out.join('\n')}\n`;
}

function scenario(s: ScenarioResult): string[] {
  const out = [`## ${s.title}`, ''];
  if (s.kind === 'skipped') return [...out, `Skipped: ${s.reason}`, ''];
  out.push(`${s.what}.`, '');
  if (s.kind === 'stampede') {
    out.push('| contender | loads per round | most | all answered (median) | callers without a value |', '|---|---:|---:|---:|---:|');
    for (const r of s.rows) out.push(`| ${r.name} | ${r.loadsPerRound.join(', ')} | ${r.maxLoads} | ${num(r.medianSettleMs)} ms | ${r.wrongAnswers} |`);
  } else {
    const ratios = new Map(s.ratios.map((r) => [r.subject, r]));
    out.push(`| contender | ops/s median (min – max) | ratio to ${s.baseline} (per-round range) | p50 | p99 | p99.9 |`, '|---|---:|---:|---:|---:|---:|');
    for (const c of s.contenders) {
      const r = ratios.get(c.name);
      out.push(
        `| ${c.name} | ${int(c.median)} (${int(c.min)} – ${int(c.max)}) | ${r ? `**${fmtRatio(r.value)}** (${fmtRatio(r.roundMin)} – ${fmtRatio(r.roundMax)})` : 'baseline'} | ${fmtMs(c.latency.p50Us)} | ${fmtMs(c.latency.p99Us)} | ${fmtMs(c.latency.p999Us)} |`,
      );
    }
  }
  out.push('');
  for (const t of s.targets) out.push(`- Target, ${t.description}: ${s.kind === 'stampede' ? t.ratio : fmtRatio(t.ratio)}, **${t.met ? 'met' : 'not met'}**`);
  for (const n of s.notes) out.push(`- ${n}`);
  out.push('');
  return out;
}

function latencyRun(run: LatencyRun): string[] {
  const out = [...scenario(run.writePatterns), ...scenario(run.flush)];
  out.push(`## First read after a write, ${run.label}`, '', '| write pattern | keys | first read missed | write p50 | first read p50 |', '|---|---:|---:|---:|---:|');
  for (const r of run.coldReads) out.push(`| ${r.pattern} | ${r.keys} | ${Math.round(r.missRate * 100)}% | ${num(r.writeP50Ms)} ms | ${num(r.firstReadP50Ms)} ms |`);
  out.push('', `## Read-through versus cache-aside, ${run.label}`, '', '| application code | lines | database loads | reads (keys) | time |', '|---|---:|---:|---:|---:|');
  for (const r of run.readStyles) out.push(`| ${r.style} | ${r.appCodeLines} | ${r.loads} | ${r.reads} (${r.distinctKeys}) | ${num(r.durationMs)} ms |`);
  out.push('');
  return out;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-';
}

function num(n: number): string {
  if (!Number.isFinite(n)) return '-';
  return n >= 100 ? String(Math.round(n)) : n >= 1 ? n.toFixed(1) : n.toFixed(3);
}
