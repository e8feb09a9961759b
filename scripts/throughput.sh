#!/usr/bin/env bash
# Measures `eddy run` on a pre-filled stream: N clickstream events (about
# 230 bytes each, 10,000 users) through configs/bench.yaml (ordered, dedupe,
# one output) on a redis-server of its own, started on a free port and
# stopped at the end. Prints events/s from the start of `eddy run` until
# every event is committed (processed + duplicates + dead letters = N).
#
#   scripts/throughput.sh [N]        default N = 500000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500000}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${eddy_pid:-}" ] && kill "$eddy_pid" 2>/dev/null || true
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/eddy" ./cmd/eddy
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize yes --logfile "$work/redis.log"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
url="redis://127.0.0.1:$port/0"

"$work/eddy" simulate --kind clickstream --count "$n" --keys 10000 > "$work/events.ndjson"
"$work/eddy" --redis "$url" produce -c configs/bench.yaml --pipeline bench --file "$work/events.ndjson" --batch 1000

start=$(date +%s.%N)
"$work/eddy" --redis "$url" run -c configs/bench.yaml --consumer bench-1 2> "$work/eddy.log" &
eddy_pid=$!
done_count=0
while [ "$done_count" -lt "$n" ]; do
  sleep 0.05
  done_count=$(curl -s 127.0.0.1:9181/metrics | awk '
    /^eddy_processor_(processed|duplicates)_total\{/ || /^eddy_processor_dead_letters_total\{/ { s += $NF }
    END { printf "%d", s }')
  kill -0 "$eddy_pid" 2>/dev/null || { echo "eddy exited early:"; tail -20 "$work/eddy.log"; exit 1; }
done
end=$(date +%s.%N)
kill -TERM "$eddy_pid"; wait "$eddy_pid" || true; eddy_pid=""
out=$(redis-cli -p "$port" xlen bench:out)
pending=$(redis-cli -p "$port" xpending bench:clicks bench | head -1)
python3 - "$n" "$start" "$end" "$out" "$pending" <<'PY'
import sys
n, start, end, out, pending = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
secs = end - start
print(f"events: {n}  outputs: {out}  pending after: {pending}")
print(f"eddy run: {secs:.2f}s from start to the last commit = {n/secs:,.0f} events/s")
PY
