//! The WAF in the edge, over real sockets, with the OWASP CRS v4 from `../shared/crs`:
//! enforce and monitor modes, request bodies, declarative exclusions, security events
//! with masking, and a broken ruleset refused at reload while the running one serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::*;

fn crs() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs");
    assert!(
        p.join("rules").is_dir(),
        "CRS v4 is expected at {} (../shared/crs beside the repository)",
        p.display()
    );
    p.canonicalize().unwrap()
}

fn waf_config(origin: std::net::SocketAddr, dir: &TempDir, waf: &str) -> String {
    basic_config(
        &[origin],
        "",
        &format!("security_log = \"{}\"", dir.path("security.log")),
    ) + &format!("[site.waf]\nrules = \"{}\"\n{waf}\n", crs().display())
}

/// The security events written so far (waits until `n` are there).
async fn events(dir: &TempDir, n: usize) -> Vec<serde_json::Value> {
    let path = dir.path("security.log");
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    eventually(Duration::from_secs(10), || read().len() >= n).await;
    read()
}

fn rule_ids(e: &serde_json::Value) -> Vec<u64> {
    e["rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

const SQLI: &str = "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_mode_blocks_attacks_with_the_block_page_and_passes_benign_requests() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-enforce");
    let cfg = waf_config(o.addr, &dir, "paranoia_level = 1");
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");

    let (status, _, _) = get(addr, "shop.test", "/catalog?item=1234&color=blue", "").await;
    assert_eq!(status, 200, "a benign request reaches the origin");

    let (status, head, body) = get(addr, "shop.test", SQLI, "").await;
    assert_eq!(status, 403, "{head}\n{body}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("the block answer carries the request id")
        .trim()
        .to_owned();
    assert!(body.contains(&id), "the block page shows the request id");
    assert!(
        !o.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path.starts_with("/search")),
        "a blocked request never reaches the origin"
    );

    // An attack in a urlencoded body and in a JSON body (phase 2).
    for (ctype, payload) in [
        (
            "application/x-www-form-urlencoded",
            "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        ),
        (
            "application/json",
            r#"{"comment":"<script>alert(document.cookie)</script>"}"#,
        ),
    ] {
        let req = format!(
            "POST /comments HTTP/1.1\r\nHost: shop.test\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        );
        let (status, _, _) = split(&raw(addr, req.as_bytes(), Duration::from_secs(10)).await);
        assert_eq!(status, 403, "{ctype} body attack");
    }
    // A body its processor cannot parse is refused, not waved through uninspected.
    let bad = r#"{"comment": "x"#;
    let req = format!(
        "POST /comments HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
        bad.len()
    );
    let (status, _, _) = split(&raw(addr, req.as_bytes(), Duration::from_secs(10)).await);
    assert_eq!(status, 400, "a malformed JSON body");
    let req = "POST /comments HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: 27\r\nConnection: close\r\n\r\n{\"comment\":\"great product\"}";
    let (status, _, _) = split(&raw(addr, req.as_bytes(), Duration::from_secs(10)).await);
    assert_eq!(status, 200, "a benign JSON body passes");
    assert!(
        o.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.body == b"{\"comment\":\"great product\"}"),
        "the inspected body is forwarded whole"
    );

    let evs = events(&e.dir, 3).await;
    let block = evs
        .iter()
        .find(|v| v["http.request.id"] == id.as_str())
        .expect("an event for the blocked request");
    assert_eq!(block["event.action"], "block");
    assert_eq!(block["event.dataset"], "rampart.security");
    assert_eq!(block["organization.id"], "acme");
    assert_eq!(block["rampart.site"], "shop");
    assert_eq!(block["rampart.waf.mode"], "enforce");
    assert_eq!(block["rampart.waf.decided_by"], 949110);
    assert!(block["rampart.waf.inbound_score"].as_i64().unwrap() >= 5);
    let ids = rule_ids(block);
    assert!(ids.contains(&949110), "{ids:?}");
    assert!(
        ids.iter().any(|i| (942000..943000).contains(i)),
        "an SQLi rule: {ids:?}"
    );
    let sqli = block["rule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| (942000..943000).contains(&r["id"].as_u64().unwrap()))
        .unwrap();
    assert!(
        sqli["matched_variables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "ARGS:q"),
        "{sqli}"
    );
    assert!(
        sqli["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "attack-sqli")
    );
    // Benign requests yield no event.
    assert!(!evs.iter().any(|v| v["url.path"] == "/catalog"), "{evs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_forwards_attacks_and_says_it_would_have_blocked() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-monitor");
    let cfg = waf_config(o.addr, &dir, "mode = \"monitor\"");
    let e = TestEdge::start(dir, &cfg).await;
    let path = format!("{SQLI}&password=hunter2&card=4111111111111111");
    let (status, _, _) = get(e.addr("web"), "shop.test", &path, "").await;
    assert_eq!(status, 200, "monitor mode blocks nothing");
    assert!(
        o.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path.starts_with("/search"))
    );
    let evs = events(&e.dir, 1).await;
    let ev = &evs[0];
    assert_eq!(ev["event.action"], "would_block");
    assert_eq!(ev["rampart.waf.mode"], "monitor");
    assert_eq!(ev["http.response.status_code"], 200);
    let q = ev["url.query"].as_str().unwrap();
    assert!(q.contains("password=[masked]"), "{q}");
    assert!(q.contains("card=************1111"), "{q}");
    assert!(
        !ev.to_string().contains("hunter2"),
        "no password in the event"
    );
    assert!(
        !ev.to_string().contains("4111111111111111"),
        "no card number in the event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarative_exclusions_apply_to_their_path_and_target_only() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-exclude");
    let cfg = waf_config(
        o.addr,
        &dir,
        "[[site.waf.exclude]]\ntag = \"attack-sqli\"\ntarget = \"ARGS:q\"\npath = \"/search\"\n",
    );
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");
    let (status, _, _) = get(addr, "shop.test", SQLI, "").await;
    assert_eq!(
        status, 200,
        "SQLi rules do not look at ARGS:q under /search"
    );
    let other = SQLI.replace("/search", "/find");
    let (status, _, _) = get(addr, "shop.test", &other, "").await;
    assert_eq!(status, 403, "elsewhere they still do");
    let (status, _, _) = get(addr, "shop.test", &SQLI.replace("?q=", "?s="), "").await;
    assert_eq!(
        status, 403,
        "and other arguments are still inspected under /search"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ruleset_is_refused_at_reload_and_the_running_one_keeps_blocking() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-reload");
    let cfg = waf_config(o.addr, &dir, "");
    let e = TestEdge::start(dir, &cfg).await;
    let bad = e.dir.path("exclusions.conf");
    std::fs::write(
        &bad,
        "SecRuleRemoveById 942100\nSecRule ARGS \"@rx x\" \"id:1,phase:2,pass,bogusaction\"\n",
    )
    .unwrap();
    let broken = waf_config(o.addr, &e.dir, &format!("exclusion_files = [\"{bad}\"]"));
    let err = e
        .rewrite(&broken)
        .await
        .expect_err("the reload is refused")
        .to_string();
    assert!(
        err.contains("exclusions.conf:2:"),
        "located at the bad line: {err}"
    );
    assert!(err.contains("bogusaction"), "{err}");
    let (status, _, _) = get(e.addr("web"), "shop.test", SQLI, "").await;
    assert_eq!(status, 403, "the previous ruleset still blocks");

    let missing = waf_config(o.addr, &e.dir, "").replace(
        &format!("rules = \"{}\"", crs().display()),
        "rules = \"no-such-crs\"",
    );
    let err = e.rewrite(&missing).await.expect_err("refused").to_string();
    assert!(
        err.contains("rampart.toml:") && err.contains("no-such-crs"),
        "{err}"
    );
    let (status, _, _) = get(e.addr("web"), "shop.test", "/catalog", "").await;
    assert_eq!(status, 200);
}

/// A request target with characters a URI may not hold raw (`"`, `{`, `|` …) is accepted
/// as nginx accepts it: the origin gets them percent-encoded, and the rules see the
/// target exactly as it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_request_targets_reach_the_rules_as_sent() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-raw");
    std::fs::write(
        dir.path("mine.conf"),
        "SecRuleEngine On\nSecRule REQUEST_URI_RAW \"@contains {\\\"a\\\"\" \"id:10,phase:1,deny,status:403,log,msg:'raw braces'\"\n",
    )
    .unwrap();
    let cfg = basic_config(
        &[o.addr],
        "",
        &format!("security_log = \"{}\"", dir.path("security.log")),
    ) + "[site.waf]\nrules = \"mine.conf\"\n";
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");
    let (status, _, _) = get(addr, "shop.test", r#"/s?q="x"|y"#, "").await;
    assert_eq!(status, 200, "accepted and forwarded");
    assert!(
        o.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.path == "/s?q=%22x%22%7Cy"),
        "{:?}",
        o.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    let (status, _, _) = get(addr, "shop.test", r#"/s?q={"a":1}"#, "").await;
    assert_eq!(status, 403, "the rule saw the raw braces and quotes");
    let evs = events(&e.dir, 1).await;
    assert_eq!(rule_ids(&evs[0]), vec![10]);
    assert_eq!(evs[0]["event.action"], "block");
}

/// Phase 4 sees a bounded prefix of the response body: an SQL error leaking from the
/// origin's page is blocked before any of it reaches the client; a clean page passes
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_inspected_before_they_leave() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-response");
    let cfg = waf_config(o.addr, &dir, "response_body_limit = \"32KiB\"");
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");
    let leak = "/page?body=You%20have%20an%20error%20in%20your%20SQL%20syntax%20near%20line%201";
    let (status, _, body) = get(addr, "shop.test", leak, "").await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("SQL syntax"), "nothing of the page went out");
    let (status, _, body) = get(addr, "shop.test", "/page?body=hello%20world", "").await;
    assert_eq!((status, body.as_str()), (200, "hello world"));
    // A body longer than the inspected prefix still arrives whole.
    let (status, head, body) = get(addr, "shop.test", "/big?n=200000&type=text/html", "").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert_eq!(
        body.bytes().filter(|&c| c == b'x').count(),
        200_000,
        "every byte, in order"
    );
    let evs = events(&e.dir, 1).await;
    let ev = evs
        .iter()
        .find(|v| v["url.path"] == "/page")
        .expect("an event for the leak");
    assert_eq!(ev["rampart.waf.decided_by"], 959100, "{ev}");
    assert!(ev["rampart.waf.outbound_score"].as_i64().unwrap() >= 4);
    assert!(
        rule_ids(ev).iter().any(|i| (951000..952000).contains(i)),
        "{ev}"
    );
}

/// Responses are inspected per site: a site without the WAF beside one with response
/// inspection gets its pages untouched (and without a field map built for them), the WAF
/// site keeps blocking leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_waf_sites_responses_are_inspected() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("waf-response-per-site");
    let cfg = waf_config(o.addr, &dir, "response_body_limit = \"32KiB\"")
        + "\n[[site]]\nid = \"plain\"\ntenant = \"acme\"\nhosts = [\"plain.test\"]\n[[site.route]]\npath = \"/\"\npool = \"web\"\n";
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");
    let leak = "/page?body=You%20have%20an%20error%20in%20your%20SQL%20syntax%20near%20line%201";
    let (status, head, body) = get(addr, "plain.test", leak, "").await;
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("SQL syntax"), "{body}");
    assert_eq!(
        head.matches("x-request-id:").count(),
        1,
        "one request id: {head}"
    );
    let (status, _, body) = get(addr, "shop.test", leak, "").await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("SQL syntax"), "nothing of the page went out");
}
