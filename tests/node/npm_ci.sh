#!/usr/bin/env bash
# ctest fixture node_deps: installs tests/node's locked dependencies into a
# copy under the build directory (never into the source tree), for
# node_client_e2e to find through NODE_PATH.
#   npm_ci.sh SRC_DIR DEST_DIR
# Skips npm when DEST_DIR already holds an install of the same lockfile;
# retries npm ci so one network hiccup does not fail the run.
set -euo pipefail
src=$1 dest=$2
if ! command -v npm >/dev/null; then
  echo "npm_ci.sh: npm not found (scripts/install-deps installs it)" >&2
  exit 1
fi
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
stamp=$dest/node_modules/.idem-installed
if [ -f "$stamp" ] && cmp -s "$src/package.json" "$dest/package.json" &&
   cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
  exit 0
fi
cp "$src/package.json" "$src/package-lock.json" "$dest/"
cd "$dest"
for try in 1 2 3; do
  if npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; then
    touch "$stamp"
    exit 0
  fi
  echo "npm_ci.sh: npm ci failed (try $try of 3)" >&2
  [ "$try" = 3 ] || sleep $((try * 5))
done
exit 1
