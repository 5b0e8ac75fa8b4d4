#!/usr/bin/env bash
# Install the Debian packages Floorwatch needs, only those missing. As root it installs them; otherwise it
# prints the exact apt-get command and fails.
#   tests/system-packages.sh        what the test suite needs (real servers, ptys, a browser)
#   tests/system-packages.sh demo   only what the demo needs (a compiler for the core, and a broker)
set -euo pipefail

# command that must exist -> Debian package providing it
declare -A NEED=(
  [gcc]=gcc
  [mosquitto]=mosquitto
)
[ "${1:-}" = demo ] || NEED+=(
  [mosquitto_pub]=mosquitto-clients
  [mosquitto_passwd]=mosquitto
  [influxd]=influxdb
  [victoria-metrics]=victoria-metrics
  [socat]=socat
  [shellcheck]=shellcheck
  [chromium]=chromium
  [openssl]=openssl
  [systemd-analyze]=systemd
  [docker-compose]=docker-compose
  [setpriv]=util-linux
)

missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/bin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
# Python headers and venv support for building the Cython core (Debian's python3; a pyenv Python has its own).
if ! python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3-dev)
fi
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian packages the tests need: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  $cmd -qq
  # The Debian packages enable their daemons; the tests start their own on free ports.
  for svc in mosquitto influxdb victoria-metrics; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
else
  echo "The tests need these Debian packages: ${missing[*]}" >&2
  echo "Install them with:  sudo $cmd" >&2
  exit 1
fi
