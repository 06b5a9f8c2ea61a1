//! Memory of a rate limit that tracks a million keys: the process's resident set before
//! and after one million distinct keys (addresses) are counted in one in-process store.
//!
//! `cargo run --release -p rampart-policy --example limit_memory [KEYS]`
#![allow(missing_docs)]

use rampart_policy::ratelimit::{Algorithm, Counting, LocalStore};

/// The resident set size in KiB (Linux), 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let keys: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_kib();
    let store = LocalStore::new(
        Counting {
            algorithm: Algorithm::SlidingWindow,
            window_ms: 60_000,
            thresholds: vec![100, 1000],
            hold_ms: vec![0, 600_000],
            distinct: false,
        },
        keys as usize,
    );
    let mut key = Vec::with_capacity(16);
    for i in 0..keys {
        key.clear();
        key.extend_from_slice(
            std::net::Ipv4Addr::from(0x0a00_0000 + i)
                .to_string()
                .as_bytes(),
        );
        store.hit(&key, b"", 1);
    }
    let after = rss_kib();
    println!(
        "keys tracked: {} (evicted {}); tables {:.1} MiB; resident set {:.1} MiB -> {:.1} MiB (+{:.1} MiB)",
        store.len(),
        store.evictions(),
        store.table_bytes() as f64 / 1048576.0,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / 1024.0
    );
}
