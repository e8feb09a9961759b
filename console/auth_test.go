package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Login attempts are limited per remote address: loginBurst, then 429
// (even with the right token) until the budget refills; another address
// is not affected.
func TestLoginRateLimited(t *testing.T) {
	now := time.Now()
	clock := now
	f := newFixture(t, testToken, func(o *Options) { o.Now = func() time.Time { return clock } })
	from := func(addr string) func(*http.Request) { return func(r *http.Request) { r.RemoteAddr = addr } }
	for i := range loginBurst {
		if w := f.post("/console/login", url.Values{"token": {"wrong-wrong-wrong"}}, from("10.0.0.1:1000")); w.Code != http.StatusForbidden {
			t.Fatalf("wrong login %d = %d, want 403", i+1, w.Code)
		}
	}
	tests := []struct {
		name  string
		after time.Duration
		addr  string
		want  int
	}{
		{"over the budget, right token", 0, "10.0.0.1:2000", http.StatusTooManyRequests},
		{"another address", 0, "10.0.0.2:1000", http.StatusSeeOther},
		{"one refilled", loginEvery, "10.0.0.1:3000", http.StatusSeeOther},
		{"spent again", loginEvery, "10.0.0.1:3000", http.StatusTooManyRequests},
	}
	for _, tt := range tests {
		clock = now.Add(tt.after)
		w := f.post("/console/login", url.Values{"token": {testToken}}, from(tt.addr))
		if w.Code != tt.want {
			t.Errorf("%s: login = %d, want %d", tt.name, w.Code, tt.want)
		}
		if tt.want == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", tt.name)
		}
	}
}

// An admin session lasts SessionTTL: after that, actions are refused
// until the operator logs in again; a cookie whose time was changed does
// not pass.
func TestAdminSessionExpires(t *testing.T) {
	now := time.Now()
	clock := now
	f := newFixture(t, testToken, func(o *Options) { o.Now = func() time.Time { return clock } })
	f.login(testToken)
	if f.admin.MaxAge != int(SessionTTL/time.Second) {
		t.Errorf("admin cookie MaxAge = %d, want %d", f.admin.MaxAge, int(SessionTTL/time.Second))
	}
	at, mac, _ := strings.Cut(f.admin.Value, ".")
	tests := []struct {
		name   string
		after  time.Duration
		cookie string
		admin  bool
	}{
		{"fresh", 0, f.admin.Value, true},
		{"just within", SessionTTL - time.Second, f.admin.Value, true},
		{"expired", SessionTTL + time.Second, f.admin.Value, false},
		{"time moved forward", SessionTTL + time.Second, "9" + at + "." + mac, false},
		{"no time", 0, mac, false},
	}
	for _, tt := range tests {
		clock = now.Add(tt.after)
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: adminCookie, Value: tt.cookie})
		if got := f.srv.isAdmin(r); got != tt.admin {
			t.Errorf("%s: isAdmin = %v, want %v", tt.name, got, tt.admin)
		}
	}
	clock = now.Add(SessionTTL + time.Second)
	f.addDL("invalid", "a", now)
	if w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {"1-1"}, "sig": {"x"}, "confirm": {"1"}}); w.Code != http.StatusForbidden {
		t.Errorf("action with an expired session = %d, want 403", w.Code)
	}
}

func TestNewRefusesShortAdminToken(t *testing.T) {
	tests := []struct {
		token string
		ok    bool
	}{
		{"", true},
		{strings.Repeat("x", MinAdminTokenLen-1), false},
		{strings.Repeat("x", MinAdminTokenLen), true},
	}
	for _, tt := range tests {
		o := Options{AdminToken: tt.token, Pipelines: newFixture(t, "").srv.o.Pipelines}
		_, err := New(o)
		if (err == nil) != tt.ok {
			t.Errorf("New with a token of %d bytes = %v, want ok %v", len(tt.token), err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), tt.token) {
			t.Errorf("New's error %q quotes the token", err)
		}
	}
}

// With LoginToView every page but the login page needs the admin login:
// GET redirects to the login page, POST is refused; once logged in, pages
// show.
func TestLoginToView(t *testing.T) {
	f := newFixture(t, testToken, func(o *Options) { o.LoginToView = true })
	f.addDL("invalid", "a", time.Now(), "data", "personal-data")
	tests := []struct {
		path string
		want int
	}{
		{"/", http.StatusSeeOther},
		{"/pipelines/pay/dead-letters", http.StatusSeeOther},
		{"/pipelines/pay/pending", http.StatusSeeOther},
		{"/console/login", http.StatusOK},
		{"/console/static/console.css", http.StatusOK},
	}
	for _, tt := range tests {
		w := f.get(tt.path)
		if w.Code != tt.want || strings.Contains(w.Body.String(), "personal-data") {
			t.Errorf("GET %s before login = %d, want %d and no payload", tt.path, w.Code, tt.want)
		}
	}
	f.login(testToken)
	if w := f.get("/pipelines/pay/dead-letters"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "personal-data") {
		t.Errorf("dead letters after login = %d, want 200 with the payload", w.Code)
	}
	if _, err := New(Options{LoginToView: true, Pipelines: f.srv.o.Pipelines}); err == nil {
		t.Error("New with LoginToView and no admin token = nil error, want one")
	}
}

// The numbers docs/configuration.md's console rows give.
func TestConsoleDocumentedLimits(t *testing.T) {
	tests := []struct {
		name      string
		got, want any
	}{
		{"SessionTTL", SessionTTL, 12 * time.Hour},
		{"FormTTL", FormTTL, time.Hour},
		{"MinAdminTokenLen", MinAdminTokenLen, 16},
		{"loginBurst", loginBurst, 5},
		{"loginEvery", loginEvery, 12 * time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v (as docs/configuration.md says)", tt.name, tt.got, tt.want)
		}
	}
}
