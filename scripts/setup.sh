#!/usr/bin/env bash
# Set up everything hdr_dcs needs, idempotently: Debian packages, a virtual environment
# with pinned versions (.venv), the hdr_dcs_msgs build, and hdr_dcs itself (editable).
# A second run only checks and returns in a few seconds.
#
#   scripts/setup.sh            # as root, or as a user with sudo
#   HDR_DCS_SKIP_APT=1 scripts/setup.sh   # when the Debian packages are already there
#
# Environment: HDR_DCS_VENV (default <repo>/.venv), PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${HDR_DCS_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
# aravis-tools + gir1.2-aravis-0.8: GigE Vision cameras (and the fake camera the tests
# use); libgirepository1.0-dev, libcairo2-dev, pkg-config: building pygobject; iproute2:
# the tests give lo a second address (127.0.0.2) for a second fake camera.
APT_PACKAGES=(python3 python3-venv python3-dev cmake g++ make pkg-config iproute2
              aravis-tools gir1.2-aravis-0.8 libgirepository1.0-dev libcairo2-dev)

log() { printf '[setup] %s\n' "$*" >&2; }

install_apt() {
  [ "${HDR_DCS_SKIP_APT:-0}" = 1 ] && return 0
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root or sudo to install: ${missing[*]}"; exit 1; }
    sudo=(sudo)
  fi
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

install_venv() {
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
  local want have
  want=$(stamp_of "$ROOT/requirements.txt" "$ROOT/constraints.txt" "$ROOT/setup.py")
  have=$(cat "$VENV/.hdr_dcs-pip-stamp" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "installing pinned Python packages into $VENV"
    # This machine's pip configuration names local indexes that may not hold every
    # package; pip warns once per package about them. Keep the other messages.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      -r "$ROOT/requirements.txt" -c "$ROOT/constraints.txt" 2> >(grep -v "^WARNING: Location" >&2)
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" \
      2> >(grep -v "^WARNING: Location" >&2)
    echo "$want" > "$VENV/.hdr_dcs-pip-stamp"
  fi
}

build_msgs() {
  local want have build="$ROOT/build/hdr_dcs_msgs"
  want=$(stamp_of "$ROOT"/msg/package.xml "$ROOT"/msg/CMakeLists.txt "$ROOT"/msg/msg/*.msg)
  have=$(cat "$VENV/.hdr_dcs-msgs-stamp" 2>/dev/null || true)
  [ "$want" = "$have" ] && return 0
  log "building hdr_dcs_msgs into $VENV"
  rm -rf "$build" && mkdir -p "$build"
  (
    cd "$build"
    export VIRTUAL_ENV="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake "$ROOT/msg" -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >cmake.log 2>&1 \
      && make -j"$(nproc)" >make.log 2>&1 && make install >install.log 2>&1
  ) || { log "message build failed; see $build/*.log"; tail -n 20 "$build"/*.log >&2; exit 1; }
  echo "$want" > "$VENV/.hdr_dcs-msgs-stamp"
}

install_apt
install_venv
build_msgs
"$VENV/bin/python" -c "import rclpy, hdr_dcs, hdr_dcs_msgs.msg; from hdr_dcs.camera.gige_backend import import_aravis; import_aravis()" || { log "the environment does not import; rerun after removing $VENV"; exit 1; }
log "ready: $VENV"
