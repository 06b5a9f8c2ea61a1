use super::*;

/// A tiny deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &'a [&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn req(path: &str, method: &str, tls: &str, http: &str, ua: &str, asn: u32, net: u32) -> Features {
    let mut f = Features::default();
    f.0[Feature::Path as usize] = hash(path.as_bytes());
    f.0[Feature::Method as usize] = hash(method.as_bytes());
    f.0[Feature::TlsFingerprint as usize] = hash(tls.as_bytes());
    f.0[Feature::HttpFingerprint as usize] = hash(http.as_bytes());
    f.0[Feature::UserAgent as usize] = hash(ua.as_bytes());
    f.0[Feature::Asn as usize] = hash(&asn.to_be_bytes());
    f.0[Feature::Country as usize] = hash(b"DE");
    f.0[Feature::Net16 as usize] = hash(&(net >> 16).to_be_bytes());
    f.0[Feature::Net24 as usize] = hash(&(net >> 8).to_be_bytes());
    f
}

const PATHS: &[&str] = &[
    "/",
    "/search",
    "/product/1",
    "/product/2",
    "/login",
    "/account",
    "/cart",
];
const BROWSERS: &[(&str, &str, &str)] = &[
    ("t13d1517h2_chrome", "h2chrome", "Chrome/156"),
    ("t13d1715h2_firefox", "h2firefox", "Firefox/128"),
    ("t13d2014h2_safari", "h2safari", "Safari/17"),
];

fn legit(r: &mut Rng) -> Features {
    let (t, h, u) = BROWSERS[(r.next() % 3) as usize];
    let path = r.pick(PATHS);
    let method = if path == "/login" { "POST" } else { "GET" };
    req(
        path,
        method,
        t,
        h,
        u,
        (r.next() % 50) as u32,
        r.next() as u32,
    )
}

fn baseline(r: &mut Rng) -> Vec<Features> {
    (0..8192).map(|_| legit(r)).collect()
}

#[test]
fn credential_stuffing_from_many_addresses_is_one_signature() {
    let mut r = Rng(7);
    let base = baseline(&mut r);
    // 80 % of current traffic: POST /login from a tool with rotating user agents.
    let uas = [
        "Chrome/156",
        "Firefox/128",
        "Safari/17",
        "Edge/1",
        "Opera/1",
    ];
    let current: Vec<Features> = (0..4000)
        .map(|i| {
            if i % 5 == 0 {
                legit(&mut r)
            } else {
                let ua = uas[(r.next() % 5) as usize];
                req(
                    "/login",
                    "POST",
                    "t13d0912h2_tool",
                    "h11l04_tool",
                    ua,
                    (r.next() % 300) as u32,
                    r.next() as u32,
                )
            }
        })
        .collect();
    let sigs = search(&current, &base, 0.8, &SearchSettings::default());
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    let s = &sigs[0];
    // The most specific: the tool's fingerprints with the path and method.
    let feats: Vec<Feature> = s.items.iter().map(|i| i.0).collect();
    assert!(
        feats.contains(&Feature::TlsFingerprint) || feats.contains(&Feature::HttpFingerprint),
        "{s:?}"
    );
    assert_eq!(s.items.len(), 3);
    assert!(s.baseline_share <= 0.001);
    assert!(s.coverage > 0.78 && s.coverage < 0.82, "{s:?}");
    // It matches attack requests, not legitimate ones.
    let attack = req(
        "/login",
        "POST",
        "t13d0912h2_tool",
        "h11l04_tool",
        "Chrome/156",
        5,
        9,
    );
    assert!(s.matches(&attack));
    assert_eq!(base.iter().filter(|b| s.matches(b)).count(), 0);
}

#[test]
fn an_attack_that_looks_like_the_baseline_gets_no_rule() {
    let mut r = Rng(11);
    let base = baseline(&mut r);
    // A flood of requests indistinguishable from legitimate ones.
    let current: Vec<Features> = (0..4000).map(|_| legit(&mut r)).collect();
    assert!(search(&current, &base, 0.75, &SearchSettings::default()).is_empty());
}

#[test]
fn two_tools_get_two_signatures_and_the_bound_is_kept() {
    let mut r = Rng(13);
    let mut base = baseline(&mut r);
    // The second tool's fingerprint also appears in 0.5 % of the baseline (above the
    // bound alone), but never with /search.
    for b in base.iter_mut().take(41) {
        b.0[Feature::TlsFingerprint as usize] = hash(b"t13d0311h1_curlish");
        b.0[Feature::Path as usize] = hash(b"/");
    }
    let current: Vec<Features> = (0..5000)
        .map(|i| match i % 10 {
            0..=1 => legit(&mut r),
            2..=5 => req(
                "/",
                "GET",
                "t13d0101h1_flood",
                "h11m03_x",
                "x",
                7,
                r.next() as u32,
            ),
            _ => req(
                "/search",
                "GET",
                "t13d0311h1_curlish",
                "h11l03_y",
                "y",
                8,
                r.next() as u32,
            ),
        })
        .collect();
    let sigs = search(&current, &base, 0.8, &SearchSettings::default());
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    for s in &sigs {
        assert!(s.baseline_share <= 0.001, "{s:?}");
        assert_eq!(
            base.iter().filter(|b| s.matches(b)).count() as f64 / 8192.0,
            s.baseline_share
        );
    }
    let curlish = sigs
        .iter()
        .find(|s| {
            s.items
                .iter()
                .any(|i| *i == (Feature::TlsFingerprint, hash(b"t13d0311h1_curlish")))
        })
        .unwrap();
    assert!(
        curlish.items.len() >= 2,
        "alone it would hit 0.5 % of the baseline: {curlish:?}"
    );
}

#[test]
fn the_baseline_needed_follows_the_bound() {
    assert_eq!(min_baseline(0.001), 1000);
    assert_eq!(min_baseline(0.004), 250);
    assert_eq!(min_baseline(0.1), 200);
    assert_eq!(min_baseline(0.0), BASELINE_CAP);
}

#[test]
fn too_few_samples_give_nothing() {
    let mut r = Rng(3);
    let base: Vec<Features> = (0..500).map(|_| legit(&mut r)).collect();
    let cur: Vec<Features> = (0..1000)
        .map(|_| req("/x", "GET", "a", "b", "c", 1, 1))
        .collect();
    assert!(search(&cur, &base, 0.9, &SearchSettings::default()).is_empty());
}

#[test]
fn detector_learns_detects_and_ends() {
    let mut d = Detector::new(DetectSettings {
        learn: 10,
        quiet: 5,
        ..DetectSettings::default()
    });
    for _ in 0..20 {
        assert_eq!(d.second(100.0), Transition::None);
    }
    assert!(d.learned());
    assert!((d.baseline() - 100.0).abs() < 1.0);
    // Noise under the threshold (3x) is not an attack (at most suspect).
    for c in [150.0, 250.0, 120.0] {
        assert!(matches!(
            d.second(c),
            Transition::None | Transition::Suspect { .. }
        ));
    }
    // A flood: confirmed on the second second above the threshold.
    let mut started = None;
    for s in 0..6 {
        if let Transition::Started { rate, baseline } = d.second(2000.0) {
            started = Some((s, rate, baseline));
            break;
        }
    }
    let (s, rate, baseline) = started.unwrap();
    assert!(s <= 3, "{s}");
    assert!(rate > 300.0 && baseline < 130.0);
    assert!(d.under_attack());
    assert!(d.excess() > 0.8);
    // The baseline does not learn the attack.
    for _ in 0..20 {
        d.second(2000.0);
    }
    assert!(d.baseline() < 130.0);
    // Back to normal: over after `quiet` seconds under the threshold.
    let mut ended = None;
    for s in 0..20 {
        if d.second(100.0) == Transition::Ended {
            ended = Some(s);
            break;
        }
    }
    assert!(ended.is_some_and(|s| (5..=8).contains(&s)), "{ended:?}");
    assert!(!d.under_attack());
}

#[test]
fn nothing_is_detected_while_learning() {
    let mut d = Detector::new(DetectSettings::default());
    for _ in 0..29 {
        assert_eq!(d.second(10_000.0), Transition::None);
    }
}

#[test]
fn ring_keeps_the_latest() {
    let mut r = Ring::new(3);
    for i in 0..5u64 {
        let mut f = Features::default();
        f.0[0] = i;
        r.push(f);
    }
    let mut v: Vec<u64> = r.samples().iter().map(|f| f.0[0]).collect();
    v.sort();
    assert_eq!(v, [2, 3, 4]);
    r.clear();
    assert!(r.is_empty());
}

#[test]
fn a_moderate_rise_is_suspect_not_an_attack() {
    let mut d = Detector::new(DetectSettings {
        learn: 10,
        ..DetectSettings::default()
    });
    for _ in 0..20 {
        d.second(100.0);
    }
    // Twice the baseline: suspect from the second second on, every second, never an
    // attack by itself; the edge may declare one.
    let t: Vec<Transition> = (0..4).map(|_| d.second(200.0)).collect();
    assert_eq!(t[0], Transition::None);
    assert!(matches!(t[2], Transition::Suspect { .. }), "{t:?}");
    assert!(matches!(t[3], Transition::Suspect { .. }), "{t:?}");
    assert!(!d.under_attack());
    assert!(
        d.baseline() < 105.0,
        "suspect seconds are not learned: {}",
        d.baseline()
    );
    d.declare();
    assert!(d.under_attack());
}

#[test]
fn a_new_page_everyone_visits_is_not_a_client_signature() {
    let mut r = Rng(17);
    let base = baseline(&mut r);
    // Half of the traffic goes to a page the baseline never saw, from every kind of
    // client.
    let current: Vec<Features> = (0..4000)
        .map(|i| {
            let mut f = legit(&mut r);
            if i % 2 == 0 {
                f.0[Feature::Path as usize] = hash(b"/new-product");
            }
            f
        })
        .collect();
    let any = search(&current, &base, 0.5, &SearchSettings::default());
    assert!(!any.is_empty(), "a path alone explains it");
    let client = SearchSettings {
        client_feature: true,
        ..SearchSettings::default()
    };
    assert!(search(&current, &base, 0.5, &client).is_empty());
    // A new client stack on that page is found.
    let tool: Vec<Features> = current
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut f = *f;
            if i % 2 == 0 {
                f.0[Feature::TlsFingerprint as usize] = hash(b"t13d0101h2_tool");
            }
            f
        })
        .collect();
    let found = search(&tool, &base, 0.5, &client);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .items
            .iter()
            .any(|i| i.0 == Feature::TlsFingerprint)
    );
}
