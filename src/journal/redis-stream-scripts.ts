/**
 * The Lua scripts of the Redis Stream journal (./redis-stream-journal.ts). Each runs atomically
 * on the server, which is what makes ownership of an entry unambiguous: an appended entry is in
 * its appender's pending list before any other command can see it, and an abandoned entry moves
 * to exactly one claimer.
 *
 * Every key a script touches shares the stream's hash slot (the liveness keys carry the stream's
 * hash tag), so the scripts also run on a Redis Cluster.
 */

/**
 * Appends records and delivers them to the appending consumer in the same step.
 *
 * KEYS[1] stream. ARGV: group, consumer, record count, then five per record: collection, op,
 * key, version, json ('' for a delete).
 *
 * First reads what is undelivered (nothing, while every writer of the stream uses this script;
 * the read also fails with NOGROUP before anything is added if the stream or group is gone),
 * then adds the records and reads them into the consumer's pending list. Replies
 * { ids of the records, entries found undelivered before them }.
 */
const APPEND = `
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local strays = {}
local function readUndelivered(into)
  while true do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n + 100, 'STREAMS', stream, '>')
    if not reply then return end
    local entries = reply[1][2]
    if #entries == 0 then return end
    if into then for _, entry in ipairs(entries) do into[#into + 1] = entry end end
  end
end
readUndelivered(strays)
local ids = {}
for i = 0, n - 1 do
  local b = 4 + i * 5
  if ARGV[b + 1] == 'set' then
    ids[i + 1] = redis.call('XADD', stream, '*', 'c', ARGV[b], 'o', 'set', 'k', ARGV[b + 2], 'v', ARGV[b + 3], 'j', ARGV[b + 4])
  else
    ids[i + 1] = redis.call('XADD', stream, '*', 'c', ARGV[b], 'o', ARGV[b + 1], 'k', ARGV[b + 2], 'v', ARGV[b + 3])
  end
end
readUndelivered(nil)
return { ids, strays }
`;

/**
 * Moves the pending entries of dead consumers to this one.
 *
 * KEYS[1] stream. ARGV: group, this consumer, prefix of the liveness keys, most entries to claim.
 *
 * A consumer is dead when its liveness key (prefix .. name) is missing: it expired because its
 * instance stopped refreshing it, or a clean close deleted it. Its pending entries are claimed
 * with XCLAIM (entries deleted meanwhile are dropped from the pending list by the server), and a
 * dead consumer left with nothing pending is deleted from the group. Replies the claimed entries.
 */
const CLAIM = `
local stream, group, me, alivePrefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local budget = tonumber(ARGV[4])
local claimed = {}
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local name, pending
  for i = 1, #info, 2 do
    if info[i] == 'name' then name = info[i + 1] elseif info[i] == 'pending' then pending = info[i + 1] end
  end
  if name ~= me and redis.call('EXISTS', alivePrefix .. name) == 0 then
    local ids = {}
    if pending > 0 and budget > 0 then
      for i, entry in ipairs(redis.call('XPENDING', stream, group, '-', '+', budget, name)) do ids[i] = entry[1] end
    end
    if #ids > 0 then
      for _, entry in ipairs(redis.call('XCLAIM', stream, group, me, 0, unpack(ids))) do
        if type(entry) == 'table' then claimed[#claimed + 1] = entry end
      end
      budget = budget - #ids
    end
    if #ids >= pending then redis.call('XGROUP', 'DELCONSUMER', stream, group, name) end
  end
  if budget <= 0 then break end
end
return claimed
`;

/**
 * Takes or refreshes a consumer's liveness key. KEYS[1] the key. ARGV: token, time to live (ms).
 * Replies 0 when taken (free, or already ours), else the holder's remaining time to live in ms
 * (-1: no expiry).
 */
const HOLD = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == 0 then return 1 end
return ttl
`;

/** Deletes a liveness key if it still holds our token. KEYS[1] the key. ARGV: token. */
const LET_GO = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export const STREAM_JOURNAL_SCRIPTS = { append: APPEND, claim: CLAIM, hold: HOLD, letGo: LET_GO } as const;
export type StreamJournalScript = keyof typeof STREAM_JOURNAL_SCRIPTS;
