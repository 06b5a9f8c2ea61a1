//! Test support: real origin servers, a real edge, raw and TLS clients — all on loopback.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_edge::Edge;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What an origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A real HTTP origin (HTTP/1.1 and h2c) on 127.0.0.1, optionally over TLS.
pub struct Origin {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub healthy: Arc<AtomicBool>,
    pub hits: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Origin {
    pub async fn start(name: &str) -> Origin {
        Self::start_inner(name, None).await
    }

    pub async fn start_tls(name: &str, cert: &TestCert) -> Origin {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut sc = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der.clone()],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start_inner(name, Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))).await
    }

    async fn start_inner(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let st = State {
            name: name.to_owned(),
            seen: seen.clone(),
            healthy: healthy.clone(),
            hits: hits.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = stop_rx.changed() => return,
                };
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| origin_handle(st.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acc) => {
                            if let Ok(s) = acc.accept(tcp).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                                .await;
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            name: name.to_owned(),
            seen,
            healthy,
            hits,
            stop,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

#[derive(Clone)]
struct State {
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).boxed()
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn origin_handle(
    st: State,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let q = query(req.uri());
    if path == "/healthz" {
        let ok = st.healthy.load(Ordering::SeqCst);
        let mut r = Response::new(full(if ok { "ok" } else { "down" }));
        *r.status_mut() = if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Ok(r);
    }
    st.hits.fetch_add(1, Ordering::SeqCst);
    if path == "/ws" && req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&buf[..n]);
                            if io.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert(http::header::UPGRADE, "websocket".parse().unwrap());
        r.headers_mut()
            .insert(http::header::CONNECTION, "Upgrade".parse().unwrap());
        r.headers_mut().insert(
            http::header::SEC_WEBSOCKET_ACCEPT,
            "dummy-accept".parse().unwrap(),
        );
        return Ok(r);
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => b"<body error>".to_vec(),
    };
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if let Some(ms) = q.get("ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        let mut r = Response::new(full(format!("status {code}")));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        return Ok(r);
    }
    if path == "/trailers" {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"grpc-payload"))),
            Ok(Frame::trailers({
                let mut t = HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                t.insert("grpc-message", "all-good".parse().unwrap());
                t
            })),
        ];
        let mut r = Response::new(StreamBody::new(futures_stream(frames)).boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "application/grpc".parse().unwrap(),
        );
        return Ok(r);
    }
    if path == "/page" {
        // An HTML page whose body is the (percent-decoded) `body` query parameter.
        let raw = parts.uri.query().unwrap_or("");
        let text = raw.strip_prefix("body=").unwrap_or("");
        let mut body = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                    body.push(v);
                    i += 3;
                    continue;
                }
            }
            body.push(b[i]);
            i += 1;
        }
        let mut r = Response::new(full(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "text/html; charset=utf-8".parse().unwrap(),
        );
        return Ok(r);
    }
    if path == "/big" {
        let n: usize = q.get("n").and_then(|v| v.parse().ok()).unwrap_or(1 << 20);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut frames = Vec::new();
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len());
            frames.push(Ok(Frame::data(chunk.slice(..k))));
            left -= k;
        }
        let mut r = Response::new(StreamBody::new(futures_stream(frames)).boxed());
        if let Some(t) = q.get("type") {
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, t.parse().unwrap());
        }
        return Ok(r);
    }
    let mut r = Response::new(full(format!("{} {} {}", st.name, parts.method, body.len())));
    r.headers_mut().insert("x-origin", st.name.parse().unwrap());
    // hop-by-hop fields an origin might send: the edge must not pass them on
    r.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    r.headers_mut()
        .insert("connection", "keep-alive, x-hop-secret".parse().unwrap());
    r.headers_mut()
        .insert("x-hop-secret", "origin-internal".parse().unwrap());
    Ok(r)
}

/// A stream over a vector of frames (no extra crate needed).
fn futures_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl futures_core_stream::Stream<Item = T> + Send + 'static {
    futures_core_stream::VecStream(items.into_iter())
}

pub mod futures_core_stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub trait Stream: futures_core::Stream {}
    impl<S: futures_core::Stream> Stream for S {}

    pub struct VecStream<T>(pub std::vec::IntoIter<T>);
    impl<T> Unpin for VecStream<T> {}
    impl<T> futures_core::Stream for VecStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.next())
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rampart-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for the given names.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: rustls_pki_types::CertificateDer<'static>,
}

impl TestCert {
    pub fn new(names: &[&str]) -> TestCert {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        TestCert {
            cert_pem: ck.cert.pem(),
            key_pem: ck.key_pair.serialize_pem(),
            der: ck.cert.der().clone(),
        }
    }

    pub fn write(&self, dir: &TempDir, stem: &str) -> (String, String) {
        let c = dir.path(&format!("{stem}.crt"));
        let k = dir.path(&format!("{stem}.key"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

/// An edge started from a config file in its own temp dir.
pub struct TestEdge {
    pub edge: Edge,
    pub dir: TempDir,
    pub config: PathBuf,
}

impl TestEdge {
    pub async fn start(dir: TempDir, config: &str) -> TestEdge {
        Self::start_with(dir, config, rampart_edge::generation::no_stages()).await
    }

    pub async fn start_with(
        dir: TempDir,
        config: &str,
        stages: rampart_edge::generation::StageFactory,
    ) -> TestEdge {
        let path = dir.0.join("rampart.toml");
        std::fs::write(&path, config).unwrap();
        let edge = match Edge::start_with(&path, stages).await {
            Ok(e) => e,
            Err(e) => panic!("edge did not start: {e}"),
        };
        TestEdge {
            edge,
            dir,
            config: path,
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.edge
            .local_addr(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    pub async fn rewrite(&self, config: &str) -> Result<u64, rampart_edge::EdgeError> {
        std::fs::write(&self.config, config).unwrap();
        self.edge.reload().await
    }
}

/// Sends raw bytes, reads until the peer closes or `wait` passes without data.
pub async fn raw(addr: SocketAddr, data: &[u8], wait: Duration) -> Vec<u8> {
    raw_from(None, addr, data, wait).await
}

/// Like [`raw`], from a chosen loopback source address.
pub async fn raw_from(src: Option<&str>, addr: SocketAddr, data: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = connect_from(src, addr).await;
    s.write_all(data).await.unwrap();
    read_until_quiet(&mut s, wait).await
}

pub async fn connect_from(src: Option<&str>, addr: SocketAddr) -> TcpStream {
    match src {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            sock.connect(addr).await.unwrap()
        }
    }
}

pub async fn read_until_quiet<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    wait: Duration,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Status codes of every HTTP/1.1 response in a byte stream, in order.
pub fn statuses(resp: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(resp);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..i + 12].parse().ok())
        .collect()
}

/// Simple HTTP/1.1 GET; returns (status, headers text lower-cased, body).
pub async fn get(addr: SocketAddr, host: &str, path: &str, extra: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    let resp = raw(addr, req.as_bytes(), Duration::from_secs(10)).await;
    split(&resp)
}

pub fn split(resp: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(resp).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A TLS client config trusting `certs`, offering `alpn`.
pub fn tls_client(certs: &[&TestCert], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cc)
}

pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    cc: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(cc)
        .connect(name, tcp)
        .await
}

/// An HTTP/2 client over any stream.
pub async fn h2_client<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    io: S,
) -> h2::client::SendRequest<Bytes> {
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Polls `f` until true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// The base config used by most tests: one tenant, one plain listener, one site.
pub fn basic_config(servers: &[SocketAddr], extra_pool: &str, extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[edge]
access_log = "off"
{extra}

[[tenant]]
id = "acme"

[[listener]]
name = "web"
bind = "127.0.0.1:0"

[[pool]]
id = "web"
tenant = "acme"
servers = [{}]
{extra_pool}

[[site]]
id = "shop"
tenant = "acme"
hosts = ["shop.test", "localhost"]
[[site.route]]
path = "/"
pool = "web"
"#,
        servers.join(", ")
    )
}

/// The security events in `dir`'s `security.log` (waits up to 10 s until `n` are there).
pub async fn security_events(dir: &TempDir, n: usize) -> Vec<serde_json::Value> {
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
