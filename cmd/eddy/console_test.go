package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

func TestConsoleToken(t *testing.T) {
	file := writeFile(t, "token", "from-file-0123456789\n")
	short := writeFile(t, "short", "short-secret\n")
	t.Setenv("EDDY_TEST_CONSOLE_TOKEN_SET", "from-env-0123456789")
	t.Setenv("EDDY_TEST_CONSOLE_TOKEN_SHORT", "short-secret")
	tests := []struct {
		c       pipelines.Console
		want    string
		wantErr string
	}{
		{pipelines.Console{}, "", ""},
		{pipelines.Console{AdminTokenEnv: "EDDY_TEST_CONSOLE_TOKEN_SET"}, "from-env-0123456789", ""},
		{pipelines.Console{AdminTokenFile: file}, "from-file-0123456789", ""},
		{pipelines.Console{AdminTokenEnv: "EDDY_TEST_CONSOLE_TOKEN_SHORT"}, "", "console.admin_token_env: environment variable EDDY_TEST_CONSOLE_TOKEN_SHORT holds an admin token of 12 bytes: want at least 16"},
		{pipelines.Console{AdminTokenFile: short}, "", "console.admin_token_file: file " + short + " holds an admin token of 12 bytes: want at least 16"},
		{pipelines.Console{AdminTokenEnv: "EDDY_TEST_CONSOLE_TOKEN_UNSET"}, "", "console.admin_token_env: environment variable EDDY_TEST_CONSOLE_TOKEN_UNSET is unset or empty"},
		{pipelines.Console{AdminTokenFile: file + ".nope"}, "", "console.admin_token_file: "},
		{pipelines.Console{AdminTokenEnv: "X", AdminTokenFile: file}, "", "give at most one"},
	}
	for _, tt := range tests {
		got, err := consoleToken(tt.c)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("consoleToken(%+v) = %q, %v, want %q and an error containing %q", tt.c, got, err, tt.want, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "short-secret") {
			t.Errorf("consoleToken(%+v): error %q quotes the token", tt.c, err)
		}
	}
}

func TestConsoleCommandRefuses(t *testing.T) {
	base := `pipelines:
  - name: pay
    input: {stream: pay}
    key: account
    steps: [{output: {stream: "pay:out"}}]
`
	tests := []struct {
		name, config, want string
	}{
		{"console off", "console: {off: true}\n" + base, "console.off is true"},
		{"http off", "http: {addr: off}\n" + base, "give --http ADDR"},
		{"not loopback, no token", "http: {addr: \"0.0.0.0:0\"}\n" + base, "console on 0.0.0.0:0: the console shows dead letters' payloads"},
	}
	for _, tt := range tests {
		cfg := writeFile(t, "c.yaml", tt.config)
		code, _, errOut := eddy(t, "", "--redis", "redis://127.0.0.1:1", "console", "-c", cfg)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: eddy console = %d %q, want 2 and %q", tt.name, code, errOut, tt.want)
		}
	}
}

func TestWithConsole(t *testing.T) {
	base := `pipelines:
  - name: pay
    input: {stream: pay}
    key: account
    steps: [{output: {stream: "pay:out"}}]
`
	ingest := http.NotFoundHandler()
	t.Setenv("EDDY_TEST_CONSOLE_TOKEN_WITH", "console-admin-token-0123456789")
	const withToken = "console: {admin_token_env: EDDY_TEST_CONSOLE_TOKEN_WITH}\n"
	tests := []struct {
		name, config string
		console      bool
		// get is the status of GET / (without a login) when the console is
		// mounted; offLog is set when the log must say why it is off.
		get    int
		offLog bool
	}{
		{name: "on by default", config: base, console: true, get: http.StatusOK},
		{name: "off", config: "console: {off: true}\n" + base},
		{name: "not loopback, no token", config: "http: {addr: \"0.0.0.0:9180\"}\n" + base, offLog: true},
		{name: "all interfaces, no token", config: "http: {addr: \":9180\"}\n" + base, offLog: true},
		{name: "IPv6 loopback", config: "http: {addr: \"[::1]:9180\"}\n" + base, console: true, get: http.StatusOK},
		{name: "localhost", config: "http: {addr: \"localhost:9180\"}\n" + base, console: true, get: http.StatusOK},
		{name: "not loopback, token", config: "http: {addr: \"0.0.0.0:9180\"}\n" + withToken + base, console: true, get: http.StatusSeeOther},
		{name: "loopback, token", config: withToken + base, console: true, get: http.StatusOK},
	}
	for _, tt := range tests {
		f, err := pipelines.Parse("c.yaml", []byte(tt.config), pipelines.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zap.InfoLevel)
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
		routes, err := withConsole(map[string]http.Handler{"POST /ingest": ingest}, f, f.Pipelines, c, zap.New(core))
		if err != nil {
			t.Fatalf("%s: withConsole = %v", tt.name, err)
		}
		h, ok := routes["/"]
		if ok != tt.console || routes["POST /ingest"] == nil {
			t.Errorf("%s: routes %v: console mounted = %v, want %v, with the ingest route kept", tt.name, slices.Collect(maps.Keys(routes)), ok, tt.console)
		}
		if ok {
			// "/" renders the overview, whose Redis reads fail here (502),
			// or redirects to the login page; /console/login is always 200.
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
			if got := w.Code; (tt.get == http.StatusSeeOther) != (got == http.StatusSeeOther) {
				t.Errorf("%s: GET / = %d, want %d", tt.name, got, tt.get)
			}
		} else {
			mux := http.NewServeMux()
			for p, rh := range routes {
				mux.Handle(p, rh)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
			if w.Code != http.StatusNotFound {
				t.Errorf("%s: GET / = %d, want 404", tt.name, w.Code)
			}
		}
		if got := logs.FilterMessage("console_off_not_loopback").Len(); (got == 1) != tt.offLog {
			t.Errorf("%s: console_off_not_loopback logged %d times, want it logged: %v", tt.name, got, tt.offLog)
		}
		_ = c.Close()
	}
}

// chromiumPath finds Debian's chromium (or another Chrome) or fails the
// test with the command that installs it: the browser test is done-when 1
// of issue 13 and must not skip quietly.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed; install it with: apt-get update && apt-get install -y chromium")
	return ""
}

// screenshotDir is where the browser test saves its screenshots:
// $EDDY_CONSOLE_SCREENSHOTS, else eddy-console-screenshots in the
// temporary directory. They are kept after the test, for a person (or
// CI's artifacts) to look at.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDDY_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "eddy-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

const consoleTestConfig = `http: {addr: "%s"}
console: {admin_token_env: EDDY_TEST_CONSOLE_TOKEN}
pipelines:
  - name: pay
    input: {stream: pay, partitions: 2, payload: data}
    key: account
    steps:
      - validate: 'amount >= 0'
      - output: {stream: "pay:out"}
      - window: {name: per_hour, size: 1h, aggregates: {n: count}, output: {stream: "pay:windows"}}
  - name: audit
    input: {stream: audit, payload: data}
    key: account
    steps:
      - output: {stream: "audit:out"}
`

// deadLetterIDs reads a dead-letter stream: every id, and the ids by
// reason.
func deadLetterIDs(t *testing.T, c *redis.Client, stream string) (all []string, byReason map[string][]string) {
	t.Helper()
	byReason = map[string][]string{}
	for _, m := range c.XRange(context.Background(), stream, "-", "+").Val() {
		all = append(all, m.ID)
		r, _ := m.Values["eddy.reason"].(string)
		byReason[r] = append(byReason[r], m.ID)
	}
	return all, byReason
}

// TestConsoleInBrowser is done-when 1 of issue 13: headless Chromium,
// driven by chromedp, against eddy console and a real eddy run on a real
// redis-server, with dead letters of three reasons made by bad events.
func TestConsoleInBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	const token = "console-admin-token-for-the-test"
	t.Setenv("EDDY_TEST_CONSOLE_TOKEN", token) // eddy run and eddy console inherit it

	consoleAddr := freeAddr(t)
	cfg := writeFile(t, "console.yaml", fmt.Sprintf(consoleTestConfig, freeAddr(t)))
	f, err := pipelines.Load(cfg, pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	in, err := processor.NewInspector(c, f.Pipeline("pay").Options())
	if err != nil {
		t.Fatal(err)
	}

	// Good events for three accounts, and bad ones of three reasons.
	add := func(key, data string) {
		t.Helper()
		stream := processor.PartitionStream("pay", processor.PartitionOf(key, 2), 2)
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"data", data}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, acct := range []string{"alice", "bob", "carol", "alice"} {
		add(acct, fmt.Sprintf(`{"account":%q,"amount":%d}`, acct, 10+i))
	}
	for _, acct := range []string{"dave", "erin", "frank"} {
		add(acct, fmt.Sprintf(`{"account":%q,"amount":-1}`, acct)) // invalid
	}
	add("x", `{"account": oops`) // not_json
	add("y", `not json at all`)  // not_json
	add("z", `{"amount":3}`)     // missing_key

	run := startEddy(t, "--redis", srv.URL(), "run", "-c", cfg, "--pipeline", "pay", "--consumer", "w1")
	waitFor(t, 30*time.Second, "eddy run to handle every event", func() bool {
		st, err := in.Stats(ctx)
		if err != nil || c.XLen(ctx, "pay:dlq").Val() != 6 || c.XLen(ctx, "pay:out").Val() != 4 {
			return false
		}
		for _, s := range st {
			if s.Pending != 0 || s.Owner == "" {
				return false
			}
		}
		return true
	})
	_ = run

	// The audit pipeline is not run: its pending entries stay for the
	// pending page (one delivered twice).
	var auditIDs []string
	for i := 0; i < 3; i++ {
		auditIDs = append(auditIDs, c.XAdd(ctx, &redis.XAddArgs{Stream: "audit", Values: []string{"data", "{}"}}).Val())
	}
	c.XGroupCreate(ctx, "audit", "audit", "0")
	c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "audit", Consumer: "a1", Streams: []string{"audit", ">"}, Count: 3})
	c.XClaim(ctx, &redis.XClaimArgs{Stream: "audit", Group: "audit", Consumer: "a2", Messages: auditIDs[:1]})

	con := startEddy(t, "--redis", srv.URL(), "console", "-c", cfg, "--http", consoleAddr)
	base := "http://" + consoleAddr
	waitFor(t, 10*time.Second, "eddy console to listen", func() bool {
		r, err := http.Get(base + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("eddy console log:\n%s\neddy run log:\n%s", con.stderr.String(), run.stderr.String())
		}
	})

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 1600))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelTimeout()

	b := &browser{t: t, ctx: bctx, base: base, shots: screenshotDir(t)}

	// The overview, against Redis.
	b.open("/")
	stats, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		row := fmt.Sprintf(`#pipeline-pay tr.partition[data-partition="%d"] `, s.Partition)
		for cell, want := range map[string]string{
			"td.owner": s.Owner, "td.token": strconv.FormatInt(s.Token, 10), "td.length": strconv.FormatInt(s.Length, 10),
			"td.lag": strconv.FormatInt(s.Lag, 10), "td.pending": "0",
		} {
			if got := b.text(row + cell); got != want {
				t.Errorf("overview: partition %d %s = %q, want %q (Redis)", s.Partition, cell, got, want)
			}
		}
		if s.Owner != "w1" {
			t.Errorf("partition %d owner in Redis = %q, want w1", s.Partition, s.Owner)
		}
	}
	if got, want := b.text("#pipeline-pay .dl-total"), strconv.FormatInt(c.XLen(ctx, "pay:dlq").Val(), 10); got != want {
		t.Errorf("overview: dead letters = %s, want %s (XLEN pay:dlq)", got, want)
	}
	open := int64(0)
	for p := 0; p < 2; p++ {
		for _, v := range c.HGetAll(ctx, processor.GaugesKey("pay", p, 2, "pay")).Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			open += n
		}
	}
	if got := b.text(`#pipeline-pay tr.open-step[data-step="per_hour"] td.open-count`); got != "3" || open != 3 {
		t.Errorf("overview: per_hour open windows = %s, Redis's gauges %d, want 3 (alice, bob, carol)", got, open)
	}
	if got := b.text("#pipeline-pay .workers"); !strings.Contains(got, "w1") {
		t.Errorf("overview: workers = %q, want w1", got)
	}
	b.shot("1-overview")

	// Pending entries, against XPENDING.
	b.open("/pipelines/audit/pending")
	var want []string
	for _, p := range c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "audit", Group: "audit", Start: "-", End: "+", Count: 100}).Val() {
		want = append(want, p.ID)
		row := fmt.Sprintf(`tr.entry[data-id="%s"] td.deliveries`, p.ID)
		if got := b.text(row); got != strconv.FormatInt(p.RetryCount, 10) {
			t.Errorf("pending: %s deliveries = %s, want %d", p.ID, got, p.RetryCount)
		}
	}
	if got := b.list(`tr.entry`, "id"); !slices.Equal(got, want) || len(want) != 3 {
		t.Errorf("pending page lists %v, want %v (XPENDING)", got, want)
	}
	b.shot("2-pending")

	// The dead letters, all then filtered by reason.
	all, byReason := deadLetterIDs(t, c, "pay:dlq")
	if len(byReason["invalid"]) != 3 || len(byReason["not_json"]) != 2 || len(byReason["missing_key"]) != 1 {
		t.Fatalf("dead letters by reason in Redis = %v, want 3 invalid, 2 not_json, 1 missing_key", byReason)
	}
	b.open("/pipelines/pay/dead-letters")
	if got := b.list("article.dead-letter", "id"); !slices.Equal(got, all) {
		t.Errorf("dead-letter page shows %v, want %v (XRANGE pay:dlq)", got, all)
	}
	b.shot("3-dead-letters")
	b.do(chromedp.SendKeys(chromedp.ID("f-reason"), "invalid"), chromedp.Click(chromedp.ID("f-submit")))
	// The old page has a summary too: wait for the filtered page's address
	// first, then for its summary.
	for deadline := time.Now().Add(10 * time.Second); ; {
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		if err == nil && strings.Contains(loc, "reason=invalid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the filter form did not lead to a page filtered by reason: at %s", loc)
		}
	}
	b.do(chromedp.WaitVisible(chromedp.ID("summary")))
	if got := b.list("article.dead-letter", "id"); !slices.Equal(got, byReason["invalid"]) {
		t.Errorf("filtered by reason invalid, the page shows %v, want %v", got, byReason["invalid"])
	}
	b.shot("4-filtered-invalid")

	// A dry run, not logged in: the count, and no way to act.
	b.do(chromedp.Click(chromedp.ID("dry-replay")), chromedp.WaitVisible(chromedp.ID("dry-count")))
	if got := b.text("#dry-count"); got != "3" {
		t.Errorf("dry run count = %s, want 3", got)
	}
	if n := b.count("#confirm-form"); n != 0 {
		t.Errorf("the dry run offers a confirmation before login")
	}
	b.shot("5-dry-run-logged-out")

	// Refused: an action without the admin token (a valid CSRF token
	// taken from the login form), and a GET on an action.
	b.open("/console/login")
	b.submitForged("/pipelines/pay/dead-letters/replay", `document.querySelector('input[name=csrf]').value`)
	if got := b.text("#error"); !strings.Contains(got, "log in with the admin token") {
		t.Errorf("a replay without the admin token shows %q, want the refusal", got)
	}
	if got := b.attr("#error", "data-status"); got != "403" {
		t.Errorf("a replay without the admin token answers %s, want 403", got)
	}
	resp, err := chromedp.Run(bctx, chromedp.NavigateResponse(base+"/pipelines/pay/dead-letters/replay"))
	if err != nil || resp.Status != http.StatusMethodNotAllowed {
		t.Errorf("GET on replay = %v %v, want 405", resp, err)
	}

	// Log in.
	b.open("/console/login")
	b.do(chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.ID("login-submit")), chromedp.WaitVisible(chromedp.ID("logout")))
	if got := b.text("#mode"); got != "admin" {
		t.Errorf("after login the mode says %q, want admin", got)
	}

	// Refused: a confirmation with a wrong CSRF token.
	b.open("/pipelines/pay/dead-letters/dry-run?action=replay&reason=invalid")
	b.do(chromedp.SetValue(chromedp.CSS(`#confirm-form input[name=csrf]`), strings.Repeat("x", 43)),
		chromedp.SendKeys(chromedp.ID("confirm"), "3"), chromedp.Click(chromedp.ID("confirm-submit")), chromedp.WaitVisible(chromedp.ID("error")))
	if got := b.attr("#error", "data-status"); got != "403" {
		t.Errorf("a replay with a wrong CSRF token answers %s, want 403", got)
	}
	if now, _ := deadLetterIDs(t, c, "pay:dlq"); !slices.Equal(now, all) {
		t.Fatalf("dead letters after refused actions = %v, want %v", now, all)
	}

	// The replay of the filtered set, confirmed by typing the count.
	b.open("/pipelines/pay/dead-letters?reason=invalid")
	b.do(chromedp.Click(chromedp.ID("dry-replay")), chromedp.WaitVisible(chromedp.ID("confirm-form")))
	b.shot("6-dry-run-confirm")
	b.do(chromedp.SendKeys(chromedp.ID("confirm"), "3"), chromedp.Click(chromedp.ID("confirm-submit")), chromedp.WaitVisible(chromedp.ID("result")))
	if got := b.text("#done-count"); got != "3" {
		t.Errorf("replay says %s replayed, want 3", got)
	}
	b.shot("7-replayed")
	now, _ := deadLetterIDs(t, c, "pay:dlq")
	for _, id := range byReason["invalid"] {
		if slices.Contains(now, id) {
			t.Errorf("replayed dead letter %s is still in pay:dlq", id)
		}
	}
	others := append(append([]string{}, byReason["not_json"]...), byReason["missing_key"]...)
	slices.Sort(others)
	for _, id := range others {
		if !slices.Contains(now, id) {
			t.Errorf("dead letter %s of another reason left pay:dlq with the replay of reason invalid", id)
		}
	}
	// The engine takes the replayed events again; still invalid, they
	// come back as new dead letters.
	waitFor(t, 20*time.Second, "the replayed events to be dead-lettered again", func() bool {
		_, br := deadLetterIDs(t, c, "pay:dlq")
		return len(br["invalid"]) == 3
	})
	_, after := deadLetterIDs(t, c, "pay:dlq")
	for _, id := range after["invalid"] {
		if slices.Contains(byReason["invalid"], id) || !processor.IDAfter(id, all[len(all)-1]) {
			t.Errorf("invalid dead letter %s after the replay is not a new one", id)
		}
	}

	// The delete of another filtered set, confirmed by typing the word.
	b.open("/pipelines/pay/dead-letters?reason=not_json")
	b.do(chromedp.Click(chromedp.ID("dry-delete")), chromedp.WaitVisible(chromedp.ID("confirm-form")))
	if got := b.text("#dry-count"); got != "2" {
		t.Errorf("dry run of the delete counts %s, want 2", got)
	}
	b.do(chromedp.SendKeys(chromedp.ID("confirm"), "delete"), chromedp.Click(chromedp.ID("confirm-submit")), chromedp.WaitVisible(chromedp.ID("result")))
	b.shot("8-deleted")
	final, br := deadLetterIDs(t, c, "pay:dlq")
	if len(br["not_json"]) != 0 || !slices.Equal(br["missing_key"], byReason["missing_key"]) || !slices.Equal(br["invalid"], after["invalid"]) || len(final) != 4 {
		t.Errorf("dead letters after deleting reason not_json = %v, want only the missing_key one and the 3 new invalid ones", br)
	}
	b.open("/pipelines/pay/dead-letters")
	if got := b.list("article.dead-letter", "id"); !slices.Equal(got, final) {
		t.Errorf("dead-letter page after the actions shows %v, want %v", got, final)
	}
}

// browser drives one headless Chromium tab.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
}

// text is the text of the element sel selects.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {textContent: "<none>"}).textContent.trim()`, sel)))
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(document.querySelector(%q) || {getAttribute: () => "<none>"}).getAttribute(%q) || ""`, sel, name)))
	if err != nil {
		b.t.Fatalf("browser: %s of %s: %v", name, sel, err)
	}
	return s
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	if err != nil {
		b.t.Fatalf("browser: count of %s: %v", sel, err)
	}
	return n
}

// list is the data-<attr> of every element sel selects.
func (b *browser) list(sel, attr string) []string {
	b.t.Helper()
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).map(e => e.dataset[%q])`, sel, attr)))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", sel, err)
	}
	return out
}

// submitForged posts a form made in the page (as a script on the page
// could) to path with the CSRF token csrfJS evaluates to, and waits for
// the answer.
func (b *browser) submitForged(path, csrfJS string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const f = document.createElement('form'); f.method = 'post'; f.action = %q;
		for (const [k, v] of [['csrf', %s], ['ids', '1-1'], ['sig', '00'], ['confirm', '1']]) {
			const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
		document.body.appendChild(f); f.submit(); return true; })()`, path, csrfJS)
	b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		return err
	}), chromedp.WaitVisible(chromedp.ID("error")))
}

// shot saves a screenshot of the whole page and logs where.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100: PNG (less: JPEG)
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}
