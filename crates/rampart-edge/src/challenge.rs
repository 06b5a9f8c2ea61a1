//! The challenge: a self-hosted interstitial that a policy verdict (`challenge`) puts
//! in front of a request, instead of blocking it.
//!
//! 1. The page ([`ChallengeSet::page`]) carries a signed puzzle
//!    (`rampart_policy::challenge`) bound to the site, the client's address prefix and
//!    TLS fingerprint, and a script that finds its proof of work (SHA-256, `difficulty`
//!    leading zero bits: about 65,000 hashes at 16 bits, a fraction of a second on a
//!    phone). No third party, no visual puzzle; the status line is an ARIA live region;
//!    a `<noscript>` part explains what happens and offers a way through without
//!    JavaScript: a *wait* puzzle that opens after `noscript_wait`.
//! 2. The answer goes to `/.rampart/challenge/verify?p=…&n=…` on the same site
//!    ([`ChallengeStage`]). A good answer mints a clearance token — the cookie
//!    `rampart_clearance`, HttpOnly, SameSite=Lax, Secure on TLS — and redirects to the
//!    original target: 303 for GET and HEAD, 307 otherwise, so the browser sends the
//!    original body again (the page re-posts a form's fields, or the body's bytes with
//!    its content type, up to 64 KiB). Each puzzle is answered once.
//! 3. Later requests carrying a valid token pass the challenge verdicts (`passed` in the
//!    trace); the token is the client's identity.
//!
//! Difficulty adapts: an address prefix that keeps asking for puzzles (more than 4 in
//! 10 minutes) gets harder ones, up to `max_difficulty`. Routes with `clients = "api"`
//! are never challenged (`waived`). Metrics: `rampart_challenges_total{tenant,site,
//! outcome}` (`issued`, `solved`, `failed`, `passed`), `rampart_challenge_failures_total
//! {tenant,site,reason}`, and `rampart_challenge_solve_seconds{tenant,site}` (from the
//! puzzle's issue to its answer, as the edge sees it).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode, header};
use rampart_core::config::{Config, Diagnostics, SiteChallenge, SourceFile};
use rampart_core::pipeline::{Flow, Reply, RequestView, Stage};
use rampart_policy::challenge::{
    Binding, Clearance, Keyring, Puzzle, Rejected, Work, b64_encode, solves,
};
use rampart_policy::ratelimit::{Algorithm, Counting, LocalStore};
use ring::rand::SecureRandom;

use crate::metrics::{Counter, Histogram, Metrics};

/// Path prefix the edge answers itself on every site.
pub const PREFIX: &str = "/.rampart/challenge/";
/// Where answers go.
pub const VERIFY: &str = "/.rampart/challenge/verify";
/// The clearance cookie.
pub const COOKIE: &str = "rampart_clearance";
/// How long a puzzle may take to be answered.
const PUZZLE_TTL: Duration = Duration::from_secs(300);
/// Largest body the page carries for re-sending.
pub const MAX_REPLAY_BODY: usize = 64 * 1024;

const SCRIPT: &str = include_str!("../assets/challenge.js");

/// The client's clearance, in the request's stage state once its token verified.
#[derive(Debug, Clone, Copy)]
pub struct Cleared(pub Clearance);

/// In the request's stage state: the request is to be answered with the challenge page.
#[derive(Debug, Clone, Copy)]
pub struct Pending;

/// Per-site metric series, made at load.
struct SiteSeries {
    issued: Arc<Counter>,
    solved: Arc<Counter>,
    failed: Arc<Counter>,
    passed: Arc<Counter>,
    solve: Arc<Histogram>,
    failures: Vec<Arc<Counter>>,
}

const REASONS: [Rejected; 8] = [
    Rejected::Malformed,
    Rejected::UnknownKey,
    Rejected::Forged,
    Rejected::Expired,
    Rejected::OtherSite,
    Rejected::OtherPrefix,
    Rejected::OtherFingerprint,
    Rejected::TooEarly,
];

/// Why an answer failed, beyond the puzzle's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Puzzle(Rejected),
    WrongNonce,
    Replayed,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::Puzzle(r) => r.as_str(),
            Failure::WrongNonce => "wrong_answer",
            Failure::Replayed => "replayed",
        }
    }
}

/// What outlives a configuration: answered puzzles, puzzles asked per prefix, and the
/// random key used when no key file is configured.
pub struct ChallengeState {
    /// Puzzle ids answered (a second answer is a replay).
    seen: LocalStore,
    /// Puzzles issued per address prefix, for the adaptive difficulty.
    asked: LocalStore,
    random_ring: Arc<Keyring>,
    rng: ring::rand::SystemRandom,
}

impl ChallengeState {
    fn new() -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let mut secret = [0u8; 32];
        rng.fill(&mut secret)
            .map_err(|_| "the system random generator failed".to_owned())?;
        Ok(ChallengeState {
            seen: LocalStore::new(
                Counting {
                    algorithm: Algorithm::SlidingWindow,
                    window_ms: 2 * PUZZLE_TTL.as_millis() as u64,
                    thresholds: vec![1],
                    hold_ms: vec![0],
                    distinct: false,
                },
                1 << 20,
            ),
            asked: LocalStore::new(
                Counting {
                    algorithm: Algorithm::SlidingWindow,
                    window_ms: 600_000,
                    thresholds: vec![4, 8, 16, 32, 64, 128, 256, 512],
                    hold_ms: vec![0; 8],
                    distinct: false,
                },
                1 << 18,
            ),
            random_ring: Arc::new(Keyring::new(&[("random", &secret)])?),
            rng,
        })
    }

    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        // On failure the identity is still unique enough with the clock mixed in.
        if self.rng.fill(&mut b).is_err() {
            return unix_ms() ^ 0x9e37_79b9_7f4a_7c15;
        }
        u64::from_be_bytes(b)
    }

    fn random_id(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        if self.rng.fill(&mut b).is_err() {
            b[..8].copy_from_slice(&unix_ms().to_be_bytes());
        }
        b
    }
}

/// The challenge of one configuration generation.
pub struct ChallengeSet {
    ring: Arc<Keyring>,
    sites: Vec<SiteChallenge>,
    site_ids: Vec<Arc<str>>,
    state: Arc<ChallengeState>,
    series: Vec<SiteSeries>,
    script_hash: String,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ChallengeSet {
    /// Builds the set for `config`, keeping the state of `previous` (answered puzzles,
    /// the random key). A key file that cannot be read or parsed is a located error.
    pub fn build(
        src: &SourceFile,
        config: &Config,
        metrics: &Metrics,
        previous: Option<&ChallengeSet>,
    ) -> Result<ChallengeSet, Diagnostics> {
        let state = match previous {
            Some(p) => p.state.clone(),
            None => Arc::new(ChallengeState::new().map_err(|e| {
                Diagnostics(vec![src.diagnostic(
                    rampart_core::config::Span::default(),
                    format!("challenge: {e}"),
                    None,
                    None,
                )])
            })?),
        };
        let ring = match &config.challenge.key_file {
            None => state.random_ring.clone(),
            Some(file) => {
                let path = crate::tls::resolve(src, &file.text);
                let located = |msg: String| {
                    Diagnostics(vec![src.diagnostic(
                        file.span,
                        msg,
                        Some("a file of `name base64-secret` lines".to_owned()),
                        None,
                    )])
                };
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    located(format!(
                        "cannot read the challenge key file {}: {e}",
                        path.display()
                    ))
                })?;
                Arc::new(Keyring::parse(&text).map_err(|e| {
                    located(format!(
                        "{}:{}:{}: {}",
                        path.display(),
                        e.line,
                        e.col,
                        e.msg
                    ))
                })?)
            }
        };
        let series = config
            .sites
            .iter()
            .map(|s| {
                let tenant = config.tenants.get(s.tenant).map_or("-", |t| &*t.id);
                let out = |o: &str| metrics.challenges.with(&[tenant, &s.id, o]);
                SiteSeries {
                    issued: out("issued"),
                    solved: out("solved"),
                    failed: out("failed"),
                    passed: out("passed"),
                    solve: metrics.challenge_solve.with(&[tenant, &s.id]),
                    failures: REASONS
                        .iter()
                        .map(|r| r.as_str())
                        .chain(["wrong_answer", "replayed"])
                        .map(|r| metrics.challenge_failures.with(&[tenant, &s.id, r]))
                        .collect(),
                }
            })
            .collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, SCRIPT.as_bytes());
        Ok(ChallengeSet {
            ring,
            sites: config.sites.iter().map(|s| s.challenge.clone()).collect(),
            site_ids: config.sites.iter().map(|s| s.id.clone()).collect(),
            state,
            series,
            script_hash: std_b64(digest.as_ref()),
        })
    }

    /// The name of the key that signs (for the logs).
    pub fn signing_key(&self) -> &str {
        self.ring.signing()
    }

    fn binding(&self, site: usize, req: &RequestView) -> Option<Binding> {
        let s = self.sites.get(site)?;
        let fp = if s.bind_tls_fingerprint {
            req.conn.tls_fingerprint.as_deref().unwrap_or("")
        } else {
            ""
        };
        let id = self.site_ids.get(site)?;
        Some(Binding::new(
            id,
            req.client_ip,
            s.ipv4_prefix,
            s.ipv6_prefix,
            fp,
        ))
    }

    /// Verifies the request's clearance cookie, if any; a valid one is stored in the
    /// request's state ([`Cleared`]). Returns whether the client is cleared.
    pub fn check(&self, req: &mut RequestView) -> bool {
        if req.state.get::<Cleared>().is_some() {
            return true;
        }
        let Some(site) = req.site else { return false };
        let Some(token) = cookie(&req.head.headers, COOKIE) else {
            return false;
        };
        let Some(b) = self.binding(site, req) else {
            return false;
        };
        match Clearance::verify(&self.ring, &token, &b, unix_ms() / 1000) {
            Ok(c) => {
                req.state.insert(Cleared(c));
                true
            }
            Err(why) => {
                tracing::debug!(reason = why.as_str(), "clearance token refused");
                false
            }
        }
    }

    /// Counts a challenge passed by a cleared client.
    pub fn count_passed(&self, site: Option<usize>) {
        if let Some(s) = site.and_then(|s| self.series.get(s)) {
            s.passed.inc();
        }
    }

    /// The difficulty for a new puzzle from `ip` on `site` (counting it).
    fn difficulty(&self, s: &SiteChallenge, ip: IpAddr, now_ms: u64) -> u8 {
        let b = Binding::new("", ip, s.ipv4_prefix, s.ipv6_prefix, "");
        let key = format!("{b:?}");
        let level = self.state.asked.hit(key.as_bytes(), b"", now_ms).level;
        let extra = level.map_or(0, |l| l as u8 + 1);
        s.difficulty.saturating_add(extra).min(s.max_difficulty)
    }

    /// The challenge page for a request, with the body to send again (when the request
    /// had one and it fits), and an optional note (why a previous answer failed).
    pub fn page(
        &self,
        req: &RequestView,
        body: Option<&[u8]>,
        note: Option<&str>,
    ) -> Option<Reply> {
        let site = req.site?;
        let s = self.sites.get(site)?;
        let binding = self.binding(site, req)?;
        let now = unix_ms();
        let target = req
            .head
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let method = req.head.method.as_str().to_owned();
        let resend = !matches!(method.as_str(), "GET" | "HEAD");
        let bits = self.difficulty(s, req.client_ip, now);
        let puzzle = |work: Work| {
            Puzzle {
                id: self.state.random_id(),
                issued: now,
                expires: now + PUZZLE_TTL.as_millis() as u64,
                work,
                resend_body: resend,
                target: target.clone(),
            }
            .seal(&self.ring, &binding)
        };
        let p = puzzle(Work::Hash(bits));
        let wait_secs = s.noscript_wait.as_secs().clamp(1, 600) as u16;
        let wait = puzzle(Work::Wait(wait_secs));
        if let Some(ser) = self.series.get(site) {
            ser.issued.inc();
        }
        let ctype = req
            .head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let form = ctype.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        let carried = body.filter(|b| resend && b.len() <= MAX_REPLAY_BODY);
        let html = render_page(&PageParts {
            puzzle: &p,
            wait: &wait,
            wait_secs,
            bits,
            method: &method,
            ctype: &ctype,
            form,
            body: carried,
            lost_body: resend && carried.is_none() && body.is_some_and(|b| !b.is_empty()),
            note,
            request_id: &req.request_id,
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
        if let Ok(csp) = HeaderValue::from_str(&format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            self.script_hash
        )) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        headers.insert(
            "rampart-challenge",
            HeaderValue::from_static("proof-of-work"),
        );
        let mut r = Reply::new(StatusCode::FORBIDDEN, "a challenge is required");
        r.page = Some(Box::new((headers, html.into_bytes())));
        Some(r)
    }

    /// Answers `/.rampart/challenge/verify`: a good answer sets the clearance cookie and
    /// redirects to the original target; a bad one gets a fresh page saying why.
    pub fn answer(&self, req: &RequestView) -> Reply {
        let Some(site) = req.site else {
            return Reply::new(StatusCode::NOT_FOUND, "no site for this host");
        };
        let query = req.head.uri.query().unwrap_or("");
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == name).then(|| percent_decode(v))
            })
        };
        let (Some(text), nonce) = (param("p"), param("n").unwrap_or_default()) else {
            return Reply::new(StatusCode::BAD_REQUEST, "no puzzle in the answer");
        };
        let now = unix_ms();
        let result = self.verify(site, req, &text, &nonce, now);
        let ser = self.series.get(site);
        match result {
            Ok((puzzle, token, ttl)) => {
                if let Some(ser) = ser {
                    ser.solved.inc();
                    ser.solve
                        .observe(Duration::from_millis(now.saturating_sub(puzzle.issued)));
                }
                let status = if puzzle.resend_body {
                    StatusCode::TEMPORARY_REDIRECT
                } else {
                    StatusCode::SEE_OTHER
                };
                let mut r = Reply::new(status, "challenge solved");
                let mut headers = HeaderMap::new();
                let secure = if req.conn.tls { "; Secure" } else { "" };
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                    ttl.as_secs()
                )) {
                    headers.insert(header::SET_COOKIE, v);
                }
                if let Ok(v) = HeaderValue::from_str(&puzzle.target) {
                    headers.insert(header::LOCATION, v);
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                r.page = Some(Box::new((headers, Vec::new())));
                r
            }
            Err(f) => {
                if let Some(ser) = ser {
                    ser.failed.inc();
                    let i = match f {
                        Failure::Puzzle(r) => REASONS.iter().position(|x| *x == r),
                        Failure::WrongNonce => Some(REASONS.len()),
                        Failure::Replayed => Some(REASONS.len() + 1),
                    };
                    if let Some(c) = i.and_then(|i| ser.failures.get(i)) {
                        c.inc();
                    }
                }
                tracing::debug!(reason = f.as_str(), "challenge answer refused");
                let note = match f {
                    Failure::Puzzle(Rejected::TooEarly) => {
                        "Please wait a few more seconds before pressing Continue."
                    }
                    Failure::Puzzle(Rejected::Expired) => "The check expired; here is a new one.",
                    _ => "The check did not succeed; here is a new one.",
                };
                self.page(req, None, Some(note)).unwrap_or_else(|| {
                    Reply::new(StatusCode::FORBIDDEN, "the challenge was not solved")
                })
            }
        }
    }

    fn verify(
        &self,
        site: usize,
        req: &RequestView,
        text: &str,
        nonce: &str,
        now: u64,
    ) -> Result<(Puzzle, String, Duration), Failure> {
        let s = self
            .sites
            .get(site)
            .ok_or(Failure::Puzzle(Rejected::OtherSite))?;
        let binding = self
            .binding(site, req)
            .ok_or(Failure::Puzzle(Rejected::OtherSite))?;
        let puzzle = Puzzle::open(&self.ring, text, &binding, now).map_err(Failure::Puzzle)?;
        let noscript = match puzzle.work {
            Work::Hash(bits) => {
                if !solves(text, nonce, bits) {
                    return Err(Failure::WrongNonce);
                }
                false
            }
            Work::Wait(_) => true,
        };
        if self.state.seen.hit(&puzzle.id, b"", now).level.is_some() {
            return Err(Failure::Replayed);
        }
        let secs = (now / 1000) as u32;
        // A wait (no JavaScript) earns a shorter clearance than a proof of work.
        let ttl = if noscript {
            s.clearance_ttl.min(Duration::from_secs(600))
        } else {
            s.clearance_ttl
        };
        let clearance = Clearance {
            identity: self.state.random_u64(),
            issued: secs,
            expires: secs.saturating_add(ttl.as_secs().min(u64::from(u32::MAX)) as u32),
            noscript,
            difficulty: match puzzle.work {
                Work::Hash(b) => b,
                Work::Wait(_) => 0,
            },
        };
        Ok((puzzle, clearance.mint(&self.ring, &binding), ttl))
    }
}

/// Answers `/.rampart/challenge/verify` and reads the clearance cookie of requests.
pub struct ChallengeStage {
    set: Arc<ChallengeSet>,
}

impl ChallengeStage {
    /// A stage over `set`.
    pub fn new(set: Arc<ChallengeSet>) -> Self {
        ChallengeStage { set }
    }
}

impl Stage for ChallengeStage {
    fn name(&self) -> &'static str {
        "challenge"
    }

    fn applies_to(&self, _cfg: &Config, req: &RequestView) -> bool {
        req.site.is_some()
    }

    fn on_request(&self, _cfg: &Config, req: &mut RequestView) -> Flow {
        if req.head.uri.path().starts_with(PREFIX) {
            if req.head.uri.path() == VERIFY {
                return Flow::Respond(self.set.answer(req));
            }
            return Flow::Respond(Reply::new(StatusCode::NOT_FOUND, "no such challenge path"));
        }
        self.set.check(req);
        Flow::Continue
    }
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    return Some(v.trim_matches('"').to_owned());
                }
            }
        }
    }
    None
}

/// `+` and `%XX` decoded (the policy's form decoding), as text.
fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&rampart_policy::request::form_decode(s.as_bytes())).into_owned()
}

fn std_b64(b: &[u8]) -> String {
    let mut s = b64_encode(b).replace('-', "+").replace('_', "/");
    while s.len() % 4 != 0 {
        s.push('=');
    }
    s
}

struct PageParts<'a> {
    puzzle: &'a str,
    wait: &'a str,
    wait_secs: u16,
    bits: u8,
    method: &'a str,
    ctype: &'a str,
    form: bool,
    body: Option<&'a [u8]>,
    lost_body: bool,
    note: Option<&'a str>,
    request_id: &'a str,
}

/// HTML-escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A JSON string literal safe inside a `<script>` element.
fn js_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '<' => o.push_str("\\u003c"),
            '>' => o.push_str("\\u003e"),
            '&' => o.push_str("\\u0026"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' => o.push_str("\\u2028"),
            '\u{2029}' => o.push_str("\\u2029"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn render_page(p: &PageParts<'_>) -> String {
    let body_json = p
        .body
        .map_or_else(|| "null".to_owned(), |b| js_str(&std_b64(b)));
    let data = format!(
        "{{\"p\":{},\"bits\":{},\"verify\":{},\"method\":{},\"ct\":{},\"form\":{},\"body\":{}}}",
        js_str(p.puzzle),
        p.bits,
        js_str(VERIFY),
        js_str(p.method),
        js_str(p.ctype),
        p.form && p.body.is_some(),
        body_json
    );
    // Without JavaScript: a form to the same answer endpoint with the wait puzzle; a
    // form post's fields travel again as hidden inputs.
    let resend = !matches!(p.method, "GET" | "HEAD");
    let mut fields = String::new();
    let noscript_form = if resend && p.form {
        if let Some(b) = p.body {
            for pair in String::from_utf8_lossy(b)
                .split('&')
                .filter(|s| !s.is_empty())
            {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                fields.push_str(&format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    esc(&percent_decode(k)),
                    esc(&percent_decode(v))
                ));
            }
        }
        format!(
            "<form method=\"post\" action=\"{}?p={}\">{fields}",
            VERIFY,
            esc(p.wait)
        )
    } else {
        format!(
            "<form method=\"get\" action=\"{VERIFY}\"><input type=\"hidden\" name=\"p\" value=\"{}\">",
            esc(p.wait)
        )
    };
    let lost = if p.lost_body || (resend && !p.form && p.body.is_some()) {
        "<p>The information you sent could not be kept without JavaScript: you may need to send it again.</p>"
    } else {
        ""
    };
    let lost_js = if p.lost_body {
        "<p>What you sent was too large to keep during this check: you may need to send it again afterwards.</p>"
    } else {
        ""
    };
    let note = p
        .note
        .map(|n| format!("<p class=\"note\">{}</p>", esc(n)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>Checking your connection</title>\
<style>body{{font-family:system-ui,sans-serif;margin:0;padding:2rem 1rem;color:#1a1a1a;background:#fff}}\
main{{max-width:34rem;margin:0 auto}}h1{{font-size:1.4rem}}progress{{width:100%;height:.6rem}}\
.small{{color:#555;font-size:.85rem}}.note{{font-weight:600}}button{{font-size:1rem;padding:.5rem 1.2rem}}\
@media (prefers-color-scheme:dark){{body{{background:#111;color:#eee}}.small{{color:#aaa}}}}</style></head>\
<body><main><h1>Checking your connection</h1>{note}\
<p id=\"rampart-status\" role=\"status\" aria-live=\"polite\">Your browser is doing a short calculation to show \
that it is not an automated program. It usually takes less than a second, and the page continues by itself.</p>\
<progress id=\"rampart-progress\" max=\"100\" value=\"0\" aria-hidden=\"true\"></progress>{lost_js}\
<noscript><p>This check normally runs a short script, which your browser did not run. You can continue \
without it: wait {wait} seconds, then press Continue.</p>{lost}{noscript_form}\
<button type=\"submit\">Continue</button></form></noscript>\
<p class=\"small\">No personal information is collected by this check. Request ID: {rid}</p></main>\
<script type=\"application/json\" id=\"rampart-challenge\">{data}</script>\
<script>{SCRIPT}</script></body></html>\n",
        wait = p.wait_secs,
        rid = esc(p.request_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_percent_decoding() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; rampart_clearance=tok-1_x"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("rampart_clearance=second"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tok-1_x"));
        assert_eq!(cookie(&h, "b"), None);
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn the_page_escapes_what_it_carries() {
        let page = render_page(&PageParts {
            puzzle: "P",
            wait: "W",
            wait_secs: 5,
            bits: 16,
            method: "POST",
            ctype: "application/x-www-form-urlencoded",
            form: true,
            body: Some(b"user=%3Cscript%3E&pw=a%22b"),
            lost_body: false,
            note: Some("<b>"),
            request_id: "r<1>",
        });
        assert!(page.contains("value=\"&lt;script&gt;\""), "{page}");
        assert!(page.contains("value=\"a&quot;b\""));
        assert!(page.contains("&lt;b&gt;"));
        assert!(page.contains("r&lt;1&gt;"));
        assert!(!page.contains("<script>alert"));
        // The data block cannot end its script element early.
        assert_eq!(js_str("</script>"), "\"\\u003c/script\\u003e\"");
        assert!(page.contains("action=\"/.rampart/challenge/verify?p=W\""));
        assert_eq!(std_b64(b"\xfb\xff"), "+/8=");
    }
}
