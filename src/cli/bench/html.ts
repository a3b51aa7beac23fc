/**
 * The HTML report of `cachewise bench`: one self-contained file (inline CSS and SVG, no script,
 * nothing fetched), so it opens from disk, in a mail attachment or on a machine offline.
 *
 * Charts: per scenario, the throughput of each contender (median ops/s with a min-max whisker and
 * the ratio to the scenario's baseline) and its latency distribution (an HDR percentile plot:
 * latency on a log scale against 90%, 99%, 99.9%... spread evenly); the loads of a stampede;
 * then the seed's comparison table with the measured columns and the seed's claims checked.
 * Every data point is an SVG element carrying its value (data-value), so a test can read them.
 */
import { fmtMs, fmtRatio } from './claims.js';
import type { BenchReport, LatencyRun, ScenarioResult, StampedeScenario, ThroughputScenario } from './results.js';
import type { ContenderResult } from './runner.js';

const COLORS = ['#1b6ac9', '#d9480f', '#2b8a3e', '#862e9c', '#e67700', '#0b7285', '#c2255c', '#5c940d'];

export function renderHtml(report: BenchReport): string {
  const m = report.machine;
  const body = [
    `<h1>cachewise bench</h1>`,
    `<p class="meta">${esc(report.date)} · cachewise ${esc(report.version)} · ${m.cpus} CPUs (${esc(m.cpuModel)}) · Node ${esc(m.node)} · load ${m.loadAverage} at start · ` +
      `${esc(report.backend.tier)} + ${esc(report.backend.store)} · ${report.options.rounds} interleaved rounds of ${report.options.roundMs} ms, ${report.options.warmupMs} ms warm-up${report.options.quick ? ' (--quick)' : ''} · ${(report.durationMs / 1000).toFixed(1)} s</p>`,
    `<p class="meta">Command: <code>${esc(report.command)}</code></p>`,
    `<p>Read the <b>ratios</b>: contenders of one chart ran interleaved in rounds in the same process, so they saw the same machine. Absolute figures depend on the machine and on what else it ran.</p>`,
    section('The seed\'s comparison table, measured', seedTableHtml(report)),
    section('The seed\'s claims, checked', claimsHtml(report)),
    ...report.scenarios.map(scenarioHtml),
    ...report.latencyRuns.map(latencyRunHtml),
  ].join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cachewise bench ${esc(report.date.slice(0, 10))}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#212529}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #dee2e6;padding-bottom:.2rem}h3{margin:1.4rem 0 .3rem}
.meta{color:#495057;margin:.2rem 0}table{border-collapse:collapse;margin:.6rem 0;width:100%}
th,td{border:1px solid #dee2e6;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f1f3f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}.holds{color:#2b8a3e;font-weight:600}.partly{color:#e67700;font-weight:600}
.does-not-hold{color:#c92a2a;font-weight:600}.not-measured{color:#868e96}.skipped{color:#868e96;font-style:italic}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{flex:1 1 520px}svg text{font:11px system-ui,sans-serif;fill:#343a40}
pre{background:#f8f9fa;padding:.4rem;margin:0;font-size:12px;white-space:pre-wrap}.notes{color:#495057}
.met{color:#2b8a3e;font-weight:600}.below{color:#c92a2a;font-weight:600}
</style></head><body>
${body}
</body></html>
`;
}

function section(title: string, content: string): string {
  return `<section><h2>${esc(title)}</h2>\n${content}\n</section>`;
}

function seedTableHtml(report: BenchReport): string {
  const labels = report.latencyRuns.map((r) => r.label);
  const head =
    `<tr><th rowspan="2">Pattern</th><th colspan="3">The seed says</th>${labels.map((l) => `<th colspan="4">Measured: ${esc(l)}</th>`).join('')}</tr>` +
    `<tr><th>Write latency</th><th>Durability</th><th>Complexity</th>${labels.map(() => '<th>write p50 / p99</th><th>writes/s</th><th>first read after a write: miss</th><th>app code lines</th>').join('')}</tr>`;
  const rows = report.seedTable.map(
    (row) =>
      `<tr><th>${esc(row.pattern)}</th><td>${esc(row.seedWriteLatency)}</td><td>${esc(row.seedDurability)}</td><td>${esc(row.seedComplexity)}</td>` +
      row.measured
        .map(
          (m) =>
            `<td class="num">${m.writeP50Ms === null ? '-' : `${num(m.writeP50Ms)} / ${num(m.writeP99Ms!)} ms`}</td>` +
            `<td class="num">${m.opsPerSec === null ? '-' : int(m.opsPerSec)}</td>` +
            `<td class="num">${m.firstReadMissRate === null ? '-' : `${Math.round(m.firstReadMissRate * 100)}%`}</td>` +
            `<td class="num">${m.appCodeLines === null ? '-' : m.appCodeLines}</td>`,
        )
        .join('') +
      '</tr>',
  );
  return `<table id="seed-table">${head}${rows.join('')}</table>
<p class="notes">Write figures: set() at 16 concurrent writers (the "Write patterns" charts below). Read-through and cache-aside have no writes of their own; their rows count the application code of one read function (the "read-through versus cache-aside" tables).</p>`;
}

function claimsHtml(report: BenchReport): string {
  const rows = report.claims.map(
    (c) =>
      `<tr><td>${esc(c.claim)}</td><td><i>“${esc(c.seed)}”</i></td><td>${esc(c.measured)}</td><td class="${c.verdict.replace(/ /g, '-')}">${esc(c.verdict)}</td></tr>`,
  );
  return `<table id="claims"><tr><th>Claim</th><th>The seed</th><th>Measured</th><th>Verdict</th></tr>${rows.join('')}</table>`;
}

function scenarioHtml(s: ScenarioResult): string {
  if (s.kind === 'skipped') return section(s.title, `<p class="skipped" data-skipped="${esc(s.id)}">Skipped: ${esc(s.reason)}</p>`);
  if (s.kind === 'stampede') return section(s.title, stampedeHtml(s));
  return section(s.title, throughputHtml(s));
}

function throughputHtml(s: ThroughputScenario): string {
  const ratios = new Map(s.ratios.map((r) => [r.subject, r]));
  const rows = s.contenders.map((c) => {
    const r = ratios.get(c.name);
    return (
      `<tr><td>${esc(c.name)}${c.name === s.baseline ? ' (baseline)' : ''}</td><td class="num">${int(c.median)}</td><td class="num">${int(c.min)} – ${int(c.max)}</td>` +
      `<td class="num">${r ? `${fmtRatio(r.value)} <span class="meta">(${fmtRatio(r.roundMin)} – ${fmtRatio(r.roundMax)})</span>` : '1x'}</td>` +
      `<td class="num">${fmtMs(c.latency.p50Us)}</td><td class="num">${fmtMs(c.latency.p99Us)}</td><td class="num">${fmtMs(c.latency.p999Us)}</td><td class="num">${fmtMs(c.latency.maxUs)}</td></tr>`
    );
  });
  const targets = s.targets.length === 0 ? '' : `<ul>${s.targets.map((t) => `<li>Target: ${esc(t.description)}: ${fmtRatio(t.ratio)} — <span class="${t.met ? 'met' : 'below'}">${t.met ? 'met' : 'not met'}</span></li>`).join('')}</ul>`;
  return `<p>${esc(s.what)}.</p>
<div class="charts"><div class="chart">${throughputSvg(s)}</div><div class="chart">${latencySvg(s.id, s.contenders)}</div></div>
<table class="figures"><tr><th>contender</th><th>ops/s median</th><th>min – max of rounds</th><th>ratio to ${esc(s.baseline)} (per-round range)</th><th>p50</th><th>p99</th><th>p99.9</th><th>max</th></tr>${rows.join('')}</table>
${targets}${notesHtml(s.notes)}`;
}

function stampedeHtml(s: StampedeScenario): string {
  const rows = s.rows.map(
    (r) => `<tr><td>${esc(r.name)}</td><td class="num">${r.loadsPerRound.join(', ')}</td><td class="num">${r.maxLoads}</td><td class="num">${num(r.medianSettleMs)} ms</td><td class="num">${r.wrongAnswers}</td></tr>`,
  );
  const targets = s.targets.map((t) => `<li>Target: ${esc(t.description)}: ${t.ratio} — <span class="${t.met ? 'met' : 'below'}">${t.met ? 'met' : 'not met'}</span></li>`).join('');
  const bars = barChart(
    `stampede`,
    s.rows.map((r) => ({ name: r.name, value: r.maxLoads, min: Math.min(...r.loadsPerRound), max: r.maxLoads, label: `${r.maxLoads} load${r.maxLoads === 1 ? '' : 's'}` })),
    'loads of the missing key (most of any round)',
  );
  return `<p>${esc(s.what)}.</p><div class="charts"><div class="chart">${bars}</div></div>
<table><tr><th>contender</th><th>loads per round</th><th>most</th><th>all callers answered (median)</th><th>callers without a value</th></tr>${rows.join('')}</table>
<ul>${targets}</ul>${notesHtml(s.notes)}`;
}

function latencyRunHtml(run: LatencyRun): string {
  const parts = [scenarioHtml(run.writePatterns), scenarioHtml(run.flush)];
  const cold = run.coldReads.map(
    (r) => `<tr><td>${esc(r.pattern)}</td><td class="num">${r.keys}</td><td class="num">${Math.round(r.missRate * 100)}%</td><td class="num">${num(r.writeP50Ms)} ms</td><td class="num">${num(r.firstReadP50Ms)} ms</td></tr>`,
  );
  parts.push(
    section(
      `First read after a write, ${run.label}`,
      `<p>Each key written once, then read once (write-around: the seed's "cold cache after writes").</p><table class="cold"><tr><th>write pattern</th><th>keys</th><th>first read missed</th><th>write p50</th><th>first read p50</th></tr>${cold.join('')}</table>`,
    ),
  );
  const styles = run.readStyles.map(
    (r) =>
      `<tr><td>${esc(r.style)}</td><td class="num">${r.appCodeLines}</td><td class="num">${r.loads}</td><td class="num">${r.reads} reads of ${r.distinctKeys} keys in ${num(r.durationMs)} ms</td><td><pre>${esc(r.appCode)}</pre></td></tr>`,
  );
  parts.push(
    section(
      `Read-through versus cache-aside, ${run.label}`,
      `<p>The same reads (ten callers of each key at once, cold cache, every key in the database) by four pieces of application code; lines are counted from the function as it ran.</p><table class="styles"><tr><th>style</th><th>lines</th><th>database loads</th><th>work</th><th>the application's code</th></tr>${styles.join('')}</table>`,
    ),
  );
  return parts.join('\n');
}

function notesHtml(notes: readonly string[]): string {
  return notes.length === 0 ? '' : `<ul class="notes">${notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`;
}

function throughputSvg(s: ThroughputScenario): string {
  const ratios = new Map(s.ratios.map((r) => [r.subject, r.value]));
  return barChart(
    s.id,
    s.contenders.map((c) => ({ name: c.name, value: c.median, min: c.min, max: c.max, label: `${int(c.median)}/s${ratios.has(c.name) ? ` · ${fmtRatio(ratios.get(c.name)!)}` : ' · baseline'}` })),
    'ops/s, median of the rounds (whisker: min – max)',
  );
}

interface Bar {
  readonly name: string;
  readonly value: number;
  readonly min: number;
  readonly max: number;
  readonly label: string;
}

/** Horizontal bars; a log scale when the values span more than 20x. */
function barChart(id: string, bars: readonly Bar[], axis: string): string {
  const left = 190;
  const width = 520;
  const plot = width - left - 120;
  const rowH = 24;
  const height = bars.length * rowH + 34;
  const top = Math.max(...bars.map((b) => Math.max(b.max, b.value)), 1);
  const positive = bars.map((b) => b.value).filter((v) => v > 0);
  const bottom = positive.length > 0 ? Math.min(...positive) : 1;
  const log = top / bottom > 20;
  const floor = log ? Math.max(bottom / 2, 1e-9) : 0;
  const x = (v: number) => (log ? (Math.log10(Math.max(v, floor)) - Math.log10(floor)) / (Math.log10(top) - Math.log10(floor)) : v / top) * plot;
  const rows = bars.map((b, i) => {
    const y = 8 + i * rowH;
    const w = Math.max(1, x(b.value));
    return (
      `<g class="bar-row"><text x="${left - 6}" y="${y + 14}" text-anchor="end">${esc(truncate(b.name, 30))}</text>` +
      `<rect class="bar" data-name="${esc(b.name)}" data-value="${b.value}" x="${left}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${COLORS[i % COLORS.length]}"></rect>` +
      `<line class="whisker" x1="${(left + x(b.min)).toFixed(1)}" x2="${(left + x(b.max)).toFixed(1)}" y1="${y + rowH / 2 - 2}" y2="${y + rowH / 2 - 2}" stroke="#212529" stroke-width="1.5"></line>` +
      `<text x="${(left + Math.max(w, x(b.max)) + 5).toFixed(1)}" y="${y + 14}">${esc(b.label)}</text></g>`
    );
  });
  return `<svg class="chart-throughput" data-chart="${esc(id)}" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${esc(axis)}">
${rows.join('\n')}
<line x1="${left}" x2="${left}" y1="4" y2="${height - 24}" stroke="#868e96"></line>
<text x="${left}" y="${height - 8}">${esc(axis)}${log ? ', log scale' : ''}</text>
</svg>`;
}

/** "Nines" of a percentile: 0 at p0, 1 at p90, 2 at p99, 3 at p99.9, 4 at p99.99. */
function nines(p: number): number {
  return p >= 99.99 ? 4 : -Math.log10(1 - p / 100);
}

function latencySvg(id: string, contenders: readonly ContenderResult[]): string {
  const width = 520;
  const height = 260;
  const left = 56;
  const right = 130;
  const top = 10;
  const bottom = 36;
  const values = contenders.flatMap((c) => c.latency.curve.map(([, us]) => us)).filter((us) => us > 0);
  if (values.length === 0) return '';
  const lo = Math.log10(Math.min(...values));
  const hi = Math.max(Math.log10(Math.max(...values)), lo + 1);
  const xMax = 4.6;
  const px = (p: number) => left + ((p === 100 ? xMax : nines(p)) / xMax) * (width - left - right);
  const py = (us: number) => top + (1 - (Math.log10(Math.max(us, 10 ** lo)) - lo) / (hi - lo)) * (height - top - bottom);
  const series = contenders.map((c, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = c.latency.curve.filter(([, us]) => us > 0);
    const line = pts.map(([p, us]) => `${px(p).toFixed(1)},${py(us).toFixed(1)}`).join(' ');
    const dots = pts.map(([p, us]) => `<circle class="pt" data-series="${esc(c.name)}" data-p="${p}" data-value="${us}" cx="${px(p).toFixed(1)}" cy="${py(us).toFixed(1)}" r="2.5" fill="${color}"><title>${esc(c.name)} p${p}: ${fmtMs(us)}</title></circle>`);
    const legendY = top + 12 + i * 16;
    return `<polyline class="series" data-series="${esc(c.name)}" points="${line}" fill="none" stroke="${color}" stroke-width="1.6"></polyline>${dots.join('')}<text x="${width - right + 8}" y="${legendY}" fill="${color}">${esc(truncate(c.name, 22))}</text>`;
  });
  const xTicks = [
    [0, 'p0'],
    [50, 'p50'],
    [90, 'p90'],
    [99, 'p99'],
    [99.9, 'p99.9'],
    [99.99, 'p99.99'],
    [100, 'max'],
  ] as const;
  const yTicks: string[] = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    const us = 10 ** e;
    if (Math.log10(us) < lo - 1e-9 || Math.log10(us) > hi + 1e-9) continue;
    yTicks.push(`<line x1="${left}" x2="${width - right}" y1="${py(us).toFixed(1)}" y2="${py(us).toFixed(1)}" stroke="#e9ecef"></line><text x="${left - 4}" y="${(py(us) + 4).toFixed(1)}" text-anchor="end">${esc(fmtMs(us))}</text>`);
  }
  return `<svg class="chart-latency" data-chart="${esc(id)}-latency" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="latency distribution">
${yTicks.join('')}
${xTicks.map(([p, label]) => `<text x="${px(p).toFixed(1)}" y="${height - bottom + 14}" text-anchor="middle">${label}</text>`).join('')}
<line x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}" stroke="#868e96"></line>
${series.join('\n')}
<text x="${left}" y="${height - 6}">latency per operation (log scale) by percentile (HDR histogram)</text>
</svg>`;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-';
}

function num(n: number): string {
  if (!Number.isFinite(n)) return '-';
  return n >= 100 ? String(Math.round(n)) : n >= 1 ? n.toFixed(1) : n.toFixed(3);
}
