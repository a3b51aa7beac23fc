/**
 * Races of one twoTier instance with its own L2 calls, played step by step over an in-process
 * L2 whose calls the test holds and releases. L1 holds one entry, so that the tombstone an
 * invalidation leaves in it is evicted by the next entry: only the tier's own bookkeeping then
 * keeps an older answer out of L1.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, memoryTier, twoTier } from '../src/index.js';
import type { Tier, TierEntry } from '../src/tiers/tier.js';
import { ScheduledBusHub } from './helpers/scheduled-bus.js';

/** A memory tier whose chosen calls wait for `release()`: `get` after reading, `invalidate` before applying. */
class HeldTier {
  readonly tier: Tier;
  private holds: (() => void)[] = [];
  holdGets = false;
  holdInvalidations = false;

  constructor(readonly inner: Tier) {
    const held = () => new Promise<void>((resolve) => this.holds.push(resolve));
    const self = this;
    this.tier = new Proxy(inner, {
      get(target, property) {
        if (property === 'capabilities') return { ...target.capabilities, inProcess: false, shared: true };
        if (property === 'getSync') return undefined;
        if (property === 'get') {
          return async (key: string) => {
            const entry = await target.get(key);
            if (self.holdGets) await held();
            return entry;
          };
        }
        if (property === 'invalidate') {
          return async (key: string, version: number | undefined, ttlMs: number) => {
            if (self.holdInvalidations) await held();
            return target.invalidate(key, version, ttlMs);
          };
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  get waiting(): number {
    return this.holds.length;
  }

  release(): void {
    for (const resolve of this.holds.splice(0)) resolve();
  }
}

function setup() {
  const clock = new ManualClock();
  const l2 = new HeldTier(memoryTier({ clock }));
  const hub = new ScheduledBusHub(() => Promise.resolve());
  const tier = twoTier({ l1: memoryTier({ clock, maxEntries: 1 }), l2: l2.tier, bus: hub.bus('instance 1'), clock });
  const entry = (version: number, value: string): TierEntry => ({ kind: 'value', version, value, freshUntil: clock.now() + 60_000, staleUntil: clock.now() + 60_000 });
  return { clock, l2, tier, entry };
}

/** The value of a value entry; undefined for anything else. */
const valueOf = (entry: TierEntry | undefined): unknown => (entry?.kind === 'value' ? entry.value : undefined);

/** Lets pending promise callbacks run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('twoTier: an L2 answer older than a change of this instance stays out of L1', () => {
  test('an L2 read sent while an invalidation is on its way to L2 does not leave the old copy in L1', async () => {
    const { l2, tier, entry } = setup();
    await l2.inner.set('k', entry(1, 'old'));
    await settle(); // the bus confirms the subscription: L1 is trusted from here

    l2.holdInvalidations = true;
    const invalidation = tier.invalidate('k', 2, 60_000);
    await settle();
    assert.equal(l2.waiting, 1, 'the invalidation waits on its way to L2');
    // L2 still holds the old copy: a read now finds it, and L1 (which evicted the tombstone for
    // another key) keeps it.
    await l2.inner.set('x', entry(1, 'other'));
    await tier.get('x');
    assert.equal(valueOf(await tier.get('k')), 'old');
    l2.release();
    await invalidation;

    assert.notEqual(valueOf(await tier.get('k')), 'old', 'a read after the invalidation resolved returned the old copy');
  });

  test('an L2 read that found the old copy before a set of this instance, and answers after it, does not put the old copy into L1', async () => {
    const { l2, tier, entry } = setup();
    await l2.inner.set('k', entry(1, 'old'));
    await settle();

    l2.holdGets = true;
    const slowRead = tier.get('k');
    await settle();
    assert.equal(l2.waiting, 1, 'the read found the old copy and waits to answer');
    l2.holdGets = false;
    assert.equal(await tier.set('k', entry(2, 'new')), true);
    await l2.inner.set('x', entry(1, 'other'));
    await tier.get('x'); // L1 evicts the new entry
    l2.release();
    assert.equal(valueOf(await slowRead), 'old', 'the read itself began before the set');

    assert.equal(valueOf(await tier.get('k')), 'new', 'a read after the set resolved returned the old copy');
  });
});
