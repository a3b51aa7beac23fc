/** Capped exponential backoff with jitter: half the delay fixed, half random ("equal jitter"). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exponential = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return exponential / 2 + (exponential / 2) * random();
}
