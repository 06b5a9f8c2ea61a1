//! The request path through a real edge to real origins over loopback sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use rampart_core::config::Config;
use rampart_core::pipeline::{Flow, Reply, RequestView, Stage};
use support::*;

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_forwarding_headers_and_request_id() {
    let o = Origin::start("o1").await;
    let e = TestEdge::start(TempDir::new("fwd"), &basic_config(&[o.addr], "", "")).await;
    let addr = e.addr("web");
    let (status, head, body) = get(
        addr,
        "shop.test",
        "/a/b?x=1",
        "X-Forwarded-For: 6.6.6.6\r\nX-Request-Id: forged\r\nX-Forwarded-Proto: gopher\r\n\
         X-Forwarded-Port: 1\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "o1 GET 0");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32, "a fresh id replaces the untrusted one");
    assert!(
        !head.contains("keep-alive: timeout"),
        "hop-by-hop field from the origin removed: {head}"
    );
    assert!(
        !head.contains("x-hop-secret") && !head.contains("connection: keep-alive"),
        "a field the origin's Connection names is removed with it: {head}"
    );
    let seen = o.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(seen[0].path, "/a/b?x=1");
    assert_eq!(h["host"], "shop.test");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "untrusted client's X-Forwarded-For replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], addr.port().to_string().as_str());
    assert_eq!(h["x-request-id"], id.as_str());
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-request-id",
    ] {
        assert_eq!(h.get_all(name).iter().count(), 1, "one {name} field: {h:?}");
    }
    assert_eq!(seen[0].version, http::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_chain_and_request_id_are_kept() {
    let o = Origin::start("o1").await;
    let e = TestEdge::start(
        TempDir::new("trusted"),
        &basic_config(&[o.addr], "", "trusted_proxies = [\"127.0.0.1/32\"]"),
    )
    .await;
    let addr = e.addr("web");
    let (status, head, _) = get(
        addr,
        "shop.test",
        "/",
        "X-Forwarded-For: 203.0.113.7\r\nX-Request-Id: lb-42\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("x-request-id: lb-42"), "{head}");
    let h = &o.seen()[0].headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-request-id"], "lb-42");
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1, "{h:?}");
    assert_eq!(h.get_all("x-request-id").iter().count(), 1, "{h:?}");
    // A trusted proxy's X-Forwarded-Proto and -Port are passed on, once; where it sent
    // none, the edge's own are added.
    let req = b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nConnection: close\r\n\r\n";
    let (_, head, _) = split(&raw_from(Some("127.0.0.1"), addr, req, T).await);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let h = &o.seen()[1].headers;
    assert_eq!(
        h.get_all("x-forwarded-proto").iter().collect::<Vec<_>>(),
        ["https"]
    );
    assert_eq!(
        h.get_all("x-forwarded-port").iter().collect::<Vec<_>>(),
        ["443"]
    );
    assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), ["shop.test"]);
    // From 127.0.0.9 (not trusted) the same headers are not believed.
    let req = b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.7\r\nX-Request-Id: lb-42\r\nConnection: close\r\n\r\n";
    let (_, head, _) = split(&raw_from(Some("127.0.0.9"), addr, req, T).await);
    assert!(!head.contains("x-request-id: lb-42"), "{head}");
    assert_eq!(o.seen()[2].headers["x-forwarded-for"], "127.0.0.9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_and_routes_pick_pools_and_unknown_hosts_get_404_pages() {
    let web = Origin::start("web").await;
    let api = Origin::start("api").await;
    let other = Origin::start("other").await;
    let cfg = format!(
        r#"
[edge]
access_log = "off"
[[tenant]]
id = "acme"
[[tenant]]
id = "globex"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
[[pool]]
id = "web"
tenant = "acme"
servers = ["{}"]
[[pool]]
id = "api"
tenant = "acme"
servers = ["{}"]
[[pool]]
id = "g"
tenant = "globex"
servers = ["{}"]
[[site]]
id = "shop"
tenant = "acme"
hosts = ["shop.test", "*.shop.test"]
route = [{{ path = "/", pool = "web" }}, {{ path = "/api", pool = "api" }}]
[[site]]
id = "globex"
tenant = "globex"
hosts = ["globex.test"]
route = [{{ path = "/", pool = "g" }}]
"#,
        web.addr, api.addr, other.addr
    );
    let e = TestEdge::start(TempDir::new("routes"), &cfg).await;
    let a = e.addr("web");
    assert_eq!(get(a, "shop.test", "/index.html", "").await.2, "web GET 0");
    assert_eq!(
        get(a, "x.shop.test", "/api/v1/items", "").await.2,
        "api GET 0"
    );
    assert_eq!(get(a, "shop.test", "/apix", "").await.2, "web GET 0");
    assert_eq!(get(a, "GLOBEX.test:80", "/", "").await.2, "other GET 0");
    let (status, head, body) = get(a, "unknown.test", "/", "").await;
    assert_eq!(status, 404);
    assert!(head.contains("content-type: text/html"));
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap();
    assert!(body.contains(id), "the page quotes the request id");
    let (status, head, body) = get(a, "unknown.test", "/", "Accept: application/json\r\n").await;
    assert_eq!(status, 404);
    assert!(head.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["status"], 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_failures_become_502_503_504_with_metrics_and_log() {
    let slow = Origin::start("slow").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed at once
    let dir = TempDir::new("fail");
    let log = dir.path("access.log");
    let cfg = format!(
        r#"
[edge]
access_log = "{log}"
[[tenant]]
id = "acme"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
[[pool]]
id = "dead"
tenant = "acme"
servers = ["{dead}"]
passive = {{ connect_failures = 2, ejection_time = "30s" }}
[[pool]]
id = "slow"
tenant = "acme"
servers = ["{}"]
read_timeout = "300ms"
[[site]]
id = "s"
tenant = "acme"
hosts = ["shop.test"]
route = [{{ path = "/", pool = "dead" }}, {{ path = "/slow", pool = "slow" }}]
"#,
        slow.addr
    );
    let e = TestEdge::start(dir, &cfg).await;
    let a = e.addr("web");
    let (s1, _, b1) = get(a, "shop.test", "/", "").await;
    assert_eq!(s1, 502);
    assert!(b1.contains("could not be reached"), "{b1}");
    let (s2, _, _) = get(a, "shop.test", "/", "Accept: application/json\r\n").await;
    assert_eq!(s2, 502);
    // two connect failures ejected the only server: now 503
    let (s3, h3, b3) = get(a, "shop.test", "/", "Accept: application/json\r\n").await;
    assert_eq!(s3, 503, "{h3}");
    assert!(b3.contains("no origin server available"));
    let (s4, _, _) = get(a, "shop.test", "/slow?ms=2000", "").await;
    assert_eq!(s4, 504);
    // On one keep-alive connection the timeout is re-armed for every request (the
    // connection's lazy timer): answers within it pass, the slow one still times out
    // within its own 300 ms, long before the origin's 2 s.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = std::time::Instant::now();
        let mut c = connect_from(None, a).await;
        c.write_all(
            b"GET /slow?ms=200 HTTP/1.1\r\nHost: shop.test\r\n\r\n\
              GET /slow?ms=200 HTTP/1.1\r\nHost: shop.test\r\n\r\n\
              GET /slow?ms=2000 HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        )
        .await
        .unwrap();
        let mut resp = Vec::new();
        let mut buf = [0u8; 8192];
        while statuses(&resp).len() < 3 {
            match tokio::time::timeout(T, c.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => resp.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(statuses(&resp), [200, 200, 504], "{text}");
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
            "the 504 came {took:?} after the start (expected about 0.2 + 0.2 + 0.3 s)"
        );
    }
    // the edge keeps serving other requests
    assert_eq!(get(a, "shop.test", "/slow", "").await.0, 200);
    let metrics = e.edge.metrics().render();
    assert!(metrics.contains(r#"rampart_http_edge_responses_total{tenant="acme",site="s",code="502",reason="the origin server could not be reached"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"code="503""#) && metrics.contains(r#"code="504""#));
    assert!(
        metrics.contains(r#"rampart_upstream_ejections_total{tenant="acme",pool="dead",server=""#)
    );
    assert!(metrics.contains(r#"rampart_upstream_server_up{tenant="acme",pool="dead","#));
    let logged = eventually(T, || {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count() >= 5)
            .unwrap_or(false)
    })
    .await;
    assert!(logged);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|v| v["http.response.status_code"] == 504
        && v["rampart.upstream.pool"] == "slow"
        && v["organization.id"] == "acme"));
    assert!(
        lines
            .iter()
            .all(|v| v["http.request.id"].as_str().is_some_and(|s| s.len() == 32))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_and_connect_failures_are_retried_elsewhere() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = TestEdge::start(
        TempDir::new("rr"),
        &basic_config(
            &[a.addr, b.addr, dead],
            "passive = { connect_failures = 1, ejection_time = \"30s\" }",
            "",
        ),
    )
    .await;
    let addr = e.addr("web");
    for _ in 0..12 {
        assert_eq!(
            get(addr, "shop.test", "/", "").await.0,
            200,
            "a dead server never fails a GET: it is retried once elsewhere"
        );
    }
    let (na, nb) = (
        a.hits.load(std::sync::atomic::Ordering::SeqCst),
        b.hits.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert_eq!(na + nb, 12);
    assert!((5..=7).contains(&na), "round robin: {na} / {nb}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_avoids_the_busy_server() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let e = TestEdge::start(
        TempDir::new("lc"),
        &basic_config(&[a.addr, b.addr], "balance = \"least_conn\"", ""),
    )
    .await;
    let addr = e.addr("web");
    // hold two slow requests in flight; they land one on each server
    let slow1 = tokio::spawn(get(addr, "shop.test", "/?ms=1500", ""));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let slow2 = tokio::spawn(get(addr, "shop.test", "/?ms=1500", ""));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy_a = a.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(busy_a, 1, "first two requests spread over both servers");
    slow1.await.unwrap();
    // a is free again, b still busy: the next request goes to a
    let before = a.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(addr, "shop.test", "/", "").await.0, 200);
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::SeqCst), before + 1);
    slow2.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_and_5xx_bursts_take_servers_out_and_back() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let e = TestEdge::start(
        TempDir::new("hc"),
        &basic_config(&[a.addr, b.addr], "health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"1s\", healthy_threshold = 1, unhealthy_threshold = 2 }\npassive = { connect_failures = 3, consecutive_5xx = 3, ejection_time = \"400ms\" }", ""),
    )
    .await;
    let addr = e.addr("web");
    a.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let pool = e.edge.current().pools[0].clone();
    assert!(
        eventually(T, || !pool.is_available(0)).await,
        "a marked unhealthy"
    );
    let before = a.hits.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(get(addr, "shop.test", "/", "").await.2, "b GET 0");
    }
    assert_eq!(a.hits.load(std::sync::atomic::Ordering::SeqCst), before);
    a.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(eventually(T, || pool.is_available(0)).await, "a back");
    // 5xx burst: three 500s from a server eject it for 400ms
    let mut ejected = false;
    for _ in 0..12 {
        get(addr, "shop.test", "/status/500", "").await;
        if !pool.is_available(0) || !pool.is_available(1) {
            ejected = true;
            break;
        }
    }
    assert!(ejected, "a server was ejected after consecutive 5xx");
    assert!(
        eventually(T, || pool.is_available(0) && pool.is_available(1)).await,
        "ejection expires"
    );
    let m = e.edge.metrics().render();
    assert!(
        m.contains("rampart_upstream_health_checks_total") && m.contains(r#"cause="5xx""#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_without_limit() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new("stream"), &basic_config(&[o.addr], "", "")).await;
    let addr = e.addr("web");
    // 8 MiB upload, chunked, and a 16 MiB download
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..128 {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&chunk).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let resp = read_until_quiet(&mut s, Duration::from_millis(1500)).await;
    assert_eq!(split(&resp).2, format!("o POST {}", 8 << 20));
    let resp = raw(
        addr,
        b"GET /big?n=16777216 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    let (status, _, body) = split(&resp);
    assert_eq!(status, 200);
    // chunked framing adds a little; the payload is 16 MiB of 'x'
    assert!(body.bytes().filter(|&c| c == b'x').count() == 16 << 20);
}

struct Inspect;
impl Stage for Inspect {
    fn name(&self) -> &'static str {
        "test_inspect"
    }
    fn on_request(&self, _: &Config, _: &mut RequestView) -> Flow {
        Flow::Continue
    }
    fn body_prefix_wanted(&self, _: &Config, _: &RequestView) -> usize {
        16
    }
    fn on_request_body(
        &self,
        _: &Config,
        _: &mut RequestView,
        prefix: &[u8],
        complete: bool,
    ) -> Flow {
        if prefix.windows(4).any(|w| w == b"EVIL") {
            return Flow::Respond(Reply::new(
                StatusCode::FORBIDDEN,
                "body refused by a test stage",
            ));
        }
        if !complete && prefix.len() != 16 {
            return Flow::Respond(Reply::new(StatusCode::IM_A_TEAPOT, "prefix size wrong"));
        }
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_reads_a_bounded_body_prefix_and_the_origin_gets_it_all() {
    let o = Origin::start("o").await;
    let stages: rampart_edge::generation::StageFactory =
        Arc::new(|| vec![Box::new(Inspect) as Box<dyn Stage>]);
    let e = TestEdge::start_with(
        TempDir::new("prefix"),
        &basic_config(&[o.addr], "", ""),
        stages,
    )
    .await;
    let addr = e.addr("web");
    let body = "0123456789abcdefEVIL-after-the-prefix-is-not-seen-by-the-stage";
    let req = format!(
        "POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, resp) = split(&raw(addr, req.as_bytes(), T).await);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        o.seen()[0].body,
        body.as_bytes(),
        "prefix and rest reach the origin in order"
    );
    let req = "POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 8\r\nConnection: close\r\n\r\nabEVILcd";
    assert_eq!(split(&raw(addr, req.as_bytes(), T).await).0, 403);
    assert_eq!(
        o.seen().len(),
        1,
        "a refused request never reaches the origin"
    );
    let m = e.edge.metrics().render();
    assert!(
        m.contains(r#"rampart_pipeline_stage_duration_seconds_count{stage="test_inspect"}"#),
        "{m}"
    );
    assert!(m.contains(r#"rampart_pipeline_stage_duration_seconds_count{stage="resolve"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_limit_gives_413() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(
        TempDir::new("413"),
        &basic_config(&[o.addr], "", "[limits]\nmax_body_bytes = 1000"),
    )
    .await;
    let addr = e.addr("web");
    let big = "x".repeat(2000);
    let req = format!("POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 2000\r\n\r\n{big}");
    assert_eq!(statuses(&raw(addr, req.as_bytes(), T).await), vec![413]);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n{big}\r\n0\r\n\r\n"
    );
    assert_eq!(statuses(&raw(addr, req.as_bytes(), T).await), vec![413]);
    let ok = "x".repeat(900);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 900\r\nConnection: close\r\n\r\n{ok}"
    );
    assert_eq!(statuses(&raw(addr, req.as_bytes(), T).await), vec![200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_keep_the_connection_in_step() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new("bodyless"), &basic_config(&[o.addr], "", "")).await;
    // HEAD, then 204, then 304, then a GET, all on one keep-alive connection: if any
    // bodiless response were framed wrong, the next response would be misread.
    let req = b"HEAD / HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /status/304 HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /last HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    let resp = raw(e.addr("web"), req, Duration::from_secs(3)).await;
    assert_eq!(
        statuses(&resp),
        vec![200, 204, 304, 200],
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(String::from_utf8_lossy(&resp).ends_with("o GET 0"));
}

/// An origin that answers every request with the same raw bytes, then closes.
async fn raw_origin(answer: &'static [u8]) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(answer).await;
            });
        }
    });
    addr
}

/// What a client sending `request` gets through an edge whose origin answers `answer`
/// (lower-cased).
async fn through_raw_origin(tag: &str, answer: &'static [u8], request: &[u8]) -> String {
    let o = raw_origin(answer).await;
    let e = TestEdge::start(TempDir::new(tag), &basic_config(&[o], "", "")).await;
    let resp = raw(e.addr("web"), request, Duration::from_secs(2)).await;
    String::from_utf8_lossy(&resp).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_origin_responses_never_reach_the_client_as_valid() {
    let cases: [(&'static [u8], u16); 4] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            502,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", 502),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 502),
        (b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", 502),
    ];
    for (answer, want) in cases {
        let o = raw_origin(answer).await;
        let e = TestEdge::start(TempDir::new("badorigin"), &basic_config(&[o], "", "")).await;
        let (status, _, _) = get(e.addr("web"), "shop.test", "/", "").await;
        assert_eq!(status, want, "{}", String::from_utf8_lossy(answer));
    }
    // a chunked body that breaks half way: the connection is cut — never a body the edge
    // completed by itself, never a second response
    let o =
        raw_origin(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
            .await;
    let e = TestEdge::start(TempDir::new("badchunk"), &basic_config(&[o], "", "")).await;
    let resp = raw(
        e.addr("web"),
        b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let text = String::from_utf8_lossy(&resp);
    // the head may not have been flushed before the body failed: nothing, or one head
    assert!(
        statuses(&resp).len() <= 1 && statuses(&resp).iter().all(|&s| s == 200),
        "{text}"
    );
    // (looked for in the body only: a request id ending in 0 ends the head with the same
    // bytes)
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        !body.contains("0\r\n\r\n"),
        "the broken body is not terminated as if complete: {text}"
    );
    // response trailers from an HTTP/1.1 origin reach an HTTP/1.1 client
    let text = through_raw_origin(
        "trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        text.contains("hello") && text.contains("x-sum: 42"),
        "{text}"
    );
    // Framing fields are the edge's: a 204's Content-Length is dropped (RFC 9110 §8.6),
    // the origin's Connection is consumed, its Date passed on (not a second one added).
    let text = through_raw_origin(
        "nocontent",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nConnection: keep-alive\r\nX-Kept: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("http/1.1 204"), "{text}");
    assert!(text.contains("x-kept: 1"), "{text}");
    assert!(!text.contains("content-length"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
    assert_eq!(text.matches("date: ").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_server_semantics_continue_http10_and_response_framing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let o = Origin::start("o1").await;
    let e = TestEdge::start(TempDir::new("h1sem"), &basic_config(&[o.addr], "", "")).await;
    let addr = e.addr("web");

    // Expect: 100-continue — the interim answer comes first, the body only then
    let mut s = connect_from(None, addr).await;
    s.write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = read_until_quiet(&mut s, Duration::from_millis(400)).await;
    let text = String::from_utf8_lossy(&interim);
    assert!(text.starts_with("HTTP/1.1 100 Continue\r\n\r\n"), "{text}");
    assert_eq!(statuses(&interim), vec![100], "{text}");
    s.write_all(b"hello").await.unwrap();
    let resp = read_until_quiet(&mut s, Duration::from_millis(400)).await;
    assert_eq!(statuses(&resp), vec![200]);
    let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert!(text.contains("\r\ndate: "), "a Date field is added: {text}");
    assert_eq!(o.seen().last().unwrap().body, b"hello");

    // HTTP/1.0 with keep-alive stays open and says so; without, it closes
    let mut s = connect_from(None, addr).await;
    for i in 0..2 {
        s.write_all(b"GET /ten HTTP/1.0\r\nHost: shop.test\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let resp = read_until_quiet(&mut s, Duration::from_millis(400)).await;
        let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
        assert_eq!(statuses(&resp), vec![200], "request {i}: {text}");
        assert!(text.contains("connection: keep-alive"), "{text}");
    }
    s.write_all(b"GET /ten HTTP/1.0\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let resp = read_until_quiet(&mut s, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert_eq!(statuses(&resp), vec![200], "{text}");
    assert!(text.contains("connection: close"), "{text}");
    let mut one = [0u8; 1];
    assert_eq!(
        s.read(&mut one).await.unwrap(),
        0,
        "closed after the response"
    );

    // an answer given before the request body was read says the connection closes
    let mut s = connect_from(None, addr).await;
    s.write_all(b"POST /up HTTP/1.1\r\nHost: unknown.test\r\nContent-Length: 5\r\n\r\nhel")
        .await
        .unwrap();
    let resp = read_until_quiet(&mut s, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert_eq!(statuses(&resp), vec![404], "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");

    // a response of unknown length: chunked to HTTP/1.1, close-delimited to HTTP/1.0
    let o2 = raw_origin(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-the-end").await;
    let e2 = TestEdge::start(TempDir::new("h1len"), &basic_config(&[o2], "", "")).await;
    let mut s = connect_from(None, e2.addr("web")).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let resp = read_until_quiet(&mut s, Duration::from_millis(500)).await;
    let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.ends_with("\r\n\r\nd\r\nuntil-the-end\r\n0\r\n\r\n"),
        "{text}"
    );
    // ... and the connection is still usable
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let resp = read_until_quiet(&mut s, Duration::from_secs(2)).await;
    assert_eq!(statuses(&resp), vec![200]);
    let resp = raw(
        e2.addr("web"),
        b"GET / HTTP/1.0\r\nHost: shop.test\r\nConnection: keep-alive\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("\r\n\r\nuntil-the-end"), "{text}");
}

/// The head (up to the blank line) and body of what a client sending a plain GET gets
/// through an edge whose origin answers `answer`, as bytes on the wire (not lower-cased).
async fn head_through_raw_origin(tag: &str, answer: &'static [u8]) -> (String, String) {
    let o = raw_origin(answer).await;
    let e = TestEdge::start(TempDir::new(tag), &basic_config(&[o], "", "")).await;
    let resp = raw(
        e.addr("web"),
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head: {text:?}"));
    (format!("{head}\r\n"), body.to_owned())
}

fn count_fields(head: &str, name: &str) -> usize {
    head.lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_fields_reach_http1_clients_as_sent_less_the_hop_by_hop_ones() {
    // Forwarded byte for byte (name case, spacing), framing fields consumed, Date and
    // Content-Length the origin's, one X-Request-Id (the edge's).
    let (head, body) = head_through_raw_origin(
        "as-sent",
        b"HTTP/1.1 200 OK\r\nServer: Origin-Test\r\nX-Custom:  spaced value\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nX-Last: z\r\n\r\nok",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for line in [
        "Server: Origin-Test\r\n",
        "X-Custom:  spaced value\r\n",
        "Date: Tue, 01 Dec 2026 00:00:00 GMT\r\n",
        "Content-Length: 2\r\n",
        "X-Last: z\r\n",
    ] {
        assert!(head.contains(line), "{line:?} missing: {head}");
    }
    assert_eq!(count_fields(&head, "date"), 1, "{head}");
    assert_eq!(count_fields(&head, "content-length"), 1, "{head}");
    assert_eq!(count_fields(&head, "keep-alive"), 0, "{head}");
    assert_eq!(count_fields(&head, "x-request-id"), 1, "{head}");
    // the client asked to close: the edge says so, not the origin's keep-alive
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert_eq!(count_fields(&head, "connection"), 1, "{head}");
    assert_eq!(body, "ok");

    // A chunked origin response: the edge frames it (one Transfer-Encoding, its own),
    // fields before and after the origin's Transfer-Encoding both arrive.
    let (head, body) = head_through_raw_origin(
        "rechunked",
        b"HTTP/1.1 200 OK\r\nServer: a\r\nTransfer-Encoding: chunked\r\nX-After: b\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        head.contains("Server: a\r\n") && head.contains("X-After: b\r\n"),
        "{head}"
    );
    assert_eq!(count_fields(&head, "transfer-encoding"), 1, "{head}");
    assert!(body.contains("hello"), "{body}");

    // The origin's own X-Request-Id is replaced by the edge's.
    let (head, _) = head_through_raw_origin(
        "origin-id",
        b"HTTP/1.1 200 OK\r\nX-Request-Id: origin-id\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(count_fields(&head, "x-request-id"), 1, "{head}");
    assert!(!head.contains("origin-id"), "{head}");

    // Fields a Connection header names are hop-by-hop: removed; others stay.
    let (head, _) = head_through_raw_origin(
        "named-hop",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Stay: 2\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(count_fields(&head, "x-hop"), 0, "{head}");
    assert_eq!(count_fields(&head, "x-stay"), 1, "{head}");

    // A head with bare-LF line ends reaches the client with CRLF ones.
    let (head, body) = head_through_raw_origin(
        "bare-lf",
        b"HTTP/1.1 200 OK\nServer: lf\nContent-Length: 2\n\nok",
    )
    .await;
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "a bare LF reached the client: {head:?}"
    );
    assert_eq!(count_fields(&head, "server"), 1, "{head}");
    assert_eq!(body, "ok");

    // Many dropped fields between kept ones (more pieces than are copied raw): all kept
    // fields still arrive, the dropped ones do not.
    let (head, _) = head_through_raw_origin(
        "pieces",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nKeep-Alive: t\r\nX-B: 2\r\nKeep-Alive: t\r\nX-C: 3\r\nKeep-Alive: t\r\nX-D: 4\r\nKeep-Alive: t\r\nX-E: 5\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    for name in ["x-a", "x-b", "x-c", "x-d", "x-e"] {
        assert_eq!(count_fields(&head, name), 1, "{name}: {head}");
    }
    assert_eq!(count_fields(&head, "keep-alive"), 0, "{head}");
}
