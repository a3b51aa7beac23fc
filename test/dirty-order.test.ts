/**
 * DirtyOrder, the write-back queue's keys in first-dirty order, against the Map order it
 * replaces: used as the queue uses it (a Map from key to member, the member in the order while
 * its key is dirty), for any sequence of sets, deletes and walks (long enough to cut its array
 * many times, and with walks that change it as they go), it holds the same entries in the same
 * order as a Map.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DirtyOrder, type InOrder } from '../src/patterns/write-back/dirty-order.js';

interface Member<V> extends InOrder {
  value: V;
}

/** A keyed order as the write-back queue keeps one: a member per key, in the order while set. */
class KeyedOrder<V> {
  private readonly members = new Map<string, Member<V>>();
  private readonly order = new DirtyOrder<Member<V>>();

  get size(): number {
    assert.equal(this.order.size, this.members.size);
    return this.order.size;
  }

  get(key: string): V | undefined {
    return this.members.get(key)?.value;
  }

  has(key: string): boolean {
    return this.members.has(key);
  }

  /** A key already here keeps its place; a new key goes last. */
  set(key: string, value: V): void {
    const member = this.members.get(key);
    if (member !== undefined) {
      member.value = value;
      return;
    }
    const added: Member<V> = { value, slot: -1 };
    this.members.set(key, added);
    this.order.push(added);
  }

  delete(key: string): void {
    const member = this.members.get(key);
    if (member === undefined) return;
    this.members.delete(key);
    this.order.remove(member);
    this.order.remove(member); // a second remove changes nothing
  }

  first(): V | undefined {
    return this.order.first()?.value;
  }

  *values(): Generator<V> {
    for (const member of this.order.values()) yield member.value;
  }
}

type Op = { kind: 'set'; key: number; value: number } | { kind: 'fill'; count: number } | { kind: 'delete'; key: number } | { kind: 'takeFront'; count: number } | { kind: 'walkAndChange'; key: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 3_000 }), value: fc.integer() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 3_000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('takeFront' as const), count: fc.integer({ min: 1, max: 2_000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('walkAndChange' as const), key: fc.integer({ min: 0, max: 3_000 }) }) },
  // Many new keys at once: taking from the front then leaves thousands of dead slots before a live one.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fill' as const), count: fc.integer({ min: 500, max: 3_000 }) }) },
);

function check(order: KeyedOrder<number>, model: Map<string, number>): void {
  assert.equal(order.size, model.size);
  assert.deepEqual([...order.values()], [...model.values()]);
  assert.equal(order.first(), model.values().next().value);
}

test('DirtyOrder holds what a Map holds, in the same order, through any sets, deletes and walks', () => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 300 }), (ops) => {
      const order = new KeyedOrder<number>();
      const model = new Map<string, number>();
      let fresh = 0;
      for (const o of ops) {
        if (o.kind === 'fill') {
          for (let i = 0; i < o.count; i++, fresh++) {
            order.set(`f${fresh}`, fresh);
            model.set(`f${fresh}`, fresh);
          }
        } else if (o.kind === 'set') {
          order.set(`k${o.key}`, o.value);
          model.set(`k${o.key}`, o.value);
        } else if (o.kind === 'delete') {
          order.delete(`k${o.key}`);
          model.delete(`k${o.key}`);
        } else if (o.kind === 'takeFront') {
          // What the queue does: walk from the front, then delete what it took.
          const taken: string[] = [];
          for (const [key] of model) {
            if (taken.length >= o.count) break;
            taken.push(key);
          }
          const walked: number[] = [];
          for (const value of order.values()) {
            if (walked.length >= o.count) break;
            walked.push(value);
          }
          assert.deepEqual(walked, taken.map((key) => model.get(key)));
          for (const key of taken) {
            order.delete(key);
            model.delete(key);
          }
        } else {
          // Delete the first entry and re-add a key while a walk is under way, as a Map allows.
          const seen: number[] = [];
          const expected: number[] = [];
          let step = 0;
          const mapWalk = model.values();
          for (const value of order.values()) {
            seen.push(value);
            const next = mapWalk.next();
            expected.push(next.value as number);
            if (step++ === 0) {
              const firstKey = model.keys().next().value as string;
              order.delete(firstKey);
              model.delete(firstKey);
              order.set(`k${o.key}`, -1);
              model.set(`k${o.key}`, -1);
              // A walk started before the changes may visit keys added during it, like a Map's.
              void order.first();
            }
          }
          for (let next = mapWalk.next(); !next.done; next = mapWalk.next()) expected.push(next.value);
          assert.deepEqual(seen, expected);
        }
        assert.equal(order.size, model.size);
        assert.equal(order.has(`k${ops.length % 3_000}`), model.has(`k${ops.length % 3_000}`));
      }
      check(order, model);
      for (const key of model.keys()) assert.equal(order.get(key), model.get(key));
    }),
    { numRuns: 200 },
  );
});

test('DirtyOrder: once emptied it starts over, and a key set again after its delete goes last', () => {
  const order = new KeyedOrder<string>();
  for (let i = 0; i < 5_000; i++) order.set(`k${i}`, `v${i}`);
  for (let i = 0; i < 5_000; i++) order.delete(`k${i}`);
  assert.equal(order.first(), undefined);
  assert.deepEqual([...order.values()], []);
  order.set('a', '1');
  order.set('b', '2');
  order.set('a', '3'); // keeps its place
  order.delete('a');
  order.set('a', '4'); // goes last
  assert.deepEqual([...order.values()], ['2', '4']);
  assert.equal(order.get('a'), '4');
  assert.equal(order.get('missing'), undefined);
});

test('DirtyOrder refuses a member that is already in it', () => {
  const order = new DirtyOrder<InOrder>();
  const member = { slot: -1 };
  order.push(member);
  assert.throws(() => order.push(member), /already in the order/);
  order.remove(member);
  assert.equal(member.slot, -1);
  assert.equal(order.size, 0);
});
