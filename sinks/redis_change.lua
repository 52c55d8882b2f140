-- A Subscribe or Unsubscribe. KEYS: subscribers (set), events (hash: subscriber -> last
-- event time, ms), account (hash: snapshot_time, destroyed_time). ARGV: "true" to
-- subscribe, "false" to unsubscribe; the event time; the subscribers.
-- An event no newer than the account's destruction, or than a subscriber's last event,
-- changes nothing.
local t = tonumber(ARGV[2])
local destroyed = tonumber(redis.call('HGET', KEYS[3], 'destroyed_time') or '-1')
if destroyed >= t then
  return 0
end
local changed = 0
for i = 3, #ARGV do
  local s = ARGV[i]
  local last = tonumber(redis.call('HGET', KEYS[2], s) or '-1')
  if last < t then
    redis.call('HSET', KEYS[2], s, ARGV[2])
    if ARGV[1] == 'true' then
      redis.call('SADD', KEYS[1], s)
    else
      redis.call('SREM', KEYS[1], s)
    end
    changed = changed + 1
  end
end
return changed
