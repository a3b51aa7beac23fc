/**
 * The whole benchmark suite: the same run as `cachewise bench`, with the same flags, on the
 * built package in dist/ (see lib/cachewise.ts for why benchmarks never measure the source
 * through tsx). See BENCHMARKS.md for what it measures.
 *
 *   npm run build && node --import tsx bench/suite.ts [--quick] [--redis [url]] [--postgres [url]] [--out dir] [--json]
 */
import './lib/dist-is-fresh.js';
import { run } from '../dist/cli/main.js';

process.exitCode = await run(['bench', ...process.argv.slice(2)]);
