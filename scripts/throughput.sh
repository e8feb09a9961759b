#!/usr/bin/env bash
# Measures `eddy run` on a pre-filled stream: N clickstream events (about
# 230 bytes each, 10,000 users) through configs/bench.yaml (ordered, dedupe,
# one output) on a redis-server of its own, started on a free port and
# stopped at the end. Prints events/s from the start of the workers until
# every event has its output.
#
#   scripts/throughput.sh [N]                      default N = 500000
#   WORKERS=4 PARTITIONS=8 scripts/throughput.sh   4 eddy run processes, the
#                                                  stream in 8 partitions
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500000}
workers=${WORKERS:-1}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${pids:-}" ] && kill $pids 2>/dev/null || true
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/eddy" ./cmd/eddy
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize yes --logfile "$work/redis.log"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
url="redis://127.0.0.1:$port/0"

cfg=configs/bench.yaml
if [ -n "${PARTITIONS:-}" ]; then
  cfg="$work/bench.yaml"
  sed "s/^      payload: data$/      payload: data\n      partitions: $PARTITIONS/" configs/bench.yaml > "$cfg"
fi
"$work/eddy" simulate --kind clickstream --count "$n" --keys 10000 > "$work/events.ndjson"
"$work/eddy" --redis "$url" produce -c "$cfg" --pipeline bench --file "$work/events.ndjson" --batch 1000

start=$(date +%s.%N)
pids=""
for i in $(seq 1 "$workers"); do
  "$work/eddy" --redis "$url" run -c "$cfg" --consumer "bench-$i" --http off 2> "$work/eddy-$i.log" &
  pids="$pids $!"
done
out=0
while [ "$out" -lt "$n" ]; do
  sleep 0.05
  out=$(redis-cli -p "$port" xlen bench:out)
  for pid in $pids; do
    kill -0 "$pid" 2>/dev/null || { echo "eddy exited early:"; tail -20 "$work"/eddy-*.log; exit 1; }
  done
done
end=$(date +%s.%N)
kill -TERM $pids; wait $pids || true; pids=""
pending=0
for s in $(redis-cli -p "$port" --scan --pattern 'bench:clicks*' --type stream) $(redis-cli -p "$port" --scan --pattern '{bench:clicks*' --type stream); do
  pending=$((pending + $(redis-cli -p "$port" xpending "$s" bench | head -1)))
done
python3 - "$n" "$start" "$end" "$out" "$pending" "$workers" "${PARTITIONS:-1}" <<'PY'
import sys
n, start, end, out, pending, workers, parts = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
secs = end - start
print(f"events: {n}  workers: {workers}  partitions: {parts}  outputs: {out}  pending after: {pending}")
print(f"eddy run: {secs:.2f}s from start to the last output = {n/secs:,.0f} events/s")
PY
