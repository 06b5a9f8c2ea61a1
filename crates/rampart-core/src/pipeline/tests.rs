use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, StatusCode, Version};

use super::*;
use crate::config::{SourceFile, load_str};

const CFG: &str = r#"
[edge]
trusted_proxies = ["10.0.0.0/8"]
[limits]
max_uri_bytes = 64
max_headers = 8
max_header_bytes = 512
[[tenant]]
id = "t"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
[[pool]]
id = "p"
tenant = "t"
servers = ["127.0.0.1:9000"]
[[pool]]
id = "api"
tenant = "t"
servers = ["127.0.0.1:9001"]
[[site]]
id = "s"
tenant = "t"
hosts = ["shop.test"]
route = [{ path = "/", pool = "p" }, { path = "/api", pool = "api" }]
"#;

fn cfg() -> Config {
    load_str(&SourceFile::new("t.toml", CFG)).unwrap_or_else(|d| unreachable!("{d}"))
}

fn view(req: Request<()>, peer: &str) -> RequestView {
    let (head, ()) = req.into_parts();
    let peer: SocketAddr = peer.parse().unwrap_or_else(|_| unreachable!());
    let conn = Arc::new(ConnInfo::new(
        peer,
        "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!()),
        "web".into(),
        false,
        None,
    ));
    RequestView::new(head, conn, 0)
}

fn run(req: Request<()>, peer: &str) -> (Flow, RequestView) {
    let mut v = view(req, peer);
    let flow = Pipeline::standard(|| "fresh".to_owned()).on_request(&cfg(), &mut v, &mut NoProbe);
    (flow, v)
}

fn get(uri: &str) -> http::request::Builder {
    Request::builder().uri(uri).header("host", "shop.test")
}

fn status(flow: &Flow) -> Option<StatusCode> {
    match flow {
        Flow::Continue => None,
        Flow::Respond(r) => Some(r.status),
    }
}

fn build(b: http::request::Builder) -> Request<()> {
    b.body(()).unwrap_or_else(|e| unreachable!("{e}"))
}

#[test]
fn resolves_site_route_and_identity() {
    let (flow, v) = run(build(get("/api/x")), "192.0.2.7:5555");
    assert_eq!(flow, Flow::Continue);
    assert_eq!((v.site, v.route, v.tenant), (Some(0), Some(0), Some(0)));
    assert_eq!(v.host, "shop.test");
    assert_eq!(v.client_ip.to_string(), "192.0.2.7");
    assert_eq!(v.request_id, "fresh");
}

#[test]
fn unknown_host_and_path_are_404() {
    let (flow, _) = run(
        build(Request::builder().uri("/").header("host", "other.test")),
        "192.0.2.7:1",
    );
    assert_eq!(status(&flow), Some(StatusCode::NOT_FOUND));
}

#[test]
fn xff_and_request_id_believed_only_from_trusted_peers() {
    let req = || {
        build(
            get("/")
                .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")
                .header("x-request-id", "abc-123"),
        )
    };
    let (_, v) = run(req(), "10.0.0.1:1");
    assert_eq!(
        v.client_ip.to_string(),
        "203.0.113.9",
        "rightmost untrusted"
    );
    assert_eq!(v.request_id, "abc-123");
    let (_, v) = run(req(), "192.0.2.1:1");
    assert_eq!(
        v.client_ip.to_string(),
        "192.0.2.1",
        "untrusted peer's XFF is ignored"
    );
    assert_eq!(v.request_id, "fresh");
    let bad_id = build(get("/").header("x-request-id", "a b"));
    let (_, v) = run(bad_id, "10.0.0.1:1");
    assert_eq!(
        v.request_id, "fresh",
        "malformed id from trusted peer replaced"
    );
    let garbage = build(get("/").header("x-forwarded-for", "not-an-ip, 203.0.113.9"));
    let (_, v) = run(garbage, "10.0.0.1:1");
    assert_eq!(v.client_ip.to_string(), "203.0.113.9");
    let garbage_right = build(get("/").header("x-forwarded-for", "203.0.113.9, junk"));
    let (_, v) = run(garbage_right, "10.0.0.1:1");
    assert_eq!(
        v.client_ip.to_string(),
        "10.0.0.1",
        "malformed rightmost entry: stop at the peer"
    );
}

#[test]
fn smuggling_shapes_are_rejected() {
    let cases: Vec<(http::request::Builder, StatusCode)> = vec![
        (
            get("/")
                .header("content-length", "5")
                .header("transfer-encoding", "chunked"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/")
                .header("content-length", "5")
                .header("content-length", "5"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/").header("content-length", "+5"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/")
                .header("transfer-encoding", "chunked")
                .header("transfer-encoding", "chunked"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/").header("transfer-encoding", "gzip, chunked"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/").header("transfer-encoding", "xchunked"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/")
                .version(Version::HTTP_10)
                .header("transfer-encoding", "chunked"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/").header("host", "shop.test"),
            StatusCode::BAD_REQUEST,
        ),
        (Request::builder().uri("/"), StatusCode::BAD_REQUEST),
        (get("http://evil.test/"), StatusCode::BAD_REQUEST),
        (
            Request::builder().uri("/").header("host", "shop.test@evil"),
            StatusCode::BAD_REQUEST,
        ),
        (get("/").method("CONNECT"), StatusCode::METHOD_NOT_ALLOWED),
        (
            get(&format!("/{}", "a".repeat(64))),
            StatusCode::URI_TOO_LONG,
        ),
        (
            get("/").header("x-big", "v".repeat(600)),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    for (i, (b, want)) in cases.into_iter().enumerate() {
        let (flow, _) = run(build(b), "192.0.2.1:1");
        assert_eq!(status(&flow), Some(want), "case {i}");
        assert!(
            matches!(
                flow,
                Flow::Respond(Reply { close: true, .. })
                    | Flow::Respond(Reply {
                        status: StatusCode::METHOD_NOT_ALLOWED,
                        ..
                    })
            ),
            "case {i} closes"
        );
    }
    let mut many = get("/");
    for i in 0..8 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let (flow, _) = run(build(many), "192.0.2.1:1");
    assert_eq!(
        status(&flow),
        Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
}

#[test]
fn acceptable_forms_pass() {
    for b in [
        get("/").header("transfer-encoding", "Chunked"),
        get("/").header("content-length", "0"),
        get("http://shop.test/x"),
        Request::builder().uri("/").version(Version::HTTP_10),
        Request::builder().uri("/").header("host", "SHOP.test:8080"),
        get("*").method("OPTIONS"),
    ] {
        let (flow, v) = run(build(b), "192.0.2.1:1");
        if v.host == "shop.test" {
            assert_eq!(flow, Flow::Continue);
        }
    }
}

struct Counting(std::sync::atomic::AtomicUsize);
impl Stage for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn on_request(&self, _: &Config, _: &mut RequestView) -> Flow {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Flow::Respond(Reply::new(StatusCode::IM_A_TEAPOT, "stop"))
    }
    fn body_prefix_wanted(&self, _: &Config, _: &RequestView) -> usize {
        4096
    }
}

/// A probe that records which stages it timed, in order.
struct Rec(Vec<usize>);

impl Probe for Rec {
    type Mark = ();
    fn start(&mut self) {}
    fn end(&mut self, i: usize, _: ()) {
        self.0.push(i);
    }
}

#[test]
fn a_responding_stage_stops_the_chain_and_probe_sees_each_stage() {
    let p = Pipeline::new(vec![
        Box::new(HeadCheck),
        Box::new(Counting(0.into())),
        Box::new(Resolve),
    ]);
    let mut v = view(build(get("/")), "192.0.2.1:1");
    let mut rec = Rec(Vec::new());
    let flow = p.on_request(&cfg(), &mut v, &mut rec);
    assert_eq!(status(&flow), Some(StatusCode::IM_A_TEAPOT));
    assert_eq!(rec.0, vec![0, 1]);
    assert_eq!(v.site, None, "resolve did not run");
    assert_eq!(p.body_prefix_wanted(&cfg(), &v), 4096);
}

/// A stage that reads the responses of requests to `only` (of all requests if `None`)
/// and marks them `x-marker: 1`.
struct Marker {
    only: Option<&'static str>,
}

impl Stage for Marker {
    fn name(&self) -> &'static str {
        "marker"
    }
    fn on_request(&self, _: &Config, _: &mut RequestView) -> Flow {
        Flow::Continue
    }
    fn inspects_responses(&self) -> bool {
        true
    }
    fn inspects_response_of(&self, _: &Config, req: &RequestView) -> bool {
        self.only.is_none_or(|path| req.head.uri.path() == path)
    }
    fn on_response(
        &self,
        _: &Config,
        _: &mut RequestView,
        resp: &mut http::response::Parts,
    ) -> Flow {
        resp.headers
            .insert("x-marker", http::HeaderValue::from_static("1"));
        Flow::Continue
    }
}

#[test]
fn only_stages_with_a_response_hook_are_called_and_timed_on_responses() {
    struct Rec(Vec<usize>, u32);
    impl Probe for Rec {
        type Mark = u32;
        fn start(&mut self) -> u32 {
            self.1 += 1;
            self.1
        }
        fn end(&mut self, i: usize, _: u32) -> u32 {
            self.0.push(i);
            self.1 += 1;
            self.1
        }
    }
    let p = Pipeline::new(vec![
        Box::new(HeadCheck),
        Box::new(Marker { only: None }),
        Box::new(Resolve),
    ]);
    let mut v = view(build(get("/")), "192.0.2.1:1");
    let (mut parts, ()) = http::Response::new(()).into_parts();
    let mut rec = Rec(Vec::new(), 0);
    assert!(matches!(
        p.on_response(&cfg(), &mut v, &mut parts, &mut rec),
        Flow::Continue
    ));
    assert_eq!(rec.0, vec![1], "only the marker stage ran");
    assert_eq!(rec.1, 2, "one clock reading per stage boundary");
    assert_eq!(parts.headers["x-marker"], "1");

    // a chain without response hooks reads no clock at all
    let p = Pipeline::new(vec![Box::new(HeadCheck), Box::new(Resolve)]);
    let mut rec = Rec(Vec::new(), 0);
    assert!(matches!(
        p.on_response(&cfg(), &mut v, &mut parts, &mut rec),
        Flow::Continue
    ));
    assert_eq!((rec.0.len(), rec.1), (0, 0));
}

#[test]
fn a_response_stage_that_passes_on_a_request_is_not_called_for_its_response() {
    /// Counts clock readings.
    struct Readings(u32);
    impl Probe for Readings {
        type Mark = ();
        fn start(&mut self) {
            self.0 += 1;
        }
        fn end(&mut self, _: usize, _: ()) {
            self.0 += 1;
        }
    }
    let p = Pipeline::new(vec![
        Box::new(HeadCheck),
        Box::new(Marker {
            only: Some("/watched"),
        }),
    ]);
    for (path, seen, readings) in [("/watched", true, 2), ("/other", false, 0)] {
        let mut v = view(build(get(path)), "192.0.2.1:1");
        assert_eq!(p.inspects_response_of(&cfg(), &v), seen, "{path}");
        let (mut parts, ()) = http::Response::new(()).into_parts();
        let mut probe = Readings(0);
        assert!(matches!(
            p.on_response(&cfg(), &mut v, &mut parts, &mut probe),
            Flow::Continue
        ));
        assert_eq!(parts.headers.contains_key("x-marker"), seen, "{path}");
        assert_eq!(probe.0, readings, "clock readings for {path}");
    }
}

#[test]
fn a_stage_that_does_not_apply_to_a_request_is_neither_called_nor_timed() {
    /// Applies to requests for `/mine` only; marks the ones it sees.
    struct Picky;
    impl Stage for Picky {
        fn name(&self) -> &'static str {
            "picky"
        }
        fn applies_to(&self, _: &Config, req: &RequestView) -> bool {
            req.head.uri.path() == "/mine"
        }
        fn on_request(&self, _: &Config, req: &mut RequestView) -> Flow {
            req.head
                .headers
                .insert("x-picked", http::HeaderValue::from_static("1"));
            Flow::Continue
        }
    }
    let p = Pipeline::new(vec![
        Box::new(HeadCheck),
        Box::new(Picky),
        Box::new(Resolve),
    ]);
    for (path, picked) in [("/mine", true), ("/other", false)] {
        let mut v = view(build(get(path)), "192.0.2.1:1");
        let mut rec = Rec(Vec::new());
        assert!(matches!(
            p.on_request(&cfg(), &mut v, &mut rec),
            Flow::Continue
        ));
        assert_eq!(v.head.headers.contains_key("x-picked"), picked, "{path}");
        let timed: Vec<usize> = if picked { vec![0, 1, 2] } else { vec![0, 2] };
        assert_eq!(rec.0, timed, "{path}");
    }
}
