/**
 * Lua scripts: each index change and each lookup is one atomic round trip, so several routers
 * can consume the same event streams and query the index concurrently.
 *
 * Keys (prefix kcache:):
 *   blk:{hash}       HASH  worker -> "tier|lastAccessMs"   which workers hold the block
 *   wblk:{worker}    SET   hashes                          a worker's blocks, to purge it
 *   cursor:{worker}  STRING "epoch:seq"                    last event applied from its stream
 *   indexed          SET   workers the index holds a cursor for (so no consumer has to SCAN)
 */

/**
 * APPLY: KEYS[1]=cursor:{w}, KEYS[2]=wblk:{w}; ARGV = worker, epoch, seq, type, tier, nowMs, hashes...
 * Returns "ok", "dup" (already applied) or "gap" (events were lost: the caller resyncs).
 * A new epoch must start with `cleared` at seq 1 (a restarted worker's announcement).
 */
export const APPLY = `
local cur = redis.call('GET', KEYS[1])
local worker, epoch, seq, typ, tier, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
if cur then
  local cep, cseq = string.match(cur, '^(%d+):(%d+)$')
  cseq = tonumber(cseq)
  if cep == epoch then
    if seq <= cseq then return 'dup' end
    if seq ~= cseq + 1 then return 'gap' end
  elseif tonumber(epoch) < tonumber(cep) then
    return 'dup'
  elseif not (typ == 'cleared' and seq == 1) then
    return 'gap'
  end
elseif not (typ == 'cleared' and seq == 1) then
  return 'gap'
end
if typ == 'cleared' then
  local hs = redis.call('SMEMBERS', KEYS[2])
  for _, h in ipairs(hs) do
    redis.call('HDEL', 'kcache:blk:' .. h, worker)
  end
  redis.call('DEL', KEYS[2])
elseif typ == 'stored' then
  for i = 7, #ARGV do
    redis.call('HSET', 'kcache:blk:' .. ARGV[i], worker, tier .. '|' .. now)
    redis.call('SADD', KEYS[2], ARGV[i])
  end
elseif typ == 'removed' then
  for i = 7, #ARGV do
    redis.call('HDEL', 'kcache:blk:' .. ARGV[i], worker)
    redis.call('SREM', KEYS[2], ARGV[i])
  end
end
redis.call('SET', KEYS[1], epoch .. ':' .. seq)
redis.call('SADD', 'kcache:indexed', worker)
return 'ok'
`;

/**
 * RESYNC: KEYS[1]=cursor:{w}, KEYS[2]=wblk:{w}; ARGV = worker, epoch, seq, tier, nowMs, hashes...
 * Replaces the worker's blocks with a snapshot taken at (epoch, seq).
 */
export const RESYNC = `
local worker, epoch, seq, tier, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local hs = redis.call('SMEMBERS', KEYS[2])
for _, h in ipairs(hs) do
  redis.call('HDEL', 'kcache:blk:' .. h, worker)
end
redis.call('DEL', KEYS[2])
for i = 6, #ARGV do
  redis.call('HSET', 'kcache:blk:' .. ARGV[i], worker, tier .. '|' .. now)
  redis.call('SADD', KEYS[2], ARGV[i])
end
redis.call('SET', KEYS[1], epoch .. ':' .. seq)
redis.call('SADD', 'kcache:indexed', worker)
return 'ok'
`;

/** PURGE: KEYS[1]=cursor:{w}, KEYS[2]=wblk:{w}; ARGV[1]=worker. Forgets a dead worker. */
export const PURGE = `
local hs = redis.call('SMEMBERS', KEYS[2])
for _, h in ipairs(hs) do
  redis.call('HDEL', 'kcache:blk:' .. h, ARGV[1])
end
redis.call('DEL', KEYS[2], KEYS[1])
redis.call('SREM', 'kcache:indexed', ARGV[1])
redis.call('SREM', 'kcache:workers', ARGV[1])
return #hs
`;

/**
 * MATCH: ARGV = nWorkers, workers..., hashes... Returns [worker, matchedBlocks, device?...] for
 * each worker: the number of leading hashes it holds (a prefix: the first missing block ends it),
 * and how many of those are in its device tier. Stops walking when no worker is still matching.
 */
export const MATCH = `
local n = tonumber(ARGV[1])
local alive, matched, device = {}, {}, {}
for i = 1, n do alive[ARGV[1 + i]] = true; matched[ARGV[1 + i]] = 0; device[ARGV[1 + i]] = 0 end
local remaining = n
for j = 2 + n, #ARGV do
  if remaining == 0 then break end
  local owners = redis.call('HGETALL', 'kcache:blk:' .. ARGV[j])
  local here = {}
  for k = 1, #owners, 2 do here[owners[k]] = owners[k + 1] end
  for w, _ in pairs(alive) do
    local v = here[w]
    if v then
      matched[w] = matched[w] + 1
      if string.sub(v, 1, 6) == 'device' then device[w] = device[w] + 1 end
    else
      alive[w] = nil
      remaining = remaining - 1
    end
  end
end
local out = {}
for i = 1, n do
  local w = ARGV[1 + i]
  out[#out + 1] = w
  out[#out + 1] = matched[w]
  out[#out + 1] = device[w]
end
return out
`;
