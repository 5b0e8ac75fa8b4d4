#!/bin/sh
# Make the TLS certificates of the Floorwatch broker: a private certificate authority (CA), a server
# certificate for the broker's host names, and optionally client certificates (for mutual TLS).
#
#   ./gen-certs.sh --server broker.example.com
#   ./gen-certs.sh --server broker.example.com --san IP:203.0.113.7 --san DNS:mqtt.example.com
#   ./gen-certs.sh --client gw-01            # a client certificate, signed by the existing CA
#   ./gen-certs.sh --out /srv/floorwatch/certs --server broker.example.com
#
# Files (in --out, default ./certs next to this script):
#   ca.crt                    copy to every gateway (/etc/floorwatch/ca.crt) and to the bridge
#   ca.key                    the CA's private key: keep it here, offline if you can (mode 600)
#   server.crt, server.key    the broker's certificate and key (compose.yaml mounts them)
#   clients/NAME.crt/.key     client certificates, for require_certificate true in mosquitto.conf
#
# Re-running never replaces the CA (that would cut off every gateway): it issues new server or client
# certificates signed by the CA that is there. --force-server re-issues an existing server certificate
# (e.g. a new host name). Keys are ECDSA P-256; certificates are valid for --days (default 825 days).
set -eu

OUT=$(dirname "$0")/certs
DAYS=825
CA_DAYS=3650
SERVER=""
SANS=""
CLIENTS=""
FORCE_SERVER=0

die() { echo "gen-certs: $*" >&2; exit 1; }

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

# A name for a file and a certificate subject: letters, digits, '.', '_' and '-'.
check_name() {
    case "$2" in
        ""|*[!A-Za-z0-9._-]*|-*|.*) die "$1 '$2' is not a valid name (letters, digits, '.', '_', '-'; not starting with '-' or '.')" ;;
    esac
}

while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
        --server) [ $# -ge 2 ] || die "--server needs a host name"; SERVER=$2; shift 2 ;;
        --san)
            [ $# -ge 2 ] || die "--san needs e.g. DNS:mqtt.example.com or IP:203.0.113.7"
            case "$2" in
                DNS:?*|IP:?*) SANS="$SANS,$2" ;;
                *) die "--san '$2' must start with DNS: or IP:, e.g. --san IP:203.0.113.7" ;;
            esac
            shift 2 ;;
        --client) [ $# -ge 2 ] || die "--client needs a name"; check_name "client name" "$2"; CLIENTS="$CLIENTS $2"; shift 2 ;;
        --days) [ $# -ge 2 ] || die "--days needs a number"; DAYS=$2; shift 2 ;;
        --force-server) FORCE_SERVER=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

case "$DAYS" in ""|*[!0-9]*) die "--days must be a whole number of days, not '$DAYS'" ;; esac
[ -n "$SERVER" ] || [ -n "$CLIENTS" ] || [ -e "$OUT/server.crt" ] \
    || die "name the broker's host: --server broker.example.com (the name gateways connect to)"
if [ -n "$SERVER" ]; then
    case "$SERVER" in
        *[!A-Za-z0-9.-]*|-*|"") die "--server '$SERVER' is not a host name" ;;
    esac
fi
command -v openssl >/dev/null || die "openssl is missing; install it: apt-get install -y openssl"

umask 077
mkdir -p "$OUT/clients"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# ------------------------------------------------------------------ certificate authority
if [ -e "$OUT/ca.key" ] && [ -e "$OUT/ca.crt" ]; then
    echo "gen-certs: keeping the existing CA $OUT/ca.crt"
elif [ -e "$OUT/ca.key" ] || [ -e "$OUT/ca.crt" ]; then
    die "$OUT has only one of ca.key and ca.crt; restore the other, or move both away to start a new CA"
else
    openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca.key"
    cat > "$TMP/ca.ext" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
O = Floorwatch
CN = Floorwatch broker CA
[v3_ca]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -new -x509 -sha256 -days "$CA_DAYS" -key "$OUT/ca.key" -config "$TMP/ca.ext" -out "$OUT/ca.crt"
    echo "gen-certs: new CA $OUT/ca.crt (valid $CA_DAYS days)"
fi

# sign <name> <subject CN> <extended key usage> <subjectAltName or empty> <key> <cert>
sign() {
    openssl ecparam -name prime256v1 -genkey -noout -out "$5"
    openssl req -new -sha256 -key "$5" -subj "/O=Floorwatch/CN=$2" -out "$TMP/$1.csr"
    {
        echo "basicConstraints = critical, CA:false"
        echo "keyUsage = critical, digitalSignature, keyAgreement"
        echo "extendedKeyUsage = $3"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
        if [ -n "$4" ]; then echo "subjectAltName = $4"; fi
    } > "$TMP/$1.ext"
    openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/$1.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" \
        -CAcreateserial -CAserial "$OUT/ca.srl" -extfile "$TMP/$1.ext" -out "$6" 2>/dev/null
    openssl verify -CAfile "$OUT/ca.crt" "$6" >/dev/null
}

# ------------------------------------------------------------------ server certificate
if [ -n "$SERVER" ]; then
    if [ -e "$OUT/server.crt" ] && [ "$FORCE_SERVER" = 0 ]; then
        echo "gen-certs: keeping the existing $OUT/server.crt (--force-server to issue it again)"
    else
        # Always included: "mosquitto", the name the bridge uses inside compose.yaml's network, and
        # localhost, so that a check on the broker's own host verifies.
        sign server "$SERVER" serverAuth "DNS:$SERVER,DNS:mosquitto,DNS:localhost,IP:127.0.0.1$SANS" \
            "$OUT/server.key" "$OUT/server.crt"
        echo "gen-certs: server certificate $OUT/server.crt for $SERVER$SANS"
    fi
fi

# ------------------------------------------------------------------ client certificates
for client in $CLIENTS; do
    sign "client-$client" "$client" clientAuth "" "$OUT/clients/$client.key" "$OUT/clients/$client.crt"
    echo "gen-certs: client certificate $OUT/clients/$client.crt"
done

# The broker's container user must read its key; the CA key stays private.
chmod 600 "$OUT/ca.key"
chmod 644 "$OUT/ca.crt"
[ -e "$OUT/server.crt" ] && chmod 644 "$OUT/server.crt"
[ -e "$OUT/server.key" ] && chmod 640 "$OUT/server.key"
exit 0
