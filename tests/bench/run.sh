#!/usr/bin/env bash
# make bench: builds the collector (for the memory measurement) and runs tests/bench, which
# writes BENCHMARKS.md at the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
make --no-print-directory build >/dev/null
go run ./tests/bench -out BENCHMARKS.md "$@"
