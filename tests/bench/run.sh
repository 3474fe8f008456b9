#!/usr/bin/env bash
# make bench: installs what the benchmark targets need (gcc, OpenSSL headers, Debian's CPython
# 3.11 with its USDT probes), builds the collector (for the load, story-latency and memory
# measurements) and runs tests/bench, which writes BENCHMARKS.md at the repository root in
# about 15 minutes on 2 cores. Extra arguments go to the harness, e.g. -quick -only hits,load.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for pkg in gcc libssl-dev python3.11; do
	dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench: installing Debian packages: ${missing[*]}"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/tmp/agenttrail-bench-apt.log 2>&1 ||
		{ echo "bench: could not install ${missing[*]} (see /tmp/agenttrail-bench-apt.log)" >&2; exit 1; }
fi
make --no-print-directory build >/dev/null
go run ./tests/bench -out BENCHMARKS.md "$@"
