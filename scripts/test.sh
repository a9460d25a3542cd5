#!/usr/bin/env bash
# Runs every test tier — unit, privileged and end-to-end — then each fuzz
# target for a bounded time. Run it as root: without root the privileged and
# end-to-end tests skip (and say so), which is not a passing run.
#
#   FUZZTIME=10s   how long each fuzz target runs (default 10s; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: not root: privileged and end-to-end tests will SKIP" >&2
fi

go vet ./...
# -p 1: one package at a time. The end-to-end, benchmark and flood tests push
# real traffic through namespaces on a 2-CPU machine; run side by side they
# starve each other's softirqs and packet sockets, and what they check (health
# detection, captures) stops meaning anything.
go test -p 1 -count=1 -timeout 30m ./...

fuzztime=${FUZZTIME:-10s}
if [ "$fuzztime" != 0 ]; then
  # package target — every parser of outside bytes
  while read -r pkg target; do
    echo "== fuzz $target ($pkg) for $fuzztime"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done <<'LIST'
./dataplane FuzzHandle
./dataplane FuzzNeighbor
./healthcheck FuzzParseFrame
./balancer FuzzNewMaglev
./internal/config FuzzParse
LIST
fi
