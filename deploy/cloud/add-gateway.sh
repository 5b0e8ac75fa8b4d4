#!/bin/sh
# Add a gateway's account to the broker's password file (mosquitto_passwd), with a new random password.
#
#   ./add-gateway.sh dongguan-2 line-3 gw-01       # gateway account "dongguan-2/line-3/gw-01"
#   ./add-gateway.sh --rotate dongguan-2 line-3 gw-01   # issue a new password for it
#   ./add-gateway.sh --account bridge              # the bridge's account (also: --account buyer)
#   docker compose kill -s HUP mosquitto           # then make the running broker re-read the file
#
# A gateway's username is "<site>/<line>/<gateway>", its place in the topic tree: the ACL
# (mosquitto/acl) lets it publish only under floorwatch/v1/<site>/<line>/<gateway>/#. The password
# is written to secrets/<site>.<line>.<gateway>.password (mode 600): copy it to the gateway as
# /etc/floorwatch/mqtt-password. It never appears on a command line (mosquitto_passwd reads stdin).
#
# Options:
#   --passwd FILE      password file (default: mosquitto/passwd next to this script)
#   --acl FILE         ACL file checked for --account names (default: mosquitto/acl)
#   --secrets DIR      where new passwords are written (default: secrets/ next to this script)
#   --password-stdin   read the password from standard input instead of generating one
#   --rotate           replace the password of an account that exists already
set -eu

HERE=$(dirname "$0")
PASSWD=$HERE/mosquitto/passwd
ACL=$HERE/mosquitto/acl
SECRETS=$HERE/secrets
FROM_STDIN=0
ROTATE=0
ACCOUNT=""
# Names the ACL reserves for accounts that are not gateways; no site may be called like them.
RESERVED="bridge buyer"

die() { echo "add-gateway: $*" >&2; exit 1; }

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

# Same rule as the gateway configuration (edge/config.py NAME_PATTERN): what a topic level may be.
check_name() {
    case "$2" in
        ""|[!A-Za-z0-9]*|*[!A-Za-z0-9_.-]*)
            die "$1 '$2' is not a valid name: letters, digits, '_', '.', '-', starting with a letter or digit (as in gateway.toml)" ;;
    esac
    [ "${#2}" -le 64 ] || die "$1 '$2' is longer than 64 characters"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --passwd) [ $# -ge 2 ] || die "--passwd needs a file"; PASSWD=$2; shift 2 ;;
        --acl) [ $# -ge 2 ] || die "--acl needs a file"; ACL=$2; shift 2 ;;
        --secrets) [ $# -ge 2 ] || die "--secrets needs a directory"; SECRETS=$2; shift 2 ;;
        --password-stdin) FROM_STDIN=1; shift ;;
        --rotate) ROTATE=1; shift ;;
        --account) [ $# -ge 2 ] || die "--account needs a name, e.g. --account bridge"; ACCOUNT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) break ;;
    esac
done

if [ -n "$ACCOUNT" ]; then
    [ $# -eq 0 ] || die "--account takes no site/line/gateway"
    check_name "account" "$ACCOUNT"
    # A non-gateway account is useful only if the ACL grants it something, and safe only if the ACL
    # also denies it the subtree the gateway pattern would open to it.
    [ -r "$ACL" ] || die "cannot read the ACL file $ACL (--acl FILE)"
    grep -qx "user $ACCOUNT" "$ACL" \
        || die "the ACL $ACL has no 'user $ACCOUNT' section; add one (with 'topic deny floorwatch/v1/$ACCOUNT/#') first"
    grep -qx "topic deny floorwatch/v1/$ACCOUNT/#" "$ACL" \
        || die "the ACL section of '$ACCOUNT' lacks 'topic deny floorwatch/v1/$ACCOUNT/#'; without it the account could publish there"
    USERNAME=$ACCOUNT
    SECRET_NAME=$ACCOUNT
else
    [ $# -eq 3 ] || die "give the gateway's site, line and id, as in its gateway.toml: add-gateway.sh SITE LINE GATEWAY"
    check_name "site" "$1"
    check_name "line" "$2"
    check_name "gateway" "$3"
    for reserved in $RESERVED; do
        [ "$1" != "$reserved" ] || die "site '$1' is reserved for the $reserved account in the ACL; choose another site name"
    done
    USERNAME="$1/$2/$3"
    SECRET_NAME="$1.$2.$3"
fi

command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd is missing; install it: apt-get install -y mosquitto"

umask 077
if [ ! -e "$PASSWD" ]; then
    mkdir -p "$(dirname "$PASSWD")"
    : > "$PASSWD"
fi
if cut -d: -f1 "$PASSWD" | grep -qxF "$USERNAME" && [ "$ROTATE" = 0 ]; then
    die "account '$USERNAME' exists already in $PASSWD; use --rotate to give it a new password"
fi

if [ "$FROM_STDIN" = 1 ]; then
    IFS= read -r PASSWORD || [ -n "${PASSWORD:-}" ] || die "no password on standard input"
else
    command -v openssl >/dev/null || die "openssl is missing (it makes the random password); apt-get install -y openssl"
    PASSWORD=$(openssl rand -base64 33 | tr -d '/+=\n' | cut -c1-32)
fi
[ "${#PASSWORD}" -ge 12 ] || die "the password must have at least 12 characters"
case "$PASSWORD" in *:*) die "the password must not contain ':'" ;; esac

printf '%s\n%s\n' "$PASSWORD" "$PASSWORD" | mosquitto_passwd "$PASSWD" "$USERNAME" >/dev/null
# The broker's container user (not root) reads the file; others do not.
chmod 640 "$PASSWD"

mkdir -p "$SECRETS"
printf '%s\n' "$PASSWORD" > "$SECRETS/$SECRET_NAME.password"
chmod 600 "$SECRETS/$SECRET_NAME.password"

echo "add-gateway: account '$USERNAME' written to $PASSWD"
echo "add-gateway: its password is in $SECRETS/$SECRET_NAME.password"
if [ -z "$ACCOUNT" ]; then
    cat <<EOF

On the gateway: copy that file to /etc/floorwatch/mqtt-password (owner root, group floorwatch,
mode 640) and the CA certificate to /etc/floorwatch/ca.crt; in /etc/floorwatch/gateway.toml:

[mqtt]
url = "mqtts://BROKER-HOST:8883"
username = "$USERNAME"
password_file = "/etc/floorwatch/mqtt-password"
ca_file = "/etc/floorwatch/ca.crt"
EOF
fi
echo
echo "Make the running broker re-read the password file: docker compose kill -s HUP mosquitto"
