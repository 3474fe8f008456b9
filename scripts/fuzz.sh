#!/usr/bin/env bash
# Runs every Go native fuzz target of the module (func FuzzXxx in a _test.go file) for a short
# time each, one target at a time: `make fuzz` in CI (FUZZTIME=5s), longer by hand
# (`FUZZTIME=2m make fuzz`, or FUZZ_ONLY=FuzzReadStr to run one). The seed corpora (f.Add and
# testdata/fuzz/FuzzXxx/) also run as plain tests under `go test`: that is the regression suite;
# this script looks for new crashes. A crash fails the run (the other targets still run) with
# the failing input left in the package's testdata/fuzz/FuzzXxx/ folder (commit it with the fix).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
only=${FUZZ_ONLY:-}
# -parallel 1: the target machine has two cores and CI runs other suites' builds around this.
parallel=${FUZZ_PARALLEL:-1}
# Go also minimizes every new coverage-expanding input (60 s by default), which would stretch a
# 5 s run far past its time on a slow machine; crashers are still minimized within this bound.
minimize=${FUZZMINIMIZETIME:-3s}
log=$(mktemp /tmp/agenttrail-fuzz.XXXXXX)
trap 'rm -f "$log"' EXIT
count=0
failed=()
flaked=()

# run_target DIR NAME: 0 passed, 1 a real failure (a crasher written, a panic, a failed check),
# 2 only Go's fuzz coordinator race at the -fuzztime boundary: "context deadline exceeded" with
# nothing written (golang/go#75804, fixed in Go 1.27, not in 1.26.x).
run_target() {
	if go test -run '^$' -fuzz "^${2}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" -parallel "$parallel" "./$1" >"$log" 2>&1; then
		return 0
	fi
	if grep -q 'context deadline exceeded' "$log" && ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
		return 2
	fi
	return 1
}
for dir in $(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u); do
	for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		if [ -n "$only" ] && [ "$name" != "$only" ]; then continue; fi
		count=$((count + 1))
		echo "fuzz: ./$dir $name ($fuzztime)"
		rc=0
		run_target "$dir" "$name" || rc=$?
		if [ "$rc" = 2 ]; then
			echo "fuzz: $name hit Go's -fuzztime deadline race (golang/go#75804), nothing found; running it again"
			rc=0
			run_target "$dir" "$name" || rc=$?
		fi
		case "$rc" in
		0) ;;
		2)
			# Twice the coordinator's race and no input: not a finding. The seed corpus and
			# every committed crasher still ran as plain tests under `go test`.
			echo "fuzz: $name hit the deadline race twice; counted as flaked, not failed"
			flaked+=("./$dir $name")
			;;
		*)
			tail -n 30 "$log"
			failed+=("./$dir $name")
			;;
		esac
	done
done
if [ "$count" = 0 ]; then
	echo "fuzz: no fuzz target matched${only:+ $only}" >&2
	exit 1
fi
[ ${#flaked[@]} -gt 0 ] && printf 'fuzz: flaked (deadline race, nothing found): %s\n' "${flaked[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz: failed: %s\n' "${failed[@]}" >&2
	echo "fuzz: $((count - ${#failed[@]})) passed, ${#failed[@]} failed"
	exit 1
fi
echo "fuzz: $count passed, 0 failed"
