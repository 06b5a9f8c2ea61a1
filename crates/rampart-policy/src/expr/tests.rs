use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::list::{ListKind, parse as parse_list};
use crate::request::Response;

fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in list {
        h.append(*n, HeaderValue::from_static(v));
    }
    h
}

fn lists() -> Lists {
    let mut l = Lists::new();
    for (name, kind, text) in [
        ("office", ListKind::Ip, "198.51.100.0/24\n2001:db8:1::/48\n"),
        ("eu", ListKind::Country, "DE\nFR\nAT\n"),
        ("hosting", ListKind::Asn, "AS16509\n14061\n"),
    ] {
        match parse_list(kind, text) {
            Ok(list) => l.insert(name, list),
            Err(e) => unreachable!("{name}: {e:?}"),
        }
    }
    l
}

fn compile(src: &str) -> Expr {
    Expr::compile(src, &lists()).unwrap_or_else(|e| unreachable!("{src}:\n{}", e.render(src)))
}

fn error(src: &str) -> ExprError {
    match Expr::compile(src, &lists()) {
        Ok(_) => unreachable!("`{src}` compiled"),
        Err(e) => e,
    }
}

const TAGS: &[Cow<'static, str>] = &[Cow::Borrowed("waf:sqli"), Cow::Borrowed("bot")];

/// Runs `check` with a typical login request.
fn with_request(check: impl FnOnce(&mut Request<'_>)) {
    let h = headers(&[
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        ),
        ("accept", "text/html"),
        ("accept", "application/json"),
        ("cookie", "session=abc123; theme=dark"),
        ("cookie", "lang=de"),
        ("x-api-key", "K-42"),
    ]);
    let body = vec![
        (b"username".to_vec(), b"alice".to_vec()),
        (b"password".to_vec(), b"hunter2".to_vec()),
    ];
    let mut req = Request::new(
        "198.51.100.23"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}")),
        "POST",
        "bank.example",
        "/login?next=%2Faccount&lang=de+AT&flag",
        &h,
    );
    req.country = "DE";
    req.asn = 3320;
    req.tls = true;
    req.port = 8443;
    req.body_args = Some(&body);
    req.tags = TAGS;
    req.waf_score = 5;
    req.tls_fingerprint = "t13d1516h2_8daaf6152771_02713d6af862";
    check(&mut req);
}

#[test]
fn fields_operators_and_functions_evaluate() {
    let cases: &[(&str, bool)] = &[
        (r#"http.request.method == "POST""#, true),
        (r#"http.request.method eq "GET""#, false),
        (
            r#"http.request.method != "GET" && http.host == "bank.example""#,
            true,
        ),
        (r#"http.request.uri.path == "/login""#, true),
        (r#"http.request.uri.query contains "lang=""#, true),
        (r#"http.request.uri starts_with "/login?""#, true),
        (r#"http.request.uri.path ends_with "gin""#, true),
        (r#"http.request.uri.path matches r"^/log(in|out)$""#, true),
        (r#"http.request.uri.path ~ "^/admin""#, false),
        (r#"http.request.uri.args["next"][0] == "/account""#, true),
        (r#"http.request.uri.args["lang"][0] == "de AT""#, true),
        (r#"http.request.uri.args["flag"][0] == """#, true),
        (r#"len(http.request.uri.args["missing"]) == 0"#, true),
        (r#"any(http.request.uri.args.names[*] == "flag")"#, true),
        (r#"http.request.scheme == "https" and tls"#, true),
        (r#"not tls"#, false),
        (r#"tls == true"#, true),
        (
            r#"listener.port == 8443 and listener.port in {80 443 8000..8999}"#,
            true,
        ),
        (r#"ip.src == 198.51.100.23"#, true),
        (r#"ip.src != 198.51.100.23"#, false),
        (r#"ip.src in {198.51.100.0/24}"#, true),
        (
            r#"ip.src in {10.0.0.0/8, 198.51.100.20..198.51.100.30}"#,
            true,
        ),
        (r#"ip.src in {10.0.0.0/8 2001:db8::/32}"#, false),
        (r#"ip.src in $office"#, true),
        (r#"ip.src.country in $eu"#, true),
        (r#"ip.src.country in {"US" "CA"}"#, false),
        (r#"ip.src.asn in $hosting"#, false),
        (r#"ip.src.asn == 3320"#, true),
        (r#"http.user_agent contains "Firefox""#, true),
        (r#"lower(http.user_agent) contains "firefox""#, true),
        (r#"upper(http.request.method) == "POST""#, true),
        (r#"len(http.user_agent) > 10"#, true),
        (r#"http.referer == """#, true),
        (
            r#"http.request.headers["Accept"][1] == "application/json""#,
            true,
        ),
        (r#"http.request.headers["accept"][2] == "x""#, false),
        (r#"http.request.headers["accept"][2] != "x""#, true),
        (r#"len(http.request.headers["accept"]) == 2"#, true),
        (
            r#"any(http.request.headers["accept"][*] contains "json")"#,
            true,
        ),
        (
            r#"all(http.request.headers["accept"][*] contains "json")"#,
            false,
        ),
        (r#"all(http.request.headers["x-none"][*] == "x")"#, true),
        (r#"any(http.request.headers.names[*] == "x-api-key")"#, true),
        (r#"http.request.cookies["session"][0] == "abc123""#, true),
        (r#"http.request.cookies["lang"][0] == "de""#, true),
        (r#"len(http.request.cookies.names) == 3"#, true),
        (r#"http.request.body.args["username"][0] == "alice""#, true),
        (
            r#"any(http.request.body.args.names[*] in {"password" "pin"})"#,
            true,
        ),
        (r#"any(tags[*] == "bot")"#, true),
        (r#"waf.score >= 5 and waf.score < 10"#, true),
        (r#"tls.fingerprint starts_with "t13d""#, true),
        (
            r#"url_decode(http.request.uri.query) contains "next=/account""#,
            true,
        ),
        (r#"http.request.version == "HTTP/1.1""#, true),
        (
            r#"(http.request.method == "GET" or http.request.method == "POST") and not ip.src in $office"#,
            false,
        ),
        (r#"not not true"#, true),
        (r#"-5 < 0 and 3 in {-10..10}"#, true),
        (
            "http.request.method == \"POST\" # a comment\n  and tls",
            true,
        ),
        (
            r#"any(lower(http.request.headers["accept"][*]) == "text/html" and len(http.request.headers["accept"][*]) == 9)"#,
            true,
        ),
        (
            r#"any(http.request.headers["accept"][*] == "text/html" and any(tags[*] == "bot"))"#,
            true,
        ),
        (r#"http.response.code == 0"#, true),
        (r#"cidr(ip.src, 24) == 198.51.100.0"#, true),
        (r#"cidr(ip.src, 16, 48) in {198.51.0.0/16}"#, true),
        (
            r#"cidr(ip.src, 32) == ip.src and cidr(ip.src, 0) == 0.0.0.0"#,
            true,
        ),
    ];
    with_request(|req| {
        for &(src, want) in cases {
            assert_eq!(compile(src).matches(req), want, "{src}");
        }
    });
}

#[test]
fn tags_added_by_rules_are_seen() {
    let e = compile(r#"any(tags[*] == "suspect")"#);
    with_request(|req| {
        assert!(!e.matches(req));
        req.add_tag(Arc::from("suspect"));
        assert!(e.matches(req));
        assert!(req.has_tag("suspect") && req.has_tag("bot"));
    });
}

#[test]
fn response_fields_make_a_response_expression() {
    let e = compile(
        r#"http.response.code == 401 and any(http.response.headers["www-authenticate"][*] starts_with "Basic")"#,
    );
    assert!(e.reads_response());
    assert!(!compile("tls").reads_response());
    let rh = headers(&[("www-authenticate", "Basic realm=x")]);
    let h = HeaderMap::new();
    let mut req = Request::new(
        "192.0.2.1".parse().unwrap_or_else(|e| unreachable!("{e}")),
        "GET",
        "h",
        "/",
        &h,
    );
    assert!(!e.matches(&req));
    req.response = Some(Response {
        status: 401,
        headers: &rh,
    });
    assert!(e.matches(&req));
}

#[test]
fn ipv6_and_mapped_addresses() {
    let h = HeaderMap::new();
    let req = Request::new(
        "2001:db8:1::5"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}")),
        "GET",
        "h",
        "/",
        &h,
    );
    assert!(compile("ip.src in $office").matches(&req));
    assert!(compile("ip.src in {2001:db8::/32}").matches(&req));
    assert!(compile("ip.src == 2001:db8:1::5").matches(&req));
    let req = Request::new(
        "::ffff:198.51.100.1"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}")),
        "GET",
        "h",
        "/",
        &h,
    );
    assert!(compile("ip.src in $office").matches(&req));
    assert!(compile("ip.src == 198.51.100.1").matches(&req));
}

/// Each bad expression: where the error points (line, column), and words its message
/// or expectation must hold.
#[test]
fn bad_expressions_are_located_and_explained() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        ("http.request.method = \"GET\"", (1, 21), "`==`"),
        (
            "http.reqest.method == \"GET\"",
            (1, 1),
            "did you mean `http.request.method`",
        ),
        ("http.request.method == GET", (1, 24), "unknown field `GET`"),
        (
            "http.request.method == 404",
            (1, 1),
            "cannot compare a string with an integer",
        ),
        (
            "http.request.method == 404",
            (1, 1),
            "strings are written in quotes",
        ),
        (
            "listener.port == \"443\"",
            (1, 1),
            "numbers and addresses are written without quotes",
        ),
        ("http.request.method", (1, 1), "not a condition"),
        ("http.request.method \"GET\"", (1, 21), "an operator"),
        ("tls and", (1, 8), "unexpected the end"),
        ("(tls", (1, 5), "`)`"),
        ("tls)", (1, 4), "unexpected `)`"),
        ("tls == true)", (1, 12), "after a complete condition"),
        ("http.request.method == \"GET", (1, 24), "not closed"),
        (
            "http.request.uri.path matches \"(\"",
            (1, 31),
            "invalid regular expression",
        ),
        (
            "http.request.uri.path matches http.host",
            (1, 31),
            "pattern written in the rule",
        ),
        ("ip.src in $offfice", (1, 11), "did you mean `$office`"),
        ("ip.src in $eu", (1, 11), "list of strings"),
        ("ip.src in {\"a\"}", (1, 12), "an address"),
        ("ip.src in {10.0.0.1/8}", (1, 12), "host bits"),
        ("ip.src < 10.0.0.1", (1, 1), "for networks"),
        ("http.request.headers == \"x\"", (1, 1), "compared by name"),
        (
            "http.request.headers[\"accept\"] == \"x\"",
            (1, 1),
            "element by element",
        ),
        ("http.request.headers[0]", (1, 1), "indexed by a name"),
        (
            "http.request.headers[\"bad header\"][0] == \"\"",
            (1, 1),
            "not a valid header name",
        ),
        (
            "http.request.headers[\"accept\"][*] == \"x\"",
            (1, 1),
            "only goes inside any() or all()",
        ),
        ("any(tls)", (1, 1), "needs an array written with `[*]`"),
        (
            "any(tags[*] == \"a\" and http.request.headers.names[*] == \"b\")",
            (1, 24),
            "one array",
        ),
        ("lowr(http.host) == \"a\"", (1, 1), "did you mean `lower`"),
        (
            "lower(http.host, http.host) == \"a\"",
            (1, 1),
            "one argument",
        ),
        ("lower(tags) == \"a\"", (1, 7), "of an array"),
        ("lower == \"a\"", (1, 1), "is a function"),
        ("waf.score > 1 > 0", (1, 15), "do not chain"),
        ("waf.score in {5..1}", (1, 15), "empty"),
        ("http.host contains", (1, 19), "needs a value"),
        ("tls\nand http.host ==", (2, 17), "needs a value"),
        (
            "tls and\n  http.hots == \"x\"",
            (2, 3),
            "did you mean `http.host`",
        ),
        ("waf.score > 99999999999999999999", (1, 13), "too large"),
        ("http.host == \"\\q\"", (1, 15), "unknown escape"),
        ("http.host == 'x'", (1, 14), "unexpected character"),
        ("tls & tls", (1, 5), "`&&`"),
        ("$", (1, 1), "list name"),
        ("http.host == \"a\" or", (1, 20), "unexpected the end"),
        ("10.0.0.0/8", (1, 1), "only be a member of a set"),
        ("http.host in $", (1, 14), "list name"),
        ("http.host in \"a\"", (1, 14), "a set"),
        ("http.host in {\"a\"", (1, 18), "not closed"),
        ("1.2.3 == 1", (1, 1), "not a field, a number or an address"),
        ("", (1, 1), "unexpected the end"),
        ("cidr(ip.src, 33) == ip.src", (1, 14), "from 0 to 32"),
        ("cidr(ip.src, 24, 129) == ip.src", (1, 18), "from 0 to 128"),
        (
            "cidr(http.host, 24) == ip.src",
            (1, 6),
            "cidr() of a string",
        ),
        ("cidr(ip.src) == ip.src", (1, 1), "two or three arguments"),
    ];
    for &(src, at, words) in cases {
        let e = error(src);
        let text = e.to_string();
        assert!(text.contains(words), "`{src}`: `{text}` lacks `{words}`");
        assert_eq!(e.line_col(src), at, "`{src}`: {text}");
        // Rendering never fails, whatever the span.
        assert!(e.render(src).contains(&e.message));
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let src = format!("{}tls{}", "(".repeat(100), ")".repeat(100));
    assert!(error(&src).message.contains("nests deeper"));
    let src = format!("{}tls", "not ".repeat(100));
    assert!(error(&src).message.contains("nests deeper"));
    let src = format!("{}tls{}", "(".repeat(60), ")".repeat(60));
    with_request(|req| assert!(compile(&src).matches(req)));
}

#[test]
fn render_points_at_the_token() {
    let src = "tls and\n  http.hots == \"x\"";
    let r = error(src).render(src);
    assert!(r.starts_with("2:3: unknown field `http.hots`"), "{r}");
    assert!(
        r.contains("\n  |   http.hots == \"x\"\n  |   ^^^^^^^^^\n"),
        "{r}"
    );
    assert!(r.contains("= hint: did you mean `http.host`?"), "{r}");
}

#[test]
fn raw_strings_and_escapes() {
    with_request(|req| {
        assert!(compile(r##"http.request.uri.path matches r#"^/lo"?gin$"#"##).matches(req));
        assert!(compile(r#"http.request.uri.path == "\x2flogin""#).matches(req));
    });
    assert!(
        error(r#"http.host == r"abc"#)
            .message
            .contains("not closed")
    );
}

#[test]
fn key_expressions_write_values() {
    let cases: &[(&str, Option<&str>)] = &[
        ("cidr(ip.src, 24, 64)", Some("198.51.100.0")),
        ("ip.src", Some("198.51.100.23")),
        ("ip.src.asn", Some("3320")),
        (
            "http.request.headers[\"accept\"]",
            Some("text/html,application/json"),
        ),
        ("http.request.headers[\"x-none\"]", None),
        ("http.request.cookies[\"session\"]", Some("abc123")),
        ("http.request.body.args[\"username\"]", Some("alice")),
        ("lower(http.request.method)", Some("post")),
        ("http.request.headers[\"accept\"][5]", None),
        ("tags", Some("waf:sqli,bot")),
        ("http.referer", None),
        (
            "tls.fingerprint",
            Some("t13d1516h2_8daaf6152771_02713d6af862"),
        ),
    ];
    with_request(|req| {
        for &(src, want) in cases {
            let k = KeyExpr::compile(src, &lists()).unwrap_or_else(|e| unreachable!("{src}: {e}"));
            let mut out = b"prefix:".to_vec();
            let ok = k.write(req, &mut out);
            let got = ok.then(|| String::from_utf8_lossy(&out["prefix:".len()..]).into_owned());
            assert_eq!(got.as_deref(), want, "{src}");
        }
    });
    for (src, words) in [
        ("tls", "a condition is not a key"),
        ("http.request.headers", "keyed by one of its names"),
        ("ip.src ==", "needs a value"),
    ] {
        match KeyExpr::compile(src, &lists()) {
            Ok(_) => unreachable!("{src} compiled"),
            Err(e) => assert!(e.to_string().contains(words), "{src}: {e}"),
        }
    }
}
