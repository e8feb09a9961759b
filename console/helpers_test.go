package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/processor"
)

// testCSRF is the CSRF cookie the test browser sends (43 characters, as
// the console makes them).
const testCSRF = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"

// fixture is a console on miniredis for one pipeline "pay" (two
// partitions, dead letters in pay:dlq) and a test browser for it.
type fixture struct {
	t     testing.TB
	mr    *miniredis.Miniredis
	rdb   *redis.Client
	srv   *Server
	admin *http.Cookie // set once logged in
	ctx   context.Context
}

func newFixture(t testing.TB, token string, tune ...func(*Options)) *fixture {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	in, err := processor.NewInspector(rdb, processor.Options{Pipeline: "pay", Stream: "pay", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	dlq := in.Options().DeadLetterStream
	o := Options{AdminToken: token, Pipelines: []Pipeline{{
		Name: "pay", Inspector: in,
		Analytics: []AnalyticsStep{{Name: "per_minute", Gauge: "open:per_minute"}},
		Delete: func(ctx context.Context, ids []string) (int64, error) {
			return rdb.XDel(ctx, dlq, ids...).Result()
		},
	}}}
	for _, fn := range tune {
		fn(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, mr: mr, rdb: rdb, srv: srv, ctx: context.Background()}
}

// addDL appends a dead letter of pipeline "pay" to pay:dlq, as the engine
// writes them (processor's deadLetterFields), and returns its id.
func (f *fixture) addDL(reason, key string, failedAt time.Time, fields ...string) string {
	f.t.Helper()
	return f.addDLOf("pay", reason, key, failedAt, fields...)
}

func (f *fixture) addDLOf(pipeline, reason, key string, failedAt time.Time, fields ...string) string {
	f.t.Helper()
	if len(fields) == 0 {
		fields = []string{"data", `{"account":"` + key + `"}`}
	}
	vals := append(append([]string{}, fields...),
		"eddy.reason", reason, "eddy.error", reason+" failed", "eddy.attempts", "1",
		"eddy.stream", "{pay:0}", "eddy.id", "1-1", "eddy.key", key, "eddy.pipeline", pipeline,
		"eddy.group", "pay", "eddy.consumer", "w1", "eddy.failed_at", strconv.FormatInt(failedAt.UnixMilli(), 10))
	id, err := f.rdb.XAdd(f.ctx, &redis.XAddArgs{Stream: "pay:dlq", Values: vals}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// dlqIDs are the ids in pay:dlq.
func (f *fixture) dlqIDs() []string {
	f.t.Helper()
	var ids []string
	for _, m := range f.rdb.XRange(f.ctx, "pay:dlq", "-", "+").Val() {
		ids = append(ids, m.ID)
	}
	return ids
}

// get requests path as the test browser.
func (f *fixture) get(path string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	f.cookies(r)
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	return w
}

func (f *fixture) cookies(r *http.Request) {
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: testCSRF})
	if f.admin != nil {
		r.AddCookie(f.admin)
	}
}

// post sends a form from the console's own origin with the session's
// CSRF token, unless edit changes the request.
func (f *fixture) post(path string, form url.Values, edit ...func(*http.Request)) *httptest.ResponseRecorder {
	f.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if !form.Has(csrfField) {
		form.Set(csrfField, testCSRF)
	}
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://"+r.Host)
	f.cookies(r)
	for _, e := range edit {
		e(r)
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	return w
}

// login logs the test browser in with token.
func (f *fixture) login(token string) {
	f.t.Helper()
	w := f.post("/console/login", url.Values{"token": {token}})
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("login = %d %s, want 303", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == adminCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				f.t.Errorf("admin cookie %+v: want HttpOnly and SameSite=Strict", c)
			}
			f.admin = c
		}
	}
	if f.admin == nil {
		f.t.Fatal("login set no admin cookie")
	}
}

var (
	dataIDRE    = regexp.MustCompile(`class="dead-letter" id="dl-[^"]*" data-id="([^"]+)"`)
	hiddenRE    = regexp.MustCompile(`name="(ids|sig)" value="([^"]*)"`)
	dryCountRE  = regexp.MustCompile(`id="dry-count">(\d+)<`)
	pendingIDRE = regexp.MustCompile(`class="entry" data-id="([^"]+)"`)
)

// shownDeadLetters are the ids of the dead letters a page shows.
func shownDeadLetters(body string) []string {
	var ids []string
	for _, m := range dataIDRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// dryRun runs a dry run and returns the count it shows and its form's ids
// and signature.
func (f *fixture) dryRun(query string) (count int, ids, sig string) {
	f.t.Helper()
	w := f.get("/pipelines/pay/dead-letters/dry-run?" + query)
	if w.Code != http.StatusOK {
		f.t.Fatalf("dry run %s = %d %s", query, w.Code, w.Body)
	}
	body := w.Body.String()
	m := dryCountRE.FindStringSubmatch(body)
	if m == nil {
		f.t.Fatalf("dry run %s shows no count:\n%s", query, body)
	}
	count, _ = strconv.Atoi(m[1])
	for _, h := range hiddenRE.FindAllStringSubmatch(body, -1) {
		if h[1] == "ids" {
			ids = h[2]
		} else {
			sig = h[2]
		}
	}
	return count, ids, sig
}
