/** Bounds a promise in time: the caller never hangs on a slow tier or store. */
import { CachewiseError } from '../errors.js';

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return promise;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CachewiseError('E_TIMEOUT', `${what} did not answer within ${ms} ms`, 'check the server, or raise the timeout option', { details: { ms } })),
      ms,
    );
  });
  // A late rejection of the original promise must not become an unhandled rejection.
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
