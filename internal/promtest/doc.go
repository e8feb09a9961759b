// Package promtest starts real Prometheus servers for tests and asks them
// queries through their HTTP API.
//
// It owns the life of each server it starts: the prometheus binary on PATH
// (the test fails, saying how to install it, when there is none: scripts/
// test.sh installs Debian's prometheus in CI), a free loopback port, the
// configuration file the test gives it, a TSDB directory of the server's
// own under the test's temp dir, the server's log there, the wait until
// /-/ready answers 200, and the stop (SIGTERM, then SIGKILL after 5s) when
// the test ends. Promtool finds promtool, which comes with the same
// package.
//
// It knows nothing of Eddy's metrics, dashboards or rules: the test brings
// the configuration and the queries. It never touches a Prometheus it did
// not start.
//
// Import direction: tests -> promtest -> redisserver (for Detach and
// FreePort only).
package promtest
