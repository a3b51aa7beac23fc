/**
 * Refuses to measure a stale build: every benchmark imports cachewise from dist/ (see
 * cachewise.ts), so a dist/ older than a file of src/ would measure code that no longer exists.
 * Imported first by cachewise.ts, so it runs before any benchmark starts.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const built = join(root, 'dist', 'index.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

if (!existsSync(built) || statSync(built).mtimeMs < newestMtime(join(root, 'src'))) {
  process.stderr.write(`benchmarks measure the built package, and ${existsSync(built) ? 'dist/ is older than src/' : 'dist/ is missing'}: run \`npm run build\` first (the npm bench scripts do)\n`);
  process.exit(2);
}
