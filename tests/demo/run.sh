#!/usr/bin/env bash
# make demo: runs the demo orchestrator (tests/demo/main.go) against the collector make build made.
set -euo pipefail
cd "$(dirname "$0")/../.."
collector="${1:-_build/otelcol-agenttrail}"
go build -o bin/agenttrail-demo ./tests/demo
exec bin/agenttrail-demo -collector "$collector"
