/**
 * What every Tier must do, run over each implementation: versioned set, tombstones, leases that
 * any write revokes, compare-and-remove. A third-party tier can run the same suite.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Tier, TierEntry } from '../../src/tiers/tier.js';

export interface TierFixture {
  tier: Tier;
  /** Milliseconds since the epoch as the tier sees them. */
  now(): number;
  cleanup(): Promise<void>;
}

export function tierConformance(name: string, makeTier: () => Promise<TierFixture>): void {
  const value = (version: number, v: unknown = version, now = Date.now()): TierEntry => ({ kind: 'value', version, value: v, freshUntil: now + 60_000, staleUntil: now + 60_000 });

  async function withTier(run: (tier: Tier, now: number) => Promise<void>): Promise<void> {
    const fixture = await makeTier();
    try {
      await run(fixture.tier, fixture.now());
    } finally {
      await fixture.cleanup();
    }
  }

  describe(`Tier conformance: ${name}`, () => {
    test('get of a missing key is undefined; set then get returns the entry', () =>
      withTier(async (tier, now) => {
        assert.equal(await tier.get('c:missing'), undefined);
        assert.equal(await tier.set('c:a', value(5, { x: 1 }, now)), true);
        const entry = await tier.get('c:a');
        assert.equal(entry?.kind, 'value');
        assert.equal(entry?.version, 5);
        assert.deepEqual(entry?.kind === 'value' ? entry.value : undefined, { x: 1 });
      }));

    test('an older or equal version never replaces a newer one', () =>
      withTier(async (tier, now) => {
        await tier.set('c:a', value(10, 'ten', now));
        assert.equal(await tier.set('c:a', value(9, 'nine', now)), false);
        assert.equal(await tier.set('c:a', value(10, 'other ten', now)), false);
        const entry = await tier.get('c:a');
        assert.equal(entry?.kind === 'value' ? entry.value : undefined, 'ten');
        assert.equal(await tier.set('c:a', value(11, 'eleven', now)), true);
      }));

    test('versions never regress under any order of sets, invalidations and fills', () =>
      withTier(async (tier, now) => {
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.record({ op: fc.constantFrom('set', 'invalidate', 'fill'), version: fc.integer({ min: 1, max: 50 }) }), { maxLength: 30 }),
            async (ops) => {
              await tier.clear();
              let floor = 0;
              for (const op of ops) {
                if (op.op === 'set') await tier.set('c:k', value(op.version, op.version, now));
                else if (op.op === 'invalidate') await tier.invalidate('c:k', op.version, 60_000);
                else {
                  const lease = await tier.lease('c:k', 60_000);
                  await tier.fill('c:k', value(op.version, op.version, now), lease);
                }
                const entry = await tier.get('c:k');
                const version = entry?.version ?? 0;
                assert.ok(version >= floor, `version went from ${floor} to ${version}`);
                floor = version;
              }
            },
          ),
          { numRuns: 100 },
        );
      }));

    test('a tombstone blocks older values and admits its own version or newer', () =>
      withTier(async (tier, now) => {
        await tier.set('c:a', value(5, 'five', now));
        await tier.invalidate('c:a', 7, 60_000);
        assert.equal((await tier.get('c:a'))?.kind, 'tombstone');
        assert.equal(await tier.set('c:a', value(6, 'six', now)), false);
        assert.equal(await tier.set('c:a', value(7, 'seven', now)), true);
      }));

    test('invalidate without a version tombstones the cached version; it never removes a newer entry', () =>
      withTier(async (tier, now) => {
        await tier.set('c:a', value(5, 'five', now));
        await tier.invalidate('c:a', undefined, 60_000);
        const entry = await tier.get('c:a');
        assert.equal(entry?.kind, 'tombstone');
        assert.equal(entry?.version, 5);
        await tier.set('c:b', value(9, 'nine', now));
        await tier.invalidate('c:b', 8, 60_000);
        assert.equal((await tier.get('c:b'))?.kind, 'value');
      }));

    test('a fill under a valid lease applies; any write or invalidation since the lease revokes it', () =>
      withTier(async (tier, now) => {
        const lease = await tier.lease('c:a', 60_000);
        assert.equal(await tier.fill('c:a', value(3, 'loaded', now), lease), true);

        const revokedBySet = await tier.lease('c:b', 60_000);
        await tier.set('c:b', value(4, 'written', now));
        assert.equal(await tier.fill('c:b', value(3, 'old', now), revokedBySet), false);

        const revokedByInvalidate = await tier.lease('c:c', 60_000);
        await tier.invalidate('c:c', 1, 60_000);
        assert.equal(await tier.fill('c:c', value(5, 'old', now), revokedByInvalidate), false);
        assert.equal((await tier.get('c:c'))?.kind, 'tombstone');
      }));

    test('a lease is used once and only for its key', () =>
      withTier(async (tier, now) => {
        const lease = await tier.lease('c:a', 60_000);
        assert.equal(await tier.fill('c:other', value(1, 'x', now), lease), false);
        assert.equal(await tier.fill('c:a', value(1, 'x', now), lease), true);
        assert.equal(await tier.fill('c:a', value(2, 'y', now), lease), false, 'consumed');
      }));

    test('a fill with version 0 (unknown) takes the cached version, so any later write replaces it', () =>
      withTier(async (tier, now) => {
        await tier.invalidate('c:a', 8, 60_000);
        const lease = await tier.lease('c:a', 60_000);
        assert.equal(await tier.fill('c:a', value(0, 'loaded', now), lease), true);
        assert.equal((await tier.get('c:a'))?.version, 8);
        assert.equal(await tier.set('c:a', value(9, 'written', now)), true);
      }));

    test('a fill with version 0 never replaces a fresh value, written after the miss (the load may predate it); an expired one it does', () =>
      withTier(async (tier, now) => {
        await tier.set('c:a', value(5, 'written', now));
        const lease = await tier.lease('c:a', 60_000);
        assert.equal(await tier.fill('c:a', value(0, 'loaded', now), lease), false);
        const kept = await tier.get('c:a');
        assert.equal(kept?.kind === 'value' ? kept.value : undefined, 'written');

        await tier.set('c:b', { kind: 'value', version: 5, value: 'expired', freshUntil: now - 1_000, staleUntil: now + 60_000 });
        const refresh = await tier.lease('c:b', 60_000);
        assert.equal(await tier.fill('c:b', value(0, 'refreshed', now), refresh), true);
        const refreshed = await tier.get('c:b');
        assert.equal(refreshed?.kind === 'value' ? refreshed.value : undefined, 'refreshed');
        assert.equal(refreshed?.version, 5);
      }));

    test('remove deletes only the exact version', () =>
      withTier(async (tier, now) => {
        await tier.set('c:a', value(5, 'five', now));
        assert.equal(await tier.remove('c:a', 4), false);
        assert.equal((await tier.get('c:a'))?.version, 5);
        assert.equal(await tier.remove('c:a', 5), true);
        assert.equal(await tier.get('c:a'), undefined);
      }));

    test('getMany and setMany line up with their keys', () =>
      withTier(async (tier, now) => {
        const applied = await tier.setMany([
          { key: 'c:a', entry: value(1, 'a', now) },
          { key: 'c:b', entry: value(2, 'b', now) },
        ]);
        assert.deepEqual(applied, [true, true]);
        const entries = await tier.getMany(['c:b', 'c:missing', 'c:a']);
        assert.deepEqual(entries.map((e) => e?.version), [2, undefined, 1]);
      }));

    test('a set under a generation the tier has left (it lost its memory since) is not stored: the key is tombstoned at its version', () =>
      withTier(async (tier, now) => {
        if (tier.generation === undefined) return; // the tier cannot tell: no generation check
        // A round trip after the client is ready: the tier has read its generation by then.
        for (let i = 0; i < 2; i++) await tier.get('c:warm');
        const before = tier.generation();
        if (before === undefined) return;
        assert.equal(await tier.set('c:a', value(5, 'five', now), before), true, 'within its generation a set applies');
        assert.equal(await tier.setMany([{ key: 'c:b', entry: value(5, 'five', now), generation: before }]).then((a) => a[0]), true);
        const lease = await tier.lease('c:a', 60_000);
        await tier.clear(); // the tier lost what it held: nothing newer is left to refuse an older version
        assert.equal(await tier.set('c:a', value(4, 'four', now), before), false, 'a write begun before the loss is refused');
        assert.deepEqual(await tier.setMany([{ key: 'c:b', entry: value(4, 'four', now), generation: before }]), [false]);
        for (const key of ['c:a', 'c:b']) {
          const entry = await tier.get(key);
          assert.ok(entry === undefined || (entry.kind === 'tombstone' && entry.version === 4), `${key}: ${JSON.stringify(entry)}`);
        }
        assert.equal(await tier.fill('c:a', value(3, 'loaded before', now), lease), false, 'a lease from before the loss fills nothing');
        const older = await tier.lease('c:a', 60_000);
        assert.equal(await tier.fill('c:a', value(3, 'older row', now), older), false, 'the tombstone keeps older rows out');
        assert.notDeepEqual(tier.generation(), before, 'the tier knows its new generation');
        assert.equal(await tier.set('c:a', value(6, 'six', now), tier.generation()), true, 'a write begun in the new generation applies');
      }));

    test('an entry past staleUntil is gone', () =>
      withTier(async (tier, now) => {
        await tier.set('c:a', { kind: 'value', version: 1, value: 'x', freshUntil: now - 10, staleUntil: now - 1 });
        assert.equal(await tier.get('c:a'), undefined);
      }));
  });
}
