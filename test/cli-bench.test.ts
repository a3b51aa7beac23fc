/**
 * `cachewise bench --quick` on the embedded default (memory tier + SQLite, no server): it runs
 * every scenario, writes bench.json, bench.md and one self-contained bench.html, and the HTML's
 * charts render in a real browser (Debian's Chromium, driven by playwright-core; no browser is
 * downloaded). No timing is asserted: the figures depend on the machine. What is asserted is
 * what must hold on any machine: the report's shape, the counts (one load for a stampede of 1,000
 * callers, write-around's first read after a write a miss), and charts with their data points.
 *
 * Without /usr/bin/chromium the browser part is skipped with a message, except under CI=true,
 * where it fails: install it with `apt-get install chromium`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { BenchReport } from '../src/cli/bench/results.js';
import { run as runInProcess } from '../src/cli/main.js';

const CHROMIUM = '/usr/bin/chromium';
const root = new URL('..', import.meta.url).pathname;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface ChartFacts {
  readonly throughput: readonly { id: string; visible: boolean; bars: readonly { value: number; width: number }[] }[];
  readonly latency: readonly { id: string; visible: boolean; points: number; lines: readonly number[] }[];
  readonly seedRows: number;
  readonly claims: number;
}

/**
 * What the page shows, read in the page: every chart, whether it was laid out, and its data
 * points. Plain JavaScript text, evaluated as it is (a function would be rewritten by the
 * TypeScript loader, with helpers the page does not have).
 */
const CHART_FACTS = `(() => {
  const visible = (el) => { const box = el.getBoundingClientRect(); return box.width > 100 && box.height > 50; };
  return {
    throughput: [...document.querySelectorAll('svg.chart-throughput')].map((svg) => ({
      id: svg.getAttribute('data-chart'),
      visible: visible(svg),
      bars: [...svg.querySelectorAll('rect.bar')].map((bar) => ({ value: Number(bar.getAttribute('data-value')), width: bar.getBoundingClientRect().width })),
    })),
    latency: [...document.querySelectorAll('svg.chart-latency')].map((svg) => ({
      id: svg.getAttribute('data-chart'),
      visible: visible(svg),
      points: svg.querySelectorAll('circle.pt').length,
      lines: [...svg.querySelectorAll('polyline.series')].map((line) => (line.getAttribute('points') || '').trim().split(/\\s+/).length),
    })),
    seedRows: document.querySelectorAll('#seed-table tr').length,
    claims: document.querySelectorAll('#claims tr').length,
  };
})()`;

function runCli(args: readonly string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cachewise ${args.join(' ')} ran past ${timeoutMs} ms; stderr so far:\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('cachewise bench --quick on the embedded default', () => {
  let dir: string;
  let run: Run;
  let report: BenchReport;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cachewise-bench-test-'));
    run = await runCli(['bench', '--quick', '--json', '--out', dir], 120_000);
    if (run.code !== 0) throw new Error(`cachewise bench --quick exited ${run.code}; stderr:\n${run.stderr}`);
    report = JSON.parse(run.stdout) as BenchReport;
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  test('exits 0, prints JSON on stdout and progress on stderr, and writes bench.json, bench.md and bench.html', () => {
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /^\[1\/\d+\] memory hit path/m);
    assert.match(run.stderr, /wrote .*bench\.html/);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')), report);
    assert.match(readFileSync(join(dir, 'bench.md'), 'utf8'), /^# cachewise bench/);
    assert.ok(existsSync(join(dir, 'bench.html')));
  });

  test('the read scenarios ran with every peer; the Redis ones say they need --redis', () => {
    const byId = new Map(report.scenarios.map((s) => [s.id, s]));
    const hit = byId.get('memory-hit');
    assert.equal(hit?.kind, 'throughput');
    if (hit?.kind !== 'throughput') return;
    assert.deepEqual(hit.contenders.map((c) => c.name), ['cachewise', 'lru-cache (raw)', 'bentocache', 'cache-manager', 'cacheable', 'cachified']);
    for (const c of hit.contenders) {
      assert.equal(c.perRound.length, report.options.rounds, c.name);
      assert.ok(c.median > 0 && c.min <= c.median && c.median <= c.max, c.name);
      assert.ok(c.latency.curve.length > 0, c.name);
    }
    assert.equal(hit.ratios.length, hit.contenders.length - 1);
    assert.match(hit.notes.join(' '), /cachewise: \d+ hits, 0 misses, 0 loads/);
    assert.equal(byId.get('miss-load')?.kind, 'throughput');
    assert.deepEqual(byId.get('redis-hit'), { kind: 'skipped', id: 'redis-hit', title: 'Redis-tier hit', reason: 'needs --redis' });
    assert.equal(byId.get('two-tier-hit')?.kind, 'skipped');
  });

  test('a stampede of 1,000 callers on one missing key causes one load in cachewise, and every caller gets the value', () => {
    const s = report.scenarios.find((x) => x.id === 'stampede');
    assert.equal(s?.kind, 'stampede');
    if (s?.kind !== 'stampede') return;
    assert.equal(s.callers, 1000);
    const cw = s.rows.find((r) => r.name === 'cachewise')!;
    assert.deepEqual(cw.loadsPerRound, cw.loadsPerRound.map(() => 1));
    assert.equal(cw.wrongAnswers, 0);
    // The hand-written get-or-set over a raw LRU loads once per caller: the stampede is real.
    assert.equal(s.rows.find((r) => r.name === 'lru-cache (raw)')!.maxLoads, 1000);
  });

  test("the seed's claims are measured at the injected 50 ms and at the database's own latency", () => {
    assert.deepEqual(report.latencyRuns.map((r) => r.dbLatencyMs), [50, 0]);
    for (const run of report.latencyRuns) {
      assert.equal(run.writePatterns.kind, 'throughput', run.label);
      if (run.writePatterns.kind === 'throughput') {
        const names = run.writePatterns.contenders.map((c) => c.name);
        for (const name of ['database write (one row)', 'write-through', 'write-back', 'write-around']) assert.ok(names.includes(name), `${run.label}: ${name}`);
        // Durable write-back runs when the cache accepts a journal; otherwise a note says it was skipped.
        assert.ok(names.includes('write-back (journal)') || run.writePatterns.notes.some((n) => n.startsWith('durable write-back skipped')), run.label);
      }
      assert.equal(run.flush.kind, 'throughput', run.label);
      const cold = new Map(run.coldReads.map((r) => [r.pattern, r.missRate]));
      assert.equal(cold.get('write-around'), 1, `${run.label}: write-around's first read after a write misses`);
      assert.equal(cold.get('write-through'), 0);
      assert.equal(cold.get('write-back'), 0);
      const styles = new Map(run.readStyles.map((r) => [r.style, r]));
      assert.equal(styles.get('read-through (cachewise get)')?.appCodeLines, 3);
      assert.equal(styles.get('read-through (cachewise get)')?.loads, run.readStyles[0]!.distinctKeys, 'read-through loads each key once');
      assert.ok(styles.get("cache-aside by hand (the seed's getArticle)")!.appCodeLines > 3);
    }
    const claims = new Set(report.claims.map((c) => `${c.claim}@${c.dbLatencyMs}`));
    for (const claim of ['write-back throughput', 'write-through latency', 'write-around cold cache', 'read-through vs cache-aside']) {
      assert.ok(claims.has(`${claim}@50`) && claims.has(`${claim}@0`), claim);
    }
    assert.equal(report.seedTable.length, 5);
  });

  test('the HTML report renders its charts in headless Chromium, with data points, offline and without console errors', async (t) => {
    if (!existsSync(CHROMIUM)) {
      const message = `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to check the report in a browser`;
      if (process.env.CI === 'true') assert.fail(message);
      t.skip(message);
      return;
    }
    const html = readFileSync(join(dir, 'bench.html'), 'utf8');
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=|https?:\/\//, 'the report is self-contained');
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const problems: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(`console: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
      page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
      await page.route(/^(?!file:)/, (route) => {
        problems.push(`outside request: ${route.request().url()}`);
        return route.abort();
      });
      await page.goto(pathToFileURL(join(dir, 'bench.html')).href);
      const charts = (await page.evaluate(CHART_FACTS)) as ChartFacts;
      assert.deepEqual(problems, []);
      const ids = charts.throughput.map((c) => c.id);
      for (const id of ['memory-hit', 'miss-load', 'stampede', 'write-patterns-50', 'write-patterns-0', 'flush-50', 'flush-0']) assert.ok(ids.includes(id), `a throughput chart ${id} in ${ids.join(', ')}`);
      for (const chart of charts.throughput) {
        assert.ok(chart.visible, `${chart.id} is laid out`);
        assert.ok(chart.bars.length >= 2, `${chart.id} has bars`);
        for (const bar of chart.bars) assert.ok(bar.value > 0 && bar.width > 0, `${chart.id}: a bar of ${bar.value} drawn ${bar.width} px wide`);
      }
      assert.ok(charts.latency.some((c) => c.id === 'write-patterns-50-latency'), 'the latency distribution per write pattern');
      for (const chart of charts.latency) {
        assert.ok(chart.visible, `${chart.id} is laid out`);
        assert.ok(chart.points > 0 && chart.lines.length >= 2 && chart.lines.every((n) => n >= 5), `${chart.id}: ${chart.points} points, lines of ${chart.lines.join(', ')}`);
      }
      assert.equal(charts.seedRows, 2 + 5, "the seed's table: two header rows and five patterns");
      assert.equal(charts.claims, 1 + report.claims.length);
    } finally {
      await browser.close();
    }
  });
});

describe('cachewise bench: bad usage', () => {
  for (const [args, message] of [
    [['bench', '--rounds', '0'], /--rounds must be a whole number from 1 to 1000, got "0"/],
    [['bench', '--only', 'memory-hit,nothing'], /--only takes a comma-separated list of memory-hit, .*; got "memory-hit,nothing"/],
    [['bench', '--out', ''], /--out needs a directory path/],
    [['bench', '--redis', 'ftp://host'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
    [['bench', '--dir', 'x'], /--dir is an option of "demo", not of "bench"/],
    [['demo', '--out', 'x'], /--out is an option of "bench", not of "demo"/],
  ] as const) {
    test(`cachewise ${args.join(' ')} exits 2 before running anything, naming the flag`, async () => {
      let stdout = '';
      let stderr = '';
      const code = await runInProcess(args, { stdout: (text) => void (stdout += text), stderr: (text) => void (stderr += text) });
      assert.equal(code, 2);
      assert.match(stderr, message);
      assert.equal(stdout, '');
    });
  }
});
