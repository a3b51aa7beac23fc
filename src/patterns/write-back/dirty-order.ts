/**
 * The keys of a write-back queue that have a write waiting to be sent, in the order they became
 * dirty.
 *
 * A Map keeps insertion order too, but the queue uses the order as a FIFO: it takes batches from
 * the front, and V8 leaves a deleted Map entry in place until the table is next resized, so every
 * walk from the front first steps over all the entries taken since. With tens of thousands of
 * writes queued, that walk was the largest cost of a flush. Here the order is an array with a
 * moving head, and each member knows its place in it (`slot`), so it leaves in O(1); the array is
 * cut once its dead front is the larger part.
 */

/** A member of the order: its absolute position in it, or -1 when it is not in it. */
export interface InOrder {
  slot: number;
}

export class DirtyOrder<M extends InOrder> {
  private slots: (M | undefined)[] = [];
  /** Absolute position of slots[0]. */
  private base = 0;
  /** First index of `slots` that may hold a member. */
  private head = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `member` last. */
  push(member: M): void {
    if (member.slot >= 0) throw new Error('DirtyOrder.push: already in the order');
    member.slot = this.base + this.slots.length;
    this.slots.push(member);
    this.count++;
  }

  /** Takes `member` out (nothing when it is not in). */
  remove(member: M): void {
    if (member.slot < 0) return;
    this.slots[member.slot - this.base] = undefined;
    member.slot = -1;
    this.count--;
  }

  /** The member that has been in the order longest. */
  first(): M | undefined {
    this.trimHead();
    return this.slots[this.head];
  }

  /** The members in order. Removing or adding members while walking is safe; compaction waits for the next walk. */
  *values(): Generator<M, void, undefined> {
    this.trimHead();
    // Absolute positions: a walk started before a compaction goes on where it was.
    for (let position = this.base + this.head; position < this.base + this.slots.length; position++) {
      const member = this.slots[position - this.base];
      if (member !== undefined) yield member;
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
