// Package redistest starts real redis-server processes for tests.
//
// It owns the life of those processes: finding the binary, choosing a free
// loopback port, a private data directory, waiting until the server answers
// PING, and stopping it when the test ends. Tests use it for what miniredis
// does not model faithfully: blocking reads, XAUTOCLAIM edge cases, Lua, and
// crashes (Kill, Restart). StartCluster starts a Redis Cluster of several
// masters the same way, joined with redis-cli --cluster create.
//
// It does not own any data in those servers, does not touch a Redis it did not
// start (never the one on the default port), and knows nothing of the engine's
// keys. Unit tests that do not need a real server should use miniredis.
//
// Each server runs in its own process group, so that stopping it also stops
// any child it forked (a background save, for instance). On Linux the kernel
// also kills it if the test binary dies without running its cleanups (a
// -timeout panic), so no server outlives the run. Process groups are a Unix
// notion; on other systems only the server process itself is signalled.
package redistest
