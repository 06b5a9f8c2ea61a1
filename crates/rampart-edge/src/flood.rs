//! Automatic L7 flood mitigation in the edge: per site, count requests each second,
//! sample their features, learn the baseline, and when traffic departs from it deploy
//! temporary rules on the signatures `rampart_policy::flood::search` finds — challenge
//! first (a client holding a clearance passes), block an identity that keeps failing the
//! challenge — that expire when the attack ends.
//!
//! The request path costs an atomic increment and a random draw, plus, for sampled
//! requests or while automatic rules are active, the request's nine feature hashes and
//! the rules' matching. A background thread ([`FloodState`]'s ticker, one per edge) does
//! the rest once a second: detection, signature search (bitsets over at most 4,096
//! current and 8,192 baseline samples), rule deployment and expiry, events and metrics.
//! State lives per site id in [`FloodState`] and survives reloads.
//!
//! Operators list, pin and cancel automatic rules on the admin endpoint
//! (`GET /-/flood`, `POST /-/flood/{site}/{rule}/pin`, `…/cancel`) or with
//! `rampart flood`.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::{StatusCode, header};
use rampart_core::config::{Clients, Config, SiteFlood};
use rampart_core::decision::{Action, Mode, Source, Verdict};
use rampart_core::pipeline::{Flow, Reply, RequestView, Stage};
use rampart_policy::flood::{
    DetectSettings, Detector, Feature, Features, Ring, SearchSettings, Signature, Transition, hash,
    search,
};
use rampart_policy::ratelimit::{Algorithm, Counting, LocalStore};

use crate::accesslog::AccessLog;
use crate::challenge::{Cleared, Pending};
use crate::event::SecurityEvent;
use crate::metrics::{Counter, Gauge, Metrics};

/// Current-traffic samples kept (about four seconds at the attack sampling rate).
const CURRENT: usize = 4096;
/// Baseline samples kept.
const BASELINE: usize = rampart_policy::flood::BASELINE_CAP;
/// Samples a second aimed at in normal times and during an attack.
const SAMPLE_NORMAL: f64 = 200.0;
const SAMPLE_ATTACK: f64 = 1000.0;
/// Challenge pages an identity may get from automatic rules in a minute before it is
/// blocked instead.
const FAILS_BEFORE_BLOCK: u32 = 5;
/// Seconds a sample waits before it joins the baseline (the detection takes the 3-second
/// rate plus 2 seconds of confirmation).
const PENDING_SECONDS: usize = 5;
/// Example values kept per site for describing signatures.
const EXAMPLES: usize = 4096;

/// An automatic rule.
pub struct AutoRule {
    /// `auto-<site>-<n>`.
    pub id: String,
    /// What it matches.
    pub signature: Signature,
    /// The signature as an expression, for people.
    pub expression: String,
    /// When it was deployed.
    pub created: SystemTime,
    /// Records only.
    pub monitor: bool,
    /// Blocks instead of challenging.
    pub block: bool,
    /// Kept after the attack (until cancelled).
    pub pinned: AtomicBool,
    /// Withdrawn by an operator.
    pub cancelled: AtomicBool,
    /// Requests it matched.
    pub hits: AtomicU64,
    /// …stopped at the edge (challenged or blocked).
    pub stopped: AtomicU64,
    /// …passed with a clearance.
    pub passed: AtomicU64,
    /// Milliseconds (edge clock) of its last match.
    last_hit: AtomicU64,
    /// Share of baseline traffic it matches.
    pub baseline_share: f64,
}

/// One site's flood state.
pub struct SiteState {
    id: Arc<str>,
    tenant: Arc<str>,
    count: AtomicU64,
    /// Sampling probability, as a fraction of `u32::MAX`.
    sample_p: AtomicU64,
    settings: ArcSwap<SiteFlood>,
    inner: Mutex<Inner>,
    rules: ArcSwap<Vec<Arc<AutoRule>>>,
    attack: AtomicBool,
    series: ArcSwap<Series>,
}

struct Inner {
    detector: Detector,
    current: Ring,
    baseline: Ring,
    /// Samples of the last seconds, not yet baseline: an attack is declared a few
    /// seconds after it starts, and its first seconds must not become the baseline.
    pending: std::collections::VecDeque<Vec<Features>>,
    /// A readable value per feature hash, for describing signatures.
    examples: HashMap<(Feature, u64), String>,
    /// When the attack in progress was detected.
    detected: Option<(Instant, SystemTime)>,
    next_rule: u64,
}

/// Metric series of one site.
struct Series {
    under_attack: Arc<Gauge>,
    rules: Arc<Gauge>,
    baseline: Arc<Gauge>,
    rate: Arc<Gauge>,
    mitigate: Arc<Gauge>,
    detections: Arc<Counter>,
    deployed: Arc<Counter>,
    challenged: Arc<Counter>,
    blocked: Arc<Counter>,
    passed: Arc<Counter>,
    monitored: Arc<Counter>,
}

impl Series {
    fn new(m: &Metrics, tenant: &str, site: &str) -> Series {
        let l = [tenant, site];
        let out = |o: &str| m.flood_requests.with(&[tenant, site, o]);
        Series {
            under_attack: m.flood_under_attack.with(&l),
            rules: m.flood_rules_active.with(&l),
            baseline: m.flood_baseline_rps.with(&l),
            rate: m.flood_rate_rps.with(&l),
            mitigate: m.flood_time_to_mitigate.with(&l),
            detections: m.flood_detections.with(&l),
            deployed: m.flood_rules_deployed.with(&l),
            challenged: out("challenge"),
            blocked: out("block"),
            passed: out("passed"),
            monitored: out("would_challenge"),
        }
    }
}

fn detect_settings(s: &SiteFlood) -> DetectSettings {
    DetectSettings {
        factor: s.factor,
        min_excess: s.min_excess,
        confirm: 2,
        quiet: s.quiet.as_secs().max(1) as u32,
        learn: s.learn.as_secs().max(1) as u32,
        alpha: 1.0 / 300.0,
        suspect_factor: s.suspect_factor.min(s.factor),
    }
}

/// Every site's flood state, for the edge's lifetime.
pub struct FloodState {
    sites: Mutex<HashMap<Arc<str>, Arc<SiteState>>>,
    events: ArcSwap<AccessLog>,
    /// Identities that were sent challenge pages by automatic rules.
    challenged: LocalStore,
    started: OnceLock<()>,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A uniform 32-bit draw (xorshift, seeded per thread from the clock and the thread).
fn draw() -> u32 {
    RNG.with(|c| {
        let mut x = c.get();
        if x == 0 {
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            x = seed ^ (std::ptr::from_ref(c) as usize as u64).rotate_left(32) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        (x >> 32) as u32
    })
}

impl FloodState {
    /// An empty state; the ticker starts with the first generation.
    pub fn new() -> Arc<FloodState> {
        Arc::new(FloodState {
            sites: Mutex::new(HashMap::new()),
            events: ArcSwap::from_pointee(AccessLog::off()),
            challenged: LocalStore::new(
                Counting {
                    algorithm: Algorithm::SlidingWindow,
                    window_ms: 60_000,
                    thresholds: vec![FAILS_BEFORE_BLOCK],
                    hold_ms: vec![60_000],
                    distinct: false,
                },
                1 << 18,
            ),
            started: OnceLock::new(),
        })
    }

    fn lock_sites(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<SiteState>>> {
        self.sites.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sites of `config`: existing states keep their baseline and rules (settings
    /// are updated), new sites start learning; sites gone are dropped.
    pub fn sync(
        self: &Arc<Self>,
        config: &Config,
        metrics: &Metrics,
        events: AccessLog,
    ) -> Vec<Option<Arc<SiteState>>> {
        self.events.store(Arc::new(events));
        let mut sites = self.lock_sites();
        let mut out = Vec::with_capacity(config.sites.len());
        let mut keep: HashMap<Arc<str>, Arc<SiteState>> = HashMap::new();
        for s in &config.sites {
            if !s.flood.enabled {
                out.push(None);
                continue;
            }
            let tenant = config
                .tenants
                .get(s.tenant)
                .map_or_else(|| Arc::from("-"), |t| t.id.clone());
            let st = match sites.get(&s.id) {
                Some(st) => {
                    st.settings.store(Arc::new(s.flood.clone()));
                    // Keep what was learned: only the settings change.
                    if let Ok(mut i) = st.inner.lock() {
                        i.detector.set_settings(detect_settings(&s.flood));
                    }
                    st.series
                        .store(Arc::new(Series::new(metrics, &tenant, &s.id)));
                    st.clone()
                }
                None => Arc::new(SiteState {
                    id: s.id.clone(),
                    tenant: tenant.clone(),
                    count: AtomicU64::new(0),
                    sample_p: AtomicU64::new(u64::from(u32::MAX)),
                    settings: ArcSwap::from_pointee(s.flood.clone()),
                    inner: Mutex::new(Inner {
                        detector: Detector::new(detect_settings(&s.flood)),
                        current: Ring::new(CURRENT),
                        baseline: Ring::new(BASELINE),
                        pending: std::collections::VecDeque::new(),
                        examples: HashMap::new(),
                        detected: None,
                        next_rule: 1,
                    }),
                    rules: ArcSwap::from_pointee(Vec::new()),
                    attack: AtomicBool::new(false),
                    series: ArcSwap::from_pointee(Series::new(metrics, &tenant, &s.id)),
                }),
            };
            keep.insert(s.id.clone(), st.clone());
            out.push(Some(st));
        }
        *sites = keep;
        drop(sites);
        if self.started.set(()).is_ok() {
            let weak = Arc::downgrade(self);
            let _ = std::thread::Builder::new()
                .name("rampart-flood".into())
                .spawn(move || ticker(weak));
        }
        out
    }

    /// A JSON description of every site's state and automatic rules.
    pub fn describe(&self) -> serde_json::Value {
        let sites = self.lock_sites();
        let mut list: Vec<serde_json::Value> = sites
            .values()
            .map(|s| {
                let (baseline, rate, learned) = s
                    .inner
                    .lock()
                    .map(|i| {
                        (
                            i.detector.baseline(),
                            i.detector.rate(),
                            i.detector.learned(),
                        )
                    })
                    .unwrap_or((0.0, 0.0, false));
                let rules: Vec<serde_json::Value> =
                    s.rules.load().iter().map(|r| describe_rule(r)).collect();
                serde_json::json!({
                    "site": &*s.id,
                    "tenant": &*s.tenant,
                    "under_attack": s.attack.load(Ordering::Relaxed),
                    "baseline_rps": round(baseline),
                    "rate_rps": round(rate),
                    "learned": learned,
                    "rules": rules,
                })
            })
            .collect();
        list.sort_by(|a, b| a["site"].as_str().cmp(&b["site"].as_str()));
        serde_json::json!({ "sites": list })
    }

    /// Pins (`pin`) or cancels (`cancel`) an automatic rule; the rule's description, or
    /// why not.
    pub fn act(&self, site: &str, rule: &str, what: &str) -> Result<serde_json::Value, String> {
        let sites = self.lock_sites();
        let s = sites
            .get(site)
            .ok_or_else(|| format!("no site `{site}` with flood mitigation"))?;
        let rules = s.rules.load();
        let r = rules
            .iter()
            .find(|r| r.id == rule)
            .ok_or_else(|| format!("no automatic rule `{rule}` on site `{site}`"))?;
        match what {
            "pin" => r.pinned.store(true, Ordering::Relaxed),
            "unpin" => r.pinned.store(false, Ordering::Relaxed),
            "cancel" => r.cancelled.store(true, Ordering::Relaxed),
            other => return Err(format!("unknown action `{other}` (pin, unpin, cancel)")),
        }
        let line = serde_json::json!({
            "@timestamp": crate::accesslog::rfc3339(SystemTime::now()),
            "event.dataset": "rampart.security",
            "event.kind": "state",
            "event.module": "flood",
            "event.action": format!("flood_rule_{what}"),
            "rampart.site": &*s.id,
            "organization.id": &*s.tenant,
            "rule.id": &r.id,
        });
        self.events.load().write_line(line.to_string());
        Ok(describe_rule(r))
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn describe_rule(r: &AutoRule) -> serde_json::Value {
    serde_json::json!({
        "id": &r.id,
        "expression": &r.expression,
        "action": if r.block { "block" } else { "challenge" },
        "mode": if r.monitor { "monitor" } else { "enforce" },
        "created": crate::accesslog::rfc3339(r.created),
        "coverage": round(r.signature.coverage * 1000.0) / 1000.0,
        "baseline_share": r.baseline_share,
        "hits": r.hits.load(Ordering::Relaxed),
        "stopped": r.stopped.load(Ordering::Relaxed),
        "passed": r.passed.load(Ordering::Relaxed),
        "pinned": r.pinned.load(Ordering::Relaxed),
        "cancelled": r.cancelled.load(Ordering::Relaxed),
    })
}

/// The once-a-second work, until the state is dropped.
fn ticker(state: Weak<FloodState>) {
    let (_tx, rx) = std::sync::mpsc::channel::<()>();
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        // (A receive that times out is the wait: nothing is ever sent.)
        let wait = next.saturating_duration_since(Instant::now());
        let _ = rx.recv_timeout(wait);
        next += Duration::from_secs(1);
        let Some(st) = state.upgrade() else { return };
        let sites: Vec<Arc<SiteState>> = st.lock_sites().values().cloned().collect();
        let events = st.events.load_full();
        for s in sites {
            s.tick(&events);
        }
    }
}

impl SiteState {
    fn event(&self, events: &AccessLog, action: &str, extra: serde_json::Value) {
        let mut line = serde_json::json!({
            "@timestamp": crate::accesslog::rfc3339(SystemTime::now()),
            "event.dataset": "rampart.security",
            "event.kind": "state",
            "event.module": "flood",
            "event.action": action,
            "rampart.site": &*self.id,
            "organization.id": &*self.tenant,
        });
        if let (Some(m), serde_json::Value::Object(e)) = (line.as_object_mut(), extra) {
            m.extend(e);
        }
        events.write_line(line.to_string());
    }

    /// One second: detection, search, rule lifecycle.
    fn tick(&self, events: &AccessLog) {
        let settings = self.settings.load_full();
        let series = self.series.load_full();
        let count = self.count.swap(0, Ordering::Relaxed) as f64;
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let mut transition = inner.detector.second(count);
        // A suspect rate: an attack when signatures of clients absent from the baseline
        // explain the excess in the last seconds' samples.
        let mut trigger = "rate";
        if let Transition::Suspect { rate, baseline } = transition {
            transition = Transition::None;
            let recent: Vec<Features> = inner
                .pending
                .iter()
                .flatten()
                .chain(inner.current.samples())
                .copied()
                .collect();
            let found = search(
                &recent,
                inner.baseline.samples(),
                inner.detector.excess(),
                &SearchSettings {
                    bound: settings.bound,
                    client_feature: true,
                    ..SearchSettings::default()
                },
            );
            if !found.is_empty() {
                inner.detector.declare();
                trigger = "distribution";
                transition = Transition::Started { rate, baseline };
            }
        }
        let attack = inner.detector.under_attack();
        self.attack.store(attack, Ordering::Relaxed);
        series.under_attack.set(i64::from(attack));
        series
            .baseline
            .set(inner.detector.baseline().round() as i64);
        series.rate.set(inner.detector.rate().round() as i64);
        // Sample about SAMPLE_NORMAL (SAMPLE_ATTACK) requests a second.
        let target = if attack { SAMPLE_ATTACK } else { SAMPLE_NORMAL };
        let p = (target / count.max(1.0)).min(1.0);
        self.sample_p
            .store((p * f64::from(u32::MAX)) as u64, Ordering::Relaxed);
        match transition {
            Transition::Started { rate, baseline } => {
                inner.detected = Some((Instant::now(), SystemTime::now()));
                // The seconds that led to the detection are the attack's, not baseline.
                let pending: Vec<Vec<Features>> = inner.pending.drain(..).collect();
                for f in pending.into_iter().flatten() {
                    inner.current.push(f);
                }
                series.detections.inc();
                self.event(
                    events,
                    "flood_detected",
                    serde_json::json!({
                        "rampart.flood.rate_rps": round(rate),
                        "rampart.flood.baseline_rps": round(baseline),
                        "rampart.flood.trigger": trigger,
                    }),
                );
            }
            Transition::Ended => {
                let since = inner
                    .detected
                    .take()
                    .map_or(0.0, |(t, _)| t.elapsed().as_secs_f64());
                self.event(
                    events,
                    "flood_ended",
                    serde_json::json!({ "rampart.flood.duration_s": round(since) }),
                );
            }
            Transition::None | Transition::Suspect { .. } => {}
        }
        let rules = self.rules.load_full();
        // Deploy: while under attack, on the part of the traffic no rule covers yet.
        if attack && inner.current.len() >= 200 {
            let residual: Vec<Features> = inner
                .current
                .samples()
                .iter()
                .filter(|f| {
                    !rules
                        .iter()
                        .any(|r| !r.cancelled.load(Ordering::Relaxed) && r.signature.matches(f))
                })
                .copied()
                .collect();
            let total = inner.current.len() as f64;
            let excess = inner.detector.excess();
            // The share of the residual traffic that is still excess.
            let covered = 1.0 - residual.len() as f64 / total;
            let left = ((excess - covered) * total / residual.len().max(1) as f64).clamp(0.0, 1.0);
            if left > 0.05 {
                let search_settings = SearchSettings {
                    bound: settings.bound,
                    ..SearchSettings::default()
                };
                let found = search(&residual, inner.baseline.samples(), left, &search_settings);
                if !found.is_empty() {
                    let mut next = (*rules).clone();
                    for sig in found {
                        let id = format!("auto-{}-{}", self.id, inner.next_rule);
                        inner.next_rule += 1;
                        let expression = describe(&sig, &inner.examples);
                        let rule = Arc::new(AutoRule {
                            id: id.clone(),
                            expression: expression.clone(),
                            created: SystemTime::now(),
                            monitor: settings.monitor,
                            block: settings.block,
                            pinned: AtomicBool::new(false),
                            cancelled: AtomicBool::new(false),
                            hits: AtomicU64::new(0),
                            stopped: AtomicU64::new(0),
                            passed: AtomicU64::new(0),
                            last_hit: AtomicU64::new(now_ms()),
                            baseline_share: sig.baseline_share,
                            signature: sig.clone(),
                        });
                        let after = inner
                            .detected
                            .map_or(0.0, |(t, _)| t.elapsed().as_secs_f64());
                        series.deployed.inc();
                        series.mitigate.set((after * 1000.0).round() as i64);
                        self.event(
                            events,
                            "flood_mitigated",
                            serde_json::json!({
                                "rule.id": id,
                                "rampart.flood.expression": expression,
                                "rampart.flood.action": if rule.block { "block" } else { "challenge" },
                                "rampart.flood.mode": if rule.monitor { "monitor" } else { "enforce" },
                                "rampart.flood.coverage": round(sig.coverage * 1000.0) / 1000.0,
                                "rampart.flood.baseline_share": sig.baseline_share,
                                "rampart.flood.detected_at": inner.detected.map(|(_, w)| crate::accesslog::rfc3339(w)),
                                "rampart.flood.seconds_to_mitigate": round(after),
                            }),
                        );
                        next.push(rule);
                    }
                    self.rules.store(Arc::new(next));
                }
            }
        }
        // Expire: cancelled rules at once; others once the attack is over (or the rule
        // has not matched for the cooldown) and they are not pinned.
        let now = now_ms();
        let cooldown = settings.cooldown.as_millis() as u64;
        let rules = self.rules.load_full();
        let (keep, gone): (Vec<Arc<AutoRule>>, Vec<Arc<AutoRule>>) =
            rules.iter().cloned().partition(|r| {
                if r.cancelled.load(Ordering::Relaxed) {
                    return false;
                }
                if r.pinned.load(Ordering::Relaxed) {
                    return true;
                }
                let idle = now.saturating_sub(r.last_hit.load(Ordering::Relaxed)) >= cooldown;
                !(idle && (!attack || r.hits.load(Ordering::Relaxed) > 0))
            });
        if !gone.is_empty() {
            for r in &gone {
                self.event(
                    events,
                    "flood_rule_expired",
                    serde_json::json!({
                        "rule.id": &r.id,
                        "rampart.flood.expression": &r.expression,
                        "rampart.flood.hits": r.hits.load(Ordering::Relaxed),
                        "rampart.flood.stopped": r.stopped.load(Ordering::Relaxed),
                        "rampart.flood.passed": r.passed.load(Ordering::Relaxed),
                        "rampart.flood.cancelled": r.cancelled.load(Ordering::Relaxed),
                    }),
                );
            }
            self.rules.store(Arc::new(keep));
        }
        series.rules.set(self.rules.load().len() as i64);
        // Baseline: in normal times a second's samples become baseline samples once
        // they are older than the detection delay.
        if !attack {
            let fresh: Vec<Features> = inner.current.samples().to_vec();
            inner.current.clear();
            inner.pending.push_back(fresh);
            while inner.pending.len() > PENDING_SECONDS {
                if let Some(old) = inner.pending.pop_front() {
                    for f in old {
                        inner.baseline.push(f);
                    }
                }
            }
        }
    }

    fn sample(&self) -> bool {
        u64::from(draw()) < self.sample_p.load(Ordering::Relaxed)
    }
}

/// A signature as an expression (its values from the examples seen).
fn describe(sig: &Signature, examples: &HashMap<(Feature, u64), String>) -> String {
    let parts: Vec<String> = sig
        .items
        .iter()
        .map(|(f, h)| {
            let v = examples
                .get(&(*f, *h))
                .cloned()
                .unwrap_or_else(|| format!("#{h:016x}"));
            match f {
                Feature::Asn => format!("{} == {v}", f.field()),
                Feature::Net16 | Feature::Net24 => format!("{} == {v}", f.field()),
                _ => format!("{} == {}", f.field(), quote(&v)),
            }
        })
        .collect();
    parts.join(" and ")
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars().take(200) {
        match c {
            '"' | '\\' => {
                o.push('\\');
                o.push(c);
            }
            c if c.is_control() => o.push('?'),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The features of a request; with `keep`, their readable values for the examples.
fn features(
    req: &RequestView,
    geo: Option<&crate::geo::Geo>,
    mut keep: Option<&mut Vec<(Feature, u64, String)>>,
) -> Features {
    let mut f = Features::default();
    let mut set = |feat: Feature, bytes: &[u8], text: &dyn Fn() -> String| {
        let h = if bytes.is_empty() { 0 } else { hash(bytes) };
        f.0[feat as usize] = h;
        if let (Some(k), true) = (keep.as_deref_mut(), h != 0) {
            k.push((feat, h, text()));
        }
    };
    let path = req.head.uri.path();
    set(Feature::Path, path.as_bytes(), &|| path.to_owned());
    let m = req.head.method.as_str();
    set(Feature::Method, m.as_bytes(), &|| m.to_owned());
    let tls = req.conn.tls_fingerprint.as_deref().unwrap_or("");
    set(Feature::TlsFingerprint, tls.as_bytes(), &|| tls.to_owned());
    let hf = req.http_fingerprint.as_str();
    set(Feature::HttpFingerprint, hf.as_bytes(), &|| hf.to_owned());
    let ua = req
        .head
        .headers
        .get(header::USER_AGENT)
        .map_or(&[][..], |v| v.as_bytes());
    set(Feature::UserAgent, ua, &|| {
        String::from_utf8_lossy(ua).into_owned()
    });
    if let Some(g) = geo {
        let asn = g.asn(req.client_ip);
        if asn != 0 {
            set(Feature::Asn, &asn.to_be_bytes(), &|| asn.to_string());
        }
        if let Some(c) = g.country(req.client_ip) {
            set(Feature::Country, &c, &|| {
                String::from_utf8_lossy(&c).into_owned()
            });
        }
    }
    let (n16, n24, t16, t24) = match rampart_core::net::canonical(req.client_ip) {
        std::net::IpAddr::V4(a) => {
            let o = a.octets();
            (
                o[..2].to_vec(),
                o[..3].to_vec(),
                format!("{}.{}.0.0/16", o[0], o[1]),
                format!("{}.{}.{}.0/24", o[0], o[1], o[2]),
            )
        }
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            let net = |bits: u8| {
                let mut b = [0u8; 16];
                let n = usize::from(bits / 8);
                b[..n].copy_from_slice(&o[..n]);
                format!("{}/{bits}", std::net::Ipv6Addr::from(b))
            };
            (o[..4].to_vec(), o[..6].to_vec(), net(32), net(48))
        }
    };
    set(Feature::Net16, &n16, &|| t16.clone());
    set(Feature::Net24, &n24, &|| t24.clone());
    f
}

/// The flood stage of one generation.
pub struct FloodStage {
    sites: Vec<Option<Arc<SiteState>>>,
    state: Arc<FloodState>,
    geo: Option<Arc<crate::geo::Geo>>,
    events: AccessLog,
}

impl FloodStage {
    /// A stage over the sites `sync` returned.
    pub fn new(
        state: Arc<FloodState>,
        sites: Vec<Option<Arc<SiteState>>>,
        geo: Option<Arc<crate::geo::Geo>>,
        events: AccessLog,
    ) -> Self {
        FloodStage {
            sites,
            state,
            geo,
            events,
        }
    }
}

impl Stage for FloodStage {
    fn name(&self) -> &'static str {
        "flood"
    }

    fn applies_to(&self, _cfg: &Config, req: &RequestView) -> bool {
        req.site
            .and_then(|s| self.sites.get(s))
            .is_some_and(Option::is_some)
    }

    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow {
        let Some(site) = req
            .site
            .and_then(|s| self.sites.get(s))
            .and_then(Option::as_ref)
        else {
            return Flow::Continue;
        };
        site.count.fetch_add(1, Ordering::Relaxed);
        let rules = site.rules.load();
        let sampled = site.sample();
        if rules.is_empty() && !sampled {
            return Flow::Continue;
        }
        let mut examples = Vec::new();
        let f = features(req, self.geo.as_deref(), sampled.then_some(&mut examples));
        if sampled {
            if let Ok(mut i) = site.inner.lock() {
                i.current.push(f);
                // Readable values for describing signatures: a bounded map, started
                // afresh when full (the values of the moment come back within seconds).
                if i.examples.len() >= EXAMPLES {
                    i.examples.clear();
                }
                for (feat, h, text) in examples {
                    i.examples.entry((feat, h)).or_insert(text);
                }
            }
        }
        let Some(rule) = rules
            .iter()
            .find(|r| !r.cancelled.load(Ordering::Relaxed) && r.signature.matches(&f))
        else {
            return Flow::Continue;
        };
        rule.hits.fetch_add(1, Ordering::Relaxed);
        rule.last_hit.store(now_ms(), Ordering::Relaxed);
        let series = site.series.load();
        let api = req
            .route
            .and_then(|r| cfg.sites.get(req.site?)?.routes.get(r))
            .is_some_and(|r| r.clients == Clients::Api);
        let cleared = req.state.get::<Cleared>().is_some();
        // A client that keeps failing the challenge is blocked instead.
        let identity = crate::bot::BotSet::identity(req);
        let failing = !rule.block
            && !cleared
            && !api
            && self
                .state
                .challenged
                .peek(identity.as_bytes(), now_ms())
                .level
                .is_some();
        let action = if rule.block || failing {
            Action::Block {
                status: 403,
                page: None,
            }
        } else {
            Action::Challenge
        };
        let mode = if rule.monitor {
            Mode::Monitor
        } else {
            Mode::Enforce
        };
        let mut v = Verdict {
            source: Source::Bot,
            id: rule.id.clone().into(),
            action: action.clone(),
            mode,
            reason: if failing {
                format!(
                    "automatic flood rule: {} (challenge failed repeatedly)",
                    rule.expression
                )
            } else {
                format!("automatic flood rule: {}", rule.expression)
            },
        };
        let flow = match (&action, mode) {
            (_, Mode::Monitor) => {
                series.monitored.inc();
                Flow::Continue
            }
            (Action::Challenge, _) if cleared => {
                v.mode = Mode::Passed;
                rule.passed.fetch_add(1, Ordering::Relaxed);
                series.passed.inc();
                Flow::Continue
            }
            (Action::Challenge, _) if api => {
                v.mode = Mode::Waived;
                Flow::Continue
            }
            (Action::Challenge, _) => {
                self.state
                    .challenged
                    .hit(identity.as_bytes(), b"", now_ms());
                rule.stopped.fetch_add(1, Ordering::Relaxed);
                series.challenged.inc();
                req.state.insert(Pending);
                Flow::Respond(Reply::new(StatusCode::FORBIDDEN, "a challenge is required"))
            }
            _ => {
                rule.stopped.fetch_add(1, Ordering::Relaxed);
                series.blocked.inc();
                Flow::Respond(Reply::new(
                    StatusCode::FORBIDDEN,
                    "the request was blocked by an automatic flood rule",
                ))
            }
        };
        // Passed challenges are counted, not logged one by one.
        if v.mode != Mode::Passed {
            let ev = SecurityEvent::of(req, cfg, &self.events, None);
            ev.decision.push(v);
        }
        flow
    }
}
