//! TLS by SNI, HTTP/2 from clients and to origins, gRPC trailers, WebSocket over
//! HTTP/1.1 and HTTP/2 (RFC 8441), TLS to origins — all over real sockets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

fn tls_config(
    o: std::net::SocketAddr,
    dir: &TempDir,
    extra_pool: &str,
) -> (String, TestCert, TestCert) {
    let shop = TestCert::new(&["shop.test", "*.shop.test"]);
    let fallback = TestCert::new(&["fallback.test"]);
    let (sc, sk) = shop.write(dir, "shop");
    let (fc, fk) = fallback.write(dir, "fallback");
    let cfg = format!(
        r#"
[edge]
access_log = "off"
[[tenant]]
id = "acme"
[[listener]]
name = "tls"
bind = "127.0.0.1:0"
tls = true
[[listener]]
name = "web"
bind = "127.0.0.1:0"
[[certificate]]
name = "shop"
cert = "{sc}"
key = "{sk}"
hosts = ["shop.test", "*.shop.test"]
[[certificate]]
name = "fallback"
cert = "{fc}"
key = "{fk}"
default = true
[[pool]]
id = "p"
tenant = "acme"
servers = ["{o}"]
{extra_pool}
[[site]]
id = "s"
tenant = "acme"
hosts = ["shop.test", "*.shop.test"]
route = [{{ path = "/", pool = "p" }}]
"#
    );
    (cfg, shop, fallback)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificates_by_sni_with_default() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("sni");
    let (cfg, shop, fallback) = tls_config(o.addr, &dir, "");
    let e = TestEdge::start(dir, &cfg).await;
    let addr = e.addr("tls");
    // shop.test and a wildcard name verify against the shop certificate
    for name in ["shop.test", "a.shop.test"] {
        let mut s = tls_connect(addr, name, tls_client(&[&shop], &[b"http/1.1"]))
            .await
            .unwrap();
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let (status, head, body) = split(&read_until_quiet(&mut s, T).await);
        assert_eq!((status, body.as_str()), (200, "o GET 0"), "{head}");
    }
    // an unknown name gets the default certificate (verifies only against it)
    assert!(
        tls_connect(addr, "other.test", tls_client(&[&shop], &[]))
            .await
            .is_err()
    );
    let s = tls_connect(addr, "fallback.test", tls_client(&[&fallback], &[])).await;
    assert!(
        s.is_ok(),
        "default certificate served for names without their own"
    );
    assert_eq!(o.seen()[0].headers["x-forwarded-proto"], "https");
    let m = e.edge.metrics().render();
    assert!(
        m.contains(r#"rampart_tls_handshakes_total{listener="tls",result="success"}"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rampart_tls_handshakes_total{listener="tls",result="failure"} 1"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_by_alpn_and_cleartext_prior_knowledge() {
    let o = Origin::start("o").await;
    let dir = TempDir::new("h2");
    let (cfg, shop, _) = tls_config(o.addr, &dir, "");
    let e = TestEdge::start(dir, &cfg).await;
    let s = tls_connect(
        e.addr("tls"),
        "shop.test",
        tls_client(&[&shop], &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = h2_client(s).await;
    for i in 0..3 {
        let req = http::Request::post(format!("https://shop.test/item/{i}"))
            .body(())
            .unwrap();
        let (resp, mut stream) = h2.send_request(req, false).unwrap();
        stream
            .send_data(Bytes::from_static(b"hello"), true)
            .unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        let mut body = resp.into_body();
        let data = body.data().await.unwrap().unwrap();
        assert_eq!(&data[..], b"o POST 5");
    }
    let seen = o.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].headers["host"], "shop.test",
        ":authority becomes Host for an HTTP/1.1 origin"
    );
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    // cleartext HTTP/2 (prior knowledge) on a plain listener
    let tcp = tokio::net::TcpStream::connect(e.addr("web")).await.unwrap();
    let mut h2 = h2_client(tcp).await;
    let (resp, _) = h2
        .send_request(
            http::Request::get("http://shop.test/x").body(()).unwrap(),
            true,
        )
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_http2_origin_keeps_trailers() {
    let o = Origin::start("grpc").await;
    let dir = TempDir::new("grpc");
    let (cfg, shop, _) = tls_config(o.addr, &dir, "protocol = \"http2\"");
    let e = TestEdge::start(dir, &cfg).await;
    let s = tls_connect(e.addr("tls"), "shop.test", tls_client(&[&shop], &[b"h2"]))
        .await
        .unwrap();
    let mut h2 = h2_client(s).await;
    let req = http::Request::post("https://shop.test/trailers")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut stream) = h2.send_request(req, false).unwrap();
    stream
        .send_data(Bytes::from_static(b"\0\0\0\0\x02hi"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(data, b"grpc-payload");
    let trailers = body
        .trailers()
        .await
        .unwrap()
        .expect("trailers passed through");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "all-good");
    let seen = o.seen();
    assert_eq!(
        seen[0].version,
        http::Version::HTTP_2,
        "the origin was spoken to in HTTP/2"
    );
    assert_eq!(seen[0].headers["te"], "trailers");
    assert_eq!(seen[0].body, b"\0\0\0\0\x02hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_over_http1_tunnels_after_101() {
    let o = Origin::start("ws").await;
    let e = TestEdge::start(TempDir::new("ws"), &basic_config(&[o.addr], "", "")).await;
    let mut s = connect_from(None, e.addr("web")).await;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: websocket") && head.contains("connection: upgrade"),
        "{head}"
    );
    for msg in [&b"frame-one"[..], b"\x81\x05hello"] {
        s.write_all(msg).await.unwrap();
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], [&b"echo:"[..], msg].concat().as_slice());
    }
    let seen = &o.seen;
    assert!(
        seen.lock().unwrap().is_empty(),
        "upgrade requests are not recorded as plain requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect() {
    let o = Origin::start("ws").await;
    let dir = TempDir::new("ws2");
    let (cfg, shop, _) = tls_config(o.addr, &dir, "");
    let e = TestEdge::start(dir, &cfg).await;
    let s = tls_connect(e.addr("tls"), "shop.test", tls_client(&[&shop], &[b"h2"]))
        .await
        .unwrap();
    let (h2, conn) = h2::client::handshake(s).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut h2 = h2.ready().await.unwrap();
    // the server's SETTINGS arrive shortly after the handshake
    for _ in 0..50 {
        if h2.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        h2.is_extended_connect_protocol_enabled(),
        "SETTINGS_ENABLE_CONNECT_PROTOCOL advertised"
    );
    let mut req = http::Request::builder()
        .method("CONNECT")
        .uri("https://shop.test/ws")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (resp, mut stream) = h2.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "RFC 8441: 200 for an accepted extended CONNECT"
    );
    stream
        .send_data(Bytes::from_static(b"over-h2"), false)
        .unwrap();
    let mut body = resp.into_body();
    let data = tokio::time::timeout(T, body.data())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&data[..], b"echo:over-h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_origin_verifies_by_default() {
    let origin_cert = TestCert::new(&["origin.internal"]);
    let o = Origin::start_tls("secure", &origin_cert).await;
    let dir = TempDir::new("otls");
    let ca = dir.path("origin-ca.pem");
    std::fs::write(&ca, &origin_cert.cert_pem).unwrap();
    let good = basic_config(
        &[o.addr],
        &format!("tls = {{ sni = \"origin.internal\", ca_file = \"{ca}\" }}"),
        "",
    );
    let e = TestEdge::start(dir, &good).await;
    let (status, _, body) = get(e.addr("web"), "shop.test", "/", "").await;
    assert_eq!((status, body.as_str()), (200, "secure GET 0"));
    // the system trust store does not know this origin: verification fails → 502
    let strict = basic_config(&[o.addr], "tls = { sni = \"origin.internal\" }", "");
    e.rewrite(&strict).await.unwrap();
    assert_eq!(get(e.addr("web"), "shop.test", "/", "").await.0, 502);
    // the wrong name fails too, even with the right CA
    let wrong = basic_config(
        &[o.addr],
        &format!("tls = {{ sni = \"other.internal\", ca_file = \"{ca}\" }}"),
        "",
    );
    e.rewrite(&wrong).await.unwrap();
    assert_eq!(get(e.addr("web"), "shop.test", "/", "").await.0, 502);
    // verify = false is an explicit opt-out
    let lax = basic_config(&[o.addr], "tls = { verify = false }", "");
    e.rewrite(&lax).await.unwrap();
    assert_eq!(get(e.addr("web"), "shop.test", "/", "").await.0, 200);
}
