#!/usr/bin/env bash
# ctest fixture: a throwaway PostgreSQL cluster for the integration tests.
#   pg_fixture.sh setup DIR IDEMCTL    start it, create and migrate idem_test
#   pg_fixture.sh cleanup DIR          stop it and delete DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cluster="$here/../scripts/pg-cluster"
case "$1" in
  setup)
    "$cluster" stop "$2" 2>/dev/null || true
    rm -rf "$2"
    "$cluster" start "$2" >/dev/null
    psql -q "$("$cluster" url "$2")" -c "CREATE DATABASE idem_test"
    "$3" migrate --postgres="$("$cluster" url "$2" idem_test)"
    ;;
  cleanup)
    "$cluster" stop "$2"
    rm -rf "$2"
    ;;
esac
