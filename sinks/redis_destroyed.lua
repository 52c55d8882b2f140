-- An AccountDestroyed event. KEYS as redis_change.lua's; ARGV: the event time.
-- Every subscriber with an older event is unsubscribed, and the destruction is recorded,
-- so that no older event or snapshot changes the account afterwards.
local t = tonumber(ARGV[1])
local events = redis.call('HGETALL', KEYS[2])
for i = 1, #events, 2 do
  if tonumber(events[i + 1]) < t then
    redis.call('HSET', KEYS[2], events[i], ARGV[1])
    redis.call('SREM', KEYS[1], events[i])
  end
end
local destroyed = tonumber(redis.call('HGET', KEYS[3], 'destroyed_time') or '-1')
if destroyed < t then
  redis.call('HSET', KEYS[3], 'destroyed_time', ARGV[1])
end
return 1
