/** The benchmarks' data: see src/cli/bench/workload.ts, shared with `cachewise bench`. */
export { keyOf, profile, type Profile } from '../../src/cli/bench/workload.js';
