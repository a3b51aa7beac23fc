/**
 * The two ways of writing through that bench/write-through.ts compares (and
 * bench/round-trips.ts dissects), each on its own pg.Pool and Redis client, made by the caller
 * with the same options:
 *
 *   cachewise  collection.set(key, value): a write-through collection over postgresStore({ pool,
 *              schema }) and redisTier({ client });
 *   raw        what a careful hand-written write-through does: one single-row INSERT ... ON
 *              CONFLICT DO UPDATE guarded by a version (autocommit: one statement), then, if the
 *              row was written, SET key json PX ttl (if not, the key is deleted).
 *
 * Both tables have the layout of postgresMigrationSql, in `schema` (the caller creates it
 * empty and drops it). Every key is prefilled, so measured writes are updates.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { createCache, postgresMigrationSql, postgresStore, redisTier, type Collection } from './cachewise.js';
import type { Contender } from './runner.js';
import { keyOf, profile, type Profile } from './workload.js';

export const WRITE_TTL_MS = 3_600_000;
export const COLLECTION = 'profiles';
const PREFILL_BATCH = 1000;

export interface WriteThroughSetup {
  /** cachewise first, then raw. */
  readonly contenders: readonly Contender[];
  readonly profiles: Collection<Profile>;
  /** Quoted names of the two tables. */
  readonly tables: { readonly cachewise: string; readonly raw: string };
  /** Raw writes whose version guard refused them (should stay 0). */
  rawSuperseded(): number;
  /** Closes the cache (not the pools or clients). */
  close(): Promise<void>;
}

export async function writeThroughContenders(options: {
  admin: pg.Pool;
  cwPool: pg.Pool;
  rawPool: pg.Pool;
  cwRedis: Redis;
  rawRedis: Redis;
  schema: string;
  prefix: string;
  keys: number;
}): Promise<WriteThroughSetup> {
  const { admin, cwPool, rawPool, cwRedis, rawRedis, schema, prefix, keys } = options;
  const rawPrefix = `${prefix}raw:`;
  const tables = { cachewise: `"${schema}"."cachewise_${COLLECTION}"`, raw: await prefilledTable(admin, rawPool, schema, 'raw_', keys) };
  const upsert =
    `INSERT INTO ${tables.raw} AS t ("key", "value", "version", "updated_at") VALUES ($1, $2, $3, now()) ` +
    'ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at" ' +
    'WHERE t."version" < excluded."version"';

  const cache = await createCache({ tier: redisTier({ client: cwRedis, prefix: `${prefix}cw:` }), store: postgresStore({ pool: cwPool, schema }) });
  const profiles = cache.collection<Profile>(COLLECTION, { write: 'through', read: 'through', ttl: WRITE_TTL_MS });

  for (let start = 0; start < keys; start += PREFILL_BATCH) {
    const batch = Array.from({ length: Math.min(PREFILL_BATCH, keys - start) }, (_, i) => start + i);
    await profiles.setMany(batch.map((n) => [keyOf(n, keys), profile(n)] as const));
  }

  let rawVersion = rawVersionStart();
  let rawSuperseded = 0;
  const rawSet = async (key: string, value: Profile): Promise<void> => {
    const json = JSON.stringify(value);
    const { rowCount } = await rawPool.query(upsert, [key, json, ++rawVersion]);
    if (rowCount === 1) await rawRedis.set(rawPrefix + key, json, 'PX', WRITE_TTL_MS);
    else {
      rawSuperseded++;
      await rawRedis.del(rawPrefix + key);
    }
  };

  return {
    contenders: [
      { name: 'cachewise', op: (n) => profiles.set(keyOf(n, keys), profile(n)) },
      { name: 'raw', op: (n) => rawSet(keyOf(n, keys), profile(n)) },
    ],
    profiles,
    tables,
    rawSuperseded: () => rawSuperseded,
    close: async () => void (await cache.close()),
  };
}

/**
 * A table with the layout of postgresMigrationSql, `<schema>.<tablePrefix>profiles`, holding
 * every key at version 1; its quoted name.
 */
export async function prefilledTable(admin: pg.Pool, pool: pg.Pool, schema: string, tablePrefix: string, keys: number): Promise<string> {
  await admin.query(postgresMigrationSql(COLLECTION, { schema, tablePrefix }));
  const table = `"${schema}"."${tablePrefix}${COLLECTION}"`;
  for (let start = 0; start < keys; start += PREFILL_BATCH) {
    const batch = Array.from({ length: Math.min(PREFILL_BATCH, keys - start) }, (_, i) => start + i);
    await pool.query(`INSERT INTO ${table} ("key", "value", "version") SELECT k, v, 1 FROM unnest($1::text[], $2::text[]) AS w(k, v)`, [
      batch.map((n) => keyOf(n, keys)),
      batch.map((n) => JSON.stringify(profile(n))),
    ]);
  }
  return table;
}

/** Where a hand-written version clock starts: like cachewise's (milliseconds * 4096), then +1 per write. */
export function rawVersionStart(): number {
  return Date.now() * 4096;
}
