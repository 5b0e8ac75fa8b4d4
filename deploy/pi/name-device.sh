#!/bin/sh
# Give a USB serial adapter a stable name, /dev/floorwatch/NAME, by its USB serial number
# (installed as /usr/local/sbin/floorwatch-name-device).
#
#   floorwatch-name-device /dev/ttyUSB0              # show the adapter's attributes and the rule
#   floorwatch-name-device /dev/ttyUSB0 caliper-1    # write the rule, reload udev: /dev/floorwatch/caliper-1
#
# Plug in one adapter at a time, name it, then the next. The rule goes into
# /etc/udev/rules.d/99-floorwatch.rules (--rules FILE for another file); a rule that already gives
# the same name is replaced (a swapped adapter keeps the instrument's name). Adapters without a
# serial number are named by the USB socket they are in instead (a warning says so).
#
# Options:
#   --rules FILE        the rules file to edit (default /etc/udev/rules.d/99-floorwatch.rules)
#   --properties FILE   read the attributes from FILE (saved 'udevadm info --query=property --name=DEV'
#                       output, e.g. from another Pi) instead of asking udev; nothing is reloaded
#   --no-reload         write the rule but do not reload udev
set -eu

RULES=/etc/udev/rules.d/99-floorwatch.rules
PROPS_FILE=""
RELOAD=1

die() { echo "floorwatch-name-device: $*" >&2; exit 1; }
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rules) [ $# -ge 2 ] || die "--rules needs a file"; RULES=$2; shift 2 ;;
        --properties) [ $# -ge 2 ] || die "--properties needs a file"; PROPS_FILE=$2; RELOAD=0; shift 2 ;;
        --no-reload) RELOAD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || [ $# -eq 2 ] || die "usage: floorwatch-name-device DEVICE [NAME]   (e.g. /dev/ttyUSB0 caliper-1)"
DEVICE=$1
NAME=${2:-}

if [ -n "$NAME" ]; then
    case "$NAME" in
        [!A-Za-z0-9]*|*[!A-Za-z0-9_.-]*)
            die "name '$NAME' is not valid: letters, digits, '_', '.', '-', starting with a letter or digit (use the instrument's name from gateway.toml)" ;;
    esac
    [ "${#NAME}" -le 64 ] || die "name '$NAME' is longer than 64 characters"
fi

if [ -n "$PROPS_FILE" ]; then
    [ -r "$PROPS_FILE" ] || die "cannot read $PROPS_FILE"
    PROPS=$(cat "$PROPS_FILE")
else
    command -v udevadm >/dev/null || die "udevadm is missing (package udev)"
    [ -e "$DEVICE" ] || die "$DEVICE does not exist; plugged in? 'ls /dev/ttyUSB* /dev/ttyACM*' lists the adapters"
    PROPS=$(udevadm info --query=property --name="$DEVICE") || die "udev knows nothing about $DEVICE"
fi

prop() { printf '%s\n' "$PROPS" | sed -n "s/^$1=//p" | head -n 1; }

SUBSYSTEM=$(prop SUBSYSTEM)
BUS=$(prop ID_BUS)
VENDOR_ID=$(prop ID_VENDOR_ID)
MODEL_ID=$(prop ID_MODEL_ID)
SERIAL=$(prop ID_SERIAL_SHORT)
IFNUM=$(prop ID_USB_INTERFACE_NUM)
PATH_ID=$(prop ID_PATH)
VENDOR=$(prop ID_VENDOR_FROM_DATABASE)
[ -n "$VENDOR" ] || VENDOR=$(prop ID_VENDOR)
MODEL=$(prop ID_MODEL_FROM_DATABASE)
[ -n "$MODEL" ] || MODEL=$(prop ID_MODEL)

echo "device:         $DEVICE ($(prop DEVNAME))"
echo "subsystem:      ${SUBSYSTEM:-?}   bus: ${BUS:-?}"
echo "adapter:        ${VENDOR:-?} ${MODEL:-?} (USB id ${VENDOR_ID:-?}:${MODEL_ID:-?})"
echo "serial number:  ${SERIAL:-none}"
echo "interface:      ${IFNUM:-?}"
echo "USB socket:     ${PATH_ID:-?}"
echo "stable links:   $(prop DEVLINKS)"

[ "$SUBSYSTEM" = tty ] || die "$DEVICE is not a serial (tty) device"
[ "$BUS" = usb ] || die "$DEVICE is not a USB adapter; the Pi's own UARTs (/dev/ttyAMA0, /dev/serial0) have fixed names already: use them as they are"

for value in "$VENDOR_ID" "$MODEL_ID" "$SERIAL" "$IFNUM" "$PATH_ID"; do
    case "$value" in *'"'*|*\\*) die "udev reported a value with a quote or backslash ($value); write this rule by hand" ;; esac
done

if [ -n "$SERIAL" ]; then
    MATCH="SUBSYSTEM==\"tty\", ENV{ID_BUS}==\"usb\", ENV{ID_VENDOR_ID}==\"$VENDOR_ID\", ENV{ID_MODEL_ID}==\"$MODEL_ID\", ENV{ID_SERIAL_SHORT}==\"$SERIAL\""
    # the interface number tells the ports of a multi-port adapter apart (they share one serial number)
    if [ -n "$IFNUM" ]; then MATCH="$MATCH, ENV{ID_USB_INTERFACE_NUM}==\"$IFNUM\""; fi
else
    [ -n "$PATH_ID" ] || die "$DEVICE has neither a serial number nor a USB path; it cannot be named stably"
    echo "warning: this adapter has no serial number: it is named by the USB socket it is in. Keep it in that socket." >&2
    MATCH="SUBSYSTEM==\"tty\", ENV{ID_PATH}==\"$PATH_ID\""
fi

if [ -z "$NAME" ]; then
    echo
    echo "rule (give a name to write it: floorwatch-name-device $DEVICE NAME):"
    echo "$MATCH, SYMLINK+=\"floorwatch/NAME\""
    exit 0
fi

RULE="$MATCH, SYMLINK+=\"floorwatch/$NAME\""
TARGET="SYMLINK+=\"floorwatch/$NAME\""

# the rules, without comments (whose examples must not count)
rules() { grep -v '^[[:space:]]*#' "$RULES" || true; }

if [ -e "$RULES" ]; then
    # the same adapter under another name would give it two names: refuse and say which
    OTHER=$(rules | grep -F "$MATCH, SYMLINK+=" | grep -vF "$TARGET" || true)
    if [ -n "$OTHER" ]; then
        die "this adapter is already named in $RULES:
  $OTHER
remove that line first if the adapter now serves another instrument"
    fi
fi

mkdir -p "$(dirname "$RULES")"
TMP=$(mktemp "$RULES.XXXXXX")
trap 'rm -f "$TMP"' EXIT
if [ -e "$RULES" ]; then
    # keep every line but a rule (not a comment) that gives this name
    awk -v t="$TARGET" '/^[[:space:]]*#/ || index($0, t) == 0' "$RULES" > "$TMP"
    if rules | grep -qF "$TARGET"; then echo "replacing the rule that named floorwatch/$NAME"; fi
fi
printf '%s\n' "$RULE" >> "$TMP"
chmod 644 "$TMP"
mv "$TMP" "$RULES"
trap - EXIT
echo "wrote to $RULES:"
echo "  $RULE"

if [ "$RELOAD" = 1 ]; then
    udevadm control --reload-rules
    udevadm trigger --action=add --subsystem-match=tty
    udevadm settle --timeout=10 || true
    if [ -e "/dev/floorwatch/$NAME" ]; then
        echo "/dev/floorwatch/$NAME -> $(readlink -f "/dev/floorwatch/$NAME")"
    else
        die "the rule is written but /dev/floorwatch/$NAME did not appear; unplug and plug the adapter in again, then check 'udevadm info $DEVICE'"
    fi
fi
echo "in /etc/floorwatch/gateway.toml:  port = \"/dev/floorwatch/$NAME\""
