/** Bounds a promise in time: the caller never hangs on a slow tier or store. */
import { CachewiseError } from '../errors.js';

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return promise;
  // One promise and one timer per call (it runs on every database write): no race, no finally.
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new CachewiseError('E_TIMEOUT', `${what} did not answer within ${ms} ms`, 'check the server, or raise the timeout option', { details: { ms } })),
      ms,
    );
    // Both outcomes are handled, so a late rejection of the original never goes unhandled.
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
