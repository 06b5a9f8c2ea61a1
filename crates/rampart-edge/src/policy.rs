//! The policy stages: each route's lists, rate limits and custom rules
//! (`rampart-policy`) run over its requests and responses.
//!
//! - **Load.** [`PolicySet::build`] reads the `[[list]]` files, compiles every route's
//!   policy (expression errors are located in the configuration file) and gives each
//!   limit its counter store. A store is kept across reloads while the limit's identity
//!   (site, where it is defined, name, key, algorithm, window and thresholds) does not
//!   change, so counts and holds (bans) survive a reload; a site-level limit has one
//!   store for all the site's routes.
//! - **[`PolicyStage`]** (before the WAF): lists, limits, then the rules that need
//!   neither the body nor the WAF's score. An enforced `block` answers with its status
//!   and the block page, `redirect` with its `Location`, `challenge` (until the bot
//!   defence exists) with 403 and its own event outcome; `allow` and `bypass` skip the
//!   inspection stages; header changes apply to the request forwarded.
//! - **[`PolicyBodyStage`]** (after the WAF): the rules that read `waf.score` or the
//!   body's arguments (urlencoded, or JSON flattened as `a.b.c`).
//! - **Responses** ([`PolicyStage::on_response`]): rules that read response fields, and
//!   limits that count responses (the next request of the key is checked against them).
//! - Every verdict goes into the request's [`SecurityEvent`] (`rampart.decision`) and
//!   the `rampart_policy_verdicts_total` metric.

use crate::challenge::{ChallengeSet, Cleared, Pending};
use rampart_core::config::Clients;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use rampart_core::config::{Config, Diagnostics, SourceFile};
use rampart_core::decision::{Action, Decision, Mode, Source};
use rampart_core::pipeline::{Flow, RawTarget, Reply, RequestView, SkipInspection, Stage};
use rampart_policy::policy::{Check, Effects, LimitResult, LocalCounters, Policy, RulePhase};
use rampart_policy::ratelimit::LocalStore;
use rampart_policy::ratelimit::Outcome;
use rampart_policy::{Lists, Request, Response};

use crate::accesslog::AccessLog;
use crate::event::SecurityEvent;
use crate::geo::Geo;
use crate::metrics::Counter;
use crate::redis::Redis;

/// Body bytes the body stage reads for rules on body arguments when the route has no
/// WAF (which sets its own limit).
const BODY_PREFIX: usize = 128 * 1024;

/// A route's compiled policy and its counters.
pub struct RoutePolicy {
    /// The policy.
    pub policy: Policy,
    counters: LocalCounters,
    /// Some rule needs the body or the WAF's score.
    body_rules: bool,
    /// Some rule reads the response, or some limit counts responses.
    response: bool,
    /// For each limit kept in Redis: its key prefix and its cache of keys over it.
    remote: Vec<Option<RemoteLimit>>,
}

/// A limit whose counters live in Redis.
struct RemoteLimit {
    /// `{key_prefix}:rl:{site}:{scope}:{limit}:`
    prefix: Vec<u8>,
    /// Keys known to be over the limit, answered here until then.
    over: OverCache,
}

/// Keys over their limit, by key: until when (ms, this process's clock) and what Redis
/// said. Requests of such a key are answered without a round trip — during an attack
/// that is most of them. Bounded: a full shard forgets what expired, then everything.
struct OverCache {
    shards: Box<[OverShard]>,
}

/// One shard of an [`OverCache`]: key → (until, outcome).
type OverShard = std::sync::Mutex<HashMap<Vec<u8>, (u64, Outcome)>>;

/// Entries per shard of an [`OverCache`].
const OVER_CACHE_SHARD: usize = 4096;

impl OverCache {
    fn new() -> Self {
        OverCache {
            shards: (0..16)
                .map(|_| std::sync::Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(&self, key: &[u8]) -> &OverShard {
        let i = rampart_policy::ratelimit::stable_hash(key) as usize % self.shards.len();
        &self.shards[i]
    }

    fn get(&self, key: &[u8], now: u64) -> Option<Outcome> {
        let map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(until, _)| *until > now)
            .map(|(until, o)| Outcome {
                held_for: o.held_for.map(|_| until - now),
                ..*o
            })
    }

    fn put(&self, key: &[u8], until: u64, o: Outcome, now: u64) {
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= OVER_CACHE_SHARD {
            map.retain(|_, (u, _)| *u > now);
            if map.len() >= OVER_CACHE_SHARD {
                map.clear();
            }
        }
        map.insert(key.to_vec(), (until, o));
    }
}

impl std::fmt::Debug for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutePolicy")
            .field("rules", &self.policy.rules_in_order().len())
            .field("limits", &self.policy.limits.len())
            .finish()
    }
}

/// Identity of a limit's counter store across routes and reloads.
type StoreKey = (Arc<str>, Option<String>, Arc<str>, String);

/// Every route's policy, by site and route index.
#[derive(Debug, Default)]
pub struct PolicySet {
    routes: Vec<Vec<Option<Arc<RoutePolicy>>>>,
    prefixes: Vec<Vec<Arc<str>>>,
    stores: HashMap<StoreKey, Arc<LocalStore>>,
    any_response: bool,
    /// The Redis server of the limits kept there.
    redis: Option<Redis>,
    /// Country and ASN databases.
    geo: Option<Arc<Geo>>,
}

impl PolicySet {
    /// Loads the lists and compiles every route's policy of `config`; counter stores
    /// of unchanged limits come from `previous`.
    pub fn build(
        src: &SourceFile,
        config: &Config,
        previous: Option<&PolicySet>,
        redis: Option<Redis>,
        geo: Option<Arc<Geo>>,
    ) -> Result<PolicySet, Diagnostics> {
        let mut read = |path: &str| -> Result<String, String> {
            let full = crate::tls::resolve(src, path);
            std::fs::read_to_string(&full).map_err(|e| format!("{}: {e}", full.display()))
        };
        let lists: Lists =
            rampart_policy::build::lists(&config.lists, &mut read, src).map_err(to_diags)?;
        let mut set = PolicySet {
            redis,
            geo,
            ..PolicySet::default()
        };
        let mut diags = Diagnostics::default();
        let mut compiled: HashMap<
            (usize, Arc<rampart_core::config::PolicySpec>),
            Arc<RoutePolicy>,
        > = HashMap::new();
        for (si, site) in config.sites.iter().enumerate() {
            let mut routes = Vec::with_capacity(site.routes.len());
            for route in &site.routes {
                let Some(spec) = &route.policy else {
                    routes.push(None);
                    continue;
                };
                if let Some(done) = compiled.get(&(si, spec.clone())) {
                    routes.push(Some(done.clone()));
                    continue;
                }
                match rampart_policy::build::policy(spec, &config.lists, &lists, src) {
                    Ok(policy) => {
                        if set.geo.is_none() && reads_geo(&policy) {
                            tracing::warn!(
                                site = %site.id,
                                route = %route.prefix,
                                "the policy reads ip.src.country or ip.src.asn, but no [geo] databases are configured: those fields are empty and country/ASN lists never match"
                            );
                        }
                        let stores = spec
                            .limits
                            .iter()
                            .zip(&policy.limits)
                            .map(|(ls, l)| {
                                let key: StoreKey = (
                                    site.id.clone(),
                                    ls.scope.clone(),
                                    ls.name.clone(),
                                    format!(
                                        "{:?}|{:?}|{:?}",
                                        l.counting,
                                        ls.key,
                                        ls.distinct.as_ref().map(|d| &d.text)
                                    ),
                                );
                                let store = set
                                    .stores
                                    .get(&key)
                                    .or_else(|| previous.and_then(|p| p.stores.get(&key)))
                                    .cloned()
                                    .unwrap_or_else(|| {
                                        Arc::new(LocalStore::new(l.counting.clone(), l.max_keys))
                                    });
                                set.stores.insert(key, store.clone());
                                store
                            })
                            .collect();
                        let body_rules = policy
                            .rules_in_order()
                            .iter()
                            .any(|r| Policy::phase_of(r) == RulePhase::AfterWaf);
                        let response = policy
                            .rules_in_order()
                            .iter()
                            .any(|r| Policy::phase_of(r) == RulePhase::Response)
                            || policy.limits.iter().any(|l| l.responses.is_some());
                        set.any_response |= response;
                        let prefix = config
                            .redis
                            .as_ref()
                            .map_or("rampart", |r| r.key_prefix.as_str());
                        let remote = spec
                            .limits
                            .iter()
                            .map(|ls| {
                                ls.redis.then(|| RemoteLimit {
                                    prefix: format!(
                                        "{prefix}:rl:{}:{}:{}:",
                                        site.id,
                                        ls.scope.as_deref().unwrap_or("*"),
                                        ls.name
                                    )
                                    .into_bytes(),
                                    over: OverCache::new(),
                                })
                            })
                            .collect();
                        let rp = Arc::new(RoutePolicy {
                            policy,
                            counters: LocalCounters::with_stores(stores),
                            body_rules,
                            response,
                            remote,
                        });
                        compiled.insert((si, spec.clone()), rp.clone());
                        routes.push(Some(rp));
                    }
                    Err(d) => {
                        diags.0.extend(d);
                        routes.push(None);
                    }
                }
            }
            set.routes.push(routes);
            set.prefixes.push(
                site.routes
                    .iter()
                    .map(|r| Arc::from(r.prefix.as_str()))
                    .collect(),
            );
        }
        if diags.is_empty() {
            Ok(set)
        } else {
            diags.sort();
            diags.0.dedup();
            Err(diags)
        }
    }

    /// The policy of a route.
    pub fn route(&self, site: usize, route: usize) -> Option<&Arc<RoutePolicy>> {
        self.routes.get(site)?.get(route)?.as_ref()
    }

    /// Whether any route has a policy.
    pub fn is_empty(&self) -> bool {
        self.routes.iter().flatten().all(Option::is_none)
    }

    fn route_name(&self, req: &RequestView) -> Option<Arc<str>> {
        self.prefixes.get(req.site?)?.get(req.route?).cloned()
    }
}

/// Whether a policy reads the client's country or ASN (its rules, limit filters, or
/// country/ASN lists).
fn reads_geo(p: &Policy) -> bool {
    use rampart_policy::expr::Field;
    let geo = |e: &rampart_policy::Expr| e.reads(Field::Country) || e.reads(Field::Asn);
    p.acls.iter().any(|a| geo(&a.test))
        || p.rules_in_order().iter().any(|r| geo(&r.expr))
        || p.limits
            .iter()
            .any(|l| l.filter.as_ref().is_some_and(geo) || l.responses.as_ref().is_some_and(geo))
}

fn to_diags(d: Vec<rampart_core::config::Diagnostic>) -> Diagnostics {
    let mut out = Diagnostics::default();
    out.0.extend(d);
    out.sort();
    out
}

/// Milliseconds on the process's monotonic clock (rate-limit windows).
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Unix time in seconds (rule expiry).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The client's country code and ASN, when `[geo]` is configured.
type GeoFacts = Option<(Option<[u8; 2]>, u32)>;

fn geo_of(set: &PolicySet, ip: std::net::IpAddr) -> GeoFacts {
    set.geo.as_ref().map(|g| (g.country(ip), g.asn(ip)))
}

fn set_geo<'a>(r: &mut Request<'a>, geo: &'a GeoFacts) {
    if let Some((country, asn)) = geo {
        r.asn = *asn;
        if let Some(c) = country {
            r.country = std::str::from_utf8(c).unwrap_or("");
        }
    }
}

/// The policy's view of a request, on its head or body.
fn request_of<'a>(req: &'a RequestView, target: &'a str, geo: &'a GeoFacts) -> Request<'a> {
    let mut r = Request::new(
        req.client_ip,
        req.head.method.as_str(),
        &req.host,
        target,
        &req.head.headers,
    );
    r.tls = req.conn.tls;
    r.tls_fingerprint = req.conn.tls_fingerprint.as_deref().unwrap_or("");
    r.http_fingerprint = req.http_fingerprint.as_str();
    if let Some(b) = req.state.get::<crate::bot::BotView>() {
        r.identity = &b.identity;
        r.bot_score = i64::from(b.score);
        r.bot_reasons = &b.reasons;
    }
    r.port = req.conn.local.port();
    r.version = version_of(req.head.version);
    r.tags = &req.tags;
    set_geo(&mut r, geo);
    r
}

/// The request target as received.
fn target_of(req: &RequestView) -> Cow<'_, str> {
    match req.head.extensions.get::<RawTarget>() {
        Some(raw) => String::from_utf8_lossy(&raw.0),
        None => match req.head.uri.path_and_query() {
            Some(pq) => Cow::Borrowed(pq.as_str()),
            None => Cow::Borrowed("/"),
        },
    }
}

fn version_of(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// What the policy keeps of a request for its later phases.
struct PolicyState {
    /// An enforced allow: later phases do not run.
    allowed: bool,
    /// The request's facts for response rules (only when the route has any).
    saved: Option<Saved>,
}

struct Saved {
    method: String,
    target: String,
    host: String,
    headers: HeaderMap,
    tls: bool,
    version: &'static str,
    port: u16,
}

/// The outcomes a verdict can have, for the metric's pre-made series.
const OUTCOMES: [&str; 11] = [
    "log",
    "allow",
    "redirect",
    "challenge",
    "block",
    "would_allow",
    "would_redirect",
    "would_challenge",
    "would_block",
    "passed",
    "waived",
];
/// The sources the policy stages produce.
const SOURCES: [Source; 3] = [Source::List, Source::Limit, Source::Rule];

/// Verdict counters per site, made when the generation is built, so that counting a
/// verdict takes no lock.
#[derive(Clone)]
pub struct PolicyMetrics {
    per_site: Arc<Vec<Vec<Arc<Counter>>>>,
}

impl PolicyMetrics {
    /// The series of every site of `config` in `m`.
    pub fn new(m: &crate::metrics::Metrics, config: &Config) -> Self {
        let per_site = config
            .sites
            .iter()
            .map(|s| {
                let tenant = config.tenants.get(s.tenant).map_or("-", |t| &*t.id);
                SOURCES
                    .iter()
                    .flat_map(|src| OUTCOMES.iter().map(move |o| (src, o)))
                    .map(|(src, o)| m.policy_verdicts.with(&[tenant, &s.id, src.as_str(), o]))
                    .collect()
            })
            .collect();
        PolicyMetrics {
            per_site: Arc::new(per_site),
        }
    }

    fn count(&self, site: Option<usize>, v: &rampart_core::decision::Verdict) {
        let (Some(src), Some(o)) = (
            SOURCES.iter().position(|s| *s == v.source),
            OUTCOMES.iter().position(|o| *o == v.outcome()),
        ) else {
            return;
        };
        if let Some(c) = site
            .and_then(|s| self.per_site.get(s))
            .and_then(|c| c.get(src * OUTCOMES.len() + o))
        {
            c.inc();
        }
    }
}

/// The tag that marks a request as coming from an API client (never challenged).
pub const API_TAG: &str = "api";

/// What both policy stages hold.
#[derive(Clone)]
struct Shared {
    set: Arc<PolicySet>,
    events: AccessLog,
    metrics: PolicyMetrics,
    challenges: Arc<ChallengeSet>,
}

/// What one evaluation produced.
struct Evaluated {
    d: Decision,
    fx: Effects,
    tags: Vec<Arc<str>>,
    response_status: Option<u16>,
    /// The client's country and ASN, when looked up.
    geo: Option<(Option<[u8; 2]>, u32)>,
}

/// Lists, limits and the rules before the WAF; response rules and response counting.
pub struct PolicyStage {
    set: Arc<PolicySet>,
    shared: Shared,
}

impl PolicyStage {
    /// A stage over `set`, writing events to `events`; challenges are settled with
    /// `challenges`.
    pub fn new(
        set: Arc<PolicySet>,
        events: AccessLog,
        metrics: PolicyMetrics,
        challenges: Arc<ChallengeSet>,
    ) -> Self {
        PolicyStage {
            shared: Shared {
                set: set.clone(),
                events,
                metrics,
                challenges,
            },
            set,
        }
    }

    fn route_of(&self, req: &RequestView) -> Option<&Arc<RoutePolicy>> {
        self.set.route(req.site?, req.route?)
    }
}

/// Records verdicts and tags in the request's event and metrics, applies the effects,
/// and turns the decision into the flow.
fn conclude(req: &mut RequestView, cfg: &Config, sh: &Shared, out: Evaluated) -> Flow {
    let Evaluated {
        mut d,
        fx,
        tags,
        response_status,
        geo,
    } = out;
    let from = 0;
    // A challenge is passed by a client holding a clearance, and never put to the
    // programs an API route serves.
    if d.verdicts()
        .iter()
        .any(|v| v.mode == Mode::Enforce && v.action == Action::Challenge)
    {
        let cleared = req.state.get::<Cleared>().is_some();
        // API clients: by route, or tagged `api` by a rule (an API key in a list, a
        // partner's addresses).
        let api = req
            .site
            .zip(req.route)
            .and_then(|(s, r)| cfg.sites.get(s)?.routes.get(r))
            .is_some_and(|r| r.clients == Clients::Api)
            || tags.iter().any(|t| &**t == API_TAG)
            || req.tags.iter().any(|t| t == API_TAG);
        if !d.settle_challenges(from, cleared, api) && cleared {
            sh.challenges.count_passed(req.site);
        }
    }
    // The challenge page is made by the proxy, which can read the body to send again.
    if d.final_verdict()
        .is_some_and(|v| v.action == Action::Challenge)
    {
        req.state.insert(Pending);
    }
    for (n, v) in &fx.set_headers {
        req.head.headers.insert(n.clone(), v.clone());
    }
    for n in &fx.remove_headers {
        req.head.headers.remove(n);
    }
    let allowed = d.final_verdict().is_some_and(|v| v.action == Action::Allow);
    if fx.bypass_inspection || allowed {
        req.state.insert(SkipInspection);
    }
    if allowed {
        if let Some(st) = req.state.get_mut::<PolicyState>() {
            st.allowed = true;
        }
    }
    for t in &tags {
        req.tags.push(Cow::Owned(t.to_string()));
    }
    if d.verdicts().len() <= from && tags.is_empty() {
        return Flow::Continue;
    }
    for v in &d.verdicts()[from.min(d.verdicts().len())..] {
        sh.metrics.count(req.site, v);
    }
    let route = sh.set.route_name(req);
    let ev = SecurityEvent::of(req, cfg, &sh.events, route);
    ev.tags.extend(tags);
    if response_status.is_some() {
        ev.response_status = response_status;
    }
    if geo.is_some() {
        ev.geo = geo;
    }
    let flow = flow_of(&d, from);
    for v in d.verdicts().iter().skip(from) {
        ev.decision.push(v.clone());
    }
    flow
}

/// The answer an enforced verdict reached after `from` asks for.
fn flow_of(d: &Decision, from: usize) -> Flow {
    let Some(v) = d
        .verdicts()
        .iter()
        .skip(from)
        .filter(|v| v.mode == Mode::Enforce)
        .max_by_key(|v| v.action.severity())
    else {
        return Flow::Continue;
    };
    match &v.action {
        Action::Block { status, .. } => Flow::Respond(Reply::new(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN),
            if *status == 429 {
                "too many requests"
            } else {
                "the request was blocked by a policy rule"
            },
        )),
        Action::Challenge => {
            Flow::Respond(Reply::new(StatusCode::FORBIDDEN, "a challenge is required"))
        }
        Action::Redirect { status, location } => {
            let mut r = Reply::new(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FOUND),
                "redirected by a policy rule",
            );
            r.location = http::HeaderValue::from_str(location).ok();
            Flow::Respond(r)
        }
        Action::Allow | Action::Log | Action::Note => Flow::Continue,
    }
}

impl Stage for PolicyStage {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn applies_to(&self, _cfg: &Config, req: &RequestView) -> bool {
        self.route_of(req).is_some()
    }

    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow {
        let Some(rp) = self.route_of(req).cloned() else {
            return Flow::Continue;
        };
        let p = &rp.policy;
        let mut d = Decision::new();
        let mut fx = Effects::default();
        let mut waiting: Vec<Check> = Vec::new();
        let geo = geo_of(&self.set, req.client_ip);
        let tags;
        {
            let target = target_of(req);
            let mut r = request_of(req, &target, &geo);
            p.acl(&r, &mut d, &mut fx);
            if !d.is_settled() {
                let mut checks: Vec<Check> = Vec::new();
                p.limit_checks(&r, false, unix_now(), &mut checks);
                if !checks.is_empty() {
                    let now = now_ms();
                    // Local limits are answered now; Redis ones from the cache of keys
                    // over their limit, or after the round trip (`resolve_remote`).
                    let (remote, local): (Vec<Check>, Vec<Check>) = checks
                        .into_iter()
                        .partition(|c| rp.remote.get(c.limit).is_some_and(Option::is_some));
                    let mut results: Vec<LimitResult> = Vec::new();
                    rp.counters.run(&local, now, &mut results);
                    let mut answered = local;
                    for c in remote {
                        let cached = rp.remote[c.limit]
                            .as_ref()
                            .and_then(|rl| rl.over.get(&c.key, now));
                        match cached {
                            Some(o) => {
                                results.push(LimitResult::Counted(o));
                                answered.push(c);
                            }
                            None => waiting.push(c),
                        }
                    }
                    p.apply_limits(&answered, &results, &mut d);
                }
            }
            if !d.is_settled() {
                p.rules(RulePhase::BeforeWaf, &mut r, unix_now(), &mut d, &mut fx);
            }
            tags = r.added_tags().to_vec();
        }
        if rp.body_rules || rp.response {
            let saved = rp.response.then(|| Saved {
                method: req.head.method.as_str().to_owned(),
                target: target_of(req).into_owned(),
                host: req.host.clone(),
                headers: req.head.headers.clone(),
                tls: req.conn.tls,
                version: version_of(req.head.version),
                port: req.conn.local.port(),
            });
            req.state.insert(PolicyState {
                allowed: false,
                saved,
            });
        }
        let flow = conclude(
            req,
            cfg,
            &self.shared,
            Evaluated {
                d,
                fx,
                tags,
                response_status: None,
                geo,
            },
        );
        if !waiting.is_empty() && matches!(flow, Flow::Continue) {
            if let Some(redis) = self.set.redis.clone() {
                req.state.insert(RemoteChecks {
                    rp,
                    checks: waiting,
                    redis,
                    shared: self.shared.clone(),
                });
            }
        }
        flow
    }

    fn inspects_responses(&self) -> bool {
        self.set.any_response
    }

    fn inspects_response_of(&self, _cfg: &Config, req: &RequestView) -> bool {
        req.state
            .get::<PolicyState>()
            .is_some_and(|s| s.saved.is_some() && !s.allowed)
    }

    fn on_response(
        &self,
        cfg: &Config,
        req: &mut RequestView,
        resp: &mut http::response::Parts,
    ) -> Flow {
        let Some(rp) = self.route_of(req).cloned() else {
            return Flow::Continue;
        };
        let Some(saved) = req
            .state
            .get_mut::<PolicyState>()
            .and_then(|s| s.saved.take())
        else {
            return Flow::Continue;
        };
        let mut d = Decision::new();
        let mut fx = Effects::default();
        let geo = geo_of(&self.set, req.client_ip);
        let tags;
        {
            let mut r = Request::new(
                req.client_ip,
                &saved.method,
                &saved.host,
                &saved.target,
                &saved.headers,
            );
            r.tls = saved.tls;
            r.tls_fingerprint = req.conn.tls_fingerprint.as_deref().unwrap_or("");
            r.http_fingerprint = req.http_fingerprint.as_str();
            if let Some(b) = req.state.get::<crate::bot::BotView>() {
                r.identity = &b.identity;
                r.bot_score = i64::from(b.score);
                r.bot_reasons = &b.reasons;
            }
            set_geo(&mut r, &geo);
            r.port = saved.port;
            r.version = saved.version;
            r.tags = &req.tags;
            r.waf_score = crate::waf::inbound_score(req);
            r.response = Some(Response {
                status: resp.status.as_u16(),
                headers: &resp.headers,
            });
            let mut checks: Vec<Check> = Vec::new();
            rp.policy.limit_checks(&r, true, unix_now(), &mut checks);
            if !checks.is_empty() {
                let mut results = Vec::new();
                rp.counters.run(&checks, now_ms(), &mut results);
            }
            rp.policy
                .rules(RulePhase::Response, &mut r, unix_now(), &mut d, &mut fx);
            tags = r.added_tags().to_vec();
        }
        // Header changes of response rules concern the request, which has left.
        fx.set_headers.clear();
        fx.remove_headers.clear();
        let status = Some(resp.status.as_u16());
        conclude(
            req,
            cfg,
            &self.shared,
            Evaluated {
                d,
                fx,
                tags,
                response_status: status,
                geo: None,
            },
        )
    }
}

/// The rules that read `waf.score` or body arguments, after the WAF.
pub struct PolicyBodyStage {
    set: Arc<PolicySet>,
    shared: Shared,
}

impl PolicyBodyStage {
    /// A stage over `set`, writing events to `events`; challenges are settled with
    /// `challenges`.
    pub fn new(
        set: Arc<PolicySet>,
        events: AccessLog,
        metrics: PolicyMetrics,
        challenges: Arc<ChallengeSet>,
    ) -> Self {
        PolicyBodyStage {
            shared: Shared {
                set: set.clone(),
                events,
                metrics,
                challenges,
            },
            set,
        }
    }

    fn route_of(&self, req: &RequestView) -> Option<&Arc<RoutePolicy>> {
        self.set
            .route(req.site?, req.route?)
            .filter(|r| r.body_rules)
    }
}

impl Stage for PolicyBodyStage {
    fn name(&self) -> &'static str {
        "policy_body"
    }

    fn applies_to(&self, _cfg: &Config, _req: &RequestView) -> bool {
        // Everything happens on the body.
        false
    }

    fn on_request(&self, _cfg: &Config, _req: &mut RequestView) -> Flow {
        Flow::Continue
    }

    fn body_prefix_wanted(&self, _cfg: &Config, req: &RequestView) -> usize {
        match (self.route_of(req), req.state.get::<PolicyState>()) {
            (Some(_), Some(st)) if !st.allowed => BODY_PREFIX,
            _ => 0,
        }
    }

    fn on_request_body(
        &self,
        cfg: &Config,
        req: &mut RequestView,
        prefix: &[u8],
        _complete: bool,
    ) -> Flow {
        let Some(rp) = self.route_of(req).cloned() else {
            return Flow::Continue;
        };
        if req.state.get::<PolicyState>().is_none_or(|s| s.allowed) {
            return Flow::Continue;
        }
        let args = body_args(&req.head.headers, prefix);
        let mut d = Decision::new();
        let mut fx = Effects::default();
        let geo = geo_of(&self.set, req.client_ip);
        let tags;
        {
            let target = target_of(req);
            let mut r = request_of(req, &target, &geo);
            r.waf_score = crate::waf::inbound_score(req);
            r.body_args = Some(&args);
            rp.policy
                .rules(RulePhase::AfterWaf, &mut r, unix_now(), &mut d, &mut fx);
            tags = r.added_tags().to_vec();
        }
        conclude(
            req,
            cfg,
            &self.shared,
            Evaluated {
                d,
                fx,
                tags,
                response_status: None,
                geo: None,
            },
        )
    }
}

/// A body's arguments: urlencoded pairs, or JSON flattened (`a.b`, `list.0`-style names
/// as ModSecurity makes them, without its `json.` prefix).
pub(crate) fn body_args(headers: &HeaderMap, body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("application/x-www-form-urlencoded") {
        return rampart_policy::request::form_pairs(body)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
    }
    if ctype.starts_with("application/json") || ctype.contains("+json") {
        return rampart_waf::body::json_args(body, 64)
            .args
            .into_iter()
            .map(|(n, v)| {
                let n = match n.strip_prefix(b"json.") {
                    Some(rest) => rest.to_vec(),
                    None if n == b"json" => Vec::new(),
                    None => n,
                };
                (n, v)
            })
            .collect();
    }
    Vec::new()
}

/// Checks of limits kept in Redis that a request waits for, stored by
/// [`PolicyStage::on_request`] and answered by [`resolve_remote`].
struct RemoteChecks {
    rp: Arc<RoutePolicy>,
    checks: Vec<Check>,
    redis: Redis,
    shared: Shared,
}

/// How long a key over its limit (without a hold) is answered from the cache.
const OVER_TTL_MS: u64 = 1000;

/// Runs the request's Redis checks (one pipelined round trip for all of them), applies
/// their verdicts and answers as the decision says. Called by the proxy after the
/// request stages, before the body is read.
pub async fn resolve_remote(req: &mut RequestView, cfg: &Config) -> Flow {
    let Some(rc) = req.state.take::<RemoteChecks>() else {
        return Flow::Continue;
    };
    let RemoteChecks {
        rp,
        checks,
        redis,
        shared,
    } = rc;
    let jobs = checks
        .iter()
        .map(|c| {
            let limit = &rp.policy.limits[c.limit];
            let mut key = rp.remote[c.limit]
                .as_ref()
                .map_or_else(Vec::new, |r| r.prefix.clone());
            if c.key.len() > 200 {
                // Long keys (a header value) are shortened to a hash, the same everywhere.
                key.extend_from_slice(
                    format!("#{:016x}", rampart_policy::ratelimit::stable_hash(&c.key)).as_bytes(),
                );
            } else {
                key.extend_from_slice(&c.key);
            }
            let value = limit
                .distinct
                .is_some()
                .then(|| rampart_policy::ratelimit::stable_hash(&c.value));
            crate::redis::Check {
                key,
                args: limit.counting.redis_args(c.count, value),
                // Hits of one key in one batch add up (sliding windows counting requests).
                coalesce: c.count && limit.counting.coalescable(),
            }
        })
        .collect();
    let replies = redis.check_all(jobs).await;
    let now = now_ms();
    let results: Vec<LimitResult> = checks
        .iter()
        .zip(replies)
        .map(|(c, reply)| {
            let limit = &rp.policy.limits[c.limit];
            let outcome = reply.and_then(|a| {
                limit
                    .counting
                    .redis_outcomes(&a.reply, a.hits)
                    .and_then(|all| all.get(a.index).copied())
            });
            match outcome {
                Some(o) => {
                    let blocks = o
                        .level
                        .and_then(|l| limit.actions.get(l))
                        .is_some_and(|a| a.severity() >= 3);
                    if let (true, Some(rl)) = (blocks, rp.remote[c.limit].as_ref()) {
                        let ttl = o
                            .held_for
                            .unwrap_or_else(|| OVER_TTL_MS.min(limit.counting.window_ms / 10));
                        rl.over.put(&c.key, now + ttl, o, now);
                    }
                    LimitResult::Counted(o)
                }
                None => LimitResult::Unavailable,
            }
        })
        .collect();
    let mut d = Decision::new();
    rp.policy.apply_limits(&checks, &results, &mut d);
    conclude(
        req,
        cfg,
        &shared,
        Evaluated {
            d,
            fx: Effects::default(),
            tags: Vec::new(),
            response_status: None,
            geo: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::config::load_str;

    fn policy_of(section: &str) -> Policy {
        let text = format!(
            "[[list]]\nname = \"eu\"\nkind = \"country\"\nentries = [\"DE\"]\n[[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n[[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"127.0.0.1:9\"]\n[[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"*\"]\nroute = [{{ path = \"/\", pool = \"p\" }}]\n[site.policy]\n{section}"
        );
        let src = SourceFile::new("t.toml", text);
        let cfg = load_str(&src).unwrap_or_else(|d| unreachable!("{d}"));
        let spec = cfg.sites[0].routes[0]
            .policy
            .clone()
            .unwrap_or_else(|| unreachable!());
        let mut read = |_: &str| Err::<String, String>("none".into());
        let lists = rampart_policy::build::lists(&cfg.lists, &mut read, &src)
            .unwrap_or_else(|_| unreachable!());
        rampart_policy::build::policy(&spec, &cfg.lists, &lists, &src)
            .unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn policies_that_need_geo_are_recognised() {
        let rule = |e: &str| {
            format!("[[site.policy.rule]]\nid = \"r\"\nexpression = '{e}'\naction = \"log\"\n")
        };
        assert!(reads_geo(&policy_of(&rule("ip.src.country == \"DE\""))));
        assert!(reads_geo(&policy_of(&rule("ip.src.asn in {1 2}"))));
        assert!(reads_geo(&policy_of(
            "[[site.policy.list]]\nlist = \"eu\"\nuse = \"deny\"\n"
        )));
        assert!(reads_geo(&policy_of(
            "[[site.policy.limit]]\nname = \"l\"\nkey = [\"ip.src\"]\nfilter = 'ip.src.asn == 3'\nwindow = \"1s\"\nthreshold = [{ above = 1, action = \"log\" }]\n"
        )));
        assert!(!reads_geo(&policy_of(&rule(
            "http.request.method == \"GET\""
        ))));
    }
}
