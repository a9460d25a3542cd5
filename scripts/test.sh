#!/usr/bin/env bash
# Runs every test tier — unit, privileged and end-to-end — then each fuzz
# target for a bounded time. Run it as root: without root the privileged and
# end-to-end tests skip, which is not a passing run, so it stops at once with
# exit status 1, unless ALLOW_SKIP=1.
#
#   ALLOW_SKIP=1   run as another user anyway: the unit tests and fuzzers only
#   FUZZTIME=30s   how long each fuzz target runs, as a duration or a count (Nx);
#                  default: a count of inputs per target, about 10 s each on the
#                  2-CPU CI machine; 0 skips fuzzing
#
# The default is a count, not a duration: go1.26's fuzzing coordinator can
# report "context deadline exceeded" as a failure, with no failing input,
# when a -fuzztime duration ends while a worker is mid-input
# (go.dev/issue/75804, fixed in go1.27). A count has no deadline to race.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  if [ "${ALLOW_SKIP:-}" != 1 ]; then
    echo "scripts/test.sh: not root: the privileged and end-to-end tests would SKIP, which is not a passing run; run as root, or set ALLOW_SKIP=1 to run the rest anyway" >&2
    exit 1
  fi
  echo "scripts/test.sh: not root, ALLOW_SKIP=1: privileged and end-to-end tests will SKIP; this is not a passing run" >&2
fi

go vet ./...
# staticcheck, pinned (fetched through the Go proxy on first use; its
# settings in staticcheck.conf).
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
# The non-Linux stubs (dataplane_other.go, netns_other.go, ...) must keep compiling.
GOOS=darwin go build ./...
# -p 1: one package at a time. The end-to-end, benchmark and flood tests push
# real traffic through namespaces on a 2-CPU machine; run side by side they
# starve each other's softirqs and packet sockets, and what they check (health
# detection, captures) stops meaning anything.
go test -p 1 -count=1 -timeout 30m ./...

fuzztime=${FUZZTIME:-}
if [ "$fuzztime" != 0 ]; then
  # package target inputs — every parser of outside bytes
  while read -r pkg target inputs; do
    budget=${fuzztime:-${inputs}x}
    echo "== fuzz $target ($pkg) for $budget"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "$pkg"
  done <<'LIST'
./dataplane FuzzHandle 80000
./dataplane FuzzNeighbor 140000
./healthcheck FuzzParseFrame 70000
./healthcheck FuzzMatchAnswer 100000
./healthcheck FuzzValidHost 100000
./balancer FuzzNewMaglev 250000
./internal/config FuzzParse 60000
./bench/latency FuzzRxTime 200000
LIST
fi
