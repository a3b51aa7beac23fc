/**
 * A history of concurrent cache operations, and the checks that judge it.
 *
 * Every write writes a value no other write writes ({ writer, seq }, its "tag"), so a read names
 * the write it saw. Each operation gets a logical invocation time and response time. The ledgers
 * below watch the real database and the real tier from the inside. The checks then say:
 *
 * - stale: a read returned a value older than a write of its key acknowledged before the read
 *   began (a set that resolved, or a set whose outcome was unknown but that the database did
 *   commit: once it is reported, nothing older may be served);
 * - dirty: a read returned a value the database never committed (a refused write, a write whose
 *   unknown outcome was in fact "not written", a write superseded by a newer one);
 * - future: a read returned a value written by an operation that began after the read ended;
 * - phantom: a read found no value for a key that had one and that nothing deleted;
 * - stale fill: a cache-aside fill was accepted although a write or an invalidation of its key
 *   ran entirely between the miss and the fill;
 * - version regression: the database or the tier replaced a version of a key by an older one;
 * - final state: once everything settled, the database holds the newest committed write of each
 *   key, no acknowledged write is missing, and the tier holds no value the database does not.
 */
import { isCachewiseError } from '../../src/errors.js';
import type { Store, StoreRecord, StoreWrite, WriteOutcome } from '../../src/stores/store.js';
import type { Lease, Tier, TierEntry } from '../../src/tiers/tier.js';

/** What every write of a history writes. */
export interface Written {
  readonly writer: number;
  readonly seq: number;
}

export function written(writer: number, seq: number): Written {
  return { writer, seq };
}

/** The tag of a value read or written: "writer.seq", or null for "no value". */
export function tagOf(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  const w = value as Partial<Written>;
  if (typeof w !== 'object' || typeof w.writer !== 'number' || typeof w.seq !== 'number') {
    throw new Error(`not a value written by this history: ${JSON.stringify(value)}`);
  }
  return `${w.writer}.${w.seq}`;
}

function tagOfJson(json: string | undefined): string | null {
  return json === undefined ? null : tagOf(JSON.parse(json));
}

export type WriteStatus = 'pending' | 'ok' | 'failed' | 'unknown' | 'error';

export interface WriteOp {
  readonly kind: 'set' | 'delete';
  readonly key: string;
  /** The value's tag (sets), undefined for deletes. */
  readonly tag: string | undefined;
  readonly invokedAt: number;
  respondedAt: number;
  /** ok: resolved; failed: E_STORE_FAILED; unknown: E_STORE_UNKNOWN_OUTCOME; error: anything else. */
  status: WriteStatus;
  /** The version the write resolved with. */
  version: number | undefined;
  error?: unknown;
}

export interface ReadOp {
  readonly key: string;
  readonly via: string;
  readonly invokedAt: number;
  respondedAt: number;
  /** The tag read, null for "no value", undefined while pending or after an error. */
  result: string | null | undefined;
  error?: unknown;
}

export interface InvalidateOp {
  readonly key: string;
  readonly invokedAt: number;
  respondedAt: number;
}

export interface FillOp {
  readonly key: string;
  readonly tag: string | null;
  /** When the lookup that handed out the lease answered. */
  readonly missAt: number;
  readonly invokedAt: number;
  respondedAt: number;
  filled: boolean | undefined;
}

const PENDING = Number.POSITIVE_INFINITY;

export class History {
  private time = 0;
  readonly writes: WriteOp[] = [];
  readonly reads: ReadOp[] = [];
  readonly invalidations: InvalidateOp[] = [];
  readonly fills: FillOp[] = [];
  /** Keys that held a value before the history began. */
  readonly seeded = new Set<string>();
  /** Tag -> version, as the writes reached the store. */
  private readonly sentVersions = new Map<string, number>();

  /** The logical time: every call is later than the previous one. */
  now(): number {
    return ++this.time;
  }

  /** A value the database held before the history began (acknowledged before any operation). */
  seed(key: string, tag: string, version: number): void {
    const at = this.now();
    this.seeded.add(key);
    this.sentVersions.set(tag, version);
    this.writes.push({ kind: 'set', key, tag, invokedAt: at, respondedAt: at, status: 'ok', version });
  }

  /** Learns the versions of writes as they reach the store. */
  sent(writes: readonly StoreWrite[]): void {
    for (const w of writes) if (w.op === 'set') this.sentVersions.set(tagOfJson(w.json)!, w.version);
  }

  versionOf(tag: string): number | undefined {
    return this.writes.find((w) => w.tag === tag)?.version ?? this.sentVersions.get(tag);
  }

  async set(key: string, value: Written, run: () => Promise<{ version: number }>): Promise<void> {
    await this.setMany([[key, value]], async () => [await run()]);
  }

  /** One call that writes many keys: one write per key, all with the call's times. */
  async setMany(entries: readonly (readonly [string, Written])[], run: () => Promise<readonly { version: number }[]>): Promise<void> {
    const invokedAt = this.now();
    await this.write(
      entries.map(([key, value]) => ({ kind: 'set', key, tag: tagOf(value)!, invokedAt, respondedAt: PENDING, status: 'pending', version: undefined })),
      run,
    );
  }

  async delete(key: string, run: () => Promise<{ version: number }>): Promise<void> {
    await this.write([{ kind: 'delete', key, tag: undefined, invokedAt: this.now(), respondedAt: PENDING, status: 'pending', version: undefined }], async () => [await run()]);
  }

  async read(key: string, via: string, run: () => Promise<unknown>): Promise<unknown> {
    const [value] = await this.readMany([key], via, async () => [await run()]);
    return value;
  }

  /** One call that reads many keys: one read per key, all with the call's times. */
  async readMany(keys: readonly string[], via: string, run: () => Promise<readonly unknown[]>): Promise<readonly unknown[]> {
    const invokedAt = this.now();
    const ops: ReadOp[] = keys.map((key) => ({ key, via, invokedAt, respondedAt: PENDING, result: undefined }));
    this.reads.push(...ops);
    try {
      const values = await run();
      const respondedAt = this.now();
      ops.forEach((op, i) => {
        op.respondedAt = respondedAt;
        op.result = tagOf(values[i]);
      });
      return values;
    } catch (error) {
      const respondedAt = this.now();
      for (const op of ops) {
        op.respondedAt = respondedAt;
        op.error = error;
      }
      return keys.map(() => undefined);
    }
  }

  /**
   * A cache-aside lookup: a hit counts as a read; a miss returns the time it answered, which a
   * later fill() under its lease refers to.
   */
  async lookup<L extends { readonly hit: boolean; readonly value?: unknown }>(key: string, run: () => Promise<L>): Promise<{ result: L; missAt: number }> {
    const invokedAt = this.now();
    const result = await run();
    const respondedAt = this.now();
    if (result.hit) this.reads.push({ key, via: 'lookup', invokedAt, respondedAt, result: tagOf(result.value) });
    return { result, missAt: respondedAt };
  }

  async invalidate(key: string, run: () => Promise<void>): Promise<void> {
    const op: InvalidateOp = { key, invokedAt: this.now(), respondedAt: PENDING };
    this.invalidations.push(op);
    try {
      await run();
    } finally {
      op.respondedAt = this.now();
    }
  }

  async fill(key: string, value: unknown, missAt: number, run: () => Promise<boolean>): Promise<void> {
    const op: FillOp = { key, tag: tagOf(value), missAt, invokedAt: this.now(), respondedAt: PENDING, filled: undefined };
    this.fills.push(op);
    try {
      op.filled = await run();
    } finally {
      op.respondedAt = this.now();
    }
  }

  /** The operations in invocation order, one line each, for failure messages. */
  describe(): string {
    const at = (op: { invokedAt: number; respondedAt: number }) => `[${op.invokedAt}..${op.respondedAt === PENDING ? '' : op.respondedAt}]`;
    const lines: [number, string][] = [
      ...this.writes.map((w): [number, string] => [
        w.invokedAt,
        `${at(w)} ${w.kind} ${w.key}${w.tag === undefined ? '' : ` = ${w.tag}`} -> ${w.status}${w.version === undefined ? '' : ` v${w.version}`}${
          w.tag !== undefined && w.version === undefined && this.sentVersions.has(w.tag) ? ` (sent as v${this.sentVersions.get(w.tag)})` : ''
        }`,
      ]),
      ...this.reads.map((r): [number, string] => [
        r.invokedAt,
        `${at(r)} ${r.via} ${r.key} -> ${r.error !== undefined ? `error ${String(r.error)}` : r.result === null ? 'nothing' : `${r.result}`}`,
      ]),
      ...this.invalidations.map((i): [number, string] => [i.invokedAt, `${at(i)} invalidate ${i.key}`]),
      ...this.fills.map((f): [number, string] => [f.invokedAt, `${at(f)} fill ${f.key} = ${f.tag} (miss at ${f.missAt}) -> ${String(f.filled)}`]),
    ];
    return lines
      .sort((a, b) => a[0] - b[0])
      .map(([, line]) => line)
      .join('\n');
  }

  private async write(ops: WriteOp[], run: () => Promise<readonly { version: number }[]>): Promise<void> {
    this.writes.push(...ops);
    try {
      const results = await run();
      ops.forEach((op, i) => {
        op.version = results[i]!.version;
        op.status = 'ok';
      });
    } catch (error) {
      // The error names the keys that failed; the others of the call committed.
      const details = isCachewiseError(error) ? (error.details as { keys?: string[]; unknown?: string[] }) : {};
      for (const op of ops) {
        if (details.keys !== undefined && !details.keys.includes(op.key)) {
          op.status = 'ok';
          op.version = op.tag === undefined ? undefined : this.sentVersions.get(op.tag);
          continue;
        }
        op.error = error;
        // A write the database committed but whose cache step could not reach a shared tier is
        // not done (it rejected); reads may see it or the value before it, like an unknown outcome.
        const unknown = isCachewiseError(error, 'E_STORE_UNKNOWN_OUTCOME') || isCachewiseError(error, 'E_TIER_UNAVAILABLE');
        op.status = isCachewiseError(error, 'E_STORE_FAILED') ? 'failed' : unknown ? 'unknown' : 'error';
      }
    } finally {
      const respondedAt = this.now();
      for (const op of ops) op.respondedAt = respondedAt;
    }
  }
}

/** One write as the database itself handled it. */
export interface Commit {
  readonly key: string;
  readonly op: 'set' | 'delete';
  readonly version: number;
  readonly tag: string | null;
  readonly status: WriteOutcome['status'];
  /** History time at which the database applied it. */
  readonly at: number;
}

/**
 * Wraps the real store (innermost, below any fault injection) and records what the database
 * really did with every write, and every row version it was seen to hold. It reads rows back in
 * the same tick as the write, which gives the row right after the write for a store that applies
 * a call before returning its promise (SQLite).
 */
export class StoreLedger implements Store {
  readonly kind: string;
  readonly versioned: boolean;
  readonly commits: Commit[] = [];
  private readonly observed: { seq: number; key: string; version: number }[] = [];
  private seq = 0;

  constructor(
    readonly inner: Store,
    private readonly now: () => number,
  ) {
    this.kind = inner.kind;
    this.versioned = inner.versioned;
  }

  prepare(collection: string): Promise<void> {
    return this.inner.prepare(collection);
  }

  async load(collection: string, key: string): Promise<StoreRecord | undefined> {
    const seq = this.seq++;
    const record = await this.inner.load(collection, key);
    this.observe(seq, [key], [record]);
    return record;
  }

  async loadMany(collection: string, keys: readonly string[]): Promise<(StoreRecord | undefined)[]> {
    const seq = this.seq++;
    const records = await this.inner.loadMany(collection, keys);
    this.observe(seq, keys, records);
    return records;
  }

  async write(collection: string, writes: readonly StoreWrite[]): Promise<WriteOutcome[]> {
    const at = this.now();
    const seq = this.seq++;
    const keys = writes.map((w) => w.key);
    const outcomes = this.inner.write(collection, writes);
    const after = this.inner.loadMany(collection, keys);
    after.then((records) => this.observe(seq, keys, records)).catch(() => undefined);
    const result = await outcomes;
    result.forEach((outcome, i) => {
      const w = writes[i]!;
      this.commits.push({ key: w.key, op: w.op, version: w.version, tag: w.op === 'set' ? tagOfJson(w.json) : null, status: outcome.status, at });
    });
    await after.catch(() => undefined);
    return result;
  }

  maxVersion(collection: string): Promise<number> {
    return this.inner.maxVersion ? this.inner.maxVersion(collection) : Promise.resolve(0);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  isApplied(version: number): boolean {
    return this.commits.some((c) => c.version === version && c.status === 'applied');
  }

  /** The version the database applied the value `tag` at, if it did. */
  appliedVersionOf(tag: string): number | undefined {
    return this.commits.find((c) => c.tag === tag && c.status === 'applied')?.version;
  }

  /** Applied commits of `key`, in the order the database applied them. */
  applied(key: string): Commit[] {
    return this.commits.filter((c) => c.key === key && c.status === 'applied').sort((a, b) => a.at - b.at);
  }

  /** Places where the database was seen holding an older version of a key than it held before. */
  regressions(): string[] {
    const found: string[] = [];
    const newest = new Map<string, number>();
    for (const o of [...this.observed].sort((a, b) => a.seq - b.seq)) {
      const before = newest.get(o.key) ?? 0;
      if (o.version < before) found.push(`the database held ${o.key} at v${before}, later at v${o.version}`);
      newest.set(o.key, Math.max(before, o.version));
    }
    const byKey = new Map<string, Commit[]>();
    for (const c of this.commits) if (c.status === 'applied') byKey.set(c.key, [...(byKey.get(c.key) ?? []), c]);
    for (const [key, commits] of byKey) {
      commits.sort((a, b) => a.at - b.at);
      for (let i = 1; i < commits.length; i++) {
        if (commits[i]!.version <= commits[i - 1]!.version) {
          found.push(`the database applied ${key} v${commits[i]!.version} after v${commits[i - 1]!.version}`);
        }
      }
    }
    return found;
  }

  private observe(seq: number, keys: readonly string[], records: readonly (StoreRecord | undefined)[]): void {
    keys.forEach((key, i) => this.observed.push({ seq, key, version: records[i]?.version ?? 0 }));
  }
}

/** A tier entry reduced to what version checks need. */
export interface EntryShape {
  readonly kind: TierEntry['kind'];
  readonly version: number;
}

export interface TierTransition {
  readonly op: string;
  readonly key: string;
  readonly before: EntryShape | undefined;
  readonly after: EntryShape | undefined;
}

function shape(entry: TierEntry | undefined): EntryShape | undefined {
  return entry === undefined ? undefined : { kind: entry.kind, version: entry.version };
}

/**
 * Wraps the real tier (innermost) and records, for every call that may change a key, what the
 * tier held before and after. It reads the key in the same tick as the call, which gives the
 * exact before and after for a tier that applies a call before returning its promise (memory).
 */
export class TierLedger implements Tier {
  readonly kind: string;
  readonly capabilities;
  readonly transitions: TierTransition[] = [];

  constructor(readonly inner: Tier) {
    this.kind = inner.kind;
    this.capabilities = inner.capabilities;
  }

  get(key: string): Promise<TierEntry | undefined> {
    return this.inner.get(key);
  }
  getMany(keys: readonly string[]): Promise<(TierEntry | undefined)[]> {
    return this.inner.getMany(keys);
  }
  set(key: string, entry: TierEntry): Promise<boolean> {
    return this.track('set', key, () => this.inner.set(key, entry));
  }
  async setMany(items: readonly { key: string; entry: TierEntry }[]): Promise<boolean[]> {
    return Promise.all(items.map(({ key, entry }) => this.set(key, entry)));
  }
  invalidate(key: string, version: number | undefined, ttlMs: number): Promise<void> {
    return this.track('invalidate', key, () => this.inner.invalidate(key, version, ttlMs));
  }
  remove(key: string, version: number): Promise<boolean> {
    return this.track('remove', key, () => this.inner.remove(key, version));
  }
  lease(key: string, ttlMs: number): Promise<Lease> {
    return this.inner.lease(key, ttlMs);
  }
  fill(key: string, entry: TierEntry, lease: Lease): Promise<boolean> {
    return this.track('fill', key, () => this.inner.fill(key, entry, lease));
  }
  clear(): Promise<void> {
    return this.inner.clear();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Calls that replaced a version of a key by an older one. */
  regressions(): string[] {
    return this.transitions
      .filter((t) => t.before !== undefined && t.after !== undefined && t.after.version < t.before.version)
      .map((t) => `tier ${t.op} of ${t.key} replaced ${t.before!.kind} v${t.before!.version} by ${t.after!.kind} v${t.after!.version}`);
  }

  private track<T>(op: string, key: string, call: () => Promise<T>): Promise<T> {
    const before = this.inner.get(key);
    const result = call();
    const after = this.inner.get(key);
    Promise.all([before, after])
      .then(([b, a]) => this.transitions.push({ op, key, before: shape(b), after: shape(a) }))
      .catch(() => undefined);
    return result;
  }
}

export type ViolationKind = 'stale' | 'dirty' | 'future' | 'phantom' | 'unknown-value' | 'error' | 'stale-fill' | 'version-regression' | 'final-state';

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
}

export interface ReadCheckOptions {
  /** Reads may only return what the database committed (write-through, write-around). */
  readonly noDirtyReads: boolean;
  /**
   * Other processes share the tier: a write the database committed but whose cache step could
   * not reach the shared tier (E_TIER_UNAVAILABLE) may leave them reading the value before it
   * until the repair lands, as documented, so such a write does not bind later reads.
   */
  readonly otherProcessesMayLag?: boolean;
}

/** A write whose key the shared tier may still serve the old copy of, as its error says. */
function isUnreached(w: WriteOp): boolean {
  if (isCachewiseError(w.error, 'E_TIER_UNAVAILABLE')) return true;
  const unreached = isCachewiseError(w.error, 'E_STORE_UNKNOWN_OUTCOME') ? (w.error.details as { unreached?: string[] }).unreached : undefined;
  return unreached?.includes(w.key) === true;
}

/** Stale, dirty, future, phantom and failed reads, and unexpected write errors. */
export function checkReads(history: History, ledger: StoreLedger, options: ReadCheckOptions): Violation[] {
  const violations: Violation[] = [];
  const committedVersion = (w: WriteOp): number | undefined => {
    if (w.status === 'ok') return w.version;
    if (options.otherProcessesMayLag === true && isUnreached(w)) return undefined;
    if (w.status === 'unknown' && w.tag !== undefined) {
      const version = history.versionOf(w.tag) ?? ledger.appliedVersionOf(w.tag);
      if (version !== undefined && ledger.isApplied(version)) return version;
    }
    return undefined;
  };
  for (const w of history.writes) {
    if (w.status === 'error' || w.status === 'pending') violations.push({ kind: 'error', message: `${w.kind} ${w.key} ended ${w.status}: ${String(w.error)}` });
  }
  for (const r of history.reads) {
    if (r.error !== undefined || r.result === undefined) {
      violations.push({ kind: 'error', message: `read of ${r.key} failed: ${String(r.error)}` });
      continue;
    }
    let hi: number;
    let seen: string;
    if (r.result !== null) {
      const source = history.writes.find((w) => w.tag === r.result);
      const version = history.versionOf(r.result) ?? ledger.appliedVersionOf(r.result);
      if (source === undefined || version === undefined) {
        violations.push({ kind: 'unknown-value', message: `read of ${r.key} at ${r.invokedAt} returned ${r.result}, which no write wrote` });
        continue;
      }
      if (source.key !== r.key) violations.push({ kind: 'unknown-value', message: `read of ${r.key} returned ${r.result}, written to ${source.key}` });
      if (source.invokedAt > r.respondedAt) {
        violations.push({ kind: 'future', message: `read of ${r.key} [${r.invokedAt}..${r.respondedAt}] returned ${r.result}, written only at ${source.invokedAt}` });
      }
      if (options.noDirtyReads && !ledger.isApplied(version)) {
        violations.push({
          kind: 'dirty',
          message: `read of ${r.key} [${r.invokedAt}..${r.respondedAt}] returned ${r.result} (v${version}), which the database never committed (the write ended ${source.status})`,
        });
      }
      hi = version;
      seen = `${r.result} (v${version})`;
    } else {
      const candidates = [
        ...(history.seeded.has(r.key) ? [] : [0]),
        ...ledger.commits.filter((c) => c.key === r.key && c.op === 'delete' && c.status === 'applied' && c.at < r.respondedAt).map((c) => c.version),
        ...history.writes.filter((w) => w.key === r.key && w.kind === 'delete' && w.invokedAt < r.respondedAt && w.version !== undefined).map((w) => w.version!),
      ];
      if (candidates.length === 0) {
        violations.push({ kind: 'phantom', message: `read of ${r.key} [${r.invokedAt}..${r.respondedAt}] found no value, but the key was never deleted` });
        continue;
      }
      hi = Math.max(...candidates);
      seen = `nothing (at best v${hi})`;
    }
    let required: WriteOp | undefined;
    let requiredVersion = 0;
    for (const w of history.writes) {
      if (w.key !== r.key || w.respondedAt >= r.invokedAt) continue;
      const version = committedVersion(w);
      if (version !== undefined && version > requiredVersion) {
        required = w;
        requiredVersion = version;
      }
    }
    if (required !== undefined && hi < requiredVersion) {
      violations.push({
        kind: 'stale',
        message: `read of ${r.key} [${r.invokedAt}..${r.respondedAt}] via ${r.via} returned ${seen}, but ${required.kind} ${required.tag ?? ''} (v${requiredVersion}) was acknowledged (${required.status}) at ${required.respondedAt}`,
      });
    }
  }
  return violations;
}

/** A cache-aside fill, and the write or invalidation of its key that ran entirely since its miss. */
export interface FillRace {
  readonly fill: FillOp;
  readonly write: WriteOp | undefined;
  readonly invalidation: InvalidateOp | undefined;
}

/** The fills that raced a write or an invalidation: each must have been refused. */
export function fillRaces(history: History): FillRace[] {
  const races: FillRace[] = [];
  for (const fill of history.fills) {
    const between = (op: { invokedAt: number; respondedAt: number }) => op.invokedAt > fill.missAt && op.respondedAt < fill.invokedAt;
    const write = history.writes.find((w) => w.key === fill.key && (w.status === 'ok' || w.status === 'unknown') && between(w));
    const invalidation = history.invalidations.find((i) => i.key === fill.key && between(i));
    if (write !== undefined || invalidation !== undefined) races.push({ fill, write, invalidation });
  }
  return races;
}

/** Cache-aside: a fill accepted after a write or invalidation that ran entirely since its miss. */
export function checkFills(history: History): Violation[] {
  return fillRaces(history)
    .filter(({ fill }) => fill.filled === true)
    .map(({ fill: f, write, invalidation }) => {
      const what = write !== undefined ? `${write.kind} ${write.tag ?? ''} [${write.invokedAt}..${write.respondedAt}]` : `invalidate [${invalidation!.invokedAt}..${invalidation!.respondedAt}]`;
      return { kind: 'stale-fill', message: `fill of ${f.key} = ${f.tag} (miss at ${f.missAt}, fill at ${f.invokedAt}) was accepted after ${what}` };
    });
}

/** Version regressions in the database and the tier; `applied` is FaultyTier.applied. */
export function checkVersions(ledger: StoreLedger, tier: TierLedger, applied: readonly { op: string; key: string; version: number }[] = []): Violation[] {
  const found = [...ledger.regressions(), ...tier.regressions()];
  const newest = new Map<string, number>();
  for (const a of applied) {
    if (a.version === 0) continue; // a cache-aside fill: takes the version the tier holds
    const before = newest.get(a.key) ?? 0;
    if (a.version < before) found.push(`the tier applied ${a.op} of ${a.key} v${a.version} after v${before}`);
    newest.set(a.key, Math.max(before, a.version));
  }
  return found.map((message) => ({ kind: 'version-regression', message }));
}

/**
 * Once everything settled: the database holds the newest committed write of every key, every
 * acknowledged write is there or superseded, no refused write is, and the tier holds no value
 * the database does not.
 */
export function checkFinal(
  history: History,
  ledger: StoreLedger,
  rows: ReadonlyMap<string, StoreRecord | undefined>,
  tierEntries: ReadonlyMap<string, TierEntry | undefined>,
): Violation[] {
  const violations: Violation[] = [];
  for (const [key, row] of rows) {
    const applied = ledger.applied(key);
    const newest = applied.reduce((max, c) => Math.max(max, c.version), 0);
    const version = row?.version ?? 0;
    if (version !== newest) violations.push({ kind: 'final-state', message: `the database holds ${key} at v${version}, its newest commit was v${newest}` });
    const rowTag = tagOfJson(row?.json);
    for (const w of history.writes) {
      if (w.key !== key) continue;
      if (w.status === 'ok' && w.version !== undefined && w.version > version) {
        violations.push({ kind: 'final-state', message: `${w.kind} ${key} ${w.tag ?? ''} (v${w.version}) was acknowledged but the database holds v${version}` });
      }
      if (w.status === 'failed' && w.tag !== undefined) {
        const v = history.versionOf(w.tag);
        if (v !== undefined && ledger.isApplied(v)) violations.push({ kind: 'final-state', message: `set ${key} ${w.tag} was refused but the database committed it` });
      }
    }
    const entry = tierEntries.get(key);
    if (entry?.kind === 'value' && tagOf(entry.value) !== rowTag) {
      violations.push({ kind: 'final-state', message: `the tier holds ${key} = ${tagOf(entry.value)} (v${entry.version}), the database ${rowTag ?? 'nothing'} (v${version})` });
    }
    if (entry?.kind === 'absent' && rowTag !== null) {
      violations.push({ kind: 'final-state', message: `the tier holds "${key} is absent", the database ${rowTag} (v${version})` });
    }
  }
  return violations;
}

/** Throws with the violations and the history when there are any. */
export function assertNoViolations(violations: readonly Violation[], history: History): void {
  if (violations.length === 0) return;
  const shown = violations.slice(0, 10).map((v) => `  ${v.kind}: ${v.message}`);
  throw new Error(`${violations.length} violation(s):\n${shown.join('\n')}\nhistory:\n${history.describe()}`);
}
