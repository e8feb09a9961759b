package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testToken = "s3cret-admin-token"

func TestActionRefusals(t *testing.T) {
	tests := []struct {
		name   string
		token  string // the console's admin token
		login  bool
		method string
		path   string
		form   url.Values
		edit   func(*http.Request)
		want   int
	}{
		{name: "read-only console", token: "", path: "/pipelines/pay/dead-letters/replay", want: http.StatusForbidden},
		{name: "read-only console, delete", token: "", path: "/pipelines/pay/dead-letters/delete", want: http.StatusForbidden},
		{name: "read-only console, login", token: "", path: "/console/login", form: url.Values{"token": {"x"}}, want: http.StatusForbidden},
		{name: "not logged in", token: testToken, path: "/pipelines/pay/dead-letters/replay", want: http.StatusForbidden},
		{name: "wrong admin token", token: testToken, path: "/console/login", form: url.Values{"token": {"wrong"}}, want: http.StatusForbidden},
		{name: "no CSRF field", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			form: url.Values{csrfField: {""}}, want: http.StatusForbidden},
		{name: "wrong CSRF field", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			form: url.Values{csrfField: {strings.Repeat("x", 43)}}, want: http.StatusForbidden},
		{name: "no CSRF cookie", token: testToken, login: true, path: "/pipelines/pay/dead-letters/delete",
			edit: func(r *http.Request) { dropCookie(r, csrfCookie) }, want: http.StatusForbidden},
		{name: "login without CSRF", token: testToken, path: "/console/login",
			form: url.Values{"token": {testToken}, csrfField: {""}}, want: http.StatusForbidden},
		{name: "other origin", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			edit: func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }, want: http.StatusForbidden},
		{name: "no origin, other referer", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			edit: func(r *http.Request) { r.Header.Del("Origin"); r.Header.Set("Referer", "http://evil.example/x") }, want: http.StatusForbidden},
		{name: "no origin, no referer", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			edit: func(r *http.Request) { r.Header.Del("Origin") }, want: http.StatusForbidden},
		{name: "cross-site fetch", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			edit: func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, want: http.StatusForbidden},
		{name: "GET on replay", token: testToken, login: true, method: http.MethodGet, path: "/pipelines/pay/dead-letters/replay", want: http.StatusMethodNotAllowed},
		{name: "GET on delete", token: testToken, login: true, method: http.MethodGet, path: "/pipelines/pay/dead-letters/delete", want: http.StatusMethodNotAllowed},
		{name: "GET on logout", token: testToken, method: http.MethodGet, path: "/console/logout", want: http.StatusMethodNotAllowed},
		{name: "no ids", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay", want: http.StatusBadRequest},
		{name: "ids not signed by a dry run", token: testToken, login: true, path: "/pipelines/pay/dead-letters/replay",
			form: url.Values{"ids": {"1-1"}, "sig": {"00"}, "confirm": {"1"}}, want: http.StatusBadRequest},
		{name: "not an id", token: testToken, login: true, path: "/pipelines/pay/dead-letters/delete",
			form: url.Values{"ids": {"1-1,*"}, "confirm": {"2"}}, want: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.token)
			id := f.addDL("invalid", "a", time.Now())
			if tt.login {
				f.login(testToken)
			}
			var w interface{ Result() *http.Response }
			if tt.method == http.MethodGet {
				w = f.get(tt.path)
			} else {
				w = f.post(tt.path, tt.form, func(r *http.Request) {
					if tt.edit != nil {
						tt.edit(r)
					}
				})
			}
			if got := w.Result().StatusCode; got != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, got, tt.want)
			}
			if got := f.dlqIDs(); !slices.Equal(got, []string{id}) {
				t.Errorf("dead letters after a refused request = %v, want %v untouched", got, []string{id})
			}
		})
	}
}

func dropCookie(r *http.Request, name string) {
	cs := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cs {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
}

// A replay of a filtered set replays the dead letters the dry run listed,
// and none other: not the other reasons, not one of the same reason that
// came after the dry run.
func TestReplayActsOnExactlyTheFilteredSet(t *testing.T) {
	f := newFixture(t, testToken)
	f.login(testToken)
	now := time.Now()
	inv1 := f.addDL("invalid", "a", now)
	nj := f.addDL("not_json", "b", now, "data", "{oops")
	inv2 := f.addDL("invalid", "c", now)
	count, ids, sig := f.dryRun("action=replay&reason=invalid")
	if count != 2 || ids != inv1+","+inv2 {
		t.Fatalf("dry run of reason invalid = %d %q, want 2 %s,%s", count, ids, inv1, inv2)
	}
	if got := f.dlqIDs(); len(got) != 3 {
		t.Fatalf("a dry run changed the dead letters: %v", got)
	}
	late := f.addDL("invalid", "d", now) // after the dry run: not in its set

	// A confirmation that is not the count or the word does nothing.
	for _, bad := range []string{"", "3", "yes", "delete"} {
		w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {bad}})
		if w.Code != http.StatusBadRequest || len(f.dlqIDs()) != 4 {
			t.Fatalf("replay confirmed with %q = %d, dead letters %v; want 400 and all 4 left", bad, w.Code, f.dlqIDs())
		}
	}
	// The set cannot be changed between the dry run and the action.
	w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids + "," + late}, "sig": {sig}, "confirm": {"3"}})
	if w.Code != http.StatusBadRequest || len(f.dlqIDs()) != 4 {
		t.Fatalf("replay of the set with an id added = %d, want 400 and nothing done", w.Code)
	}

	w = f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"2"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<strong id="done-count">2</strong>`) {
		t.Fatalf("replay = %d %s, want 200 replayed 2", w.Code, w.Body)
	}
	if got, want := f.dlqIDs(), []string{nj, late}; !slices.Equal(got, want) {
		t.Errorf("dead letters after the replay = %v, want %v (the other reason and the late one)", got, want)
	}
	replayed := f.rdb.XRange(f.ctx, "{pay:0}", "-", "+").Val()
	if len(replayed) != 2 || replayed[0].Values["data"] != `{"account":"a"}` || replayed[1].Values["data"] != `{"account":"c"}` {
		t.Errorf("entries replayed to {pay:0} = %v, want the original fields of a and c", replayed)
	}

	// The same confirmation again: it is used, nothing is replayed twice.
	w = f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"replay"}})
	if w.Code != http.StatusConflict || f.rdb.XLen(f.ctx, "{pay:0}").Val() != 2 {
		t.Errorf("a second replay of the same form = %d %s, want 409, nothing replayed", w.Code, w.Body)
	}
}

func TestDeleteActsOnExactlyTheFilteredSet(t *testing.T) {
	f := newFixture(t, testToken)
	f.login(testToken)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := f.addDL("invalid", "alice", t0)
	b := f.addDL("invalid", "bob", t0)
	c := f.addDL("not_json", "alice", t0.Add(time.Hour))
	count, ids, sig := f.dryRun("action=delete&key=alice")
	if count != 2 || ids != a+","+c {
		t.Fatalf("dry run of key alice = %d %q, want 2 %s,%s", count, ids, a, c)
	}
	f.rdb.XDel(f.ctx, "pay:dlq", a) // gone in the meantime
	w := f.post("/pipelines/pay/dead-letters/delete", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"delete"}})
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `<strong id="done-count">1</strong>`) || !strings.Contains(body, a) {
		t.Fatalf("delete = %d %s, want 200, 1 deleted and %s missing", w.Code, body, a)
	}
	if got := f.dlqIDs(); !slices.Equal(got, []string{b}) {
		t.Errorf("dead letters after the delete = %v, want [%s]", got, b)
	}
	// A replay signature is not a delete's.
	_, ids, sig = f.dryRun("action=replay")
	if w := f.post("/pipelines/pay/dead-letters/delete", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"1"}}); w.Code != http.StatusBadRequest {
		t.Errorf("delete with a replay's signature = %d, want 400", w.Code)
	}
}

func TestDryRunBoundsAndReadOnly(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.MaxAction = 2 })
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, f.addDL("invalid", "k"+strconv.Itoa(i), time.Now()))
	}
	w := f.get("/pipelines/pay/dead-letters/dry-run?action=replay")
	body := w.Body.String()
	if !strings.Contains(body, `id="dry-count">2<`) || !strings.Contains(body, `id="more"`) {
		t.Errorf("dry run of 3 with MaxAction 2 does not say 2 and more:\n%s", body)
	}
	if !strings.Contains(body, `id="readonly"`) || strings.Contains(body, `id="confirm-form"`) {
		t.Errorf("a read-only console's dry run offers a confirmation:\n%s", body)
	}
	if got := f.dlqIDs(); !slices.Equal(got, ids) {
		t.Errorf("dead letters after a dry run = %v, want %v", got, ids)
	}
	if w := f.get("/pipelines/pay/dead-letters/dry-run?action=drop"); w.Code != http.StatusBadRequest {
		t.Errorf("dry run of action drop = %d, want 400", w.Code)
	}
}

// A replay that would reach other pipelines without dedupe must say so
// and be confirmed for them too.
func TestReplayToSharedStreamNeedsForce(t *testing.T) {
	f := newFixture(t, testToken, func(o *Options) { o.Pipelines[0].SharedWith = []string{"audit"} })
	f.login(testToken)
	f.addDL("invalid", "a", time.Now())
	_, ids, sig := f.dryRun("action=replay")
	if body := f.get("/pipelines/pay/dead-letters/dry-run?action=replay").Body.String(); !strings.Contains(body, `id="force"`) || !strings.Contains(body, "audit") {
		t.Errorf("dry run does not warn about pipeline audit:\n%s", body)
	}
	if w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"1"}}); w.Code != http.StatusBadRequest || len(f.dlqIDs()) != 1 {
		t.Errorf("replay without force = %d, want 400 and nothing done", w.Code)
	}
	if w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"1"}, "force": {"on"}}); w.Code != http.StatusOK || len(f.dlqIDs()) != 0 {
		t.Errorf("replay with force = %d, want 200 and replayed", w.Code)
	}
}

func TestLoginAndLogout(t *testing.T) {
	f := newFixture(t, testToken)
	if body := f.get("/").Body.String(); !strings.Contains(body, `id="login"`) {
		t.Errorf("overview before login offers no login link:\n%s", body)
	}
	f.login(testToken)
	if f.admin.Value == testToken || strings.Contains(f.admin.Value, testToken) {
		t.Errorf("the admin cookie holds the token itself")
	}
	if body := f.get("/").Body.String(); !strings.Contains(body, `id="logout"`) {
		t.Errorf("overview after login offers no logout:\n%s", body)
	}
	w := f.post("/console/logout", nil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("logout = %d, want 303", w.Code)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == adminCookie && c.MaxAge >= 0 {
			t.Errorf("logout left the admin cookie: %+v", c)
		}
	}
}

// A page seen by a browser without a CSRF cookie sets one, and its forms
// carry the same token.
func TestPageSetsCSRFCookie(t *testing.T) {
	f := newFixture(t, testToken)
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/console/login", nil))
	var tok *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == csrfCookie {
			tok = c
		}
	}
	if tok == nil || len(tok.Value) != 43 || !tok.HttpOnly || tok.SameSite != http.SameSiteStrictMode {
		t.Fatalf("CSRF cookie = %+v, want 43 characters, HttpOnly, SameSite=Strict", tok)
	}
	if !strings.Contains(w.Body.String(), `name="csrf" value="`+tok.Value+`"`) {
		t.Errorf("login form does not carry the cookie's token:\n%s", w.Body)
	}
}
