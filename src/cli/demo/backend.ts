/**
 * Where the demo runs: the cache tier (the in-process memory tier, or a Redis) and the database
 * (SQLite files, or a PostgreSQL). A BackendSpec is plain data, so the kill test's child process
 * gets the same one (through its environment, so that passwords in URLs stay out of `ps`) and
 * opens the same kind of tier and store as the parent.
 *
 * Each run isolates itself on the servers: a random Redis key prefix, and a PostgreSQL schema
 * `cachewise_demo_<random>`; both are removed at the end unless the user asked to keep them.
 * The kill tests use keys and tables of their own (a `kill:` sub-prefix, a `cachewise_kill_`
 * table prefix), so each child starts from an empty table and a cold cache, as with SQLite.
 *
 * Write-back with durability 'journal' keeps its journal in files whatever the tier and store:
 * a file journal per part, in the demo's directory (`journalDir`: the SQLite directory, or a
 * temporary one with PostgreSQL).
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Redis, RedisOptions } from 'ioredis';
import type { Client, ClientConfig } from 'pg';
import { createCache, fileJournal, memoryTier, postgresStore, redisTier, type Cache, type Store, type Tier } from '../../index.js';
import { openDemoDatabase } from './demo-store.js';
import type { RowId } from './seed-table.js';
import { Samples } from './samples.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** The environment variable that hands the child process its BackendSpec (JSON). */
export const BACKEND_ENV = 'CACHEWISE_DEMO_BACKEND';

/** The commands that start the servers on the project's machines (services.md). */
const START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log';
const START_POSTGRES = 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start';

/** How long the checks before the run wait for a server. */
const PROBE_TIMEOUT_MS = 3000;
const PROBE_ROUND_TRIPS = 20;

export type TierSpec = { readonly kind: 'memory' } | { readonly kind: 'redis'; readonly url: string; readonly prefix: string };
export type StoreSpec = { readonly kind: 'sqlite'; readonly dir: string } | { readonly kind: 'postgres'; readonly url: string; readonly schema: string };

export interface BackendSpec {
  readonly tier: TierSpec;
  readonly store: StoreSpec;
  /**
   * Where the file journals of write-back with durability 'journal' go (one directory per part).
   * Needed only by a cache opened with a journal.
   */
  readonly journalDir?: string;
}

/**
 * A part of the demo with data of its own: 'main' (the feed and the six measurements), or the
 * kill test of one row.
 */
export type Part = 'main' | `kill-${RowId}`;

/** A server that does not answer, or a missing client package: one line, exit code 2. */
export class ServerError extends Error {}

/** A fresh spec: random Redis prefix and PostgreSQL schema; SQLite files and journals in `dir`. */
export function newBackendSpec(redisUrl: string | undefined, postgresUrl: string | undefined, dir: string): BackendSpec {
  const id = randomBytes(4).toString('hex');
  return {
    tier: redisUrl === undefined ? { kind: 'memory' } : { kind: 'redis', url: redisUrl, prefix: `cachewise-demo:${id}:` },
    store: postgresUrl === undefined ? { kind: 'sqlite', dir } : { kind: 'postgres', url: postgresUrl, schema: `cachewise_demo_${id}` },
    journalDir: dir,
  };
}

/** Every tier and store this process opened, so that an interrupted run can close them all. */
const opened = new Set<{ close(): Promise<void> }>();
let shuttingDown = false;

function tracked<T extends { close(): Promise<void> }>(resource: T): T {
  if (shuttingDown) {
    void resource.close().catch(() => undefined);
    throw new Error('the demo was interrupted');
  }
  opened.add(resource);
  return resource;
}

/**
 * Closes every tier and store this process opened, and refuses to open more: after it, nothing
 * of this process writes to the servers (a store would create its schema again on prepare).
 */
export async function closeEverything(): Promise<void> {
  shuttingDown = true;
  await Promise.allSettled([...opened].map((resource) => resource.close()));
}

/** A new tier for one cache of the demo (each cache closes its own). */
export function openTier(spec: BackendSpec, part: Part): Tier {
  const tier = spec.tier;
  return tracked(tier.kind === 'memory' ? memoryTier() : redisTier({ url: tier.url, prefix: redisPrefix(tier.prefix, part) }));
}

/** A new connection to the demo's database (each cache closes its own). */
export function openStore(spec: BackendSpec, part: Part): Store {
  const store = spec.store;
  if (store.kind === 'sqlite') return tracked(openDemoDatabase(join(store.dir, sqliteFile(part))));
  return tracked(postgresStore({ connectionString: store.url, schema: store.schema, tablePrefix: part === 'main' ? 'cachewise_' : 'cachewise_kill_' }));
}

/**
 * A cache over a new tier of the part and `store`, with the part's file journal when `journal`
 * (which replays what an earlier cache of the part left in it when a collection is declared).
 * On failure the tier and store are closed before the error is rethrown.
 */
export async function openCache(spec: BackendSpec, part: Part, store: Store, options: { journal?: boolean } = {}): Promise<Cache> {
  let tier: Tier | undefined;
  try {
    tier = openTier(spec, part);
    // The demo's caches write one after another: one writer slot, none claimed in Redis (a child
    // killed with SIGKILL would leave its claim there until the lease ran out).
    return await createCache({ tier, store, writerId: 0, ...(options.journal === true ? { journal: fileJournal(journalPath(spec, part)) } : {}) });
  } catch (error) {
    await Promise.allSettled([tier?.close(), store.close()]);
    throw error;
  }
}

/** The SQLite file of a part: `cachewise-demo.db`, `cachewise-demo-kill-<row>.db`. */
export function sqliteFile(part: Part): string {
  return part === 'main' ? 'cachewise-demo.db' : `cachewise-demo-${part}.db`;
}

/** The journal directory of a part: `cachewise-demo.journal`, `cachewise-demo-kill-<row>.journal`. */
export function journalDirName(part: Part): string {
  return part === 'main' ? 'cachewise-demo.journal' : `cachewise-demo-${part}.journal`;
}

function journalPath(spec: BackendSpec, part: Part): string {
  if (spec.journalDir === undefined) throw new Error('a cache with a journal needs BackendSpec.journalDir');
  return join(spec.journalDir, journalDirName(part));
}

/** The tier key a collection gives `key` (collection.ts: `<collection>:<key>`). */
export function tierKeyOf(collection: string, key: string): string {
  return `${collection}:${key}`;
}

function redisPrefix(base: string, part: Part): string {
  return part === 'main' ? base : `${base}kill:`;
}

/** Every Redis prefix the demo writes under (each is cleared at the end). */
function redisPrefixes(base: string): string[] {
  return [base, `${base}kill:`];
}

/** The URL without its password (also a `password` query parameter), for output. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
    return parsed.toString();
  } catch {
    return '(an unparsable URL)';
  }
}

/** What the servers said before the run. */
export interface ServerFacts {
  /** Redis PING round trip, p50 of 20, in ms. */
  readonly redisRoundTripMs: number | undefined;
  /** Redis maxmemory-policy ('noeviction', ..., or 'unknown'). */
  readonly redisEvictionPolicy: string | undefined;
  readonly redisVersion: string | undefined;
  /** PostgreSQL `SELECT 1` round trip, p50 of 20, in ms. */
  readonly postgresRoundTripMs: number | undefined;
  readonly postgresVersion: string | undefined;
}

/**
 * Checks that each server answers, and measures its round trip. Throws a ServerError naming
 * the URL of every server that does not answer, and how to start it.
 */
export async function probeServers(spec: BackendSpec): Promise<ServerFacts> {
  const [redis, postgres] = await Promise.allSettled([
    spec.tier.kind === 'redis' ? probeRedis(spec.tier.url) : Promise.resolve(undefined),
    spec.store.kind === 'postgres' ? probePostgres(spec.store.url) : Promise.resolve(undefined),
  ]);
  const failures = [redis, postgres].filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => messageOf(r.reason));
  if (failures.length > 0) throw new ServerError(failures.join('\ncachewise: '));
  const r = (redis as PromiseFulfilledResult<Awaited<ReturnType<typeof probeRedis>> | undefined>).value;
  const p = (postgres as PromiseFulfilledResult<Awaited<ReturnType<typeof probePostgres>> | undefined>).value;
  return {
    redisRoundTripMs: r?.roundTripMs,
    redisEvictionPolicy: r?.evictionPolicy,
    redisVersion: r?.version,
    postgresRoundTripMs: p?.roundTripMs,
    postgresVersion: p?.version,
  };
}

async function probeRedis(url: string): Promise<{ roundTripMs: number; evictionPolicy: string; version: string }> {
  const { Redis } = loadPackage<{ Redis: new (url: string, options: RedisOptions) => Redis }>('ioredis', '--redis', 'npm install ioredis@5');
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: PROBE_TIMEOUT_MS,
    commandTimeout: PROBE_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
    connectionName: 'cachewise-demo-probe',
  });
  // The connection's own error ("connect ECONNREFUSED ...") arrives as an event; connect() only says "Connection is closed."
  let connectionError: unknown;
  client.on('error', (error: unknown) => void (connectionError ??= error));
  try {
    try {
      await client.connect();
      await client.ping();
    } catch (error) {
      const reason = reasonOf(connectionError ?? error);
      if (/NOAUTH|WRONGPASS|NOPERM/i.test(reason)) {
        throw new ServerError(`Redis at ${redactUrl(url)} refused the connection (${reason}); check the user and password in the URL`);
      }
      throw new ServerError(`Redis does not answer at ${redactUrl(url)} (${reason}). Start it with: ${START_REDIS} ; or pass --redis <url> (or set REDIS_URL)`);
    }
    const samples = new Samples();
    for (let i = 0; i < PROBE_ROUND_TRIPS; i++) await samples.time(() => client.ping());
    const evictionPolicy = await client
      .config('GET', 'maxmemory-policy')
      .then((reply) => (Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : 'unknown'))
      .catch(() => 'unknown');
    const info = await client.info('server').catch(() => '');
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    return { roundTripMs: samples.figures().p50Ms, evictionPolicy, version };
  } finally {
    // disconnect() on a connection that already ended would hold the process for ioredis's disconnectTimeout.
    if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
    else if (client.status !== 'end') client.disconnect();
  }
}

async function probePostgres(url: string): Promise<{ roundTripMs: number; version: string }> {
  const client = await connectPostgres(url);
  try {
    const samples = new Samples();
    for (let i = 0; i < PROBE_ROUND_TRIPS; i++) await samples.time(() => client.query('SELECT 1'));
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return { roundTripMs: samples.figures().p50Ms, version: rows[0]?.server_version ?? 'unknown' };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function connectPostgres(url: string): Promise<Client> {
  const { Client } = loadPackage<{ Client: new (config: ClientConfig) => Client }>('pg', '--postgres', 'npm install pg@8');
  const client = new Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS, application_name: 'cachewise-demo' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    const refused = isUnreachable(error);
    throw new ServerError(
      refused
        ? `PostgreSQL does not answer at ${redactUrl(url)} (${reasonOf(error)}). Start it with: ${START_POSTGRES} ; or pass --postgres <url> (or set DATABASE_URL)`
        : `PostgreSQL at ${redactUrl(url)} refused the connection (${reasonOf(error)}); check the user, password and database in the URL`,
    );
  }
  return client;
}

/**
 * Removes what the demo wrote to the servers: every key under the Redis prefix (the tier's
 * clear() deletes exactly its own prefix) and the PostgreSQL schema. Returns a description of
 * anything it could not remove (empty when all went).
 */
export async function removeServerData(spec: BackendSpec): Promise<string[]> {
  const problems: string[] = [];
  if (spec.tier.kind === 'redis') {
    for (const prefix of redisPrefixes(spec.tier.prefix)) {
      const tier = redisTier({ url: spec.tier.url, prefix });
      try {
        // One round trip first: the tier reads (creating it if missing) its generation marker
        // when its connection becomes ready, which would otherwise land after clear() deleted it.
        await tier.get('cleanup');
        await tier.clear();
      } catch (error) {
        problems.push(`Redis keys under ${prefix} at ${redactUrl(spec.tier.url)} (${reasonOf(error)})`);
      } finally {
        await tier.close().catch(() => undefined);
      }
    }
  }
  if (spec.store.kind === 'postgres') {
    const { url, schema } = spec.store;
    try {
      const client = await connectPostgres(url);
      try {
        // The name is ours (cachewise_demo_<hex>), quoted all the same.
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end().catch(() => undefined);
      }
    } catch (error) {
      problems.push(`PostgreSQL schema ${schema} at ${redactUrl(url)} (${reasonOf(error)})`);
    }
  }
  return problems;
}

/** What is kept on the servers, for the user who asked to keep it. */
export function keptServerData(spec: BackendSpec): string[] {
  const kept: string[] = [];
  if (spec.tier.kind === 'redis') kept.push(`Redis keys under ${redisPrefixes(spec.tier.prefix).join(' and ')} at ${redactUrl(spec.tier.url)}`);
  if (spec.store.kind === 'postgres') kept.push(`PostgreSQL schema ${spec.store.schema} at ${redactUrl(spec.store.url)}`);
  return kept;
}

/** The child's spec, from its environment. */
export function backendSpecFromEnv(): BackendSpec {
  const text = process.env[BACKEND_ENV];
  if (text === undefined) throw new Error(`kill-child needs ${BACKEND_ENV}`);
  return JSON.parse(text) as BackendSpec;
}

function loadPackage<T>(name: string, flag: string, install: string): T {
  try {
    return createRequire(import.meta.url)(name) as T;
  } catch (error) {
    throw new ServerError(`${flag} needs the ${name} package, which ${(error as { code?: unknown }).code === 'MODULE_NOT_FOUND' ? 'is not installed' : 'failed to load'}: ${install}`);
  }
}

function isUnreachable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && ['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET'].includes(code)) return true;
  // pg: "timeout expired" / "Connection terminated due to connection timeout"; AggregateError of several addresses.
  return /timeout|terminated/i.test(reasonOf(error)) || error instanceof AggregateError;
}

function reasonOf(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return error.errors.map(reasonOf).join('; ');
  if (error instanceof Error) return error.message || String((error as { code?: unknown }).code ?? error.name);
  return String(error);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
