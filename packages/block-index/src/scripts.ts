/**
 * Lua scripts of the Redis block index. Each touches the keys of one worker only (its cursor,
 * blocks hash and stream, all hash-tagged `{<worker>}`: see @kcache/protocol's redis.ts), so each
 * runs atomically on one node of a Redis Cluster, and several routers can consume the same event
 * streams and query the index concurrently.
 */

/**
 * APPLY: KEYS[1]=cursor, KEYS[2]=blocks; ARGV = epoch, seq, type, tier, nowMs, hashes...
 * Returns "ok", "dup" (already applied) or "gap" (events were lost: the caller resyncs). The
 * sequencing rule is block-index's sequenceCheck (types.ts), which the memory index runs.
 */
export const APPLY = `
local cur = redis.call('GET', KEYS[1])
local epoch, seq, typ, tier, now = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local starts = typ == 'cleared' and seq == 1
if cur then
  local cep, cseq = string.match(cur, '^(%d+):(%d+)$')
  cseq = tonumber(cseq)
  if cep == epoch then
    if seq <= cseq then return 'dup' end
    if seq ~= cseq + 1 then return 'gap' end
  elseif tonumber(epoch) < tonumber(cep) then
    return 'dup'
  elseif not starts then
    return 'gap'
  end
elseif not starts then
  return 'gap'
end
if typ == 'cleared' then
  redis.call('DEL', KEYS[2])
elseif typ == 'stored' then
  local v = tier .. '|' .. now
  for i = 6, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], v) end
elseif typ == 'removed' then
  for i = 6, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
end
redis.call('SET', KEYS[1], epoch .. ':' .. seq)
return 'ok'
`;

/**
 * RESYNC: KEYS[1]=cursor, KEYS[2]=blocks; ARGV = epoch, seq, nowMs, then per tier: tier, count,
 * that many hashes. A snapshot older than what the index already has of the same epoch (another
 * router applied newer events while this one fetched it) changes nothing: returns "stale".
 */
export const RESYNC = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local cep, cseq = string.match(cur, '^(%d+):(%d+)$')
  if cep == ARGV[1] and tonumber(cseq) > tonumber(ARGV[2]) then return 'stale' end
end
redis.call('DEL', KEYS[2])
local i = 4
while i <= #ARGV do
  local v, n = ARGV[i] .. '|' .. ARGV[3], tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + n do redis.call('HSET', KEYS[2], ARGV[j], v) end
  i = i + 2 + n
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2])
return 'ok'
`;

/** PURGE: KEYS[1]=cursor, KEYS[2]=blocks, KEYS[3]=stream. Forgets a dead worker; returns its block count. */
export const PURGE = `
local n = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return n
`;

/**
 * MATCH: KEYS[1]=blocks; ARGV = hashes. Returns {matched, device, offload_ram, offload_disk}: how
 * many leading hashes the worker holds, stopping at the first it does not, and how many of those
 * are in its device tier and in each offload tier (the rest are KCache host-tier blocks).
 */
export const MATCH = `
local matched, device, ram, disk = 0, 0, 0, 0
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if not v then break end
  matched = matched + 1
  if string.sub(v, 1, 7) == 'device|' then device = device + 1
  elseif string.sub(v, 1, 12) == 'offload_ram|' then ram = ram + 1
  elseif string.sub(v, 1, 13) == 'offload_disk|' then disk = disk + 1 end
end
return {matched, device, ram, disk}
`;
