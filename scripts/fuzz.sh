#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a while each:
#   scripts/fuzz.sh [FUZZTIME] [TARGET-REGEXP]
# FUZZTIME is go test's -fuzztime (default 3s, as CI runs it; 10m for a
# long run). Each target starts from its seed corpus in testdata/fuzz/ and
# the cache of what earlier runs found; a crasher is written to
# testdata/fuzz/<Target>/ and fails the run. The last lines of each run
# give its executions.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-3s}
only=${2:-.}
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for target in $(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
    [[ "$target" =~ $only ]] || continue
    echo "== fuzz $dir $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel "${FUZZ_PARALLEL:-2}" "$dir" 2>&1 | tail -n 4
  done
done
