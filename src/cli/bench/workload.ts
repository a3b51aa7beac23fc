/**
 * The data the benchmarks read and write: a user-profile-sized JSON object (about 250 bytes),
 * different per key, so that no contender benefits from a repeated value.
 */

export interface Profile {
  readonly id: string;
  readonly name: string;
  readonly email: string;
  readonly roles: readonly string[];
  readonly createdAt: string;
  readonly preferences: { readonly theme: string; readonly language: string; readonly notifications: boolean };
  readonly visits: number;
}

export function keyOf(n: number, keys: number): string {
  return `user:${n % keys}`;
}

export function profile(n: number): Profile {
  return {
    id: String(n),
    name: `User number ${n}`,
    email: `user${n}@example.com`,
    roles: n % 7 === 0 ? ['admin', 'editor'] : ['reader'],
    createdAt: new Date(Date.UTC(2024, 0, 1) + n * 60_000).toISOString(),
    preferences: { theme: n % 2 === 0 ? 'dark' : 'light', language: 'en-GB', notifications: n % 3 !== 0 },
    visits: n * 13,
  };
}
