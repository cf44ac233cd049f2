#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the simulated rig's ROS 2 node graph, live,
# in one process (`hdr-dcs rig`), with a report, a picture strip and a video in runs/rig.
# Extra arguments go to `hdr-dcs rig` (see `hdr-dcs rig --help`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${HDR_DCS_VENV:-$ROOT/.venv}/bin/hdr-dcs" rig "$@"
