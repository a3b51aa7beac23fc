/**
 * The measuring loop of the benchmarks in this folder: the one `cachewise bench` uses
 * (src/cli/bench/runner.ts), so both measure the same way. Contenders run interleaved in
 * rotating rounds after a warm-up each; per contender, ops/s per round (median, min, max) and an
 * HDR latency histogram; an optional `settle` runs unmeasured after each run of a contender.
 */
export {
  compare,
  median,
  runCount,
  runLoops,
  type Contender,
  type ContenderResult,
  type LatencySummary,
  type Progress,
  type RoundOptions,
} from '../../src/cli/bench/runner.js';
