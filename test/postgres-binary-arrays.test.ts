/**
 * The binary array parameters of postgresStore against the real server: every text[] and
 * bigint[] the store sends reads back as exactly what was encoded, for the characters the
 * text form must escape (quotes, backslashes, braces, commas, the word NULL), NULL elements,
 * empty strings, any Unicode, empty arrays and the whole range of safe integers.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bigintArrayParam, textArrayParam } from '../src/stores/postgres-binary-arrays.js';
import { testPool } from './helpers/postgres.js';
import { skipUnless } from './helpers/servers.js';

const skip = await skipUnless('postgres');

if (skip) {
  test('binary array parameters on the real server', { skip }, () => {});
} else {
  const pool = testPool({ max: 1 });
  after(() => pool.end());

  /** What the server holds for a text[] parameter: its elements, as text, with NULLs. */
  async function serverTexts(values: readonly (string | null)[]): Promise<(string | null)[]> {
    const { rows } = await pool.query<{ value: string | null; n: string }>('SELECT value, n FROM unnest($1::text[]) WITH ORDINALITY AS u(value, n) ORDER BY n', [textArrayParam(values)]);
    return rows.map((row) => row.value);
  }

  async function serverBigints(values: readonly number[]): Promise<number[]> {
    const { rows } = await pool.query<{ value: string; n: string }>('SELECT value::text AS value, n FROM unnest($1::bigint[]) WITH ORDINALITY AS u(value, n) ORDER BY n', [bigintArrayParam(values)]);
    return rows.map((row) => Number(row.value));
  }

  test('text[]: the characters the text form escapes, NULLs, empty strings and any Unicode read back unchanged', async () => {
    const values = ['"quoted"', 'back\\slash', '{braces}', 'a,b', 'NULL', null, '', ' spaced ', '{"a":[1,"x\\"y"]}', 'é日本語🎉', 'line\nbreak\ttab', null];
    assert.deepEqual(await serverTexts(values), values);
    const { rows } = await pool.query<{ nulls: boolean; dims: string | null }>('SELECT array_position($1::text[], NULL) IS NOT NULL AS nulls, array_dims($1::text[]) AS dims', [textArrayParam(values)]);
    assert.deepEqual(rows[0], { nulls: true, dims: '[1:12]' });
  });

  test('text[]: random strings of any Unicode, with NULLs, read back unchanged', async () => {
    const element = fc.oneof({ weight: 1, arbitrary: fc.constant(null) }, { weight: 6, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).filter((s) => !s.includes('\u0000')) });
    await fc.assert(
      fc.asyncProperty(fc.array(element, { maxLength: 30 }), async (values) => {
        // A lone surrogate is not UTF-8: both forms send U+FFFD for it, as Buffer.from does.
        const expected = values.map((v) => (v === null ? null : Buffer.from(v, 'utf8').toString('utf8')));
        assert.deepEqual(await serverTexts(values), expected);
      }),
      { numRuns: 100 },
    );
  });

  test('empty arrays are empty text[] and bigint[]', async () => {
    const { rows } = await pool.query<{ texts: number; bigints: number; dims: string | null }>(
      'SELECT cardinality($1::text[]) AS texts, cardinality($2::bigint[]) AS bigints, array_dims($1::text[]) AS dims',
      [textArrayParam([]), bigintArrayParam([])],
    );
    assert.deepEqual(rows[0], { texts: 0, bigints: 0, dims: null });
  });

  test('bigint[]: zero, signs, the 32-bit boundaries and the safe-integer limits read back unchanged', async () => {
    const values = [0, 1, -1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, -(2 ** 32), -(2 ** 32) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 1_733_600_000_000_123];
    assert.deepEqual(await serverBigints(values), values);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.maxSafeInteger(), { minLength: 1, maxLength: 20 }), async (random) => {
        assert.deepEqual(await serverBigints(random), random);
      }),
      { numRuns: 100 },
    );
  });

  test('bigint[]: a number that is not a safe integer is refused before anything is sent', () => {
    for (const bad of [1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Infinity]) {
      assert.throws(() => bigintArrayParam([1, bad]), RangeError);
    }
  });
}
