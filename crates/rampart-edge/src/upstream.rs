//! Origin pools: server selection, connections, passive ejection and active health checks.
//!
//! A [`PoolRuntime`] is built per configuration generation, but carried over unchanged
//! into the next generation when its configuration did not change, so that health state,
//! ejections and pooled keep-alive connections survive a reload.
//!
//! Each server has its own HTTP client (a keep-alive connection pool) with a connector
//! that dials that server, optionally over TLS, within the pool's connect timeout.
//! A server takes traffic when it is *healthy* (active checks, if configured) and not
//! *ejected* (passive: consecutive connect failures or 5xx responses).
//!
//! HTTP/1.1 origins are spoken to by [`h1`], an inline client: the request is written and
//! the response read by the task serving the client request, with no connection task or
//! channel in between. HTTP/2 origins use hyper's pooled client.

pub mod h1;
mod outgoing;

pub use outgoing::Outgoing;
pub(crate) use outgoing::{X_FORWARDED_FOR, X_FORWARDED_PORT, X_FORWARDED_PROTO, X_REQUEST_ID};

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rampart_core::config::{Balance, Config, Diagnostics, Pool, SourceFile, UpstreamProtocol};
use tokio::net::TcpStream;

use crate::body::ReqBody;
use crate::metrics::{Counter, Gauge, Metrics};

/// The per-thread slot of the caller among `n` (workers first, the control thread last).
pub fn thread_slot(n: usize) -> usize {
    let last = n.saturating_sub(1);
    crate::runtime::worker_index().map_or(last, |w| w.min(last))
}

/// Milliseconds since the process's first call, for cheap atomic deadlines.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Why connecting to an origin server failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection within the pool's connect timeout.
    #[error("connect timed out")]
    Timeout,
    /// The TCP connection failed.
    #[error("connect failed: {0}")]
    Io(#[source] std::io::Error),
    /// The TLS handshake with the origin failed.
    #[error("TLS handshake with origin failed: {0}")]
    Tls(#[source] std::io::Error),
}

/// A connection to an origin server.
pub enum UpstreamIo {
    /// Plain TCP.
    Plain(TokioIo<TcpStream>),
    /// TLS over TCP.
    Tls(
        Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>,
        bool,
    ),
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match self {
            UpstreamIo::Plain(_) => Connected::new(),
            UpstreamIo::Tls(_, h2) => {
                let c = Connected::new();
                if *h2 { c.negotiated_h2() } else { c }
            }
        }
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// Dials one origin server.
#[derive(Clone)]
pub struct Connector {
    host: Arc<str>,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
}

impl Connector {
    /// Connects (TCP, then TLS if configured) within the connect timeout.
    pub async fn dial_stream(&self) -> Result<h1::Stream, ConnectError> {
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((&*self.host, self.port)),
        )
        .await
        {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(h1::Stream::Plain(tcp)),
            Some((connector, name)) => match tokio::time::timeout(
                self.connect_timeout,
                connector.connect(name.clone(), tcp),
            )
            .await
            {
                Err(_) => Err(ConnectError::Timeout),
                Ok(Err(e)) => Err(ConnectError::Tls(e)),
                Ok(Ok(s)) => Ok(h1::Stream::Tls(Box::new(s))),
            },
        }
    }

    async fn dial(self) -> Result<UpstreamIo, ConnectError> {
        Ok(match self.dial_stream().await? {
            h1::Stream::Plain(tcp) => UpstreamIo::Plain(TokioIo::new(tcp)),
            h1::Stream::Tls(tls) => {
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                UpstreamIo::Tls(Box::new(TokioIo::new(*tls)), h2)
            }
        })
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().dial())
    }
}

/// The HTTP client of one server.
pub type UpstreamClient = Client<Connector, ReqBody>;

/// How a forwarded request ended, for ejection and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Ok,
    /// A 5xx response.
    ServerError,
    /// No connection could be made.
    ConnectError,
    /// No response head within the read timeout.
    Timeout,
    /// The connection failed after it was made.
    Error,
}

/// Runtime state of one origin server.
pub struct ServerRuntime {
    /// `host:port`.
    pub authority: String,
    /// The same, parsed once for request URIs.
    pub authority_parsed: http::uri::Authority,
    /// One HTTP client (keep-alive pool) per worker thread, plus one for the control
    /// thread (health checks), so a connection is only ever used by the thread whose
    /// runtime drives it: no cross-thread wake-ups per request.
    clients: Vec<UpstreamClient>,
    /// Idle HTTP/1.1 connections of the inline client, per thread like `clients`.
    pub h1_idle: Vec<h1::Idle>,
    /// Dials this server.
    pub connector: Connector,
    healthy: AtomicBool,
    ejected_until_ms: AtomicU64,
    connect_failures: AtomicU32,
    consecutive_5xx: AtomicU32,
    health_streak: AtomicU32,
    in_flight: AtomicU32,
    weight: u32,
    up: Arc<Gauge>,
    outcomes: [Arc<Counter>; 5],
    ejections: [Arc<Counter>; 2],
    checks: [Arc<Counter>; 2],
}

impl std::fmt::Debug for ServerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRuntime")
            .field("authority", &self.authority)
            .field("available", &self.available())
            .finish()
    }
}

impl ServerRuntime {
    /// The client for the calling thread.
    pub fn client(&self) -> &UpstreamClient {
        &self.clients[thread_slot(self.clients.len())]
    }

    /// Whether the server takes requests: healthy and not ejected. The clock is read only
    /// while an ejection is recorded; one found over is cleared, so a server that is not
    /// ejected costs no clock read per request.
    fn available(&self) -> bool {
        if !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if now_ms() < until {
            return false;
        }
        // (A concurrent new ejection wins: only this exact value is cleared.)
        let _ =
            self.ejected_until_ms
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    /// Requests in flight to this server.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn refresh_gauge(&self) {
        self.up.set(i64::from(self.available()));
    }
}

/// A server chosen for one request; counts it in flight until dropped.
pub struct Lease {
    pool: Arc<PoolRuntime>,
    index: usize,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.server().authority)
    }
}

impl Lease {
    /// The server's index in its pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The server.
    pub fn server(&self) -> &ServerRuntime {
        &self.pool.servers[self.index]
    }

    /// Records how the request ended (passive ejection, metrics).
    pub fn record(&self, outcome: Outcome) {
        self.pool.record(self.index, outcome);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.server().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runtime state of one origin pool.
pub struct PoolRuntime {
    /// The pool's configuration.
    pub spec: Pool,
    /// Owning tenant's id.
    pub tenant: Arc<str>,
    /// Servers, in configuration order.
    pub servers: Vec<ServerRuntime>,
    /// Weighted round-robin schedule of server indexes.
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PoolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRuntime")
            .field("id", &self.spec.id)
            .field("servers", &self.servers)
            .finish()
    }
}

impl PoolRuntime {
    /// Builds a pool's runtime (clients, metrics handles). Does not start health checks.
    pub fn build(
        src: &SourceFile,
        cfg: &Config,
        index: usize,
        metrics: &Metrics,
        workers: usize,
    ) -> Result<Self, Diagnostics> {
        let spec = cfg.pools[index].clone();
        let tenant: Arc<str> = cfg
            .tenants
            .get(spec.tenant)
            .map_or_else(|| Arc::from("-"), |t| t.id.clone());
        let tls_config = match &spec.tls {
            Some(t) => Some(
                crate::tls::client_config(src, t, spec.protocol)
                    .map_err(|d| Diagnostics::one(*d))?,
            ),
            None => None,
        };
        let mut servers = Vec::with_capacity(spec.servers.len());
        for s in &spec.servers {
            let tls = match (&tls_config, &spec.tls) {
                (Some(cc), Some(t)) => {
                    let name = t.sni.clone().unwrap_or_else(|| s.host.clone());
                    let server_name = rustls_pki_types::ServerName::try_from(name.clone())
                        .map_err(|_| {
                            Diagnostics::one(src.diagnostic(
                                s.span,
                                format!("`{name}` is not a valid TLS server name"),
                                Some("a DNS name or IP address".into()),
                                Some("set tls.sni to the name on the origin's certificate".into()),
                            ))
                        })?;
                    Some((tokio_rustls::TlsConnector::from(cc.clone()), server_name))
                }
                _ => None,
            };
            let connector = Connector {
                host: Arc::from(s.host.as_str()),
                port: s.port,
                tls,
                connect_timeout: spec.connect_timeout,
            };
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_idle_timeout(spec.idle_timeout)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .set_host(false);
            if spec.protocol == UpstreamProtocol::Http2 {
                builder.http2_only(true);
            }
            let clients = (0..=workers)
                .map(|_| builder.build(connector.clone()))
                .collect();
            let authority = s.authority();
            let labels = |extra: &str| -> [String; 4] {
                [
                    tenant.to_string(),
                    spec.id.to_string(),
                    authority.clone(),
                    extra.to_owned(),
                ]
            };
            let with = |fam: &crate::metrics::Family<Counter>, extra: &str| {
                let l = labels(extra);
                fam.with(&[&l[0], &l[1], &l[2], &l[3]])
            };
            let server = ServerRuntime {
                clients,
                h1_idle: (0..=workers).map(|_| h1::Idle::default()).collect(),
                connector: connector.clone(),
                authority_parsed: http::uri::Authority::try_from(authority.as_str()).map_err(
                    |_| {
                        Diagnostics::one(src.diagnostic(
                            s.span,
                            format!("`{authority}` is not a valid authority"),
                            None,
                            None,
                        ))
                    },
                )?,
                healthy: AtomicBool::new(true),
                ejected_until_ms: AtomicU64::new(0),
                connect_failures: AtomicU32::new(0),
                consecutive_5xx: AtomicU32::new(0),
                health_streak: AtomicU32::new(0),
                in_flight: AtomicU32::new(0),
                weight: s.weight,
                up: metrics.upstream_up.with(&[&tenant, &spec.id, &authority]),
                outcomes: [
                    with(&metrics.upstream_requests, "ok"),
                    with(&metrics.upstream_requests, "5xx"),
                    with(&metrics.upstream_requests, "connect_error"),
                    with(&metrics.upstream_requests, "timeout"),
                    with(&metrics.upstream_requests, "error"),
                ],
                ejections: [
                    with(&metrics.ejections, "connect_failures"),
                    with(&metrics.ejections, "5xx"),
                ],
                checks: [
                    with(&metrics.health_checks, "success"),
                    with(&metrics.health_checks, "failure"),
                ],
                authority,
            };
            server.refresh_gauge();
            servers.push(server);
        }
        let schedule = smooth_wrr(&servers.iter().map(|s| s.weight).collect::<Vec<_>>());
        Ok(PoolRuntime {
            spec,
            tenant,
            servers,
            schedule,
            next: AtomicUsize::new(0),
        })
    }

    /// Checks what [`PoolRuntime::build`] checks (CA bundles, server names), building
    /// nothing that lasts.
    pub fn check(
        src: &SourceFile,
        cfg: &Config,
        index: usize,
        metrics: &Metrics,
    ) -> Result<(), Diagnostics> {
        Self::build(src, cfg, index, metrics, 0).map(|_| ())
    }

    /// Whether `other` (from a new configuration) describes the same pool, so this
    /// runtime can be kept.
    pub fn same_as(&self, cfg: &Config, other: &Pool) -> bool {
        let tenant = cfg.tenants.get(other.tenant).map(|t| &t.id);
        let mut a = self.spec.clone();
        let mut b = other.clone();
        a.tenant = 0;
        b.tenant = 0;
        tenant == Some(&self.tenant) && a == b
    }

    /// Chooses a server for a request, skipping unavailable ones and `exclude`.
    pub fn pick(self: &Arc<Self>, exclude: Option<usize>) -> Option<Lease> {
        let n = self.servers.len();
        let index = match self.spec.balance {
            Balance::RoundRobin => {
                // Each skip of an unavailable server takes a fresh ticket, so its share
                // spreads over the others instead of falling on its schedule neighbour.
                let len = self.schedule.len();
                (0..len)
                    .map(|_| self.schedule[self.next.fetch_add(1, Ordering::Relaxed) % len])
                    .find(|&i| Some(i) != exclude && self.servers[i].available())?
            }
            Balance::LeastConn => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| Some(i) != exclude && self.servers[i].available())
                    // compare in_flight/weight without division: a/wa < b/wb ⇔ a·wb < b·wa
                    .min_by(|&a, &b| {
                        let (sa, sb) = (&self.servers[a], &self.servers[b]);
                        (u64::from(sa.in_flight()) * u64::from(sb.weight))
                            .cmp(&(u64::from(sb.in_flight()) * u64::from(sa.weight)))
                    })?
            }
        };
        self.servers[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            pool: self.clone(),
            index,
        })
    }

    fn record(&self, index: usize, outcome: Outcome) {
        let s = &self.servers[index];
        let passive = &self.spec.passive;
        match outcome {
            Outcome::Ok => {
                s.outcomes[0].inc();
                s.connect_failures.store(0, Ordering::Relaxed);
                s.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            Outcome::ServerError => {
                s.outcomes[1].inc();
                s.connect_failures.store(0, Ordering::Relaxed);
                let n = s.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                if passive.consecutive_5xx > 0 && n >= passive.consecutive_5xx {
                    self.eject(s, 1, "consecutive 5xx responses");
                }
            }
            Outcome::ConnectError => {
                s.outcomes[2].inc();
                let n = s.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if passive.connect_failures > 0 && n >= passive.connect_failures {
                    self.eject(s, 0, "consecutive connect failures");
                }
            }
            Outcome::Timeout => s.outcomes[3].inc(),
            Outcome::Error => s.outcomes[4].inc(),
        }
    }

    fn eject(&self, s: &ServerRuntime, cause: usize, why: &str) {
        let until = now_ms() + self.spec.passive.ejection_time.as_millis() as u64;
        let previous = s.ejected_until_ms.swap(until, Ordering::Relaxed);
        s.connect_failures.store(0, Ordering::Relaxed);
        s.consecutive_5xx.store(0, Ordering::Relaxed);
        if previous <= now_ms() {
            s.ejections[cause].inc();
            tracing::warn!(tenant = %self.tenant, pool = %self.spec.id, server = %s.authority, reason = why, ejection_ms = self.spec.passive.ejection_time.as_millis() as u64, "origin server ejected");
        }
        s.up.set(0);
        // bring the gauge back when the ejection ends
        let up = s.up.clone();
        let healthy = s.healthy.load(Ordering::Relaxed);
        let wait = self.spec.passive.ejection_time;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if healthy {
                up.set(1);
            }
        });
    }

    /// Starts active health checks, if configured; they stop when the pool is dropped.
    pub fn start_health_checks(self: &Arc<Self>) {
        let Some(hc) = self.spec.health_check.clone() else {
            return;
        };
        let weak: Weak<PoolRuntime> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                if !first {
                    tokio::time::sleep(hc.interval).await;
                }
                first = false;
                let Some(pool) = weak.upgrade() else { return };
                let checks = pool.servers.iter().enumerate().map(|(i, s)| {
                    let host = hc.host.clone().unwrap_or_else(|| s.authority.clone());
                    let uri = format!("http://{}{}", s.authority, hc.path);
                    let req = http::Request::get(uri)
                        .header(http::header::HOST, host)
                        .header(http::header::USER_AGENT, "rampart-health-check")
                        .body(ReqBody::empty());
                    let client = s.client().clone();
                    let timeout = hc.timeout;
                    let expect = hc.expect_status;
                    async move {
                        let ok = match req {
                            Ok(req) => {
                                match tokio::time::timeout(timeout, client.request(req)).await {
                                    Ok(Ok(resp)) => {
                                        let code = resp.status().as_u16();
                                        code >= expect.0 && code <= expect.1
                                    }
                                    _ => false,
                                }
                            }
                            Err(_) => false,
                        };
                        (i, ok)
                    }
                });
                let results = futures_join_all(checks.collect()).await;
                for (i, ok) in results {
                    pool.apply_check(i, ok, hc.healthy_threshold, hc.unhealthy_threshold);
                }
            }
        });
    }

    fn apply_check(&self, i: usize, ok: bool, rise: u32, fall: u32) {
        let s = &self.servers[i];
        s.checks[usize::from(!ok)].inc();
        let healthy = s.healthy.load(Ordering::Relaxed);
        if ok == healthy {
            s.health_streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = s.health_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if streak >= if ok { rise } else { fall } {
            s.healthy.store(ok, Ordering::Relaxed);
            s.health_streak.store(0, Ordering::Relaxed);
            if ok {
                tracing::info!(tenant = %self.tenant, pool = %self.spec.id, server = %s.authority, "origin server healthy");
            } else {
                tracing::warn!(tenant = %self.tenant, pool = %self.spec.id, server = %s.authority, "origin server unhealthy");
            }
            s.refresh_gauge();
        }
    }

    /// Whether server `i` is taking traffic now.
    pub fn is_available(&self, i: usize) -> bool {
        self.servers[i].available()
    }
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..futs.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => out[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Smooth weighted round robin (as in nginx): spreads heavier servers evenly.
fn smooth_wrr(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrr_schedule_is_smooth_and_weighted() {
        assert_eq!(smooth_wrr(&[1, 1]), vec![0, 1]);
        let s = smooth_wrr(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
    }
}
