import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeValue } from '../src/codec.js';
test('smoke', () => { assert.equal(encodeValue({ a: 1 }), '{"a":1}'); });
