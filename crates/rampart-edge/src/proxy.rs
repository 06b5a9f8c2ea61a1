//! The HTTP request path: pipeline, forwarding to an origin, response, log.
//!
//! [`serve`] runs every request on every HTTP listener, called by the edge's HTTP/1.1
//! server ([`crate::server`]) or, for HTTP/2, through hyper's service [`handle`]. It loads
//! the configuration generation in force *per request* (so a reload applies to keep-alive
//! connections too), runs the [`Pipeline`](rampart_core::pipeline::Pipeline), forwards to a
//! server of the route's pool, and streams the response back. Failures become error pages
//! (502 refused/reset, 503 no server available, 504 timeout) with the request id, a metric
//! and a log line; nothing on this path panics.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use rampart_core::config::UpstreamProtocol;
use rampart_core::pipeline::{
    ConnInfo, ExtendedConnect, Flow, HttpFingerprint, Probe, Reply, RequestView,
};

use crate::accesslog::Entry;
use crate::body::{BodyError, ClientBody, ReqBody, RespBody, find_body_error};
use crate::deadline::LazyTimer;
use crate::errorpage;
use crate::framing::ConnShared;
use crate::generation::Generation;
use crate::metrics::Histogram;
use crate::runtime::Shared;
use crate::upstream::{
    ConnectError, Lease, Outcome, Outgoing, PoolRuntime, X_FORWARDED_FOR, X_FORWARDED_PORT,
    X_FORWARDED_PROTO, X_REQUEST_ID,
};

/// What every request on one connection shares.
pub struct ConnCtx {
    /// The edge.
    pub edge: Arc<Shared>,
    /// The connection.
    pub conn: Arc<ConnInfo>,
    /// State shared with the connection's framing guard.
    pub shared: Arc<ConnShared>,
}

/// Records each stage's duration in its histogram.
///
/// The clock readings it takes double as the request's notion of "now": a chain that
/// starts at a reading the caller already has (`starting_at`) and whose last mark is
/// reused afterwards (`last`) costs no clock reads beyond one per stage.
struct StageTimer<'a> {
    hist: &'a [Arc<Histogram>],
    first: Option<Instant>,
    last: Option<Instant>,
}

impl<'a> StageTimer<'a> {
    fn new(hist: &'a [Arc<Histogram>]) -> Self {
        StageTimer {
            hist,
            first: None,
            last: None,
        }
    }

    /// A timer whose first stage starts at `at` (a reading just taken).
    fn starting_at(hist: &'a [Arc<Histogram>], at: Instant) -> Self {
        StageTimer {
            hist,
            first: Some(at),
            last: None,
        }
    }
}

impl Probe for StageTimer<'_> {
    type Mark = Instant;
    #[inline]
    fn start(&mut self) -> Instant {
        self.first.take().unwrap_or_else(Instant::now)
    }
    #[inline]
    fn end(&mut self, index: usize, mark: Instant) -> Instant {
        let now = Instant::now();
        if let Some(h) = self.hist.get(index) {
            h.observe(now.saturating_duration_since(mark));
        }
        self.last = Some(now);
        now
    }
}

/// Decrements the connection's in-flight count when the request is over.
struct InFlight(Arc<ConnShared>);

impl InFlight {
    fn new(shared: &Arc<ConnShared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What metrics need once the response is finished.
struct Done {
    g: Arc<Generation>,
    site: Option<usize>,
    route: Option<usize>,
    start: Instant,
    status: u16,
    /// The request id, as the field value sent to the origin and the client.
    request_id: HeaderValue,
    /// Present only when the access log is on: the request path pays for nothing else.
    log: Option<Box<LogFields>>,
    _in_flight: InFlight,
}

/// What the access log needs.
struct LogFields {
    conn: Arc<ConnInfo>,
    start_wall: SystemTime,
    client_ip: IpAddr,
    method: Method,
    version: Version,
    uri: http::Uri,
    host: String,
    user_agent: Option<HeaderValue>,
    referrer: Option<HeaderValue>,
    upstream: Option<String>,
    reason: Option<String>,
    error: Option<String>,
}

impl Done {
    /// The request id as text (ids are visible ASCII: generated, or checked when taken
    /// from a trusted proxy).
    fn rid(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    fn set_upstream(&mut self, authority: &str) {
        if let Some(l) = self.log.as_mut() {
            l.upstream = Some(authority.to_owned());
        }
    }

    fn set_error(&mut self, e: impl FnOnce() -> String) {
        if let Some(l) = self.log.as_mut() {
            l.error = Some(e());
        }
    }

    fn finish(self, bytes: u64, ok: bool) {
        let elapsed = self.start.elapsed();
        let g = &self.g;
        if let Some(m) = self.site.and_then(|s| g.site_metrics.get(s)) {
            m.record(self.status, elapsed);
        }
        let Some(l) = &self.log else { return };
        let cfg = &g.config;
        let site = self.site.and_then(|s| cfg.sites.get(s));
        let tenant = site.and_then(|s| cfg.tenants.get(s.tenant)).map(|t| &*t.id);
        let route = site.and_then(|s| self.route.and_then(|r| s.routes.get(r)));
        let pool = route.and_then(|r| cfg.pools.get(r.pool)).map(|p| &*p.id);
        let error = if ok {
            l.error.as_deref()
        } else {
            Some(l.error.as_deref().unwrap_or("response aborted"))
        };
        g.access_log.write(&Entry {
            start: Some(l.start_wall),
            duration: elapsed,
            tenant,
            site: site.map(|s| &*s.id),
            route: route.map(|r| r.prefix.as_str()),
            listener: &l.conn.listener,
            request_id: self.rid(),
            method: Some(l.method.as_str()),
            version: Some(version_str(l.version)),
            domain: (!l.host.is_empty()).then_some(l.host.as_str()),
            path: Some(l.uri.path()),
            query: l.uri.query(),
            scheme: if l.conn.tls { "https" } else { "http" },
            source: Some(l.conn.peer),
            client_ip: Some(l.client_ip),
            destination_port: l.conn.local.port(),
            user_agent: l.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            referrer: l.referrer.as_ref().and_then(|v| v.to_str().ok()),
            status: self.status,
            body_bytes: bytes,
            tls: l.conn.tls,
            sni: l.conn.sni.as_deref(),
            pool,
            upstream: l.upstream.as_deref(),
            reason: l.reason.as_deref(),
            error,
        });
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "?",
    }
}

/// hyper's service function (HTTP/2 connections).
pub async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let mut req = req;
    if req.extensions().get::<hyper::ext::Protocol>().is_some() {
        let on = ClientUpgrade::hyper(hyper::upgrade::on(&mut req));
        req.extensions_mut().insert(on);
    }
    // (hyper serves HTTP/2 only: the fingerprint is the connection's.)
    let fingerprint = ctx
        .shared
        .h2_fingerprint
        .get()
        .map_or(HttpFingerprint::None, |f| HttpFingerprint::H2(f.clone()));
    Ok(serve(&ctx, req.map(ClientBody::Hyper), fingerprint, None).await)
}

/// Where the client's connection comes from after a `101` (or an accepted extended
/// CONNECT): a request extension set by the server that read the request.
#[derive(Clone)]
pub enum ClientUpgrade {
    /// hyper's HTTP/2 server.
    Hyper(Arc<std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>>),
    /// The edge's own HTTP/1 server.
    Own(crate::server::UpgradeSlot),
}

/// A client stream after an upgrade.
pub trait UpgradedIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> UpgradedIo for T {}

impl ClientUpgrade {
    #[allow(clippy::self_named_constructors)]
    fn hyper(on: hyper::upgrade::OnUpgrade) -> Self {
        ClientUpgrade::Hyper(Arc::new(std::sync::Mutex::new(Some(on))))
    }

    /// Waits for the upgraded client stream.
    async fn wait(self) -> Result<Box<dyn UpgradedIo>, ()> {
        match self {
            ClientUpgrade::Hyper(on) => {
                let on = on
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .ok_or(())?;
                let up = on.await.map_err(|_| ())?;
                Ok(Box::new(hyper_util::rt::TokioIo::new(up)))
            }
            ClientUpgrade::Own(slot) => Ok(Box::new(slot.wait().await?)),
        }
    }
}

/// Serves one request: pipeline, origin, response. Called by the HTTP/1 server
/// ([`crate::server`]) and by hyper's HTTP/2 server ([`handle`]).
///
/// `origin_timer` is the client connection's timer for origin answers when its requests
/// come one at a time (HTTP/1); `None` (HTTP/2 streams) times each request on its own.
pub async fn serve(
    ctx: &ConnCtx,
    mut req: Request<ClientBody>,
    fingerprint: HttpFingerprint,
    mut origin_timer: Option<&mut Option<LazyTimer>>,
) -> Response<RespBody> {
    let in_flight = InFlight::new(&ctx.shared);
    let g = ctx.edge.current();
    let listener = g.listener_index.get(&ctx.conn.listener).copied();

    let extended_connect = req.extensions().get::<hyper::ext::Protocol>().cloned();
    let upgrade_slot = req.extensions_mut().remove::<ClientUpgrade>();
    // (A request the server found no upgrade in carries no slot: no field lookups then.)
    let client_upgrade = upgrade_slot.filter(|_| extended_connect.is_some() || wants_upgrade(&req));
    let (mut head, body) = req.into_parts();
    if extended_connect.is_some() {
        head.extensions.insert(ExtendedConnect);
    }
    let accept = head.headers.get(header::ACCEPT).cloned();

    let mut view = RequestView::new(head, ctx.conn.clone(), listener.unwrap_or(usize::MAX));
    view.http_fingerprint = fingerprint;
    let log = g.access_log.enabled().then(|| {
        Box::new(LogFields {
            conn: ctx.conn.clone(),
            start_wall: SystemTime::now(),
            client_ip: view.client_ip,
            method: view.head.method.clone(),
            version: view.head.version,
            uri: view.head.uri.clone(),
            host: String::new(),
            user_agent: view.head.headers.get(header::USER_AGENT).cloned(),
            referrer: view.head.headers.get(header::REFERER).cloned(),
            upstream: None,
            reason: None,
            error: None,
        })
    });
    // The request's clock starts with its first stage (one reading for both).
    let start = Instant::now();
    let mut done = Done {
        g: g.clone(),
        site: None,
        route: None,
        start,
        status: 0,
        request_id: HeaderValue::from_static(""),
        log,
        _in_flight: in_flight,
    };

    let mut timer = StageTimer::starting_at(&g.stage_hist, start);
    let flow = g.pipeline.on_request(&g.config, &mut view, &mut timer);
    // "Now" for what follows until the next wait: the last stage's end (microseconds old).
    let mut now = timer.last.unwrap_or(start);
    done.site = view.site;
    done.route = view.route;
    done.request_id = request_id_value(&view.request_id);
    if let Some(l) = done.log.as_mut() {
        l.client_ip = view.client_ip;
        l.host.clone_from(&view.host);
    }
    let flow = match flow {
        Flow::Continue => crate::policy::resolve_remote(&mut view, &g.config).await,
        respond => respond,
    };
    if let Flow::Respond(reply) = flow {
        let reply = match view.state.take::<crate::challenge::Pending>() {
            Some(_) => challenge_page(ctx, &g, &mut view, body)
                .await
                .unwrap_or(reply),
            None => reply,
        };
        return edge_reply(&g, done, accept.as_ref(), reply);
    }
    let (Some(site), Some(route)) = (view.site, view.route) else {
        return edge_reply(
            &g,
            done,
            accept.as_ref(),
            Reply::new(StatusCode::NOT_FOUND, "no route"),
        );
    };
    let pool_idx = g.config.sites[site].routes[route].pool;
    let Some(pool) = g.pools.get(pool_idx).cloned() else {
        return edge_reply(
            &g,
            done,
            accept.as_ref(),
            Reply::new(StatusCode::SERVICE_UNAVAILABLE, "pool not available"),
        );
    };
    let limits = &g.config.listeners[view.listener].limits;

    // Content-Length beyond the limit: refuse before reading anything.
    if let Some(max) = limits.max_body_bytes {
        if content_length(&view.head.headers).is_some_and(|len| len > max) {
            return edge_reply(
                &g,
                done,
                accept.as_ref(),
                Reply::closing(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body larger than allowed",
                ),
            );
        }
    }
    let mut body = ReqBody::new(
        body,
        limits.max_body_bytes,
        // HTTP/1 bodies are timed by the framing guard; HTTP/2 bodies (whose frames the
        // guard passes through) are timed here.
        if view.head.version < Version::HTTP_2 {
            None
        } else {
            Some(limits.body_timeout)
        },
    );

    // Body prefix for stages that inspect bodies.
    let want = g.pipeline.body_prefix_wanted(&g.config, &view);
    if want > 0 {
        match body.read_prefix(want).await {
            Ok((prefix, complete)) => {
                // Frames may carry more than asked for: stages see exactly the bound.
                let seen = &prefix[..prefix.len().min(want)];
                let complete = complete && seen.len() == prefix.len();
                if let Flow::Respond(reply) = g
                    .pipeline
                    .on_request_body(&g.config, &mut view, seen, complete, &mut timer)
                {
                    // A challenge after the body phase: the page carries the body when
                    // the prefix read is all of it.
                    let reply = match view.state.take::<crate::challenge::Pending>() {
                        Some(_) => g
                            .challenges
                            .page(&view, complete.then_some(seen), None)
                            .unwrap_or(reply),
                        None => reply,
                    };
                    return edge_reply(&g, done, accept.as_ref(), reply);
                }
                // Reading the prefix waited for the client.
                now = timer.last.unwrap_or_else(Instant::now);
            }
            Err(e) => {
                let reply = client_body_reply(ctx, &*e);
                return edge_reply(&g, done, accept.as_ref(), reply);
            }
        }
    }

    let upgrading = client_upgrade.is_some();
    // The origin's response fields may travel as it sent them (no field map) when the
    // client is on HTTP/1 (`origin_timer` is that connection's), nothing reads response
    // fields, and no protocol switch is in play.
    let raw_ok = origin_timer.is_some()
        && !g.pipeline.inspects_response_of(&g.config, &view)
        && !upgrading
        && extended_connect.is_none();
    let mut forward = match build_upstream_head(
        &mut view,
        &pool,
        extended_connect.is_some(),
        upgrading,
        &done.request_id,
    ) {
        Ok(h) => h,
        Err(reason) => {
            return edge_reply(
                &g,
                done,
                accept.as_ref(),
                Reply::closing(StatusCode::BAD_REQUEST, reason),
            );
        }
    };

    // Send, retrying a body-less idempotent request once on another server if the first
    // could not even be connected to.
    let retryable = http_body::Body::is_end_stream(&body)
        && matches!(
            view.head.method,
            Method::GET | Method::HEAD | Method::OPTIONS
        )
        && pool.servers.len() > 1
        && !upgrading;
    let mut exclude = None;
    let mut attempt = 0;
    let mut body = Some(body);
    let (resp, lease) = loop {
        attempt += 1;
        if attempt > 1 {
            // The first attempt waited for a connection.
            now = Instant::now();
        }
        let Some(lease) = pool.pick(exclude) else {
            return edge_reply(
                &g,
                done,
                accept.as_ref(),
                Reply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no origin server available",
                ),
            );
        };
        done.set_upstream(&lease.server().authority);
        let server = lease.index();
        let this_body = body.take().unwrap_or_else(ReqBody::empty);
        let sent = {
            // Pinned where it is made: the (large) future is not moved again below.
            let send = std::pin::pin!(async {
                match pool.spec.protocol {
                    UpstreamProtocol::Http1 => {
                        crate::upstream::h1::send(&pool, server, &forward, this_body, now, raw_ok)
                            .await
                            .map(Answer::H1)
                            .map_err(|e| classify_h1(&e))
                    }
                    UpstreamProtocol::Http2 => {
                        // hyper takes the head: keep a copy only while a retry is possible.
                        let this = if retryable && attempt < 2 {
                            forward.clone()
                        } else {
                            std::mem::take(&mut forward)
                        };
                        lease
                            .server()
                            .client()
                            .request(this.into_request(&pool, &lease, this_body))
                            .await
                            .map(Answer::Hyper)
                            .map_err(|e| classify_hyper(&e))
                    }
                }
            });
            // The origin must answer within its read timeout. On an HTTP/1 client connection
            // (requests one at a time) the connection's lazy timer is re-armed instead of a
            // timer being registered and cancelled per request.
            let wait = pool.spec.read_timeout;
            match origin_timer.as_deref_mut() {
                Some(Some(t)) => {
                    t.arm_at(now, wait);
                    t.run(send).await.map_err(|_| ())
                }
                Some(slot) => slot
                    .insert(LazyTimer::new_at(now, wait))
                    .run(send)
                    .await
                    .map_err(|_| ()),
                None => tokio::time::timeout(wait, send).await.map_err(|_| ()),
            }
        };
        match sent {
            Ok(Ok(resp)) => break (resp, lease),
            Err(_) => {
                lease.record(Outcome::Timeout);
                done.set_error(|| "origin response timed out".into());
                tracing::warn!(tenant = %pool.tenant, pool = %pool.spec.id, server = %lease.server().authority, request_id = %done.rid(), "origin response timed out");
                return edge_reply(
                    &g,
                    done,
                    accept.as_ref(),
                    Reply::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the origin server did not answer in time",
                    ),
                );
            }
            Ok(Err(f)) => {
                if let Some((timed_out, what)) = f.connect {
                    lease.record(Outcome::ConnectError);
                    tracing::warn!(tenant = %pool.tenant, pool = %pool.spec.id, server = %lease.server().authority, request_id = %done.rid(), error = %what, "origin connect failed");
                    done.set_error(|| what);
                    if retryable && attempt < 2 {
                        exclude = Some(server);
                        continue;
                    }
                    let (status, reason) = if timed_out {
                        (
                            StatusCode::GATEWAY_TIMEOUT,
                            "the origin server did not accept the connection in time",
                        )
                    } else {
                        (
                            StatusCode::BAD_GATEWAY,
                            "the origin server could not be reached",
                        )
                    };
                    return edge_reply(&g, done, accept.as_ref(), Reply::new(status, reason));
                }
                if let Some(be) = f.body {
                    done.set_error(|| be.to_string());
                    let reply = match be {
                        BodyError::TooLarge => Reply::closing(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "request body larger than allowed",
                        ),
                        BodyError::Timeout => Reply::closing(
                            StatusCode::REQUEST_TIMEOUT,
                            "request body not received in time",
                        ),
                    };
                    return edge_reply(&g, done, accept.as_ref(), reply);
                }
                if let Some(v) = ctx.shared.violation() {
                    done.set_error(|| v.rejection.reason.into());
                    return edge_reply(
                        &g,
                        done,
                        accept.as_ref(),
                        Reply::closing(v.rejection.status, v.rejection.reason),
                    );
                }
                if f.client_body {
                    done.set_error(|| f.detail.clone());
                    return edge_reply(
                        &g,
                        done,
                        accept.as_ref(),
                        Reply::closing(StatusCode::BAD_REQUEST, "request body could not be read"),
                    );
                }
                lease.record(Outcome::Error);
                tracing::warn!(tenant = %pool.tenant, pool = %pool.spec.id, server = %lease.server().authority, request_id = %done.rid(), error = %f.detail, "origin request failed");
                done.set_error(|| f.detail);
                return edge_reply(
                    &g,
                    done,
                    accept.as_ref(),
                    Reply::new(
                        StatusCode::BAD_GATEWAY,
                        "the origin server failed to answer",
                    ),
                );
            }
        }
    };
    let (mut rparts, mut rbody) = match resp {
        Answer::Hyper(r) => {
            let (p, b) = r.into_parts();
            (p, OriginBody::Hyper(b))
        }
        Answer::H1(x) => (x.head, OriginBody::H1(x.body, x.upgraded, x.raw)),
    };
    lease.record(if rparts.status.is_server_error() {
        Outcome::ServerError
    } else {
        Outcome::Ok
    });
    let switching = rparts.status == StatusCode::SWITCHING_PROTOCOLS;
    if let OriginBody::H1(_, _, Some(raw)) = &mut rbody {
        // Hop-by-hop fields were dropped (or the head was not kept raw) when it was read.
        raw.request_id = Some(done.request_id.clone());
    } else {
        strip_hop_by_hop(
            &mut rparts.headers,
            switching && upgrading && extended_connect.is_none(),
        );
        rparts
            .headers
            .insert(X_REQUEST_ID.clone(), done.request_id.clone());
    }
    g.bots.record_response(&view, rparts.status.as_u16());
    if let Flow::Respond(reply) = g.pipeline.on_response(
        &g.config,
        &mut view,
        &mut rparts,
        &mut StageTimer::new(&g.stage_hist),
    ) {
        return edge_reply(&g, done, accept.as_ref(), reply);
    }

    if let Some(client_upgrade) = client_upgrade {
        if switching {
            match rbody {
                OriginBody::H1(_, Some(conn), _) => {
                    spawn_tunnel_h1(ctx, client_upgrade, conn, lease)
                }
                OriginBody::Hyper(b) => spawn_tunnel(
                    ctx,
                    client_upgrade,
                    Response::from_parts(rparts.clone(), b),
                    lease,
                ),
                OriginBody::H1(_, None, _) => {}
            }
            if extended_connect.is_some() {
                // RFC 8441: the HTTP/2 answer to an accepted extended CONNECT is 200.
                rparts.status = StatusCode::OK;
                rparts.headers.remove(header::UPGRADE);
                rparts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            }
            done.status = rparts.status.as_u16();
            let resp = Response::from_parts(rparts, RespBody::page(bytes::Bytes::new()));
            return finish(resp, done);
        }
        // The switch was refused: bytes after this request were not checked by the framing
        // guard (it passed them through expecting a tunnel), so the connection ends here.
        rparts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    done.status = rparts.status.as_u16();
    let mut body = match rbody {
        OriginBody::Hyper(b) => RespBody::origin(b, pool.spec.read_timeout),
        OriginBody::H1(b, _, raw) => RespBody::origin_h1(b, pool.spec.read_timeout, raw),
    };
    // Response-body prefix for stages that inspect it (the WAF's phase 4): read before
    // the head goes out, then sent first.
    let want = g
        .pipeline
        .response_body_prefix_wanted(&g.config, &view, &rparts);
    if want > 0 {
        match body.read_prefix(want).await {
            Ok((prefix, complete)) => {
                let seen = &prefix[..prefix.len().min(want)];
                let complete = complete && seen.len() == prefix.len();
                if let Flow::Respond(reply) = g.pipeline.on_response_body(
                    &g.config,
                    &mut view,
                    seen,
                    complete,
                    &mut StageTimer::new(&g.stage_hist),
                ) {
                    drop(body);
                    return edge_reply(&g, done, accept.as_ref(), reply);
                }
            }
            Err(e) => {
                let detail = error_chain(&*e);
                tracing::warn!(tenant = %pool.tenant, pool = %pool.spec.id, request_id = %done.rid(), error = %detail, "origin response body failed");
                done.set_error(|| detail);
                return edge_reply(
                    &g,
                    done,
                    accept.as_ref(),
                    Reply::new(
                        StatusCode::BAD_GATEWAY,
                        "the origin server failed to answer",
                    ),
                );
            }
        }
    }
    drop(lease);
    // (The completion hook goes on before the response is assembled: no second move.)
    Response::from_parts(rparts, finishing(body, done))
}

/// The origin's answer, from either client.
// One of each per request, on the request's future: boxing the larger variant would
// cost an allocation per request to save bytes nobody copies.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Hyper(Response<Incoming>),
    H1(crate::upstream::h1::Exchange),
}

#[allow(clippy::large_enum_variant)] // as `Answer`
enum OriginBody {
    Hyper(Incoming),
    H1(
        crate::upstream::h1::H1Body,
        Option<crate::upstream::h1::Conn>,
        Option<Box<crate::upstream::h1::RawFields>>,
    ),
}

/// A failed exchange with the origin, whichever client made it.
struct Failure {
    /// The connection could not be made: (it timed out, description).
    connect: Option<(bool, String)>,
    /// The client's body broke a limit.
    body: Option<BodyError>,
    /// The client's body could not be read for another reason.
    client_body: bool,
    detail: String,
}

fn classify_hyper(e: &hyper_util::client::legacy::Error) -> Failure {
    Failure {
        connect: find_connect_error(e)
            .map(|ce| (matches!(ce, ConnectError::Timeout), ce.to_string())),
        body: find_body_error(e),
        client_body: crate::body::is_client_body_error(e),
        detail: error_chain(e),
    }
}

fn classify_h1(e: &crate::upstream::h1::SendError) -> Failure {
    use crate::upstream::h1::SendError;
    match e {
        SendError::Connect(ce) => Failure {
            connect: Some((matches!(ce, ConnectError::Timeout), ce.to_string())),
            body: None,
            client_body: false,
            detail: ce.to_string(),
        },
        SendError::Body(b) => {
            let body = find_body_error(&**b);
            Failure {
                connect: None,
                body,
                client_body: body.is_none(),
                detail: error_chain(&**b),
            }
        }
        other => Failure {
            connect: None,
            body: None,
            client_body: false,
            detail: error_chain(other),
        },
    }
}

fn finish(resp: Response<RespBody>, done: Done) -> Response<RespBody> {
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, finishing(body, done))
}

/// `body`, which records the request's metrics (and access log line) when it ends.
fn finishing(body: RespBody, done: Done) -> RespBody {
    body.on_done(Box::new(move |bytes, ok| done.finish(bytes, ok)))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// Normalises the client's head into what the origin receives.
fn build_upstream_head(
    view: &mut RequestView,
    pool: &PoolRuntime,
    extended_connect: bool,
    upgrading: bool,
    request_id: &HeaderValue,
) -> Result<Outgoing, &'static str> {
    // The headers move to the upstream request; see `RequestView::head`.
    let mut headers = std::mem::take(&mut view.head.headers);
    let head = &view.head;
    // X-Forwarded-For: the trusted chain plus the peer; from anyone else only the peer.
    let from_trusted = view.from_trusted_proxy;
    let peer = &view.conn.peer_ip;
    let prior = if from_trusted {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!prior.is_empty()).then(|| prior.join(", "))
    } else {
        None
    };
    let xff = match prior {
        Some(p) => {
            HeaderValue::from_str(&format!("{p}, {peer}")).map_err(|_| "invalid X-Forwarded-For")?
        }
        None => view.conn.peer_ip_value.clone(),
    };
    strip_hop_by_hop(&mut headers, upgrading && !extended_connect);
    // Host: the authority the client addressed (HTTP/2 `:authority` or Host).
    let host = match head.uri.authority() {
        Some(a) => Some(HeaderValue::from_str(a.as_str()).map_err(|_| "invalid authority")?),
        None => headers.get(header::HOST).cloned(),
    };
    // The edge's own fields travel beside the map (see `Outgoing`).
    let proto = (!(from_trusted && headers.contains_key(&X_FORWARDED_PROTO)))
        .then_some(if view.conn.tls { "https" } else { "http" });
    let port = (!(from_trusted && headers.contains_key(&X_FORWARDED_PORT)))
        .then(|| view.conn.local.port());

    let mut method = head.method.clone();
    if extended_connect {
        // RFC 8441 → RFC 6455: the origin gets a classic HTTP/1.1 WebSocket upgrade.
        if pool.spec.protocol != UpstreamProtocol::Http1 {
            return Err("extended CONNECT needs an HTTP/1.1 origin pool");
        }
        method = Method::GET;
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_str(&crate::runtime::websocket_key()).map_err(|_| "key")?,
        );
        if !headers.contains_key(header::SEC_WEBSOCKET_VERSION) {
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
    }
    let path_and_query = match head.uri.path_and_query() {
        Some(pq) if pq.as_str() != "*" && !pq.as_str().is_empty() => pq.clone(),
        _ => http::uri::PathAndQuery::from_static("/"),
    };
    Ok(Outgoing {
        method,
        path_and_query,
        host,
        headers,
        forwarded_for: xff,
        proto,
        port,
        request_id: request_id.clone(),
    })
}

/// Removes hop-by-hop fields (RFC 9110 §7.6.1), including those the Connection field
/// names. `Trailer` is end-to-end and stays: it announces the trailer fields. With `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of these: one pass over the names instead of a lookup
    // per field.
    // (Comparing names, not their text: a standard name compares as one byte.)
    const HOP_BY_HOP: [HeaderName; 8] = [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("http2-settings"),
    ];
    let any = h.keys().any(|n| HOP_BY_HOP.iter().any(|x| n == x));
    if !any {
        if keep_upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .filter(|n| n != X_REQUEST_ID && n != header::HOST)
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("http2-settings"),
    ] {
        h.remove(n);
    }
    if h.get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        h.remove(header::TE);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
}

fn find_connect_error(e: &hyper_util::client::legacy::Error) -> Option<&ConnectError> {
    let mut err: &(dyn std::error::Error + 'static) = e;
    loop {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return Some(c);
        }
        err = err.source()?;
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn client_body_reply(ctx: &ConnCtx, e: &(dyn std::error::Error + 'static)) -> Reply {
    match find_body_error(e) {
        Some(BodyError::TooLarge) => Reply::closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body larger than allowed",
        ),
        Some(BodyError::Timeout) => Reply::closing(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        ),
        None => match ctx.shared.violation() {
            Some(v) => Reply::closing(v.rejection.status, v.rejection.reason),
            None => Reply::closing(StatusCode::BAD_REQUEST, "request body could not be read"),
        },
    }
}

/// The request id the pipeline settled on as a field value (a fresh one if it has none).
fn request_id_value(id: &str) -> HeaderValue {
    if !id.is_empty() {
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(id.as_bytes()))
        {
            return v;
        }
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(crate::runtime::new_request_id()))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The challenge page for a request, carrying its body to send again when it has one of
/// at most [`crate::challenge::MAX_REPLAY_BODY`] bytes (read here, within the body
/// timeout).
async fn challenge_page(
    ctx: &ConnCtx,
    g: &Generation,
    // (`&mut`: a shared reference to the view is not `Send` across the read.)
    view: &mut RequestView,
    body: ClientBody,
) -> Option<Reply> {
    let max = crate::challenge::MAX_REPLAY_BODY;
    let limits = &g.config.listeners.get(view.listener)?.limits;
    // Only a prefix is read: a body longer than `max` is not carried (the page says it
    // may have to be sent again), and is not forwarded either.
    let mut body = ReqBody::new(
        body,
        None,
        (view.head.version >= Version::HTTP_2).then_some(limits.body_timeout),
    );
    let carried = if http_body::Body::is_end_stream(&body) {
        None
    } else {
        match body.read_prefix(max + 1).await {
            Ok((bytes, _)) => Some(bytes),
            Err(e) => {
                tracing::debug!(listener = %ctx.conn.listener, error = %e, "challenged request's body not read");
                None
            }
        }
    };
    g.challenges.page(&*view, carried.as_deref(), None)
}

/// An error page from the edge itself.
fn edge_reply(
    g: &Generation,
    mut done: Done,
    accept: Option<&HeaderValue>,
    reply: Reply,
) -> Response<RespBody> {
    let mut resp = match reply.page {
        Some(own) => {
            let (headers, body) = *own;
            let mut resp = Response::new(RespBody::page(body));
            *resp.headers_mut() = headers;
            resp.headers_mut()
                .insert("x-request-id", done.request_id.clone());
            resp
        }
        None => {
            let (ctype, page) = errorpage::render(
                reply.status,
                &reply.reason,
                done.rid(),
                errorpage::negotiate(accept),
            );
            let mut resp = Response::new(RespBody::page(page));
            errorpage::headers(resp.headers_mut(), ctype, done.rid());
            resp
        }
    };
    *resp.status_mut() = reply.status;
    if let Some(location) = reply.location {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    if reply.close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let site = done.site.and_then(|s| g.config.sites.get(s));
    let tenant = site
        .and_then(|s| g.config.tenants.get(s.tenant))
        .map_or("-", |t| &t.id);
    let site_id = site.map_or("-", |s| &s.id);
    g.metrics
        .edge_responses
        .with(&[tenant, site_id, reply.status.as_str(), &reply.reason])
        .inc();
    if reply.status.is_server_error() {
        tracing::warn!(tenant, site = site_id, request_id = %done.rid(), status = reply.status.as_u16(), reason = %reply.reason, "edge error response");
    } else {
        tracing::debug!(tenant, site = site_id, request_id = %done.rid(), status = reply.status.as_u16(), reason = %reply.reason, "edge response");
    }
    done.status = reply.status.as_u16();
    if let Some(l) = done.log.as_mut() {
        l.reason = Some(reply.reason.into_owned());
    }
    finish(resp, done)
}

/// Joins the client's upgraded connection and the inline client's origin connection
/// after a 101; bytes the origin already sent after its head go first.
fn spawn_tunnel_h1(
    ctx: &ConnCtx,
    client: ClientUpgrade,
    conn: crate::upstream::h1::Conn,
    lease: Lease,
) {
    let tracker = ctx.edge.tracker();
    let listener = ctx.conn.listener.clone();
    tokio::spawn(async move {
        let _guard = tracker;
        let _lease = lease;
        let Ok(mut c) = client.wait().await else {
            tracing::debug!(listener = %listener, "client upgrade failed");
            return;
        };
        let mut origin = conn.io;
        if !conn.buf.is_empty() {
            use tokio::io::AsyncWriteExt;
            if c.write_all(&conn.buf).await.is_err() {
                return;
            }
        }
        match tokio::io::copy_bidirectional(&mut c, &mut origin).await {
            Ok((up, down)) => tracing::debug!(listener = %listener, up, down, "tunnel closed"),
            Err(e) => tracing::debug!(listener = %listener, error = %e, "tunnel ended with error"),
        }
    });
}

/// Joins the client's and the origin's upgraded connections after a 101.
fn spawn_tunnel(
    ctx: &ConnCtx,
    client: ClientUpgrade,
    mut origin: Response<Incoming>,
    lease: Lease,
) {
    let origin_upgrade = hyper::upgrade::on(&mut origin);
    let tracker = ctx.edge.tracker();
    let listener = ctx.conn.listener.clone();
    tokio::spawn(async move {
        let _guard = tracker;
        let _lease = lease;
        match tokio::join!(client.wait(), origin_upgrade) {
            (Ok(mut c), Ok(o)) => {
                let mut o = hyper_util::rt::TokioIo::new(o);
                match tokio::io::copy_bidirectional(&mut c, &mut o).await {
                    Ok((up, down)) => {
                        tracing::debug!(listener = %listener, up, down, "tunnel closed")
                    }
                    Err(e) => {
                        tracing::debug!(listener = %listener, error = %e, "tunnel ended with error")
                    }
                }
            }
            (c, o) => {
                tracing::debug!(listener = %listener, client = c.is_ok(), origin = o.is_ok(), "upgrade failed")
            }
        }
    });
}
