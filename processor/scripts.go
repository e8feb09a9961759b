package processor

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// commitScript applies one commit of a partition atomically.
//
//	KEYS[1]   the partition stream
//	KEYS[2]   the dead-letter stream
//	KEYS[3]   the partition's lease (checked when ARGV[5] is not empty)
//	KEYS[4..] with dedupe: the set to mark ids in, then ARGV[2] sets to look
//	          ids up in; after those, every stream and hash an effect writes
//	ARGV[1]   consumer group
//	ARGV[2]   number of dedupe sets to look up in; 0 disables dedupe
//	ARGV[3]   expiry of the mark set, unix ms
//	ARGV[4]   dead-letter MAXLEN ~ (0: none)
//	ARGV[5]   the owner's fence ("" with ordering none): if the lease holds
//	          another, nothing is written and the reply is "!fenced"
//	ARGV[6]   "c" to commit; "d" for a dry run that writes nothing and
//	          replies what a commit would do now (pending is checked with
//	          XPENDING instead of XACK)
//	ARGV[7..] entries, each: id, kind, then by kind
//	  "p" processed: dedupe id ("" for none), effect count, effects; an
//	      effect is "x" (XADD), key index, maxlen, n, n field/value strings;
//	      or "h" (HSET), key index, n, n field/value strings
//	  "d" dead letter: n, n field/value strings (n = 0: the dead letter was
//	      written elsewhere already; the entry is only acked)
//	  "a" ack only (a duplicate found before processing)
//
// An entry's effects are written only if its XACK returns 1, so a commit
// that runs twice, or races another worker's, writes each effect once.
//
// Returns a string with one letter per entry: "p" processed, "u" duplicate,
// "d" dead-lettered, "s" stale (already acked; nothing written). If a key to
// be written holds the wrong type, nothing is written and the reply is
// "!<type> <key>"; if two effects write one key as a stream and as a hash,
// "!conflict <key>".
var commitScript = redis.NewScript(`
local stream, dlq = KEYS[1], KEYS[2]
local group = ARGV[1]
local nbuckets = tonumber(ARGV[2])
local dlqmax = tonumber(ARGV[4])
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[5] then return '!fenced' end
local dry = ARGV[6] == 'd'

-- pass 1: find where each entry starts, collect the dedupe ids and the
-- type each written key must have
local starts, kinds, ids = {}, {}, {}
local want = {[dlq] = 'stream'}
if nbuckets > 0 then want[KEYS[4]] = 'set' end
local i = 7
while i <= #ARGV do
  local kind = ARGV[i+1]
  starts[#starts+1] = i
  kinds[#kinds+1] = kind
  if kind == 'p' then
    if ARGV[i+2] ~= '' then ids[#ids+1] = ARGV[i+2] end
    local neff = tonumber(ARGV[i+3])
    i = i + 4
    for _ = 1, neff do
      local k, t = KEYS[tonumber(ARGV[i+1])], 'hash'
      if ARGV[i] == 'x' then t = 'stream' end
      if want[k] and want[k] ~= t then return '!conflict ' .. k end
      want[k] = t
      if t == 'stream' then i = i + 4 + tonumber(ARGV[i+3]) else i = i + 3 + tonumber(ARGV[i+2]) end
    end
  elseif kind == 'd' then
    i = i + 3 + tonumber(ARGV[i+2])
  else
    i = i + 2
  end
end

-- Nothing is written unless every write can succeed: a script that fails
-- half-way keeps its earlier writes, and an entry is acked before its
-- writes. Key types are checked here; argument counts (Lua's unpack takes
-- fewer than 8000 values) are bounded by the caller.
for k, t in pairs(want) do
  local got = redis.call('TYPE', k)['ok']
  if got ~= 'none' and got ~= t then return '!' .. got .. ' ' .. k end
end

local seen = {}
if nbuckets > 0 and #ids > 0 then
  for b = 1, nbuckets do
    for s = 1, #ids, 1000 do
      local chunk = {}
      for j = s, math.min(s + 999, #ids) do chunk[#chunk+1] = ids[j] end
      local hit = redis.call('SMISMEMBER', KEYS[4 + b], unpack(chunk))
      for j = 1, #hit do if hit[j] == 1 then seen[chunk[j]] = true end end
    end
  end
end

local function fieldargs(from, n, prefix)
  local args = prefix
  for j = from, from + n - 1 do args[#args+1] = ARGV[j] end
  return args
end

-- a dry run: what a commit would do, writing nothing
if dry then
  local out, acked = {}, {}
  for e = 1, #starts do
    local s, kind = starts[e], kinds[e]
    local did = ARGV[s+2]
    -- a missing group or stream is what XACK would answer 0 to
    local p = redis.pcall('XPENDING', stream, group, ARGV[s], ARGV[s], 1)
    if type(p) ~= 'table' or p.err or #p == 0 or acked[ARGV[s]] then
      out[e] = 's'
    elseif kind == 'a' then
      out[e] = 'u'
    elseif kind == 'd' then
      out[e] = 'd'
    elseif did ~= '' and seen[did] then
      out[e] = 'u'
    else
      if did ~= '' and nbuckets > 0 then seen[did] = true end
      out[e] = 'p'
    end
    acked[ARGV[s]] = true
  end
  return table.concat(out)
end

-- pass 2: ack each entry and write its effects
local out, marks = {}, {}
for e = 1, #starts do
  local s, kind = starts[e], kinds[e]
  local id = ARGV[s]
  if redis.call('XACK', stream, group, id) == 0 then
    out[e] = 's'
  elseif kind == 'a' then
    out[e] = 'u'
  elseif kind == 'd' and ARGV[s+2] == '0' then
    out[e] = 'd'
  elseif kind == 'd' then
    local args = {dlq}
    if dlqmax > 0 then args[#args+1] = 'MAXLEN'; args[#args+1] = '~'; args[#args+1] = dlqmax end
    args[#args+1] = '*'
    redis.call('XADD', unpack(fieldargs(s + 3, tonumber(ARGV[s+2]), args)))
    out[e] = 'd'
  else
    local did = ARGV[s+2]
    if did ~= '' and seen[did] then
      out[e] = 'u'
    else
      if did ~= '' and nbuckets > 0 then seen[did] = true; marks[#marks+1] = did end
      local neff = tonumber(ARGV[s+3])
      local j = s + 4
      for _ = 1, neff do
        if ARGV[j] == 'x' then
          local args = {KEYS[tonumber(ARGV[j+1])]}
          local maxlen = tonumber(ARGV[j+2])
          if maxlen > 0 then args[#args+1] = 'MAXLEN'; args[#args+1] = '~'; args[#args+1] = maxlen end
          args[#args+1] = '*'
          local n = tonumber(ARGV[j+3])
          redis.call('XADD', unpack(fieldargs(j + 4, n, args)))
          j = j + 4 + n
        else
          local n = tonumber(ARGV[j+2])
          redis.call('HSET', unpack(fieldargs(j + 3, n, {KEYS[tonumber(ARGV[j+1])]})))
          j = j + 3 + n
        end
      end
      out[e] = 'p'
    end
  end
end

if #marks > 0 then
  for s = 1, #marks, 1000 do
    redis.call('SADD', KEYS[4], unpack(marks, s, math.min(s + 999, #marks)))
  end
  redis.call('PEXPIREAT', KEYS[4], ARGV[3])
end
return table.concat(out)
`)

// deleteConsumerScript deletes a consumer from a group if, and only if, it
// has no heartbeat and nothing pending; checked and done atomically, so a
// consumer that just read entries is never deleted.
//
// KEYS[1] the partition stream
// KEYS[2] the consumer's heartbeat key
// ARGV[1] consumer group
// ARGV[2] consumer
//
// Returns 1 if the consumer was deleted, 0 if not.
var deleteConsumerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// maxEffectStrings bounds the field/value strings of one write, below what
// the script can pass to one redis.call (Lua's unpack limit, about 8000).
const maxEffectStrings = 7000

// touchScript resets the idle time of entries still pending for a consumer.
//
// KEYS[1] the partition stream
// ARGV[1] consumer group
// ARGV[2] consumer
// ARGV[3..] entry ids
//
// Returns the number of entries touched.
var touchScript = redis.NewScript(`
local mine = {}
for _, e in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000000, ARGV[2])) do mine[e[1]] = true end
local ids = {}
for i = 3, #ARGV do if mine[ARGV[i]] then ids[#ids+1] = ARGV[i] end end
for s = 1, #ids, 1000 do
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for j = s, math.min(s + 999, #ids) do args[#args+1] = ids[j] end
  args[#args+1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return #ids
`)

// commitArgs builds KEYS and ARGV for commitScript.
type commitArgs struct {
	keys   []string
	argv   []any
	keyIdx map[string]int
}

func (c *commitArgs) reset(stream, dlq, lease, fence, group string, markKey string, checkKeys []string, markExpireMs int64, dlqMaxLen int64) {
	c.keys = append(c.keys[:0], stream, dlq, lease)
	if c.keyIdx == nil {
		c.keyIdx = make(map[string]int)
	}
	clear(c.keyIdx)
	nb := 0
	if markKey != "" {
		c.keys = append(c.keys, markKey)
		c.keys = append(c.keys, checkKeys...)
		nb = len(checkKeys)
	}
	c.argv = append(c.argv[:0], group, nb, markExpireMs, dlqMaxLen, fence, "c")
}

// dryRun turns the built arguments into a dry run's, or back.
func (c *commitArgs) dryRun(on bool) {
	c.argv[5] = "c"
	if on {
		c.argv[5] = "d"
	}
}

func (c *commitArgs) key(k string) int {
	if i, ok := c.keyIdx[k]; ok {
		return i
	}
	c.keys = append(c.keys, k)
	i := len(c.keys) // Lua indexes from 1
	c.keyIdx[k] = i
	return i
}

func (c *commitArgs) appendStrings(ss []string) {
	c.argv = append(c.argv, len(ss))
	for _, s := range ss {
		c.argv = append(c.argv, s)
	}
}

func (c *commitArgs) processed(id, dedupeID string, effects []Effect) {
	c.argv = append(c.argv, id, "p", dedupeID, len(effects))
	for _, e := range effects {
		switch e.Kind {
		case EffectHSet:
			c.argv = append(c.argv, "h", c.key(e.Key))
		default:
			c.argv = append(c.argv, "x", c.key(e.Key), strconv.FormatInt(e.MaxLen, 10))
		}
		c.appendStrings(e.Fields)
	}
}

func (c *commitArgs) deadLetter(id string, fields []string) {
	c.argv = append(c.argv, id, "d")
	c.appendStrings(fields)
}

func (c *commitArgs) ackOnly(id string) {
	c.argv = append(c.argv, id, "a")
}
