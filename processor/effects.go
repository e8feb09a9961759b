package processor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file is the table of effect kinds: every write a commit can make.
// Each kind is one entry of effectKinds with everything about it side by
// side: its opcode on the wire, the type its key must have, how Go checks
// and encodes it, the Lua that applies it, how it is written when its key
// is in another Redis Cluster slot, and how it changes the keyed-state
// cache. Adding a kind touches this file only. The commit script
// (scripts.go) is put together from the Lua of each kind, and refuses an
// opcode it does not know before it writes anything.

// EffectKind tells what a commit does with an Effect.
type EffectKind uint8

const (
	// EffectXAdd appends an entry to a stream: XADD, trimmed with MAXLEN ~
	// MaxLen when MaxLen > 0, else with MINID ~ MinID when MinID is set.
	// Fields are field/value pairs.
	EffectXAdd EffectKind = iota + 1
	// EffectHSet sets fields of a hash (HSET). Fields are field/value pairs.
	EffectHSet
	// EffectHDel deletes fields of a hash (HDEL). Fields are field names.
	EffectHDel
	// EffectHIncrBy adds an integer to a hash field (HINCRBY). Fields are
	// the field and the increment.
	EffectHIncrBy
	// EffectHIncrByFloat adds a number to a hash field (HINCRBYFLOAT).
	// Fields are the field and the increment.
	EffectHIncrByFloat
	// EffectPExpire sets a key's time to live (PEXPIRE TTL).
	EffectPExpire
	// EffectPFAdd adds elements to a HyperLogLog (PFADD). Fields are the
	// elements.
	EffectPFAdd
	// EffectTimerSet sets (or moves) a timer of the message's key; see
	// Message.SetTimer. Key is left empty: the engine keeps timers.
	EffectTimerSet
	// EffectTimerCancel cancels a timer of the message's key; see
	// Message.CancelTimer.
	EffectTimerCancel
)

// Effect is one write that the commit applies if, and only if, the entry
// that recorded it is acked by that commit.
type Effect struct {
	Kind EffectKind
	// Key is the key to write (empty for timers).
	Key string
	// MaxLen caps a stream approximately (MAXLEN ~); 0 means no cap.
	MaxLen int64
	// MinID trims a stream's entries older than this id (MINID ~); used
	// when MaxLen is 0.
	MinID string
	// Fields are the kind's strings: see each EffectKind.
	Fields []string
	// TTL is EffectPExpire's time to live.
	TTL time.Duration
	// Timer is the timer of EffectTimerSet and EffectTimerCancel.
	Timer *TimerSpec
}

// String names the kind as its opcode ("XADD", "TIMER_SET", …).
func (k EffectKind) String() string {
	if s, ok := effectKinds[k]; ok {
		return s.op
	}
	return fmt.Sprintf("EffectKind(%d)", uint8(k))
}

// effectSpec is one row of the table.
type effectSpec struct {
	// op is the opcode in the script's arguments and the name of its Lua
	// handler.
	op string
	// timer marks the kinds that write the engine's timer keys rather
	// than Effect.Key (always in the partition's slot).
	timer bool
	// keyType is the type letter the key must have: 's' stream, 'h' hash,
	// 'S' set, 'z' sorted set, 't' string (a HyperLogLog), '-' any.
	keyType byte
	// check rejects an effect the commit could not write.
	check func(e *Effect) error
	// encode appends the effect's arguments after its opcode. The key's
	// index comes from c.key, which also records the type it must have.
	encode func(c *commitArgs, e *Effect)
	// lua is the body of function(j, write): ARGV[j] is the first argument
	// after the opcode; it writes when write is true and returns the index
	// after its arguments.
	lua string
	// remote writes the effect outside the script, for a key in another
	// Cluster slot than the partition's (at least once). nil: the kind's
	// keys are always in the partition's slot.
	remote func(ctx context.Context, p redis.Pipeliner, e *Effect)
	// cache applies the effect to a keyed-state hash held in memory; nil
	// for kinds that do not change a hash.
	cache func(h map[string]string, e *Effect)
}

// effectKinds is the table. Keep it the only place that knows a kind.
var effectKinds = map[EffectKind]effectSpec{
	EffectXAdd: {
		op: "XADD", keyType: 's',
		check: func(e *Effect) error {
			if e.MinID != "" && !isStreamID(e.MinID) {
				return fmt.Errorf("MinID %q is not a stream id (<ms> or <ms>-<seq>, each at most 2^64-1)", e.MinID)
			}
			return checkPairs(e)
		},
		encode: func(c *commitArgs, e *Effect) {
			c.body = append(c.body, c.key(e.Key, 's'))
			c.body = appendTrim(c.body, e)
			c.appendStrings(e.Fields)
		},
		lua: `
  local key, tk, tv, n = KEYS[tonumber(ARGV[j])], ARGV[j+1], ARGV[j+2], tonumber(ARGV[j+3])
  if write then
    redis.call('XADD', key, '*', unpack(ARGV, j + 4, j + 3 + n))
    trimLater(key, tk, tv)
  end
  return j + 4 + n`,
		remote: func(ctx context.Context, p redis.Pipeliner, e *Effect) {
			a := &redis.XAddArgs{Stream: e.Key, Values: e.Fields}
			if e.MaxLen > 0 {
				a.MaxLen, a.Approx = e.MaxLen, true
			} else if e.MinID != "" {
				a.MinID, a.Approx = e.MinID, true
			}
			p.XAdd(ctx, a)
		},
	},
	EffectHSet: {
		op: "HSET", keyType: 'h',
		check: checkPairs,
		encode: func(c *commitArgs, e *Effect) {
			c.body = append(c.body, c.key(e.Key, 'h'))
			c.appendStrings(e.Fields)
		},
		lua: `
  local n = tonumber(ARGV[j+1])
  if write then redis.call('HSET', KEYS[tonumber(ARGV[j])], unpack(ARGV, j + 2, j + 1 + n)) end
  return j + 2 + n`,
		remote: func(ctx context.Context, p redis.Pipeliner, e *Effect) { p.HSet(ctx, e.Key, e.Fields) },
		cache: func(h map[string]string, e *Effect) {
			for i := 0; i+1 < len(e.Fields); i += 2 {
				h[e.Fields[i]] = e.Fields[i+1]
			}
		},
	},
	EffectHDel: {
		op: "HDEL", keyType: 'h',
		check: func(e *Effect) error { return checkList(e, "field names") },
		encode: func(c *commitArgs, e *Effect) {
			c.body = append(c.body, c.key(e.Key, 'h'))
			c.appendStrings(e.Fields)
		},
		lua: `
  local n = tonumber(ARGV[j+1])
  if write then redis.call('HDEL', KEYS[tonumber(ARGV[j])], unpack(ARGV, j + 2, j + 1 + n)) end
  return j + 2 + n`,
		remote: func(ctx context.Context, p redis.Pipeliner, e *Effect) { p.HDel(ctx, e.Key, e.Fields...) },
		cache: func(h map[string]string, e *Effect) {
			for _, f := range e.Fields {
				delete(h, f)
			}
		},
	},
	EffectHIncrBy: incrSpec("HINCRBY", 'i', func(s string) bool {
		n, err := strconv.ParseInt(s, 10, 64)
		return err == nil && strconv.FormatInt(n, 10) == s
	}, func(ctx context.Context, p redis.Pipeliner, key, field, delta string) {
		d, _ := strconv.ParseInt(delta, 10, 64)
		p.HIncrBy(ctx, key, field, d)
	}, func(cur, delta string) string {
		c, _ := strconv.ParseInt(cur, 10, 64)
		d, _ := strconv.ParseInt(delta, 10, 64)
		return strconv.FormatInt(c+d, 10)
	}),
	EffectHIncrByFloat: incrSpec("HINCRBYFLOAT", 'f', func(s string) bool {
		f, err := strconv.ParseFloat(s, 64)
		return err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && decimalRE.MatchString(s)
	}, func(ctx context.Context, p redis.Pipeliner, key, field, delta string) {
		d, _ := strconv.ParseFloat(delta, 64)
		p.HIncrByFloat(ctx, key, field, d)
	}, func(cur, delta string) string {
		c, _ := strconv.ParseFloat(cur, 64)
		d, _ := strconv.ParseFloat(delta, 64)
		return strconv.FormatFloat(c+d, 'f', -1, 64)
	}),
	EffectPExpire: {
		op: "PEXPIRE", keyType: '-',
		check: func(e *Effect) error {
			if e.TTL < time.Millisecond {
				return fmt.Errorf("time to live %s is under 1ms", e.TTL)
			}
			return nil
		},
		encode: func(c *commitArgs, e *Effect) {
			c.body = append(c.body, c.key(e.Key, '-'), e.TTL.Milliseconds())
		},
		lua: `
  if write then redis.call('PEXPIRE', KEYS[tonumber(ARGV[j])], ARGV[j+1]) end
  return j + 2`,
		remote: func(ctx context.Context, p redis.Pipeliner, e *Effect) { p.PExpire(ctx, e.Key, e.TTL) },
	},
	EffectPFAdd: {
		op: "PFADD", keyType: 't',
		check: func(e *Effect) error { return checkList(e, "elements") },
		encode: func(c *commitArgs, e *Effect) {
			k := c.key(e.Key, 't')
			c.valueCheck('h', k, "", "")
			c.body = append(c.body, k)
			c.appendStrings(e.Fields)
		},
		lua: `
  local n = tonumber(ARGV[j+1])
  if write then redis.call('PFADD', KEYS[tonumber(ARGV[j])], unpack(ARGV, j + 2, j + 1 + n)) end
  return j + 2 + n`,
		remote: func(ctx context.Context, p redis.Pipeliner, e *Effect) {
			els := make([]any, len(e.Fields))
			for i, f := range e.Fields {
				els[i] = f
			}
			p.PFAdd(ctx, e.Key, els...)
		},
	},
	EffectTimerSet: {
		op: "TIMER_SET", keyType: 'z', timer: true,
		check: func(e *Effect) error {
			if e.Timer == nil {
				return errors.New("no timer")
			}
			return e.Timer.check()
		},
		encode: func(c *commitArgs, e *Effect) {
			t := e.Timer
			c.body = append(c.body, c.key(c.timers.queue(t.EventTime), 'z'), c.key(c.timers.data, 'h'),
				timerMember(t.Key, t.Name), t.At.UnixMilli(), encodeTimerData(t))
		},
		// A timer's member is "<key>\x1f<name>", scored by when it is due;
		// its data (due, kind, payload) is a field of the data hash.
		// Moving a timer between the time kinds removes it from the other.
		lua: `
  local z, d, m = KEYS[tonumber(ARGV[j])], KEYS[tonumber(ARGV[j+1])], ARGV[j+2]
  if write then
    redis.call('ZREM', z == timerq[1] and timerq[2] or timerq[1], m)
    redis.call('ZADD', z, ARGV[j+3], m)
    redis.call('HSET', d, m, ARGV[j+4])
  end
  return j + 5`,
	},
	EffectTimerCancel: {
		op: "TIMER_CANCEL", keyType: 'z', timer: true,
		check: func(e *Effect) error {
			if e.Timer == nil || e.Timer.Name == "" {
				return errors.New("no timer name")
			}
			return nil
		},
		encode: func(c *commitArgs, e *Effect) {
			c.key(c.timers.queue(false), 'z')
			c.key(c.timers.queue(true), 'z')
			c.body = append(c.body, c.key(c.timers.data, 'h'), timerMember(e.Timer.Key, e.Timer.Name))
		},
		lua: `
  if write then
    local m = ARGV[j+1]
    redis.call('ZREM', timerq[1], m)
    redis.call('ZREM', timerq[2], m)
    redis.call('HDEL', KEYS[tonumber(ARGV[j])], m)
  end
  return j + 2`,
	},
}

// incrSpec is the row of an increment of a hash field (Fields: field,
// increment): op is the command, check the script's value check ('i' an
// integer, 'f' a number), valid tells a well-formed increment, remote and
// add write it outside the script and to the keyed-state cache.
func incrSpec(op string, check byte, valid func(string) bool,
	remote func(ctx context.Context, p redis.Pipeliner, key, field, delta string), add func(cur, delta string) string) effectSpec {
	return effectSpec{
		op: op, keyType: 'h',
		check: func(e *Effect) error {
			if len(e.Fields) != 2 {
				return fmt.Errorf("want a field and an increment, got %d strings", len(e.Fields))
			}
			if !valid(e.Fields[1]) {
				return fmt.Errorf("increment %q of field %q is not a number %s takes as written", e.Fields[1], e.Fields[0], op)
			}
			return nil
		},
		encode: func(c *commitArgs, e *Effect) {
			k := c.key(e.Key, 'h')
			c.valueCheck(check, k, e.Fields[0], e.Fields[1])
			c.body = append(c.body, k, e.Fields[0], e.Fields[1])
		},
		lua: `
  if write then redis.call('` + op + `', KEYS[tonumber(ARGV[j])], ARGV[j+1], ARGV[j+2]) end
  return j + 3`,
		remote: func(ctx context.Context, p redis.Pipeliner, e *Effect) {
			remote(ctx, p, e.Key, e.Fields[0], e.Fields[1])
		},
		cache: func(h map[string]string, e *Effect) { h[e.Fields[0]] = add(h[e.Fields[0]], e.Fields[1]) },
	}
}

// appendTrim appends XADD's trim: "MAXLEN" or "MINID" (or "") and its value.
func appendTrim(body []any, e *Effect) []any {
	switch {
	case e.MaxLen > 0:
		return append(body, "MAXLEN", e.MaxLen)
	case e.MinID != "":
		return append(body, "MINID", e.MinID)
	}
	return append(body, "", "")
}

var (
	// decimalRE is a number as HINCRBYFLOAT takes it and strconv parses it
	// alike (no hex, no underscores).
	decimalRE = regexp.MustCompile(`^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$`)
	// streamIDRE is a stream id, or its milliseconds alone (see
	// isStreamID for the range).
	streamIDRE = regexp.MustCompile(`^\d+(-\d+)?$`)
)

func checkPairs(e *Effect) error {
	if len(e.Fields) == 0 || len(e.Fields)%2 != 0 {
		return fmt.Errorf("want field/value pairs, got %d strings", len(e.Fields))
	}
	return nil
}

func checkList(e *Effect, what string) error {
	if len(e.Fields) == 0 {
		return fmt.Errorf("want one or more %s", what)
	}
	return nil
}

// checkEffects rejects effects the commit could not write, so that one bad
// handler result can never fail a whole commit: an unknown kind, an empty
// key, malformed fields, or more strings than one call can take.
func checkEffects(effects []Effect) error {
	for i := range effects {
		e := &effects[i]
		spec, ok := effectKinds[e.Kind]
		if !ok {
			return Permanentf(ReasonInvalidEffect, "effect on %q: unknown kind %d", e.Key, e.Kind)
		}
		switch {
		case spec.timer && e.Timer == nil:
			return Permanentf(ReasonInvalidEffect, "%s effect without a timer", spec.op)
		case !spec.timer && e.Key == "":
			return Permanentf(ReasonInvalidEffect, "%s effect with an empty key", spec.op)
		case !spec.timer && e.Timer != nil:
			return Permanentf(ReasonInvalidEffect, "%s effect on %s with a timer", spec.op, e.Key)
		}
		if len(e.Fields) > maxEffectStrings {
			return Permanentf(ReasonInvalidEffect, "%s effect on %s: %d strings, over the limit of %d", spec.op, e.Key, len(e.Fields), maxEffectStrings)
		}
		if err := spec.check(e); err != nil {
			return Permanentf(ReasonInvalidEffect, "%s effect on %s: %v", spec.op, e.Key, err)
		}
	}
	return nil
}

// effectHandlersLua is the Lua table of handlers, one per kind, keyed by
// opcode; the commit script calls handlers[op](j, write).
func effectHandlersLua() string {
	kinds := make([]EffectKind, 0, len(effectKinds))
	for k := range effectKinds {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	var b strings.Builder
	b.WriteString("local handlers = {}\n")
	for _, k := range kinds {
		s := effectKinds[k]
		fmt.Fprintf(&b, "handlers[%q] = function(j, write)%s\nend\n", s.op, s.lua)
	}
	return b.String()
}

// typeNames maps the type letters of effectSpec.keyType to what TYPE answers.
var typeNames = map[byte]string{'s': "stream", 'h': "hash", 'S': "set", 'z': "zset", 't': "string"}

// typeNamesLua is typeNames as a Lua table.
func typeNamesLua() string {
	letters := make([]string, 0, len(typeNames))
	for l := range typeNames {
		letters = append(letters, string(l))
	}
	sort.Strings(letters)
	var b strings.Builder
	b.WriteString("local names = {")
	for _, l := range letters {
		fmt.Fprintf(&b, "[%q] = %q, ", l, typeNames[l[0]])
	}
	b.WriteString("}\n")
	return b.String()
}

// fits reports whether an effect of kind k can write a key that holds a
// value of Redis type typ ("stream", "hash", …).
func (k EffectKind) fits(typ string) bool {
	s, ok := effectKinds[k]
	if !ok {
		return false
	}
	return s.keyType == '-' || typeNames[s.keyType] == typ
}

// isTimer reports whether the effect writes the engine's timer keys.
func (e *Effect) isTimer() bool { return effectKinds[e.Kind].timer }

// isStreamID reports whether s is a stream id Redis takes: <ms> or
// <ms>-<seq>, each a 64-bit unsigned number. The commit applies a MINID
// after every other write, so one Redis refused would fail a commit that
// has written the rest.
func isStreamID(s string) bool {
	if !streamIDRE.MatchString(s) {
		return false
	}
	ms, seq, _ := strings.Cut(s, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if seq != "" {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}
