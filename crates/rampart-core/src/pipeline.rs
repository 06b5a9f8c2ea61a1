//! The request pipeline: an explicit chain of [`Stage`]s over a [`RequestView`].
//!
//! The edge builds a view from a parsed request head, then runs the stages in order.
//! Each stage inspects or amends the view and returns a [`Flow`]: continue, or respond
//! now with a [`Reply`] (an error page, later a block page). Stages are plain values
//! with no I/O, so each is unit-tested without sockets; the edge times every call and
//! records it per stage.
//!
//! Order in the edge: [`HeadCheck`] (strict HTTP normalisation) → [`Identity`] (client
//! IP, request id) → [`Resolve`] (site and route) → the inspection stages of later work
//! (ACL, rate limits, bot, WAF, custom rules) → forward → response stages → log.
//!
//! A stage that wants to see the request body says so with [`Stage::body_prefix_wanted`];
//! the edge then reads at most that many bytes before forwarding and calls
//! [`Stage::on_request_body`]. The prefix is forwarded first, then the rest streams.

mod head;
mod identity;
mod resolve;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::StatusCode;

pub use head::HeadCheck;
pub use identity::Identity;
pub use resolve::Resolve;

use crate::config::{Config, SiteIdx, TenantIdx};

/// What the connection told us, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client as seen by the edge: the TCP peer, or the source a trusted PROXY
    /// protocol header named.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// Name of the listener that accepted the connection.
    pub listener: Arc<str>,
    /// TLS was terminated on this connection.
    pub tls: bool,
    /// SNI the client sent, lower case.
    pub sni: Option<Arc<str>>,
    /// `peer`'s address as text (IPv4-mapped IPv6 shown as IPv4), formatted once per
    /// connection for `X-Forwarded-For`.
    pub peer_ip: Arc<str>,
    /// `peer_ip` as a header field value (the `X-Forwarded-For` of a client that is not a
    /// trusted proxy), shared by every request of the connection.
    pub peer_ip_value: http::HeaderValue,
    /// The JA4 fingerprint of the client's TLS ClientHello, on TLS connections.
    pub tls_fingerprint: Option<Arc<str>>,
}

impl ConnInfo {
    /// Connection facts; `peer_ip` is derived from `peer`.
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        listener: Arc<str>,
        tls: bool,
        sni: Option<Arc<str>>,
    ) -> Self {
        let text = crate::net::canonical(peer.ip()).to_string();
        let peer_ip = Arc::from(text.as_str());
        // An address prints as digits, dots, colons and hex letters: always a valid value.
        let peer_ip_value = http::HeaderValue::from_str(&text)
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        ConnInfo {
            peer,
            local,
            listener,
            tls,
            sni,
            peer_ip,
            peer_ip_value,
            tls_fingerprint: None,
        }
    }
}

/// A request as the pipeline sees it: the parsed head plus what stages derived.
#[derive(Debug)]
pub struct RequestView {
    /// Method, URI, version, headers. Stages may amend headers sent to the origin.
    /// When the request is forwarded its headers *move* to the origin request (no copy on
    /// the hot path): `on_response` stages see an empty header map, so a stage that needs
    /// request headers at response time keeps what it needs in `on_request`.
    pub head: http::request::Parts,
    /// The connection.
    pub conn: Arc<ConnInfo>,
    /// Index of the accepting listener in the current [`Config::listeners`].
    pub listener: usize,
    /// The client's address (after trusted X-Forwarded-For), set by [`Identity`].
    pub client_ip: IpAddr,
    /// Whether the TCP peer is a trusted proxy (its X-Forwarded-* are believed), set by
    /// [`Identity`].
    pub from_trusted_proxy: bool,
    /// Request id, set by [`Identity`].
    pub request_id: String,
    /// Tenant, set by [`Resolve`].
    pub tenant: Option<TenantIdx>,
    /// Site, set by [`Resolve`].
    pub site: Option<SiteIdx>,
    /// Route index within the site, set by [`Resolve`].
    pub route: Option<usize>,
    /// Host the request is for (lower case, without port), set by [`HeadCheck`].
    pub host: String,
    /// Tags added by stages, for later stages, rules and the event.
    pub tags: Vec<Cow<'static, str>>,
    /// The client's HTTP fingerprint: the head's shape on HTTP/1, the connection's
    /// first flight on HTTP/2.
    pub http_fingerprint: HttpFingerprint,
    /// What stages keep between their hooks for this request (the WAF's transaction).
    pub state: StageState,
}

/// Per-request values stages keep between their hooks, one per type.
#[derive(Default)]
pub struct StageState(Vec<Box<dyn std::any::Any + Send>>);

impl StageState {
    /// Stores `value`, replacing one of the same type.
    pub fn insert<T: std::any::Any + Send>(&mut self, value: T) {
        self.0.retain(|v| !v.is::<T>());
        self.0.push(Box::new(value));
    }

    /// The value of type `T`, if a stage stored one.
    pub fn get<T: std::any::Any + Send>(&self) -> Option<&T> {
        self.0.iter().find_map(|v| v.downcast_ref::<T>())
    }

    /// The value of type `T`, if a stage stored one, to change.
    pub fn get_mut<T: std::any::Any + Send>(&mut self) -> Option<&mut T> {
        self.0.iter_mut().find_map(|v| v.downcast_mut::<T>())
    }

    /// Takes the value of type `T` out.
    pub fn take<T: std::any::Any + Send>(&mut self) -> Option<T> {
        let i = self.0.iter().position(|v| v.is::<T>())?;
        self.0.swap_remove(i).downcast::<T>().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for StageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StageState({} value(s))", self.0.len())
    }
}

impl RequestView {
    /// A view of a freshly parsed head; derived fields are empty until stages fill them.
    pub fn new(head: http::request::Parts, conn: Arc<ConnInfo>, listener: usize) -> Self {
        let client_ip = crate::net::canonical(conn.peer.ip());
        RequestView {
            head,
            conn,
            listener,
            client_ip,
            from_trusted_proxy: false,
            request_id: String::new(),
            tenant: None,
            site: None,
            route: None,
            host: String::new(),
            tags: Vec::new(),
            http_fingerprint: HttpFingerprint::None,
            state: StageState::default(),
        }
    }
}

/// A request's HTTP client fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HttpFingerprint {
    /// Not known (an HTTP/2 connection whose first flight could not be read).
    #[default]
    None,
    /// The HTTP/1 header fingerprint of this request's head
    /// ([`crate::h1::fingerprint`]).
    H1(crate::h1::fingerprint::H1Fingerprint),
    /// The HTTP/2 fingerprint of the connection (`rampart_policy::fingerprint::h2`).
    H2(Arc<str>),
}

impl HttpFingerprint {
    /// The text form; empty when not known.
    pub fn as_str(&self) -> &str {
        match self {
            HttpFingerprint::None => "",
            HttpFingerprint::H1(f) => f.as_str(),
            HttpFingerprint::H2(s) => s,
        }
    }
}

/// Present in a request's extensions when it is an RFC 8441 extended CONNECT (an HTTP/2
/// `CONNECT` with a `:protocol` pseudo-header, e.g. WebSocket over HTTP/2). The edge sets
/// it; core does not depend on the HTTP library that parsed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedConnect;

/// Present in a request's extensions when the request target held printable characters
/// that a URI may not carry as they are (`"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`):
/// the edge accepted the request (as nginx does), percent-encoded those characters in the
/// URI it forwards, and keeps the target as received here, for inspection (the WAF's
/// `REQUEST_URI_RAW` and `REQUEST_LINE` see these bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTarget(pub std::sync::Arc<[u8]>);

/// A response the pipeline produces itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Short reason shown on the error page and logged (`"no site for this host"`).
    pub reason: Cow<'static, str>,
    /// Close the connection after this response (framing can no longer be trusted).
    pub close: bool,
    /// A redirect's target (`Location`), when the reply is a redirect.
    pub location: Option<http::HeaderValue>,
    /// A page of the edge's own instead of the error page (the challenge), with its
    /// header fields.
    pub page: Option<Box<(http::HeaderMap, Vec<u8>)>>,
}

impl Reply {
    /// A reply that keeps the connection open.
    pub fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            status,
            reason: reason.into(),
            close: false,
            location: None,
            page: None,
        }
    }

    /// A reply after which the connection closes: used when message framing is suspect.
    pub fn closing(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            status,
            reason: reason.into(),
            close: true,
            location: None,
            page: None,
        }
    }
}

/// Present in a request's state when a stage decided the request skips inspection (a
/// `bypass` list matched, or an `allow` rule): the WAF and bot checks then do not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkipInspection;

/// What a stage decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on to the next stage.
    Continue,
    /// Stop and answer the client with this reply.
    Respond(Reply),
}

/// One step of the request pipeline.
pub trait Stage: Send + Sync {
    /// Stable name, used as the metric label (`stage="resolve"`).
    fn name(&self) -> &'static str;

    /// Inspects or amends the request head.
    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow;

    /// Whether [`Stage::on_request`] runs for this request, asked when the stage's turn
    /// comes (the stages before it have run). A stage configured per site or route says
    /// no for the others: it is then neither called nor timed.
    fn applies_to(&self, _cfg: &Config, _req: &RequestView) -> bool {
        true
    }

    /// How many bytes of the request body this stage needs to see before the request is
    /// forwarded (0 = none). The edge reads the largest prefix any stage asks for.
    fn body_prefix_wanted(&self, _cfg: &Config, _req: &RequestView) -> usize {
        0
    }

    /// Inspects the body prefix; `complete` says the whole body fit in it.
    fn on_request_body(
        &self,
        _cfg: &Config,
        _req: &mut RequestView,
        _prefix: &[u8],
        _complete: bool,
    ) -> Flow {
        Flow::Continue
    }

    /// Whether this stage has a response hook. Only stages that say so have
    /// [`Stage::on_response`] called (and timed): a request pays nothing for stages that
    /// never look at responses.
    fn inspects_responses(&self) -> bool {
        false
    }

    /// Whether this stage reads this request's response (its response hooks run only if
    /// so). Defaults to [`Stage::inspects_responses`]; a stage configured per site or
    /// route says no for requests it does not look at, so that they need no response
    /// field map.
    fn inspects_response_of(&self, _cfg: &Config, _req: &RequestView) -> bool {
        self.inspects_responses()
    }

    /// Inspects or amends the origin's response head before it goes to the client.
    /// Called only if [`Stage::inspects_responses`] and
    /// [`Stage::inspects_response_of`] this request are true.
    fn on_response(
        &self,
        _cfg: &Config,
        _req: &mut RequestView,
        _resp: &mut http::response::Parts,
    ) -> Flow {
        Flow::Continue
    }

    /// How many bytes of the response body this stage needs to see before anything of the
    /// response goes to the client (0 = none), asked after [`Stage::on_response`]. Only
    /// stages with [`Stage::inspects_responses`] are asked.
    fn response_body_prefix_wanted(
        &self,
        _cfg: &Config,
        _req: &RequestView,
        _resp: &http::response::Parts,
    ) -> usize {
        0
    }

    /// Inspects the response body prefix; `complete` says the whole body fit in it.
    fn on_response_body(
        &self,
        _cfg: &Config,
        _req: &mut RequestView,
        _prefix: &[u8],
        _complete: bool,
    ) -> Flow {
        Flow::Continue
    }
}

/// Observes stage calls; the edge records durations per stage with it. Core code never
/// reads a clock itself.
///
/// Marks are chained: the mark `end` returns is where the next stage starts, so a chain
/// of `n` stages takes `n + 1` readings of the clock, not `2n`.
pub trait Probe {
    /// A mark taken before a stage runs.
    type Mark;
    /// Called before the first stage of a chain runs.
    fn start(&mut self) -> Self::Mark;
    /// Called after stage `index` ran (it started at `mark`); returns the mark the next
    /// stage starts at.
    fn end(&mut self, index: usize, mark: Self::Mark) -> Self::Mark;
}

/// A probe that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProbe;

impl Probe for NoProbe {
    type Mark = ();
    #[inline]
    fn start(&mut self) {}
    #[inline]
    fn end(&mut self, _index: usize, _mark: ()) {}
}

/// An ordered chain of stages.
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
    /// Indices of the stages with a response hook.
    response_stages: Vec<usize>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stages.iter().map(|s| s.name()))
            .finish()
    }
}

impl Pipeline {
    /// A pipeline of the given stages, run in order.
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Self {
        let response_stages = stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.inspects_responses())
            .map(|(i, _)| i)
            .collect();
        Pipeline {
            stages,
            response_stages,
        }
    }

    /// The standard pipeline of this version: head check, identity, resolve. Fresh
    /// request ids come from `new_id`.
    pub fn standard(new_id: fn() -> String) -> Self {
        Pipeline::new(vec![
            Box::new(HeadCheck),
            Box::new(Identity::new(new_id)),
            Box::new(Resolve),
        ])
    }

    /// Takes the stages out, to extend the chain.
    pub fn into_stages(self) -> Vec<Box<dyn Stage>> {
        self.stages
    }

    /// Whether any stage reads this request's response.
    pub fn inspects_response_of(&self, cfg: &Config, req: &RequestView) -> bool {
        self.response_stages
            .iter()
            .any(|&i| self.stages[i].inspects_response_of(cfg, req))
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Box<dyn Stage>] {
        &self.stages
    }

    /// Runs the request hook of every stage that applies to the request until one
    /// responds.
    pub fn on_request<P: Probe>(&self, cfg: &Config, req: &mut RequestView, probe: &mut P) -> Flow {
        let mut mark = probe.start();
        for (i, stage) in self.stages.iter().enumerate() {
            if !stage.applies_to(cfg, req) {
                continue;
            }
            let flow = stage.on_request(cfg, req);
            mark = probe.end(i, mark);
            if let Flow::Respond(_) = flow {
                return flow;
            }
        }
        Flow::Continue
    }

    /// Calls `hook` on the stages at `indices` in order, timing each with `probe`, until
    /// one responds.
    fn run<P: Probe>(
        &self,
        indices: impl IntoIterator<Item = usize>,
        probe: &mut P,
        mut hook: impl FnMut(&dyn Stage) -> Flow,
    ) -> Flow {
        let mut mark = probe.start();
        for i in indices {
            let flow = hook(&*self.stages[i]);
            mark = probe.end(i, mark);
            if let Flow::Respond(_) = flow {
                return flow;
            }
        }
        Flow::Continue
    }

    /// The body prefix the stages want (the largest single wish).
    pub fn body_prefix_wanted(&self, cfg: &Config, req: &RequestView) -> usize {
        self.stages
            .iter()
            .map(|s| s.body_prefix_wanted(cfg, req))
            .max()
            .unwrap_or(0)
    }

    /// Runs every stage's body hook until one responds.
    pub fn on_request_body<P: Probe>(
        &self,
        cfg: &Config,
        req: &mut RequestView,
        prefix: &[u8],
        complete: bool,
        probe: &mut P,
    ) -> Flow {
        self.run(0..self.stages.len(), probe, |s| {
            s.on_request_body(cfg, req, prefix, complete)
        })
    }

    /// The largest response-body prefix any response stage asks for.
    pub fn response_body_prefix_wanted(
        &self,
        cfg: &Config,
        req: &RequestView,
        resp: &http::response::Parts,
    ) -> usize {
        self.response_stages
            .iter()
            .map(|&i| self.stages[i].response_body_prefix_wanted(cfg, req, resp))
            .max()
            .unwrap_or(0)
    }

    /// Runs every response stage's body hook until one responds.
    pub fn on_response_body<P: Probe>(
        &self,
        cfg: &Config,
        req: &mut RequestView,
        prefix: &[u8],
        complete: bool,
        probe: &mut P,
    ) -> Flow {
        self.run(self.response_stages.iter().copied(), probe, |s| {
            s.on_response_body(cfg, req, prefix, complete)
        })
    }

    /// Runs every stage's response hook until one responds.
    pub fn on_response<P: Probe>(
        &self,
        cfg: &Config,
        req: &mut RequestView,
        resp: &mut http::response::Parts,
        probe: &mut P,
    ) -> Flow {
        if self.response_stages.is_empty() {
            return Flow::Continue;
        }
        // Decided before any hook runs (the hooks take the view mutably), as a bit per
        // stage; stages past the 64th always run.
        let mut wanted = 0u64;
        for &i in &self.response_stages {
            if i < 64 && self.stages[i].inspects_response_of(cfg, req) {
                wanted |= 1 << i;
            }
        }
        if wanted == 0 && self.response_stages.iter().all(|&i| i < 64) {
            // No stage reads this response: no timing either.
            return Flow::Continue;
        }
        let chosen = self
            .response_stages
            .iter()
            .copied()
            .filter(move |&i| i >= 64 || wanted & (1 << i) != 0);
        self.run(chosen, probe, |s| s.on_response(cfg, req, resp))
    }
}
