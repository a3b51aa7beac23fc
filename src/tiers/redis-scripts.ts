/**
 * The Lua scripts of the Redis tier: every conditional write of the Tier interface, each one
 * atomic on the server (contract 1: no older version replaces a newer one; contract 2: a fill
 * lands only under a lease that no write or invalidation has revoked since).
 *
 * Each entry script touches exactly two keys, the entry and its lease, both declared in KEYS and
 * sharing one hash tag (`<prefix>{<key>}` and `<prefix>{<key>}:lease`), so they run on a Redis
 * Cluster too. The exception is the generation marker (a random id that a Redis losing its data
 * loses too), checked by `setInGeneration` as a third key: on a single Redis the one marker
 * `<prefix>generation`; on a Cluster the marker of the entry's own slot,
 * `<prefix>{<tag>}generation` with a tag of that slot (redis-slot-generations.ts). Either way
 * `generation` reads (or creates) a marker, and every key of a call is in one slot.
 *
 * An entry is one string, so that a read is one GET: a header line
 * `<kind> <version> <freshUntil> <staleUntil>`, then a newline, then the value as JSON (values
 * only; empty for 'absent' and 'tombstone'). The header fields are the strings the tier sent.
 * The scripts read only the start of the header (GETRANGE), parse versions only to compare them
 * and never turn a number back into a string (Lua would print 14 significant digits and lose
 * precision); the value JSON is never parsed here at all.
 */

/** Helpers shared by the scripts that write an entry. */
const PRELUDE = `
-- kind and version (as number and as the stored string) of the entry at key, and the start of
-- its header; nil when missing, unreadable, or not a string (a key of another layout), which the
-- version rules treat as "nothing cached". The header is short: its first 64 bytes hold the
-- kind, the version and freshUntil.
local function current(key)
  local head = redis.pcall('GETRANGE', key, 0, 63)
  if type(head) ~= 'string' then return nil, nil, nil, nil end
  local kind, stored = string.match(head, '^(%l+) ([^ ]+) ')
  local version = tonumber(stored)
  if version == nil then return nil, nil, nil, nil end
  return kind, version, stored, head
end

-- Replaces the entry at key (whatever its type). ttl is in milliseconds: 0 deletes the entry
-- (already past staleUntil), -1 keeps it without expiry (staleUntil is Infinity), otherwise PX ttl.
local function store(key, kind, version, json, fresh, stale, ttl)
  local ms = tonumber(ttl)
  if ms == 0 then
    redis.call('DEL', key)
    return
  end
  local entry = kind .. ' ' .. version .. ' ' .. fresh .. ' ' .. stale .. '\\n' .. json
  if ms > 0 then
    redis.call('SET', key, entry, 'PX', ms)
  else
    redis.call('SET', key, entry)
  end
end
`;

export interface ScriptSource {
  /** How many of the arguments are keys (always the entry key, then the lease key). */
  readonly numberOfKeys: number;
  readonly lua: string;
}

/** The body of set-if-newer, shared by `set` and `setInGeneration`. */
const SET_IF_NEWER = `
local kind, version = current(KEYS[1])
local incoming = tonumber(ARGV[2])
if version ~= nil then
  if kind == 'tombstone' then
    if incoming < version then return 0 end
  elseif incoming <= version then
    return 0
  end
end
redis.call('DEL', KEYS[2])
store(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
`;

/**
 * set-if-newer. KEYS: entry, lease. ARGV: kind, version, json, freshUntil, staleUntil, ttl.
 * A value or absent marker is replaced only by a strictly higher version, a tombstone by its
 * own version or higher (isNewer in tier.ts). When it applies it revokes the lease. Returns 1
 * when applied, 0 otherwise.
 */
const set: ScriptSource = { numberOfKeys: 2, lua: `${PRELUDE}${SET_IF_NEWER}` };

/**
 * set-if-newer within a generation. KEYS: entry, lease, generation marker (on a Cluster, the
 * marker of the entry's slot).
 * ARGV: as `set`, then the generation the write began under. When the marker still holds that
 * generation, it is `set`. Otherwise the Redis lost its data since (the marker is missing: it is
 * created again with a fresh id from the server's clock, which no earlier id equals) or
 * another process already noticed (the marker differs): what is cached may be older than what
 * was lost, so the entry is not stored; the key is tombstoned at its version instead (unless
 * something newer is cached), which also revokes the lease so that no load begun before fills
 * an older row. Returns 1 or 0 as `set`, or the marker's generation (a string starting with a
 * letter) when it refused for that reason.
 */
const setInGeneration: ScriptSource = {
  numberOfKeys: 3,
  lua: `${PRELUDE}
local marker = redis.call('GET', KEYS[3])
if not marker then
  local now = redis.call('TIME')
  marker = 't' .. now[1] .. '.' .. now[2]
  redis.call('SET', KEYS[3], marker)
end
if marker ~= ARGV[7] then
  redis.call('DEL', KEYS[2])
  local kind, version = current(KEYS[1])
  if version == nil or version <= tonumber(ARGV[2]) then
    store(KEYS[1], 'tombstone', ARGV[2], '', '0', ARGV[5], ARGV[6])
  end
  return marker
end
${SET_IF_NEWER}`,
};

/**
 * a generation marker: the tier's one marker on a single Redis, or one slot's on a Cluster.
 * KEYS: the marker. ARGV: a fresh random id. Returns the marker's id, creating it when missing (a
 * new or emptied Redis, a slot that lost its data) as ARGV[1] and the server's clock: a read that
 * the client retried after a reconnect (its first reply lost) must not bring back an id that the
 * server may have lost in between, and that another process may have read.
 */
const generation: ScriptSource = {
  numberOfKeys: 1,
  lua: `
local marker = redis.call('GET', KEYS[1])
if marker then return marker end
local now = redis.call('TIME')
marker = ARGV[1] .. '.' .. now[1] .. '.' .. now[2]
redis.call('SET', KEYS[1], marker)
return marker
`,
};

/**
 * invalidate. KEYS: entry, lease. ARGV: version ('' for "the cached version"), freshUntil,
 * staleUntil, ttl. Always revokes the lease; then tombstones the key at the version unless the
 * cached entry is newer (or, without a version, unless nothing is cached). Returns 1 when a
 * tombstone was written.
 */
const invalidate: ScriptSource = {
  numberOfKeys: 2,
  lua: `${PRELUDE}
redis.call('DEL', KEYS[2])
local kind, version, stored = current(KEYS[1])
local at = ARGV[1]
if at == '' then
  if version == nil then return 0 end
  at = stored
elseif version ~= nil and version > tonumber(at) then
  return 0
end
store(KEYS[1], 'tombstone', at, '', ARGV[2], ARGV[3], ARGV[4])
return 1
`,
};

/**
 * compare-and-remove. KEYS: entry, lease. ARGV: version. Always revokes the lease; deletes the
 * entry (leaving no tombstone) only if its version is exactly ARGV[1]. Returns 1 when deleted.
 */
const remove: ScriptSource = {
  numberOfKeys: 2,
  lua: `${PRELUDE}
redis.call('DEL', KEYS[2])
local kind, version = current(KEYS[1])
if version == nil or version ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
`,
};

/**
 * lease. KEYS: lease. ARGV: fresh token, ttl in ms. Returns the token that holds the lease:
 * the existing one when a lease is outstanding (concurrent misses share it, so one write revokes
 * it for all of them), else ARGV[1], stored with PX ttl. A ttl <= 0 hands out a token that is
 * never stored, hence already expired, as the memory tier does.
 */
const lease: ScriptSource = {
  numberOfKeys: 1,
  lua: `
local held = redis.call('GET', KEYS[1])
if held then return held end
local ms = tonumber(ARGV[2])
if ms > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ms) end
return ARGV[1]
`,
};

/**
 * fill under a lease. KEYS: entry, lease. ARGV: token, kind, version, json, freshUntil,
 * staleUntil, ttl, now (the filler's clock, ms). Applies only if the lease key still holds the
 * token, and consumes it. Never steps back a version; version 0 ("unknown") adopts the cached
 * entry's version, so any later write replaces the fill, but never replaces a fresh value: one
 * written after the miss, which the load may predate (a write-back write of another process that
 * the database does not have yet). Returns 1 when applied.
 */
const fill: ScriptSource = {
  numberOfKeys: 2,
  lua: `${PRELUDE}
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
local kind, version, stored, head = current(KEYS[1])
local at = ARGV[3]
local incoming = tonumber(at)
if incoming == 0 then
  if kind == 'value' then
    local fresh = string.match(head, '^%l+ [^ ]+ ([^ ]+) ')
    if fresh == 'Infinity' or (tonumber(fresh) or 0) > tonumber(ARGV[8]) then return 0 end
  end
  at = stored or '0'
elseif version ~= nil and incoming < version then
  return 0
end
store(KEYS[1], ARGV[2], at, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
`,
};

/**
 * the generations of many slots of one Cluster master at once (Redis 7 and later: a script flag
 * lets it reach keys of several slots, all of them this node's; it is sent to the node itself,
 * with no declared keys). ARGV: a fresh random id, then the marker keys. Returns the id of each
 * marker, in order, creating the missing ones as `generation` does. A key of a slot that is
 * not the node's fails the whole script (the markers created before stay, unread: harmless), and
 * the tier reads those slots one by one instead, as on an older Redis, which refuses the flag.
 */
export const SLOT_GENERATIONS_ON_NODE_LUA = `#!lua flags=allow-cross-slot-keys
local ids = {}
local made = nil
for i = 2, #ARGV do
  local marker = redis.call('GET', ARGV[i])
  if not marker then
    if made == nil then
      local now = redis.call('TIME')
      made = ARGV[1] .. '.' .. now[1] .. '.' .. now[2]
    end
    marker = made
    redis.call('SET', ARGV[i], marker)
  end
  ids[i - 1] = marker
end
return ids
`;

/**
 * writer-slot renewal (redis-writer-slots.ts). KEYS: the slot's key. ARGV: token, lease (ms).
 * Extends the lease when the token holds the slot, takes the slot again when nobody holds it (a
 * Redis restarted empty, an expiry during an outage); returns 1 then, 0 when another holds it.
 */
const renewWriterSlot: ScriptSource = {
  numberOfKeys: 1,
  lua: `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`,
};

/** writer-slot release. KEYS: the slot's key. ARGV: token. Deletes the key only if the token holds it. */
const releaseWriterSlot: ScriptSource = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`,
};

export const REDIS_SCRIPTS = { set, setInGeneration, invalidate, remove, lease, fill, generation, renewWriterSlot, releaseWriterSlot } as const;

export type RedisScriptName = keyof typeof REDIS_SCRIPTS;
