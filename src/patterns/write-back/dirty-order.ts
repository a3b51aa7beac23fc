/**
 * The pending writes of a write-back queue by key, in the order their keys became dirty.
 *
 * A Map keeps that order too (a set on an existing key keeps its place), but the queue uses it
 * as a FIFO: it takes batches from the front, and V8 leaves a deleted Map entry in place until
 * the table is next resized, so every walk from the front first steps over all the entries
 * taken since. With tens of thousands of writes queued, that walk was the largest cost of a
 * flush. Here the order is an array with a moving head: entries taken from the front are
 * behind the head, and the array is cut once the dead part is the larger one.
 */
export class DirtyOrder<E> {
  /** Key → absolute position in `slots` (offset by `base`). */
  private readonly positions = new Map<string, number>();
  private slots: (E | undefined)[] = [];
  /** Absolute position of slots[0]. */
  private base = 0;
  /** First index of `slots` that may hold an entry. */
  private head = 0;

  get size(): number {
    return this.positions.size;
  }

  get(key: string): E | undefined {
    const position = this.positions.get(key);
    return position === undefined ? undefined : this.slots[position - this.base];
  }

  has(key: string): boolean {
    return this.positions.has(key);
  }

  /** A key already here keeps its place (and its entry is replaced); a new key goes last. */
  set(key: string, entry: E): void {
    const position = this.positions.get(key);
    if (position !== undefined) {
      this.slots[position - this.base] = entry;
      return;
    }
    this.positions.set(key, this.base + this.slots.length);
    this.slots.push(entry);
  }

  delete(key: string): void {
    const position = this.positions.get(key);
    if (position === undefined) return;
    this.positions.delete(key);
    this.slots[position - this.base] = undefined;
  }

  /** The entry whose key has been dirty longest (of those set in order). */
  first(): E | undefined {
    this.trimHead();
    return this.slots[this.head];
  }

  /** The entries in order. Deleting or adding entries while walking is safe; compaction waits for the next walk. */
  *values(): Generator<E, void, undefined> {
    this.trimHead();
    // Absolute positions: a walk started before a compaction goes on where it was.
    for (let position = this.base + this.head; position < this.base + this.slots.length; position++) {
      const entry = this.slots[position - this.base];
      if (entry !== undefined) yield entry;
    }
  }

  private trimHead(): void {
    const slots = this.slots;
    while (this.head < slots.length && slots[this.head] === undefined) this.head++;
    if (this.head === slots.length) {
      // Empty: start over, so the array does not grow without end.
      this.base += slots.length;
      this.slots = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= slots.length) {
      this.base += this.head;
      this.slots = slots.slice(this.head);
      this.head = 0;
    }
  }
}
