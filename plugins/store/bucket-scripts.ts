// The Lua scripts of the Redis token buckets (docs/architecture.md#the-store, docs/performance.md#the-redis-bucket-lease).
// Both run on the Redis server's clock in one atomic step and mirror lib/token-bucket.ts in integer
// units (one token = 60,000 units, so refill is `rpm` units per millisecond).
//
// A bucket is one hash: `u` (units) and `t` (ms of the last update) as before leases existed, and
// while any instance holds a lease, `l` (tokens reserved by all leases), `x` (the earliest lease
// expiry, ms) and one field per lease, `L:<lease id>` = "<tokens> <expiry ms> <seq>".
//
// Why leases never admit more than one bucket allows: a lease moves tokens out of `u` into a
// reservation `l`, and `u` refills only up to capacity − `l`. So `u` plus the tokens the instances
// still hold unused never exceeds what one bucket, taking each token at the moment its request is
// admitted, would hold: every admission, from `u` or from a lease, is a token that one bucket had
// at that moment. A reservation ends three ways, none of which creates a token: the holder renews
// (it reports what it still holds; the rest counts as used), gives its unused tokens back (they
// return to `u`, still under the same cap), or lets the lease expire (the whole lease counts as
// used; the holder stops using it earlier, by its own clock, measured from before it sent the call).

/** The longest lease a script grants (ms); it bounds the lifetime of a bucket with leases. */
export const MAX_LEASE_MS = 10_000

// Reads the bucket, reclaims expired leases, refills. Leaves `units`, `leased`, `earliest`,
// `changed` (whether the hash must be written) and `now`.
const PRELUDE = `
if redis.replicate_commands then redis.replicate_commands() end
local unit = 60000
local burst = tonumber(ARGV[1])
local cap = burst * unit
local rpm = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local saved = redis.call('HMGET', KEYS[1], 'u', 't', 'l', 'x')
local units = cap
local leased = tonumber(saved[3]) or 0
local earliest = tonumber(saved[4])
local changed = false
local function room (l)
  local r = cap - l * unit
  if r < 0 then return 0 end
  return r
end
if saved[1] then
  units = tonumber(saved[1])
  local at = tonumber(saved[2])
  if earliest and now >= earliest then
    -- Expired leases count as wholly used. Until the last of them expired the old reservation
    -- capped the refill; from then on only what is still leased does.
    local all = redis.call('HGETALL', KEYS[1])
    local still, last, next = 0, at, nil
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, 2) == 'L:' then
        local n, e = string.match(all[i + 1], '^(%d+) (%d+)')
        n = tonumber(n)
        e = tonumber(e)
        if e <= now then
          redis.call('HDEL', KEYS[1], all[i])
          if e > last then last = e end
        else
          still = still + n
          if next == nil or e < next then next = e end
        end
      end
    end
    if last > at then
      units = math.min(room(leased), units + (last - at) * rpm)
      at = last
    end
    leased = still
    earliest = next
    changed = true
  end
  if now > at then units = units + (now - at) * rpm end
end
units = math.min(units, room(leased))
`

// Writes the bucket back and sets its lifetime: without leases, the time to refill fully (a missing
// key is a full bucket, so idle clients cost no memory); with leases, long enough for every lease
// to expire and the bucket to refill from empty after that.
const STORE = `
local function store ()
  if leased > 0 then
    redis.call('HSET', KEYS[1], 'u', units, 't', now, 'l', leased, 'x', earliest)
    redis.call('PEXPIRE', KEYS[1], ${MAX_LEASE_MS} + math.ceil(cap / rpm))
  else
    redis.call('HSET', KEYS[1], 'u', units, 't', now)
    if saved[3] then redis.call('HDEL', KEYS[1], 'l', 'x') end
    redis.call('PEXPIRE', KEYS[1], math.ceil((cap - units) / rpm))
  end
end
`

/**
 * Takes up to ARGV[3] tokens; returns {granted, units before the takes}. Nothing granted (and no
 * lease reclaimed) writes nothing: the stored state already implies the refilled one.
 */
export const TAKE_LUA = `${PRELUDE}${STORE}
local n = tonumber(ARGV[3])
local before = units
local granted = math.min(n, math.floor(units / unit))
if granted > 0 or changed then
  units = units - granted * unit
  store()
end
return { granted, before }
`

/**
 * Renews, starts or ends one lease. ARGV: burst, rpm, lease id, seq, keep (tokens the holder still
 * holds, an upper bound), want (tokens wanted; −1 gives the kept tokens back and ends the lease),
 * duration ms. A call whose seq is not above the lease's stored one is a late duplicate of one the
 * holder gave up on: it changes nothing. A new grant leaves at least half the bucket to exact
 * takes (docs/performance.md#the-redis-bucket-lease), so all leases together never reserve more
 * than half of it. Returns {granted, kept, units left in the bucket, stale 0/1}.
 */
export const LEASE_LUA = `${PRELUDE}${STORE}
local field = 'L:' .. ARGV[3]
local seq = tonumber(ARGV[4])
local keep = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
local duration = math.min(tonumber(ARGV[7]), ${MAX_LEASE_MS})
local held, oldSeq = 0, -1
local record = redis.call('HGET', KEYS[1], field)
if record then
  local n, _, s = string.match(record, '^(%d+) (%d+) (%d+)')
  held = tonumber(n)
  oldSeq = tonumber(s)
end
if seq <= oldSeq then
  if changed then store() end
  return { 0, 0, units, 1 }
end
local kept = math.min(keep, held)
leased = leased - held
local granted = 0
if want < 0 then
  units = math.min(units + kept * unit, room(leased))
  kept = 0
else
  local spare = math.floor(units / unit) - math.ceil(burst / 2)
  granted = math.max(0, math.min(want, spare))
  units = units - granted * unit
end
local total = kept + granted
if total > 0 then
  local expiry = now + duration
  redis.call('HSET', KEYS[1], field, total .. ' ' .. expiry .. ' ' .. seq)
  leased = leased + total
  if earliest == nil or expiry < earliest then earliest = expiry end
elseif record then
  redis.call('HDEL', KEYS[1], field)
end
if leased <= 0 then
  leased = 0
  earliest = nil
end
if record or total > 0 or changed then store() end
return { granted, kept, units, 0 }
`
