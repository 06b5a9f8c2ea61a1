#!/usr/bin/env bash
# User-space instructions per proxied request, Rampart beside nginx, under callgrind.
# Wall-clock runs on the shared 2-core machines move by tens of percent between rounds;
# instruction counts repeat to about 1 %, so they are what speed work steers by (the
# wall-clock ratios in BENCHMARKS.md still decide whether a target is met).
#
#   bench/instructions.sh            # from the repository root, with ../shared beside it
#
# Each proxy runs as one process with one worker (nginx: master_process off, one worker;
# Rampart: workers = 1) under `valgrind --tool=callgrind --instr-atstart=no`; after a warm-up
# instrumentation is switched on with `callgrind_control -i on`, wrk drives the scenario
# for a bounded time and count, and the total instructions (Ir) are divided by the
# requests wrk saw answered. Kernel work is not counted.
#
# Env: SCENARIO=get|post (default get)  SECONDS_RUN=8  CONNS=8  PROFILE=bench-lto
#      TARGETS="nginx rampart" (also rampart_waf: the CRS site's listener)  OUT_DIR=/tmp/rampart-instructions  KEEP=1 (keep callgrind files)
#      WAF_SITE=1 (Rampart also serves a CRS site on another listener, as in bench/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
SHARED=${SHARED:-$ROOT/../shared}
SCENARIO=${SCENARIO:-get}
SECONDS_RUN=${SECONDS_RUN:-8}
CONNS=${CONNS:-8}
PROFILE=${PROFILE:-bench-lto}
OUT_DIR=${OUT_DIR:-/tmp/rampart-instructions}
read -r -a TARGETS <<<"${TARGETS:-nginx rampart}"
RUN="$OUT_DIR/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RUN/nginx/logs" "$RUN/nginx/tmp"

for c in valgrind callgrind_annotate wrk nginx; do
    command -v "$c" >/dev/null || { echo "missing: $c (apt-get install valgrind wrk nginx)" >&2; exit 1; }
done
cargo build --locked --profile "$PROFILE" -p rampart
BIN="$ROOT/target/$PROFILE/rampart"
FTW_PROFILE=0 WORKERS=2 bash "$SHARED/peers/modsec-nginx.sh" start "$SHARED/crs" >/dev/null

cat >"$RUN/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
$(nginx_http_prelude "$RUN/nginx")
    server {
        listen 127.0.0.1:18197;
$(nginx_proxy_location)
    }
}
NGINX
cat >"$RUN/rampart.toml" <<TOML
[edge]
access_log = "off"
workers = 1
[limits]
max_connections_per_ip = 100000
[[tenant]]
id = "bench"
[[listener]]
name = "plain"
bind = "127.0.0.1:18190"
$RAMPART_ORIGIN_POOL
[[site]]
id = "bench"
tenant = "bench"
hosts = ["*"]
listeners = ["plain"]
route = [{ path = "/", pool = "origin" }]
TOML
# The WAF target needs the CRS site.
[[ " ${TARGETS[*]} " == *" rampart_waf "* ]] && WAF_SITE=1
if [[ ${WAF_SITE:-0} = 1 ]]; then
    # As in bench/run.sh: a second site with CRS on a listener of its own, which the
    # measured (plain) requests do not use.
    cat >>"$RUN/rampart.toml" <<TOML
[[listener]]
name = "waf"
bind = "127.0.0.1:18191"
$(rampart_waf_site "$SHARED/crs")
TOML
fi

write_body2k "$RUN/body2k.txt"
case $SCENARIO in
    get | post) scenario_lua "$SCENARIO" "$RUN/body2k.txt" >"$RUN/s.lua" ;;
    *) echo "unknown SCENARIO $SCENARIO" >&2; exit 1 ;;
esac

PID=
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null || true
    bash "$SHARED/peers/modsec-nginx.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
wait_port 18080

measure() { # name port cmd...
    local name=$1 port=$2; shift 2
    local out="$RUN/callgrind.$name"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out.%p" "$@" 2>"$RUN/$name.valgrind" &
    PID=$!
    wait_port "$port"
    timeout 60 wrk -t1 -c"$CONNS" -d3s -s "$RUN/s.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    callgrind_control -i on "$PID" >/dev/null
    timeout $((SECONDS_RUN + 60)) wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" -s "$RUN/s.lua" "http://127.0.0.1:$port/" >"$RUN/$name.wrk" 2>&1 || true
    callgrind_control -i off "$PID" >/dev/null
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
    local reqs ir non2xx
    reqs=$(awk '/requests in/ {print $1}' "$RUN/$name.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$RUN/$name.wrk")
    ir=$(cat "$out".* | awk '/^summary:/ {s += $2} /^totals:/ {t += $2} END {print (s ? s : t)}')
    printf '%-8s %-5s requests=%-7s non2xx=%-5s instructions=%-12s per_request=%s\n' "$name" "$SCENARIO" "$reqs" "${non2xx:-0}" "$ir" \
        "$(awk -v i="$ir" -v r="$reqs" 'BEGIN {printf "%.0f", i / r}')" | tee -a "$RUN/summary.txt"
}

for t in "${TARGETS[@]}"; do
    case $t in
        nginx) measure nginx 18197 nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" ;;
        rampart) RAMPART_LOG=warn measure rampart 18190 "$BIN" serve -c "$RUN/rampart.toml" ;;
        rampart_waf) RAMPART_LOG=warn measure rampart_waf 18191 "$BIN" serve -c "$RUN/rampart.toml" ;;
        *) echo "unknown target $t" >&2; exit 1 ;;
    esac
done
[[ ${KEEP:-0} = 1 ]] || rm -f "$RUN"/callgrind.*
echo "output: $RUN"
