//! In-process costs of the policy layer: expression evaluation.
//!
//! `cargo bench -p rampart-policy --bench policy`
#![allow(missing_docs)]

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
        let e = match Expr::compile(src, &lists) {
            Ok(e) => e,
            Err(err) => {
                eprintln!("{name}: {}", err.render(src));
                continue;
            }
        };
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

criterion_group!(benches, exprs);
criterion_main!(benches);
