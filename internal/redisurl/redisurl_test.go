package redisurl

import (
	"errors"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://eddy:secret@127.0.0.1:34401/abc", "redis://eddy:xxxxx@127.0.0.1:34401/abc"},
		{"rediss://:secret@h:1", "rediss://:xxxxx@h:1"},
		{"redis://eddy@h:1", "redis://eddy@h:1"},
		{"redis://eddy:se/cr@et@h:1/0", "redis://eddy:xxxxx@h:1/0"},
		{"redis://eddy:s%40c@h:1?addr=h2:2&addr=h3:3", "redis://eddy:xxxxx@h:1?addr=h2:2&addr=h3:3"},
		{"redis://h:1?password=secret&db=2", "redis://h:1?password=xxxxx&db=2"},
		{"redis://h:1/0?Auth_Token=secret#frag", "redis://h:1/0?Auth_Token=xxxxx#frag"},
		{"redis://h:1?addr=u:secret@h2:2", "redis://h:xxxxx@h2:2"}, // an @ in the query: masks more, not less
		{"eddy:secret@h:1", "eddy:xxxxx@h:1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactText(t *testing.T) {
	t.Parallel()
	in := `dial "redis://eddy:secret@h:1/0" then rediss://u:secret2@h:2, plain text: a://b`
	want := `dial "redis://eddy:xxxxx@h:1/0" then rediss://u:xxxxx@h:2, plain text: a://b`
	if got := RedactText(in); got != want {
		t.Errorf("RedactText(%q) = %q, want %q", in, got, want)
	}
}

// No error of ParseURL or ParseClusterURL holds the password, or any part
// of it, whatever is wrong with the URL.
func TestParseErrorsHoldNoSecret(t *testing.T) {
	t.Parallel()
	const pw = "Pw7Zq9Kx"
	urls := []string{
		"redis://eddy:" + pw + "@127.0.0.1:34401/abc",                    // bad db number
		"redis://eddy:" + pw[:3] + "/" + pw[3:] + "@127.0.0.1:34401/0",   // unescaped / in the password
		"redis://eddy:" + pw[:3] + "?" + pw[3:] + "@127.0.0.1:34401/0",   // unescaped ? in the password
		"redis://eddy:" + pw + "%zz@127.0.0.1:34401/0",                   // bad escape
		"http://eddy:" + pw + "@127.0.0.1:34401/0",                       // bad scheme
		"redis://eddy:" + pw + "@127.0.0.1:99999999/0",                   // bad port
		"redis://eddy:" + pw + "@127.0.0.1:1/0?dial_timeout=" + pw,       // bad option value (not a secret option: quoted; but it is the password)
		"redis://127.0.0.1:1/0?password=" + pw,                           // a secret option
		"redis://127.0.0.1:1/0?token=" + pw + "%zz",                      // a secret option, badly escaped
		"eddy:" + pw + "@127.0.0.1:1",                                    // no scheme
		"redis://eddy:" + pw + "@127.0.0.1:1?addr=x",                     // cluster: bad addr
		"redis://eddy:" + pw + "@127.0.0.1:1?addr=u:" + pw + "@h:2",      // cluster: credentials in an addr
		"rediss://eddy:" + pw + "@127.0.0.1:1?addr=h:2&skip_verify=true", // cluster: an option it does not know
	}
	for _, u := range urls {
		_, err1 := ParseURL(u)
		_, err2 := ParseClusterURL(u)
		for _, err := range []error{err1, err2} {
			if err == nil {
				continue
			}
			for _, frag := range []string{pw, pw[:3], pw[3:]} {
				if strings.Contains(err.Error(), frag) && !strings.Contains(u, "dial_timeout") {
					t.Errorf("parse %q: error %q holds %q", u, err, frag)
				}
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("parse %q: error %T, want *Error", u, err)
			}
		}
	}
	// The one case above that quotes a value: go-redis quotes a bad
	// duration, and the password in dial_timeout is the user's own doing;
	// the credentials part is masked all the same.
	_, err := ParseURL("redis://eddy:" + pw + "@127.0.0.1:1/0?dial_timeout=zz")
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "eddy:xxxxx@") {
		t.Errorf("ParseURL with a bad dial_timeout = %v, want an error quoting the redacted URL", err)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                   string
		addr, user, password string
		db                   int
		tls                  bool
	}{
		{"redis://127.0.0.1:6379/2", "127.0.0.1:6379", "", "", 2, false},
		{"rediss://eddy:s%2Fp%40ss@redis.example:6380", "redis.example:6380", "eddy", "s/p@ss", 0, true},
		{"redis://eddy:p@ss@h:1/0", "h:1", "eddy", "p@ss", 0, false}, // the credentials run to the last @
		{"redis://:pw@h:1", "h:1", "", "pw", 0, false},
	}
	for _, tt := range tests {
		opt, err := ParseURL(tt.in)
		if err != nil {
			t.Errorf("ParseURL(%q) = %v", tt.in, err)
			continue
		}
		if opt.Addr != tt.addr || opt.Username != tt.user || opt.Password != tt.password || opt.DB != tt.db || (opt.TLSConfig != nil) != tt.tls {
			t.Errorf("ParseURL(%q) = addr %s user %q password %q db %d tls %v, want %s %q %q %d %v", tt.in,
				opt.Addr, opt.Username, opt.Password, opt.DB, opt.TLSConfig != nil, tt.addr, tt.user, tt.password, tt.db, tt.tls)
		}
	}
	c, err := ParseClusterURL("rediss://eddy:p%3Fw@h1:1?addr=h2:2&addr=h3:3")
	if err != nil || strings.Join(c.Addrs, ",") != "h1:1,h2:2,h3:3" || c.Username != "eddy" || c.Password != "p?w" || c.TLSConfig == nil {
		t.Errorf("ParseClusterURL = %+v, %v, want 3 addrs, eddy, p?w and TLS", c, err)
	}
}

func TestIsCluster(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"redis://h:1?addr=h2:2", true},
		{"redis://u:p@h:1?addr=h2:2", true},
		{"redis://h:1/0", false},
		{"redis://h:1/0?client_name=xaddr=1", false},
		{"redis://u:pa?ddr=@h:1", false},
	}
	for _, tt := range tests {
		if got := IsCluster(tt.in); got != tt.want {
			t.Errorf("IsCluster(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestClusterForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		others []string
		want   string
	}{
		{"redis://127.0.0.1:7000/0", []string{"127.0.0.1:7001", "127.0.0.1:7002"}, "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002"},
		{"rediss://eddy:secret@h:1/3?dial_timeout=3", []string{"h:2"}, "rediss://eddy:xxxxx@h:1?addr=h:2"},
		{"redis://h:1", nil, "redis://h:1"},
	}
	for _, tt := range tests {
		if got := ClusterForm(tt.in, tt.others); got != tt.want {
			t.Errorf("ClusterForm(%q, %v) = %q, want %q", tt.in, tt.others, got, tt.want)
		}
	}
}
