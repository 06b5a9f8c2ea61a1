#!/usr/bin/env bash
# Side-by-side benchmark: Rampart and nginx as bare reverse proxies in front of the same
# origin, measured in the same run with wrk. Loopback only; every wrk run is bounded in
# time and in request count.
#
#   bench/run.sh                     # from the repository root, with ../shared beside it
#
# Targets (all proxy to the peer origin on 127.0.0.1:18080, nginx `return 200`):
#   nginx      127.0.0.1:18097  bare nginx proxy (configured as the peers' bare proxy on :18082,
#                               but in its own nginx instance so its CPU is the proxy's alone)
#   rampart    127.0.0.1:18090  Rampart, plain
#   nginx_tls  127.0.0.1:18096  nginx, TLS (same instance, same certificate as Rampart)
#   rampart_tls 127.0.0.1:18093 Rampart, TLS
#   rampart_waf 127.0.0.1:18091 Rampart with the OWASP CRS v4 (../shared/crs) at paranoia 1,
#                               blocking (inbound threshold 5), request bodies inspected
#   modsec     127.0.0.1:18081  nginx + ModSecurity v3 + the same CRS, paranoia 1, blocking
#                               (the peers' instance: its CPU figure includes the origin's)
#   rampart_rl 127.0.0.1:18094  Rampart with a rate limit per client address (get: one key) and
#                               one per user argument (getkeys: 100,000 keys), kept in process
#                               (thresholds never reached: the cost of the check itself)
#   rampart_rl_redis 127.0.0.1:18095  the same limit kept in Redis (a redis-server this script
#                               starts on 127.0.0.1:18379, persistence off)
# The origin is the peer origin of ../shared/peers/modsec-nginx.sh (nginx `return 200`).
# Both proxies run 2 workers (nginx worker_processes 2; Rampart workers = 2), access logs off.
# Scenarios: get (keep-alive GET /index.html?q=hello), post (2 KiB urlencoded POST,
# keep-alive), newconn (GET with Connection: close: a new TCP (+TLS) connection per request),
# attack (keep-alive GET with an SQL injection in the query: 403 from the WAFs),
# getkeys (keep-alive GETs, each with one of 100,000 user ids: for the rate-limit targets).
#
# Env: TARGETS="nginx rampart nginx_tls rampart_tls" SCENARIOS="get post newconn"
#      THREADS=2 CONNS=64 DURATION=10 ROUNDS=2 WARMUP=2 MAX_REQ=2000000 OUT_DIR=/tmp/rampart-bench
#      PROFILE=bench-lto (cargo profile used to build Rampart)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
SHARED=${SHARED:-$ROOT/../shared}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2}
MAX_REQ=${MAX_REQ:-2000000}
PROFILE=${PROFILE:-bench-lto}
OUT_DIR=${OUT_DIR:-/tmp/rampart-bench}
TS=$(date -u +%Y%m%dT%H%M%SZ)
RUN="$OUT_DIR/$TS"
mkdir -p "$RUN/raw" "$RUN/nginx-tls/logs" "$RUN/nginx-tls/tmp"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v nginx >/dev/null || need+=(nginx)
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "building rampart (profile $PROFILE)"
cargo build --locked --profile "$PROFILE" -p rampart
BIN="$ROOT/target/$PROFILE/rampart"

FTW_PROFILE=0 bash "$SHARED/peers/modsec-nginx.sh" start "$SHARED/crs"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost" -keyout "$RUN/localhost.key" -out "$RUN/localhost.crt" 2>/dev/null

cat >"$RUN/nginx-tls/nginx.conf" <<NGINX
worker_processes 2;
pid $RUN/nginx-tls/nginx.pid;
error_log $RUN/nginx-tls/logs/error.log warn;
events { worker_connections 4096; }
http {
$(nginx_http_prelude "$RUN/nginx-tls")
    server {
        listen 127.0.0.1:18097 backlog=4096;
$(nginx_proxy_location)
    }
    server {
        listen 127.0.0.1:18096 ssl backlog=4096;
        ssl_certificate $RUN/localhost.crt;
        ssl_certificate_key $RUN/localhost.key;
        ssl_protocols TLSv1.2 TLSv1.3;
$(nginx_proxy_location)
    }
}
NGINX
nginx -p "$RUN/nginx-tls" -c "$RUN/nginx-tls/nginx.conf"

cat >"$RUN/rampart.toml" <<TOML
[edge]
access_log = "off"
security_log = "$RUN/security.log"
workers = 2
[limits]
max_connections_per_ip = 100000
[[tenant]]
id = "bench"
[[listener]]
name = "plain"
bind = "127.0.0.1:18090"
[[listener]]
name = "tls"
bind = "127.0.0.1:18093"
tls = true
[[listener]]
name = "waf"
bind = "127.0.0.1:18091"
[[listener]]
name = "rl"
bind = "127.0.0.1:18094"
[[listener]]
name = "rl_redis"
bind = "127.0.0.1:18095"
[redis]
address = "127.0.0.1:18379"
timeout = "100ms"
[[certificate]]
name = "localhost"
cert = "$RUN/localhost.crt"
key = "$RUN/localhost.key"
default = true
$RAMPART_ORIGIN_POOL
[[site]]
id = "bench"
tenant = "bench"
hosts = ["*"]
listeners = ["plain", "tls"]
route = [{ path = "/", pool = "origin" }]
$(rampart_flood_off)
$(rampart_waf_site "$SHARED/crs")
$(rampart_rl_site rl local)
$(rampart_rl_site rl_redis redis)
TOML
redis-server --port 18379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$RUN/redis.pid" --dir "$RUN" --logfile "$RUN/redis.log"
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/18379) 2>/dev/null && break; sleep 0.1; done
RAMPART_CONF="$RUN/rampart.toml"
"$BIN" check -c "$RAMPART_CONF"
# Every proxy runs in a session of its own, as a service does: nginx puts itself in one
# when it daemonizes (setsid), and with the kernel's autogroup scheduling (on in Debian's
# kernels) a session is a CPU-scheduling group. Left in this script's session, Rampart
# would share one group with wrk and compete with its own load generator for that group's
# share, while the origin ran in a group of its own: that asymmetry alone gave Rampart
# 50-70 ms stalls and a 2x p99 in earlier runs (BENCHMARKS.md, "The tail").
setsid env RAMPART_LOG=warn "$BIN" serve -c "$RAMPART_CONF" 2>"$RUN/rampart.err" &
RAMPART_PID=$!

cleanup() {
    kill "$RAMPART_PID" 2>/dev/null || true
    [[ -f $RUN/redis.pid ]] && kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
    [[ -f $RUN/nginx-tls/nginx.pid ]] && kill "$(cat "$RUN/nginx-tls/nginx.pid")" 2>/dev/null || true
    bash "$SHARED/peers/modsec-nginx.sh" stop || true
}
trap cleanup EXIT
sleep 0.2
[[ $(readlink "/proc/$RAMPART_PID/exe" 2>/dev/null) == "$(readlink -f "$BIN")" ]] \
    || { echo "rampart did not start as pid $RAMPART_PID (see $RUN/rampart.err)" >&2; exit 1; }

for port in 18090 18091 18093 18094 18095 18096 18097 18080 18081; do
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

declare -A URL=(
    [nginx]="http://127.0.0.1:18097" [rampart]="http://127.0.0.1:18090"
    [nginx_tls]="https://127.0.0.1:18096" [rampart_tls]="https://127.0.0.1:18093"
    [rampart_waf]="http://127.0.0.1:18091" [modsec]="http://127.0.0.1:18081"
    [rampart_rl]="http://127.0.0.1:18094" [rampart_rl_redis]="http://127.0.0.1:18095"
)
read -r -a TARGETS <<<"${TARGETS:-nginx rampart nginx_tls rampart_tls}"
read -r -a SCENARIOS <<<"${SCENARIOS:-get post newconn}"

pids_of() { # target -> pids whose CPU and memory count
    case $1 in
        nginx*) local m; m=$(cat "$RUN/nginx-tls/nginx.pid"); echo "$m $(pgrep -P "$m" | xargs)" ;;
        rampart*) echo "$RAMPART_PID" ;;
        modsec) local m; m=$(cat "${PEER_DIR:-/tmp/peer-modsec}/nginx.pid"); echo "$m $(pgrep -P "$m" | xargs)" ;;
    esac
}
cpu_ticks() { # pids [field] -> user+system ticks (or field 14 = user, 15 = system)
    local t=0 p
    for p in $1; do
        t=$((t + $(awk -v f="${2:-0}" '{print f ? $f : $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo $t
}
rss_kib() { local t=0 p; for p in $1; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }

write_body2k "$RUN/body2k.txt"
per_thread=$(( (MAX_REQ + THREADS - 1) / THREADS ))
stop_lua="local n = 0
function response(status, headers, body)
  n = n + 1
  if n >= $per_thread then wrk.thread:stop() end
end"
for s in get newconn attack post getkeys; do
    { scenario_lua "$s" "$RUN/body2k.txt"; printf '%s\n' "$stop_lua"; } >"$RUN/$s.lua"
done

run_wrk() { # scenario target seconds out
    local path=/index.html
    timeout $(( $3 + 20 )) wrk -t "$THREADS" -c "$CONNS" -d "${3}s" --latency -s "$RUN/$1.lua" "${URL[$2]}$path" >"$4" 2>&1 || true
}

{
    echo "date_utc=$TS host=$(hostname) cpus=$(nproc) model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "threads=$THREADS conns=$CONNS duration=${DURATION}s rounds=$ROUNDS max_req=$MAX_REQ profile=$PROFILE"
    echo "nginx=$(nginx -v 2>&1 | sed 's/.*\///') wrk=$(dpkg-query -W -f='${Version}' wrk 2>/dev/null) rampart=$(git -C "$ROOT" rev-parse --short HEAD)"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "sched_groups: wrk=$(sched_group $$) rampart=$(sched_group "$RAMPART_PID") nginx=$(sched_group "$(cat "$RUN/nginx-tls/nginx.pid")") origin=$(sched_group "$(cat "${PEER_DIR:-/tmp/peer-modsec}/nginx.pid")")"
} | tee "$RUN/meta.txt"

echo "warm-up"
for s in "${SCENARIOS[@]}"; do for t in "${TARGETS[@]}"; do run_wrk "$s" "$t" "$WARMUP" /dev/null; done; done

for r in $(seq 1 "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        for t in "${TARGETS[@]}"; do
            pids=$(pids_of "$t")
            c0=$(cpu_ticks "$pids")
            s0=$(cpu_ticks "$pids" 15)
            run_wrk "$s" "$t" "$DURATION" "$RUN/raw/r$r-$s-$t.txt"
            c1=$(cpu_ticks "$pids")
            s1=$(cpu_ticks "$pids" 15)
            echo "cpu_ticks=$((c1 - c0)) sys_ticks=$((s1 - s0)) clk_tck=$(getconf CLK_TCK) rss_kib=$(rss_kib "$pids")" >>"$RUN/raw/r$r-$s-$t.txt"
            echo "round $r $s $t: $(grep -E 'Requests/sec' "$RUN/raw/r$r-$s-$t.txt" | xargs)"
        done
    done
done
echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RUN/meta.txt"

python3 "$ROOT/bench/summarize.py" "$RUN" | tee "$RUN/summary.md"
echo "raw output: $RUN"
