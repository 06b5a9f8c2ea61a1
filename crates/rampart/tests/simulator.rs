//! A short, small run of the attack simulator (`crates/rampart-sim`) in the test suite:
//! `rampart serve` on TLS, the sample origin, 150 browser-like users and an office
//! behind one address, then (a) credential stuffing and (e) challenge-solving bots at a
//! tenth of their full size. Rampart must stop at least 99 % of the stuffing once
//! mitigation starts, within 10 s, deny at most 0.1 % of legitimate requests and lock
//! out no one; each solving bot is held to its quota; the per-address limit baseline
//! lets the stuffing through. (The full-size runs of all five scenarios against both
//! baselines are in BENCHMARKS.md.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use rampart_sim::{Defence, Options, Scenario};

fn options(scenarios: Vec<Scenario>, defences: Vec<Defence>) -> Options {
    Options {
        rampart: PathBuf::from(env!("CARGO_BIN_EXE_rampart")),
        scenarios,
        defences,
        warmup: Duration::from_secs(35),
        attack: Duration::from_secs(20),
        cooldown: Duration::from_secs(3),
        users: 150,
        office_users: 10,
        api_clients: 2,
        scale: 0.1,
        browsers: 0,
        tools: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/browser"),
        pace: 1.0,
    }
}

#[test]
fn short_simulation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let o = options(
        vec![Scenario::Stuffing, Scenario::Solvers],
        vec![Defence::Rampart],
    );
    let reports = rt.block_on(rampart_sim::run(&o)).unwrap();
    eprintln!("{}", rampart_sim::report::markdown(&reports));
    for r in &reports {
        assert!(r.attack_requests > 100, "{r:?}");
        assert!(r.legit_requests > 500, "{r:?}");
        assert!(
            r.legit_denied_or_failed <= 0.001,
            "legitimate requests denied: {r:?}"
        );
        assert_eq!(r.legit_locked_out, 0, "{r:?}");
    }
    let a = &reports[0];
    assert!(a.seconds_to_mitigate.is_some_and(|s| s <= 10.0), "{a:?}");
    assert!(
        a.attack_reached_after_mitigation.is_some_and(|x| x <= 0.01),
        "{a:?}"
    );
    let e = &reports[1];
    assert!(
        e.attack_challenges_solved > 0,
        "the bots solved challenges: {e:?}"
    );
    // The quota is 120 a minute per identity (sliding window: a little slack).
    assert!(
        e.solver_max_per_minute.is_some_and(|m| m <= 130),
        "per-identity quota: {e:?}"
    );

    // The blunt baseline: per-address limits let the distributed stuffing through.
    let o = options(vec![Scenario::Stuffing], vec![Defence::PerIp]);
    let b = rt.block_on(rampart_sim::run(&o)).unwrap();
    eprintln!("{}", rampart_sim::report::markdown(&b));
    assert!(b[0].attack_reached > 0.9, "{:?}", b[0]);
}
