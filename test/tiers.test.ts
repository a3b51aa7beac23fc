import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, memoryTier } from '../src/index.js';
import { tierConformance } from './conformance/tier-conformance.js';

tierConformance('memoryTier', async () => {
  const tier = memoryTier();
  return { tier, now: () => Date.now(), cleanup: () => tier.close() };
});

test('memoryTier evicts least recently used entries past maxEntries', async () => {
  const clock = new ManualClock();
  const tier = memoryTier({ maxEntries: 3, clock });
  const entry = (v: number) => ({ kind: 'value' as const, version: v, value: v, freshUntil: clock.now() + 1000, staleUntil: clock.now() + 1000 });
  for (let i = 1; i <= 5; i++) await tier.set(`c:${i}`, entry(i));
  assert.deepEqual((await tier.getMany(['c:1', 'c:2', 'c:3', 'c:4', 'c:5'])).map((e) => e?.version), [undefined, undefined, 3, 4, 5]);
});

test('memoryTier drops entries once their staleUntil passes on the injected clock', async () => {
  const clock = new ManualClock();
  const tier = memoryTier({ clock });
  await tier.set('c:a', { kind: 'value', version: 1, value: 1, freshUntil: clock.now() + 100, staleUntil: clock.now() + 200 });
  clock.advance(150);
  assert.equal((await tier.get('c:a'))?.version, 1, 'kept while stale');
  clock.advance(100);
  assert.equal(await tier.get('c:a'), undefined);
});

test('memoryTier leases expire', async () => {
  const clock = new ManualClock();
  const tier = memoryTier({ clock });
  const lease = await tier.lease('c:a', 1000);
  clock.advance(1001);
  assert.equal(await tier.fill('c:a', { kind: 'value', version: 1, value: 1, freshUntil: clock.now() + 10, staleUntil: clock.now() + 10 }, lease), false);
});

test('memoryTier refuses a bad maxEntries', () => {
  assert.throws(() => memoryTier({ maxEntries: 0 }), /E_INVALID_OPTION/);
});

test("memoryTier keeps a value entry's value, not its JSON text: parsed when first read, the same object after", async () => {
  const clock = new ManualClock();
  const tier = memoryTier({ clock });
  let parses = 0;
  const json = '{"n":1}';
  const entry = {
    kind: 'value' as const,
    version: 1,
    json,
    get value() {
      parses++;
      return Object.freeze({ n: 1 });
    },
    freshUntil: clock.now() + 1000,
    staleUntil: clock.now() + 1000,
  };
  await tier.set('c:a', entry);
  assert.equal(parses, 0, 'storing the entry does not parse it');
  const kept = await tier.get('c:a');
  assert.ok(kept !== undefined && kept.kind === 'value');
  assert.equal('json' in kept, false, 'the text is not kept beside the value');
  const first = kept.value;
  assert.deepEqual(first, { n: 1 });
  const again = await tier.get('c:a');
  assert.equal(again?.kind === 'value' ? again.value : undefined, first, 'one object for every reader');
  assert.equal(parses, 1);
});
