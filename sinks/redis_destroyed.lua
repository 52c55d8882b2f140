-- An AccountDestroyed event. KEYS as redis_change.lua's; ARGV: the event time.
-- Every subscriber with an older event is unsubscribed, and the destruction is recorded,
-- so that no older event or snapshot changes the account afterwards. Only the current
-- subscribers are read: the events hash holds everyone the account ever had.
local t = tonumber(ARGV[1])
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if tonumber(redis.call('HGET', KEYS[2], s) or '-1') < t then
    redis.call('HSET', KEYS[2], s, ARGV[1])
    redis.call('SREM', KEYS[1], s)
  end
end
local destroyed = tonumber(redis.call('HGET', KEYS[3], 'destroyed_time') or '-1')
if destroyed < t then
  redis.call('HSET', KEYS[3], 'destroyed_time', ARGV[1])
end
return 1
