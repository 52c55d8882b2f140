-- One part of a snapshot. KEYS: subscribers, events, account (as redis_change.lua's), the
-- snapshot's members (set) and parts received (set). ARGV: the snapshot time T, this part,
-- the number of parts, the seconds to keep an incomplete snapshot, the part's subscribers.
-- A snapshot no newer than the account's last snapshot or destruction changes nothing. The
-- part is kept; once every part is there, the snapshot is applied: a listed subscriber is
-- subscribed and a subscribed one not listed is unsubscribed, each only if their last
-- event is older than T; then T is recorded and the parts dropped.
local t = tonumber(ARGV[1])
local snapshot = tonumber(redis.call('HGET', KEYS[3], 'snapshot_time') or '-1')
local destroyed = tonumber(redis.call('HGET', KEYS[3], 'destroyed_time') or '-1')
if snapshot >= t or destroyed >= t then
  return 0
end
for i = 5, #ARGV do
  redis.call('SADD', KEYS[4], ARGV[i])
end
redis.call('SADD', KEYS[5], ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[5], ARGV[4])
if redis.call('SCARD', KEYS[5]) < tonumber(ARGV[3]) then
  return 0
end
local function older(s)
  return tonumber(redis.call('HGET', KEYS[2], s) or '-1') < t
end
for _, s in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if older(s) then
    redis.call('HSET', KEYS[2], s, ARGV[1])
    redis.call('SADD', KEYS[1], s)
  end
end
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SISMEMBER', KEYS[4], s) == 0 and older(s) then
    redis.call('HSET', KEYS[2], s, ARGV[1])
    redis.call('SREM', KEYS[1], s)
  end
end
redis.call('HSET', KEYS[3], 'snapshot_time', ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
return 1
