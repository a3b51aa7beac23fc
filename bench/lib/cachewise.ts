/**
 * cachewise as its users run it: the compiled package in dist/, not the TypeScript source.
 * tsx compiles the source with esbuild's keepNames, which wraps every function created at run
 * time in a naming call (`__name`). That cost is not in the package, and on the write-back path
 * it took 10-20% off the measured throughput. So benchmarks import the library from here; the
 * harness (bench/lib, src/cli/bench) may stay TypeScript. `npm ci` builds dist/ (prepare), and
 * so does `npm run build`; a dist/ older than src/ stops the run (dist-is-fresh.ts).
 */
import './dist-is-fresh.js';

export * from '../../dist/index.js';
