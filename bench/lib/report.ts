/**
 * What a benchmark prints: a table of every contender at every setting (median ops/s of the
 * rounds, with min and max, and latency percentiles), then the ratio of the library to the raw
 * client measured in the same run, per setting. `--json` prints the same as one JSON document.
 *
 * Ratios are the figures to read: absolute ops/s depend on the machine and on whatever else it
 * runs, while a ratio compares contenders that ran interleaved, under the same conditions.
 */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { ratiosTo as sharedRatiosTo, type Ratio as SharedRatio } from '../../src/cli/bench/runner.js';
import type { ContenderResult, RoundOptions } from './runner.js';

/** One setting (e.g. concurrency 16 with auto-pipelining on) and its contenders' results. */
export interface CaseResult {
  readonly setting: Readonly<Record<string, string | number>>;
  readonly contenders: readonly ContenderResult[];
  /** Every other contender against the baseline (see ratiosTo). */
  readonly ratios: readonly Ratio[];
}

/** subject / baseline (see the shared runner's Ratio), with the target it is read against. */
export interface Ratio extends SharedRatio {
  readonly target: number;
}

export interface MachineInfo {
  readonly date: string;
  readonly nproc: number;
  readonly cpuModel: string;
  readonly node: string;
  readonly loadAverageAtStart: number;
}

export interface BenchReport {
  readonly benchmark: string;
  readonly title: string;
  readonly machine: MachineInfo;
  readonly options: Omit<RoundOptions, 'concurrency'> & Readonly<Record<string, unknown>>;
  readonly cases: readonly CaseResult[];
  /** Facts checked during the run (hit rates, round trips); printed under the tables. */
  readonly notes: readonly string[];
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString(),
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    loadAverageAtStart: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}

/** The ratio of every contender but `baseline` to `baseline`, in the contenders' order, with `target`. */
export function ratiosTo(results: readonly ContenderResult[], baseline: string, target: number): Ratio[] {
  return sharedRatiosTo(results, baseline).map((ratio) => ({ ...ratio, target }));
}

/** Prints `report` as tables, or as JSON with `json`. */
export function printReport(report: BenchReport, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  process.stdout.write(renderReport(report));
}

export function renderReport(report: BenchReport): string {
  const { machine, options } = report;
  const settingNames = Object.keys(report.cases[0]?.setting ?? {});
  const out: string[] = [];
  out.push(`${report.title}`);
  out.push(
    `${machine.date.slice(0, 10)}, nproc ${machine.nproc}, ${machine.cpuModel}, Node ${machine.node}, load ${machine.loadAverageAtStart}; ` +
      `${options.rounds} interleaved rounds of ${options.roundMs} ms per contender, ${options.warmupMs} ms warm-up`,
  );
  out.push('');
  const rows: string[][] = [[...settingNames, 'contender', 'ops/s median', 'min', 'max', 'p50 µs', 'p99 µs']];
  for (const c of report.cases) {
    for (const r of c.contenders) {
      rows.push([...settingNames.map((n) => String(c.setting[n])), r.name, int(r.median), int(r.min), int(r.max), us(r.latency.p50Us), us(r.latency.p99Us)]);
    }
  }
  out.push(table(rows, settingNames.length + 1));
  out.push('');
  const first = report.cases[0]?.ratios[0];
  if (first) {
    out.push('Ratios (median ops/s over the baseline\'s median ops/s, measured in the same rounds)');
    const ratioRows: string[][] = [[...settingNames, 'contender', 'baseline', 'ratio', 'per-round min', 'per-round max', 'target']];
    for (const c of report.cases) {
      for (const r of c.ratios) {
        ratioRows.push([
          ...settingNames.map((n) => String(c.setting[n])),
          r.subject,
          r.baseline,
          `${r.value.toFixed(2)}x`,
          `${r.roundMin.toFixed(2)}x`,
          `${r.roundMax.toFixed(2)}x`,
          r.target > 0 ? `${r.target}x ${r.value >= r.target ? 'met' : 'below'}` : '-',
        ]);
      }
    }
    out.push(table(ratioRows, settingNames.length + 2));
  }
  if (report.notes.length > 0) {
    out.push('');
    for (const note of report.notes) out.push(`- ${note}`);
  }
  out.push('');
  return out.join('\n');
}

/** Right-aligns every column from `firstNumeric` on; header underlined. */
function table(rows: readonly string[][], firstNumeric: number): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, col) => (col >= firstNumeric ? cell.padStart(widths[col]!) : cell.padEnd(widths[col]!)))
      .join('  ')
      .trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

function us(n: number): string {
  return Number.isNaN(n) ? '-' : n.toFixed(1);
}

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
