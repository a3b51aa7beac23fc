#!/usr/bin/env node
// The `cachewise` command. It runs the compiled CLI: `npm run build` creates dist/.
let cli;
try {
  cli = await import('../dist/cli/main.js');
} catch (error) {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !String(error.message).includes('dist')) throw error;
  process.stderr.write('cachewise: dist/ is missing; run `npm run build` first\n');
  process.exit(1);
}
process.exitCode = await cli.run(process.argv.slice(2));
