/** What the SQLite store and its writer thread send each other. */
import type { WriteOutcome } from './store.js';

export interface WriterData {
  readonly file: string;
  readonly busyTimeout: number;
  readonly synchronous: 'full' | 'normal';
}

/** A batch as columns (cheaper to copy between threads than objects); a null value is a delete. */
export interface WriteRequest {
  readonly type: 'write';
  readonly id: number;
  readonly table: string;
  readonly keys: string[];
  readonly jsons: (string | null)[];
  readonly versions: number[];
  readonly now: number;
}

export type WriterRequest = WriteRequest | { readonly type: 'close' };

export type WriterReply =
  | { readonly id: number; readonly outcomes: WriteOutcome[] }
  | { readonly id: number; readonly error: SerializedError; readonly notApplied: boolean };

/** An error as plain data: its class does not cross threads, its message and code do. */
export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
}

export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const code = (error as { code?: unknown }).code;
  return { name: error.name, message: error.message, code: typeof code === 'string' ? code : undefined };
}

/** The error again, as an Error with the same name, message and code. */
export function revive(serialized: SerializedError): Error {
  const error = new Error(serialized.message) as Error & { code?: string };
  error.name = serialized.name;
  if (serialized.code !== undefined) error.code = serialized.code;
  return error;
}
