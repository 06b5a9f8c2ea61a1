//! In-process costs of the policy layer: expression evaluation.
//!
//! `cargo bench -p rampart-policy --bench policy`
#![allow(missing_docs, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use rampart_policy::list::{ListKind, parse};
use rampart_policy::{Expr, Lists, Request};

fn lists() -> Lists {
    let mut lists = Lists::new();
    let office: String = (0..1000)
        .map(|i| format!("10.{}.{}.0/24\n", i / 256, i % 256))
        .collect();
    for (name, kind, text) in [
        ("office", ListKind::Ip, office.as_str()),
        ("eu", ListKind::Country, "DE\nFR\nAT\nNL\nBE\nIT\nES\n"),
    ] {
        if let Ok(l) = parse(kind, text) {
            lists.insert(name, l);
        }
    }
    lists
}

fn exprs(c: &mut Criterion) {
    let lists = lists();
    let mut h = HeaderMap::new();
    for (n, v) in [
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/128.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "de-DE,de;q=0.9,en;q=0.8"),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("referer", "https://bank.example/start"),
    ] {
        h.append(n, HeaderValue::from_static(v));
    }
    let ip = "203.0.113.9"
        .parse()
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let cases = [
        ("method_eq", r#"http.request.method == "POST""#),
        (
            "path_and_method",
            r#"http.request.method == "POST" and http.request.uri.path starts_with "/login""#,
        ),
        ("ip_in_list_1000", "ip.src in $office"),
        ("country_in_list", "ip.src.country in $eu"),
        (
            "regex_path",
            r#"http.request.uri.path matches r"^/api/v[0-9]+/(users|accounts)/[0-9]+$""#,
        ),
        (
            "lower_ua_contains",
            r#"lower(http.user_agent) contains "python-requests""#,
        ),
        (
            "any_header",
            r#"any(http.request.headers["accept"][*] contains "json")"#,
        ),
        (
            "cookie_lookup",
            r#"http.request.cookies["session"][0] == "x""#,
        ),
        ("query_arg", r#"http.request.uri.args["id"][0] == "42""#),
    ];
    let mut g = c.benchmark_group("expr");
    for (name, src) in cases {
        let e =
            Expr::compile(src, &lists).unwrap_or_else(|err| panic!("{name}: {}", err.render(src)));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut req = Request::new(ip, "POST", "bank.example", "/login?id=42&next=%2F", &h);
                req.country = "DE";
                black_box(e.matches(black_box(&req)))
            })
        });
    }
    g.finish();
}

/// A policy as a tenant would write it: 50 custom rules of the usual kinds (paths,
/// methods, headers, user agents, countries, lists, regexes, tags) and 5 rate limits
/// (per /24 on login, per API key, per session cookie, per IP on search, per ASN).
fn policy_text() -> String {
    let mut rules = String::new();
    let templates = [
        r#"http.request.uri.path starts_with "/admin{i}" and not ip.src in $office"#,
        r#"http.request.method == "DELETE" and http.request.uri.path starts_with "/api/v{i}/""#,
        r#"lower(http.user_agent) contains "scanner{i}""#,
        r#"http.request.uri.path matches r"^/wp-(admin|login){i}\.php""#,
        r#"ip.src.country in {"KP" "IR"} and http.request.uri.path == "/transfer{i}""#,
        r#"any(http.request.headers["x-forwarded-host"][*] contains "evil{i}")"#,
        r#"http.request.uri.args["debug"][0] == "{i}""#,
        r#"len(http.request.uri.query) > {i}000"#,
        r#"http.request.cookies["role"][0] == "admin{i}" and not tls"#,
        r#"ip.src.asn in {1{i}01 1{i}02 1{i}03} and http.request.uri.path starts_with "/login""#,
    ];
    for i in 0..50 {
        let t = templates[i % templates.len()].replace("{i}", &i.to_string());
        let action = ["block", "log", "challenge", "log", "block"][i % 5];
        rules.push_str(&format!(
            "[[site.policy.rule]]\nid = \"r{i}\"\npriority = {i}\nexpression = '{t}'\naction = \"{action}\"\n"
        ));
    }
    let limits = r#"
[[site.policy.limit]]
name = "login"
filter = 'http.request.method == "POST" and http.request.uri.path == "/login"'
key = ["cidr(ip.src, 24, 64)"]
window = "60s"
threshold = [{ above = 20, action = "log" }, { above = 100, action = "block", hold = "10m" }]
[[site.policy.limit]]
name = "api"
filter = 'http.request.uri.path starts_with "/api/"'
key = ['http.request.headers["x-api-key"]']
window = "60s"
algorithm = "gcra"
threshold = [{ above = 600, action = "block" }]
[[site.policy.limit]]
name = "session"
key = ['http.request.cookies["session"]']
window = "10s"
threshold = [{ above = 200, action = "challenge" }]
[[site.policy.limit]]
name = "search"
filter = 'http.request.uri.path == "/search"'
key = ["ip.src"]
window = "10s"
threshold = [{ above = 30, action = "block" }]
[[site.policy.limit]]
name = "per-ip"
key = ["ip.src"]
window = "10s"
threshold = [{ above = 1000, action = "block" }]
"#;
    format!(
        "[[list]]\nname = \"office\"\nkind = \"ip\"\nentries = [\"198.51.100.0/24\"]\n[[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n[[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"127.0.0.1:9\"]\n[[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"*\"]\nroute = [{{ path = \"/\", pool = \"p\" }}]\n[site.policy]\n{rules}{limits}"
    )
}

fn policy(c: &mut Criterion) {
    use rampart_core::config::{SourceFile, load_str};
    use rampart_core::decision::Decision;
    use rampart_policy::policy::{Check, Effects, LimitResult, LocalCounters, RulePhase};

    let text = policy_text();
    let src = SourceFile::new("bench.toml", text);
    let cfg = load_str(&src).unwrap_or_else(|d| panic!("{d}"));
    let spec = cfg.sites[0].routes[0]
        .policy
        .clone()
        .unwrap_or_else(|| panic!("no policy"));
    let mut read = |_: &str| Err::<String, String>("no files".into());
    let lists = rampart_policy::build::lists(&cfg.lists, &mut read, &src)
        .unwrap_or_else(|d| panic!("{d:?}"));
    let p = rampart_policy::build::policy(&spec, &cfg.lists, &lists, &src)
        .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!((p.rules_in_order().len(), p.limits.len()), (50, 5));
    let counters = LocalCounters::new(&p);
    let mut h = HeaderMap::new();
    for (n, v) in [
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/128.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "de-DE,de;q=0.9,en;q=0.8"),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("x-api-key", "K-1234"),
    ] {
        h.append(n, HeaderValue::from_static(v));
    }
    let ips: Vec<std::net::IpAddr> = (0..4096u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i * 7).into())
        .collect();
    let mut g = c.benchmark_group("policy");
    for (name, method, target) in [
        ("50_rules_5_limits_get", "GET", "/catalog/item?id=42"),
        ("50_rules_5_limits_login", "POST", "/login"),
        ("50_rules_5_limits_api", "GET", "/api/v2/accounts/7"),
    ] {
        let mut n = 0usize;
        let mut checks: Vec<Check> = Vec::new();
        let mut results: Vec<LimitResult> = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let mut req = Request::new(ips[n % ips.len()], method, "bank.example", target, &h);
                req.country = "DE";
                req.asn = 3320;
                let mut d = Decision::new();
                let mut fx = Effects::default();
                p.acl(&req, &mut d, &mut fx);
                checks.clear();
                p.limit_checks(&req, false, 0, &mut checks);
                counters.run(&checks, (n / 64) as u64, &mut results);
                p.apply_limits(&checks, &results, &mut d);
                p.rules(RulePhase::BeforeWaf, &mut req, 0, &mut d, &mut fx);
                black_box(d.verdicts().len())
            })
        });
    }
    g.finish();
}

const KEYS: u32 = 100_000;

/// Appends `v` in decimal, without allocating.
fn push_decimal(out: &mut Vec<u8>, v: u32) {
    if v >= 10 {
        push_decimal(out, v / 10);
    }
    out.push(b'0' + (v % 10) as u8);
}

fn local_limit(c: &mut Criterion) {
    use rampart_policy::ratelimit::{Algorithm, Counting, LocalStore};
    let mut g = c.benchmark_group("ratelimit");
    for (name, algorithm) in [
        ("local_sliding_window", Algorithm::SlidingWindow),
        ("local_gcra", Algorithm::Gcra),
    ] {
        let store = LocalStore::new(
            Counting {
                algorithm,
                window_ms: 10_000,
                thresholds: vec![100, 1000],
                hold_ms: vec![0, 600_000],
                distinct: false,
            },
            1_000_000,
        );
        // 100,000 keys such as a /24 (`10.x.y.0`), in a scattered order; each key is
        // written into a buffer per hit, as the edge builds it from the request.
        let mut n = 0u32;
        let mut key = Vec::with_capacity(16);
        g.bench_function(name, |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let i = n.wrapping_mul(2_654_435_761) % KEYS;
                key.clear();
                key.extend_from_slice(b"10.");
                for part in [i >> 8 & 255, i & 255] {
                    push_decimal(&mut key, part);
                    key.push(b'.');
                }
                key.push(b'0');
                black_box(store.hit(&key, b"", u64::from(n / 16)))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, exprs, policy, local_limit);
criterion_main!(benches);
