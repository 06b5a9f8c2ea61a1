//! In-process costs of the bot defence: the bot score, a clearance token's check, the
//! HTTP/2 fingerprint of a first flight, and the flood signature search over full
//! sample rings (what the edge's ticker runs once a second during an attack).
//!
//! `cargo bench -p rampart-policy --bench bot`
#![allow(missing_docs, clippy::panic, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_policy::bot::{Counts, Signals, Thresholds, score};
use rampart_policy::challenge::{Binding, Clearance, Keyring};
use rampart_policy::flood::{Feature, Features, SearchSettings, hash, search};

fn bot_score(c: &mut Criterion) {
    let s = Signals {
        user_agent: b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
        tls_fingerprint: "t13d1517h2_8daaf6152771_cb7bf5808d99",
        http_fingerprint: "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p",
        tls: true,
        http2: true,
        accept_language: true,
        fetch_metadata: true,
        cleared: false,
        claims_verified_bot: false,
        verified_bot: false,
        counts: Counts {
            per_minute: 40.0,
            paths_per_minute: 12.0,
            responses: 40.0,
            client_errors: 1.0,
            login_failures: 0.0,
        },
    };
    let t = Thresholds::default();
    c.bench_function("bot/score_browser", |b| b.iter(|| score(black_box(&s), &t)));
}

fn clearance(c: &mut Criterion) {
    let ring = Keyring::new(&[("k2", &[2u8; 32]), ("k1", &[1u8; 32])]).unwrap();
    let bind = Binding::new(
        "shop",
        "192.0.2.10".parse().unwrap(),
        24,
        48,
        "t13d1517h2_8daaf6152771_cb7bf5808d99",
    );
    let token = Clearance {
        identity: 7,
        issued: 1_000,
        expires: 10_000,
        noscript: false,
        difficulty: 16,
    }
    .mint(&ring, &bind);
    c.bench_function("challenge/verify_token", |b| {
        b.iter(|| Clearance::verify(&ring, black_box(&token), &bind, 2_000).unwrap())
    });
}

fn h2(c: &mut Criterion) {
    // Chromium's first flight (as the fingerprint's unit test builds it).
    let mut flight = rampart_policy::fingerprint::h2::PREFACE.to_vec();
    let frame = |ty: u8, flags: u8, stream: u32, p: &[u8]| {
        let mut f = (p.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([ty, flags]);
        f.extend(stream.to_be_bytes());
        f.extend_from_slice(p);
        f
    };
    let settings: Vec<u8> = [(1u16, 65536u32), (2, 0), (4, 6_291_456), (6, 262_144)]
        .iter()
        .flat_map(|(i, v)| i.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect();
    flight.extend(frame(4, 0, 0, &settings));
    flight.extend(frame(8, 0, 0, &15_663_105u32.to_be_bytes()));
    let mut block = vec![0x80, 0, 0, 0, 255, 0x82, 0x41, 8];
    block.extend(b"shop.test");
    block.extend([0x87, 0x84]);
    flight.extend(frame(1, 0x24, 1, &block));
    c.bench_function("fingerprint/h2_first_flight", |b| {
        b.iter(|| rampart_policy::fingerprint::h2_fingerprint(black_box(&flight)).unwrap())
    });
}

fn flood(c: &mut Criterion) {
    let mut x = 88172645463325252u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let paths: Vec<u64> = (0..200)
        .map(|i| hash(format!("/p/{i}").as_bytes()))
        .collect();
    let legit = |r: &mut dyn FnMut() -> u64| {
        let mut f = Features::default();
        f.0[Feature::Path as usize] = paths[(r() % 200) as usize];
        f.0[Feature::Method as usize] = hash(b"GET");
        f.0[Feature::TlsFingerprint as usize] = hash(&[(r() % 5) as u8]);
        f.0[Feature::HttpFingerprint as usize] = hash(&[(r() % 5) as u8, 1]);
        f.0[Feature::UserAgent as usize] = hash(&[(r() % 40) as u8, 2]);
        f.0[Feature::Asn as usize] = hash(&((r() % 300) as u32).to_be_bytes());
        f.0[Feature::Country as usize] = hash(&[(r() % 20) as u8, 3]);
        f.0[Feature::Net16 as usize] = hash(&(r() as u16).to_be_bytes());
        f.0[Feature::Net24 as usize] = hash(&((r() as u32) >> 8).to_be_bytes());
        f
    };
    let baseline: Vec<Features> = (0..8192).map(|_| legit(&mut rnd)).collect();
    let current: Vec<Features> = (0..4096)
        .map(|i| {
            let mut f = legit(&mut rnd);
            if i % 10 != 0 {
                f.0[Feature::Path as usize] = hash(b"/login");
                f.0[Feature::Method as usize] = hash(b"POST");
                f.0[Feature::TlsFingerprint as usize] = hash(b"tool");
            }
            f
        })
        .collect();
    let s = SearchSettings::default();
    assert_eq!(search(&current, &baseline, 0.9, &s).len(), 1);
    c.bench_function("flood/search_4096_vs_8192", |b| {
        b.iter(|| search(black_box(&current), &baseline, 0.9, &s))
    });
}

criterion_group!(benches, bot_score, clearance, h2, flood);
criterion_main!(benches);
