#!/usr/bin/env bash
# make demo: boot a lab of its own (ports 48001/48002), run the demo driver
# (deploy/demo: workload on zone-a, rgwsync-exporter + rgwsync-applier,
# progress, verification that zone-b equals zone-a), stop the lab whatever
# happened. Exit code: the demo's.
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB=${DEMO_LAB:-/tmp/rgwsync-demo-lab}
export MON_PORT=${DEMO_MON_PORT:-24789}
export RGW_A_PORT=${DEMO_RGW_A_PORT:-24001}
export RGW_B_PORT=${DEMO_RGW_B_PORT:-24002}
export LOGS_OUT=${LOGS_OUT:-$PWD/.tmp/demo-lab-logs}
exec deploy/ceph-lab/with-lab.sh go run ./deploy/demo
