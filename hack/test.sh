#!/usr/bin/env bash
# Runs every test package (make test). The fault tests spend most of their seven minutes
# waiting on real outages (a sink down for 120 s, drains, restarts), not on the CPU: their
# binary is built first and runs beside the other packages, which ./... would list last.
set -uo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
faults=""
# An interrupted run takes the fault tests down with it.
trap '[[ -z "$faults" ]] || kill "$faults" 2>/dev/null; rm -rf "$work"' EXIT
# Built alone first, so that it starts at once instead of competing with the other
# packages' compiles.
go test -c -o "$work/faults.test" ./test/faults || exit 1
# Run in the package's folder, as go test does; exec, so that $faults is the tests' own PID.
(cd test/faults && exec "$work/faults.test" -test.timeout 20m >"$work/faults.log" 2>&1) &
faults=$!
started=$SECONDS

# shellcheck disable=SC2046 # one argument per package
go test $(go list ./... | grep -v '/test/faults$') -count=1 -timeout 20m -coverprofile cover.out
rest=$?
wait "$faults"
faults_rc=$?
faults=""
result=ok
if [[ $faults_rc != 0 ]]; then # as go test does: a passing package's output is not shown
  result=FAIL
  cat "$work/faults.log"
fi
printf '%s\tgithub.com/chat-operators/officialaccount-operator/test/faults\t%ds\n' "$result" $((SECONDS - started))
exit $((rest != 0 || faults_rc != 0))
