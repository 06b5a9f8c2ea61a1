use http::HeaderMap;
use rampart_core::config::{Config, load_str};
use rampart_core::decision::Decision;

use super::*;
use crate::policy::{Effects, LocalCounters, RulePhase};
use crate::request::Request;

const HEAD: &str = "[[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\
[[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"127.0.0.1:9000\"]\n\
[[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"*\"]\n[[site.route]]\npath = \"/\"\npool = \"p\"\n";

fn config(text: &str) -> (SourceFile, Config) {
    let src = SourceFile::new("rampart.toml", text);
    match load_str(&src) {
        Ok(c) => (src, c),
        Err(d) => unreachable!("{d}"),
    }
}

fn files(path: &str) -> Result<String, String> {
    match path {
        "office.txt" => Ok("# office\n198.51.100.0/24\n".into()),
        "broken.txt" => Ok("10.0.0.0/8\n\n  10.0.0.1/8\n".into()),
        _ => Err("No such file or directory".into()),
    }
}

/// Lists and the first route's policy of `text`.
fn build(text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let (src, cfg) = config(text);
    let lists = lists(&cfg.lists, &mut files, &src)?;
    let spec = cfg.sites[0].routes[0].policy.clone().unwrap_or_default();
    policy(&spec, &cfg.lists, &lists, &src)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match build(text) {
        Ok(_) => unreachable!("built"),
        Err(d) => d,
    }
}

#[test]
fn a_configured_policy_decides() {
    let text = format!(
        "[[list]]\nname = \"office\"\nkind = \"ip\"\nfile = \"office.txt\"\n{HEAD}\
         [site.policy]\n[[site.policy.list]]\nlist = \"office\"\nuse = \"bypass\"\n\
         [[site.policy.limit]]\nname = \"burst\"\nkey = [\"ip.src\"]\nwindow = \"10s\"\n\
         threshold = [{{ above = 2, action = \"block\" }}]\n\
         [[site.policy.rule]]\nid = \"admin\"\nexpression = '''\nhttp.request.uri.path starts_with \"/admin\"\n  and not ip.src in $office'''\naction = \"block\"\n"
    );
    let policy = build(&text).unwrap_or_else(|d| unreachable!("{d:?}"));
    let counters = LocalCounters::new(&policy);
    let h = HeaderMap::new();
    let mut outcomes = Vec::new();
    for (ip, path) in [
        ("8.8.8.8", "/admin"),
        ("198.51.100.5", "/admin"),
        ("8.8.8.8", "/"),
        ("8.8.8.8", "/"),
    ] {
        let mut req = Request::new(
            ip.parse().unwrap_or_else(|e| unreachable!("{e}")),
            "GET",
            "h",
            path,
            &h,
        );
        let mut d = Decision::new();
        let mut fx = Effects::default();
        policy.acl(&req, &mut d, &mut fx);
        let mut checks = Vec::new();
        policy.limit_checks(&req, false, 0, &mut checks);
        let mut results = Vec::new();
        counters.run(&checks, 0, &mut results);
        policy.apply_limits(&checks, &results, &mut d);
        policy.rules(RulePhase::BeforeWaf, &mut req, 0, &mut d, &mut fx);
        outcomes.push(d.final_verdict().map_or("pass".to_owned(), |v| {
            format!("{}:{}", v.id, v.action.name())
        }));
    }
    assert_eq!(
        outcomes,
        ["admin:block", "office:note", "pass", "burst:block"]
    );
}

/// Line and column of the first diagnostic whose message holds `words`.
fn at(d: &[Diagnostic], words: &str) -> (String, usize, usize) {
    let e = d
        .iter()
        .find(|e| e.message.contains(words))
        .unwrap_or_else(|| unreachable!("no `{words}` in {d:?}"));
    (e.file.clone(), e.line, e.col)
}

#[test]
fn expression_errors_point_into_the_configuration_file() {
    let head_lines = HEAD.lines().count();
    let rule = |expr: &str| {
        format!(
            "{HEAD}[site.policy]\n[[site.policy.rule]]\nid = \"r\"\naction = \"log\"\nexpression = {expr}\n"
        )
    };
    // A literal string: exact.
    let d = errors(&rule("'http.request.methd == \"GET\"'"));
    assert_eq!(
        at(&d, "unknown field `http.request.methd`"),
        ("rampart.toml".into(), head_lines + 5, 15)
    );
    // A basic string without escapes: exact too.
    let d = errors(&rule("\"tls and waf.score > \""));
    assert_eq!(
        at(&d, "needs a value"),
        ("rampart.toml".into(), head_lines + 5, 35)
    );
    // With escapes: the string's start, and the position inside the expression.
    let d = errors(&rule(
        "\"http.host == \\\"a\\\" and lowr(http.host) == \\\"b\\\"\"",
    ));
    let (_, line, col) = at(&d, "unknown function `lowr` (at 1:22 of the expression)");
    assert_eq!((line, col), (head_lines + 5, 14));
    // A multi-line literal string: the line inside it.
    let d = errors(&rule("'''\ntls and\n  http.hots == \"x\"'''"));
    assert_eq!(
        at(&d, "unknown field `http.hots`"),
        ("rampart.toml".into(), head_lines + 7, 3)
    );
    // Keys, filters and distinct values are checked the same way.
    let limit = |extra: &str| {
        format!(
            "{HEAD}[site.policy]\n[[site.policy.limit]]\nname = \"l\"\nwindow = \"1s\"\nthreshold = [{{ above = 1, action = \"log\" }}]\n{extra}\n"
        )
    };
    let d = errors(&limit("key = ['cidr(ip.src, 40)']"));
    assert_eq!(at(&d, "a prefix length").1, head_lines + 6);
    let d = errors(&limit(
        "key = ['ip.src']\nfilter = 'http.response.code == 401'",
    ));
    assert!(at(&d, "cannot read response fields").1 > head_lines);
    let d = errors(&limit("key = ['http.response.headers[\"x\"]']"));
    assert!(at(&d, "a key is taken from the request").1 > head_lines);
    let d = errors(&limit("key = ['ip.src']\ndistinct = 'tls'"));
    assert!(at(&d, "a condition is not a key").1 > head_lines);
}

#[test]
fn list_problems_are_reported_where_they_are() {
    let d = errors(&format!(
        "[[list]]\nname = \"b\"\nkind = \"ip\"\nfile = \"broken.txt\"\n{HEAD}"
    ));
    assert_eq!(at(&d, "host bits"), ("broken.txt".into(), 3, 3));
    let d = errors(&format!(
        "[[list]]\nname = \"m\"\nkind = \"ip\"\nfile = \"missing.txt\"\n{HEAD}"
    ));
    assert_eq!(
        at(&d, "cannot read list `m`"),
        ("rampart.toml".into(), 4, 8)
    );
    let d = errors(&format!(
        "[[list]]\nname = \"e\"\nkind = \"asn\"\nentries = [\"AS1\", \"ASX\"]\n{HEAD}"
    ));
    assert_eq!(
        at(&d, "is not an AS number"),
        ("rampart.toml".into(), 4, 19)
    );
}
