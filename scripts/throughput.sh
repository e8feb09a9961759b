#!/usr/bin/env bash
# Measures `eddy run` on a pre-filled stream: N clickstream events (about
# 230 bytes each, 10,000 users) through configs/bench.yaml (ordered, dedupe,
# one output) on a redis-server of its own, started on a free port and
# stopped at the end. Prints events/s from the start of the workers until
# every event has its output.
#
# Then it checks the run and exits 1 if anything is off: every partition
# stream exists and holds N entries in all, nothing is pending for the
# group, there are exactly N outputs (EXPECT) and no dead letters, and every
# worker stopped cleanly. A run that makes no progress for a minute fails
# too.
#
#   scripts/throughput.sh [N]                      default N = 500000
#   WORKERS=4 PARTITIONS=8 scripts/throughput.sh   4 eddy run processes, the
#                                                  stream in 8 partitions
#   EXPECT=N+1 scripts/throughput.sh N             a wrong expectation: shows
#                                                  that the check can fail
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500000}
workers=${WORKERS:-1}
parts=${PARTITIONS:-1}
expect=${EXPECT:-$n}
# As configs/bench.yaml names them: the input stream, its group (the
# pipeline's name), the output stream and the dead-letter stream.
stream=bench:clicks group=bench output=bench:out dlq=bench:clicks:dlq
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
rc() { redis-cli -p "$port" "$@"; }

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
out=0 last=0 still=0
while [ "$out" -lt "$n" ]; do
  sleep 0.05
  out=$(rc xlen "$output")
  for pid in $pids; do
    kill -0 "$pid" 2>/dev/null || { echo "eddy exited early:"; tail -20 "$work"/eddy-*.log; exit 1; }
  done
  if [ "$out" -ne "$last" ]; then
    last=$out still=0
  elif [ $((still += 1)) -ge 1200 ]; then # 60s at 50ms
    echo "no output for 60s: $out of $n"; tail -20 "$work"/eddy-*.log; exit 1
  fi
done
end=$(date +%s.%N)
kill -TERM $pids
stopped=0
for pid in $pids; do
  wait "$pid" || { echo "eddy (pid $pid) exited $? after SIGTERM"; stopped=1; }
done
pids=""

# The check. Partition streams are named as README's "Data layout" says:
# {S:p} for p < partitions, or S itself with one partition. Each must be a
# stream with the group on it; XPENDING's first line is the group's pending
# count there.
fail=()
[ "$stopped" -eq 0 ] || fail+=("a worker did not stop cleanly (logs: eddy-*.log)")
streams=("$stream")
if [ "$parts" -gt 1 ]; then
  streams=()
  for p in $(seq 0 $((parts - 1))); do streams+=("{$stream:$p}"); done
fi
pending=0 entries=0
for s in "${streams[@]}"; do
  t=$(rc type "$s")
  if [ "$t" != stream ]; then fail+=("$s is of type $t, want a stream"); continue; fi
  p=$(rc xpending "$s" "$group" | head -1)
  if ! [[ "$p" =~ ^[0-9]+$ ]]; then fail+=("XPENDING $s $group: $p"); continue; fi
  pending=$((pending + p))
  entries=$((entries + $(rc xlen "$s")))
done
out=$(rc xlen "$output")
dead=$(rc xlen "$dlq")
[ "$entries" -eq "$n" ] || fail+=("$entries entries in the ${#streams[@]} partition streams, want $n")
[ "$pending" -eq 0 ] || fail+=("$pending entries pending for group $group, want 0")
[ "$out" -eq "$expect" ] || fail+=("$out outputs in $output, want $expect")
[ "$dead" -eq 0 ] || fail+=("$dead dead letters in $dlq, want 0")

python3 - "$n" "$start" "$end" "$out" "$pending" "$workers" "$parts" "$dead" <<'PY'
import sys
n, start, end, out, pending, workers, parts, dead = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
secs = end - start
print(f"events: {n}  workers: {workers}  partitions: {parts}  outputs: {out}  pending after: {pending}  dead letters: {dead}")
print(f"eddy run: {secs:.2f}s from start to the last output = {n/secs:,.0f} events/s")
PY
if [ "${#fail[@]}" -gt 0 ]; then
  printf 'FAIL: %s\n' "${fail[@]}"
  exit 1
fi
echo "ok: every event output once, nothing pending, no dead letters"
