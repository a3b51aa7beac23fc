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
});
