#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
# Installs redis-server when it is missing: tests start their own servers on
# free loopback ports and never touch one they did not start.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run besides Go: redis-server (and redis-cli), mosquitto
# for the MQTT source's tests, prometheus (and promtool) for the dashboard
# and alert rules (deploy/), and docker-compose to validate
# docker-compose.yml (config only: no Docker engine needed), chromium for
# the console's browser test. Installed when
# missing.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# chromium for the web console's browser test (cmd/eddy TestConsoleInBrowser).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "== $(redis-server --version)"
echo "== $(mosquitto -h 2>/dev/null | head -n 1 || /usr/sbin/mosquitto -h | head -n 1)"
echo "== $(prometheus --version 2>&1 | head -n 1)"
echo "== $(docker-compose version --short 2>/dev/null || docker-compose version | head -n 1)"
echo "== $(go version)"

echo "== docker-compose config -q"
docker-compose -f docker-compose.yml config -q

echo "== gofmt -l"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet ./..."
go vet ./...

echo "== golangci-lint (.golangci.yml)"
# Pinned; built from the Go module proxy on first use, then cached.
# --allow-parallel-runners: by default golangci-lint takes a lock that is
# machine-wide (in $TMPDIR, whatever the repo or cache) and exits with
# "parallel golangci-lint is running" when another run holds it for 5s.
# That lock guards its analysis cache, so this run gets a cache of its own
# (removed at exit; set GOLANGCI_LINT_CACHE to keep a warm one): runners
# sharing one can fail with "failed to get persisted facts"
# (golangci/golangci-lint#1769). Go's build cache, which stays shared, is
# safe for concurrent use.
lint_cache=${GOLANGCI_LINT_CACHE:-}
if [ -z "$lint_cache" ]; then
  lint_cache=$(mktemp -d "${TMPDIR:-/tmp}/eddy-golangci-lint.XXXXXX")
  trap 'rm -rf "$lint_cache"' EXIT
fi
GOFLAGS= GOLANGCI_LINT_CACHE="$lint_cache" \
  go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run --allow-parallel-runners ./...

echo "== go test -race ./..."
go test -race -count=1 -timeout 25m ./...

echo "== fuzz targets, briefly (scripts/fuzz.sh 10m for a long run)"
bash scripts/fuzz.sh "${FUZZTIME:-3s}"
