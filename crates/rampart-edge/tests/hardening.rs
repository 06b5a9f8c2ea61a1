//! Hardening over real sockets: the request-smuggling regression corpus, size limits,
//! slow clients, connection limits, and HTTP/2 abuse (Rapid Reset, CONTINUATION floods).
//!
//! Every smuggling case checks the same invariants, whatever the edge answers:
//! the origin never receives a request the client tried to smuggle (path `/smuggled`),
//! never receives a header injected through HTTP/2, and the edge answers each case
//! exactly as listed — refused cases with exactly one 400 and a closed connection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;

const LIMITS: &str = r#"[limits]
max_uri_bytes = 1024
max_header_bytes = 4096
max_headers = 20
header_timeout = "500ms"
body_timeout = "500ms"
keepalive_timeout = "1s"
max_connections_per_ip = 3
h2_max_concurrent_streams = 7
h2_max_pending_reset_streams = 10"#;

async fn setup(tag: &str) -> (Origin, TestEdge) {
    let o = Origin::start("o").await;
    let e = TestEdge::start(TempDir::new(tag), &basic_config(&[o.addr], "", LIMITS)).await;
    (o, e)
}

fn smuggled(o: &Origin) -> Vec<Seen> {
    o.seen()
        .into_iter()
        .filter(|s| s.path.contains("smuggled") || s.headers.contains_key("x-smuggled"))
        .collect()
}

/// (name, bytes sent, statuses the edge must answer with, in order)
fn corpus() -> Vec<(&'static str, Vec<u8>, Vec<u16>)> {
    let smuggle = "GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n";
    let post = |headers: &str, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: shop.test\r\n{headers}\r\n{body}").into_bytes()
    };
    let mut cases: Vec<(&'static str, Vec<u8>, Vec<u16>)> = vec![
        // CL.TE: front end trusts CL, back end TE (or the reverse)
        ("CL.TE", post("Content-Length: 47\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{smuggle}")), vec![400]),
        ("TE.CL", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &format!("2c\r\n{smuggle}\r\n0\r\n\r\n")), vec![400]),
        // TE.TE: obfuscated Transfer-Encoding one side ignores
        ("TE xchunked", post("Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n", "0\r\n\r\n"), vec![400]),
        ("TE space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), vec![400]),
        ("TE twice", post("Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n", "0\r\n\r\n"), vec![400]),
        ("TE list", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), vec![400]),
        ("TE gzip,chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), vec![400]),
        ("TE quoted", post("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"), vec![400]),
        ("TE vertical tab (CVE-2019-18277)", post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"), vec![400]),
        ("TE obs-fold", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), vec![400]),
        ("TE name with CR", post("Transfer-Encoding\r: chunked\r\n", "0\r\n\r\n"), vec![400]),
        ("TE on HTTP/1.0", b"POST / HTTP/1.0\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), vec![400]),
        // Content-Length shapes
        ("CL twice, same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), vec![400]),
        ("CL twice, different", post("Content-Length: 5\r\nContent-Length: 47\r\n", &format!("hello{smuggle}")), vec![400]),
        ("CL list", post("Content-Length: 5, 5\r\n", "hello"), vec![400]),
        ("CL plus sign", post("Content-Length: +5\r\n", "hello"), vec![400]),
        ("CL hex", post("Content-Length: 0x5\r\n", "hello"), vec![400]),
        ("CL overflow", post("Content-Length: 184467440737095516160\r\n", "hello"), vec![400]),
        ("CL negative", post("Content-Length: -1\r\n", ""), vec![400]),
        // HAProxy CVE-2021-40346: an over-long name ending in "Content-Length" characters
        (
            "long header name (CVE-2021-40346)",
            post(&format!("Content-Length0{}:\r\nContent-Length: {}\r\nConnection: close\r\n", "a".repeat(255), smuggle.len()), smuggle),
            vec![200],
        ),
        // HAProxy CVE-2023-25950 / empty field name
        ("empty header name", post(":\r\nContent-Length: 0\r\n", ""), vec![400]),
        ("space in header name", post("Content Length: 5\r\n", "hello"), vec![400]),
        ("NUL in header value", post("X-A: a\0b\r\nContent-Length: 0\r\n", ""), vec![400]),
        ("CR in header value", post("X-A: a\rb\r\nContent-Length: 0\r\n", ""), vec![400]),
        // chunked body defects
        ("chunk size negative", post("Transfer-Encoding: chunked\r\n", &format!("-1\r\n\r\n{smuggle}")), vec![400]),
        ("chunk size 0x prefix", post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), vec![400]),
        ("chunk size overflow", post("Transfer-Encoding: chunked\r\n", "10000000000000000\r\nhello\r\n0\r\n\r\n"), vec![400]),
        ("chunk size with space", post("Transfer-Encoding: chunked\r\n", "5 \r\nhello\r\n0\r\n\r\n"), vec![400]),
        ("chunk line bare LF (CVE-2025-22871)", post("Transfer-Encoding: chunked\r\n", &format!("5;x\nhello\r\n0\r\n\r\n{smuggle}")), vec![400]),
        ("chunk data overrun", post("Transfer-Encoding: chunked\r\n", &format!("5\r\nhelloXX\r\n0\r\n\r\n{smuggle}")), vec![400]),
        ("chunk ext with control char", post("Transfer-Encoding: chunked\r\n", "5;a\x01b\r\nhello\r\n0\r\n\r\n"), vec![400]),
        // host confusion
        ("absolute URI vs Host", b"GET http://evil.test/ HTTP/1.1\r\nHost: shop.test\r\n\r\n".to_vec(), vec![400]),
        ("two Host fields", b"GET / HTTP/1.1\r\nHost: shop.test\r\nHost: evil.test\r\n\r\n".to_vec(), vec![400]),
        ("userinfo in Host", b"GET / HTTP/1.1\r\nHost: shop.test@evil.test\r\n\r\n".to_vec(), vec![400]),
        ("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![400]),
        // a refused request ends the connection: what follows is never read
        ("pipelined after refusal", [post("Content-Length: 1\r\nContent-Length: 1\r\n", "x"), smuggle.as_bytes().to_vec()].concat(), vec![400]),
        // valid framing that looks like smuggling is data, not a request
        ("request in a CL body", post(&format!("Content-Length: {}\r\nConnection: close\r\n", smuggle.len()), smuggle), vec![200]),
        ("request in a chunked body", post("Transfer-Encoding: chunked\r\nConnection: close\r\n", &format!("{:x}\r\n{smuggle}\r\n0\r\n\r\n", smuggle.len())), vec![200]),
        ("trailers", post("Transfer-Encoding: chunked\r\nConnection: close\r\n", "5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"), vec![200]),
        ("bare LF line ends", b"GET / HTTP/1.1\nHost: shop.test\nConnection: close\n\n".to_vec(), vec![200]),
        ("pipelined valid requests", b"GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\nPOST /b HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n".to_vec(), vec![200, 200, 200]),
    ];
    // The upgrade that is refused: bytes after it were never checked as HTTP, so the
    // edge closes the connection after the origin's non-101 answer.
    cases.push(("refused upgrade then smuggle", format!("GET /plain HTTP/1.1\r\nHost: shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{smuggle}").into_bytes(), vec![200]));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_corpus() {
    let (o, e) = setup("smuggle").await;
    let addr = e.addr("web");
    let mut failures = Vec::new();
    for (name, bytes, want) in corpus() {
        let before = o.seen().len();
        let resp = raw(addr, &bytes, Duration::from_millis(1500)).await;
        let got = statuses(&resp);
        if got != want {
            failures.push(format!("{name}: answered {got:?}, expected {want:?}"));
        }
        let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
        if want == vec![400] && !text.contains("connection: close") {
            failures.push(format!("{name}: a refusal must close the connection"));
        }
        // Let the origin finish recording what it got. A refused request either never
        // reached it, or (a body defect found while streaming) reached it with its body
        // aborted — never complete.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if want == vec![400] && o.seen()[before..].iter().any(|s| s.body != b"<body error>") {
            failures.push(format!(
                "{name}: a refused request reached the origin complete: {:?}",
                &o.seen()[before..]
            ));
        }
        if !smuggled(&o).is_empty() {
            failures.push(format!(
                "{name}: SMUGGLED REQUEST REACHED THE ORIGIN: {:?}",
                smuggled(&o)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // the body that looked like a request arrived whole, as a body
    assert!(
        o.seen()
            .iter()
            .any(|s| s.body == b"GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_give_414_and_431() {
    let (_o, e) = setup("limits").await;
    let addr = e.addr("web");
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: shop.test\r\n\r\n",
        "a".repeat(1100)
    );
    assert_eq!(
        statuses(&raw(addr, long.as_bytes(), Duration::from_secs(2)).await),
        vec![414]
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: {}\r\n\r\n",
        "v".repeat(5000)
    );
    assert_eq!(
        statuses(&raw(addr, big.as_bytes(), Duration::from_secs(2)).await),
        vec![431]
    );
    let mut many = String::from("GET / HTTP/1.1\r\nHost: shop.test\r\n");
    for i in 0..25 {
        many.push_str(&format!("X-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        statuses(&raw(addr, many.as_bytes(), Duration::from_secs(2)).await),
        vec![431]
    );
    let m = e.edge.metrics().render();
    assert!(
        m.contains(r#"rampart_http_rejected_total{listener="web",code="431"} 2"#),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_bodies_get_408_and_idle_connections_close() {
    let (o, e) = setup("slow").await;
    let addr = e.addr("web");
    let t0 = std::time::Instant::now();
    let resp = raw(addr, b"GET / HTTP/1.1\r\nHost: sho", Duration::from_secs(3)).await;
    assert_eq!(statuses(&resp), vec![408]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    let resp = raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\nonly-part",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(statuses(&resp), vec![408]);
    assert!(o.seen().iter().all(|s| s.body.len() != 100));
    // an idle keep-alive connection is closed silently after keepalive_timeout
    let mut s = connect_from(None, addr).await;
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let resp = read_until_quiet(&mut s, Duration::from_secs(3)).await;
    assert_eq!(statuses(&resp), vec![200]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "closed after {took:?}"
    );

    // ... but one in use is not: requests 600 ms apart keep it open well past 1 s, and a
    // body whose pieces come 300 ms apart is not cut by the 500 ms body timeout
    let mut s = connect_from(None, addr).await;
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        s.write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let resp = read_until_quiet(&mut s, Duration::from_millis(300)).await;
        assert_eq!(
            statuses(&resp),
            vec![200],
            "request {i} on the kept-alive connection"
        );
    }
    s.write_all(b"POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 4\r\n\r\n")
        .await
        .unwrap();
    for piece in [b"a", b"b", b"c", b"d"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(piece).await.unwrap();
    }
    let resp = read_until_quiet(&mut s, Duration::from_millis(500)).await;
    assert_eq!(statuses(&resp), vec![200], "a slow but steady body passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_ip_are_limited() {
    let (_o, e) = setup("perip").await;
    let addr = e.addr("web");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(Some("127.0.0.21"), addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = raw_from(
        Some("127.0.0.21"),
        addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(1),
    )
    .await;
    assert!(
        resp.is_empty(),
        "fourth connection from the same IP is closed"
    );
    let resp = raw_from(
        Some("127.0.0.22"),
        addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(statuses(&resp), vec![200], "another client is served");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = raw_from(
        Some("127.0.0.21"),
        addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(statuses(&resp), vec![200], "slots are released");
    assert!(
        e.edge.metrics().render().contains(
            r#"rampart_connections_refused_total{listener="web",reason="per_ip_limit"} 1"#
        )
    );
}

// ---------- HTTP/2 (cleartext, prior knowledge) with hand-made frames ----------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing — new name", lengths < 127.
fn lit(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, name.len() as u8];
    out.extend_from_slice(name);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out
}

fn request_block(path: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(lit(b":method", b"POST"));
    b.extend(lit(b":scheme", b"http"));
    b.extend(lit(b":authority", b"shop.test"));
    b.extend(lit(b":path", path.as_bytes()));
    for (n, v) in extra {
        b.extend(lit(n, v));
    }
    b
}

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

struct Frames(Vec<(u8, u8, u32, Vec<u8>)>);

impl Frames {
    fn parse(mut b: &[u8]) -> Frames {
        let mut out = Vec::new();
        while b.len() >= 9 {
            let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
            if b.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([b[5] & 0x7f, b[6], b[7], b[8]]);
            out.push((b[3], b[4], stream, b[9..9 + len].to_vec()));
            b = &b[9 + len..];
        }
        Frames(out)
    }
    fn goaway(&self) -> Option<u32> {
        self.0
            .iter()
            .find(|f| f.0 == 0x7)
            .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
    }
    fn resets(&self) -> Vec<u32> {
        self.0.iter().filter(|f| f.0 == 0x3).map(|f| f.2).collect()
    }
    fn headers_on(&self, stream: u32) -> bool {
        self.0.iter().any(|f| f.0 == 0x1 && f.2 == stream)
    }
}

async fn h2_raw(addr: std::net::SocketAddr, frames: &[u8], wait: Duration) -> Frames {
    let mut data = PREFACE.to_vec();
    data.extend(frame(0x4, 0, 0, &[]));
    data.extend_from_slice(frames);
    Frames::parse(&raw(addr, &data, wait).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_to_h1_downgrade_cannot_inject_or_desync() {
    let (o, e) = setup("h2down").await;
    let addr = e.addr("web");
    // CR/LF in a value would become a header line on HTTP/1.1
    let inj = request_block(
        "/inject",
        &[(b"x-a", b"a\r\nx-smuggled: 1"), (b"content-length", b"0")],
    );
    let f = h2_raw(
        addr,
        &frame(0x1, END_HEADERS | END_STREAM, 1, &inj),
        Duration::from_millis(800),
    )
    .await;
    assert!(!f.headers_on(1) || f.resets().contains(&1) || f.goaway().is_some());
    // connection-specific header in HTTP/2
    let te = request_block("/te", &[(b"transfer-encoding", b"chunked")]);
    let f = h2_raw(
        addr,
        &frame(0x1, END_HEADERS | END_STREAM, 1, &te),
        Duration::from_millis(800),
    )
    .await;
    assert!(
        f.resets().contains(&1) || f.goaway().is_some(),
        "TE in HTTP/2 is malformed"
    );
    // content-length smaller than the DATA sent
    let mut frames = frame(
        0x1,
        END_HEADERS,
        1,
        &request_block("/cl", &[(b"content-length", b"3")]),
    );
    frames.extend(frame(
        0x0,
        END_STREAM,
        1,
        b"hello GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    ));
    let f = h2_raw(addr, &frames, Duration::from_millis(800)).await;
    assert!(
        f.resets().contains(&1) || f.goaway().is_some(),
        "content-length mismatch refused"
    );
    // uppercase header name is malformed in HTTP/2
    let up = request_block("/upper", &[(b"X-Upper", b"1")]);
    let f = h2_raw(
        addr,
        &frame(0x1, END_HEADERS | END_STREAM, 1, &up),
        Duration::from_millis(800),
    )
    .await;
    assert!(f.resets().contains(&1) || f.goaway().is_some());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(smuggled(&o).is_empty(), "{:?}", smuggled(&o));
    assert!(
        o.seen().iter().all(|s| !s.path.starts_with("/inject")
            && !s.path.starts_with("/te")
            && !s.path.starts_with("/upper")),
        "{:?}",
        o.seen()
    );
    assert!(
        o.seen().iter().all(|s| s.body != b"hello"),
        "no body beyond the declared length is forwarded"
    );
    // a well-formed h2 request works
    let ok = request_block("/fine", &[(b"content-length", b"0")]);
    let f = h2_raw(
        addr,
        &frame(0x1, END_HEADERS | END_STREAM, 1, &ok),
        Duration::from_millis(800),
    )
    .await;
    assert!(f.headers_on(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_settings_advertise_max_concurrent_streams() {
    let (_o, e) = setup("h2settings").await;
    let f = h2_raw(e.addr("web"), &[], Duration::from_millis(500)).await;
    let settings =
        f.0.iter()
            .find(|x| x.0 == 0x4 && x.1 & 1 == 0)
            .expect("server SETTINGS");
    let mut found = None;
    for kv in settings.3.chunks(6) {
        if u16::from_be_bytes([kv[0], kv[1]]) == 0x3 {
            found = Some(u32::from_be_bytes([kv[2], kv[3], kv[4], kv[5]]));
        }
    }
    assert_eq!(found, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_cut_off() {
    let (_o, e) = setup("rapid").await;
    let addr = e.addr("web");
    let mut frames = Vec::new();
    for i in 0..500u32 {
        let id = 2 * i + 1;
        frames.extend(frame(
            0x1,
            END_HEADERS | END_STREAM,
            id,
            &request_block("/?ms=200", &[]),
        ));
        frames.extend(frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let f = h2_raw(addr, &frames, Duration::from_secs(2)).await;
    assert_eq!(f.goaway(), Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
    assert_eq!(
        get(addr, "shop.test", "/", "").await.0,
        200,
        "the edge keeps serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_continuation_flood_is_cut_off() {
    let (_o, e) = setup("cont").await;
    let addr = e.addr("web");
    let mut s = connect_from(None, addr).await;
    use tokio::io::AsyncWriteExt;
    let mut first = PREFACE.to_vec();
    first.extend(frame(0x4, 0, 0, &[]));
    first.extend(frame(0x1, 0, 1, &request_block("/", &[])));
    s.write_all(&first).await.unwrap();
    let junk = lit(b"x-flood", &[b'a'; 100]).repeat(100); // ~10 KB per frame
    let cont = frame(0x9, 0, 1, &junk);
    // What the client manages to write includes what the kernel buffers on both ends
    // (the edge's receive buffer autotunes up to tcp_rmem's maximum) — not only what
    // the edge read. An edge that accepted the flood would take all of it; one that cuts
    // it off stops the client within the buffers' bound.
    let kernel_max = |path: &str, default: usize| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or(default)
    };
    let buffered = kernel_max("/proc/sys/net/ipv4/tcp_rmem", 32 << 20)
        + kernel_max("/proc/sys/net/ipv4/tcp_wmem", 4 << 20);
    let bound = buffered + (4 << 20);
    let flood = bound + (16 << 20);
    let mut sent = 0usize;
    let mut closed = false;
    while sent < flood {
        if s.write_all(&cont).await.is_err() {
            closed = true;
            break;
        }
        sent += cont.len();
    }
    let rest = read_until_quiet(&mut s, Duration::from_secs(2)).await;
    let f = Frames::parse(&rest);
    assert!(
        closed || f.goaway().is_some(),
        "connection cut after {sent} bytes"
    );
    assert!(
        sent < bound,
        "cut before the flood ended: {sent} bytes written, more than the {buffered} bytes \
         kernel buffers hold plus 4 MiB"
    );
    assert_eq!(
        get(addr, "shop.test", "/", "").await.0,
        200,
        "the edge keeps serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_slow_body_gets_408() {
    let (o, e) = setup("h2slow").await;
    let tcp = tokio::net::TcpStream::connect(e.addr("web")).await.unwrap();
    let mut h2 = h2_client(tcp).await;
    let req = http::Request::post("http://shop.test/upload")
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (resp, mut stream) = h2.send_request(req, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"only a part"), false)
        .unwrap();
    let t0 = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(resp.status(), 408);
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        o.seen().iter().all(|s| s.body.len() != 100),
        "the origin never got a complete body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let (_o, e) = setup("h2idle").await;
    let mut s = connect_from(None, e.addr("web")).await;
    use tokio::io::AsyncWriteExt;
    let mut first = PREFACE.to_vec();
    first.extend(frame(0x4, 0, 0, &[]));
    first.extend(frame(
        0x1,
        END_HEADERS | END_STREAM,
        1,
        &request_block("/", &[(b"content-length", b"0")]),
    ));
    s.write_all(&first).await.unwrap();
    let t0 = std::time::Instant::now();
    // read until the edge closes the connection (keepalive_timeout = 1s)
    let got = read_until_quiet(&mut s, Duration::from_secs(4)).await;
    let took = t0.elapsed();
    assert!(
        Frames::parse(&got).headers_on(1),
        "the request was answered"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3900),
        "idle HTTP/2 connection closed after {took:?}"
    );
}
