/**
 * When a table that keeps its dead entries (instead of deleting each at once, a random access
 * into a large table) should be rebuilt without them: once they outnumber the live ones four to
 * one, and are not a handful. The rebuild then costs a small multiple of the entries that died
 * since the last one.
 */
const MIN_DEAD = 4096;
const DEAD_PER_LIVE = 4;

export function worthRebuilding(dead: number, live: number): boolean {
  return dead >= MIN_DEAD && dead >= DEAD_PER_LIVE * live;
}
