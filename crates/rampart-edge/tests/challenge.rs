//! The challenge over real sockets: the page and its puzzle, answers (good, wrong,
//! replayed, too early), the clearance cookie and where it is accepted (site, address
//! prefix), a form post sent again after the answer, the path without JavaScript, API
//! routes never challenged, key rotation through reloads, and a bad key file refused
//! while the running configuration serves. (The page's script itself runs in headless
//! Chromium: `crates/rampart/tests/browser.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const POLICY: &str = r#"
[[list]]
name = "api_keys"
kind = "string"
entries = ["key-of-partner-1"]
[site.challenge]
difficulty = 8
max_difficulty = 10
noscript_wait = "1s"
[site.policy]
[[site.policy.rule]]
id = "check-account"
expression = 'http.request.uri.path starts_with "/account" or http.request.uri.path == "/login" or http.request.uri.path starts_with "/api/"'
action = "challenge"
[[site.policy.rule]]
id = "partner-keys"
priority = 1
expression = 'http.request.headers["x-api-key"][0] in $api_keys'
action = "tag"
tag = "api"
"#;

fn config(origin: SocketAddr, log: &TempDir, extra: &str) -> String {
    basic_config(
        &[origin],
        "",
        &format!("security_log = \"{}\"", log.path("security.log")),
    )
    .replace(
        "[[site.route]]\npath = \"/\"\npool = \"web\"\n",
        "[[site.route]]\npath = \"/\"\npool = \"web\"\n[[site.route]]\npath = \"/api/\"\npool = \"web\"\nclients = \"api\"\n",
    ) + extra
        + POLICY
}

/// Sends a request from `src`; returns status, head (letter case kept: the cookie is
/// case-sensitive), body.
async fn send(addr: SocketAddr, src: &str, req: String) -> (u16, String, String) {
    let resp = raw_from(Some(src), addr, req.as_bytes(), Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn get_req(path: &str, cookie: Option<&str>) -> String {
    let c = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: shop.test\r\nAccept: text/html\r\n{c}Connection: close\r\n\r\n"
    )
}

/// The data block of a challenge page: puzzle, bits, and the JSON as text.
fn puzzle_of(page: &str) -> (String, u8, serde_json::Value) {
    let start = page
        .find("id=\"rampart-challenge\">")
        .unwrap_or_else(|| panic!("no challenge data in {page}"))
        + "id=\"rampart-challenge\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    let v: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
    (
        v["p"].as_str().unwrap().to_owned(),
        v["bits"].as_u64().unwrap() as u8,
        v,
    )
}

/// Finds the nonce, as the page's script does.
fn solve(p: &str, bits: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| rampart_policy::challenge::solves(p, n, bits))
        .unwrap()
}

/// The wait puzzle of the page's `<noscript>` form.
fn wait_puzzle_of(page: &str) -> String {
    let key = "name=\"p\" value=\"";
    let start = page.find(key).map(|i| i + key.len()).unwrap_or_else(|| {
        let key = "challenge/verify?p=";
        page.find(key).unwrap() + key.len()
    });
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_owned()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The cookie pair (`rampart_clearance=…`) of a Set-Cookie.
fn clearance(head: &str) -> String {
    let sc = header(head, "set-cookie").unwrap_or_else(|| panic!("no cookie in {head}"));
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Lax"),
        "{sc}"
    );
    sc.split(';').next().unwrap().to_owned()
}

/// Gets a clearance for `src` by solving the page of `path`.
async fn clear(addr: SocketAddr, src: &str, path: &str) -> String {
    let (status, _, page) = send(addr, src, get_req(path, None)).await;
    assert_eq!(status, 403);
    let (p, bits, _) = puzzle_of(&page);
    let n = solve(&p, bits);
    let (status, head, _) = send(
        addr,
        src,
        get_req(&format!("/.rampart/challenge/verify?p={p}&n={n}"), None),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    assert_eq!(header(&head, "location"), Some(path));
    clearance(&head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solved_puzzle_clears_the_client_once_and_only_where_it_was_issued() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("challenge");
    let log = TempDir::new("challenge-log");
    let e = TestEdge::start(dir, &config(o.addr, &log, "")).await;
    let addr = e.addr("web");
    let src = "127.0.50.1";

    // The page: a 403 with the puzzle, the script allowed by its hash, never cached.
    let (status, head, page) = send(addr, src, get_req("/account?tab=1", None)).await;
    assert_eq!(status, 403);
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert!(
        header(&head, "content-security-policy")
            .unwrap()
            .contains("script-src 'sha256-")
    );
    assert!(page.contains("role=\"status\"") && page.contains("<noscript>"));
    let (p, bits, data) = puzzle_of(&page);
    assert_eq!(bits, 8);
    assert_eq!(data["method"], "GET");
    assert!(o.seen().is_empty(), "nothing reached the origin");

    // A wrong answer: a fresh page, nothing set.
    let (status, head, page2) = send(
        addr,
        src,
        get_req(&format!("/.rampart/challenge/verify?p={p}&n=wrong"), None),
    )
    .await;
    assert_eq!(status, 403);
    assert!(header(&head, "set-cookie").is_none());
    assert!(page2.contains("did not succeed"));

    // The right answer: a cookie, and back to the original target.
    let n = solve(&p, bits);
    let verify = get_req(&format!("/.rampart/challenge/verify?p={p}&n={n}"), None);
    let (status, head, _) = send(addr, src, verify.clone()).await;
    assert_eq!(status, 303);
    assert_eq!(header(&head, "location"), Some("/account?tab=1"));
    let cookie = clearance(&head);
    // The same answer again is a replay.
    let (status, head, _) = send(addr, src, verify).await;
    assert_eq!(status, 403);
    assert!(header(&head, "set-cookie").is_none());

    // With the cookie: through, from any address of the /24.
    let (status, _, _) = send(addr, src, get_req("/account?tab=1", Some(&cookie))).await;
    assert_eq!(status, 200);
    let (status, _, _) = send(addr, "127.0.50.77", get_req("/account", Some(&cookie))).await;
    assert_eq!(status, 200);
    assert_eq!(o.seen().len(), 2);
    // From another /24, or altered: challenged again.
    let (status, _, _) = send(addr, "127.0.51.1", get_req("/account", Some(&cookie))).await;
    assert_eq!(status, 403);
    let last = if cookie.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &cookie[..cookie.len() - 1]);
    let (status, _, _) = send(addr, src, get_req("/account", Some(&forged))).await;
    assert_eq!(status, 403);

    let m = e.edge.metrics().render();
    let count = |outcome: &str| {
        let key = format!(
            "rampart_challenges_total{{tenant=\"acme\",site=\"shop\",outcome=\"{outcome}\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(-1, |v| v.trim().parse::<i64>().unwrap())
    };
    assert_eq!(count("solved"), 1);
    assert_eq!(count("passed"), 2);
    assert_eq!(count("failed"), 2);
    assert!(count("issued") >= 5, "{m}");
    assert!(m.contains(
        "rampart_challenge_failures_total{tenant=\"acme\",site=\"shop\",reason=\"replayed\"} 1"
    ));
    assert!(m.contains(
        "rampart_challenge_failures_total{tenant=\"acme\",site=\"shop\",reason=\"wrong_answer\"} 1"
    ));
    assert!(m.contains("rampart_challenge_solve_seconds_count{tenant=\"acme\",site=\"shop\"} 1"));
    assert!(m.contains(
        "rampart_policy_verdicts_total{tenant=\"acme\",site=\"shop\",source=\"rule\",outcome=\"passed\"} 2"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_is_sent_again_after_the_answer() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("challenge-post");
    let log = TempDir::new("challenge-post-log");
    let e = TestEdge::start(dir, &config(o.addr, &log, "")).await;
    let addr = e.addr("web");
    let src = "127.0.52.1";
    let body = "user=ann&password=p%26ss+word";
    let post = |path: &str, cookie: Option<&str>| {
        let c = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        format!(
            "POST {path} HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/x-www-form-urlencoded\r\n{c}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, _, page) = send(addr, src, post("/login", None)).await;
    assert_eq!(status, 403);
    let (p, bits, data) = puzzle_of(&page);
    assert_eq!(data["method"], "POST");
    assert_eq!(data["form"], true);
    let carried =
        rampart_policy::challenge::b64_decode(data["body"].as_str().unwrap().trim_end_matches('='))
            .unwrap();
    assert_eq!(carried, body.as_bytes(), "the page carries the body");
    // Without JavaScript the fields are hidden inputs of the wait form.
    assert!(
        page.contains("name=\"password\" value=\"p&amp;ss word\""),
        "{page}"
    );
    // The script posts the fields to the answer endpoint: 307 keeps method and body.
    let n = solve(&p, bits);
    let (status, head, _) = send(
        addr,
        src,
        post(&format!("/.rampart/challenge/verify?p={p}&n={n}"), None),
    )
    .await;
    assert_eq!(status, 307, "{head}");
    assert_eq!(header(&head, "location"), Some("/login"));
    let cookie = clearance(&head);
    // The browser follows the 307: the same POST, with the cookie, reaches the origin.
    let (status, _, _) = send(addr, src, post("/login", Some(&cookie))).await;
    assert_eq!(status, 200);
    let seen = o.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_a_wait_opens_the_way() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("challenge-noscript");
    let log = TempDir::new("challenge-noscript-log");
    let e = TestEdge::start(dir, &config(o.addr, &log, "")).await;
    let addr = e.addr("web");
    let src = "127.0.53.1";
    let (_, _, page) = send(addr, src, get_req("/account", None)).await;
    assert!(page.contains("wait 1 seconds, then press Continue"));
    let w = wait_puzzle_of(&page);
    let answer = get_req(&format!("/.rampart/challenge/verify?p={w}"), None);
    let (status, head, page) = send(addr, src, answer.clone()).await;
    assert_eq!(status, 403, "too early");
    assert!(header(&head, "set-cookie").is_none());
    assert!(page.contains("wait a few more seconds"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, head, _) = send(addr, src, answer).await;
    assert_eq!(status, 303, "{head}");
    let sc = header(&head, "set-cookie").unwrap();
    assert!(
        sc.contains("Max-Age=600"),
        "a shorter clearance without JavaScript: {sc}"
    );
    let cookie = clearance(&head);
    let (status, _, _) = send(addr, src, get_req("/account", Some(&cookie))).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_are_never_challenged() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("challenge-api");
    let log = TempDir::new("challenge-api-log");
    let e = TestEdge::start(dir, &config(o.addr, &log, "")).await;
    let addr = e.addr("web");
    let (status, _, _) = send(addr, "127.0.54.1", get_req("/api/orders", None)).await;
    assert_eq!(status, 200);
    // Elsewhere, a known API key (tagged `api` by a rule) is not challenged; an unknown
    // one is.
    let with_key = |k: &str| {
        format!(
            "GET /account HTTP/1.1\r\nHost: shop.test\r\nX-Api-Key: {k}\r\nConnection: close\r\n\r\n"
        )
    };
    let (status, _, _) = send(addr, "127.0.54.2", with_key("key-of-partner-1")).await;
    assert_eq!(status, 200);
    let (status, _, _) = send(addr, "127.0.54.2", with_key("made-up")).await;
    assert_eq!(status, 403);
    let path = log.path("security.log");
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&path)
            .is_ok_and(|t| t.contains("\"waived\"")))
        .await,
        "the event records the challenge as waived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_through_reloads_and_a_bad_key_file_is_refused() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("challenge-keys");
    let log = TempDir::new("challenge-keys-log");
    let keys = dir.path("challenge.keys");
    let k1 = format!("k1 {}\n", rampart_policy::challenge::b64_encode(&[1u8; 32]));
    let k2 = format!("k2 {}\n", rampart_policy::challenge::b64_encode(&[2u8; 32]));
    std::fs::write(&keys, &k1).unwrap();
    let with_keys = format!("\n[challenge]\nkey_file = \"{keys}\"\n");
    let cfg = config(o.addr, &log, &with_keys);
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");
    let src = "127.0.55.1";
    let old = clear(addr, src, "/account").await;
    let ok = |c: String| async move { send(addr, src, get_req("/account", Some(&c))).await.0 };
    assert_eq!(ok(old.clone()).await, 200);
    // New key in front: old tokens still pass, new ones are signed by the new key.
    std::fs::write(&keys, format!("{k2}{k1}")).unwrap();
    e.rewrite(&cfg).await.unwrap();
    assert_eq!(ok(old.clone()).await, 200);
    let new = clear(addr, src, "/account").await;
    assert_ne!(new, old);
    // Old key retired: its tokens are refused, new ones pass.
    std::fs::write(&keys, &k2).unwrap();
    e.rewrite(&cfg).await.unwrap();
    assert_eq!(ok(old).await, 403);
    assert_eq!(ok(new.clone()).await, 200);
    // A broken key file: the reload is refused with the file's line and column, and
    // the running keys keep working.
    std::fs::write(&keys, format!("{k2}k3 c2hvcnQ=\n")).unwrap();
    let err = e.rewrite(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("challenge.keys:2:4"), "{err}");
    assert!(err.contains("at least 32"), "{err}");
    assert_eq!(ok(new).await, 200);
}
