#!/bin/bash
# Runs once, on InfluxDB's first start (the influxdb:2 image runs /docker-entrypoint-initdb.d/ after
# its setup, with the admin token configured for the influx CLI):
# - maps the InfluxQL database/retention policy the dashboards query ("floorwatch"/"autogen") to the
#   bucket the bridge writes;
# - makes a write-only token for the bridge and a read-only token for Grafana, both for that bucket
#   alone, into the floorwatch-tokens volume (never the admin token).
set -euo pipefail

TOKENS=/run/floorwatch-tokens
ORG=${DOCKER_INFLUXDB_INIT_ORG:?}
BUCKET=${DOCKER_INFLUXDB_INIT_BUCKET:?}

# The entrypoint configured the influx CLI during setup; the admin token is given again in case not.
export INFLUX_TOKEN="${INFLUX_TOKEN:-${DOCKER_INFLUXDB_INIT_ADMIN_TOKEN:?}}"

# json_value KEY: the first "KEY": "value" of the influx CLI's --json output on stdin
json_value() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

bucket_id=$(influx bucket list --org "$ORG" --name "$BUCKET" --json | json_value id)
[ -n "$bucket_id" ] || { echo "init-floorwatch: bucket $BUCKET not found" >&2; exit 1; }

influx v1 dbrp create --org "$ORG" --db floorwatch --rp autogen --bucket-id "$bucket_id" --default

# token_of "description" flags...: create an authorization and print its token
token_of() {
    local description=$1
    shift
    influx auth create --org "$ORG" --description "$description" "$@" --json | json_value token
}

mkdir -p "$TOKENS"
umask 022
token_of "floorwatch bridge (write)" --write-bucket "$bucket_id" > "$TOKENS/write.token.new"
token_of "floorwatch grafana (read)" --read-bucket "$bucket_id" > "$TOKENS/read.token.new"
for t in write read; do
    [ -s "$TOKENS/$t.token.new" ] || { echo "init-floorwatch: no $t token was made" >&2; exit 1; }
    mv "$TOKENS/$t.token.new" "$TOKENS/$t.token"
done
# Readable by the bridge's and Grafana's users; the volume is mounted into those containers only.
chmod 0644 "$TOKENS/write.token" "$TOKENS/read.token"
echo "init-floorwatch: InfluxQL mapping floorwatch/autogen -> $BUCKET, tokens in $TOKENS"
