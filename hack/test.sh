#!/usr/bin/env bash
# Runs every test package (make test). The fault tests spend most of their seven minutes
# waiting on real outages (a sink down for 120 s, drains, restarts), not on the CPU: their
# binary is built first and runs beside the other packages, which ./... would list last.
set -uo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Built alone first, so that it starts at once instead of competing with the other
# packages' compiles.
if ! go test -c -o "$work/faults.test" ./test/faults; then
  exit 1
fi
(
  cd test/faults && start=$SECONDS && "$work/faults.test" -test.timeout 20m >"$work/faults.log" 2>&1
  rc=$?
  result=ok && [[ $rc == 0 ]] || result=FAIL
  printf '%s\tgithub.com/chat-operators/officialaccount-operator/test/faults\t%ds\n' "$result" $((SECONDS - start)) >>"$work/faults.log"
  exit $rc
) &
faults=$!

# shellcheck disable=SC2046 # one argument per package
go test $(go list ./... | grep -v '/test/faults$') -count=1 -timeout 20m -coverprofile cover.out
rest=$?
wait "$faults"
faults_rc=$?
cat "$work/faults.log"
exit $((rest != 0 || faults_rc != 0))
