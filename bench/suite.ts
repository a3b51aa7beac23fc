/**
 * The whole benchmark suite, from the TypeScript source (no build needed): the same run as
 * `cachewise bench`, with the same flags. See BENCHMARKS.md for what it measures.
 *
 *   node --import tsx bench/suite.ts [--quick] [--redis [url]] [--postgres [url]] [--out dir] [--json]
 */
import { run } from '../src/cli/main.js';

process.exitCode = await run(['bench', ...process.argv.slice(2)]);
