#!/usr/bin/env bash
# make soak: the full-size delivery run of tests/outage — TestKillDuringOutage with many more
# SIGKILLs, a higher rate and longer lives than the CI tier (20 kills, 100 spans/s, about a
# minute). Every knob can be overridden from the environment; OUTAGE_SEED replays a run.
#
#   OUTAGE_KILLS      SIGKILLs of the collector            (default here 150)
#   OUTAGE_RATE       spans per second offered over OTLP   (default here 200)
#   OUTAGE_MAX_UP     longest life between two kills       (default here 4s)
#   OUTAGE_DRAIN      time the SIEMs get to catch up       (default here 5m)
#   OUTAGE_PIPELINE   durable (default) or batch-processor (the old documented pipeline: loses data)
#   OUTAGE_SEED       the kill and outage schedule to replay
set -euo pipefail
cd "$(dirname "$0")/../.."
collector=_build/otelcol-agenttrail
[[ -x $collector ]] || { echo "agenttrail: $collector is not built: run make build" >&2; exit 1; }
export OUTAGE_KILLS=${OUTAGE_KILLS:-150} OUTAGE_RATE=${OUTAGE_RATE:-200}
export OUTAGE_MAX_UP=${OUTAGE_MAX_UP:-4s} OUTAGE_DRAIN=${OUTAGE_DRAIN:-5m}
echo "soak: ${OUTAGE_KILLS} SIGKILLs at ${OUTAGE_RATE} spans/s, pipeline ${OUTAGE_PIPELINE:-durable} (about $((OUTAGE_KILLS * 3 / 60 + 2)) min)"
exec go test -count=1 -timeout 90m -run '^TestKillDuringOutage$' -v ./tests/outage/
