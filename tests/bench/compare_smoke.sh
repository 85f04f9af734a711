#!/usr/bin/env bash
# CI smoke of bench/compare (issue 5 item 2): a third of a second per cell at one
# concurrency, every mode. Passes when it exits 0 (no idem-bench error, no
# failed pgbench transaction, and bench/pgbench/*.sql still byte for byte
# the SQL idemd prepares) and prints a table row for each mode. Nothing
# timed is checked.
#   compare_smoke.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
out=$("$1/bench/compare" --build "$2" --duration 0.3 --warmup 0.1 --concurrency 4 \
      --modes begin,cycle,replay 2>&1)
status=$?
echo "$out"
if [ "$status" != 0 ]; then
  echo "compare_smoke: bench/compare exited $status" >&2
  exit 1
fi
for mode in begin cycle replay; do
  if ! grep -Eq "^\| $mode \| 4 \| [0-9,]+ \| [0-9,]+ \|" <<<"$out"; then
    echo "compare_smoke: no table row for $mode at C=4" >&2
    exit 1
  fi
done
