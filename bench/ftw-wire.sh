#!/usr/bin/env bash
# The CRS v4 regression suite over the wire, through a running Rampart edge: the same
# go-ftw YAML cases the in-process ratchet runs, sent byte for byte over loopback by
# ../shared/peers/ftw_run.py, with the rule ids read back from Rampart's security log.
#
#   bench/ftw-wire.sh            # from the repository root, with ../shared beside it
#
# Set-up, as CRS's own CI configures it: paranoia level 4, nothing blocked (monitor mode),
# the test variables of CRS's SecAction 900005, a marker rule 999999 that logs the
# X-CRS-Test header (tagged '999999' so the reader finds it), and the /reflect backend
# (../shared/peers/reflect_origin.py) behind the edge. Output: the runner's summary and a
# JSON report under $OUT_DIR.
#
# Env: OUT_DIR=/tmp/rampart-ftw-wire PORT=18190 REFLECT_PORT=18194 PROFILE=release
#      MAX_SECONDS=1800 EXTRA_ARGS (passed to ftw_run.py, e.g. "--include 942")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${SHARED:-$ROOT/../shared}
OUT_DIR=${OUT_DIR:-/tmp/rampart-ftw-wire}
PORT=${PORT:-18190}
REFLECT_PORT=${REFLECT_PORT:-18194}
PROFILE=${PROFILE:-release}
MAX_SECONDS=${MAX_SECONDS:-1800}
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"

cargo build --locked --profile "$PROFILE" -p rampart
BIN="$ROOT/target/$PROFILE/rampart"

cat >"$OUT_DIR/ftw.conf" <<'SECLANG'
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleRemoveById=910000,setvar:tx.blocking_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"
SecRule REQUEST_HEADERS:X-CRS-Test "@rx ^.*$" "id:999999,phase:1,pass,log,t:none,tag:'999999',msg:'%{MATCHED_VAR}'"
SECLANG

cat >"$OUT_DIR/rampart.toml" <<TOML
[edge]
access_log = "off"
security_log = "$OUT_DIR/security.log"
[limits]
max_connections_per_ip = 100000
[[tenant]]
id = "ftw"
[[listener]]
name = "ftw"
bind = "127.0.0.1:$PORT"
[[pool]]
id = "reflect"
tenant = "ftw"
servers = ["127.0.0.1:$REFLECT_PORT"]
[[site]]
id = "ftw"
tenant = "ftw"
hosts = ["*"]
route = [{ path = "/", pool = "reflect" }]
[site.waf]
rules = "$SHARED/crs"
paranoia_level = 4
mode = "monitor"
body_limit = "12MiB"
exclusion_files = ["ftw.conf"]
TOML
"$BIN" check -c "$OUT_DIR/rampart.toml"

python3 "$SHARED/peers/reflect_origin.py" --host 127.0.0.1 --port "$REFLECT_PORT" &
REFLECT_PID=$!
RAMPART_LOG=error "$BIN" serve -c "$OUT_DIR/rampart.toml" 2>"$OUT_DIR/rampart.err" &
RAMPART_PID=$!
cleanup() { kill "$RAMPART_PID" "$REFLECT_PID" 2>/dev/null || true; }
trap cleanup EXIT
for p in "$PORT" "$REFLECT_PORT"; do
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
touch "$OUT_DIR/security.log"

# The marker lines carry the tag "999999"; rule ids are the events' "id" fields.
# shellcheck disable=SC2086
FTW_LOG="$OUT_DIR/security.log" FTW_ID_REGEX='"id":(\d+)' FTW_MARKER_ID=999999 \
    timeout $((MAX_SECONDS + 60)) python3 "$SHARED/peers/ftw_run.py" \
    --tests "$SHARED/crs/tests/regression/tests" \
    --port "$PORT" --max-seconds "$MAX_SECONDS" \
    --reader "py:$SHARED/peers/ftw_reader_example.py:make_regex_reader" \
    --out "$OUT_DIR/report.json" ${EXTRA_ARGS:-} | tee "$OUT_DIR/summary.txt"
