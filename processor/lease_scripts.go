package processor

import "github.com/redis/go-redis/v9"

// Partition ownership (ordering "key"). A partition's lease key holds its
// fence, "<consumer>/<instance>/<token>", and expires after SessionTimeout
// unless renewed. The token grows with every new owner. Every read, claim
// and commit of an owner first checks that the lease still holds its fence
// (atomically, in the same script), so a worker that lost its lease while
// paused can neither read, claim nor commit once it wakes up.

// leaseAcquireScript takes a partition's lease, with a new token, if it is
// free, held by this very process (instance), or, when ARGV[4] is "1",
// held by an earlier process with this consumer name (a restart: the first
// acquire after it starts). Never from another live process of the same
// name after that, or two of them would take it from each other forever.
//
// KEYS[1] the lease
// KEYS[2] the token counter
// ARGV[1] consumer (no "/")
// ARGV[2] this process's instance id
// ARGV[3] lease time, ms
// ARGV[4] "1" if a holder with this consumer name may be replaced
//
// Returns {1, fence} when acquired, {0, current fence} when held by another.
var leaseAcquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  local name, inst = string.match(v, '^([^/]*)/([^/]*)/')
  local mine = name == ARGV[1] and (inst == ARGV[2] or ARGV[4] == '1')
  if not mine then return {0, v} end
end
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

// membershipScript renews a worker's membership and returns the members to
// assign partitions to, all by Redis's clock, so that workers' clocks do not
// matter.
//
// KEYS[1] the members sorted set (score: membership expiry, unix ms)
// ARGV[1] consumer, ARGV[2] session timeout ms, ARGV[3] suspect ms
//
// Returns the members that renewed within the last suspect ms.
var membershipScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 10 * ttl)
return redis.call('ZRANGEBYSCORE', KEYS[1], now + ttl - tonumber(ARGV[3]), '+inf')
`)

// deleteConsumerScript deletes a consumer from a group if, and only if, it
// has nothing pending; checked and done atomically, so a consumer that
// just read entries is never deleted.
//
// KEYS[1] the partition stream
// ARGV[1] consumer group
// ARGV[2] consumer
//
// Returns 1 if the consumer was deleted, 0 if not.
var deleteConsumerScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`)
