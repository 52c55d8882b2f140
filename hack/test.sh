#!/usr/bin/env bash
# Runs every test package (make test). The fault tests spend most of their seven minutes
# waiting on real outages (a sink down for 120 s, drains, restarts), not on the CPU, and
# ./... lists them last: they run beside the other packages instead of after them.
set -uo pipefail
cd "$(dirname "$0")/.."

faults_log="$(mktemp)"
trap 'rm -f "$faults_log"' EXIT
go test ./test/faults -count=1 -timeout 20m >"$faults_log" 2>&1 &
faults=$!

# shellcheck disable=SC2046 # one argument per package
go test $(go list ./... | grep -v '/test/faults$') -count=1 -timeout 20m -coverprofile cover.out
rest=$?
wait "$faults"
faults_rc=$?
cat "$faults_log"
exit $((rest != 0 || faults_rc != 0))
