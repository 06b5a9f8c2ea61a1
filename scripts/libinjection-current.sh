#!/usr/bin/env bash
# Holds @detectSQLi / @detectXSS to libinjection's current sources, beyond what the test
# command can (it compares with the libinjection 3.10 inside Debian's ModSecurity, and
# the test machines cannot download libinjection itself):
#
#   ./scripts/libinjection-current.sh PATH/TO/libinjection-checkout
#
# Builds the C library from the checkout's src/, then runs, against it, the differential
# test (the CRS values, generated SQL and HTML, mutations, and the checkout's data/
# samples) and libinjection's own test vectors (tests/test-*.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:?usage: $0 LIBINJECTION_CHECKOUT}"
src="$(cd "$src" && pwd)"
for f in libinjection_sqli.c libinjection_xss.c libinjection_html5.c; do
    [ -f "$src/src/$f" ] || { echo "$src/src/$f is missing: not a libinjection checkout" >&2; exit 1; }
done
command -v gcc >/dev/null || { echo "gcc is needed to build libinjection" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
version="$(git -C "$src" describe --tags --always 2>/dev/null || echo checkout)"
gcc -O2 -shared -fPIC -DLIBINJECTION_VERSION="\"$version\"" -o "$out/libinjection.so" \
    "$src/src/libinjection_sqli.c" "$src/src/libinjection_xss.c" "$src/src/libinjection_html5.c"
RAMPART_LIBINJECTION_CURRENT="$out/libinjection.so" RAMPART_LIBINJECTION_SOURCE="$src" \
    cargo test -p rampart-waf --test libinjection_differential --test libinjection_vectors \
    -- --include-ignored --nocapture
