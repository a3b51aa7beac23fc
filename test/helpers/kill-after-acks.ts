/**
 * Crash tests: runs a child program that prints one number per acknowledged write, kills it with
 * SIGKILL once it has printed `acks` lines, and resolves to the numbers of the complete lines
 * (a line cut short by the kill was not an acknowledgement). Rejects if the child ends by itself.
 */
import { spawn } from 'node:child_process';

/** The parent's node flags (tsx), without the test runner's. */
const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--test'));

export function runUntilAcksThenKill(program: string, args: readonly string[], acks: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...execArgv, program, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let lines = 0;
    let killed = false;
    proc.stdout.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      out += text;
      lines += text.split('\n').length - 1;
      if (!killed && lines >= acks) {
        killed = true;
        proc.kill('SIGKILL');
      }
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`the child ended by itself (code ${code}): ${err}`));
      resolve(out.split('\n').slice(0, -1).map(Number));
    });
  });
}
