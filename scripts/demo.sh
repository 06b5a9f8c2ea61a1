#!/usr/bin/env bash
# Rampart demo: installs what is missing, builds Rampart, and runs it in front of a
# small sample origin on custom ports (8080 plain, 8443 TLS with a generated
# certificate, admin on 9901). Ctrl-C stops everything.
#
#   ./scripts/demo.sh                 # runs until Ctrl-C
#   DEMO_SECONDS=20 ./scripts/demo.sh # stops by itself (used to test this script)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO_DIR="$ROOT/target/demo"
CONF_SRC="$ROOT/examples/demo/rampart-demo.toml"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- what is missing ------------------------------------------------------------------
need=()
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
[[ -d /usr/share/modsecurity-crs/rules ]] || need+=(modsecurity-crs)
if ((${#need[@]})); then
    say "installing ${need[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "cargo is missing: Rampart needs a Rust toolchain (1.85 or newer) on PATH" >&2
    exit 1
fi

for port in 8080 8443 9901 9080 9081; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use; stop what listens there and try again" >&2
        exit 1
    fi
done

say "building Rampart (release)"
cargo build --release --locked -p rampart
BIN="$ROOT/target/release/rampart"

mkdir -p "$DEMO_DIR/certs"
cp "$CONF_SRC" "$DEMO_DIR/rampart.toml"
if [[ ! -s $DEMO_DIR/certs/localhost.crt ]]; then
    say "generating a self-signed certificate for localhost"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$DEMO_DIR/certs/localhost.key" -out "$DEMO_DIR/certs/localhost.crt" 2>/dev/null
fi

# Free country and ASN databases (npm; once, kept in target/geo). The demo runs without
# them if the npm registry cannot be reached.
if [[ ! -s $ROOT/target/geo/asn.mmdb ]]; then
    say "installing free country and ASN databases (scripts/geo.sh)"
    "$ROOT/scripts/geo.sh" "$ROOT/target/geo" "$BIN" || say "no geo databases: continuing without [geo]"
fi
if [[ -s $ROOT/target/geo/asn.mmdb && -s $ROOT/target/geo/country.mmdb ]]; then
    printf '\n[geo]\ncountry = ["../geo/country.mmdb"]\nasn = ["../geo/asn.mmdb"]\n' >>"$DEMO_DIR/rampart.toml"
fi

"$BIN" check -c "$DEMO_DIR/rampart.toml"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "starting the sample origin on 127.0.0.1:9080 and :9081"
python3 "$ROOT/examples/demo/origin.py" --port 9080 --name origin-1 & pids+=($!)
python3 "$ROOT/examples/demo/origin.py" --port 9081 --name origin-2 & pids+=($!)

say "starting Rampart (access log on stdout, diagnostics on stderr)"
"$BIN" serve -c "$DEMO_DIR/rampart.toml" & pids+=($!)
for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    sleep 0.1
done

cat <<TXT

Rampart is protecting the sample origin. Try:

  curl -i http://localhost:8080/                       # proxied, with X-Request-Id
  curl -s http://localhost:8080/api/whoami             # what the origin saw (X-Forwarded-*)
  curl -sk --http2 https://localhost:8443/api/whoami   # TLS + HTTP/2 (self-signed certificate)
  curl -i http://localhost:8080/ -H 'Host: unknown.example'        # 404 page with request id
  curl -i http://localhost:8080/ -H 'Accept: application/json' -H 'Host: nope'  # JSON error
  bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080; printf "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" >&3; cat <&3'
                                                       # request smuggling attempt (CL.TE): 400
  curl -i "http://localhost:8080/search?q=1'%20UNION%20SELECT%20password%20FROM%20users--"
                                                       # SQL injection: 403 from the WAF (OWASP CRS)
  tail -n1 $DEMO_DIR/security.log                     # its security event (JSON, ECS names)
  for i in 1 2 3 4 5 6 7; do curl -s -o /dev/null -w '%{http_code} ' -X POST http://localhost:8080/login; done; echo
                                                       # login limit per /24: 200 x5, then 429 for a minute
  curl -i http://localhost:8080/admin/                 # 403: the admin area only from the office list
  printf 'GET /admin/ HTTP/1.1\r\nHost: localhost\r\n\r\n' | $BIN explain -c $DEMO_DIR/rampart.toml --client-ip 192.0.2.10
                                                       # the decision trace for an office address (passes)
  printf 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n' | $BIN explain -c $DEMO_DIR/rampart.toml --client-ip 175.45.176.1
                                                       # a KP address: denied by the embargo list (with [geo])
  $BIN report $DEMO_DIR/security.log                  # blocked requests per day, rule and limit
  curl -s http://127.0.0.1:9901/metrics | grep rampart_http_requests_total
  kill -HUP $(pgrep -f "rampart serve -c $DEMO_DIR")   # reload the configuration

Edit $DEMO_DIR/rampart.toml and send SIGHUP (or run
'$BIN reload -c $DEMO_DIR/rampart.toml') to apply changes live.
Ctrl-C stops the demo.
TXT

if [[ -n ${DEMO_SECONDS:-} ]]; then
    sleep "$DEMO_SECONDS"
    say "demo time is up (DEMO_SECONDS=$DEMO_SECONDS)"
else
    wait
fi
