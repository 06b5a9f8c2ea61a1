//! The simulated clients' network side: TLS profiles (each a distinct ClientHello, so a
//! distinct JA4, and with its own HTTP/2 settings), connections from a chosen loopback
//! address, and requests over HTTP/1.1 or HTTP/2.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How a client's TLS and HTTP stack looks.
#[derive(Clone)]
pub struct Profile {
    /// Name, for the report.
    pub name: &'static str,
    tls: Arc<rustls::ClientConfig>,
    /// HTTP/2 stream window (part of its HTTP/2 fingerprint).
    h2_window: u32,
}

impl Profile {
    /// Whether it negotiates HTTP/2.
    pub fn h2(&self) -> bool {
        self.tls.alpn_protocols.first().is_some_and(|p| p == b"h2")
    }
}

/// The profiles: three "browsers" (TLS 1.3 with ALPN h2, differing cipher sets and
/// HTTP/2 windows) and the attack tools' stacks.
pub struct Profiles {
    /// Legitimate users' stacks.
    pub browsers: Vec<Profile>,
    /// The credential stuffer's and scraper's HTTP/1.1 tool.
    pub tool: Profile,
    /// The low-and-slow attacker's one HTTP/2 stack.
    pub slow: Profile,
    /// The HTTP flood's stack.
    pub flood: Profile,
}

fn config(
    roots: &rustls::RootCertStore,
    keep: &dyn Fn(&rustls::SupportedCipherSuite) -> bool,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| keep(s));
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(c))
}

impl Profiles {
    /// The profiles, trusting `ca` (the edge's certificate, DER).
    pub fn new(ca: &[u8]) -> anyhow::Result<Profiles> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from(ca.to_vec()))?;
        let all = |_: &rustls::SupportedCipherSuite| true;
        let no_chacha =
            |s: &rustls::SupportedCipherSuite| !format!("{:?}", s.suite()).contains("CHACHA");
        let aes128 =
            |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite()).contains("AES_128");
        let tls13 =
            |s: &rustls::SupportedCipherSuite| matches!(s, rustls::SupportedCipherSuite::Tls13(_));
        let gcm256 =
            |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite()).contains("AES_256_GCM");
        let p = |name, tls, h2_window| Profile {
            name,
            tls,
            h2_window,
        };
        Ok(Profiles {
            browsers: vec![
                p(
                    "browser-a",
                    config(&roots, &all, &[b"h2", b"http/1.1"])?,
                    6_291_456,
                ),
                p(
                    "browser-b",
                    config(&roots, &no_chacha, &[b"h2", b"http/1.1"])?,
                    131_072,
                ),
                p(
                    "browser-c",
                    config(&roots, &aes128, &[b"h2", b"http/1.1"])?,
                    65_535,
                ),
            ],
            tool: p("tool-h1", config(&roots, &tls13, &[b"http/1.1"])?, 65_535),
            slow: p("slow-h2", config(&roots, &gcm256, &[b"h2"])?, 1_048_576),
            flood: p("flood-h1", config(&roots, &gcm256, &[b"http/1.1"])?, 65_535),
        })
    }
}

/// A connection's request side.
pub enum Sender {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A response, read whole.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Header fields.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Connects from `src` to the edge at `edge` (TLS, SNI `host`) with `profile`.
pub async fn connect(
    src: Ipv4Addr,
    edge: SocketAddr,
    host: &str,
    profile: &Profile,
) -> anyhow::Result<Sender> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::from((src, 0)))?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), sock.connect(edge)).await??;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())?;
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(profile.tls.clone()).connect(name, tcp),
    )
    .await??;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    if h2 {
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(profile.h2_window)
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(send))
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H1(send))
    }
}

impl Sender {
    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        match self {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }

    /// Sends a request and reads the whole response (within 10 s).
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Resp> {
        let fut = async {
            let resp = match self {
                Sender::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
                Sender::H2(s) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(Duration::from_secs(10), fut).await?
    }
}
