package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

const (
	aclDoc    = "../../docs/redis-acl.md"
	aclConfig = "../../configs/clickstream.yaml"
	// aclRebuildConfig holds the pipeline whose rebuild the docs show:
	// clickstream's outputs make it one that cannot be rebuilt.
	aclRebuildConfig   = "../../configs/orders.yaml"
	aclRebuildPipeline = "analytics"
)

// aclUser is one ACL SETUSER line of docs/redis-acl.md.
type aclUser struct {
	name, password string
	role           processor.Role
	args           []string // the whole command, "ACL", "SETUSER", name, …
	rules          []string // after "reset on >password"
}

var aclLineRE = regexp.MustCompile(`(?m)^ACL SETUSER (eddy-(\w+)) reset on >(\S+) (.+)$`)

// docUsers reads the users of docs/redis-acl.md, by role.
func docUsers(t *testing.T) map[processor.Role]aclUser {
	t.Helper()
	b, err := os.ReadFile(aclDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[processor.Role]aclUser{}
	for _, m := range aclLineRE.FindAllStringSubmatch(string(b), -1) {
		u := aclUser{name: m[1], role: processor.Role(m[2]), password: m[3], args: strings.Fields(m[0]), rules: strings.Fields(m[4])}
		out[u.role] = u
	}
	for _, r := range []processor.Role{processor.RoleWorker, processor.RoleProducer, processor.RoleIngest, processor.RoleMonitor, processor.RoleOperator, processor.RoleRebuild} {
		if _, ok := out[r]; !ok {
			t.Fatalf("%s has no ACL SETUSER line for eddy-%s", aclDoc, r)
		}
	}
	return out
}

func clickstream(t *testing.T) *pipelines.Pipeline {
	t.Helper()
	f, err := pipelines.Load(aclConfig, pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return f.Pipelines[0]
}

// rebuildExample is the pipeline whose rebuild the docs show, at the
// version it builds first: 2.
func rebuildExample(t *testing.T) *pipelines.Pipeline {
	t.Helper()
	f, err := pipelines.Load(aclRebuildConfig, pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Pipelines {
		if p.Name == aclRebuildPipeline {
			if err := p.Rebuildable(); err != nil {
				t.Fatal(err)
			}
			return p.AtVersion(2)
		}
	}
	t.Fatalf("%s has no pipeline %s", aclRebuildConfig, aclRebuildPipeline)
	return nil
}

// setUser runs an ACL SETUSER command on the server.
func setUser(t *testing.T, admin *redis.Client, args []string) {
	t.Helper()
	a := make([]any, len(args))
	for i, s := range args {
		a[i] = s
	}
	if err := admin.Do(context.Background(), a...).Err(); err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
}

func userURL(srv *redistest.Server, u aclUser) string {
	return fmt.Sprintf("redis://%s:%s@%s/0", u.name, u.password, srv.Addr())
}

// eddyBinary runs the built binary to its end.
func eddyBinary(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("eddy %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// The rules in the docs are the ones the code asks for, role by role (a
// rebuild's for its example pipeline at version 2).
func TestRedisACLDocMatchesTheCode(t *testing.T) {
	for role, u := range docUsers(t) {
		p := clickstream(t)
		if role == processor.RoleRebuild {
			p = rebuildExample(t)
		}
		want, err := processor.AccessRules(p.Options(), role, writtenBy(p)...)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(u.rules, " "); got != strings.Join(want, " ") {
			t.Errorf("%s: the rules of %s are\n%s\nthe code asks for\n%s", aclDoc, u.name, got, strings.Join(want, " "))
		}
	}
}

func TestWrittenBy(t *testing.T) {
	got := fmt.Sprint(writtenBy(clickstream(t)))
	want := "[{clicks:enriched  [XADD]} {user:eddy-access-check user:* [HSET HINCRBY HINCRBYFLOAT]} {clicks:sessions  [XADD]} {clicks:funnels  [XADD]}]"
	if got != want {
		t.Errorf("writtenBy(clickstream) = %s, want %s", got, want)
	}
}

// clickEvents are n valid clickstream events and bad ones that the
// pipeline dead-letters (a type it does not know).
func clickEvents(n, bad int) string {
	var b strings.Builder
	for i := range n + bad {
		typ := "view"
		if i >= n {
			typ = "bogus"
		}
		fmt.Fprintf(&b, `{"event_id":"e%d","user_id":"u%d","type":%q,"page":"/P%d","ts":%d}`+"\n", i, i%17, typ, i, 1700000000000+i)
	}
	return b.String()
}

// Each documented user, created with exactly its line, does its job: the
// producer produces, the worker processes every event end to end (outputs,
// read models, dead letters) and is ready, the monitor runs status and dlq
// list, the operator replays; nobody is refused anything.
func TestRedisACLDocUsersWork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts eddy run")
	}
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	users := docUsers(t)
	for _, u := range users {
		setUser(t, admin, u.args)
	}
	const n, bad = 300, 4
	code, out, errOut := eddyBinary(t, clickEvents(n, bad), "--redis", userURL(srv, users[processor.RoleProducer]),
		"produce", "-c", aclConfig, "--pipeline", "clickstream")
	if code != 0 {
		t.Fatalf("eddy produce as %s = %d %s %s", users[processor.RoleProducer].name, code, out, errOut)
	}

	addr := freeAddr(t)
	// The documented users are the clickstream pipeline's (the file's other
	// pipelines read and write keys of their own).
	w := startEddy(t, "--redis", userURL(srv, users[processor.RoleWorker]), "run", "-c", aclConfig, "--pipeline", "clickstream",
		"--consumer", "w1", "--http", addr, "--redis-wait", "0")
	waitFor(t, 60*time.Second, "every event processed", func() bool {
		return admin.XLen(ctx, "clicks:enriched").Val() == n && admin.XLen(ctx, "clicks:dlq").Val() == bad
	})
	if got := admin.HGet(ctx, "user:u3", "last_type").Val(); got != "view" {
		t.Errorf("read model user:u3 last_type = %q, want view", got)
	}
	waitFor(t, 10*time.Second, "/readyz 200", func() bool { c, _ := get("http://" + addr + "/readyz"); return c == 200 })

	mon := userURL(srv, users[processor.RoleMonitor])
	if code, out, errOut := eddyBinary(t, "", "--redis", mon, "status", "-c", aclConfig, "--pipeline", "clickstream"); code != 0 || !strings.Contains(out, "workers: w1") || !strings.Contains(out, "{clicks:7}") {
		t.Errorf("eddy status as eddy-monitor = %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := eddyBinary(t, "", "--redis", mon, "dlq", "list", "-c", aclConfig, "--pipeline", "clickstream"); code != 0 || !strings.Contains(out, fmt.Sprintf("clicks:dlq: %d dead letters", bad)) {
		t.Errorf("eddy dlq list as eddy-monitor = %d\n%s%s", code, out, errOut)
	}
	op := userURL(srv, users[processor.RoleOperator])
	if code, out, errOut := eddyBinary(t, "", "--redis", op, "dlq", "replay", "-c", aclConfig, "--pipeline", "clickstream", "--all"); code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d dead letters", bad)) {
		t.Errorf("eddy dlq replay as eddy-operator = %d\n%s%s", code, out, errOut)
	}
	// The replayed events fail again, in the worker that is still running.
	waitFor(t, 30*time.Second, "the replayed events dead-lettered again", func() bool {
		return admin.XLen(ctx, "clicks:dlq").Val() == bad
	})

	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t, 30*time.Second); code != 0 {
		t.Errorf("eddy run exit code = %d, want 0; log:\n%s", code, w.stderr.String())
	}
	for line := range strings.Lines(w.stderr.String()) {
		// eddy asks INFO first whether the server is a Cluster node, then
		// CLUSTER INFO, which the users have: INFO refused is expected.
		if (strings.Contains(line, "NOPERM") || strings.Contains(line, "can't")) && !strings.Contains(line, "'info' command") {
			t.Errorf("the worker was refused something: %s", line)
		}
	}
}

// aclExampleKey is a key of what each documented pattern of the worker
// covers, which the error names when the pattern is missing.
var aclExampleKey = map[string]string{
	"~{clicks:*}*":     "{clicks:0}",
	"~{clicks}:*":      "{clicks}:eddy:members:clickstream",
	"~clicks:dlq":      "clicks:dlq",
	"~clicks:enriched": "clicks:enriched",
	"~user:*":          "user:" + accessProbeKey,
	"~clicks:sessions": "clicks:sessions",
	"~clicks:funnels":  "clicks:funnels",
}

// A worker user missing any one documented rule (a command, or a key
// pattern) makes eddy run exit 1 at start, naming what is missing.
func TestRunRefusesEachMissingPermission(t *testing.T) {
	if testing.Short() {
		t.Skip("starts eddy run once per rule")
	}
	srv := redistest.Start(t)
	admin := srv.Client(t)
	u := docUsers(t)[processor.RoleWorker]
	url := userURL(srv, u)
	head := u.args[:len(u.args)-len(u.rules)]
	for i, rule := range u.rules {
		t.Run(rule, func(t *testing.T) {
			args := append(append(append([]string{}, head...), u.rules[:i]...), u.rules[i+1:]...)
			setUser(t, admin, args)
			code, _, errOut := eddyBinary(t, "", "--redis", url, "run", "-c", aclConfig, "--pipeline", "clickstream", "--http", "off", "--redis-wait", "0", "--consumer", "w1")
			var want string
			switch {
			case rule == "+ping":
				want = "'ping' command"
			case strings.HasPrefix(rule, "+"):
				want = "may not run " + strings.ToUpper(strings.ReplaceAll(rule[1:], "|", " "))
			case aclExampleKey[rule] == "":
				t.Fatalf("aclExampleKey has no key for %s", rule)
			default:
				want = "may not use " + aclExampleKey[rule]
			}
			if code != 1 || !strings.Contains(errOut, want) {
				t.Errorf("eddy run without %s = %d, want 1 and an error with %q:\n%s", rule, code, want, errOut)
			}
		})
	}
}

// Every other command checks its own role: without TIME or the read
// model's version, status fails; without XRANGE on the dead letters, dlq
// list fails; without XDEL or WATCH (a wide dead letter's replay), replay
// fails; without XADD, produce fails. Each names what is missing.
func TestCommandsCheckTheirRole(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	users := docUsers(t)
	without := func(u aclUser, rule string) aclUser {
		var args []string
		for _, a := range u.args {
			if a != rule {
				args = append(args, a)
			}
		}
		u.args = args
		return u
	}
	for _, tc := range []struct {
		u     aclUser
		less  string
		stdin string
		args  []string
		want  string
	}{
		{users[processor.RoleMonitor], "+time", "", []string{"status", "-c", aclConfig, "--pipeline", "clickstream"}, "may not run TIME"},
		{users[processor.RoleMonitor], "+xrange", "", []string{"dlq", "list", "-c", aclConfig, "--pipeline", "clickstream"}, "may not run XRANGE on clicks:dlq"},
		{users[processor.RoleMonitor], "~clicks:dlq", "", []string{"dlq", "list", "-c", aclConfig, "--pipeline", "clickstream"}, "may not use clicks:dlq"},
		{users[processor.RoleOperator], "+xdel", "", []string{"dlq", "replay", "-c", aclConfig, "--pipeline", "clickstream", "--all"}, "may not run XDEL on clicks:dlq"},
		{users[processor.RoleOperator], "+watch", "", []string{"dlq", "replay", "-c", aclConfig, "--pipeline", "clickstream", "--all"}, "may not run WATCH on clicks:dlq"},
		{users[processor.RoleProducer], "+xadd", clickEvents(1, 0), []string{"produce", "-c", aclConfig, "--pipeline", "clickstream"}, "may not run XADD on {clicks:0}"},
		{users[processor.RoleProducer], "~{clicks:*}", clickEvents(1, 0), []string{"produce", "-c", aclConfig, "--pipeline", "clickstream"}, "may not use {clicks:0}"},
	} {
		u := without(tc.u, tc.less)
		setUser(t, admin, u.args)
		code, out, errOut := eddy(t, tc.stdin, append([]string{"--redis", userURL(srv, u)}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("eddy %s as %s without %s = %d, want 1 and %q:\n%s%s", tc.args[0], u.name, tc.less, code, tc.want, out, errOut)
		}
	}
	if n := admin.DBSize(context.Background()).Val(); n != 0 {
		t.Errorf("the refused commands left %d keys", n)
	}
}

// A worker whose user loses scripting while it runs stops being ready and
// exits 1 naming NOPERM, instead of sitting idle and ready.
func TestRunStopsWhenAPermissionIsTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts eddy run")
	}
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	users := docUsers(t)
	w := users[processor.RoleWorker]
	setUser(t, admin, w.args)
	setUser(t, admin, users[processor.RoleProducer].args)
	if code, out, errOut := eddyBinary(t, clickEvents(50, 0), "--redis", userURL(srv, users[processor.RoleProducer]), "produce", "-c", aclConfig, "--pipeline", "clickstream"); code != 0 {
		t.Fatalf("eddy produce = %d %s %s", code, out, errOut)
	}
	addr := freeAddr(t)
	p := startEddy(t, "--redis", userURL(srv, w), "run", "-c", aclConfig, "--pipeline", "clickstream", "--consumer", "w1", "--http", addr, "--redis-wait", "0")
	waitFor(t, 60*time.Second, "the events processed", func() bool { return admin.XLen(ctx, "clicks:enriched").Val() == 50 })
	waitFor(t, 10*time.Second, "/readyz 200", func() bool { c, _ := get("http://" + addr + "/readyz"); return c == 200 })

	setUser(t, admin, []string{"ACL", "SETUSER", w.name, "-evalsha", "-eval"})
	var answers []string // each change of /readyz's answer
	last := ""
	for done := false; !done; {
		select {
		case <-p.exited:
			done = true
		default:
		}
		c, body := get("http://" + addr + "/readyz")
		a := fmt.Sprint(c)
		if c == 503 {
			a += " " + strings.TrimSpace(body)
		}
		if a != last {
			answers, last = append(answers, a), a
		}
		time.Sleep(20 * time.Millisecond)
	}
	code := p.wait(t, time.Second)
	if code != 1 || !strings.Contains(p.stderr.String(), "NOPERM") {
		t.Errorf("eddy run after -evalsha = %d, want 1 and NOPERM; log:\n%s", code, p.stderr.String())
	}
	for i, a := range answers {
		if i > 0 && strings.HasPrefix(a, "200") {
			t.Errorf("/readyz was ready again after %v: %v", answers[:i], answers)
		}
	}
	t.Logf("/readyz answers after the permission was taken: %q", answers)
}

// The gate makes /readyz unready for good from the first failure, also
// when it comes before the server is opened.
func TestFailGate(t *testing.T) {
	for _, before := range []bool{true, false} {
		srv := &httpServer{}
		g := &failGate{}
		var obs processor.Observer = observers{&tally{}, g}
		fail := func() { obs.(processor.FailureObserver).Failing("clickstream", errors.New("NOPERM no")) }
		if before {
			fail()
		}
		g.open(srv)
		if srv.ready.Load() == before {
			t.Errorf("failed before open %v: ready = %v after open", before, srv.ready.Load())
		}
		fail()
		if srv.ready.Load() {
			t.Errorf("failed before open %v: ready after Failing", before)
		}
		if w := srv.waiting.Load(); w == nil || !strings.Contains(*w, "pipeline clickstream is stopping: NOPERM no") {
			t.Errorf("failed before open %v: /readyz would say %v", before, w)
		}
	}
}
