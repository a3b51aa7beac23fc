/**
 * The journal's release index: deleting a segment forgets only that segment's keys, in chunks,
 * while releases and new records go on between the chunks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ReleaseIndex, type KeyEntry } from '../src/journal/release-index.js';

function filled(index: ReleaseIndex, segment: number, keys: number, first = 0): KeyEntry[] {
  return Array.from({ length: keys }, (_, i) => {
    const entry = index.entry('orders', `k${first + i}`);
    index.addRecord(entry, first + i + 1, segment);
    return entry;
  });
}

describe('journal release index', () => {
  test('a segment dropped in chunks: a release between chunks counts in the live segment only, no segment is freed twice, and only the keys of the dropped segment are forgotten', async () => {
    const index = new ReleaseIndex();
    const old = filled(index, 1, 10_000);
    const current = filled(index, 2, 100, 10_000);
    const freed: number[] = [];
    for (const entry of old) index.release(entry, entry.segments[1]!, (segment) => freed.push(segment));
    assert.deepEqual(freed, [1], 'segment 1 is free once all its keys are released');
    // A key of segment 1 written again lands in segment 2, and is live there.
    const again = old[0]!;
    index.addRecord(again, 50_000, 2);
    assert.equal(index.liveIn(2), 101);

    let pauses = 0;
    const dropping = index.dropSegments(new Set([1]), async () => {
      pauses++;
      // Between chunks: the rewritten key is released (its pair in segment 1 is not forgotten yet).
      if (pauses === 1) index.release(again, 50_000, (segment) => freed.push(segment));
      await new Promise<void>((resolve) => setImmediate(resolve));
    });
    const remark = await dropping;
    assert.ok(pauses >= 2, `the drop paused between chunks (${pauses} pauses)`);
    assert.deepEqual(freed, [1], 'no segment was freed twice');
    assert.equal(index.liveIn(1), 0);
    assert.equal(index.liveIn(2), 100, 'the release counted in segment 2 only');
    assert.deepEqual(again.segments, [2, 50_000], 'the key keeps its pair in segment 2');
    assert.deepEqual(remark, []);
    // Keys with records only in the dropped segment are forgotten: a new entry starts afresh.
    assert.notEqual(index.entry('orders', 'k1'), old[1]);
    assert.equal(index.entry('orders', 'k0'), again, 'a key still on disk keeps its entry');
    for (const entry of current) index.release(entry, entry.segments[1]!, (segment) => freed.push(segment));
    assert.deepEqual(freed, [1, 2]);
  });

  test('a key whose newest mark was in the dropped segment, with released records elsewhere, is marked again', async () => {
    const index = new ReleaseIndex();
    const [entry] = filled(index, 1, 1);
    index.addRecord(entry!, 5, 2);
    index.release(entry!, 5, () => undefined);
    index.noteMark(entry!, 3);
    const remark = await index.dropSegments(new Set([3]), async () => undefined);
    assert.deepEqual(remark, [entry], 'its records in segments 1 and 2 are released: the mark must be written again');
    assert.equal(entry!.markSegment, undefined);
  });

  test('forgotten entries stay in the maps until they outnumber the live ones four to one (and are at least 4,096), then go in one rebuild', async () => {
    const index = new ReleaseIndex();
    const release = (entries: KeyEntry[]) => entries.forEach((entry) => index.release(entry, entry.segments[1]!, () => undefined));
    const few = filled(index, 1, 1_000);
    const live = filled(index, 2, 2_000, 1_000);
    release(few);
    await index.dropSegments(new Set([1]), async () => undefined);
    assert.equal(index.heldEntries, 3_000, '1,000 forgotten: kept, marked');
    assert.notEqual(index.entry('orders', 'k1'), few[1], 'a forgotten key starts afresh');
    const many = filled(index, 3, 7_000, 3_000);
    release(many);
    await index.dropSegments(new Set([3]), async () => undefined);
    assert.equal(index.heldEntries, 10_000, '7,999 forgotten against 2,001 live: still kept');
    release(live);
    await index.dropSegments(new Set([2]), async () => undefined);
    assert.equal(index.heldEntries, 1, 'all but k1 forgotten: the maps are rebuilt without them');
    assert.equal(index.entry('orders', 'k1').segments.length, 0);
  });
});
