/**
 * The shared servers of the project's machines (Redis, PostgreSQL). A suite that needs one asks
 * here: without the server, `npm test` skips the suite and says why; under CI (CI=true) a
 * missing server fails the run instead, because CI must not skip integration suites.
 */
import { Socket } from 'node:net';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const answers = new Map<string, Promise<boolean>>();

function portAnswers(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url);
  const key = `${hostname}:${port || defaultPort}`;
  let answer = answers.get(key);
  if (answer === undefined) {
    answer = (async () => {
      // A busy machine can hold the event loop long enough for a timer to fire before the
      // connect event is handled: a timeout counts only when the socket is really not open, and
      // a refusal is tried again before the server is called missing.
      for (let attempt = 0; attempt < 3; attempt++) {
        if (await connects(hostname.replace(/^\[|\]$/g, ''), Number(port || defaultPort))) return true;
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      return false;
    })();
    answers.set(key, answer);
  }
  return answer;
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(3000, () => done(socket.readyState === 'open'));
    socket.once('error', () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

/**
 * Resolves to false (skip) or true (run). Under CI, a missing server throws, failing the suite.
 * Use as: `const skip = await skipUnless('redis'); describe('...', { skip }, ...)`.
 */
export async function skipUnless(server: 'redis' | 'postgres'): Promise<false | string> {
  const ok = server === 'redis' ? await portAnswers(REDIS_URL, 6379) : await portAnswers(DATABASE_URL, 5432);
  if (ok) return false;
  const url = server === 'redis' ? REDIS_URL : DATABASE_URL;
  const reason = `${server} does not answer at ${url} (set ${server === 'redis' ? 'REDIS_URL' : 'DATABASE_URL'}, or start it: see services.md)`;
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`CI refuses to skip: ${reason}`);
  console.log(`# SKIPPED integration suite: ${reason}`);
  return reason;
}
