#!/bin/sh
# Install or upgrade the Floorwatch gateway on Raspberry Pi OS Bookworm (64-bit arm64, 32-bit armhf)
# or any Debian 12 machine. Safe to run again: it upgrades in place and keeps the configuration,
# the udev names and the spool.
#
#   sudo deploy/pi/install.sh                       # from this checkout (builds the Cython core)
#   sudo deploy/pi/install.sh --wheel floorwatch-0.1.0-cp311-cp311-linux_aarch64.whl
#   sudo deploy/pi/install.sh --source floorwatch==0.1.0   # from the package index
#
# What it lays down:
#   /opt/floorwatch/venv             virtual environment with the floorwatch command
#   /etc/floorwatch/gateway.toml     configuration: the example on first install, never overwritten
#   /etc/floorwatch/gateway.toml.example   the current example, refreshed on every run (for diffs)
#   /var/lib/floorwatch/             data: spool, sequence numbers, statistics state (kept)
#   /etc/systemd/system/floorwatch.service          the unit (replaced; local changes go in drop-ins)
#   /etc/systemd/journald.conf.d/floorwatch.conf    journald limits for the SD card
#   /etc/udev/rules.d/99-floorwatch.rules           stable instrument names (created once, then yours)
#   /usr/local/sbin/floorwatch-name-device          helper that writes those udev rules
# and a system user "floorwatch" in the "dialout" group (serial ports). The service is enabled; it is
# started with --start, and restarted when it was running (an upgrade).
#
# Options:
#   --root DIR      lay the files under DIR instead of / (a staging or test root). Nothing outside DIR
#                   is changed: user creation, ownership, systemctl and udevadm are printed as
#                   "skipped (--root): COMMAND" instead of run; apt-get is skipped too.
#   --wheel FILE    install this wheel (e.g. built on another machine) instead of this checkout
#   --source SPEC   pip requirement or directory to install (default: this checkout, else "floorwatch")
#   --extras LIST   pip extras to install with it, e.g. "test"
#   --no-apt        do not install Debian packages (they are there already, or no network)
#   --no-pip        do not create or update the virtual environment (files only)
#   --arch ARCH     arm64, armhf or amd64 (default: dpkg --print-architecture); armhf takes numpy from
#                   the system package python3-numpy (no armhf wheels to rely on on the package index)
#   --start         start the service after installing (by default only enabled)
set -eu

PREFIX_ROOT=""
WHEEL=""
SOURCE=""
EXTRAS=""
DO_APT=1
DO_PIP=1
ARCH=""
START=0
HERE=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=$(cd "$HERE/../.." && pwd)

die() { echo "install: $*" >&2; exit 1; }
say() { echo "install: $*"; }
usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; PREFIX_ROOT=$2; shift 2 ;;
        --wheel) [ $# -ge 2 ] || die "--wheel needs a file"; WHEEL=$2; shift 2 ;;
        --source) [ $# -ge 2 ] || die "--source needs a pip requirement or directory"; SOURCE=$2; shift 2 ;;
        --extras) [ $# -ge 2 ] || die "--extras needs a list, e.g. test"; EXTRAS=$2; shift 2 ;;
        --no-apt) DO_APT=0; shift ;;
        --no-pip) DO_PIP=0; shift ;;
        --arch) [ $# -ge 2 ] || die "--arch needs arm64, armhf or amd64"; ARCH=$2; shift 2 ;;
        --start) START=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

if [ -n "$PREFIX_ROOT" ]; then
    mkdir -p "$PREFIX_ROOT"
    R=$(cd "$PREFIX_ROOT" && pwd)
    [ "$R" != / ] || die "--root / is the system itself; leave --root out to install for real"
    DO_APT=0
else
    R=""
    [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
fi

# system: run COMMAND on the real system, or only print it (quoted) when laying files into --root
system() {
    if [ -n "$R" ]; then
        line=""
        for arg in "$@"; do
            case "$arg" in *[!A-Za-z0-9_./:=@%+-]*|"") arg="'$arg'" ;; esac
            line="$line $arg"
        done
        echo "skipped (--root):$line"
    else
        "$@"
    fi
}

if [ -z "$ARCH" ]; then
    ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
fi
case "$ARCH" in
    arm64|aarch64) ARCH=arm64 ;;
    armhf|armv7l|armv6l) ARCH=armhf ;;
    amd64|x86_64) ARCH=amd64 ;;
    *) die "architecture '$ARCH' is not supported; Floorwatch runs on arm64, armhf and amd64" ;;
esac

if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || die "wheel $WHEEL not found"
    SPEC=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
elif [ -n "$SOURCE" ]; then
    SPEC=$SOURCE
elif [ -f "$CHECKOUT/pyproject.toml" ] && grep -q '^name = "floorwatch"' "$CHECKOUT/pyproject.toml"; then
    SPEC=$CHECKOUT
else
    SPEC=floorwatch
fi
[ -z "$EXTRAS" ] || SPEC="${SPEC}[$EXTRAS]"

OPT=$R/opt/floorwatch
VENV=$OPT/venv
ETC=$R/etc/floorwatch
DATA=$R/var/lib/floorwatch

say "installing Floorwatch ($ARCH) into ${R:-/} from $SPEC"

# ------------------------------------------------------------------ Debian packages
if [ "$DO_APT" = 1 ]; then
    PACKAGES="python3 python3-venv python3-dev build-essential ca-certificates"
    # 32-bit: numpy from the distribution, compiled for the Pi; the venv sees it (--system-site-packages)
    [ "$ARCH" != armhf ] || PACKAGES="$PACKAGES python3-numpy libopenblas0"
    say "apt-get install $PACKAGES"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
else
    say "skipped: apt-get (--no-apt or --root)"
fi

# ------------------------------------------------------------------ user
if [ -n "$R" ] || ! getent passwd floorwatch >/dev/null; then
    system useradd --system --user-group --groups dialout --home-dir /var/lib/floorwatch --no-create-home \
        --shell /usr/sbin/nologin --comment "Floorwatch gateway" floorwatch
else
    # an existing user (e.g. from an older install) still needs the serial ports
    id -nG floorwatch | tr ' ' '\n' | grep -qx dialout || usermod -a -G dialout floorwatch
fi

# ------------------------------------------------------------------ directories
install -d -m 0755 "$OPT" "$R/etc/systemd/system" "$R/etc/systemd/system/multi-user.target.wants" \
    "$R/etc/systemd/journald.conf.d" "$R/etc/udev/rules.d" "$R/usr/local/sbin"
install -d -m 0750 "$ETC" "$DATA"
system chown root:floorwatch /etc/floorwatch
system chown floorwatch:floorwatch /var/lib/floorwatch

# ------------------------------------------------------------------ configuration (never overwritten)
EXAMPLE=$CHECKOUT/gateway/example.toml
[ -f "$EXAMPLE" ] || die "the example configuration $EXAMPLE is missing from this checkout"
install -m 0640 "$EXAMPLE" "$ETC/gateway.toml.example"
if [ -e "$ETC/gateway.toml" ]; then
    say "kept /etc/floorwatch/gateway.toml (the new example is gateway.toml.example)"
else
    install -m 0640 "$EXAMPLE" "$ETC/gateway.toml"
    say "created /etc/floorwatch/gateway.toml from the example: edit it, then check it with"
    say "    /opt/floorwatch/venv/bin/floorwatch check-config /etc/floorwatch/gateway.toml"
fi
system chown root:floorwatch /etc/floorwatch/gateway.toml /etc/floorwatch/gateway.toml.example

# ------------------------------------------------------------------ system files (ours, replaced)
install -m 0644 "$HERE/floorwatch.service" "$R/etc/systemd/system/floorwatch.service"
install -m 0644 "$HERE/journald-floorwatch.conf" "$R/etc/systemd/journald.conf.d/floorwatch.conf"
install -m 0755 "$HERE/name-device.sh" "$R/usr/local/sbin/floorwatch-name-device"
if [ -e "$R/etc/udev/rules.d/99-floorwatch.rules" ]; then
    say "kept /etc/udev/rules.d/99-floorwatch.rules (this gateway's instrument names)"
else
    install -m 0644 "$HERE/99-floorwatch.rules" "$R/etc/udev/rules.d/99-floorwatch.rules"
fi
if [ -d "$CHECKOUT/docs" ]; then
    install -d -m 0755 "$OPT/docs"
    for doc in "$CHECKOUT"/docs/*.md; do
        if [ -e "$doc" ]; then install -m 0644 "$doc" "$OPT/docs/"; fi
    done
fi

# ------------------------------------------------------------------ virtual environment
if [ "$DO_PIP" = 1 ]; then
    command -v python3 >/dev/null || die "python3 is missing; run without --no-apt, or apt-get install python3-venv"
    if [ ! -x "$VENV/bin/python" ]; then
        if [ "$ARCH" = armhf ]; then
            python3 -m venv --system-site-packages "$VENV"
        else
            python3 -m venv "$VENV"
        fi
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    if [ "$ARCH" = armhf ]; then
        # Keep the system's numpy (python3-numpy), for building the Cython core too: no build isolation
        # (which would fetch and compile a newer numpy), floorwatch without dependencies, then every
        # dependency but numpy.
        "$VENV/bin/python" -m pip install --upgrade "Cython>=3.0" setuptools wheel
        "$VENV/bin/python" -m pip install --upgrade --no-deps --no-build-isolation "$SPEC"
        DEPS=$("$VENV/bin/python" - "$EXTRAS" <<'EOF'
import importlib.metadata as md, re, sys
extras = set(filter(None, sys.argv[1].split(",")))
for req in md.requires("floorwatch") or []:
    name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower()
    marker = req.partition(";")[2]
    if name == "numpy":
        continue
    m = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
    if m and m.group(1) not in extras:
        continue
    print(req.partition(";")[0].strip())
EOF
)
        # Not --upgrade: a requirement the distribution already meets (python3-cryptography, …) is kept; the
        # package index has no armhf wheels for some of them and building them needs Rust or extra headers.
        # shellcheck disable=SC2086  # one requirement per word
        [ -z "$DEPS" ] || "$VENV/bin/python" -m pip install $DEPS
    else
        "$VENV/bin/python" -m pip install --upgrade "$SPEC"
    fi
    "$VENV/bin/floorwatch" version
else
    say "skipped: virtual environment (--no-pip)"
fi

# ------------------------------------------------------------------ activate
if [ -n "$R" ]; then
    system udevadm control --reload-rules
    system udevadm trigger --action=add --subsystem-match=tty
    system systemctl restart systemd-journald
    system systemctl daemon-reload
    # systemctl edits only files under --root here: the unit is enabled in the staged tree
    systemctl --root="$R" --quiet enable floorwatch.service 2>/dev/null \
        || ln -sf /etc/systemd/system/floorwatch.service "$R/etc/systemd/system/multi-user.target.wants/floorwatch.service"
    say "enabled in $R"
elif [ ! -d /run/systemd/system ]; then
    # a chroot, an image being built, a container: nothing to reload; all applies at the next boot
    say "systemd is not running here: the unit is enabled for the next boot, udev and journald not reloaded"
    systemctl --root=/ --quiet enable floorwatch.service
else
    udevadm control --reload-rules || say "udev is not running; the rules apply at the next boot"
    udevadm trigger --action=add --subsystem-match=tty || true
    systemctl restart systemd-journald || say "journald not restarted; its limits apply at the next boot"
    systemctl daemon-reload
    systemctl enable floorwatch.service
    if systemctl is-active --quiet floorwatch.service; then
        say "restarting the running service (upgrade)"
        systemctl restart floorwatch.service
    elif [ "$START" = 1 ]; then
        systemctl start floorwatch.service
    else
        say "enabled, not started: edit /etc/floorwatch/gateway.toml, then: systemctl start floorwatch"
    fi
fi
say "done"
