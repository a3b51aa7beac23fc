/**
 * Writes that write-back gave up on (contract 5): kept per entry with the reason, never silently
 * dropped. The list in memory is bounded; the count is not.
 */
export interface DeadLetter {
  readonly collection: string;
  readonly key: string;
  readonly op: 'set' | 'delete';
  readonly version: number;
  /** The value as JSON text (undefined for a delete). */
  readonly json: string | undefined;
  readonly reason: string;
  readonly attempts: number;
  /** When it was dead-lettered (ms since the epoch). */
  readonly at: number;
}

export class DeadLetterList {
  private readonly items: DeadLetter[] = [];
  total = 0;

  constructor(private readonly limit = 10_000) {}

  add(letter: DeadLetter): void {
    this.total++;
    this.items.push(letter);
    if (this.items.length > this.limit) this.items.shift();
  }

  find(collection: string, key: string, version: number): DeadLetter | undefined {
    return this.items.find((item) => item.collection === collection && item.key === key && item.version === version);
  }

  list(collection?: string): readonly DeadLetter[] {
    return collection === undefined ? [...this.items] : this.items.filter((item) => item.collection === collection);
  }
}
