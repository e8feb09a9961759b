package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// Distinctive secrets: none of them may appear in any output.
const (
	redactPW    = "Zq7RedactPw9"  // a password
	redactTok   = "Tk5QueryTok8"  // a secret query option
	redactRight = "Right7Horse42" // the servers' real password (never given to eddy, but never printed either)
)

// redactForbidden are the strings no output may hold: the secrets and the
// pieces of the password that a URL with an unescaped "/" splits it into.
var redactForbidden = []string{redactPW, redactTok, redactRight, redactPW[:5], redactPW[5:]}

// checkNoSecret fails the test if any output holds a secret.
func checkNoSecret(t *testing.T, what string, outputs ...string) {
	t.Helper()
	for _, out := range outputs {
		for _, s := range redactForbidden {
			if strings.Contains(out, s) {
				t.Errorf("%s: output holds the secret %q:\n%s", what, s, out)
			}
		}
	}
}

// Done-when 2: URLs with passwords go through every error path of every
// command that takes --redis or a config (mistyped URLs, unreachable
// hosts, refused ports, wrong passwords against a real redis-server with
// --requirepass, a password where none is set, a secret query option,
// Cluster ?addr= URLs gone wrong), from the flag, the environment and the
// config file, through the built binary; the password never appears in
// stdout, stderr or the log (which is stderr).
func TestRedactEveryCommand(t *testing.T) {
	t.Parallel()
	withPass := redistest.Start(t, "--requirepass", redactRight)
	noPass := redistest.Start(t)
	dead, dead2 := freeAddr(t), freeAddr(t)
	slashed := redactPW[:5] + "/" + redactPW[5:]
	urls := []struct {
		name  string
		url   string
		works bool // connects: run and bench-baseline would not end, so they are left out
	}{
		{"bad database number", "redis://eddy:" + redactPW + "@127.0.0.1:34401/abc", false},
		{"unescaped slash in the password", "redis://eddy:" + slashed + "@127.0.0.1:34401/0", false},
		{"bad escape in the password", "redis://eddy:" + redactPW + "%zz@127.0.0.1:34401/0", false},
		{"bad scheme", "http://eddy:" + redactPW + "@127.0.0.1:34401/0", false},
		{"no scheme", "eddy:" + redactPW + "@127.0.0.1:34401", false},
		{"bad port", "redis://eddy:" + redactPW + "@127.0.0.1:99999/0", false},
		{"unreachable host", "redis://eddy:" + redactPW + "@nohost.invalid:6379/0", false},
		{"refused", "redis://eddy:" + redactPW + "@" + dead + "/0", false},
		{"wrong password", "redis://default:" + redactPW + "@" + withPass.Addr() + "/0", false},
		{"wrong user and password", "redis://eddy:" + redactPW + "@" + withPass.Addr() + "/0", false},
		{"password where none is set", "redis://:" + redactPW + "@" + noPass.Addr() + "/0", true}, // HELLO AUTH default: accepted
		{"user where none is set", "redis://eddy:" + redactPW + "@" + noPass.Addr() + "/0", false},
		{"secret query option", "redis://" + noPass.Addr() + "/0?password=" + redactTok, false},
		{"tls to a plain port", "rediss://eddy:" + redactPW + "@" + noPass.Addr() + "/0?dial_timeout=1s", false}, // the handshake waits out the timeout
		{"cluster bad addr", "redis://eddy:" + redactPW + "@127.0.0.1:34401?addr=x", false},
		{"cluster unreachable", "redis://eddy:" + redactPW + "@" + dead + "?addr=" + dead2, false},
		{"cluster credentials in an addr", "redis://" + dead + "?addr=eddy:" + redactPW + "@" + dead2, false},
		{"cluster not a cluster", "redis://default:" + redactPW + "@" + withPass.Addr() + "?addr=" + dead2, false},
	}
	cfg := writeFile(t, "p.yaml", tlsPipeline)
	commands := [][]string{
		{"status", "-c", cfg},
		{"status", "-c", cfg, "--json"},
		{"run", "-c", cfg, "--redis-wait", "1s"},
		{"dlq", "list", "-c", cfg},
		{"dlq", "replay", "-c", cfg, "--all"},
		{"produce", "-c", cfg},
		{"simulate", "--count", "2"},
		{"validate", "-c", cfg},
		{"bench-baseline", "--stream", "s", "--group", "g", "--output", "o", "--seen", "x"},
	}
	for _, u := range urls {
		t.Run(u.name, func(t *testing.T) {
			t.Parallel()
			for _, command := range commands {
				if u.works && (command[0] == "run" || command[0] == "bench-baseline") {
					continue
				}
				args := append([]string{"--redis", u.url}, command...)
				code, out, errOut := binRun(t, nil, `{"k":"a"}`+"\n", 60*time.Second, args...)
				checkNoSecret(t, "eddy --redis URL "+strings.Join(command, " "), out, errOut)
				if uses := command[0] != "simulate" && command[0] != "validate"; !u.works && uses && code == 0 {
					t.Errorf("eddy --redis URL %s = 0, want a failure (the test must go through an error path); stderr:\n%s", strings.Join(command, " "), errOut)
				}
			}
			for _, command := range [][]string{{"status", "-c", cfg}, {"run", "-c", cfg, "--redis-wait", "1s"}} {
				if u.works && command[0] == "run" {
					continue
				}
				code, out, errOut := binRun(t, []string{"EDDY_REDIS_URL=" + u.url}, "", 60*time.Second, command...)
				checkNoSecret(t, "EDDY_REDIS_URL=URL eddy "+strings.Join(command, " "), out, errOut)
				if !u.works && code == 0 {
					t.Errorf("EDDY_REDIS_URL=URL eddy %s = 0, want a failure", strings.Join(command, " "))
				}
			}
			if strings.Contains(u.url, "?addr=") || u.works {
				return // the config's url is one server's; a URL that works was seen enough
			}
			inFile := writeFile(t, "r.yaml", fmt.Sprintf("redis: {url: %q}\n%s", u.url, tlsPipeline))
			for _, command := range [][]string{{"validate"}, {"status"}, {"run", "--redis-wait", "1s"}, {"dlq", "list"}, {"produce"}} {
				code, out, errOut := binRun(t, nil, "", 60*time.Second, append(command, "-c", inFile)...)
				checkNoSecret(t, "redis.url in the file: eddy "+strings.Join(command, " "), out, errOut)
				if command[0] != "validate" && code == 0 {
					t.Errorf("redis.url in the file: eddy %s = 0, want a failure", strings.Join(command, " "))
				}
			}
		})
	}

	t.Run("bench", func(t *testing.T) {
		code, out, errOut := binRun(t, nil, "", 60*time.Second, "--redis", urls[0].url, "bench", "--quick")
		checkNoSecret(t, "eddy --redis URL bench --quick", out, errOut)
		if code == 0 {
			t.Errorf("eddy bench with a bad URL = 0, want a failure")
		}
	})

	// The redacted URL is what the messages quote.
	_, _, errOut := binRun(t, nil, "", 30*time.Second, "--redis", urls[0].url, "status", "-c", cfg)
	if !strings.Contains(errOut, `redis url "redis://eddy:xxxxx@127.0.0.1:34401/abc": redis: invalid database number: "abc"`) {
		t.Errorf("eddy status with a bad database number said:\n%s\nwant the URL redacted, user kept", errOut)
	}
}

// Done-when 2: the password from the config (password, password_env,
// password_file; with url and with Cluster addrs) is never printed, and
// neither are credentials written into an addr.
func TestRedactConfigPasswords(t *testing.T) {
	t.Parallel()
	withPass := redistest.Start(t, "--requirepass", redactRight)
	dead := freeAddr(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(redactPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"EDDY_TEST_REDIS_PW=" + redactPW}
	sections := []struct {
		name, redis string
		valid       bool
	}{
		{"password_env", "redis: {url: 'redis://" + withPass.Addr() + "/0', password_env: EDDY_TEST_REDIS_PW}\n", true},
		{"password_file", "redis: {url: 'redis://" + withPass.Addr() + "/0', username: eddy, password_file: '" + pwFile + "'}\n", true},
		{"password", "redis: {url: 'redis://" + withPass.Addr() + "/0', password: '" + redactPW + "'}\n", true},
		{"addrs and password_env", "redis: {addrs: ['" + dead + "'], username: eddy, password_env: EDDY_TEST_REDIS_PW}\n", true},
		{"addrs not a cluster", "redis: {addrs: ['" + withPass.Addr() + "'], password_file: '" + pwFile + "'}\n", true},
		{"credentials in an addr", "redis: {addrs: ['eddy:" + redactPW + "@" + dead + "']}\n", false},
		{"two passwords", "redis: {url: 'redis://:" + redactPW + "@" + dead + "/0', password_env: EDDY_TEST_REDIS_PW}\n", false},
	}
	for _, s := range sections {
		file := writeFile(t, "r.yaml", s.redis+tlsPipeline)
		for _, command := range [][]string{{"validate"}, {"status"}, {"run", "--redis-wait", "1s"}, {"dlq", "replay", "--all"}, {"produce"}} {
			code, out, errOut := binRun(t, env, `{"k":"a"}`+"\n", 60*time.Second, append(command, "-c", file)...)
			checkNoSecret(t, s.name+": eddy "+strings.Join(command, " "), out, errOut)
			switch {
			case command[0] == "validate" && (code == 0) != s.valid:
				t.Errorf("%s: eddy validate = %d, want valid %v; stderr:\n%s", s.name, code, s.valid, errOut)
			case command[0] != "validate" && code == 0:
				t.Errorf("%s: eddy %s = 0, want a failure", s.name, strings.Join(command, " "))
			}
		}
	}
}
