#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the built-in simulated rig, reconstructed and
# scored. Extra arguments go to `hdr-dcs demo` (see `hdr-dcs demo --help`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
exec "${HDR_DCS_VENV:-$ROOT/.venv}/bin/hdr-dcs" demo "$@"
