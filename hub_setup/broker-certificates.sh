#!/usr/bin/env bash
# The federation broker's TLS certificate, from a certificate authority of its own:
#
#   hub_setup/broker-certificates.sh DIR HOST
#
# HOST is the name or IP address the benches dial (the one in their
# mqtts://HOST:8883/... address). Writes DIR/ca.crt (give it to every bench:
# its FEDERATION_CA_FILE setting), DIR/server.crt and DIR/server.key. The
# authority's own key signs this one certificate and is deleted: nobody who
# later gets the broker's disk can make a second certificate the benches
# would trust. An existing certificate is kept (delete the three files to
# make new ones, then give the benches the new ca.crt).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR HOST" >&2; exit 2; }
dir=$1
host=$2
[[ $host =~ ^[A-Za-z0-9.:-]+$ ]] || { echo "$0: HOST must be a host name or an IP address (got '$host')" >&2; exit 2; }
if [ -s "$dir/server.crt" ] && [ -s "$dir/server.key" ] && [ -s "$dir/ca.crt" ]; then
  echo "broker-certificates.sh: $dir already has a certificate: kept"
  exit 0
fi
if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
  san="IP:$host"
else
  san="DNS:$host"
fi
mkdir -p "$dir"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=Safe Bench federation broker CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$work/extensions"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 3650 -extfile "$work/extensions" -out "$work/server.crt" 2>/dev/null
# The authority's key goes with $work: it signed this certificate and nothing else ever.
cp "$work/server.key" "$work/server.crt" "$dir/"
cp "$work/ca.crt" "$dir/ca.crt"
chmod 0644 "$dir/ca.crt" "$dir/server.crt"
echo "broker-certificates.sh: $dir/server.crt for $host; give every bench $dir/ca.crt"
