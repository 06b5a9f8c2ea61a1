#!/usr/bin/env bash
# Rampart's whole test command: installs what is missing, then runs every quality gate
# and every test. CI (.ci/run) calls exactly this.
#
#   ./scripts/test.sh
#
# Gates, in order: rustfmt, clippy (-D warnings), cargo deny (licences, bans, sources),
# the unit and integration tests (cargo nextest; doc tests with cargo test --doc).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# --- what is missing ------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
    echo "cargo is missing: Rampart needs a Rust toolchain (1.85 or newer) on PATH" >&2
    exit 1
fi
for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
        say "installing the $comp component"
        rustup component add "$comp"
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (from crates.io)"
    cargo install --locked cargo-nextest
fi
if ! cargo deny --version >/dev/null 2>&1; then
    say "installing cargo-deny (from crates.io; a few minutes, once)"
    cargo install --locked cargo-deny
fi

# CRS 3.3 as Debian packages it: the WAF engine's tests load it (crates/rampart-waf/tests/crs33.rs).
if [ ! -d /usr/share/modsecurity-crs/rules ]; then
    say "installing Debian's modsecurity-crs (CRS 3.3, for the WAF tests)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends modsecurity-crs >/dev/null
fi

# ModSecurity v3's library: its libinjection is the reference of the @detectSQLi/@detectXSS
# differential test (crates/rampart-waf/tests/libinjection_differential.rs, via python3).
if [ ! -e /usr/lib/x86_64-linux-gnu/libmodsecurity.so.3 ] || ! command -v python3 >/dev/null; then
    say "installing Debian's libmodsecurity3 and python3 (the libinjection reference)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libmodsecurity3 python3 >/dev/null
fi

# Redis: the shared rate-limit counters' tests start their own redis-server processes
# (crates/rampart/tests/redis_cluster.rs).
if ! command -v redis-server >/dev/null; then
    say "installing Debian's redis-server (for the shared rate-limit tests)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    # The package starts a system-wide server where it can; the tests use their own.
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
        $SUDO systemctl stop redis-server || true
    fi
fi

# Headless Chromium driven by playwright-core: the challenge page in a real browser
# (crates/rampart/tests/browser.rs). Chromium is Debian's; playwright-core comes from npm,
# pinned by tools/browser/package-lock.json.
if ! command -v chromium >/dev/null || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing Debian's chromium, nodejs and npm (the browser tests)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium nodejs npm >/dev/null
fi
if [ ! -d tools/browser/node_modules/playwright-core ]; then
    say "installing playwright-core (npm, into tools/browser)"
    (cd tools/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- gates ----------------------------------------------------------------------------
say "rustfmt"
cargo fmt --all -- --check

say "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo deny (licences, duplicate versions, sources)"
cargo deny --log-level error check licenses bans sources

say "doc tests"
cargo test --workspace --doc --locked --quiet

say "tests"
cargo nextest run --workspace --locked --no-fail-fast
