/**
 * One load per key at a time in this process (contract 6). A write to a key detaches the load in
 * flight, so that a read starting after the write never joins a load that began before it.
 *
 * A write in another process cannot detach it: a read then tells what it saw in the tier (the
 * `seen` version: of the tombstone or expired entry it missed on, 0 for nothing), and joins only a
 * load that began on the same view. A write that resolved since that load began left a newer
 * entry in the tier, so a read that began after it sees another version and loads again.
 */
interface Flight<T> {
  readonly promise: Promise<T>;
  readonly seen: number | undefined;
}

export class SingleFlight<T> {
  private readonly flights = new Map<string, Flight<T>>();

  /** Joins the load in flight for `key` (begun on the same `seen`, when given), or starts `load`. */
  run(key: string, load: () => Promise<T>, seen?: number): Promise<T> {
    const existing = this.get(key, seen);
    if (existing !== undefined) return existing;
    const flight: Flight<T> = {
      promise: load().finally(() => {
        if (this.flights.get(key) === flight) this.flights.delete(key);
      }),
      seen,
    };
    this.flights.set(key, flight);
    return flight.promise;
  }

  /** The load in flight for `key`, if any (and, when `seen` is given, begun on the same view). */
  get(key: string, seen?: number): Promise<T> | undefined {
    if (this.flights.size === 0) return undefined;
    const flight = this.flights.get(key);
    if (flight === undefined || (seen !== undefined && flight.seen !== seen)) return undefined;
    return flight.promise;
  }

  /** Later reads of `key` start a new load instead of joining the current one. */
  detach(key: string): void {
    if (this.flights.size > 0) this.flights.delete(key);
  }
}
