// Package redistest starts real redis-server processes for tests.
//
// It is the testing face of internal/redisserver, which owns the life of
// those processes (the binary, a loopback port, a private data directory,
// the wait until the server answers PING, the stop: SIGTERM, then SIGKILL).
// redistest ties each server to a test: Start and StartWith fail the test
// when a server does not come up, and stop the server when the test ends.
// Tests use it for what miniredis does not model faithfully: blocking
// reads, XAUTOCLAIM edge cases, Lua, and crashes (Kill, Restart).
// StartCluster starts a Redis Cluster of several masters the same way,
// joined with redis-cli --cluster create. NewCerts makes a certificate
// authority and certificates for a test; with them StartWith starts a
// server that speaks only TLS, and StartClusterWith a cluster whose nodes
// do, the cluster bus included.
//
// It does not own any data in those servers, does not touch a Redis it did not
// start (never the one on the default port), and knows nothing of the engine's
// keys. Unit tests that do not need a real server should use miniredis.
//
// Import direction: tests -> redistest -> redisserver.
package redistest
