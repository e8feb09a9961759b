package processor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// accessCase is a pipeline whose access the tests check, with the keys
// its effects write outside the engine's own.
type accessCase struct {
	name    string
	opts    Options
	written []Written
}

func accessCases() []accessCase {
	base := func(partitions int, ordering string) Options {
		o := Options{Pipeline: "clickstream", Stream: "clicks", Partitions: partitions, Ordering: ordering,
			DeadLetterStream: "clicks:dlq", DedupeWindow: time.Hour}
		if ordering == OrderingKey {
			o.StateNames = []string{"counts"}
		}
		return o
	}
	written := []Written{
		{Key: "clicks:enriched", Kinds: []EffectKind{EffectXAdd}},
		{Key: "user:" + probeMember, Pattern: "user:*", Kinds: []EffectKind{EffectHSet, EffectHIncrBy, EffectHIncrByFloat}},
	}
	// Retention: everything trimmed, only an output, only the input.
	retained := base(4, OrderingKey)
	retained.InputRetention = Retention{MaxLen: 1000, MaxAge: time.Hour}
	retained.DeadLetterRetention = Retention{MaxAge: time.Hour}
	retained.Retain = []Retained{{Stream: "clicks:enriched", Retention: Retention{MaxLen: 100}}}
	outputOnly := base(3, OrderingNone)
	outputOnly.Retain = retained.Retain
	noDedupe := base(1, OrderingKey)
	noDedupe.DedupeWindow = 0
	noDedupe.InputRetention = Retention{MaxLen: 1000}
	return []accessCase{
		{"key, 4 partitions", retained, written},
		{"none, 3 partitions", outputOnly, written},
		{"key, 1 partition", noDedupe, nil},
	}
}

var allRoles = []Role{RoleWorker, RoleProducer, RoleMonitor, RoleOperator, RoleRebuild}

// createUser makes (or remakes) ACL user name with password "pw" and
// rules, and returns a client that authenticates as it.
func createUser(tb testing.TB, srv *redistest.Server, name string, rules ...string) *redis.Client {
	tb.Helper()
	args := []any{"ACL", "SETUSER", name, "reset", "on", ">pw"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := srv.Client(tb).Do(context.Background(), args...).Err(); err != nil {
		tb.Fatalf("ACL SETUSER %s %v: %v", name, rules, err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: name, Password: "pw", ContextTimeoutEnabled: true})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// fillKeyspace gives every key a check may touch a value of the type the
// engine gives it: streams with the group, a consumer and a pending entry,
// the lease, the token, sets, hashes, sorted sets and a HyperLogLog.
func fillKeyspace(t *testing.T, c *redis.Client, tc accessCase) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	for _, role := range allRoles {
		o := tc.opts
		o.fillDefaults()
		needs, err := accessNeeds(&o, role, tc.written)
		if err != nil {
			t.Fatal(err)
		}
		for _, nd := range needs {
			if nd.key == "" || seen[nd.key] {
				continue
			}
			seen[nd.key] = true
			var err error
			switch what := familyOf(nd.what); what {
			case "stream", "dead-letter stream", "output stream", "unpartitioned stream name":
				err = c.XAdd(ctx, &redis.XAddArgs{Stream: nd.key, Values: []string{"data", "{}"}}).Err()
				if err == nil && what == "stream" {
					err = c.XGroupCreate(ctx, nd.key, o.Group, "0").Err()
				}
				if err == nil && what == "stream" {
					err = c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: o.Group, Consumer: "w1", Streams: []string{nd.key, ">"}, Count: 1}).Err()
				}
			case "lease":
				err = c.Set(ctx, nd.key, "w1/abc/3", time.Hour).Err()
			case "fencing token":
				err = c.Set(ctx, nd.key, "3", 0).Err()
			case "members set", "timer set":
				err = c.ZAdd(ctx, nd.key, redis.Z{Score: 1, Member: "w1"}).Err()
			case "dedupe set":
				err = c.SAdd(ctx, nd.key, "e1").Err()
			case "read-model version", "rebuild record":
				err = c.Set(ctx, nd.key, "2", 0).Err()
			case "distinct count":
				err = c.PFAdd(ctx, nd.key, "a").Err()
			default: // hashes
				err = c.HSet(ctx, nd.key, "f", "1").Err()
			}
			if err != nil {
				t.Fatalf("fill %s (%s): %v", nd.key, nd.what, err)
			}
		}
	}
}

// keyspaceOf is every key with its type, serialized value (which holds a
// stream's groups, consumers and their seen times) and time to live.
func keyspaceOf(t *testing.T, c *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		dump, err := c.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		ttl := c.PTTL(ctx, k).Val() > 0
		fmt.Fprintf(&b, "%q %s ttl=%v %x\n", k, c.Type(ctx, k).Val(), ttl, dump)
	}
	return b.String()
}

// Every probe is side-effect free: a full check of every role by a user
// allowed everything finds nothing missing and leaves the keyspace as it
// was, both empty and filled with every key the engine uses.
func TestCheckAccessChangesNothing(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	for _, tc := range accessCases() {
		t.Run(tc.name, func(t *testing.T) {
			if err := admin.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			for _, fill := range []bool{false, true} {
				if fill {
					fillKeyspace(t, admin, tc)
				}
				before := keyspaceOf(t, admin)
				for _, role := range allRoles {
					if err := CheckAccess(ctx, admin, tc.opts, role, tc.written...); err != nil {
						t.Errorf("CheckAccess(%s) by the default user = %v, want nil", role, err)
					}
				}
				if after := keyspaceOf(t, admin); after != before {
					t.Errorf("keyspace changed by the checks (filled %v):\nbefore:\n%s\nafter:\n%s", fill, before, after)
				}
			}
			if err := admin.Ping(ctx).Err(); err != nil { // the connection is not left inside MULTI
				t.Fatal(err)
			}
		})
	}
}

// denialSet is "cmd key" of each denial.
func denialSet(err error) map[string]bool {
	var ae *AccessError
	if !errors.As(err, &ae) {
		return nil
	}
	out := map[string]bool{}
	for _, d := range ae.Denied {
		out[d.Command+" "+d.Key] = true
	}
	return out
}

// Every probe reaches Redis's ACL check with its key where ACL looks for
// it: a user allowed no command but the connection's is refused every
// probe, and a user allowed every command but no key is refused every
// probe of a key.
func TestCheckAccessEveryProbeIsChecked(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	noCmds := createUser(t, srv, "nocmds", "+ping", "+multi", "+exec", "~*")
	noKeys := createUser(t, srv, "nokeys", "+@all")
	for _, tc := range accessCases() {
		for _, role := range allRoles {
			o := tc.opts
			o.fillDefaults()
			needs, err := accessNeeds(&o, role, tc.written)
			if err != nil {
				t.Fatal(err)
			}
			cmdsErr := CheckAccess(ctx, noCmds, tc.opts, role, tc.written...)
			keysErr := CheckAccess(ctx, noKeys, tc.opts, role, tc.written...)
			gotCmds, gotKeys := denialSet(cmdsErr), denialSet(keysErr)
			for _, nd := range needs {
				id := nd.cmd + " " + nd.key
				if nd.cmd != "ping" && nd.cmd != "multi" && nd.cmd != "exec" && !gotCmds[id] {
					t.Errorf("%s, %s: %s on %s was not refused to a user without the command; err = %v", tc.name, role, nd.cmd, nd.key, cmdsErr)
				}
				if nd.key != "" && !gotKeys[id] {
					t.Errorf("%s, %s: %s on %s was not refused to a user without keys; err = %v", tc.name, role, nd.cmd, nd.key, keysErr)
				}
			}
		}
	}
}

// A user missing any one rule that a role needs is refused, and the error
// names what is missing; with every rule it passes.
func TestCheckAccessNamesEachMissingRule(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, tc := range accessCases() {
		for _, role := range allRoles {
			rules, err := AccessRules(tc.opts, role, tc.written...)
			if err != nil {
				t.Fatal(err)
			}
			c := createUser(t, srv, "u", rules...)
			if err := CheckAccess(ctx, c, tc.opts, role, tc.written...); err != nil {
				t.Errorf("%s, %s: CheckAccess with %v = %v, want nil", tc.name, role, rules, err)
			}
			for i, r := range rules {
				if r == "+ping" {
					continue // the connection's own: without it no command of Eddy's starts
				}
				less := append(append([]string{}, rules[:i]...), rules[i+1:]...)
				c := createUser(t, srv, "u", less...)
				err := CheckAccess(ctx, c, tc.opts, role, tc.written...)
				var ae *AccessError
				if !errors.As(err, &ae) {
					t.Errorf("%s, %s without %s: CheckAccess = %v, want an *AccessError", tc.name, role, r, err)
					continue
				}
				msg := err.Error()
				want := "may not use "
				if strings.HasPrefix(r, "+") {
					want = "may not run " + commandName(r[1:])
				}
				if !strings.Contains(msg, want) || !strings.Contains(msg, `redis user "u"`) || !strings.Contains(msg, strings.Join(rules, " ")) {
					t.Errorf("%s, %s without %s: error lacks %q, the user or the rules:\n%s", tc.name, role, r, want, msg)
				}
			}
		}
	}
}

func TestAccessRules(t *testing.T) {
	o := Options{Pipeline: "clickstream", Stream: "clicks", Partitions: 8, DeadLetterStream: "clicks:dlq"}
	one := Options{Pipeline: "p", Stream: "a*b", Ordering: OrderingNone}
	kept := o // under retention: the input, the dead letters, an output
	kept.InputRetention = Retention{MaxAge: time.Hour}
	kept.DeadLetterRetention = Retention{MaxLen: 100}
	kept.Retain = []Retained{{Stream: "clicks:enriched", Retention: Retention{MaxLen: 100}}}
	oneKept := one
	oneKept.InputRetention = Retention{MaxLen: 100}
	// Version 2 of a pipeline of one partition, ordering none, that writes
	// a read model, and the same at version 1 (for eddy run).
	v1 := Options{Pipeline: "users", Stream: "ev", Ordering: OrderingNone, Versioned: true}
	v2 := v1
	v2.Group = VersionGroup("users", 2)
	model := func(prefix string) Written {
		return Written{Key: prefix + "user:x", Pattern: prefix + "user:*", Kinds: []EffectKind{EffectHSet}}
	}
	for _, tc := range []struct {
		o       Options
		role    Role
		written []Written
		want    string
	}{
		{o, RoleProducer, nil, "+ping +cluster|info +xadd ~{clicks:*}"},
		{one, RoleProducer, nil, `+ping +cluster|info +xadd ~a\*b`},
		{o, RoleMonitor, nil, "+ping +cluster|info +time +xpending +xinfo|stream +xinfo|groups +xlen +xrange +xrevrange +get +pttl +zrangebyscore +hgetall ~{clicks:*}* ~{clicks}:* ~clicks ~clicks:dlq"},
		{one, RoleMonitor, nil, `+ping +cluster|info +xpending +xinfo|stream +xinfo|groups +xlen +xrange +xrevrange +get +pttl +hgetall ~a\*b ~{a\*b}:* ~a\*b:dlq`},
		{o, RoleOperator, nil, "+ping +cluster|info +time +multi +exec +watch +unwatch +evalsha +eval +xpending +xadd +xdel +xinfo|stream +xinfo|groups +xlen +xrange +xrevrange +get +pttl +zrangebyscore +hgetall ~{clicks:*}* ~{clicks}:* ~clicks ~clicks:dlq"},
		// The dry run of the trim script: scripting and its reads on every
		// stream under retention, no XTRIM.
		{kept, RoleMonitor, nil, "+ping +cluster|info +time +evalsha +eval +xpending +xinfo|stream +xinfo|groups +xinfo|consumers +xlen +xrange +xrevrange +get +pttl +exists +zrangebyscore +hgetall ~{clicks:*}* ~{clicks}:* ~clicks ~clicks:dlq ~clicks:enriched"},
		{oneKept, RoleMonitor, nil, `+ping +cluster|info +evalsha +eval +xpending +xinfo|stream +xinfo|groups +xinfo|consumers +xlen +xrange +xrevrange +get +pttl +exists +hgetall ~a\*b ~{a\*b}:* ~a\*b:dlq`},
		{oneKept, RoleWorker, nil, `+ping +cluster|info +time +multi +exec +evalsha +eval +xgroup|create +xgroup|delconsumer +xreadgroup +xpending +xautoclaim +xclaim +xack +xadd +xtrim +xinfo|stream +xinfo|groups +xinfo|consumers +xlen +xrange +get +pttl +pexpire +exists +type +zadd +zrem +zremrangebyscore +zrangebyscore ~a\*b ~{a\*b}:* ~a\*b:dlq`},
		{v1, RoleWorker, []Written{model("")}, "+ping +cluster|info +time +multi +exec +evalsha +eval +xgroup|create +xgroup|delconsumer +xreadgroup +xpending +xautoclaim +xclaim +xack +xadd +xinfo|stream +xinfo|groups +xinfo|consumers +get +pttl +pexpire +type +zadd +zrem +zremrangebyscore +zrangebyscore +hset ~ev ~{ev}:* ~ev:dlq ~user:* ~eddy:version:users"},
		// A rebuild: version 2's worker (its group's keys fall under the
		// same patterns, its read model under v2:), the switch and the
		// rebuild's record.
		{v2, RoleRebuild, []Written{model(VersionPrefix(2))}, "+ping +cluster|info +time +multi +exec +evalsha +eval +xgroup|create +xgroup|delconsumer +xgroup|destroy +xreadgroup +xpending +xautoclaim +xclaim +xack +xadd +xinfo|stream +xinfo|groups +xinfo|consumers +get +set +del +pttl +pexpire +exists +type +zadd +zrem +zremrangebyscore +zrangebyscore +hset ~ev ~{ev}:* ~ev:dlq ~v2:user:* ~eddy:version:users ~eddy:rebuild:users"},
	} {
		got, err := AccessRules(tc.o, tc.role, tc.written...)
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("AccessRules(%s, %s, %v) =\n%s\nwant\n%s", tc.o.Stream, tc.role, tc.written, s, tc.want)
		}
	}
	if _, err := AccessRules(o, "admin"); err == nil {
		t.Error(`AccessRules(role "admin") = nil error, want one`)
	}
}

// failures records FailureObserver calls.
type failures struct {
	mu   sync.Mutex
	errs []error
}

func (f *failures) Committed(Commit)              {}
func (f *failures) Retried(string, int, error)    {}
func (f *failures) Handled(string, time.Duration) {}

func (f *failures) Failing(_ string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *failures) list() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// A worker whose user loses a permission while it runs fails the Run with
// NOPERM (it does not sit idle, logging membership_failed), and tells its
// FailureObserver at once, before Run has drained. ZREMRANGEBYSCORE is
// sent only by the membership script: this is coordinate's own path.
func TestRunFailsWhenAPermissionIsTaken(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	for _, take := range []string{"-zremrangebyscore", "-evalsha"} {
		t.Run(take, func(t *testing.T) {
			if err := admin.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			obs := &failures{}
			o := workerOptions("w1", HandlerFunc(emitHandler))
			o.Observer = obs
			rules, err := AccessRules(o, RoleWorker, Written{Key: "out", Kinds: []EffectKind{EffectXAdd}})
			if err != nil {
				t.Fatal(err)
			}
			c := createUser(t, srv, "w", rules...)
			if err := CheckAccess(ctx, c, o, RoleWorker, Written{Key: "out", Kinds: []EffectKind{EffectXAdd}}); err != nil {
				t.Fatal(err)
			}
			p, err := New(c, o)
			if err != nil {
				t.Fatal(err)
			}
			produce(t, admin, 1, interleaved(5, 2))
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			waitFor(t, 10*time.Second, "the first outputs", func() bool { return xlen(t, admin, "out") >= 10 })
			if err := admin.Do(ctx, "ACL", "SETUSER", "w", take).Err(); err != nil {
				t.Fatal(err)
			}
			produce(t, admin, 1, interleaved(5, 2)) // for the readers and the committer to meet it too
			select {
			case err := <-done:
				if !isNoPerm(err) {
					t.Errorf("Run = %v, want a NOPERM error", err)
				}
				if got := obs.list(); len(got) != 1 || !errors.Is(got[0], err) {
					t.Errorf("Failing was called with %v, want once with Run's error %v", got, err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run went on after the permission was taken")
			}
		})
	}
}

// On Redis Cluster the transaction probes go to one node: the ACL check
// still comes before the answer that a key lives elsewhere, so every
// probe is checked, and a user allowed everything changes nothing.
func TestCheckAccessOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-master cluster")
	}
	cl := redistest.StartCluster(t, 3)
	ctx := context.Background()
	tc := accessCases()[0]
	for _, role := range allRoles {
		if err := CheckAccess(ctx, cl.Client(t), tc.opts, role, tc.written...); err != nil {
			t.Errorf("CheckAccess(%s) on a cluster by the default user = %v, want nil", role, err)
		}
	}
	for _, node := range cl.Nodes() {
		if n := node.Client(t).DBSize(ctx).Val(); n != 0 {
			t.Errorf("node %s holds %d keys after the checks, want 0", node.Addr(), n)
		}
		if err := node.Client(t).Do(ctx, "ACL", "SETUSER", "u", "reset", "on", ">pw", "+@all", "-evalsha", "~*").Err(); err != nil {
			t.Fatal(err)
		}
	}
	opt := cl.Client(t).Options()
	opt.Username, opt.Password = "u", "pw"
	c := redis.NewClusterClient(opt)
	defer c.Close()
	err := CheckAccess(ctx, c, tc.opts, RoleWorker, tc.written...)
	o := tc.opts
	o.fillDefaults()
	needs, _ := accessNeeds(&o, RoleWorker, tc.written)
	got := denialSet(err)
	for _, nd := range needs {
		if (nd.cmd == "evalsha") != got[nd.cmd+" "+nd.key] {
			t.Errorf("on a cluster without EVALSHA: %s on %s refused %v; err = %v", nd.cmd, nd.key, got[nd.cmd+" "+nd.key], err)
		}
	}
}

// aclTrims records the trim reports of a processor, by stream.
type aclTrims struct {
	mu      sync.Mutex
	removed map[string]int64 // stream -> entries removed, over every report
	reports map[string]int
}

func (a *aclTrims) Committed(Commit)              {}
func (a *aclTrims) Retried(string, int, error)    {}
func (a *aclTrims) Handled(string, time.Duration) {}

func (a *aclTrims) Trimmed(r TrimReport) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.removed == nil {
		a.removed, a.reports = map[string]int64{}, map[string]int{}
	}
	a.removed[r.Stream] += r.Removed
	a.reports[r.Stream]++
}

// trimmed reports whether each stream has been trimmed (reported at all,
// when removed is false; with entries removed, when it is set).
func (a *aclTrims) trimmed(streams []string, removed bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range streams {
		if a.reports[s] == 0 || removed && a.removed[s] == 0 {
			return false
		}
	}
	return true
}

// runAs runs a processor of o through c until the test ends.
func runAs(t *testing.T, c *redis.Client, o Options) (stop func() error) {
	t.Helper()
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if !stopped {
			cancel()
			runErr, stopped = <-done, true
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// Each role's rules are enough for what it does with the streams under
// retention and with the read-model version, each role a user with exactly
// AccessRules on a real redis-server: a worker trims its input partitions,
// dead letters and output (XTRIM runs: entries are removed) and reads the
// version; a monitor and an operator run the trim script's dry run on each
// and read the version; the operator replays a dead letter too wide for a
// script (WATCH, and UNWATCH once it is gone); a rebuild runs version 2 in
// its own group, writes its read model under v2:, records itself, and
// switches the version.
func TestAccessRulesSufficeForRetentionAndVersions(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()

	// One entry in four is dead-lettered; the others emit to "out".
	handler := HandlerFunc(func(_ context.Context, m *Message) error {
		seq := int(m.Data.(map[string]any)["seq"].(float64))
		if seq%4 == 0 {
			return Permanentf(ReasonInvalid, "seq %d", seq)
		}
		m.Emit("out", 0, "seq", fmt.Sprint(seq))
		return nil
	})
	trims := &aclTrims{}
	o := workerOptions("w1", handler)
	o.Partitions = 2
	o.Observer = trims
	o.InputRetention = Retention{MaxLen: 20}
	o.DeadLetterRetention = Retention{MaxLen: 5}
	o.Retain = []Retained{{Stream: "out", Retention: Retention{MaxLen: 10}}}
	o.RetentionEvery = 50 * time.Millisecond
	o.Versioned = true // the roles read the version
	out := Written{Key: "out", Kinds: []EffectKind{EffectXAdd}}
	retainedStreams := []string{"{in:0}", "{in:1}", "in:dlq", "out"}

	user := func(name string, o Options, role Role, written ...Written) *redis.Client {
		t.Helper()
		rules, err := AccessRules(o, role, written...)
		if err != nil {
			t.Fatal(err)
		}
		c := createUser(t, srv, name, rules...)
		if err := CheckAccess(ctx, c, o, role, written...); err != nil {
			t.Fatalf("CheckAccess(%s) with its own rules = %v", role, err)
		}
		return c
	}

	worker := user("worker", o, RoleWorker, out)
	stopWorker := runAs(t, worker, o)
	produce(t, admin, 2, interleaved(5, 40)) // 200 entries, 100 a partition
	waitFor(t, 20*time.Second, "every stream under retention trimmed by the worker", func() bool {
		return trims.trimmed(retainedStreams, true)
	})
	if v, err := ReadVersion(ctx, worker, o.Pipeline); v != 1 || err != nil {
		t.Errorf("ReadVersion as the worker = %d, %v; want 1, nil", v, err)
	}
	if err := stopWorker(); err != nil {
		t.Fatalf("the worker's Run = %v", err)
	}
	for _, s := range retainedStreams {
		t.Logf("%s: %d entries left, %d trimmed by the worker", s, xlen(t, admin, s), trims.removed[s])
	}

	for _, role := range []Role{RoleMonitor, RoleOperator} {
		c := user(string(role), o, role)
		in, err := NewInspector(c, o)
		if err != nil {
			t.Fatal(err)
		}
		reps, err := in.Retention(ctx, time.Now())
		if err != nil || len(reps) != len(retainedStreams) {
			t.Errorf("Inspector.Retention as the %s = %d reports, %v; want %d, nil", role, len(reps), err, len(retainedStreams))
		}
		if v, err := ReadVersion(ctx, c, o.Pipeline); v != 1 || err != nil {
			t.Errorf("ReadVersion as the %s = %d, %v; want 1, nil", role, v, err)
		}
		if role != RoleOperator {
			continue
		}
		fields := make([]string, 0, 2*maxEffectStrings)
		for i := range maxEffectStrings {
			fields = append(fields, fmt.Sprint("f", i), "v")
		}
		d := DeadLetter{Stream: PartitionStream("in", 0, 2), Fields: fields}
		if d.ID, err = admin.XAdd(ctx, &redis.XAddArgs{Stream: "in:dlq", Values: []string{"eddy.reason", ReasonInvalid}}).Result(); err != nil {
			t.Fatal(err)
		}
		if _, err := Replay(ctx, c, "in:dlq", d); err != nil {
			t.Errorf("Replay of %d fields as the operator = %v", len(fields), err)
		}
		if _, err := Replay(ctx, c, "in:dlq", d); !errors.Is(err, ErrDeadLetterGone) {
			t.Errorf("Replay again as the operator = %v, want ErrDeadLetterGone", err)
		}
	}

	// The rebuild of version 2: its group's keys are under the patterns
	// of version 1's, its read model under v2:.
	rebuildTrims := &aclTrims{}
	ov := o
	ov.Group, ov.Consumer, ov.Observer = VersionGroup(o.Pipeline, 2), "r1", rebuildTrims
	ov.Retain = nil
	ov.Handler = HandlerFunc(func(_ context.Context, m *Message) error {
		m.SetState(VersionPrefix(2)+"model:"+m.Key, "seq", fmt.Sprint(m.Data.(map[string]any)["seq"]))
		return nil
	})
	model := Written{Key: VersionPrefix(2) + "model:" + probeMember, Pattern: VersionPrefix(2) + "model:*", Kinds: []EffectKind{EffectHSet}}
	rb := user("rebuild", ov, RoleRebuild, model)
	if err := rb.Get(ctx, RebuildKey(o.Pipeline)).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET %s as the rebuild = %v, want redis.Nil", RebuildKey(o.Pipeline), err)
	}
	if err := rb.Set(ctx, RebuildKey(o.Pipeline), 2, 0).Err(); err != nil {
		t.Errorf("SET %s as the rebuild = %v", RebuildKey(o.Pipeline), err)
	}
	stopRebuild := runAs(t, rb, ov)
	var switchErr error
	waitFor(t, 20*time.Second, "the switch to version 2", func() bool {
		switchErr = SwitchVersion(ctx, rb, o, 1, 2)
		return !errors.Is(switchErr, ErrVersionBehind)
	})
	if switchErr != nil {
		t.Errorf("SwitchVersion as the rebuild = %v", switchErr)
	}
	waitFor(t, 20*time.Second, "the input trimmed by the rebuild", func() bool {
		return rebuildTrims.trimmed(retainedStreams[:3], false)
	})
	if err := stopRebuild(); err != nil {
		t.Fatalf("the rebuild's Run = %v", err)
	}
	if v, err := ReadVersion(ctx, rb, o.Pipeline); v != 2 || err != nil {
		t.Errorf("ReadVersion as the rebuild after the switch = %d, %v; want 2, nil", v, err)
	}
	if err := rb.Del(ctx, RebuildKey(o.Pipeline)).Err(); err != nil {
		t.Errorf("DEL %s as the rebuild = %v", RebuildKey(o.Pipeline), err)
	}
	if n := len(admin.Keys(ctx, VersionPrefix(2)+"model:*").Val()); n != 5 {
		t.Errorf("the rebuild wrote %d hashes of version 2's read model, want 5 (one a key)", n)
	}
}
