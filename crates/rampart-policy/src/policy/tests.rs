use http::HeaderMap;

use super::*;
use crate::list::{ListKind, Lists, parse};
use crate::ratelimit::Algorithm;

fn lists() -> Lists {
    let mut l = Lists::new();
    for (name, kind, text) in [
        ("office", ListKind::Ip, "198.51.100.0/24\n"),
        ("bad", ListKind::Ip, "203.0.113.66\n"),
        ("scanners", ListKind::Ip, "192.0.2.0/24\n"),
    ] {
        if let Ok(list) = parse(kind, text) {
            l.insert(name, list);
        }
    }
    l
}

fn expr(src: &str) -> Expr {
    Expr::compile(src, &lists()).unwrap_or_else(|e| unreachable!("{src}: {e}"))
}

fn key(src: &str) -> KeyExpr {
    KeyExpr::compile(src, &lists()).unwrap_or_else(|e| unreachable!("{src}: {e}"))
}

fn rule(id: &str, priority: i32, src: &str, action: RuleAction) -> Rule {
    Rule {
        id: id.into(),
        priority,
        mode: Mode::Enforce,
        expires_at: None,
        description: String::new(),
        ticket: None,
        source: src.into(),
        expr: expr(src),
        action,
    }
}

fn acl(list: &str, action: ListUse) -> Acl {
    let src = format!("ip.src in ${list}");
    Acl {
        list: list.into(),
        test: expr(&src),
        source: src.into(),
        action,
        mode: Mode::Enforce,
    }
}

fn block() -> RuleAction {
    RuleAction::Block {
        status: 403,
        page: None,
    }
}

fn limit(
    name: &str,
    filter: Option<&str>,
    keys: &[&str],
    thresholds: &[u32],
    actions: Vec<Action>,
) -> Limit {
    Limit {
        name: name.into(),
        mode: Mode::Enforce,
        filter: filter.map(expr),
        standalone: true,
        responses: None,
        key: keys.iter().map(|k| key(k)).collect(),
        distinct: None,
        counting: Counting {
            algorithm: Algorithm::SlidingWindow,
            window_ms: 10_000,
            thresholds: thresholds.to_vec(),
            hold_ms: vec![0; thresholds.len()],
            distinct: false,
        },
        actions,
        backend: Backend::Local,
        fail: FailMode::Open,
        max_keys: 10_000,
    }
}

/// A request from `ip`, `method` `target`; runs every request-phase step like the edge
/// and returns the decision's trace.
fn run(
    policy: &Policy,
    counters: &LocalCounters,
    ip: &str,
    method: &str,
    target: &str,
    now_ms: u64,
) -> (Decision, Effects) {
    let h = HeaderMap::new();
    let mut req = Request::new(
        ip.parse().unwrap_or_else(|e| unreachable!("{e}")),
        method,
        "bank.example",
        target,
        &h,
    );
    let mut d = Decision::new();
    let mut fx = Effects::default();
    policy.acl(&req, &mut d, &mut fx);
    if !d.is_settled() {
        let mut checks = Vec::new();
        policy.limit_checks(&req, false, now_ms / 1000, &mut checks);
        let mut results = Vec::new();
        counters.run(&checks, now_ms, &mut results);
        policy.apply_limits(&checks, &results, &mut d);
    }
    policy.rules(
        RulePhase::BeforeWaf,
        &mut req,
        now_ms / 1000,
        &mut d,
        &mut fx,
    );
    (d, fx)
}

fn outcomes(d: &Decision) -> Vec<String> {
    d.verdicts()
        .iter()
        .map(|v| format!("{}:{}:{}", v.source.as_str(), v.id, v.outcome()))
        .collect()
}

#[test]
fn lists_deny_allow_and_bypass() {
    let policy = Policy::new(
        vec![
            acl("bad", ListUse::Deny),
            acl("office", ListUse::Allow),
            acl("scanners", ListUse::Bypass),
        ],
        vec![],
        vec![rule("r1", 1, "true", RuleAction::Log)],
        false,
    );
    let c = LocalCounters::new(&policy);
    let (d, _) = run(&policy, &c, "203.0.113.66", "GET", "/", 0);
    assert_eq!(outcomes(&d), ["list:bad:block"]);
    let (d, _) = run(&policy, &c, "198.51.100.9", "GET", "/", 0);
    assert_eq!(outcomes(&d), ["list:office:allow"]);
    let (d, fx) = run(&policy, &c, "192.0.2.1", "GET", "/", 0);
    assert_eq!(outcomes(&d), ["list:scanners:note", "rule:r1:log"]);
    assert!(fx.bypass_inspection);
    let (d, fx) = run(&policy, &c, "8.8.8.8", "GET", "/", 0);
    assert_eq!(outcomes(&d), ["rule:r1:log"]);
    assert!(!fx.bypass_inspection);
}

#[test]
fn rules_run_by_priority_until_one_ends_the_evaluation() {
    let mut monitor = rule(
        "m",
        5,
        r#"http.request.uri.path starts_with "/admin""#,
        block(),
    );
    monitor.mode = Mode::Monitor;
    let mut expired = rule("expired", 0, "true", block());
    expired.expires_at = Some(100);
    let mut ticketed = rule(
        "t",
        1,
        r#"http.request.method == "DELETE""#,
        RuleAction::Challenge,
    );
    ticketed.ticket = Some("CHG-1234".into());
    ticketed.description = "no deletes from outside".into();
    let policy = Policy::new(
        vec![],
        vec![],
        vec![
            rule("late", 30, "true", RuleAction::Log),
            rule(
                "tagger",
                10,
                r#"http.request.uri.path contains "admin""#,
                RuleAction::Tag("admin".into()),
            ),
            rule(
                "by-tag",
                20,
                r#"any(tags[*] == "admin") and not ip.src in $office"#,
                block(),
            ),
            monitor,
            expired,
            ticketed,
            rule(
                "hdr",
                2,
                "true",
                RuleAction::SetHeader(
                    HeaderName::from_static("x-policy"),
                    HeaderValue::from_static("seen"),
                ),
            ),
        ],
        false,
    );
    let c = LocalCounters::new(&policy);
    let (d, fx) = run(&policy, &c, "8.8.8.8", "GET", "/admin/users", 50_000);
    assert_eq!(
        outcomes(&d),
        ["rule:expired:block"],
        "the temporary rule holds until its expiry"
    );
    let (d, fx2) = run(&policy, &c, "8.8.8.8", "GET", "/admin/users", 100_000);
    assert_eq!(
        outcomes(&d),
        [
            "rule:hdr:note",
            "rule:m:would_block",
            "rule:tagger:note",
            "rule:by-tag:block"
        ]
    );
    assert_eq!(d.final_verdict().map(|v| &*v.id), Some("by-tag"));
    assert_eq!(fx2.set_headers.len(), 1);
    assert!(fx.set_headers.is_empty());
    // From the office the tag is set but the block does not apply; evaluation goes on.
    let (d, _) = run(&policy, &c, "198.51.100.1", "GET", "/admin/users", 100_000);
    assert_eq!(
        outcomes(&d),
        [
            "rule:hdr:note",
            "rule:m:would_block",
            "rule:tagger:note",
            "rule:late:log"
        ]
    );
    let (d, _) = run(&policy, &c, "8.8.8.8", "DELETE", "/x", 100_000);
    assert_eq!(outcomes(&d), ["rule:t:challenge"]);
    assert_eq!(d.verdicts()[0].reason, "no deletes from outside [CHG-1234]");
}

#[test]
fn onboarding_turns_every_verdict_into_would() {
    let policy = Policy::new(
        vec![acl("bad", ListUse::Deny), acl("office", ListUse::Bypass)],
        vec![limit(
            "all",
            None,
            &["ip.src"],
            &[1],
            vec![Action::Block {
                status: 429,
                page: None,
            }],
        )],
        vec![
            rule("r", 1, "true", block()),
            rule("tag", 2, "true", RuleAction::Tag("x".into())),
        ],
        true,
    );
    let c = LocalCounters::new(&policy);
    run(&policy, &c, "203.0.113.66", "GET", "/", 0);
    let (d, fx) = run(&policy, &c, "203.0.113.66", "GET", "/", 1);
    assert_eq!(
        outcomes(&d),
        [
            "list:bad:would_block",
            "limit:all:would_block",
            "rule:r:would_block",
            "rule:tag:would_note"
        ]
    );
    assert_eq!(d.final_verdict(), None, "nothing is enforced");
    assert_eq!(d.would().map(|v| &*v.id), Some("bad"));
    assert!(!fx.bypass_inspection);
    let (_, fx) = run(&policy, &c, "198.51.100.1", "GET", "/", 0);
    assert!(
        !fx.bypass_inspection,
        "a bypass in monitor mode skips nothing"
    );
}

#[test]
fn a_login_limit_per_prefix_with_graduated_actions() {
    let policy = Policy::new(
        vec![],
        vec![limit(
            "login",
            Some(r#"http.request.method == "POST" and http.request.uri.path == "/login""#),
            &["cidr(ip.src, 24, 64)"],
            &[3, 5, 8],
            vec![
                Action::Log,
                Action::Challenge,
                Action::Block {
                    status: 429,
                    page: None,
                },
            ],
        )],
        vec![],
        false,
    );
    let c = LocalCounters::new(&policy);
    let mut seen = Vec::new();
    for i in 0..10u64 {
        // Ten addresses of one /24, and GETs that do not count.
        let ip = format!("198.51.100.{}", i + 1);
        let (d, _) = run(&policy, &c, &ip, "POST", "/login", i * 100);
        run(&policy, &c, &ip, "GET", "/login", i * 100);
        seen.push(d.final_verdict().map_or("pass", |v| v.action.name()));
    }
    assert_eq!(
        seen,
        [
            "pass",
            "pass",
            "pass",
            "log",
            "log",
            "challenge",
            "challenge",
            "challenge",
            "block",
            "block"
        ]
    );
    // Another /24 has its own count.
    let (d, _) = run(&policy, &c, "198.51.101.1", "POST", "/login", 1000);
    assert!(d.is_empty());
    let (d, _) = run(&policy, &c, "198.51.100.99", "POST", "/login", 1000);
    let v = &d.verdicts()[0];
    assert_eq!(
        v.reason,
        "11 requests in 10 s for key 198.51.100.0 (threshold 8)"
    );
}

#[test]
fn rules_feed_limits_and_responses_can_be_counted() {
    let mut fed = limit(
        "api",
        None,
        &[r#"http.request.headers["x-api-key"]"#],
        &[2],
        vec![Action::Block {
            status: 429,
            page: None,
        }],
    );
    fed.standalone = false;
    let mut failures = limit(
        "failures",
        Some(r#"http.request.uri.path == "/login""#),
        &["ip.src"],
        &[2],
        vec![Action::Block {
            status: 403,
            page: None,
        }],
    );
    failures.responses = Some(expr("http.response.code == 401"));
    let policy = Policy::new(
        vec![],
        vec![fed, failures],
        vec![rule(
            "feed",
            100,
            r#"http.request.uri.path starts_with "/api/""#,
            RuleAction::RateLimit(0),
        )],
        false,
    );
    let c = LocalCounters::new(&policy);
    let mut h = HeaderMap::new();
    h.insert("x-api-key", HeaderValue::from_static("K1"));
    let ip = "192.0.2.1".parse().unwrap_or_else(|e| unreachable!("{e}"));
    let mut levels = Vec::new();
    for target in ["/api/a", "/api/b", "/other", "/api/c"] {
        let req = Request::new(ip, "GET", "h", target, &h);
        let mut checks = Vec::new();
        policy.limit_checks(&req, false, 0, &mut checks);
        let mut results = Vec::new();
        c.run(&checks, 0, &mut results);
        let mut d = Decision::new();
        policy.apply_limits(&checks, &results, &mut d);
        levels.push(outcomes(&d).join(","));
    }
    assert_eq!(levels, ["", "", "", "limit:api:block"]);
    // Without the key header the limit does not count the request.
    let empty = HeaderMap::new();
    let req = Request::new(ip, "GET", "h", "/api/a", &empty);
    let mut checks = Vec::new();
    policy.limit_checks(&req, false, 0, &mut checks);
    assert!(checks.is_empty());

    // Three 401s to /login, then the next request is refused before the origin sees it.
    let mut answers = Vec::new();
    for status in [401u16, 200, 401, 401, 0] {
        let mut req = Request::new(ip, "POST", "h", "/login", &empty);
        let mut checks = Vec::new();
        policy.limit_checks(&req, false, 0, &mut checks);
        let mut results = Vec::new();
        c.run(&checks, 10, &mut results);
        let mut d = Decision::new();
        policy.apply_limits(&checks, &results, &mut d);
        answers.push(outcomes(&d).join(","));
        if status != 0 {
            let rh = HeaderMap::new();
            req.response = Some(crate::request::Response {
                status,
                headers: &rh,
            });
            let mut checks = Vec::new();
            policy.limit_checks(&req, true, 0, &mut checks);
            c.run(&checks, 10, &mut results);
        }
    }
    assert_eq!(answers, ["", "", "", "", "limit:failures:block"]);
}

#[test]
fn distinct_usernames_per_prefix() {
    let mut l = limit(
        "stuffing",
        Some(r#"http.request.uri.path == "/login""#),
        &["cidr(ip.src, 24)"],
        &[3],
        vec![Action::Challenge],
    );
    l.distinct = Some(key(r#"http.request.uri.args["user"]"#));
    let policy = Policy::new(vec![], vec![l], vec![], false);
    let c = LocalCounters::new(&policy);
    let mut got = Vec::new();
    for (i, user) in ["a", "b", "a", "c", "d", "e"].iter().enumerate() {
        let target = format!("/login?user={user}");
        let (d, _) = run(&policy, &c, &format!("203.0.113.{i}"), "POST", &target, 0);
        got.push(outcomes(&d).join(","));
    }
    assert_eq!(
        got,
        [
            "",
            "",
            "",
            "",
            "limit:stuffing:challenge",
            "limit:stuffing:challenge"
        ]
    );
}

#[test]
fn an_unavailable_backend_fails_open_or_closed() {
    let mut closed = limit(
        "closed",
        None,
        &["ip.src"],
        &[10, 20],
        vec![
            Action::Challenge,
            Action::Block {
                status: 429,
                page: None,
            },
        ],
    );
    closed.fail = FailMode::Closed;
    let open = limit(
        "open",
        None,
        &["ip.src"],
        &[10],
        vec![Action::Block {
            status: 429,
            page: None,
        }],
    );
    let policy = Policy::new(vec![], vec![open, closed], vec![], false);
    let h = HeaderMap::new();
    let req = Request::new(
        "192.0.2.1".parse().unwrap_or_else(|e| unreachable!("{e}")),
        "GET",
        "h",
        "/",
        &h,
    );
    let mut checks = Vec::new();
    policy.limit_checks(&req, false, 0, &mut checks);
    let results = vec![LimitResult::Unavailable; checks.len()];
    let mut d = Decision::new();
    policy.apply_limits(&checks, &results, &mut d);
    assert_eq!(outcomes(&d), ["limit:open:note", "limit:closed:block"]);
    assert!(d.verdicts()[0].reason.contains("failing open"));
}

#[test]
fn phases_split_rules_by_what_they_read() {
    let policy = Policy::new(
        vec![],
        vec![],
        vec![
            rule("score", 1, "waf.score >= 5", block()),
            rule("resp", 2, "http.response.code == 500", RuleAction::Log),
            rule("req", 3, "true", RuleAction::Log),
        ],
        false,
    );
    let h = HeaderMap::new();
    let rh = HeaderMap::new();
    let mut req = Request::new(
        "192.0.2.1".parse().unwrap_or_else(|e| unreachable!("{e}")),
        "GET",
        "h",
        "/",
        &h,
    );
    req.waf_score = 7;
    let mut fx = Effects::default();
    let mut d = Decision::new();
    policy.rules(RulePhase::BeforeWaf, &mut req, 0, &mut d, &mut fx);
    assert_eq!(outcomes(&d), ["rule:req:log"]);
    policy.rules(RulePhase::AfterWaf, &mut req, 0, &mut d, &mut fx);
    assert_eq!(outcomes(&d), ["rule:req:log", "rule:score:block"]);
    let mut d = Decision::new();
    req.response = Some(crate::request::Response {
        status: 500,
        headers: &rh,
    });
    policy.rules(RulePhase::Response, &mut req, 0, &mut d, &mut fx);
    assert_eq!(outcomes(&d), ["rule:resp:log"]);
}
