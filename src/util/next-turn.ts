/** Resolves on a later turn of the event loop, after pending I/O callbacks had theirs. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
