//! Listeners: accepting connections and taking each through the connection guard, the
//! PROXY protocol, TLS and into HTTP (or TCP pass-through).
//!
//! Per connection, in order:
//! 1. PROXY protocol header, if the listener enables it: accepted only from the listed
//!    balancers (any other peer is refused), read within `header_timeout`;
//! 2. per-client-IP concurrent connection limit (and, for tcp listeners, connection rate);
//! 3. TLS handshake (certificate by SNI; ALPN `h2` or `http/1.1`);
//! 4. HTTP/1.1 behind the framing guard ([`crate::framing`]), served by the edge's own
//!    server ([`crate::server`]); or HTTP/2 (by ALPN, or the cleartext preface the server
//!    hands back), served by hyper with [`crate::proxy::handle`].
//!
//! The listener reads its settings from the generation in force *per connection*, so a
//! reload changes limits, certificates and sites without rebinding.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rampart_core::config::ListenerKind;
use rampart_core::h1::{Guard, Limits};
use rampart_core::pipeline::ConnInfo;
use rampart_core::proxy_protocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::framing::{ConnShared, ErrorResponder, GuardedIo, Timeouts};
use crate::proxy::ConnCtx;
use crate::runtime::{Running, Shared};

/// Binds a listening socket (SO_REUSEADDR and SO_REUSEPORT, backlog 4096, non-blocking).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(false).ok();
    }
    sock.bind(&addr.into())?;
    sock.listen(4096)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Starts an accept loop for a bound listener on every worker thread.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    name: Arc<str>,
    bind: SocketAddr,
    sock: std::net::TcpListener,
) -> Running {
    let local = sock.local_addr().unwrap_or(bind);
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = Running::new(bind, local, stop_tx);
    tracing::info!(listener = %name, addr = %local, workers = shared.workers.len(), "listening");
    // Every worker accepts on a socket of its own, bound to the same address with
    // SO_REUSEPORT: the kernel spreads new connections evenly over the workers (by
    // connection hash) instead of letting them race for one queue. The first socket is
    // the one already bound (its port is the real one when the configuration said 0).
    let mut sock = Some(sock);
    for (i, handle) in shared.workers.handles().iter().enumerate() {
        let s = match sock.take() {
            Some(first) => Ok(first),
            None => crate::listener::bind(local),
        };
        match s {
            Ok(s) => {
                handle.spawn(accept_loop(
                    shared.clone(),
                    name.clone(),
                    s,
                    stop_rx.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(listener = %name, worker = i, error = %e, "cannot bind the listener for this worker")
            }
        }
    }
    running
}

async fn accept_loop(
    shared: Arc<Shared>,
    name: Arc<str>,
    sock: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(sock) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %name, error = %e, "cannot register listener");
            return;
        }
    };
    let accepted = shared.metrics.connections.with(&[&name]);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    accepted.inc();
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(connection(shared.clone(), name.clone(), tcp, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Most bytes read ahead for a ClientHello (post-quantum key shares make a few KiB).
const MAX_HELLO_READ: usize = 64 * 1024;

/// Reads until the stream's first bytes hold a whole ClientHello (or cannot), keeping
/// every byte read in the stream's prefix for rustls; the hello's JA4 fingerprint.
async fn read_client_hello(stream: &mut Prefixed<TcpStream>) -> Option<Arc<str>> {
    use rampart_policy::fingerprint::{HelloError, Transport, client_hello, ja4};
    use tokio::io::AsyncReadExt;
    let mut buf = stream.prefix.to_vec();
    let fp = loop {
        match client_hello(&buf) {
            Ok(ch) => break Some(Arc::from(ja4(&ch, Transport::Tcp).as_str())),
            // rustls refuses what is not a ClientHello, with its own alert.
            Err(HelloError::Invalid(_)) => break None,
            Err(HelloError::Incomplete(need)) if need > MAX_HELLO_READ => break None,
            Err(HelloError::Incomplete(need)) => {
                let at = buf.len();
                buf.resize(need.max(at + 1).min(MAX_HELLO_READ), 0);
                match stream.inner.read(&mut buf[at..]).await {
                    Ok(0) | Err(_) => {
                        buf.truncate(at);
                        break None;
                    }
                    Ok(n) => buf.truncate(at + n),
                }
            }
        }
    };
    stream.prefix = Bytes::from(buf);
    fp
}

/// A TCP stream with bytes already read (a PROXY header's remainder, a ClientHello read
/// for its fingerprint) put back in front.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The client side of a connection, plain or TLS.
pub enum ClientIo {
    /// Plain TCP.
    Plain(Prefixed<TcpStream>),
    /// TLS.
    Tls(Box<tokio_rustls::server::TlsStream<Prefixed<TcpStream>>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientIo::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientIo::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Reads a PROXY protocol header; returns the addresses it names and the bytes after it.
async fn read_proxy_header(
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<(Option<(SocketAddr, SocketAddr)>, Bytes), &'static str> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(h) => return Ok((h.addresses, Bytes::copy_from_slice(&buf[h.len..]))),
                Err(proxy_protocol::Error::Invalid(why)) => return Err(why),
                Err(proxy_protocol::Error::Incomplete) => {}
            }
            if buf.len() >= proxy_protocol::V2_MAX_LEN {
                return Err("PROXY header too long");
            }
            let mut chunk = [0u8; 512];
            // Read only what the header can still need, so payload bytes stay small.
            let want = (proxy_protocol::V2_MAX_LEN - buf.len()).min(chunk.len());
            match tcp.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => {
                    return Err("connection closed before the PROXY header was complete");
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err("PROXY header not received in time"))
}

/// Serves a hyper connection until it ends, or until shutdown asks it to finish its
/// in-flight requests and close.
macro_rules! serve_conn {
    ($fut:expr, $shutdown:expr) => {{
        let fut = $fut;
        tokio::pin!(fut);
        tokio::select! {
            r = fut.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with error");
                }
            }
            _ = crate::runtime::drained(&mut $shutdown) => {
                fut.as_mut().graceful_shutdown();
                if let Err(e) = fut.await {
                    tracing::debug!(error = %e, "connection ended with error while draining");
                }
            }
        }
    }};
}

async fn connection(shared: Arc<Shared>, name: Arc<str>, mut tcp: TcpStream, tcp_peer: SocketAddr) {
    let _track = shared.tracker();
    let g = shared.current();
    let Some((_, spec)) = g.listener(&name) else {
        return;
    };
    let spec = spec.clone();
    let metrics = &shared.metrics;
    let open = metrics.connections_open.with(&[&name]);
    open.inc();
    struct Dec(Arc<crate::metrics::Gauge>);
    impl Drop for Dec {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let _open = Dec(open);
    let refuse = |reason: &str| metrics.connections_refused.with(&[&name, reason]).inc();
    let local = tcp.local_addr().unwrap_or(spec.bind);

    // 1. PROXY protocol
    let (mut peer, mut dest, mut prefix) = (tcp_peer, local, Bytes::new());
    if let Some(trusted) = &spec.proxy_protocol {
        if !trusted.contains(rampart_core::net::canonical(tcp_peer.ip())) {
            refuse("proxy_protocol_untrusted");
            tracing::debug!(listener = %name, peer = %tcp_peer, "PROXY protocol listener: peer is not a trusted balancer");
            return;
        }
        match read_proxy_header(&mut tcp, spec.limits.header_timeout).await {
            Ok((addrs, rest)) => {
                if let Some((src, dst)) = addrs {
                    peer = src;
                    dest = dst;
                }
                prefix = rest;
            }
            Err(why) => {
                refuse("proxy_protocol_invalid");
                tracing::debug!(listener = %name, peer = %tcp_peer, reason = why, "PROXY protocol header refused");
                return;
            }
        }
    }

    // 2. per-client-IP limits
    let Some((conns, rate)) = shared.limiters(&name) else {
        return;
    };
    let client_ip = rampart_core::net::canonical(peer.ip());
    let Some(_permit) = conns.acquire(client_ip, spec.limits.max_connections_per_ip) else {
        refuse("per_ip_limit");
        tracing::debug!(listener = %name, client = %client_ip, "connection refused: per-IP connection limit");
        return;
    };
    let stream = Prefixed { prefix, inner: tcp };

    if let ListenerKind::Tcp {
        tenant,
        pool,
        max_connection_rate_per_ip,
    } = spec.kind
    {
        if let Some(r) = max_connection_rate_per_ip {
            if !rate.allow(client_ip, r, std::time::Instant::now()) {
                refuse("per_ip_rate");
                tracing::debug!(listener = %name, client = %client_ip, "connection refused: per-IP connection rate");
                return;
            }
        }
        let Some(pool) = g.pools.get(pool).cloned() else {
            return;
        };
        let tenant = g
            .config
            .tenants
            .get(tenant)
            .map_or_else(|| Arc::from("-"), |t| t.id.clone());
        drop(g);
        crate::tcp::relay(&shared, &name, &tenant, stream, peer, pool).await;
        return;
    }

    // 3. TLS: the ClientHello is read first (for its JA4 fingerprint), then replayed to
    // rustls, all within the header timeout.
    let mut ja4: Option<Arc<str>> = None;
    let (io, sni, h2) = if spec.is_tls() {
        let Some(tls) = g.tls.clone() else { return };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let mut stream = stream;
        let handshake = async {
            let fp = read_client_hello(&mut stream).await;
            (fp, acceptor.accept(stream).await)
        };
        match tokio::time::timeout(spec.limits.header_timeout, handshake).await {
            Ok((fp, Ok(s))) => {
                ja4 = fp;
                metrics.tls_handshakes.with(&[&name, "success"]).inc();
                let conn = s.get_ref().1;
                let sni: Option<Arc<str>> = conn
                    .server_name()
                    .map(|n| Arc::from(n.to_ascii_lowercase().as_str()));
                let h2 = conn.alpn_protocol() == Some(b"h2");
                (ClientIo::Tls(Box::new(s)), sni, h2)
            }
            Ok((_, Err(e))) => {
                metrics.tls_handshakes.with(&[&name, "failure"]).inc();
                tracing::debug!(listener = %name, peer = %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics.tls_handshakes.with(&[&name, "timeout"]).inc();
                return;
            }
        }
    } else {
        (ClientIo::Plain(stream), None, false)
    };

    // 4. HTTP
    let Some((idx, _)) = g.listener(&name) else {
        return;
    };
    let Some(builder) = g.http.get(idx).cloned().flatten() else {
        return;
    };
    let mut info = ConnInfo::new(peer, dest, name.clone(), spec.is_tls(), sni);
    info.tls_fingerprint = ja4;
    let conn = Arc::new(info);
    let conn_shared = Arc::new(ConnShared::default());
    let ctx = Arc::new(ConnCtx {
        edge: shared.clone(),
        conn,
        shared: conn_shared.clone(),
    });
    let service = {
        let ctx = ctx.clone();
        hyper::service::service_fn(move |req| crate::proxy::handle(ctx.clone(), req))
    };
    let mut shutdown = shared.shutdown_signal();
    drop(g);
    {
        let lim = &spec.limits;
        let limits = Limits {
            max_uri_bytes: lim.max_uri_bytes,
            max_head_bytes: lim.max_header_bytes,
            max_headers: lim.max_headers,
        };
        let timeouts = Timeouts {
            header: lim.header_timeout,
            body: lim.body_timeout,
            idle: lim.keepalive_timeout,
        };
        let all_metrics = shared.metrics.clone();
        let listener_name = name.clone();
        let responder: Arc<ErrorResponder> = Arc::new(Box::new(
            move |r: &rampart_core::h1::Rejection| {
                let id = crate::runtime::new_request_id();
                all_metrics
                    .rejected
                    .with(&[&listener_name, r.status.as_str()])
                    .inc();
                tracing::debug!(listener = %listener_name, status = r.status.as_u16(), reason = r.reason, request_id = %id, "request refused before routing");
                crate::errorpage::raw_response(r.status, r.reason, &id)
            },
        ));
        // HTTP/1 (and cleartext HTTP/2, recognised by its preface) passes the framing
        // guard; TLS with ALPN h2 starts in HTTP/2 mode. Both get the idle timeout.
        let guard = if h2 {
            Guard::h2(limits)
        } else {
            Guard::new(limits)
        };
        let guarded = GuardedIo::new(io, guard, timeouts, conn_shared, responder);
        if h2 {
            serve_conn!(
                builder
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(guarded), service),
                shutdown
            );
        } else if let Some((io, pending)) =
            crate::server::serve(guarded, ctx, lim.max_headers, &mut shutdown).await
        {
            // cleartext HTTP/2 (the preface on a plain listener)
            let io = Prefixed {
                prefix: pending,
                inner: io,
            };
            serve_conn!(
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service),
                shutdown
            );
        }
    }
}
