// Package mosquittotest starts real Mosquitto brokers for tests.
//
// It owns the life of each broker it starts: the mosquitto binary on PATH
// (the test is skipped, saying how to install it, when there is none), a
// free loopback port, a configuration file it writes itself, a persistence
// directory of the broker's own under the test's temp dir, the broker's log
// there, the wait until the broker answers an MQTT CONNECT, and the stop:
// Stop (SIGTERM: the broker saves its sessions and queued messages, then
// exits), Kill (SIGKILL, as a crash would) and Restart (on the same port,
// with the same persistence directory, so that persistent sessions and the
// QoS 1 messages queued for them survive). The broker is stopped when the
// test ends.
//
// It knows nothing of Eddy's ingest, never touches a broker it did not
// start (never the one on the default port 1883) and sends no MQTT beyond
// the CONNECT of its ready probe. Tests that publish or subscribe bring
// their own client.
//
// Import direction: tests -> mosquittotest -> redisserver (for Detach and
// FreePort only).
package mosquittotest
