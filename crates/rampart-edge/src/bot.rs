//! Client identity and bot score, per request, before the policy runs (so rules and
//! limits read `client.identity`, `bot.score` and `bot.reasons`).
//!
//! The identity is the clearance token's when the client holds one (`c:` and its random
//! id), else a hash of the client's software and network (`f:`): the JA4 and HTTP/2
//! fingerprints — or the `User-Agent` on plain HTTP — with the /24 (IPv4) or /64 (IPv6).
//! Per identity and site the edge counts, in bounded stores that outlive reloads:
//! requests and distinct paths per minute, responses and 4xx responses per minute, and
//! failed logins per 10 minutes; `rampart_policy::bot::score` turns those and the
//! request's own signals into the score.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header;
use rampart_core::config::{Config, SiteBot};
use rampart_core::pipeline::{Flow, HttpFingerprint, RequestView, Stage};
use rampart_policy::bot::{Counts, Signals, Thresholds, score};
use rampart_policy::ratelimit::{
    Algorithm, Counting, LocalStore, STABLE_HASH_SEED, stable_hash_more as fnv,
};

use crate::challenge::Cleared;

/// A request's identity and bot score, in its stage state.
#[derive(Debug, Clone)]
pub struct BotView {
    /// `client.identity`.
    pub identity: String,
    /// `bot.score`.
    pub score: u8,
    /// `bot.reasons`.
    pub reasons: Vec<&'static str>,
    /// A POST to the site's login path (its 401/403 is a failed login).
    login_post: bool,
}

/// Identities kept per store.
const CAPACITY: usize = 1 << 18;

/// Per-identity counters; kept across reloads.
pub struct BotState {
    requests: LocalStore,
    paths: LocalStore,
    responses: LocalStore,
    errors: LocalStore,
    logins: LocalStore,
}

fn per(window_ms: u64, distinct: bool) -> LocalStore {
    LocalStore::new(
        Counting {
            algorithm: Algorithm::SlidingWindow,
            window_ms,
            thresholds: vec![u32::MAX - 1],
            hold_ms: vec![0],
            distinct,
        },
        CAPACITY,
    )
}

impl BotState {
    fn new() -> Self {
        BotState {
            requests: per(60_000, false),
            paths: per(60_000, true),
            responses: per(60_000, false),
            errors: per(60_000, false),
            logins: per(600_000, false),
        }
    }
}

/// The bot settings of one generation.
pub struct BotSet {
    sites: Vec<SiteBot>,
    /// Sites with a policy (the only readers of the score): the others skip the stage.
    active: Vec<bool>,
    state: Arc<BotState>,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl BotSet {
    /// The set for `config`, keeping `previous`'s counters.
    pub fn build(config: &Config, previous: Option<&BotSet>) -> BotSet {
        BotSet {
            sites: config.sites.iter().map(|s| s.bot.clone()).collect(),
            active: config
                .sites
                .iter()
                .map(|s| s.routes.iter().any(|r| r.policy.is_some()))
                .collect(),
            state: previous.map_or_else(|| Arc::new(BotState::new()), |p| p.state.clone()),
        }
    }

    /// The key of an identity's counters on a site.
    fn key(site: usize, identity: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(identity.len() + 4);
        k.extend_from_slice(&(site as u32).to_be_bytes());
        k.extend_from_slice(identity.as_bytes());
        k
    }

    /// The identity of a request (see the module docs).
    pub fn identity(req: &RequestView) -> String {
        if let Some(c) = req.state.get::<Cleared>() {
            return format!("c:{:016x}", c.0.identity);
        }
        let mut h = STABLE_HASH_SEED;
        h = fnv(
            h,
            req.conn.tls_fingerprint.as_deref().unwrap_or("").as_bytes(),
        );
        h = fnv(h, b"|");
        match &req.http_fingerprint {
            HttpFingerprint::H2(f) => h = fnv(h, f.as_bytes()),
            _ if !req.conn.tls => {
                let ua = req.head.headers.get(header::USER_AGENT);
                h = fnv(h, ua.map_or(&[][..], |v| v.as_bytes()));
            }
            _ => {}
        }
        h = fnv(h, b"|");
        match rampart_core::net::canonical(req.client_ip) {
            std::net::IpAddr::V4(a) => h = fnv(h, &a.octets()[..3]),
            std::net::IpAddr::V6(a) => h = fnv(h, &a.octets()[..8]),
        }
        format!("f:{h:016x}")
    }

    /// Computes the request's identity and score, counting the request.
    fn assess(&self, site: usize, req: &RequestView) -> BotView {
        let settings = self.sites.get(site).cloned().unwrap_or_default();
        let identity = Self::identity(req);
        let key = Self::key(site, &identity);
        let now = now_ms();
        let st = &self.state;
        let counts = Counts {
            per_minute: st.requests.hit(&key, b"", now).count,
            paths_per_minute: st
                .paths
                .hit(&key, req.head.uri.path().as_bytes(), now)
                .count,
            responses: st.responses.peek(&key, now).count,
            client_errors: st.errors.peek(&key, now).count,
            login_failures: st.logins.peek(&key, now).count,
        };
        let h = &req.head.headers;
        let ua = h.get(header::USER_AGENT).map_or(&[][..], |v| v.as_bytes());
        let claimed = settings.verified.iter().find(|v| {
            !v.user_agent.is_empty()
                && ua
                    .windows(v.user_agent.len())
                    .any(|w| w.eq_ignore_ascii_case(v.user_agent.as_bytes()))
        });
        let signals = Signals {
            user_agent: ua,
            tls_fingerprint: req.conn.tls_fingerprint.as_deref().unwrap_or(""),
            http_fingerprint: req.http_fingerprint.as_str(),
            tls: req.conn.tls,
            http2: req.head.version == http::Version::HTTP_2,
            accept_language: h.contains_key(header::ACCEPT_LANGUAGE),
            fetch_metadata: h.contains_key("sec-fetch-mode"),
            cleared: req.state.get::<Cleared>().is_some_and(|c| !c.0.noscript),
            claims_verified_bot: claimed.is_some(),
            verified_bot: claimed.is_some_and(|v| v.networks.contains(req.client_ip)),
            counts,
        };
        let s = score(
            &signals,
            &Thresholds {
                rate: f64::from(settings.rate),
                paths: f64::from(settings.paths),
            },
        );
        let login_post = req.head.method == http::Method::POST
            && settings
                .login_path
                .as_deref()
                .is_some_and(|p| req.head.uri.path() == p);
        BotView {
            identity,
            score: s.score,
            reasons: s.reasons,
            login_post,
        }
    }

    /// Counts an origin response for the request's identity (error ratio, failed
    /// logins).
    pub fn record_response(&self, req: &RequestView, status: u16) {
        let (Some(site), Some(view)) = (req.site, req.state.get::<BotView>()) else {
            return;
        };
        let key = Self::key(site, &view.identity);
        let now = now_ms();
        self.state.responses.hit(&key, b"", now);
        if (400..500).contains(&status) {
            self.state.errors.hit(&key, b"", now);
        }
        if view.login_post && matches!(status, 401 | 403) {
            self.state.logins.hit(&key, b"", now);
        }
    }
}

/// Computes identity and bot score before the policy.
pub struct BotStage {
    set: Arc<BotSet>,
}

impl BotStage {
    /// A stage over `set`.
    pub fn new(set: Arc<BotSet>) -> Self {
        BotStage { set }
    }
}

impl Stage for BotStage {
    fn name(&self) -> &'static str {
        "bot"
    }

    fn applies_to(&self, _cfg: &Config, req: &RequestView) -> bool {
        req.site
            .and_then(|s| self.set.active.get(s))
            .is_some_and(|a| *a)
    }

    fn on_request(&self, _cfg: &Config, req: &mut RequestView) -> Flow {
        if let Some(site) = req.site {
            let v = self.set.assess(site, req);
            req.state.insert(v);
        }
        Flow::Continue
    }
}
