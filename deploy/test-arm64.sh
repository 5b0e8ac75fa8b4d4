#!/bin/bash
# Build Floorwatch (with its compiled Cython statistics core) and run the test suite's non-service tests
# inside a Debian Bookworm root of another architecture (arm64 by default, armhf with --arch armhf),
# executed by qemu user emulation through binfmt_misc. This is the proof that the gateway builds and
# runs on a Raspberry Pi's architectures without a Pi at hand.
#
#   sudo deploy/test-arm64.sh                 # arm64 root cached in /var/tmp/floorwatch-roots/arm64
#   sudo deploy/test-arm64.sh --arch armhf    # 32-bit Raspberry Pi OS: numpy from python3-numpy
#   sudo deploy/test-arm64.sh --fresh         # build the root again from scratch
#   sudo deploy/test-arm64.sh --worktree      # test the working tree instead of the last commit
#
# Needs root, debootstrap, qemu-user-static and binfmt-support (Debian packages). The root is kept
# between runs (debootstrap is the slow part); the source and the virtual environment are made anew
# each run. pip inside the root uses the host's CA bundle, so that a TLS-inspecting proxy that the host
# trusts is trusted inside too. Timings of each step are printed at the end.
set -euo pipefail

ARCH=arm64
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTS=${FLOORWATCH_ROOTS:-/var/tmp/floorwatch-roots}
FRESH=0
WORKTREE=0
PYTEST_ARGS=()
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo
    echo "options: --arch arm64|armhf  --roots DIR  --fresh  --worktree  -- PYTEST_ARGS..."
}

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=${2:?--arch needs arm64 or armhf}; shift 2 ;;
        --roots) ROOTS=${2:?--roots needs a directory}; shift 2 ;;
        --fresh) FRESH=1; shift ;;
        --worktree) WORKTREE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        *) echo "test-arm64: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

case "$ARCH" in
    arm64) QEMU=aarch64 ;;
    armhf) QEMU=arm ;;
    *) echo "test-arm64: --arch must be arm64 or armhf, not '$ARCH'" >&2; exit 2 ;;
esac

die() { echo "test-arm64: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mounts need it); try: sudo $0"
for tool in debootstrap chroot git tar; do
    command -v "$tool" >/dev/null || die "$tool is missing; install it with: apt-get install -y debootstrap qemu-user-static binfmt-support git"
done

# binfmt_misc: mounted, and the qemu interpreter registered with the F (fix-binary) flag, so that the
# interpreter need not exist inside the root.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
        || die "cannot mount binfmt_misc (a container without the privilege?)"
fi
if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$QEMU" ]; then
    command -v update-binfmts >/dev/null || die "update-binfmts is missing; apt-get install -y binfmt-support qemu-user-static"
    update-binfmts --enable "qemu-$QEMU" || die "cannot register qemu-$QEMU with binfmt_misc"
fi
grep -q '^enabled' "/proc/sys/fs/binfmt_misc/qemu-$QEMU" || die "binfmt_misc entry qemu-$QEMU is disabled"

ROOT="$ROOTS/$ARCH"
STAMP="$ROOT/.floorwatch-root-ready"
declare -A SECONDS_OF
step_start=0
begin() { step_start=$(date +%s); echo "=== $1"; }
end() { SECONDS_OF[$1]=$(( $(date +%s) - step_start )); }

MOUNTS=()
cleanup() {
    local i
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
        umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
bind() {  # bind <host path> <path in root>
    mkdir -p "$ROOT$2"
    mount --bind "$1" "$ROOT$2"
    MOUNTS+=("$ROOT$2")
}

# Debian packages of the root: Python, a compiler and headers for the Cython core (what install.sh
# would install with apt), and what the non-service tests call: socat (ptys), openssl, shellcheck,
# systemd-analyze, docker-compose (the compose file's validator), mosquitto (the demo command starts a
# private broker). Not chromium: under qemu user emulation it aborts at start ("GPU process isn't
# usable", ptrace not implemented), so the browser tests (named *chromium*) are left to the host run.
BASE_PACKAGES=python3,python3-venv,python3-dev,python3-pip,build-essential,ca-certificates
TEST_PACKAGES="git socat openssl shellcheck systemd docker-compose mosquitto mosquitto-clients"
if [ "$ARCH" = armhf ]; then
    # Raspberry Pi OS 32-bit: numpy comes from the distribution (install.sh does the same on armhf).
    BASE_PACKAGES="$BASE_PACKAGES,python3-numpy"
    # The package index has no armhf wheels of cffi/cryptography (a test dependency; cryptography would need
    # Rust to build): take the distribution's, as the venv sees system packages on armhf.
    TEST_PACKAGES="$TEST_PACKAGES python3-cryptography python3-cffi"
fi

if [ "$FRESH" = 1 ] && [ -d "$ROOT" ]; then
    echo "=== removing $ROOT (--fresh)"
    rm -rf --one-file-system "$ROOT"
fi
if [ ! -e "$STAMP" ]; then
    begin debootstrap
    rm -rf --one-file-system "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --arch="$ARCH" --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$ROOT" "$MIRROR"
    date -u +%FT%TZ > "$STAMP"
    end debootstrap
else
    echo "=== reusing the $ARCH root made $(cat "$STAMP") (--fresh to rebuild)"
fi

# Host files the root needs: name resolution and the CA bundle the host trusts (pip over TLS).
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
HOST_CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$HOST_CA" ] || die "host CA bundle $HOST_CA not readable; set PIP_CERT to the bundle pip should trust"
cp -L "$HOST_CA" "$ROOT/etc/ssl/host-ca-bundle.crt"

mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
bind /sys /sys
bind /dev /dev
bind /dev/pts /dev/pts

begin source
rm -rf "$ROOT/src/floorwatch"
mkdir -p "$ROOT/src/floorwatch"
if [ "$WORKTREE" = 1 ]; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) \
        | tar -C "$ROOT/src/floorwatch" -xf -
else
    git -C "$REPO" archive --format=tar HEAD | tar -C "$ROOT/src/floorwatch" -xf -
fi
end source

in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 PIP_CERT=/etc/ssl/host-ca-bundle.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_DEFAULT_TIMEOUT=180 DEBIAN_FRONTEND=noninteractive ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
        /bin/bash -euo pipefail -c "$1"
}

begin packages
in_root "
    missing=''
    for p in $TEST_PACKAGES; do dpkg -s \$p >/dev/null 2>&1 || missing=\"\$missing \$p\"; done
    if [ -n \"\$missing\" ]; then
        apt-get update -q && apt-get install -y -q --no-install-recommends \$missing
    fi
"
end packages

begin build
# The gateway's own installer, as on a Pi: system user, /etc/floorwatch, /var/lib/floorwatch, the unit
# enabled, and a fresh virtual environment in /opt/floorwatch/venv with the package built from source
# (Cython core compiled for this architecture). It checks 'floorwatch version' itself.
in_root "
    uname -m
    rm -rf /opt/floorwatch/venv
    /src/floorwatch/deploy/pi/install.sh --source /src/floorwatch --extras test --no-apt --arch $ARCH
    id floorwatch
    test -L /etc/systemd/system/multi-user.target.wants/floorwatch.service
    cd / && /opt/floorwatch/venv/bin/floorwatch version | tee /tmp/floorwatch-version.txt
    grep -q 'statistics core: compiled' /tmp/floorwatch-version.txt \
        || { echo 'the Cython statistics core was not built' >&2; exit 1; }
"
end build

begin tests
# pytest imports the checkout's modules (doctests included), so the core is compiled in place there
# too. 'service' tests need servers started by the harness (Mosquitto, InfluxDB, VictoriaMetrics) and
# are left to the host run; deploy/service_marker.py marks every test that uses such a server.
quoted_args=""
if [ ${#PYTEST_ARGS[@]} -gt 0 ]; then
    quoted_args=$(printf ' %q' "${PYTEST_ARGS[@]}")
fi
status=0
in_root "
    cd /src/floorwatch
    /opt/floorwatch/venv/bin/pip install -q 'Cython>=3.0' setuptools wheel
    /opt/floorwatch/venv/bin/python setup.py -q build_ext --inplace >/dev/null
    /opt/floorwatch/venv/bin/python -c 'from floorwatch.edge import stats; assert stats.IMPLEMENTATION == \"compiled\", stats.FALLBACK_REASON'
    PYTHONPATH=/src/floorwatch/deploy /opt/floorwatch/venv/bin/python -m pytest -q -m 'not service' \
        -k 'not chromium' -p service_marker -p no:cacheprovider$quoted_args
" || status=$?
end tests

echo "=== $ARCH summary"
for step in debootstrap source packages build tests; do
    if [ -n "${SECONDS_OF[$step]:-}" ]; then
        printf '  %-12s %5d s\n' "$step" "${SECONDS_OF[$step]}"
    fi
done
if [ "$status" -ne 0 ]; then
    echo "test-arm64: tests FAILED on $ARCH (exit $status)" >&2
    exit "$status"
fi
echo "test-arm64: build and non-service tests passed on $ARCH"
