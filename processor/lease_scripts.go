package processor

import "github.com/redis/go-redis/v9"

// Partition ownership (ordering "key"). A partition's lease key holds its
// fence, "<consumer>/<instance>/<token>", and expires after SessionTimeout
// unless renewed. The token grows with every new owner. Every read, claim
// and commit of an owner first checks that the lease still holds its fence
// (atomically, in the same script), so a worker that lost its lease while
// paused can neither read, claim nor commit once it wakes up.

// leaseAcquireScript takes a partition's lease if it is free, or held by an
// earlier process with this consumer name (a restart), with a new token.
//
// KEYS[1] the lease
// KEYS[2] the token counter
// ARGV[1] consumer
// ARGV[2] this process's instance id
// ARGV[3] lease time, ms
//
// Returns {1, fence} when acquired, {0, current fence} when held by another.
var leaseAcquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) ~= ARGV[1] .. '/' then return {0, v} end
local fence = ARGV[1] .. '/' .. ARGV[2] .. '/' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence, 'PX', ARGV[3])
return {1, fence}
`)

// leaseRenewScript extends a lease still held with fence.
//
// KEYS[1] the lease; ARGV[1] fence; ARGV[2] lease time, ms
// Returns 1 if renewed, 0 if the lease is lost.
var leaseRenewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// leaseReleaseScript gives a lease up if it is still held with fence.
//
// KEYS[1] the lease; ARGV[1] fence
// Returns 1 if released, 0 if it was not held with fence.
var leaseReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// fencedReadScript reads new entries for the owner of a partition, without
// blocking (scripts cannot block).
//
// KEYS[1] the partition stream
// KEYS[2] the lease
// ARGV[1] group, ARGV[2] consumer, ARGV[3] count, ARGV[4] fence
//
// Returns {"fenced"}; {"entries", entries}; or, with nothing new,
// {"empty", id of the stream's last entry} to block on with XREAD.
var fencedReadScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return {'fenced'} end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if r and r[1] and #r[1][2] > 0 then return {'entries', r[1][2]} end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then return {'empty', last[1][1]} end
return {'empty', '0-0'}
`)

// fencedClaimScript takes over, for the owner of a partition, the next
// pending entry from cursor, whoever holds it (XAUTOCLAIM min-idle 0,
// COUNT 1), with its delivery count.
//
// KEYS[1] the partition stream
// KEYS[2] the lease
// ARGV[1] group, ARGV[2] consumer, ARGV[3] cursor, ARGV[4] fence
//
// Returns {"fenced"} or {"ok", next cursor, entries, deleted ids, delivery
// count of the entry (0 if none)}.
var fencedClaimScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return {'fenced'} end
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'COUNT', 1)
local count = 0
if #r[2] > 0 and r[2][1] then
  local id = r[2][1][1]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p > 0 then count = p[1][4] end
end
return {'ok', r[1], r[2], r[3] or {}, count}
`)
