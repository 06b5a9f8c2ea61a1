#!/usr/bin/env bash
# Installs free country and ASN databases in MaxMind format for Rampart's [geo]:
#   - countries: ip-location-db's geo-whois-asn-country (npm @ip-location-db/geo-whois-asn-country-mmdb,
#     CC0), used as it is;
#   - autonomous systems: ip-location-db's ASN tables (npm @ip-location-db/asn, CSV), turned
#     into a MaxMind database by `rampart geo asn-mmdb`.
# Only the npm registry is used. The files land in DIR (default target/geo) and are kept:
# run it again to refresh them.
#
#   ./scripts/geo.sh [DIR] [RAMPART_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-target/geo}
BIN=${2:-target/release/rampart}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

if ! command -v npm >/dev/null; then
    echo "==> installing npm (apt)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
if [[ ! -x $BIN ]]; then
    cargo build --release --locked -p rampart
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for pkg in @ip-location-db/geo-whois-asn-country-mmdb @ip-location-db/asn; do
    echo "==> fetching $pkg (npm)"
    npm pack --silent "$pkg" >/dev/null
done
for t in *.tgz; do tar xzf "$t" && mv package "${t%.tgz}"; done
cp ip-location-db-geo-whois-asn-country-mmdb-*/geo-whois-asn-country.mmdb "$DIR/country.mmdb"
"$BIN" geo asn-mmdb --csv ip-location-db-asn-*/asn-ipv4.csv --csv ip-location-db-asn-*/asn-ipv6.csv \
    -o "$DIR/asn.mmdb"
echo "==> $DIR/country.mmdb and $DIR/asn.mmdb are ready (licences: ip-location-db's CC0 / its sources')"
