/**
 * One load per key at a time in this process (contract 6). A write to a key detaches the load in
 * flight, so that a read starting after the write never joins a load that began before it.
 */
export class SingleFlight<T> {
  private readonly flights = new Map<string, Promise<T>>();

  run(key: string, load: () => Promise<T>): Promise<T> {
    const existing = this.flights.get(key);
    if (existing !== undefined) return existing;
    const flight = load().finally(() => {
      if (this.flights.get(key) === flight) this.flights.delete(key);
    });
    this.flights.set(key, flight);
    return flight;
  }

  /** The load in flight for `key`, if any. */
  get(key: string): Promise<T> | undefined {
    return this.flights.size === 0 ? undefined : this.flights.get(key);
  }

  /** Later reads of `key` start a new load instead of joining the current one. */
  detach(key: string): void {
    if (this.flights.size > 0) this.flights.delete(key);
  }
}
