// Package redisserver starts and stops redis-server processes: the one
// launcher behind internal/redistest (servers for tests) and bench (the
// server `eddy bench` starts when it is given none).
//
// It owns the life of each process it starts: finding the binary, a
// loopback port (a free one, or a fixed one the caller names), the data
// directory the caller gives it, the server's log there, the wait until the
// server answers PING (over TLS for a server that speaks only TLS), and the
// stop: SIGTERM, then SIGKILL after a timeout.
// A start that fails quotes the end of the server's log.
//
// It owns no data in those servers and knows nothing of the engine's keys;
// it never connects to a server it did not start, except to probe a port
// with PING. It speaks the few bytes of RESP it needs itself rather than
// through go-redis, whose pool logs every refused dial while a server comes
// up.
//
// Each server runs in its own process group, so that stopping it also stops
// any child it forked (a background save, for instance), and a Ctrl-C at a
// terminal reaches only our process, which then stops the server. On Linux
// the kernel also kills the server if our process dies without stopping it
// (a test's -timeout panic, a SIGKILL), so that no server outlives its
// owner. Process groups are a Unix notion; on other systems only the server
// process itself is signalled.
//
// Import direction: internal/redistest and bench -> redisserver; it imports
// nothing of Eddy's.
package redisserver
