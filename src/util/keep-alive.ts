/**
 * Keeps the process alive while someone awaits work that only unref'd timers drive (a flush, a
 * drain on close, a writer waiting for room): without it, `await cache.close()` at the end of a
 * script could let Node exit with the drain unfinished.
 */
let holders = 0;
let handle: NodeJS.Timeout | undefined;

/** Holds the event loop open until the returned function is called (once). */
export function keepAlive(): () => void {
  holders++;
  handle ??= setInterval(() => undefined, 1 << 30);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders === 0 && handle !== undefined) {
      clearInterval(handle);
      handle = undefined;
    }
  };
}
