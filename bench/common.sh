# Pieces the benchmark scripts share (sourced by bench/run.sh and bench/instructions.sh):
# the nginx proxy configuration they measure Rampart against, the 2 KiB form body and
# the request headers every wrk scenario sends.

# nginx_http_prelude DIR: the start of an nginx `http` block as the peers' bare proxy has
# it (no access log, temporary files under DIR/tmp, origin keep-alive pool of 64).
nginx_http_prelude() {
    cat <<NGINX
    access_log off;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    keepalive_requests 100000;
    upstream origin { server 127.0.0.1:18080; keepalive 64; }
NGINX
}

# nginx_proxy_location: forward everything to the origin over keep-alive HTTP/1.1.
nginx_proxy_location() {
    cat <<'NGINX'
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
NGINX
}

# write_body2k FILE: the 2 KiB urlencoded form of the `post` scenario.
write_body2k() {
    python3 - "$1" <<'PY'
import sys
body = "&".join("field%02d=%s" % (i, "alpha+bravo+charlie+delta") for i in range(1, 200))
body = body[:2040]
body += "&pad=" + "x" * (2048 - len(body) - 5)
assert len(body) == 2048
open(sys.argv[1], "w").write(body)
PY
}

# The request headers of every scenario, as wrk Lua.
WRK_HEADERS='wrk.headers["Host"] = "localhost"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) bench"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"'

# scenario_lua NAME BODY_FILE: the wrk script of a scenario (get, newconn, attack, post,
# getkeys).
scenario_lua() {
    case $1 in
        get) printf 'wrk.method = "GET"\nwrk.path = "/index.html?q=hello"\n%s\n' "$WRK_HEADERS" ;;
        newconn) printf 'wrk.method = "GET"\nwrk.path = "/index.html?q=hello"\n%s\nwrk.headers["Connection"] = "close"\n' "$WRK_HEADERS" ;;
        attack) printf 'wrk.method = "GET"\nwrk.path = "/index.html?q=1%%27%%20UNION%%20SELECT%%20password%%20FROM%%20users--"\n%s\n' "$WRK_HEADERS" ;;
        post) printf 'wrk.method = "POST"\nwrk.path = "/submit"\n%s\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nlocal f = assert(io.open("%s", "rb"))\nwrk.body = f:read("*a")\nf:close()\n' "$WRK_HEADERS" "$2" ;;
        # GETs each with one of 100,000 user ids: as many rate-limit keys (rampart_rl*).
        getkeys) printf 'wrk.method = "GET"\n%s\nrequest = function()\n  return wrk.format(nil, "/index.html?q=hello&u=" .. math.random(1, 100000))\nend\n' "$WRK_HEADERS" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

# The origin pool every Rampart benchmark configuration forwards to.
RAMPART_ORIGIN_POOL='[[pool]]
id = "origin"
tenant = "bench"
servers = ["127.0.0.1:18080"]'

# rampart_flood_off: wrk from one address at full speed is a flood by definition, and
# the automatic flood mitigation would challenge it; detection is set out of reach while
# the per-request counting and sampling (the cost measured) stay on.
rampart_flood_off() {
    cat <<TOML
[site.flood]
factor = 1000.0
suspect_factor = 1000.0
TOML
}

# rampart_waf_site CRS_DIR: the site with CRS (paranoia 1, enforce) that Rampart serves on
# its listener named `waf` in the WAF benchmarks.
rampart_waf_site() {
    cat <<TOML
[[site]]
id = "bench-waf"
tenant = "bench"
hosts = ["*"]
listeners = ["waf"]
route = [{ path = "/", pool = "origin" }]
$(rampart_flood_off)
[site.waf]
rules = "$1"
paranoia_level = 1
mode = "enforce"
TOML
}

# sched_group PID: the CPU-scheduling group a process runs in (its autogroup, which is its
# session when the kernel's autogroup scheduling is on; else its session id).
sched_group() {
    local g
    g=$(cut -d' ' -f1 "/proc/$1/autogroup" 2>/dev/null) && [[ -n $g ]] && { echo "${g#/}"; return; }
    echo "sid-$(ps -o sid= -p "$1" | xargs)"
}

# rampart_rl_site LISTENER BACKEND: a site on LISTENER with a rate limit per client address
# (requests without a `u` argument: with wrk from one address, one key) and one per `u`
# argument (the getkeys scenario: 100,000 keys), counters kept in BACKEND (local or
# redis); thresholds are never reached, so every request pays one check and is forwarded.
rampart_rl_site() {
    cat <<TOML
[[site]]
id = "bench-$1"
tenant = "bench"
hosts = ["*"]
listeners = ["$1"]
route = [{ path = "/", pool = "origin" }]
$(rampart_flood_off)
[site.policy]
[[site.policy.limit]]
name = "per-ip"
filter = 'not any(http.request.uri.args.names[*] == "u")'
key = ["ip.src"]
window = "10s"
backend = "$2"
threshold = [{ above = 1000000000, action = "block" }]
[[site.policy.limit]]
name = "per-user"
key = ['http.request.uri.args["u"]']
window = "10s"
backend = "$2"
threshold = [{ above = 1000000000, action = "block" }]
TOML
}
