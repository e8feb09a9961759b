package pipelines

import (
	"strings"
	"testing"
)

// The redis section's credentials and TLS: what is accepted, and every
// problem named by its path, none quoting a password.
func TestRedisSection(t *testing.T) {
	t.Parallel()
	const head = "pipelines: [{name: p, input: {stream: s}, key: k}]\n"
	ok := []string{
		"redis: {url: 'rediss://h:1/0', tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: h, insecure_skip_verify: false}}\n",
		"redis: {url: 'redis://h:1/0', tls: {}}\n",
		"redis: {url: 'redis://h:1/0', username: eddy, password_env: REDIS_PW}\n",
		"redis: {addrs: ['h:1', 'h:2'], username: eddy, password_file: /run/secrets/redis, tls: {ca_file: ca.pem}}\n",
		"redis: {addrs: ['h:1'], password: discouraged}\n",
		"redis: {url: 'redis://eddy:p%2Fw@h:1/0'}\n",
	}
	for _, src := range ok {
		if got := problems(t, src+head, nil); got != nil {
			t.Errorf("Parse(%q) = %v, want no problem", src, got)
		}
	}
	bad := []struct{ src, want string }{
		{"redis: {url: 'redis://h:1/0', password: a, password_env: B}\n", "redis.password: set one of password, password_env and password_file"},
		{"redis: {url: 'redis://:Secret99@h:1/0', password_file: f}\n", "redis.url: has a password and so does"},
		{"redis: {url: 'redis://eddy@h:1/0', username: other}\n", "redis.username: the url has a user too"},
		{"redis: {url: 'redis://h:1/0', password_env: 'NOT A NAME'}\n", "redis.password_env: want the name of an environment variable"},
		{"redis: {url: 'redis://h:1/0', tls: {cert_file: c.pem}}\n", "redis.tls.key_file: cert_file and key_file go together"},
		{"redis: {addrs: ['eddy:Secret99@h:1']}\n", `redis.addrs[0]: want host:port, got "eddy:xxxxx@h:1"`},
		{"redis: {url: 'redis://eddy:Sec/ret99@h:1/0'}\n", "redis.url: want redis://"},
		{"redis: {url: 'redis://h:1/0', tls: {ca: x}}\n", "ca"},
	}
	for _, tt := range bad {
		got := strings.Join(problems(t, tt.src+head, nil), "\n")
		if !strings.Contains(got, tt.want) {
			t.Errorf("Parse(%q) = %q, want a problem containing %q", tt.src, got, tt.want)
		}
		for _, secret := range []string{"Secret99", "Sec", "ret99"} {
			if strings.Contains(tt.src, secret) && strings.Contains(got, secret) {
				t.Errorf("Parse(%q) = %q: quotes the password", tt.src, got)
			}
		}
	}
}
