// Package deploy holds no Go code: it is the home of the files that run
// Eddy as a deployed stack, and of the tests that keep them true.
//
// What it owns:
//
//	eddy.yaml                          Eddy's config in docker-compose.yml (workers and ingest)
//	mosquitto/mosquitto.conf           the stack's MQTT broker
//	prometheus/prometheus.yml          scrape config (every Eddy process, job "eddy")
//	prometheus/rules.yml               alert rules; runbook: docs/observability.md
//	prometheus/rules_test.yml          promtool unit tests, a firing and a silent case per alert
//	grafana/dashboards/eddy.json       the Grafana dashboard (the JSON is the source)
//	grafana/provisioning/...           Grafana's datasource and dashboard provider
//
// The top-level docker-compose.yml mounts these files and Dockerfile builds
// the image. The tests load every file compose mounts: they run promtool on
// the rules, a real Prometheus with the scrape config and rules against a
// real Eddy running configs/demo.yaml (and every panel's and template
// variable's query through its HTTP API), a real mosquitto with the
// broker's config, pipelines.Load on eddy.yaml, `docker-compose config -q`
// on the compose file, and the Dockerfile's build line outside Docker
// (checking that the binary is static). Grafana itself is not installed
// here, so the dashboard's structure is checked by reading its JSON.
//
// It does not own the metrics (package metrics), nor the processes it
// tests (cmd/eddy).
package deploy
