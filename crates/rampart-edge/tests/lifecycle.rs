//! Live changes and the connection layer: reloads that add and remove listeners without
//! touching others, refused reloads, draining on shutdown, the admin endpoint, the PROXY
//! protocol, and TCP pass-through with per-IP limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use rampart_edge::EdgeError;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

fn two_listeners(o: std::net::SocketAddr, second: bool, extra: &str) -> String {
    let second = if second {
        "[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    format!(
        r#"
[edge]
access_log = "off"
admin = "127.0.0.1:0"
{extra}
[[tenant]]
id = "acme"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
{second}
[[pool]]
id = "p"
tenant = "acme"
servers = ["{o}"]
[[site]]
id = "s"
tenant = "acme"
hosts = ["shop.test"]
route = [{{ path = "/", pool = "p" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners_without_touching_the_others() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new("reload"), &two_listeners(o.addr, false, "")).await;
    let web = e.addr("web");
    // a keep-alive connection and a slow request in flight on the unchanged listener
    let mut keep = connect_from(None, web).await;
    keep.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        statuses(&read_until_quiet(&mut keep, Duration::from_millis(300)).await),
        vec![200]
    );
    let in_flight = tokio::spawn(get(web, "shop.test", "/?ms=1000", ""));
    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        e.rewrite(&two_listeners(o.addr, true, "")).await.unwrap(),
        2
    );
    let extra = e.addr("extra");
    assert_eq!(
        get(extra, "shop.test", "/", "").await.0,
        200,
        "new listener serves"
    );
    assert_eq!(e.addr("web"), web, "unchanged listener keeps its socket");
    keep.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        statuses(&read_until_quiet(&mut keep, Duration::from_millis(300)).await),
        vec![200],
        "open connection untouched"
    );

    assert_eq!(
        e.rewrite(&two_listeners(o.addr, false, "")).await.unwrap(),
        3
    );
    assert!(e.edge.local_addr("extra").is_none());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(extra).await.is_err(),
        "removed listener no longer accepts"
    );
    assert_eq!(
        in_flight.await.unwrap().0,
        200,
        "in-flight request finished across two reloads"
    );
    keep.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        statuses(&read_until_quiet(&mut keep, Duration::from_millis(300)).await),
        vec![200]
    );
    let m = e.edge.metrics().render();
    assert!(
        m.contains("rampart_config_reloads_total{result=\"success\"} 2")
            && m.contains("rampart_config_generation 3"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_refused_and_the_running_config_keeps_serving() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new("badreload"), &two_listeners(o.addr, false, "")).await;
    let web = e.addr("web");
    let bad = two_listeners(o.addr, false, "").replace("pool = \"p\" }", "pool = \"nope\" }");
    match e.rewrite(&bad).await {
        Err(EdgeError::Config(d)) => {
            assert_eq!(d.len(), 1);
            assert!(d.0[0].message.contains("unknown pool `nope`"), "{d}");
            assert!(d.0[0].line > 1 && d.0[0].col > 1);
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    // a certificate that does not exist is refused too
    let bad_tls = format!(
        "{}\n[[certificate]]\nname = \"c\"\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\ndefault = true\n",
        two_listeners(o.addr, false, "")
    );
    let err = e.rewrite(&bad_tls).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot read certificate file `/nonexistent.pem`"),
        "{err}"
    );
    assert_eq!(e.edge.current().id, 1);
    assert_eq!(get(web, "shop.test", "/", "").await.0, 200);
    // the admin endpoint reports the same diagnostics
    let admin = e.edge.admin_addr().unwrap();
    let resp = raw(
        admin,
        b"POST /-/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    let (status, _, body) = split(&resp);
    assert_eq!(status, 422);
    assert!(
        body.contains("rampart.toml:") && body.contains("cannot read certificate file"),
        "{body}"
    );
    e.rewrite(&two_listeners(o.addr, false, "")).await.unwrap();
    let resp = raw(
        admin,
        b"POST /-/reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        T,
    )
    .await;
    assert_eq!(split(&resp).0, 200);
    let (status, head, metrics) = get(admin, "admin", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"));
    assert!(
        metrics.contains("rampart_config_reloads_total{result=\"failure\"} 3"),
        "{metrics}"
    );
    assert_eq!(get(admin, "admin", "/healthz", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_certificates() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("certswap");
    let one = TestCert::new(&["shop.test"]);
    let two = TestCert::new(&["shop.test"]);
    let (c1, k1) = one.write(&dir, "one");
    let (c2, k2) = two.write(&dir, "two");
    let cfg = |c: &str, k: &str| {
        format!(
            "{}\n[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\ntls = true\n[[certificate]]\nname = \"c\"\ncert = \"{c}\"\nkey = \"{k}\"\ndefault = true\n",
            two_listeners(o.addr, false, "")
        )
    };
    let e = TestEdge::start(dir, &cfg(&c1, &k1)).await;
    let tls = e.addr("tls");
    assert!(
        tls_connect(tls, "shop.test", tls_client(&[&one], &[]))
            .await
            .is_ok()
    );
    e.rewrite(&cfg(&c2, &k2)).await.unwrap();
    assert!(
        tls_connect(tls, "shop.test", tls_client(&[&one], &[]))
            .await
            .is_err(),
        "old certificate gone"
    );
    assert!(
        tls_connect(tls, "shop.test", tls_client(&[&two], &[]))
            .await
            .is_ok(),
        "new certificate served"
    );
    assert_eq!(e.addr("tls"), tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new("drain"), &two_listeners(o.addr, false, "")).await;
    let web = e.addr("web");
    let in_flight = tokio::spawn(get(web, "shop.test", "/?ms=700", ""));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t0 = std::time::Instant::now();
    let left = e.edge.shutdown(Duration::from_secs(5)).await;
    assert_eq!(left, 0);
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "waited for the request"
    );
    assert_eq!(
        in_flight.await.unwrap().0,
        200,
        "in-flight request completed"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(web).await.is_err(),
        "no new connections while draining"
    );
}

fn proxy_config(o: std::net::SocketAddr, trusted: &str) -> String {
    format!(
        r#"
[edge]
access_log = "off"
[[tenant]]
id = "acme"
[[listener]]
name = "lb"
bind = "127.0.0.1:0"
proxy_protocol = ["{trusted}"]
[[pool]]
id = "p"
tenant = "acme"
servers = ["{o}"]
[[site]]
id = "s"
tenant = "acme"
hosts = ["shop.test"]
route = [{{ path = "/", pool = "p" }}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_trusted_balancers_only() {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new("pp"), &proxy_config(o.addr, "127.0.0.31/32")).await;
    let lb = e.addr("lb");
    let req = b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    // v1
    let v1 = [&b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 443\r\n"[..], req].concat();
    assert_eq!(
        statuses(&raw_from(Some("127.0.0.31"), lb, &v1, T).await),
        vec![200]
    );
    assert_eq!(o.seen()[0].headers["x-forwarded-for"], "198.51.100.7");
    // v2, with the request in the same packet
    let mut v2 = rampart_core::proxy_protocol::V2_SIGNATURE.to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb,
    ]);
    v2.extend_from_slice(req);
    assert_eq!(
        statuses(&raw_from(Some("127.0.0.31"), lb, &v2, T).await),
        vec![200]
    );
    assert_eq!(o.seen()[1].headers["x-forwarded-for"], "203.0.113.9");
    // an untrusted peer, a missing header, an invalid header: connection closed
    assert!(
        raw_from(Some("127.0.0.32"), lb, &v1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert!(
        raw_from(Some("127.0.0.31"), lb, req, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert!(
        raw_from(
            Some("127.0.0.31"),
            lb,
            b"PROXY TCP4 x y 1 2\r\n",
            Duration::from_secs(1)
        )
        .await
        .is_empty()
    );
    assert_eq!(o.seen().len(), 2);
    let m = e.edge.metrics().render();
    assert!(
        m.contains(r#"reason="proxy_protocol_untrusted"} 1"#)
            && m.contains(r#"reason="proxy_protocol_invalid"} 2"#),
        "{m}"
    );
}

async fn tcp_echo() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pass_through_with_connection_and_rate_limits() {
    let echo = tcp_echo().await;
    let cfg = format!(
        r#"
[edge]
access_log = "off"
[[tenant]]
id = "acme"
[[listener]]
name = "db"
bind = "127.0.0.1:0"
mode = "tcp"
tenant = "acme"
pool = "db"
limits = {{ max_connections_per_ip = 2 }}
[[listener]]
name = "db2"
bind = "127.0.0.1:0"
mode = "tcp"
tenant = "acme"
pool = "db"
max_connection_rate_per_ip = 3
[[pool]]
id = "db"
tenant = "acme"
servers = ["{echo}"]
"#
    );
    let e = TestEdge::start(TempDir::new("tcp"), &cfg).await;
    let db = e.addr("db");
    let mut a = connect_from(Some("127.0.0.41"), db).await;
    a.write_all(b"\x00\x01binary\xff").await.unwrap();
    assert_eq!(
        read_until_quiet(&mut a, Duration::from_millis(300)).await,
        b"\x00\x01binary\xff"
    );
    let mut b = connect_from(Some("127.0.0.41"), db).await;
    b.write_all(b"second").await.unwrap();
    assert_eq!(
        read_until_quiet(&mut b, Duration::from_millis(300)).await,
        b"second"
    );
    // third concurrent connection from the same IP: closed without relaying
    let mut c = connect_from(Some("127.0.0.41"), db).await;
    let _ = c.write_all(b"third").await;
    assert!(
        read_until_quiet(&mut c, Duration::from_millis(500))
            .await
            .is_empty()
    );
    drop((a, b, c));
    // rate: burst of 3 per second per IP from a fresh address
    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut s = connect_from(Some("127.0.0.42"), e.addr("db2")).await;
        let _ = s.write_all(b"x").await;
        conns.push(s);
    }
    let mut answered = 0;
    for s in &mut conns {
        if read_until_quiet(s, Duration::from_millis(200)).await == b"x" {
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "connection-rate limit");
    let m = e.edge.metrics().render();
    assert!(
        m.contains(r#"rampart_connections_refused_total{listener="db",reason="per_ip_limit"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rampart_connections_refused_total{listener="db2",reason="per_ip_rate"} 3"#),
        "{m}"
    );
    assert!(m.contains(r#"rampart_tcp_bytes_total{listener="db",direction="upstream"}"#));
}
