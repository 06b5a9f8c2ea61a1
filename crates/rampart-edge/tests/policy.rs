//! Policies in the edge, over real sockets: lists, custom rules with every action, rate
//! limits per address prefix (clients on distinct 127.x.y.z addresses), responses
//! counted, monitor mode, security events that explain the decision, counters that
//! survive a reload, and a bad policy refused at reload while the running one serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

fn config(origin: SocketAddr, dir: &TempDir, policy: &str) -> String {
    basic_config(
        &[origin],
        "",
        &format!("security_log = \"{}\"", dir.path("security.log")),
    ) + policy
        + "\n[[list]]\nname = \"office\"\nkind = \"ip\"\nentries = [\"127.0.9.0/24\"]\n"
}

/// A request from `src` (a loopback address); returns status, head and body.
async fn send(
    addr: SocketAddr,
    src: &str,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: shop.test\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    split(&raw_from(Some(src), addr, req.as_bytes(), Duration::from_secs(10)).await)
}

const RULES: &str = r#"
[site.policy]
[[site.policy.list]]
list = "office"
use = "allow"
[[site.policy.rule]]
id = "no-admin"
priority = 10
expression = 'http.request.uri.path starts_with "/admin"'
action = "block"
description = "admin only from the office"
ticket = "CHG-7"
[[site.policy.rule]]
id = "old-shop"
expression = 'http.request.uri.path == "/old"'
action = "redirect"
location = "/new"
status = 301
[[site.policy.rule]]
id = "tier"
priority = 1
expression = 'http.request.headers["x-api-key"][0] == "gold-key"'
action = "set_header"
header = "x-client-tier"
value = "gold"
[[site.policy.rule]]
id = "strip"
priority = 2
expression = 'true'
action = "remove_header"
header = "x-debug"
[[site.policy.rule]]
id = "curl"
priority = 3
expression = 'lower(http.user_agent) contains "curl"'
action = "tag"
tag = "tool"
[[site.policy.rule]]
id = "tools-no-export"
priority = 20
expression = 'any(tags[*] == "tool") and http.request.uri.path == "/export"'
action = "challenge"
[[site.policy.rule]]
id = "json-role"
expression = 'http.request.body.args["user.role"][0] == "admin"'
action = "block"
status = 422
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_block_redirect_tag_challenge_and_change_headers() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("policy-rules");
    let e = TestEdge::start(
        dir,
        &config(o.addr, &TempDir::new("policy-rules-log"), RULES),
    )
    .await;
    let addr = e.addr("web");

    let (status, head, body) = send(addr, "127.0.1.1", "GET", "/admin/users", "", "").await;
    assert_eq!(status, 403, "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(body.contains(&id), "the block page shows the request id");
    // From the office (an allow list) the same request passes.
    let (status, _, _) = send(addr, "127.0.9.9", "GET", "/admin/users", "", "").await;
    assert_eq!(status, 200);

    let (status, head, _) = send(addr, "127.0.1.1", "GET", "/old", "", "").await;
    assert_eq!(status, 301);
    assert!(head.contains("location: /new"), "{head}");

    let (status, _, _) = send(
        addr,
        "127.0.1.1",
        "GET",
        "/export",
        "User-Agent: curl/8.5\r\n",
        "",
    )
    .await;
    assert_eq!(status, 403, "a tagged tool is challenged on /export");
    let (status, _, _) = send(
        addr,
        "127.0.1.1",
        "GET",
        "/export",
        "User-Agent: Mozilla/5.0\r\n",
        "",
    )
    .await;
    assert_eq!(status, 200);

    let (status, _, _) = send(
        addr,
        "127.0.1.1",
        "GET",
        "/api/x",
        "X-Api-Key: gold-key\r\nX-Debug: 1\r\n",
        "",
    )
    .await;
    assert_eq!(status, 200);
    let seen = o.seen().into_iter().find(|s| s.path == "/api/x").unwrap();
    assert_eq!(seen.headers.get("x-client-tier").unwrap(), "gold");
    assert!(
        seen.headers.get("x-debug").is_none(),
        "removed before forwarding"
    );

    // A rule on a JSON body argument runs on the body.
    let json = r#"{"user":{"name":"eve","role":"admin"}}"#;
    let (status, _, _) = send(
        addr,
        "127.0.1.1",
        "POST",
        "/signup",
        "Content-Type: application/json\r\n",
        json,
    )
    .await;
    assert_eq!(status, 422);
    let json = r#"{"user":{"name":"bob","role":"viewer"}}"#;
    let (status, _, _) = send(
        addr,
        "127.0.1.1",
        "POST",
        "/signup",
        "Content-Type: application/json\r\n",
        json,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        o.seen().iter().any(|s| s.body == json.as_bytes()),
        "the body is forwarded whole"
    );
    assert!(!o.seen().iter().any(|s| {
        s.path.starts_with("/admin")
            && s.headers
                .get("x-forwarded-for")
                .is_some_and(|v| v == "127.0.1.1")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_explain_the_decision() {
    let o = Origin::start("o").await;
    let log = TempDir::new("policy-events-log");
    let e = TestEdge::start(TempDir::new("policy-events"), &config(o.addr, &log, RULES)).await;
    let addr = e.addr("web");
    send(
        addr,
        "127.0.1.1",
        "GET",
        "/admin/x?password=hunter2",
        "User-Agent: curl/8\r\n",
        "",
    )
    .await;
    let ev = security_events(&log, 1).await;
    let ev = &ev[0];
    assert_eq!(ev["event.action"], "block");
    assert_eq!(ev["event.module"], "policy");
    assert_eq!(ev["client.ip"], "127.0.1.1");
    assert_eq!(ev["tags"], serde_json::json!(["tool"]));
    let d = ev["rampart.decision"].as_array().unwrap();
    let ids: Vec<&str> = d.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["strip", "curl", "no-admin"], "every verdict in order");
    assert_eq!(d[1]["outcome"], "note");
    assert_eq!(
        d[1]["reason"],
        "tag tool: lower(http.user_agent) contains \"curl\""
    );
    assert_eq!(d[2]["outcome"], "block");
    assert_eq!(d[2]["mode"], "enforce");
    assert_eq!(d[2]["reason"], "admin only from the office [CHG-7]");
    // A request that only had its headers changed writes no event.
    send(addr, "127.0.1.1", "GET", "/plain", "", "").await;
    send(addr, "127.0.1.1", "GET", "/admin/y", "", "").await;
    let all = security_events(&log, 2).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["url.path"], "/admin/y");
    assert!(!ev.to_string().contains("hunter2"), "the query is masked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_limit_per_prefix_blocks_the_prefix_only_and_survives_a_reload() {
    let o = Origin::start("o").await;
    let log = TempDir::new("policy-limit-log");
    let policy = r#"
[site.policy]
[[site.policy.limit]]
name = "login"
filter = 'http.request.method == "POST" and http.request.uri.path == "/login"'
key = ["cidr(ip.src, 24, 64)"]
window = "60s"
[[site.policy.limit.threshold]]
above = 3
action = "log"
[[site.policy.limit.threshold]]
above = 6
action = "block"
hold = "10m"
"#;
    let cfg = config(o.addr, &log, policy);
    let e = TestEdge::start(TempDir::new("policy-limit"), &cfg).await;
    let addr = e.addr("web");
    let mut got = Vec::new();
    // Eight clients of one /24, one request each.
    for i in 1..=8 {
        let (status, _, _) = send(addr, &format!("127.0.3.{i}"), "POST", "/login", "", "u=a").await;
        got.push(status);
    }
    assert_eq!(got, [200, 200, 200, 200, 200, 200, 429, 429]);
    // Another /24, and other paths, are not affected.
    assert_eq!(
        send(addr, "127.0.4.1", "POST", "/login", "", "u=a").await.0,
        200
    );
    assert_eq!(send(addr, "127.0.3.1", "GET", "/", "", "").await.0, 200);

    // A reload that leaves the limit as it is keeps the count and the hold.
    let generation = e.rewrite(&(cfg.clone() + "\n# touched\n")).await.unwrap();
    assert!(generation >= 2);
    assert_eq!(
        send(addr, "127.0.3.200", "POST", "/login", "", "u=a")
            .await
            .0,
        429
    );

    let ev = security_events(&log, 6).await;
    let outcomes: Vec<String> = ev
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["client.ip"].as_str().unwrap(),
                e["event.action"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        outcomes.contains(&"127.0.3.4:log".to_owned()),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&"127.0.3.7:block".to_owned()),
        "{outcomes:?}"
    );
    let reason =
        ev.iter().find(|e| e["event.action"] == "block").unwrap()["rampart.decision"][0]["reason"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        reason,
        "7 requests in 60 s for key 127.0.3.0 (threshold 6); held 600 s more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_can_be_counted_and_monitor_mode_only_records() {
    let o = Origin::start("o").await;
    let log = TempDir::new("policy-resp-log");
    let policy = r#"
[site.policy]
[[site.policy.limit]]
name = "failures"
filter = 'http.request.uri.path starts_with "/status/"'
responses = 'http.response.code == 401'
key = ["ip.src"]
window = "60s"
threshold = [{ above = 2, action = "block", status = 403 }]
[[site.policy.rule]]
id = "errors"
expression = 'http.response.code >= 500'
action = "log"
"#;
    let e = TestEdge::start(TempDir::new("policy-resp"), &config(o.addr, &log, policy)).await;
    let addr = e.addr("web");
    let mut got = Vec::new();
    for path in [
        "/status/401",
        "/status/200",
        "/status/401",
        "/status/200",
        "/status/401",
    ] {
        got.push(send(addr, "127.0.5.1", "GET", path, "", "").await.0);
    }
    assert_eq!(got, [401, 200, 401, 200, 401]);
    // Three 401s counted: the next request of the address is refused before the origin.
    let hits = o.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        send(addr, "127.0.5.1", "GET", "/status/200", "", "")
            .await
            .0,
        403
    );
    assert_eq!(o.hits.load(std::sync::atomic::Ordering::SeqCst), hits);
    assert_eq!(
        send(addr, "127.0.5.2", "GET", "/status/200", "", "")
            .await
            .0,
        200
    );
    // A response rule logs.
    assert_eq!(
        send(addr, "127.0.5.3", "GET", "/status/503", "", "")
            .await
            .0,
        503
    );
    let ev = security_events(&log, 2).await;
    assert!(
        ev.iter()
            .any(|e| e["rampart.decision"][0]["id"] == "errors"
                && e["http.response.status_code"] == 503),
        "{ev:?}"
    );

    // The same policy on an onboarding site: everything passes, events say would_block.
    let log2 = TempDir::new("policy-monitor-log");
    let monitored = policy.replace("[site.policy]\n", "[site.policy]\nmonitor = true\n");
    let e2 = TestEdge::start(
        TempDir::new("policy-monitor"),
        &config(o.addr, &log2, &monitored),
    )
    .await;
    let addr2 = e2.addr("web");
    for _ in 0..3 {
        send(addr2, "127.0.6.1", "GET", "/status/401", "", "").await;
    }
    assert_eq!(
        send(addr2, "127.0.6.1", "GET", "/status/200", "", "")
            .await
            .0,
        200
    );
    let ev = security_events(&log2, 1).await;
    assert!(
        ev.iter()
            .any(|e| e["event.action"] == "would_block"
                && e["rampart.decision"][0]["mode"] == "monitor"),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_is_refused_at_reload_and_the_running_one_keeps_serving() {
    let o = Origin::start("o").await;
    let log = TempDir::new("policy-reload-log");
    let cfg = config(o.addr, &log, RULES);
    let e = TestEdge::start(TempDir::new("policy-reload"), &cfg).await;
    let addr = e.addr("web");
    let bad = cfg.replace(
        "expression = 'http.request.uri.path starts_with \"/admin\"'",
        "expression = 'http.request.uri.pth starts_with \"/admin\"'",
    );
    assert_ne!(bad, cfg);
    let err = e.rewrite(&bad).await.unwrap_err().to_string();
    assert!(
        err.contains("unknown field `http.request.uri.pth`"),
        "{err}"
    );
    assert!(
        err.contains("did you mean `http.request.uri.path`"),
        "{err}"
    );
    assert!(err.contains("rampart.toml:"), "located in the file: {err}");
    let missing = cfg.replace(
        "entries = [\"127.0.9.0/24\"]",
        "file = \"no-such-list.txt\"",
    );
    let err = e.rewrite(&missing).await.unwrap_err().to_string();
    assert!(err.contains("cannot read list `office`"), "{err}");
    // The running policy still blocks and passes as before.
    assert_eq!(
        send(addr, "127.0.1.1", "GET", "/admin", "", "").await.0,
        403
    );
    assert_eq!(send(addr, "127.0.1.1", "GET", "/", "", "").await.0, 200);
}

/// Writes a country and an ASN database (MaxMind format) into `dir`.
fn geo_databases(dir: &TempDir) {
    use rampart_policy::geo::{Writer, asn_record, country_record};
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let mut c = Writer::new("Test-Country");
    c.insert(ip("127.0.30.0"), 24, country_record("DE"))
        .unwrap();
    c.insert(ip("127.0.31.0"), 24, country_record("US"))
        .unwrap();
    c.insert(ip("127.0.31.128"), 25, country_record("CA"))
        .unwrap();
    std::fs::write(dir.path("country.mmdb"), c.finish()).unwrap();
    let mut a = Writer::new("Test-ASN");
    a.insert_range(
        ip("127.0.30.0"),
        ip("127.0.30.255"),
        asn_record(64500, "Example Hosting"),
    )
    .unwrap();
    std::fs::write(dir.path("asn.mmdb"), a.finish()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn country_and_asn_come_from_maxmind_databases() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("policy-geo");
    geo_databases(&dir);
    let log = TempDir::new("policy-geo-log");
    let policy = r#"
[geo]
country = ["country.mmdb"]
asn = ["asn.mmdb"]
[[list]]
name = "embargo"
kind = "country"
entries = ["US"]
[[site]]
id = "geo"
tenant = "acme"
hosts = ["geo.test"]
route = [{ path = "/", pool = "web" }]
[site.policy]
[[site.policy.list]]
list = "embargo"
use = "deny"
[[site.policy.rule]]
id = "hosting"
expression = 'ip.src.asn == 64500 and http.request.uri.path == "/login"'
action = "block"
status = 451
[[site.policy.rule]]
id = "de-not-found"
expression = 'ip.src.country == "DE" and http.response.code == 404'
action = "log"
"#;
    let cfg = basic_config(
        &[o.addr],
        "",
        &format!("security_log = \"{}\"", log.path("security.log")),
    );
    // [geo] and [[list]] are top-level tables: put them before the [[site]] of the base.
    let (head, sites) = cfg.split_at(cfg.find("[[site]]").unwrap());
    let (geo_and_lists, site) = policy.split_at(policy.find("[[site]]").unwrap());
    let text = format!("{head}{geo_and_lists}{sites}{site}");
    let e = TestEdge::start(dir, &text).await;
    let addr = e.addr("web");
    let get = |src: &'static str, path: &'static str| async move {
        let req = format!("GET {path} HTTP/1.1\r\nHost: geo.test\r\nConnection: close\r\n\r\n");
        split(&raw_from(Some(src), addr, req.as_bytes(), Duration::from_secs(10)).await).0
    };
    assert_eq!(get("127.0.31.1", "/").await, 403, "US is denied");
    assert_eq!(get("127.0.31.200", "/").await, 200, "a /25 inside it is CA");
    assert_eq!(get("127.0.30.1", "/").await, 200, "DE passes");
    assert_eq!(
        get("127.0.30.1", "/login").await,
        451,
        "AS 64500 may not log in"
    );
    assert_eq!(
        get("127.0.32.1", "/login").await,
        200,
        "unknown: no country, ASN 0"
    );
    let ev = security_events(&log, 2).await;
    let us = ev.iter().find(|e| e["client.ip"] == "127.0.31.1").unwrap();
    assert_eq!(us["source.geo.country_iso_code"], "US");
    assert_eq!(us["rampart.decision"][0]["source"], "list");
    let hosting = ev.iter().find(|e| e["client.ip"] == "127.0.30.1").unwrap();
    assert_eq!(hosting["source.as.number"], 64500);
    assert_eq!(hosting["source.geo.country_iso_code"], "DE");
    // Response rules see the country too.
    assert_eq!(get("127.0.30.9", "/status/404").await, 404);
    let ev = security_events(&log, 3).await;
    assert!(
        ev.iter()
            .any(|e| e["client.ip"] == "127.0.30.9"
                && e["rampart.decision"][0]["id"] == "de-not-found"),
        "{ev:?}"
    );

    // A database that is not one is refused at reload, located; the running one serves.
    std::fs::write(e.dir.path("asn.mmdb"), b"not a database").unwrap();
    let err = e
        .rewrite(&(text.clone() + "\n"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot use the ASN database"), "{err}");
    assert!(err.contains("rampart.toml:"), "{err}");
    assert_eq!(get("127.0.31.1", "/").await, 403);
}

/// The JA4 fingerprint a client configuration sends (its ClientHello, made offline).
fn ja4_of(cc: std::sync::Arc<rustls::ClientConfig>) -> String {
    let name = rustls_pki_types::ServerName::try_from("shop.test").unwrap();
    let mut conn = rustls::ClientConnection::new(cc, name).unwrap();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    let ch = rampart_policy::fingerprint::client_hello(&wire).unwrap();
    rampart_policy::fingerprint::ja4(&ch, rampart_policy::fingerprint::Transport::Tcp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_fingerprint_is_a_field_and_in_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let o = Origin::start("o").await;
    let dir = TempDir::new("policy-ja4");
    let log = TempDir::new("policy-ja4-log");
    let cert = TestCert::new(&["shop.test"]);
    let (c, k) = cert.write(&dir, "shop");
    let h1 = tls_client(&[&cert], &[b"http/1.1"]);
    let h2_only = tls_client(&[&cert], &[b"h2"]);
    let (fp1, fp2) = (ja4_of(h1.clone()), ja4_of(h2_only));
    assert!(fp1.starts_with("t13d") && fp1.contains("h1_"), "{fp1}");
    assert_ne!(fp1, fp2, "ALPN is part of the fingerprint");
    assert_ne!(fp1, ja4_of(h2_only_h1(&cert)));
    let cfg = format!(
        "[edge]\naccess_log = \"off\"\nsecurity_log = \"{}\"\n[[tenant]]\nid = \"acme\"\n\
         [[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\ntls = true\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\
         [[certificate]]\nname = \"shop\"\ncert = \"{c}\"\nkey = \"{k}\"\ndefault = true\n\
         [[pool]]\nid = \"p\"\ntenant = \"acme\"\nservers = [\"{}\"]\n\
         [[site]]\nid = \"s\"\ntenant = \"acme\"\nhosts = [\"shop.test\"]\nroute = [{{ path = \"/\", pool = \"p\" }}]\n\
         [site.policy]\n[[site.policy.rule]]\nid = \"known-tool\"\nexpression = 'tls.fingerprint == \"{fp1}\"'\naction = \"block\"\nstatus = 451\n",
        log.path("security.log"),
        o.addr
    );
    let e = TestEdge::start(dir, &cfg).await;
    let tls_addr = e.addr("tls");
    let ask = |cc: std::sync::Arc<rustls::ClientConfig>| async move {
        let mut s = tls_connect(tls_addr, "shop.test", cc).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        split(&out).0
    };
    assert_eq!(
        ask(h1.clone()).await,
        451,
        "the client with that fingerprint"
    );
    assert_eq!(ask(h2_only_h1(&cert)).await, 200, "another fingerprint");
    // Plain HTTP has no fingerprint.
    assert_eq!(get(e.addr("web"), "shop.test", "/", "").await.0, 200);
    let ev = security_events(&log, 1).await;
    assert_eq!(ev[0]["tls.client.ja4"], fp1.as_str());
    assert_eq!(ev[0]["rampart.decision"][0]["id"], "known-tool");
}

/// A client without ALPN (another fingerprint: no ALPN extension, `00`), which speaks
/// HTTP/1.1.
fn h2_only_h1(cert: &TestCert) -> std::sync::Arc<rustls::ClientConfig> {
    tls_client(&[cert], &[])
}

/// An HTTP/2 client made by `builder`, over `io`.
async fn h2_with<S>(builder: &h2::client::Builder, io: S) -> h2::client::SendRequest<bytes::Bytes>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = builder.handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// One GET over HTTP/2; its status.
async fn h2_get(send: h2::client::SendRequest<bytes::Bytes>) -> u16 {
    let mut send = send.ready().await.unwrap();
    let req = http::Request::get("http://shop.test/").body(()).unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    resp.await.unwrap().status().as_u16()
}

/// The HTTP/2 fingerprint a client configuration sends, read from its first flight on a
/// socket of our own.
async fn h2_fingerprint_of(builder: &h2::client::Builder) -> String {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut server, _) = l.accept().await.unwrap();
    let send = h2_with(builder, client).await;
    // (Nothing answers: the request fails once the socket closes.)
    tokio::spawn(async move {
        let Ok(mut send) = send.ready().await else {
            return;
        };
        let req = http::Request::get("http://shop.test/").body(()).unwrap();
        if let Ok((resp, _)) = send.send_request(req, true) {
            let _ = resp.await;
        }
    });
    let mut seen = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the client closed before its first request");
        seen.extend_from_slice(&chunk[..n]);
        match rampart_policy::fingerprint::h2_fingerprint(&seen) {
            Ok(fp) => return fp,
            Err(rampart_policy::fingerprint::HelloError::Incomplete(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_fingerprints_are_fields_and_in_events() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("policy-httpfp");
    let log = TempDir::new("policy-httpfp-log");
    // A tool's HTTP/1 head: lower-case names, its own order.
    let tool_fp = rampart_core::h1::fingerprint::of(
        1,
        [&b"host"[..], b"user-agent", b"accept", b"connection"],
    )
    .to_string();
    // A tuned HTTP/2 client: its settings show in the fingerprint.
    let mut tuned = h2::client::Builder::new();
    tuned
        .initial_window_size(1_048_576)
        .initial_connection_window_size(4_000_000);
    let h2_fp = h2_fingerprint_of(&tuned).await;
    assert!(
        h2_fp.starts_with("4:1048576|3934465|0|m,"),
        "the stream window asked for, and its connection WINDOW_UPDATE: {h2_fp}"
    );
    assert_ne!(h2_fp, h2_fingerprint_of(&h2::client::Builder::new()).await);
    let cfg = config(
        o.addr,
        &log,
        &format!(
            "[site.policy]\n\
             [[site.policy.rule]]\nid = \"tool-h1\"\nexpression = 'http.fingerprint == \"{tool_fp}\"'\naction = \"block\"\nstatus = 451\n\
             [[site.policy.rule]]\nid = \"tool-h2\"\nexpression = 'http.fingerprint == \"{h2_fp}\"'\naction = \"block\"\nstatus = 452\n"
        ),
    );
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("web");
    let head = |h: &str| format!("GET / HTTP/1.1\r\n{h}\r\n\r\n");
    let ask = |req: String| async move {
        split(
            &raw_from(
                Some("127.0.40.1"),
                addr,
                req.as_bytes(),
                Duration::from_secs(10),
            )
            .await,
        )
        .0
    };
    let tool = "host: shop.test\r\nuser-agent: x\r\naccept: */*\r\nconnection: close";
    assert_eq!(ask(head(tool)).await, 451);
    // Cookies and a referrer do not change it; letter case and order do.
    let with_cookie = "host: shop.test\r\ncookie: a=1\r\nuser-agent: x\r\nreferer: /\r\naccept: */*\r\nconnection: close";
    assert_eq!(ask(head(with_cookie)).await, 451);
    let title = "Host: shop.test\r\nUser-Agent: x\r\nAccept: */*\r\nConnection: close";
    assert_eq!(ask(head(title)).await, 200);
    let reordered = "host: shop.test\r\naccept: */*\r\nuser-agent: x\r\nconnection: close";
    assert_eq!(ask(head(reordered)).await, 200);
    // HTTP/2 (prior knowledge, cleartext): the tuned client is refused, a default one not.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(h2_get(h2_with(&tuned, tcp).await).await, 452);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        h2_get(h2_with(&h2::client::Builder::new(), tcp).await).await,
        200
    );
    let ev = security_events(&log, 3).await;
    let fps: Vec<&str> = ev
        .iter()
        .map(|e| e["http.request.fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fps, [&tool_fp, &tool_fp, &h2_fp]);
    assert_eq!(ev[2]["rampart.decision"][0]["id"], "tool-h2");
}
