package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// This file checks, before a command starts work, that its Redis user may
// send every command Eddy will send, to every key it will send it to, and
// names what is missing (CheckAccess). It also lists the ACL rules each
// role needs (AccessRules), which docs/redis-acl.md shows and a test keeps
// equal.
//
// Redis checks a command's ACL after its name and arity and before it runs
// it; a command in a transaction is checked when it is queued. So the check
// sends each command with its real key names and never runs one that could
// write: a role that holds MULTI and EXEC (a worker, an operator, a
// rebuild) queues its probes in a transaction that a command of the wrong
// arity then aborts (EXECABORT), which answers each probe QUEUED or NOPERM;
// a role without them (a producer, a monitor) sends only reads, an XADD
// whose MAXLEN is not a number, which fails before it writes, an EVALSHA of
// a script Redis does not hold and an EVAL of "return 0". Lua scripts call
// commands with the caller's permissions, so the commands the scripts call
// are probed like those the engine sends itself.

// Role is what a process does with a pipeline's keys, and so which
// commands on which keys it needs.
type Role string

const (
	// RoleWorker runs the pipeline (eddy run): the engine, its Lua scripts,
	// the stats it samples, the trims of the streams under retention, and
	// the read-model version it follows (GET VersionKey).
	RoleWorker Role = "worker"
	// RoleProducer appends to the partition streams (eddy produce).
	RoleProducer Role = "producer"
	// RoleIngest is a producer that also samples the pipeline's lag, for
	// backpressure (eddy ingest, and eddy run's sources): the partition
	// streams' and group's info and pending summary, and the leases.
	RoleIngest Role = "ingest"
	// RoleMonitor reads: stats, members, dead letters, the read-model
	// version, and what retention would trim (eddy status, eddy dlq list,
	// the console). It writes nothing: the trim script it runs is a dry run,
	// and a script may only call the commands its caller may.
	RoleMonitor Role = "monitor"
	// RoleOperator is a monitor that also replays dead letters (eddy dlq
	// replay): XADD to the partition streams, XDEL from the dead-letter
	// stream, in a script, or for a dead letter too wide for one in
	// WATCH/MULTI/EXEC.
	RoleOperator Role = "operator"
	// RoleRebuild is eddy rebuild: a worker of the version it builds (give
	// the options and the written keys of that version, whose group is
	// VersionGroup and whose read-model hashes carry VersionPrefix), which
	// also records the rebuild (RebuildKey) and switches the version
	// (SwitchVersion).
	RoleRebuild Role = "rebuild"
)

// Written is a key outside the engine's own that a pipeline's effects
// write: an output stream, or a read model hash. Give one for each.
type Written struct {
	// Key is the key, or one key of a family (user:<some key>) to check.
	Key string
	// Pattern is the ACL key pattern (a glob) that covers the family, e.g.
	// "user:*"; "" is Key itself.
	Pattern string
	// Kinds are the effects that write it (EffectXAdd for an output
	// stream; EffectHSet, EffectHIncrBy, … for a hash).
	Kinds []EffectKind
}

// Denial is one command that the user may not send to one key.
type Denial struct {
	// Command is the command as ACL rules name it: "evalsha",
	// "xgroup|create".
	Command string
	// Key is the key it was sent to; "" for a command without keys.
	Key string
	// What says what the key is: "lease of partition 0".
	What string
	// Err is Redis's reply: NOPERM …, or ERR unknown command (a Redis too
	// old for the command).
	Err error
}

// AccessError is what CheckAccess returns when the user lacks permissions.
type AccessError struct {
	// User is the Redis user the client authenticates as.
	User     string
	Role     Role
	Pipeline string
	// Denied lists each command and key that was refused.
	Denied []Denial
	// Unchecked counts the probes that could not be sent because MULTI or
	// EXEC is refused (they are checked inside a transaction).
	Unchecked int
	// Rules are the ACL rules the role needs for the pipeline
	// (AccessRules).
	Rules []string
}

// Error names each refused command (with the key it was refused on) and
// each refused key (with the commands refused on it), then the rules the
// role needs.
func (e *AccessError) Error() string {
	type group struct {
		first Denial
		cmds  []string
		keys  []string
	}
	var order []string
	groups := map[string]*group{}
	for _, d := range e.Denied {
		id := "cmd " + d.Command
		if keyRefused(d.Err) {
			id = "key " + familyOf(d.What)
		}
		g := groups[id]
		if g == nil {
			g = &group{first: d}
			groups[id] = g
			order = append(order, id)
		}
		if !slices.Contains(g.cmds, d.Command) {
			g.cmds = append(g.cmds, d.Command)
		}
		if d.Key != "" && !slices.Contains(g.keys, d.Key) {
			g.keys = append(g.keys, d.Key)
		}
	}
	var parts []string
	for _, id := range order {
		g := groups[id]
		d := g.first
		var s string
		switch {
		case strings.HasPrefix(id, "key "):
			s = fmt.Sprintf("may not use %s (the %s", d.Key, d.What)
			if len(g.keys) > 1 {
				s += fmt.Sprintf(", and %d more keys like it", len(g.keys)-1)
			}
			s += ") with " + commandNames(g.cmds)
		case d.Key != "":
			s = fmt.Sprintf("may not run %s on %s (the %s)", commandName(d.Command), d.Key, d.What)
			if len(g.keys) > 1 {
				s += fmt.Sprintf(" nor on %d more keys", len(g.keys)-1)
			}
		default:
			s = "may not run " + commandName(d.Command)
		}
		parts = append(parts, s+": "+d.Err.Error())
	}
	if len(parts) > maxDenialsShown {
		parts = append(parts[:maxDenialsShown], fmt.Sprintf("and %d more", len(parts)-maxDenialsShown))
	}
	msg := fmt.Sprintf("redis user %q %s", e.User, strings.Join(parts, "; "))
	if e.Unchecked > 0 {
		msg += fmt.Sprintf("; %d more commands not checked (they are checked inside MULTI/EXEC)", e.Unchecked)
	}
	return fmt.Sprintf("%s; a %s of pipeline %s needs these ACL rules (docs/redis-acl.md): %s",
		msg, e.Role, e.Pipeline, strings.Join(e.Rules, " "))
}

// maxDenialsShown bounds the refusals an AccessError's message names.
const maxDenialsShown = 5

// keyRefused reports whether a denial refused the key rather than the
// command. Only the text of the NOPERM reply tells the two apart; it
// decides how the denial is grouped in the message, nothing else.
func keyRefused(err error) bool {
	return redis.HasErrorPrefix(err, "NOPERM") && strings.Contains(err.Error(), "access one of the keys")
}

// familyOf drops the partition from a key's description.
func familyOf(what string) string {
	name, _, _ := strings.Cut(what, " of partition ")
	return name
}

func commandName(cmd string) string { return strings.ToUpper(strings.ReplaceAll(cmd, "|", " ")) }

func commandNames(cmds []string) string {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = commandName(c)
	}
	return strings.Join(names, ", ")
}

// CheckAccess checks that the user rdb authenticates as may send every
// command that role sends for the pipeline of opts (and, for a worker, for
// the keys in written), on the real key names, without changing any key.
// It returns nil, an *AccessError naming every command and key refused and
// the rules the role needs, or another error when Redis could not be asked
// (or opts are incomplete: Pipeline and Stream are required, as for an
// Inspector). It does not close rdb.
//
// It costs one round trip for a producer or a monitor, three for a worker
// or an operator. On Redis Cluster the transaction goes to the node of its
// first key and keyless probes to any node: give every node the same users.
func CheckAccess(ctx context.Context, rdb redis.UniversalClient, opts Options, role Role, written ...Written) error {
	if rdb == nil {
		return errors.New("processor: nil Redis client")
	}
	if err := opts.check(false); err != nil {
		return err
	}
	opts.fillDefaults()
	needs, err := accessNeeds(&opts, role, written)
	if err != nil {
		return err
	}
	denied, unchecked, err := probe(ctx, rdb, needs, hasCommand(needs, "multi"))
	if err != nil {
		return fmt.Errorf("check the redis permissions of the %s of pipeline %s: %w", role, opts.Pipeline, err)
	}
	if len(denied) == 0 {
		return nil
	}
	return &AccessError{User: userOf(rdb), Role: role, Pipeline: opts.Pipeline, Denied: denied,
		Unchecked: unchecked, Rules: rulesOf(needs)}
}

// AccessRules returns the ACL rules (commands, then key patterns) that
// role needs for the pipeline of opts, e.g. "+xadd", "~{clicks:*}".
func AccessRules(opts Options, role Role, written ...Written) ([]string, error) {
	if err := opts.check(false); err != nil {
		return nil, err
	}
	opts.fillDefaults()
	needs, err := accessNeeds(&opts, role, written)
	if err != nil {
		return nil, err
	}
	return rulesOf(needs), nil
}

// userOf is the user name the client authenticates as.
func userOf(rdb redis.UniversalClient) string {
	user := ""
	switch c := rdb.(type) {
	case *redis.Client:
		user = c.Options().Username
	case *redis.ClusterClient:
		user = c.Options().Username
	}
	if user == "" {
		return "default"
	}
	return user
}

// need is one command a role sends to one key, or to none.
type need struct {
	cmd     string // as ACL rules name it: "evalsha", "xgroup|create"
	key     string // "" for a command without keys
	what    string // what the key is: "lease of partition 0"
	pattern string // the ACL key pattern that covers the key
}

// commandOrder is every command any role needs, in the order rules list
// them. A command missing here is a mistake that accessNeeds reports.
var commandOrder = []string{
	"ping", "cluster|info", "time", "multi", "exec", "watch", "unwatch", "evalsha", "eval",
	"xgroup|create", "xgroup|delconsumer", "xgroup|destroy", "xreadgroup", "xpending", "xautoclaim", "xclaim", "xack", "xadd", "xdel", "xtrim",
	"xinfo|stream", "xinfo|groups", "xinfo|consumers", "xlen", "xrange", "xrevrange",
	"get", "set", "incr", "del", "pttl", "pexpire", "pexpireat", "exists", "type", "getrange",
	"sadd", "smismember",
	"zadd", "zrem", "zremrangebyscore", "zrangebyscore", "zscore",
	"hget", "hgetall", "hset", "hdel", "hincrby", "hincrbyfloat",
	"pfadd",
}

// probeMember is the consumer, group, member and field name the probes
// use: nothing of Eddy's is called that, and no probe that could change a
// key runs anyway.
const probeMember = "eddy-access-check"

// probeArgs gives each command's probe: its arguments with the key. A
// probe sent outside a transaction (see harmless) changes nothing; one
// queued in a transaction only needs the command's arity and key position,
// but fails before it writes where it can all the same.
var probeArgs = map[string]func(key string) []any{
	"ping":               func(string) []any { return []any{"PING"} },
	"cluster|info":       func(string) []any { return []any{"CLUSTER", "INFO"} },
	"time":               func(string) []any { return []any{"TIME"} },
	"multi":              func(string) []any { return []any{"MULTI"} }, // probed by probe itself
	"exec":               func(string) []any { return []any{"EXEC"} },
	"watch":              func(k string) []any { return []any{"WATCH", k} }, // in a transaction: refused after the ACL check
	"unwatch":            func(string) []any { return []any{"UNWATCH"} },
	"evalsha":            func(k string) []any { return []any{"EVALSHA", strings.Repeat("0", 40), 1, k} },
	"eval":               func(k string) []any { return []any{"EVAL", "return 0", 1, k} },
	"xgroup|create":      func(k string) []any { return []any{"XGROUP", "CREATE", k, probeMember, "not-an-id", "MKSTREAM"} },
	"xgroup|delconsumer": func(k string) []any { return []any{"XGROUP", "DELCONSUMER", k, probeMember, probeMember} },
	"xgroup|destroy":     func(k string) []any { return []any{"XGROUP", "DESTROY", k, probeMember} }, // no group is called that
	"xreadgroup": func(k string) []any {
		return []any{"XREADGROUP", "GROUP", probeMember, probeMember, "COUNT", "not-a-number", "STREAMS", k, ">"}
	},
	"xpending":        func(k string) []any { return []any{"XPENDING", k, probeMember} },
	"xautoclaim":      func(k string) []any { return []any{"XAUTOCLAIM", k, probeMember, probeMember, "not-a-number", "0-0"} },
	"xclaim":          func(k string) []any { return []any{"XCLAIM", k, probeMember, probeMember, "not-a-number", "0-1"} },
	"xack":            func(k string) []any { return []any{"XACK", k, probeMember, "not-an-id"} },
	"xadd":            func(k string) []any { return []any{"XADD", k, "MAXLEN", "not-a-number", "*", probeMember, "1"} },
	"xdel":            func(k string) []any { return []any{"XDEL", k, "not-an-id"} },
	"xtrim":           func(k string) []any { return []any{"XTRIM", k, "MINID", "not-an-id"} },
	"xinfo|stream":    func(k string) []any { return []any{"XINFO", "STREAM", k} },
	"xinfo|groups":    func(k string) []any { return []any{"XINFO", "GROUPS", k} },
	"xinfo|consumers": func(k string) []any { return []any{"XINFO", "CONSUMERS", k, probeMember} },
	"xlen":            func(k string) []any { return []any{"XLEN", k} },
	"xrange":          func(k string) []any { return []any{"XRANGE", k, "+", "-", "COUNT", 1} },
	"xrevrange":       func(k string) []any { return []any{"XREVRANGE", k, "-", "+", "COUNT", 1} },
	"get":             func(k string) []any { return []any{"GET", k} },
	"set":             func(k string) []any { return []any{"SET", k, probeMember, "PX", "not-a-number"} },
	"incr":            func(k string) []any { return []any{"INCR", k} },
	"del":             func(k string) []any { return []any{"DEL", k} },
	"pttl":            func(k string) []any { return []any{"PTTL", k} },
	"pexpire":         func(k string) []any { return []any{"PEXPIRE", k, "not-a-number"} },
	"pexpireat":       func(k string) []any { return []any{"PEXPIREAT", k, "not-a-number"} },
	"exists":          func(k string) []any { return []any{"EXISTS", k} },
	"type":            func(k string) []any { return []any{"TYPE", k} },
	"getrange":        func(k string) []any { return []any{"GETRANGE", k, 1, 0} },
	"sadd":            func(k string) []any { return []any{"SADD", k, probeMember} },
	"smismember":      func(k string) []any { return []any{"SMISMEMBER", k, probeMember} },
	"zadd":            func(k string) []any { return []any{"ZADD", k, "not-a-number", probeMember} },
	"zrem":            func(k string) []any { return []any{"ZREM", k, probeMember} },
	"zremrangebyscore": func(k string) []any {
		return []any{"ZREMRANGEBYSCORE", k, "not-a-number", "not-a-number"}
	},
	"zrangebyscore": func(k string) []any { return []any{"ZRANGEBYSCORE", k, 1, 0} },
	"zscore":        func(k string) []any { return []any{"ZSCORE", k, probeMember} },
	"hget":          func(k string) []any { return []any{"HGET", k, probeMember} },
	"hgetall":       func(k string) []any { return []any{"HGETALL", k} },
	"hset":          func(k string) []any { return []any{"HSET", k, probeMember, "1", probeMember} }, // odd: refused after the ACL check
	"hdel":          func(k string) []any { return []any{"HDEL", k, probeMember} },
	"hincrby":       func(k string) []any { return []any{"HINCRBY", k, probeMember, "not-a-number"} },
	"hincrbyfloat":  func(k string) []any { return []any{"HINCRBYFLOAT", k, probeMember, "not-a-number"} },
	"pfadd":         func(k string) []any { return []any{"PFADD", k, probeMember} },
}

// harmless are the commands whose probes may run outside a transaction:
// reads, writes whose probe fails before it writes, UNWATCH (a probe's
// connection watches nothing), and the scripting commands, whose probes
// run no script or one that does nothing.
var harmless = map[string]bool{
	"unwatch": true, "evalsha": true, "eval": true,
	"ping": true, "cluster|info": true, "time": true, "xpending": true, "xinfo|stream": true, "xinfo|groups": true,
	"xinfo|consumers": true, "xlen": true, "xrange": true, "xrevrange": true, "get": true, "pttl": true,
	"exists": true, "type": true, "getrange": true, "smismember": true, "zrangebyscore": true,
	"zscore": true, "hget": true, "hgetall": true, "xadd": true,
}

// accessNeeds lists what role sends for the pipeline of o (defaults filled
// in): every command of the engine's Go code and of the Lua scripts it
// runs, with the keys each goes to, partition by partition.
func accessNeeds(o *Options, role Role, written []Written) ([]need, error) {
	var out []need
	add := func(key, what, pattern string, cmds ...string) {
		for _, c := range cmds {
			out = append(out, need{cmd: c, key: key, what: what, pattern: pattern})
		}
	}
	n := o.Partitions
	byKey := o.Ordering == OrderingKey
	stream, group := o.Stream, o.Group
	// Patterns: a partition's keys all carry its hash tag, "{S:p}" (or,
	// with one partition, the stream is "S" and the others "{S}:eddy:…").
	partPattern, streamPattern := "{"+GlobEscape(stream)+":*}*", "{"+GlobEscape(stream)+":*}"
	if n <= 1 {
		partPattern, streamPattern = "{"+GlobEscape(stream)+"}:*", GlobEscape(stream)
	}
	spat := partPattern // the partition streams'
	if n <= 1 {
		spat = streamPattern
	}
	members := membersKey(stream, group)
	membersPattern := "{" + GlobEscape(stream) + "}:*"
	dlq := o.DeadLetterStream
	script := []string{"evalsha", "eval"}
	version := VersionKey(o.Pipeline)
	versionPattern := GlobEscape(version)
	// trims are what the trim script (trimScript) sends to each stream
	// under retention: the worker's trim, or the console's dry run
	// (RetentionStatus), which sends all but XTRIM. Redis checks a
	// script's keys as keys it may write, so a read-only pattern (%R~) on
	// these streams refuses even the dry run.
	trims := func(dry bool) {
		cmds := append(append([]string{}, script...), "exists", "xlen", "xrange", "xinfo|groups", "xpending", "xinfo|consumers")
		if !dry {
			cmds = append(cmds, "xtrim")
		}
		for _, r := range retained(*o) {
			what, pattern := "output stream", GlobEscape(r.Stream)
			if r.Stream == dlq {
				what = "dead-letter stream"
			}
			for p := 0; p < n && !o.InputRetention.IsZero(); p++ {
				if r.Stream == PartitionStream(stream, p, n) {
					what, pattern = partitionWhat("stream", p), spat
				}
			}
			add(r.Stream, what, pattern, cmds...)
		}
	}
	// Every eddy command pings Redis, and asks whether it is a Cluster
	// node (CLUSTER INFO; a single server answers that it is not).
	connection := []string{"ping", "cluster|info"}
	switch role {
	case RoleProducer, RoleIngest:
		add("", "", "", connection...)
		for p := 0; p < n; p++ {
			add(PartitionStream(stream, p, n), partitionWhat("stream", p), streamPattern, "xadd")
			if role == RoleIngest { // what Inspector.Stats reads
				add(PartitionStream(stream, p, n), partitionWhat("stream", p), streamPattern, "xinfo|stream", "xinfo|groups", "xpending")
				add(leaseKey(stream, p, n, group), partitionWhat("lease", p), partPattern, "get", "pttl")
			}
		}
	case RoleMonitor, RoleOperator:
		add("", "", "", connection...)
		if role == RoleOperator {
			add("", "", "", "multi", "exec")
		}
		if byKey {
			add("", "", "", "time")
		}
		for p := 0; p < n; p++ {
			add(PartitionStream(stream, p, n), partitionWhat("stream", p), spat, "xinfo|stream", "xinfo|groups", "xpending")
			if role == RoleOperator {
				// Replay appends with a script that first deletes the dead
				// letter (once only); the script's XADD and XDEL are
				// checked against the user's rules too.
				add(PartitionStream(stream, p, n), partitionWhat("stream", p), spat, "evalsha", "eval", "xadd")
			}
			add(leaseKey(stream, p, n, group), partitionWhat("lease", p), partPattern, "get", "pttl")
			add(GaugesKey(stream, p, n, group), partitionWhat("gauges", p), partPattern, "hgetall")
		}
		if byKey {
			add(members, "members set", membersPattern, "zrangebyscore")
		}
		if n > 1 {
			add(stream, "unpartitioned stream name", GlobEscape(stream), "xlen")
		}
		add(dlq, "dead-letter stream", GlobEscape(dlq), "xlen", "xrevrange", "xrange")
		if role == RoleOperator {
			add(dlq, "dead-letter stream", GlobEscape(dlq), "evalsha", "eval", "xdel")
			// A dead letter too wide for one script is replayed in
			// WATCH/MULTI/EXEC; UNWATCH when it was gone meanwhile.
			add(dlq, "dead-letter stream", GlobEscape(dlq), "watch")
			add("", "", "", "unwatch")
		}
		trims(true)
		if o.Versioned {
			add(version, "read-model version", versionPattern, "get")
		}
	case RoleWorker, RoleRebuild:
		add("", "", "", connection...)
		add("", "", "", "time", "multi", "exec")
		dd := dedupeWindow(*o)
		for p := 0; p < n; p++ {
			s := PartitionStream(stream, p, n)
			ks := keyspace{stream: stream, p: p, n: n, group: group}
			add(s, partitionWhat("stream", p), spat, script...)
			add(s, partitionWhat("stream", p), spat, "xgroup|create", "xgroup|delconsumer", "xreadgroup",
				"xpending", "xautoclaim", "xack", "xinfo|stream", "xinfo|groups", "xinfo|consumers")
			if !byKey {
				add(s, partitionWhat("stream", p), spat, "xclaim")
			}
			lease := leaseKey(stream, p, n, group)
			if byKey {
				add(lease, partitionWhat("lease", p), partPattern, script...)
				add(lease, partitionWhat("lease", p), partPattern, "get", "set", "del", "pttl", "pexpire")
				tok := tokenKey(stream, p, n, group)
				add(tok, partitionWhat("fencing token", p), partPattern, script...)
				add(tok, partitionWhat("fencing token", p), partPattern, "incr")
				last := lastCommitKey(stream, p, n, group)
				add(last, partitionWhat("last commit", p), partPattern, script...)
				add(last, partitionWhat("last commit", p), partPattern, "get", "set")
			} else {
				add(lease, partitionWhat("lease", p), partPattern, "get", "pttl") // Stats
			}
			if dd.Enabled() {
				set, _ := dd.Mark(DedupePrefix(stream, p, n, group), o.Now())
				add(set, partitionWhat("dedupe set", p), partPattern, script...)
				add(set, partitionWhat("dedupe set", p), partPattern, "exists", "smismember", "sadd", "pexpireat", "type")
			}
			if !byKey {
				continue
			}
			name := "state"
			if len(o.StateNames) > 0 {
				name = o.StateNames[0]
			}
			st := StateKey(stream, p, n, group, name, probeMember)
			add(st, partitionWhat("keyed state", p), partPattern, script...)
			add(st, partitionWhat("keyed state", p), partPattern, "hgetall", "pttl", "type", "hget", "hset", "hdel", "hincrby", "hincrbyfloat", "pexpire")
			hll := DistinctKey(stream, p, n, group, name, probeMember)
			add(hll, partitionWhat("distinct count", p), partPattern, script...)
			add(hll, partitionWhat("distinct count", p), partPattern, "type", "exists", "getrange", "pfadd", "pexpire")
			tk := timerKeysOf(ks)
			for _, z := range []string{tk.processing, tk.event} {
				add(z, partitionWhat("timer set", p), partPattern, script...)
				add(z, partitionWhat("timer set", p), partPattern, "zrangebyscore", "zscore", "zadd", "zrem", "type")
			}
			add(tk.data, partitionWhat("timer data", p), partPattern, script...)
			add(tk.data, partitionWhat("timer data", p), partPattern, "hget", "hset", "hdel", "type")
			meta := metaKey(stream, p, n, group)
			add(meta, partitionWhat("partition metadata", p), partPattern, script...)
			add(meta, partitionWhat("partition metadata", p), partPattern, "hget", "hset", "type")
		}
		add(members, "members set", membersPattern, script...)
		add(members, "members set", membersPattern, "zadd", "zremrangebyscore", "pexpire", "zrangebyscore", "zrem")
		add(dlq, "dead-letter stream", GlobEscape(dlq), script...)
		add(dlq, "dead-letter stream", GlobEscape(dlq), "xadd", "type")
		for _, w := range written {
			pat := w.Pattern
			if pat == "" {
				pat = GlobEscape(w.Key)
			}
			what := "hash the pipeline writes"
			cmds := []string{"type"}
			for _, k := range w.Kinds {
				switch k {
				case EffectXAdd:
					what = "output stream"
					cmds = append(cmds, "xadd")
				case EffectHSet:
					cmds = append(cmds, "hset")
				case EffectHDel:
					cmds = append(cmds, "hdel")
				case EffectHIncrBy:
					cmds = append(cmds, "hget", "hincrby")
				case EffectHIncrByFloat:
					cmds = append(cmds, "hget", "hincrbyfloat")
				case EffectPExpire:
					cmds = append(cmds, "pexpire")
				case EffectPFAdd:
					cmds = append(cmds, "exists", "getrange", "pfadd")
				default:
					return nil, fmt.Errorf("processor: Written %q: %v writes the engine's own keys", w.Key, k)
				}
			}
			add(w.Key, what, pat, script...)
			add(w.Key, what, pat, dedupeStrings(cmds)...)
		}
		trims(false)
		// The worker follows the version its read model is at; a rebuild
		// reads it, and switches it with a script that reads the partition
		// streams' groups (switchVersionScript).
		if o.Versioned || role == RoleRebuild {
			add(version, "read-model version", versionPattern, "get")
		}
		if role == RoleRebuild {
			add(version, "read-model version", versionPattern, script...)
			add(version, "read-model version", versionPattern, "set")
			for p := 0; p < n; p++ {
				// and, once switched, retires the old version's group
				add(PartitionStream(stream, p, n), partitionWhat("stream", p), spat, "exists", "xinfo|groups", "xgroup|destroy")
			}
			rebuild := RebuildKey(o.Pipeline)
			add(rebuild, "rebuild record", GlobEscape(rebuild), "get", "set", "del")
		}
	default:
		return nil, fmt.Errorf("processor: role %q: want %q, %q, %q, %q, %q or %q", role, RoleWorker, RoleProducer, RoleIngest, RoleMonitor, RoleOperator, RoleRebuild)
	}
	for _, nd := range out {
		if probeArgs[nd.cmd] == nil || !slices.Contains(commandOrder, nd.cmd) {
			return nil, fmt.Errorf("processor: no access probe for %s", nd.cmd)
		}
	}
	return out, nil
}

func partitionWhat(what string, p int) string { return fmt.Sprintf("%s of partition %d", what, p) }

func dedupeStrings(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// GlobEscape quotes the characters that Redis's glob patterns (ACL key
// patterns, KEYS, SCAN MATCH) give a meaning: * ? [ ] and backslash.
func GlobEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// rulesOf returns the ACL rules that allow needs: "+cmd" in commandOrder,
// then "~pattern" in order of first use.
func rulesOf(needs []need) []string {
	var rules []string
	for _, c := range commandOrder {
		if hasCommand(needs, c) {
			rules = append(rules, "+"+c)
		}
	}
	var pats []string
	for _, nd := range needs {
		if nd.pattern != "" && !slices.Contains(pats, nd.pattern) {
			pats = append(pats, nd.pattern)
		}
	}
	for _, p := range pats {
		rules = append(rules, "~"+p)
	}
	return rules
}

func hasCommand(needs []need, cmd string) bool {
	for _, nd := range needs {
		if nd.cmd == cmd {
			return true
		}
	}
	return false
}

// probe sends needs and returns those refused. With inTx (the role holds
// MULTI and EXEC) every probe of a key is queued in a transaction that is
// then aborted, in three round trips: EXEC alone ("EXEC without MULTI" or
// refused), then MULTI and EXEC (an empty transaction, or MULTI refused),
// then, only if both are allowed, MULTI, the probes, a command of the wrong
// arity and EXEC, which Redis aborts. Probes that could not be queued
// because MULTI or EXEC is refused are counted as unchecked. (Were MULTI
// taken away between the second round trip and the third, the probes would
// run: where a command has a form that fails before it writes, they use
// it.) Without inTx every probe is sent as it is; they are all harmless.
func probe(ctx context.Context, rdb redis.UniversalClient, needs []need, inTx bool) (denied []Denial, unchecked int, err error) {
	var direct, queued []need
	for _, nd := range needs {
		switch {
		case nd.cmd == "multi" || nd.cmd == "exec":
		case inTx && nd.key != "":
			queued = append(queued, nd)
		case harmless[nd.cmd]:
			direct = append(direct, nd)
		default:
			return nil, 0, fmt.Errorf("processor: the %s probe is sent outside a transaction but could write", nd.cmd)
		}
	}
	// Round trip 1: the probes sent as they are, and EXEC alone.
	cmds := make([]*redis.Cmd, len(direct))
	var execAlone *redis.Cmd
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, nd := range direct {
			cmds[i] = p.Do(ctx, probeArgs[nd.cmd](nd.key)...)
		}
		if inTx {
			execAlone = p.Do(ctx, "EXEC")
		}
		return nil
	})
	if err != nil && !isReply(err) {
		return nil, 0, err
	}
	for i, c := range cmds {
		if d, err := classify(direct[i], c.Err()); err != nil {
			return nil, 0, err
		} else if d != nil {
			denied = append(denied, *d)
		}
	}
	if !inTx {
		return denied, 0, nil
	}
	execDenied, err := classify(need{cmd: "exec"}, execAloneErr(execAlone.Err()))
	if err != nil {
		return nil, 0, err
	}
	if execDenied != nil {
		return append(denied, *execDenied), len(queued) + 1, nil // MULTI unchecked too: it would stay open
	}
	node, err := nodeFor(ctx, rdb, queued)
	if err != nil {
		return nil, 0, err
	}
	// Round trip 2: MULTI then EXEC; if MULTI is refused, EXEC answers
	// "EXEC without MULTI" and nothing is left open.
	var multi *redis.Cmd
	_, err = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		multi = p.Do(ctx, "MULTI")
		p.Do(ctx, "EXEC")
		return nil
	})
	if err != nil && !isReply(err) {
		return nil, 0, err
	}
	if d, err := classify(need{cmd: "multi"}, multi.Err()); err != nil {
		return nil, 0, err
	} else if d != nil {
		return append(denied, *d), len(queued), nil
	}
	if len(queued) == 0 {
		return denied, 0, nil
	}
	// Round trip 3: each probe queued (QUEUED or NOPERM), a GET without
	// its key to spoil the transaction, and EXEC, which aborts it.
	qs := make([]*redis.Cmd, len(queued))
	var exec *redis.Cmd
	_, err = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "MULTI")
		for i, nd := range queued {
			qs[i] = p.Do(ctx, probeArgs[nd.cmd](nd.key)...)
		}
		p.Do(ctx, "GET")
		exec = p.Do(ctx, "EXEC")
		return nil
	})
	if err != nil && !isReply(err) {
		return nil, 0, err
	}
	if err := exec.Err(); !redis.HasErrorPrefix(err, "EXECABORT") {
		if err == nil {
			err = errors.New("it ran")
		}
		return nil, 0, fmt.Errorf("processor: the access check's transaction was not aborted: %w", err)
	}
	for i, c := range qs {
		if d, err := classify(queued[i], c.Err()); err != nil {
			return nil, 0, err
		} else if d != nil {
			denied = append(denied, *d)
		}
	}
	return denied, 0, nil
}

// execAloneErr is the reply to EXEC outside a transaction as classify
// reads it: "EXEC without MULTI" says EXEC is allowed. Redis 7 refuses
// EXEC with "EXECABORT … NOPERM …", which is a refusal too.
func execAloneErr(err error) error {
	if redis.HasErrorPrefix(err, "EXECABORT") && strings.Contains(err.Error(), "NOPERM") {
		return err
	}
	if redis.HasErrorPrefix(err, "EXEC without MULTI") {
		return nil
	}
	return err
}

// classify turns the reply to a probe into a denial, nil when the command
// passed the ACL check (whatever it answered then), or an error when Redis
// did not answer.
func classify(nd need, err error) (*Denial, error) {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		return nil, nil
	case !isReply(err):
		return nil, err
	case redis.HasErrorPrefix(err, "NOPERM"), redis.HasErrorPrefix(err, "EXECABORT") && strings.Contains(err.Error(), "NOPERM"),
		redis.HasErrorPrefix(err, "unknown command"), redis.HasErrorPrefix(err, "unknown subcommand"):
		return &Denial{Command: nd.cmd, Key: nd.key, What: nd.what, Err: err}, nil
	default:
		return nil, nil // refused after the ACL check: allowed
	}
}

// pipelining is a client that sends pipelines: one node's.
type pipelining interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// nodeFor is the client the transaction probes go through: on Redis
// Cluster the node of the first key (a transaction stays on one
// connection, so on one node; keys of other slots are answered CROSSSLOT
// or MOVED after their ACL check, which is all the probe needs).
func nodeFor(ctx context.Context, rdb redis.UniversalClient, queued []need) (pipelining, error) {
	switch c := rdb.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		key := ""
		if len(queued) > 0 {
			key = queued[0].key
		}
		return c.MasterForKey(ctx, key)
	default:
		return nil, fmt.Errorf("processor: cannot check access through a %T", rdb)
	}
}

// Losing a permission while running: coordinate, readers and committers
// treat NOPERM as an error that does not go away by itself and fail the
// Run with it; a supervisor that restarts the worker then meets CheckAccess,
// which names what is missing.

// isNoPerm reports whether err says the Redis user lacks a permission:
// NOPERM, or, from inside a Lua script on Redis 7.0 (whose scripts call
// commands with the caller's permissions), "ERR The user executing the
// script can't run this command …" or "… can't access at least one of the
// keys …". That text is the only sign Redis 7.0 gives; later versions say
// NOPERM.
func isNoPerm(err error) bool {
	return redis.HasErrorPrefix(err, "NOPERM") || redis.HasErrorPrefix(err, "The user executing the script can't")
}

// FailureObserver, when the Observer also implements it, is told at once
// that Run has met an error that stops it (a permission taken away, a key
// of the wrong type), before Run drains and returns that error, so that a
// worker's readiness can turn off at that moment rather than when Run
// returns. It is told once per Run. Calls must not block.
type FailureObserver interface {
	Failing(pipeline string, err error)
}

// failing tells the Observer, if it wants to know, that Run is failing
// with err.
func (p *Processor) failing(err error) {
	if ob, ok := p.o.Observer.(FailureObserver); ok {
		ob.Failing(p.o.Pipeline, err)
	}
}
