package processor

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// commitScript applies one commit of a partition atomically. Its source
// is commitScriptHead, the handlers of the effect table (effects.go), then
// commitScriptBody.
//
//	KEYS[1]   the partition stream
//	KEYS[2]   the dead-letter stream
//	KEYS[3]   the partition's lease (checked when ARGV[5] is not empty)
//	KEYS[4..] with dedupe: the set to mark ids in, then ARGV[2] sets to look
//	          ids up in; after those, every key an effect writes
//	ARGV[1]   consumer group
//	ARGV[2]   number of dedupe sets to look up in; 0 disables dedupe
//	ARGV[3]   expiry of the mark set, unix ms
//	ARGV[4]   dead-letter MAXLEN ~ (0: none)
//	ARGV[5]   the owner's fence ("" with ordering none): if the lease holds
//	          another, nothing is written and the reply is "!fenced"
//	ARGV[6]   "c" to commit, or "c<i> <ttl> <token>" to commit once: KEYS[i]
//	          (the partition's last-commit key) keeps "<token>\n<reply>" for
//	          ttl ms, and a
//	          try of the same commit (same token) whose first try ran but
//	          whose reply was lost gets that reply back and writes nothing;
//	          "d" for a dry run that writes nothing and
//	          replies what a commit would do now (pending is checked with
//	          XPENDING instead of XACK)
//	ARGV[7]   the type each key must have, one letter per key of KEYS (see
//	          effectSpec.keyType; "-" not checked)
//	ARGV[8]   the opcodes the commit uses, space-separated: one the script
//	          has no handler for fails the commit before anything is written
//	ARGV[9]   the KEYS indexes of the processing-time and event-time timer
//	          sets and the timer data hash, space-separated, or "" when the
//	          commit has no timers
//	ARGV[10]  the watermark to store in the meta hash (KEYS index in
//	          ARGV[11]), or "" for none
//	ARGV[12]  C, the number of value checks, which follow, 4 strings each:
//	          "i" (HINCRBY), key index, field, increment: the field must
//	          hold an integer (or nothing) and the sum of the commit's
//	          increments must not overflow; "f" (HINCRBYFLOAT): likewise
//	          for a number; "h" (PFADD), key index, "", "": the key must
//	          hold a HyperLogLog (or nothing). A check that fails writes
//	          nothing and replies "!value <key>\n<why>"
//	then      D, the number of dedupe ids, which follow; with a fence, the
//	          id of a processed entry is there once (the caller turns a
//	          later entry with the same id into "a")
//	then      A, the number of entry ids to ack with one XACK, which
//	          follow; 0 to ack each entry on its own
//	then      the commit's common effect, written by entries "o", "O", "r"
//	          and "R": "XADD", key index, trim ("MAXLEN", "MINID" or ""),
//	          trim value, n, n field names; or "HSET", key index, "", "", n,
//	          n field names; then n letters, one a field: "i" its value is
//	          the entry's own id (its dedupe id, else its entry id) and is
//	          not sent, "v" it is sent; or "" for none
//	then      entries, each: id, kind, then by kind
//	  "O" processed with one common effect: the values of its fields "v";
//	      its dedupe id is the next of the D
//	  "o" the same without a dedupe id
//	  "R" (its id is a count m) m entries "O" in a row, with one XACK: the
//	      index among the A of the first one's id, then each one's values
//	  "r" the same for m entries "o"
//	  "p" processed: the index of its dedupe id among the D (0 for none),
//	      effect count, effects; an effect is its opcode and then what its
//	      handler reads (effects.go)
//	  "d" dead letter: the index of its dedupe id among the D (0 for none;
//	      an id seen before makes it a duplicate, acked and not written),
//	      n, n field/value strings (n = 0: the dead letter was written
//	      elsewhere already; the entry is only acked)
//	  "a" ack only (a duplicate found before processing)
//	  "z" the id again, later in the same commit: stale
//	  "t" a timer firing: the id is the timer's member; then the KEYS
//	      index of its timer set, when it was due, effect count, effects.
//	      It is "pending" while the set still holds it with that score;
//	      committing removes it from the set and the data hash, and writes
//	      its effects
//	  "T" a timer firing dead-lettered: member, set index, due, n, n
//	      dead-letter strings
//
// An entry's effects are written only if its XACK returns 1 (a timer's,
// only if its removal does), so a commit that runs twice, or races another
// worker's, writes each effect once. The caps (MAXLEN, MINID) of the
// streams XADD writes are applied at the end, with XTRIM ~ (see
// trimLater).
//
// The owner of a partition (a fence) acks the whole batch with one XACK:
// only the owner acks the partition's entries, and a commit is all or
// nothing, so its entries are either all pending or all acked by an earlier
// run of the same commit (a retry after a lost reply): the count tells
// which. If an operator acked some by hand meanwhile, which ones is not
// known; every effect is written (nothing is lost) and Redis logs a warning.
// Two effects that write one key as two types are refused by the caller
// before the script runs (commitArgs.conflict).
//
// Returns a string with one letter per entry: "p" processed, "u" duplicate,
// "d" dead-lettered, "s" stale (already acked, or a timer already fired or
// moved; nothing written). If a key to be written holds the wrong type,
// nothing is written and the reply is "!<type> <key>".
//
// The script is the hot path: it reads fields straight out of ARGV with
// unpack and makes one call per entry and effect, nothing more. With a
// fence, when no dedupe id is found in any set (the usual case), it keeps
// no table of ids: the entries are all processed or all stale (one XACK),
// and the D ids but those of dead letters are marked straight from ARGV.
// A hit, a dry run or ordering none (an XACK per entry) take the way that
// follows each id.
var commitScript = redis.NewScript(commitScriptHead + typeNamesLua() + effectHandlersLua() + commitScriptBody)

const commitScriptHead = `
local stream, dlq = KEYS[1], KEYS[2]
local group = ARGV[1]
local nbuckets = tonumber(ARGV[2])
local dlqmax = ARGV[4]
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[5] then return '!fenced' end
local dry = ARGV[6] == 'd'
local lastKey, lastTTL, token = nil, nil, nil
if not dry and #ARGV[6] > 1 then
  local i, ttl, t = string.match(ARGV[6], '^c(%d+) (%d+) (.+)$')
  lastKey, lastTTL, token = KEYS[tonumber(i)], ttl, t
  local last = redis.call('GET', lastKey)
  if last and string.sub(last, 1, #token + 1) == token .. '\n' then return string.sub(last, #token + 2) end
end
local timerq = {}
for k in string.gmatch(ARGV[9], '%S+') do timerq[#timerq+1] = KEYS[tonumber(k)] end
-- trims of the streams written, applied at the end of the commit instead
-- of a MAXLEN or MINID on each XADD (nobody sees the stream between the
-- two, and the cap is approximate): trimSet[key][tk][tv] counts the XADDs
-- with that cap, and the end calls XTRIM up to that many times, until one
-- removes nothing. Each call removes at most what one XADD's trim would
-- (Redis's default LIMIT), so a stream far over its cap shrinks as fast
-- as before, and a commit is never one unbounded trim.
local trimOrder, trimSet = {}, {}
local function trimLater(key, tk, tv)
  if tk == '' then return end
  local t = trimSet[key]
  if t == nil then t = {}; trimSet[key] = t; trimOrder[#trimOrder+1] = key end
  local v = t[tk]
  if v == nil then v = {}; t[tk] = v end
  v[tv] = (v[tv] or 0) + 1
end
`

const commitScriptBody = `
-- Nothing is written unless every write can succeed: a script that fails
-- half-way keeps its earlier writes, and an entry is acked before its
-- writes. Opcodes and key types are checked here; argument counts (Lua's
-- unpack takes fewer than 8000 values) are bounded by the caller.
for op in string.gmatch(ARGV[8], '%S+') do
  if not handlers[op] then return redis.error_reply('ERR eddy commit: unknown effect opcode ' .. op) end
end
-- A hash whose field is checked below needs no TYPE: the HGET of the
-- check fails on any other type.
local nchecks = tonumber(ARGV[12])
local byValue = {}
for c = 0, nchecks - 1 do
  if ARGV[13 + 4 * c] ~= 'h' then byValue[tonumber(ARGV[14 + 4 * c])] = true end
end
local types = ARGV[7]
for k = 1, #types do
  local letter = string.sub(types, k, k)
  local want = names[letter]
  if want and not (letter == 'h' and byValue[k]) then
    local got = redis.call('TYPE', KEYS[k])['ok']
    if got ~= 'none' and got ~= want then return '!' .. got .. ' ' .. KEYS[k] end
  end
end

-- Values the writes depend on: an increment of a field that holds no
-- number, or past 64 bits, or PFADD to a string that is not a
-- HyperLogLog, would fail half-way.
local sums = {}
for c = 0, nchecks - 1 do
  local b = 13 + 4 * c
  local kind, key, field = ARGV[b], KEYS[tonumber(ARGV[b+1])], ARGV[b+2]
  if kind == 'h' then
    if redis.call('EXISTS', key) == 1 and redis.call('GETRANGE', key, 0, 3) ~= 'HYLL' then
      return '!value ' .. key .. '\nholds a string that is not a HyperLogLog'
    end
  else
    local id = key .. '\0' .. field
    local cur = sums[id]
    if cur == nil then
      local v = redis.pcall('HGET', key, field)
      if type(v) == 'table' and v.err then
        if string.sub(v.err, 1, 9) ~= 'WRONGTYPE' then return redis.error_reply(v.err) end
        return '!' .. redis.call('TYPE', key)['ok'] .. ' ' .. key
      end
      if not v then
        cur = 0
      elseif kind == 'i' and not (string.match(v, '^%-?[1-9]%d*$') or v == '0') then
        return '!value ' .. key .. '\nfield ' .. field .. ' holds ' .. string.sub(v, 1, 40) .. ', not an integer'
      else
        cur = tonumber(v)
        if cur == nil or string.match(v, '^%s') or string.match(v, '%s$') then
          return '!value ' .. key .. '\nfield ' .. field .. ' holds ' .. string.sub(v, 1, 40) .. ', not a number'
        end
      end
    end
    cur = cur + tonumber(ARGV[b+3])
    if (kind == 'i' and math.abs(cur) >= 9.2e18) or cur ~= cur or cur == math.huge or cur == -math.huge then
      return '!value ' .. key .. '\nincrements of field ' .. field .. ' would overflow'
    end
    sums[id] = cur
  end
end

local nids = tonumber(ARGV[13 + 4 * nchecks])
local first = 14 + 4 * nchecks
-- seen holds the ids found in a set; it stays nil while none is found
local seen = nil
if nbuckets > 0 and nids > 0 then
  for b = 1, nbuckets do
    local set = KEYS[4 + b]
    if nids <= 4 or redis.call('EXISTS', set) == 1 then
      for s = 0, nids - 1, 4000 do
        local from = first + s
        local hit = redis.call('SMISMEMBER', set, unpack(ARGV, from, first + math.min(s + 4000, nids) - 1))
        if math.max(unpack(hit)) == 1 then
          seen = seen or {}
          for j = 1, #hit do if hit[j] == 1 then seen[ARGV[from + j - 1]] = true end end
        end
      end
    end
  end
end

local ackat = first + nids
local nacks = tonumber(ARGV[ackat])
local batch, all = nacks > 0 and not dry, false
-- fast: one XACK and no id seen before, so every id but a dead letter's
-- is marked (all processed) or none is (all stale); unmarked lists the
-- indexes of dead letters' ids
local fast, unmarked = batch and seen == nil, {}
seen = seen or {}
if batch then
  local got = 0
  for s = 0, nacks - 1, 4000 do
    got = got + redis.call('XACK', stream, group, unpack(ARGV, ackat + 1 + s, ackat + math.min(s + 4000, nacks)))
  end
  all = got > 0
  if all and got < nacks then
    redis.log(redis.LOG_WARNING, 'eddy: ' .. (nacks - got) .. ' of ' .. nacks .. ' entries of a commit to ' .. stream .. ' were acked by someone else; writing every effect')
  end
end

-- the commit's common effect: entries "o", "O" and runs give only its values
local at = ackat + 1 + nacks
-- vpos: the places in sargs of the values sent; ipos: of the values that
-- are the entry's own id (its dedupe id, else its entry id), not sent
local scmd, sargs, snf, vpos, ipos, strim = ARGV[at], nil, 0, {}, {}, nil
if scmd ~= '' then
  sargs = {KEYS[tonumber(ARGV[at+1])]}
  if scmd == 'XADD' then
    sargs[2] = '*'
    if ARGV[at+2] ~= '' then strim = {ARGV[at+2], ARGV[at+3]} end
  end
  local spos = #sargs
  snf = tonumber(ARGV[at+4])
  local own = ARGV[at + 5 + snf]
  for f = 1, snf do
    sargs[spos + 2*f - 1] = ARGV[at + 4 + f]
    if string.sub(own, f, f) == 'i' then ipos[#ipos+1] = spos + 2*f else vpos[#vpos+1] = spos + 2*f end
  end
  at = at + 6 + snf
else
  at = at + 1
end
local nv, ni = #vpos, #ipos

-- common writes the common effect with values from ARGV[j] on
local function common(j, own)
  for x = 1, nv do sargs[vpos[x]] = ARGV[j + x - 1] end
  for x = 1, ni do sargs[ipos[x]] = own end
  redis.call(scmd, unpack(sargs))
  if strim then trimLater(sargs[1], strim[1], strim[2]) end
end

local out, marks, acked = {}, {}, {}
local nargv = #ARGV
local i, e, idn = at, 0, 0

-- decide answers for a pending or stale entry with dedupe id did (or nil)
-- and tells whether its effects are to be written
local function decide(pending, did)
  if not pending then out[e] = 's'; return false end
  if did and not fast then
    if seen[did] then out[e] = 'u'; return false end
    seen[did] = true
    marks[#marks+1] = did
  end
  out[e] = 'p'
  return not dry
end

-- effects runs neff effects from ARGV[j] and returns the index after them
local function effects(j, neff, write)
  for _ = 1, neff do
    local h = handlers[ARGV[j]]
    if not h then error('eddy commit: unknown effect opcode ' .. tostring(ARGV[j])) end
    j = h(j + 1, write)
  end
  return j
end

-- timerDue tells whether timer member m is still set in z with score due,
-- and removes it unless dry
local function timerDue(z, m, due)
  local sc = redis.call('ZSCORE', z, m)
  if not sc or tonumber(sc) ~= tonumber(due) or acked[m] then return false end
  acked[m] = true
  if not dry then
    redis.call('ZREM', z, m)
    redis.call('HDEL', timerq[3], m)
  end
  return true
end

local function pendingOf(id)
  if batch then return all end
  if dry then
    -- a missing group or stream is what XACK would answer 0 to
    local p = redis.pcall('XPENDING', stream, group, id, id, 1)
    local r = type(p) == 'table' and not p.err and #p > 0 and not acked[id]
    acked[id] = true
    return r
  end
  return redis.call('XACK', stream, group, id) == 1
end

while i <= nargv do
  local id, kind = ARGV[i], ARGV[i+1]
  e = e + 1
  if kind == 'O' or kind == 'o' then
    local did = nil
    if kind == 'O' then idn = idn + 1; did = ARGV[first + idn - 1] end
    if decide(pendingOf(id), did) then common(i + 2, did or id) end
    i = i + 2 + nv
  elseif kind == 'R' or kind == 'r' then
    -- a run of m entries "O" (or "o") of a commit with one XACK: each
    -- sends only its values; the first's id is the a-th acked
    local m, a = tonumber(id), ackat + tonumber(ARGV[i+2])
    i = i + 3
    for r = 0, m - 1 do
      if r > 0 then e = e + 1 end
      local did = nil
      if kind == 'R' then idn = idn + 1; did = ARGV[first + idn - 1] end
      local id = ARGV[a + r]
      if decide(pendingOf(id), did) then common(i, did or id) end
      i = i + nv
    end
  elseif kind == 'p' then
    local k, neff = tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
    local did = nil
    if k > 0 then idn = k; did = ARGV[first + k - 1] end
    local write = decide(pendingOf(id), did)
    i = effects(i + 4, neff, write)
  elseif kind == 't' then
    local pending = timerDue(KEYS[tonumber(ARGV[i+2])], id, ARGV[i+3])
    local write = decide(pending, nil)
    i = effects(i + 5, tonumber(ARGV[i+4]), write)
  elseif kind == 'd' or kind == 'T' then
    -- a dead letter's id is looked up but not marked: a replay of it is
    -- processed
    local pending, k, n
    if kind == 'T' then
      pending, k, n = timerDue(KEYS[tonumber(ARGV[i+2])], id, ARGV[i+3]), 0, tonumber(ARGV[i+4])
      i = i + 5
    else
      k, n = tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
      pending = pendingOf(id)
      i = i + 4
    end
    if k > 0 then idn = k; unmarked[#unmarked+1] = k end
    if not pending then
      out[e] = 's'
    elseif k > 0 and seen[ARGV[first + k - 1]] then
      out[e] = 'u'
    else
      if n > 0 and not dry then
        if dlqmax ~= '0' then
          redis.call('XADD', dlq, 'MAXLEN', '~', dlqmax, '*', unpack(ARGV, i, i + n - 1))
        else
          redis.call('XADD', dlq, '*', unpack(ARGV, i, i + n - 1))
        end
      end
      out[e] = 'd'
    end
    i = i + n
  elseif kind == 'z' then
    out[e] = 's'
    i = i + 2
  elseif kind == 'a' then
    if pendingOf(id) then out[e] = 'u' else out[e] = 's' end
    i = i + 2
  else
    error('eddy commit: unknown entry kind ' .. tostring(kind))
  end
end

if fast and all and nids > #unmarked then
  if #unmarked == 0 then
    for s = 0, nids - 1, 4000 do
      redis.call('SADD', KEYS[4], unpack(ARGV, first + s, first + math.min(s + 4000, nids) - 1))
    end
  else
    local skip = {}
    for _, k in ipairs(unmarked) do skip[k] = true end
    for k = 1, nids do
      if not skip[k] then marks[#marks+1] = ARGV[first + k - 1] end
    end
  end
end
if #marks > 0 and not dry then
  for s = 1, #marks, 4000 do
    redis.call('SADD', KEYS[4], unpack(marks, s, math.min(s + 3999, #marks)))
  end
  redis.call('PEXPIREAT', KEYS[4], ARGV[3])
elseif fast and all and nids > #unmarked then
  redis.call('PEXPIREAT', KEYS[4], ARGV[3])
end
for _, key in ipairs(trimOrder) do
  for tk, vs in pairs(trimSet[key]) do
    for tv, n in pairs(vs) do
      for _ = 1, n do
        if redis.call('XTRIM', key, tk, '~', tv) == 0 then break end
      end
    end
  end
end
if ARGV[10] ~= '' and not dry then
  -- the watermark never goes back, whoever committed last
  local meta = KEYS[tonumber(ARGV[11])]
  local cur = tonumber(redis.call('HGET', meta, 'watermark') or '0')
  if tonumber(ARGV[10]) > cur then redis.call('HSET', meta, 'watermark', ARGV[10]) end
end
local reply = table.concat(out)
if lastKey then redis.call('SET', lastKey, token .. '\n' .. reply, 'PX', lastTTL) end
return reply
`

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

// commitArgs builds KEYS and ARGV for commitScript. Its slices are reused
// from one commit to the next.
type commitArgs struct {
	// last and token make the commit happen once (ARGV[6]): the
	// partition's last-commit key and this commit's token, the same for
	// every try of it; "" for none.
	last, token string
	lastTTL     time.Duration
	// dry is set for a dry run (ARGV[6] "d").
	dry    bool
	keys   []string
	types  []byte // ARGV[7]: the type each key must have
	head   []any  // ARGV[1..6]
	ops    []string
	checks []any // value checks, 4 each (see the script's ARGV[12])
	ids    []any // the dedupe ids
	acks   []any // the entry ids to ack with one XACK (with a fence)
	body   []any // the entries
	argv   []any // head, types, ops, timers, ids, acks and body, put together by args
	keyIdx map[string]int
	// conflict is the first key that effects write as two types (or the
	// dead-letter stream or the mark set as another type); the commit is
	// refused before the script runs.
	conflict string
	dedupe   bool
	// dlqUsed is set when the commit writes to the dead-letter stream; its
	// type is checked in Redis only then.
	dlqUsed bool
	// batchAck is set with a fence: the batch is acked with one XACK, and
	// an id repeated in the batch is marked stale here.
	batchAck bool
	acked    map[string]struct{}
	// marking holds, with batchAck, the dedupe ids of the processed
	// entries so far: a later entry with one of them is a duplicate, sent
	// as ack only, so that the script never sees a processed id twice.
	marking map[string]struct{}
	// common is the commit's common effect (the first single XADD or HSET
	// of an entry): entries whose only effect has its kind, key, trim and
	// field names send just the values.
	common    Effect
	hasCommon bool
	commonKey int
	// commonOwn has a letter a field of the common effect: 'i' when its
	// value is the entry's own id (not sent), 'v' when it is sent.
	commonOwn []byte
	// With batchAck, entries with the common effect in a row are one run
	// (kind "R" or "r"): runAt is the index in body of its count, runKind
	// its entries' kind, runEnd the length of body after its last entry
	// (-1: no run open).
	runAt, runEnd int
	runKind       string
	// timers are the partition's timer keys; timersUsed is set once an
	// effect or a firing of the commit needs them.
	timers     timerKeys
	timersUsed bool
	// watermark to store, "" for none, in the meta hash.
	watermark, meta string
}

func (c *commitArgs) reset(stream, dlq, lease, fence, group string, markKey string, checkKeys []string, markExpireMs int64, dlqMaxLen int64) {
	c.keys = append(c.keys[:0], stream, dlq, lease)
	c.types = append(c.types[:0], '-', 's', '-')
	if c.keyIdx == nil {
		c.keyIdx = make(map[string]int)
	}
	clear(c.keyIdx)
	c.keyIdx[dlq] = 2
	c.conflict = ""
	c.dlqUsed = false
	nb := 0
	c.dedupe = markKey != ""
	if c.dedupe {
		c.keys = append(c.keys, markKey)
		c.types = append(c.types, 'S')
		if _, ok := c.keyIdx[markKey]; !ok {
			c.keyIdx[markKey] = len(c.keys)
		}
		for _, k := range checkKeys {
			c.keys = append(c.keys, k)
			c.types = append(c.types, '-')
		}
		nb = len(checkKeys)
	}
	c.head = append(c.head[:0], group, nb, markExpireMs, max(dlqMaxLen, 0), fence, "c")
	c.last, c.token, c.dry = "", "", false
	c.ops = c.ops[:0]
	c.checks = c.checks[:0]
	c.ids = c.ids[:0]
	c.acks = c.acks[:0]
	c.body = c.body[:0]
	c.batchAck = fence != ""
	c.hasCommon = false
	c.runEnd = -1
	c.timersUsed = false
	c.watermark, c.meta = "", ""
	if c.acked == nil {
		c.acked = make(map[string]struct{})
		c.marking = make(map[string]struct{})
	}
	clear(c.acked)
	clear(c.marking)
}

// setTimers gives the partition's timer keys, for commits with timers.
func (c *commitArgs) setTimers(k timerKeys) { c.timers = k }

// setWatermark stores w (unix ms) in the meta hash with the commit.
func (c *commitArgs) setWatermark(meta string, w int64) {
	c.meta, c.watermark = meta, strconv.FormatInt(w, 10)
}

// useTimers adds the timer keys to KEYS.
func (c *commitArgs) useTimers() {
	if c.timersUsed {
		return
	}
	c.timersUsed = true
	c.key(c.timers.processing, 'z')
	c.key(c.timers.event, 'z')
	c.key(c.timers.data, 'h')
}

// valueCheck asks the script to check, before it writes anything, that
// the value at KEYS index key can take an effect (see ARGV[12]).
func (c *commitArgs) valueCheck(kind byte, key int, field, delta string) {
	c.checks = append(c.checks, string(kind), key, field, delta)
}

// op records that the commit uses opcode op.
func (c *commitArgs) op(op string) {
	for _, o := range c.ops {
		if o == op {
			return
		}
	}
	c.ops = append(c.ops, op)
}

// entry starts an entry in the body. It returns false for an id already in
// this batch, entered as stale.
func (c *commitArgs) entry(id, kind string) bool {
	if c.batchAck && !c.ackOnce(id) {
		return false
	}
	c.body = append(c.body, id, kind)
	return true
}

// ackOnce adds id to the batch's XACK, with one XACK. It returns false for
// an id already in this batch, entered as stale.
func (c *commitArgs) ackOnce(id string) bool {
	if _, dup := c.acked[id]; dup {
		c.body = append(c.body, id, "z")
		return false
	}
	c.acked[id] = struct{}{}
	c.acks = append(c.acks, id)
	return true
}

// dryRun turns the built arguments into a dry run's, or back.
func (c *commitArgs) dryRun(on bool) {
	c.dry = on
}

// once makes every try of this commit happen once: last is the
// partition's last-commit key and token this commit's own.
// It is kept for ttl: longer than any try of the commit can come after
// the first.
func (c *commitArgs) once(last, token string, ttl time.Duration) {
	c.last, c.token, c.lastTTL = last, token, ttl
}

// args returns ARGV for the script.
func (c *commitArgs) args() []any {
	switch {
	case c.dry:
		c.head[5] = "d"
	case c.token != "":
		c.head[5] = "c" + strconv.Itoa(c.key(c.last, '-')) + " " + strconv.FormatInt(c.lastTTL.Milliseconds(), 10) + " " + c.token
	default:
		c.head[5] = "c"
	}
	c.argv = append(c.argv[:0], c.head...)
	types := string(c.types)
	if !c.dlqUsed {
		types = types[:1] + "-" + types[2:]
	}
	timers := ""
	if c.timersUsed {
		timers = fmt.Sprintf("%d %d %d", c.keyIdx[c.timers.processing], c.keyIdx[c.timers.event], c.keyIdx[c.timers.data])
	}
	meta := 0
	if c.watermark != "" {
		meta = c.key(c.meta, 'h')
		types += string(c.types[len(types):])
	}
	c.argv = append(c.argv, types, strings.Join(c.ops, " "), timers, c.watermark, meta, len(c.checks)/4)
	c.argv = append(c.argv, c.checks...)
	c.argv = append(c.argv, len(c.ids))
	c.argv = append(c.argv, c.ids...)
	c.argv = append(c.argv, len(c.acks))
	c.argv = append(c.argv, c.acks...)
	if c.hasCommon {
		c.argv = append(c.argv, effectKinds[c.common.Kind].op, c.commonKey)
		c.argv = appendTrim(c.argv, &c.common)
		c.argv = append(c.argv, len(c.common.Fields)/2)
		for i := 0; i < len(c.common.Fields); i += 2 {
			c.argv = append(c.argv, c.common.Fields[i])
		}
		c.argv = append(c.argv, string(c.commonOwn))
	} else {
		c.argv = append(c.argv, "")
	}
	return append(c.argv, c.body...)
}

// key returns the KEYS index of k, which an effect writes as type t ('-'
// for any).
func (c *commitArgs) key(k string, t byte) int {
	if i, ok := c.keyIdx[k]; ok {
		c.dlqUsed = c.dlqUsed || i == 2
		switch have := c.types[i-1]; {
		case t == '-' || have == t:
		case have == '-' && i > 3 && !c.isDedupeKey(i):
			c.types[i-1] = t // first written by a kind of any type (PEXPIRE)
		default:
			if c.conflict == "" {
				c.conflict = k
			}
		}
		return i
	}
	c.keys = append(c.keys, k)
	c.types = append(c.types, t)
	i := len(c.keys) // Lua indexes from 1
	c.keyIdx[k] = i
	return i
}

// isDedupeKey reports whether KEYS index i is a dedupe set looked up.
func (c *commitArgs) isDedupeKey(i int) bool {
	return c.dedupe && i >= 4 && i <= 4+c.head[1].(int)
}

func (c *commitArgs) appendStrings(ss []string) {
	c.body = append(c.body, len(ss))
	for _, s := range ss {
		c.body = append(c.body, s)
	}
}

// isCommon reports whether e, the effect of an entry whose own id is own
// (its dedupe id, else its entry id), is the commit's common effect but
// for its values, making it the common effect if there is none yet. The
// values of the common effect that are the entry's own id are not sent.
func (c *commitArgs) isCommon(e *Effect, own string) bool {
	n := len(e.Fields)
	if (e.Kind != EffectXAdd && e.Kind != EffectHSet) || n == 0 || n%2 != 0 {
		return false
	}
	if !c.hasCommon {
		c.common, c.hasCommon = *e, true
		c.commonKey = c.key(e.Key, effectKinds[e.Kind].keyType)
		c.op(effectKinds[e.Kind].op)
		c.commonOwn = c.commonOwn[:0]
		for i := 1; i < n; i += 2 {
			if e.Fields[i] == own {
				c.commonOwn = append(c.commonOwn, 'i')
			} else {
				c.commonOwn = append(c.commonOwn, 'v')
			}
		}
		return true
	}
	k := &c.common
	if e.Kind != k.Kind || e.Key != k.Key || max(e.MaxLen, 0) != max(k.MaxLen, 0) || e.MinID != k.MinID || n != len(k.Fields) {
		return false
	}
	for i := 0; i < n; i += 2 {
		if e.Fields[i] != k.Fields[i] || (c.commonOwn[i/2] == 'i' && e.Fields[i+1] != own) {
			return false
		}
	}
	return true
}

// commonEntry starts an entry "O" or "o" (kind); with one XACK, it joins
// the run of such entries that body ends with, or starts one. It returns
// false for an id already in this batch, entered as stale.
func (c *commitArgs) commonEntry(id, kind string) bool {
	if !c.batchAck {
		return c.entry(id, kind)
	}
	if !c.ackOnce(id) {
		return false
	}
	if c.runEnd == len(c.body) && c.runKind == kind {
		c.body[c.runAt] = c.body[c.runAt].(int) + 1
		return true
	}
	run := "r"
	if kind == "O" {
		run = "R"
	}
	c.runAt, c.runKind = len(c.body), kind
	c.body = append(c.body, 1, run, len(c.acks))
	return true
}

// markedBefore reports whether, with one XACK, an entry processed
// earlier in the commit has dedupe id did: then the entry is a duplicate,
// sent as ack only (answered "u", or "s" if the batch is stale, as the
// script would answer it).
func (c *commitArgs) markedBefore(id, did string) bool {
	if !c.batchAck || !c.dedupe || did == "" {
		return false
	}
	if _, dup := c.marking[did]; !dup {
		return false
	}
	c.ackOnly(id)
	return true
}

// mark adds did, the dedupe id of a processed entry, to the ids.
func (c *commitArgs) mark(did string) {
	c.ids = append(c.ids, did)
	if c.batchAck {
		c.marking[did] = struct{}{}
	}
}

func (c *commitArgs) processed(id, dedupeID string, effects []Effect) {
	hasID := c.dedupe && dedupeID != ""
	if c.markedBefore(id, dedupeID) {
		return
	}
	own := id
	if hasID {
		own = dedupeID
	}
	if len(effects) == 1 && c.isCommon(&effects[0], own) {
		kind := "o"
		if hasID {
			kind = "O"
		}
		if !c.commonEntry(id, kind) {
			return
		}
		if hasID {
			c.mark(dedupeID)
		}
		f := effects[0].Fields
		for i := 1; i < len(f); i += 2 {
			if c.commonOwn[i/2] == 'v' {
				c.body = append(c.body, f[i])
			}
		}
		c.runEnd = len(c.body)
		return
	}
	if !c.entry(id, "p") {
		return
	}
	k := 0
	if hasID {
		c.mark(dedupeID)
		k = len(c.ids)
	}
	c.body = append(c.body, k)
	c.effects(effects)
}

// effects appends the count and the encoded effects.
func (c *commitArgs) effects(effects []Effect) {
	c.body = append(c.body, len(effects))
	for i := range effects {
		e := &effects[i]
		spec := effectKinds[e.Kind] // checked by checkEffects
		if e.isTimer() {
			c.useTimers()
		}
		c.op(spec.op)
		c.body = append(c.body, spec.op)
		spec.encode(c, e)
	}
}

// timerFired adds a timer firing: its removal and, if it is still set,
// its effects.
func (c *commitArgs) timerFired(t *TimerSpec, effects []Effect) {
	c.useTimers()
	c.body = append(c.body, timerMember(t.Key, t.Name), "t", c.keyIdx[c.timers.queue(t.EventTime)], t.At.UnixMilli())
	c.effects(effects)
}

// timerDeadLetter adds a timer firing that is dead-lettered.
func (c *commitArgs) timerDeadLetter(t *TimerSpec, fields []string) {
	c.useTimers()
	c.dlqUsed = c.dlqUsed || len(fields) > 0
	c.body = append(c.body, timerMember(t.Key, t.Name), "T", c.keyIdx[c.timers.queue(t.EventTime)], t.At.UnixMilli())
	c.appendStrings(fields)
}

func (c *commitArgs) deadLetter(id, dedupeID string, fields []string) {
	if c.markedBefore(id, dedupeID) {
		return
	}
	if !c.entry(id, "d") {
		return
	}
	k := 0
	if c.dedupe && dedupeID != "" {
		c.ids = append(c.ids, dedupeID)
		k = len(c.ids)
	}
	c.dlqUsed = c.dlqUsed || len(fields) > 0
	c.body = append(c.body, k)
	c.appendStrings(fields)
}

func (c *commitArgs) ackOnly(id string) {
	c.entry(id, "a")
}

// dueTimersScript lists a partition's due timers with their data: those of
// the processing-time set due by ARGV[1] and those of the event-time set
// due by the watermark ARGV[2], soonest first, at most ARGV[3] of each.
//
//	KEYS[1] the processing-time set, KEYS[2] the event-time set, KEYS[3]
//	        the data hash
//	ARGV[1] now, unix ms; ARGV[2] the watermark, unix ms ("" for none);
//	ARGV[3] the most of each set to return
//
// Returns a flat list: member, score, data, set ("p" or "e"), member, …
// (data false when missing).
var dueTimersScript = redis.NewScript(`
local out = {}
local function take(z, upto, set)
  local r = redis.call('ZRANGEBYSCORE', z, '-inf', upto, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
  for i = 1, #r, 2 do
    out[#out+1] = r[i]
    out[#out+1] = r[i+1]
    out[#out+1] = redis.call('HGET', KEYS[3], r[i])
    out[#out+1] = set
  end
end
take(KEYS[1], ARGV[1], 'p')
if ARGV[2] ~= '' then take(KEYS[2], ARGV[2], 'e') end
return out
`)

// claimOwnScript takes back, for a restarted worker (ordering none), an
// entry still pending under its own name, and only then: one that another
// worker has reclaimed meanwhile stays with it. XCLAIM adds one to the
// delivery count.
//
//	KEYS[1] the partition stream
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id
//
// Returns {"ok", entry, delivery count}, {"taken"} (pending for another
// consumer, or acked), or {"deleted"} (pending, but no longer in the
// stream: Redis drops it from the pending list).
var claimOwnScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return {'taken'} end
local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3])
if #r == 0 or not r[1] then return {'deleted'} end
return {'ok', r, p[1][4] + 1}
`)

// streamIDsLua are the Lua functions of the scripts that compare stream
// ids and read XINFO replies: parse, less, after (the next id) and field
// (a field of a flat reply).
const streamIDsLua = `
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local function after(id)
  local ms, seq = parse(id)
  return string.format('%d-%d', ms, seq + 1)
end
local function field(t, name)
  for i = 1, #t, 2 do if t[i] == name then return t[i + 1] end end
  return nil
end
`

// trimScript trims one stream to its retention, never past an entry that a
// consumer group of the stream has not read and acknowledged. Redis 7.0
// has no XTRIM ACKED, so the script computes the cut from each group's
// oldest pending entry (or, with none pending, the entry after its last
// delivered one) and trims with MINID below the lowest of them.
//
//	KEYS[1]  the stream
//	ARGV[1]  now, unix ms, or "" for Redis's clock (TIME)
//	ARGV[2]  max age in ms (0: none)
//	ARGV[3]  max length (0: none)
//	ARGV[4]  at most this many entries are trimmed for the length cap in
//	         one call (the cut is found with XRANGE ... COUNT)
//	ARGV[5]  "1" for a dry run that trims nothing
//
// Reply: removed, length after, the first id the policy wants kept ("" for
// none), the cut held back to ("" when nothing held it), the group holding
// it back, how long that group has been idle in ms (its consumers' least
// idle time; with no consumer, the age of the last entry it read; -1 when
// it never read one), entries over the policy kept (those over a length
// cap, or at least those older than the max age counted up to ARGV[4]),
// and the id of the oldest entry left ("" when empty).
var trimScript = redis.NewScript(streamIDsLua + `
local s = KEYS[1]
local now, maxAge, maxLen, chunk = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[1] == '' then
  -- Redis's clock, which made the entry ids
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local dry = ARGV[5] == '1'
local function first()
  local r = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)
  if #r == 0 then return '' end
  return r[1][1]
end
if redis.call('EXISTS', s) == 0 then return {0, 0, '', '', '', -1, 0, ''} end
local len = redis.call('XLEN', s)
local ageCut = nil
if maxAge > 0 and now > maxAge then ageCut = string.format('%d-0', now - maxAge) end
if ageCut == nil and (maxLen == 0 or len <= maxLen) then return {0, len, '', '', '', -1, 0, first()} end
-- safe: the lowest id some group has not acknowledged (its oldest pending
-- entry, or the one after the last it read); nothing from it on may go.
local safe, holder, holderLast = nil, '', '0-0'
for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
  local name, last = field(g, 'name'), field(g, 'last-delivered-id')
  local floor
  if tonumber(field(g, 'pending')) > 0 then
    floor = redis.call('XPENDING', s, name)[2]
  else
    floor = after(last)
  end
  if safe == nil or less(floor, safe) then safe, holder, holderLast = floor, name, last end
end
-- The cut (the first id kept) and whether the policy wanted more. The
-- length cap reads only ids below safe: what a held-back cap cannot
-- remove is never read.
local cut, held, want = nil, false, ''
if maxLen > 0 and len > maxLen then
  local k = math.min(len - maxLen, chunk)
  local r
  if safe then r = redis.call('XRANGE', s, '-', '(' .. safe, 'COUNT', k) else r = redis.call('XRANGE', s, '-', '+', 'COUNT', k) end
  if #r > 0 then cut = after(r[#r][1]) end
  if #r < k then held = true end
  want = cut or safe
end
if ageCut then
  local c = ageCut
  if safe and less(safe, ageCut) then
    c = safe
    if #redis.call('XRANGE', s, safe, '(' .. ageCut, 'COUNT', 1) > 0 then held = true end
  end
  if cut == nil or less(cut, c) then cut = c end
  if want == '' or less(want, ageCut) then want = ageCut end
end
local removed = 0
if cut and not dry then removed = redis.call('XTRIM', s, 'MINID', cut) end
local left = len - removed
if not held then return {removed, left, want, '', '', -1, 0, first()} end
local over = 0
if maxLen > 0 and left > maxLen then over = left - maxLen end
if ageCut then
  local old = #redis.call('XRANGE', s, safe, '(' .. ageCut, 'COUNT', chunk)
  if old > over then over = old end
end
-- How long the holder has been idle: its consumers' least idle time, or,
-- with none (deleted by a clean stop, or never any), the age of the last
-- entry it read.
local idle = -1
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', s, holder)) do
  local i = tonumber(field(c, 'idle'))
  if i ~= nil and (idle < 0 or i < idle) then idle = i end
end
if idle < 0 then
  local ms = parse(holderLast)
  if ms > 0 then idle = math.max(now - ms, 0) end
end
return {removed, left, want, safe, holder, idle, over, first()}
`)

// switchVersionScript switches a pipeline's read model from version ARGV[1]
// to ARGV[2] only if the new version's group has caught up with the old
// one on every partition: it has read at least as far, and acknowledged
// every entry up to where the old one has read (the old version can hold
// no entry past that). The new version then holds every event the old one
// holds, so that a reader that follows the switch never sees the read
// model step back.
//
//	KEYS     with ARGV[5] "1", KEYS[1] is the version key and the rest
//	         partition streams; with "0", partition streams only (a check
//	         that sets nothing, for Redis Cluster, where the streams are in
//	         other slots than the version key)
//	ARGV[1]  the version now (a missing key is version 1)
//	ARGV[2]  the version to switch to
//	ARGV[3]  the old version's consumer group
//	ARGV[4]  the new version's consumer group
//
// Reply: {"ok"}; {"moved", version} when the version is no longer ARGV[1];
// or {"behind", stream, why} for the first partition not caught up.
var switchVersionScript = redis.NewScript(streamIDsLua + `
local first = 1
if ARGV[5] == '1' then
  first = 2
  local cur = redis.call('GET', KEYS[1])
  if (cur or '1') ~= ARGV[1] then return {'moved', cur} end
end
for i = first, #KEYS do
  local s = KEYS[i]
  if redis.call('EXISTS', s) == 1 then
    local old, new = nil, nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local name = field(g, 'name')
      if name == ARGV[3] then old = g elseif name == ARGV[4] then new = g end
    end
    if new == nil then return {'behind', s, 'no group ' .. ARGV[4] .. ' yet'} end
    local oldLast = '0-0'
    if old ~= nil then oldLast = field(old, 'last-delivered-id') end
    local newLast = field(new, 'last-delivered-id')
    if less(newLast, oldLast) then
      return {'behind', s, 'read to ' .. newLast .. ', the old version to ' .. oldLast}
    end
    if tonumber(field(new, 'pending')) > 0 then
      local oldest = redis.call('XPENDING', s, ARGV[4])[2]
      if not less(oldLast, oldest) then
        return {'behind', s, oldest .. ' is pending, and the old version has read to ' .. oldLast}
      end
    end
  end
end
if ARGV[5] == '1' then redis.call('SET', KEYS[1], ARGV[2]) end
return {'ok'}
`)
