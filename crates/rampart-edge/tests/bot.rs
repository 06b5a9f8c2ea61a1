//! Identity and bot score over real sockets: the score's signals reach rules
//! (`bot.score`, `bot.reasons`) and events; verified bots from their networks score 0,
//! impostors do not; a limit keyed on `client.identity` holds one client software on one
//! network to its quota; failed logins raise the identity's score; a tool borrowing a
//! browser's `User-Agent` over TLS is told apart by its fingerprint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

const POLICY: &str = r#"
[site.bot]
login_path = "/status/401"
[[site.bot.verified]]
name = "examplebot"
user_agent = "ExampleBot"
networks = ["127.0.60.0/24"]
[site.policy]
[[site.policy.rule]]
id = "bots-out"
expression = 'bot.score >= 50 and http.request.uri.path != "/status/401"'
action = "block"
status = 451
[[site.policy.rule]]
id = "per-client"
priority = 5
expression = 'http.request.uri.path starts_with "/quota"'
action = "rate_limit"
limit = "per-client"
[[site.policy.rule]]
id = "login-watch"
expression = 'any(bot.reasons[*] == "login_failures")'
action = "log"
[[site.policy.limit]]
name = "per-client"
key = ["client.identity"]
window = "1m"
threshold = [{ above = 5, action = "block", status = 429 }]
"#;

async fn ask(addr: SocketAddr, src: &str, method: &str, path: &str, ua: Option<&str>) -> u16 {
    let ua = ua.map_or(String::new(), |u| format!("User-Agent: {u}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: shop.test\r\n{ua}Accept: text/html\r\nAccept-Language: en\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    split(&raw_from(Some(src), addr, req.as_bytes(), Duration::from_secs(10)).await).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_identities_and_verified_bots() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("bot");
    let log = TempDir::new("bot-log");
    let cfg = basic_config(
        &[o.addr],
        "",
        &format!("security_log = \"{}\"", log.path("security.log")),
    ) + POLICY;
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");

    // A browser's request passes; a tool that says what it is scores 50 and is refused.
    assert_eq!(ask(addr, "127.0.61.1", "GET", "/", Some(CHROME)).await, 200);
    assert_eq!(
        ask(addr, "127.0.61.1", "GET", "/", Some("curl/8.5.0")).await,
        451
    );
    let ev = security_events(&log, 1).await;
    assert_eq!(ev[0]["rampart.bot.score"], 50);
    assert_eq!(
        ev[0]["rampart.bot.reasons"],
        serde_json::json!(["automation_user_agent"])
    );
    assert!(
        ev[0]["rampart.client.identity"]
            .as_str()
            .unwrap()
            .starts_with("f:")
    );

    // A verified bot from its network scores 0; the same User-Agent elsewhere is an
    // impostor.
    let bot = "Mozilla/5.0 (compatible; ExampleBot/2.1)";
    assert_eq!(ask(addr, "127.0.60.9", "GET", "/", Some(bot)).await, 200);
    assert_eq!(ask(addr, "127.0.62.9", "GET", "/", Some(bot)).await, 451);
    let ev = security_events(&log, 2).await;
    assert_eq!(ev[1]["rampart.bot.reasons"][0], "fake_good_bot");

    // Per-identity quota: one client software on one /24 gets 5 a minute; another
    // browser on the same network, or the same one elsewhere, has its own.
    for i in 0..5 {
        assert_eq!(
            ask(addr, "127.0.63.1", "GET", "/quota", Some(CHROME)).await,
            200,
            "{i}"
        );
    }
    assert_eq!(
        ask(addr, "127.0.63.200", "GET", "/quota", Some(CHROME)).await,
        429
    );
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    assert_eq!(
        ask(addr, "127.0.63.1", "GET", "/quota", Some(firefox)).await,
        200
    );
    assert_eq!(
        ask(addr, "127.0.64.1", "GET", "/quota", Some(CHROME)).await,
        200
    );

    // Failed logins (the login path answers 401) raise the identity's score: after five,
    // the next request of that identity is refused.
    for _ in 0..5 {
        assert_eq!(
            ask(addr, "127.0.65.1", "POST", "/status/401", Some(CHROME)).await,
            401
        );
    }
    assert_eq!(
        ask(addr, "127.0.65.1", "GET", "/", Some(CHROME)).await,
        200,
        "30 points"
    );
    let ev = security_events(&log, 4).await;
    let watched: Vec<&serde_json::Value> = ev
        .iter()
        .filter(|e| e["rampart.decision"][0]["id"] == "login-watch")
        .collect();
    assert_eq!(watched.len(), 1, "{ev:?}");
    assert_eq!(watched[0]["http.request.method"], "GET");
    assert_eq!(watched[0]["rampart.bot.score"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_with_a_browser_user_agent_is_told_apart_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let o = Origin::start("o").await;
    let dir = TempDir::new("bot-tls");
    let log = TempDir::new("bot-tls-log");
    let cert = TestCert::new(&["shop.test"]);
    let (c, k) = cert.write(&dir, "shop");
    let cfg = format!(
        "[edge]\naccess_log = \"off\"\nsecurity_log = \"{}\"\n[[tenant]]\nid = \"acme\"\n\
         [[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\ntls = true\n\
         [[certificate]]\nname = \"shop\"\ncert = \"{c}\"\nkey = \"{k}\"\ndefault = true\n\
         [[pool]]\nid = \"p\"\ntenant = \"acme\"\nservers = [\"{}\"]\n\
         [[site]]\nid = \"s\"\ntenant = \"acme\"\nhosts = [\"shop.test\"]\nroute = [{{ path = \"/\", pool = \"p\" }}]\n\
         [site.policy]\n[[site.policy.rule]]\nid = \"impostor\"\nexpression = 'any(bot.reasons[*] == \"tls_mismatch\")'\naction = \"block\"\n",
        log.path("security.log"),
        o.addr
    );
    let e = TestEdge::start(dir, &cfg).await;
    // rustls over HTTP/1.1 claiming to be Chrome: not Chrome's cipher list, no h2.
    let mut s = tls_connect(
        e.addr("tls"),
        "shop.test",
        tls_client(&[&cert], &[b"http/1.1"]),
    )
    .await
    .unwrap();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: {CHROME}\r\nAccept-Language: en\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert_eq!(split(&out).0, 403);
    let ev = security_events(&log, 1).await;
    let reasons = &ev[0]["rampart.bot.reasons"];
    assert_eq!(
        reasons,
        &serde_json::json!(["tls_mismatch", "http1_on_tls", "missing_fetch_metadata"])
    );
    assert_eq!(ev[0]["rampart.bot.score"], 75);
}
