//! The WAF stage: each route's SecLang ruleset (normally the OWASP CRS) run over its
//! requests and responses, with a security event for every request that matched a rule.
//!
//! - **Load.** [`WafSet::build`] compiles one [`Ruleset`] per distinct route policy: a
//!   generated top-level file sets the engine up (body access and limit, JSON/XML body
//!   processors, paranoia level and anomaly thresholds as CRS variables), then includes
//!   the CRS setup file, the operator's exclusion files and declarative exclusions, and
//!   the rules. Any problem — a rule file that does not parse, a ruleset that cannot be
//!   used, an exclusion the rule language refuses — is a located diagnostic; the
//!   configuration is then refused and the running one keeps serving.
//! - **Phases.** Phase 1 runs on the request head, phase 2 on the body prefix the edge
//!   reads for the stage (up to the policy's `body_limit`; an empty body for requests
//!   without one), phase 3 on the response head, phase 4 on a prefix of the response body
//!   (up to `response_body_limit`, for text/plain, text/html and text/xml; read before
//!   anything of the response is sent, then sent whole), phase 5 when the request ends.
//! - **Decision.** A disruptive action (CRS's anomaly-score evaluation, 949110/959100)
//!   blocks with 403 and the block page in `enforce` mode; in `monitor` mode every phase
//!   still runs (as with `DetectionOnly`) and the event says `would_block`.
//! - **Events.** One JSON line per request with a match, written to the security log when
//!   the request's state is dropped (blocked, answered, or failed — never lost): Elastic
//!   Common Schema names where they exist, the rules with messages, tags and matched
//!   variable names, the matched data masked ([`mask`]), scores, mode and action.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::StatusCode;
use rampart_core::config::{
    Config, Diagnostic, Diagnostics, SourceFile, WafExclude, WafMode, WafPolicy, WafRuleSel,
};
use rampart_core::pipeline::{Flow, RawTarget, Reply, RequestView, SkipInspection, Stage};
use rampart_waf::engine::{RequestInfo, Ruleset, Transaction};
use rampart_waf::seclang::{self, MemFs, OverlayFs};
use serde_json::{Map, Value};

use std::borrow::Cow;

use rampart_core::decision::{Action, Mode, Source, Verdict};

use crate::accesslog::AccessLog;
use crate::event::SecurityEvent;

/// The compiled WAF of a route.
#[derive(Debug)]
pub struct RouteWaf {
    /// The policy it was built from.
    pub policy: Arc<WafPolicy>,
    /// The compiled rules.
    pub rules: Arc<Ruleset>,
}

/// Every route's WAF, by site and route index.
#[derive(Debug, Default)]
pub struct WafSet {
    routes: Vec<Vec<Option<Arc<RouteWaf>>>>,
    /// Route prefixes, by site and route, for events (shared, not copied per request).
    prefixes: Vec<Vec<Arc<str>>>,
}

impl WafSet {
    /// Compiles the rulesets of `config` (one per distinct policy). Paths are relative to
    /// the configuration file.
    pub fn build(src: &SourceFile, config: &Config) -> Result<WafSet, Diagnostics> {
        let mut compiled: HashMap<Arc<WafPolicy>, Arc<RouteWaf>> = HashMap::new();
        let mut failed: std::collections::HashSet<Arc<WafPolicy>> = Default::default();
        let mut diags = Diagnostics::default();
        let mut set = WafSet::default();
        for site in &config.sites {
            let mut routes = Vec::with_capacity(site.routes.len());
            for route in &site.routes {
                let Some(policy) = &route.waf else {
                    routes.push(None);
                    continue;
                };
                if let Some(done) = compiled.get(policy) {
                    routes.push(Some(done.clone()));
                    continue;
                }
                if failed.contains(policy) {
                    routes.push(None);
                    continue;
                }
                match compile(src, policy) {
                    Ok(rules) => {
                        let rw = Arc::new(RouteWaf {
                            policy: policy.clone(),
                            rules: Arc::new(rules),
                        });
                        compiled.insert(policy.clone(), rw.clone());
                        routes.push(Some(rw));
                    }
                    Err(d) => {
                        // Each failing policy is reported once.
                        diags.0.extend(d.0);
                        failed.insert(policy.clone());
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
            Err(diags)
        }
    }

    /// The WAF of a route.
    pub fn route(&self, site: usize, route: usize) -> Option<&Arc<RouteWaf>> {
        self.routes.get(site)?.get(route)?.as_ref()
    }

    /// Whether any route has a WAF.
    pub fn is_empty(&self) -> bool {
        self.routes.iter().flatten().all(Option::is_none)
    }
}

/// Rule ids of the generated set-up rules (outside CRS's 900000–999999 and ModSecurity's
/// recommended 200000–200007).
const SETUP_ID: u64 = 4_000_000;

/// The generated top-level file: engine settings, CRS variables, exclusions, rules.
/// Returns the text and, per line, the configuration position it stands for.
fn main_file(
    src: &SourceFile,
    p: &WafPolicy,
) -> Result<(String, Vec<Option<Diagnostic>>), Diagnostics> {
    let rules = crate::tls::resolve(src, &p.rules.0);
    let located = |span, msg: String, hint: &str| {
        Diagnostics::one(src.diagnostic(span, msg, None, Some(hint.to_owned())))
    };
    let meta = std::fs::metadata(&rules).map_err(|e| {
        located(
            p.rules.1,
            format!("cannot read WAF rules `{}`: {e}", rules.display()),
            "a CRS directory (with rules/ and crs-setup.conf) or a SecLang file",
        )
    })?;
    let mut lines: Vec<(String, Option<Diagnostic>)> = Vec::new();
    let mut add = |l: String, at: Option<Diagnostic>| lines.push((l, at));
    add("SecRuleEngine On".into(), None);
    add("SecRequestBodyAccess On".into(), None);
    add(format!("SecRequestBodyLimit {}", p.body_limit), None);
    add(format!("SecRequestBodyNoFilesLimit {}", p.body_limit), None);
    add("SecRequestBodyLimitAction ProcessPartial".into(), None);
    if p.response_body_limit > 0 {
        add("SecResponseBodyAccess On".into(), None);
        add(
            format!("SecResponseBodyLimit {}", p.response_body_limit),
            None,
        );
        add("SecResponseBodyLimitAction ProcessPartial".into(), None);
        add("SecResponseBodyMimeTypesClear".into(), None);
        add(
            "SecResponseBodyMimeType text/plain text/html text/xml".into(),
            None,
        );
    } else {
        add("SecResponseBodyAccess Off".into(), None);
    }
    add(
        format!(
            r#"SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\+|/)|text/)xml" "id:{},phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML""#,
            SETUP_ID + 1
        ),
        None,
    );
    add(
        format!(
            r#"SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:[a-z0-9.-]+[+])?json" "id:{},phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON""#,
            SETUP_ID + 2
        ),
        None,
    );
    // A body its processor cannot parse is refused (ModSecurity's recommended rule
    // 200002): otherwise a malformed body would hide its content from every rule.
    add(
        format!(
            r#"SecRule REQBODY_ERROR "!@eq 0" "id:{},phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{{reqbody_error_msg}}',severity:2""#,
            SETUP_ID + 5
        ),
        None,
    );
    let (setup, rule_glob) = if meta.is_dir() {
        let setup = ["crs-setup.conf", "crs-setup.conf.example"]
            .iter()
            .map(|n| rules.join(n))
            .find(|f| f.is_file());
        let glob = if rules.join("rules").is_dir() {
            rules.join("rules").join("*.conf")
        } else {
            rules.join("*.conf")
        };
        (setup, glob)
    } else {
        (None, rules.clone())
    };
    match &setup {
        Some(s) => add(format!("Include {}", quote(s)), None),
        // Without a setup file CRS refuses to run (rule 901001); say it was set up here.
        None => add(
            format!(
                r#"SecAction "id:{},phase:1,pass,nolog,t:none,setvar:tx.crs_setup_version=4280""#,
                SETUP_ID + 3
            ),
            None,
        ),
    }
    add(
        format!(
            r#"SecAction "id:{},phase:1,pass,nolog,t:none,setvar:tx.paranoia_level={pl},setvar:tx.blocking_paranoia_level={pl},setvar:tx.detection_paranoia_level={pl},setvar:tx.inbound_anomaly_score_threshold={inb},setvar:tx.outbound_anomaly_score_threshold={out}""#,
            SETUP_ID + 4,
            pl = p.paranoia_level,
            inb = p.inbound_threshold,
            out = p.outbound_threshold,
        ),
        None,
    );
    for (k, x) in p.exclude.iter().enumerate() {
        let at = Some(src.diagnostic(x.span, "this exclusion is not valid SecLang", None, None));
        add(exclusion(x, SETUP_ID + 100 + k as u64), at);
    }
    for (f, span) in &p.exclusion_files {
        let path = crate::tls::resolve(src, f);
        if !path.is_file() {
            return Err(located(
                *span,
                format!("cannot read WAF exclusion file `{}`", path.display()),
                "a SecLang file, relative to this configuration file",
            ));
        }
        add(format!("Include {}", quote(&path)), None);
    }
    add(format!("Include {}", quote(&rule_glob)), None);
    let mut text = String::new();
    let mut origins = Vec::new();
    for (l, at) in lines {
        text.push_str(&l);
        text.push('\n');
        origins.push(at);
    }
    Ok((text, origins))
}

fn quote(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// A declarative exclusion as a SecLang directive.
fn exclusion(x: &WafExclude, id: u64) -> String {
    let (by, sel) = match &x.rules {
        WafRuleSel::Id(n) => ("Id", n.to_string()),
        WafRuleSel::Tag(t) => ("Tag", t.replace('"', "\\\"")),
    };
    match (&x.path, &x.target) {
        (None, None) => format!("SecRuleRemoveBy{by} \"{sel}\""),
        (None, Some(t)) => format!("SecRuleUpdateTargetBy{by} \"{sel}\" \"!{t}\""),
        (Some(path), target) => {
            let ctl = match target {
                None => format!("ctl:ruleRemoveBy{by}={sel}"),
                Some(t) => format!("ctl:ruleRemoveTargetBy{by}={sel};{t}"),
            };
            format!(
                "SecRule REQUEST_FILENAME \"@beginsWith {}\" \"id:{id},phase:1,pass,nolog,t:none,{ctl}\"",
                path.replace('"', "\\\"")
            )
        }
    }
}

/// Loads and compiles one policy's ruleset.
fn compile(src: &SourceFile, p: &WafPolicy) -> Result<Ruleset, Diagnostics> {
    let (text, origins) = main_file(src, p)?;
    let main = virtual_path(src);
    let mut mem = MemFs::new();
    mem.insert(&main, text);
    let fs = OverlayFs(mem);
    let loaded = seclang::load(&fs, &main);
    let mut diags = Diagnostics::default();
    for d in &loaded.diagnostics {
        // A problem in the generated file is a problem of the exclusion it came from.
        if Path::new(&d.file) == main {
            match origins.get(d.line.saturating_sub(1)).cloned().flatten() {
                Some(mut at) => {
                    at.message = format!("this exclusion is not valid SecLang: {}", d.message);
                    at.expected.clone_from(&d.expected);
                    at.hint.clone_from(&d.hint);
                    diags.push(at);
                }
                None => diags.push(src.diagnostic(
                    p.rules.1,
                    format!("WAF set-up failed: {}", d.message),
                    None,
                    None,
                )),
            }
        } else {
            diags.push(d.clone());
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let rs = Ruleset::compile(&loaded, &fs);
    if !rs.errors.is_empty() {
        for e in &rs.errors {
            diags.push(src.diagnostic(
                p.rules.1,
                format!("the WAF ruleset cannot be used: {e}"),
                None,
                None,
            ));
        }
        return Err(diags);
    }
    for d in &rs.disabled {
        tracing::warn!(rule = d.id, origin = %d.origin, reason = %d.reason, "WAF rule does not run");
    }
    Ok(rs)
}

/// Where the generated file claims to be (beside the configuration; never written).
fn virtual_path(src: &SourceFile) -> PathBuf {
    let mut p = crate::tls::resolve(src, "rampart-waf-setup.conf");
    if p.exists() {
        p = p.with_file_name(".rampart-waf-setup.generated.conf");
    }
    p
}

/// The WAF stage. Holds the compiled rulesets of one configuration generation.
pub struct WafStage {
    set: Arc<WafSet>,
    events: AccessLog,
}

impl WafStage {
    /// A stage over `set`, writing events to `events`.
    pub fn new(set: Arc<WafSet>, events: AccessLog) -> Self {
        WafStage { set, events }
    }

    /// The WAF of the request's route, once the route is resolved.
    fn route_of(&self, req: &RequestView) -> Option<&Arc<RouteWaf>> {
        self.set.route(req.site?, req.route?)
    }
}

/// What the WAF keeps for a request between its hooks, inside the request's
/// [`SecurityEvent`] (which runs phase 5 and writes the event when dropped).
pub(crate) struct WafState {
    pub(crate) tx: Transaction<'static>,
    waf: Arc<RouteWaf>,
    /// The request was blocked (enforce) or would have been (monitor).
    decided: Option<(u64, u16)>,
    /// Phase 4 waits for the response body prefix.
    body_wanted: bool,
}

/// The WAF's state of a request, if the WAF ran on it.
fn state_mut(req: &mut RequestView) -> Option<&mut SecurityEvent> {
    req.state
        .get_mut::<SecurityEvent>()
        .filter(|e| e.waf.is_some())
}

/// Runs the WAF's decision and records it in the event's decision.
fn decide(ev: &mut SecurityEvent) -> Flow {
    let Some(w) = ev.waf.as_mut() else {
        return Flow::Continue;
    };
    let Some((rule, status)) = w.decide() else {
        return Flow::Continue;
    };
    let mode = match w.waf.policy.mode {
        WafMode::Enforce => Mode::Enforce,
        WafMode::Monitor => Mode::Monitor,
    };
    ev.decision.push(Verdict {
        source: Source::Waf,
        id: Cow::Owned(rule.to_string()),
        action: Action::Block { status, page: None },
        mode,
        reason: format!("anomaly score reached the threshold (rule {rule})"),
    });
    match mode {
        Mode::Monitor | Mode::Passed | Mode::Waived => Flow::Continue,
        Mode::Enforce => Flow::Respond(Reply::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            "the request was blocked by the web application firewall",
        )),
    }
}

/// A transaction of `waf` for a request, its head given (phase 1 not yet run).
pub fn start_transaction(
    waf: &RouteWaf,
    info: RequestInfo,
    method: &str,
    target: &str,
    version: http::Version,
    host: &str,
    headers: &http::HeaderMap,
) -> Transaction<'static> {
    let mut tx = Transaction::shared(waf.rules.clone(), info);
    let version = match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2.0",
        http::Version::HTTP_3 => "3.0",
        _ => "1.1",
    };
    tx.set_monitor(waf.policy.mode == WafMode::Monitor);
    tx.set_request_line(method.as_bytes(), target.as_bytes(), version);
    if !headers.contains_key(http::header::HOST) && !host.is_empty() {
        tx.add_request_header(b"Host", host.as_bytes());
    }
    for (name, value) in headers {
        tx.add_request_header(name.as_str().as_bytes(), value.as_bytes());
    }
    tx
}

/// The WAF's inbound anomaly score of the request (0 when the WAF did not run).
pub(crate) fn inbound_score(req: &RequestView) -> i64 {
    req.state
        .get::<SecurityEvent>()
        .and_then(|e| e.waf.as_ref())
        .map_or(0, |w| transaction_inbound_score(&w.tx))
}

/// A transaction's inbound anomaly score: CRS v4's name first, then CRS 3.3's.
pub fn transaction_inbound_score(tx: &Transaction<'_>) -> i64 {
    score_of(
        tx,
        &[
            "blocking_inbound_anomaly_score",
            "inbound_anomaly_score",
            "anomaly_score",
        ],
    )
}

/// The first of `names` the transaction's `TX` holds as a number, else 0.
fn score_of(tx: &Transaction<'_>, names: &[&str]) -> i64 {
    names
        .iter()
        .find_map(|n| {
            std::str::from_utf8(tx.tx_var(n)?)
                .ok()?
                .trim()
                .parse::<i64>()
                .ok()
        })
        .unwrap_or(0)
}

impl Stage for WafStage {
    fn name(&self) -> &'static str {
        "waf"
    }

    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow {
        let (Some(site), Some(route), Some(waf)) = (req.site, req.route, self.route_of(req)) else {
            return Flow::Continue;
        };
        let head = &req.head;
        // The target as received when the edge had to encode it for the URI.
        let target = match head.extensions.get::<RawTarget>() {
            Some(raw) => String::from_utf8_lossy(&raw.0).into_owned(),
            None => match head.uri.path_and_query() {
                Some(pq) if head.uri.scheme().is_none() => pq.as_str().to_owned(),
                _ => head.uri.to_string(),
            },
        };
        let mut tx = start_transaction(
            waf,
            RequestInfo {
                remote_addr: req.client_ip.to_string(),
                remote_port: req.conn.peer.port(),
                server_addr: req.conn.local.ip().to_string(),
                server_port: req.conn.local.port(),
                unique_id: req.request_id.clone(),
            },
            head.method.as_str(),
            &target,
            head.version,
            &req.host,
            &head.headers,
        );
        tx.process_request_headers();
        let state = WafState {
            tx,
            waf: waf.clone(),
            decided: None,
            body_wanted: false,
        };
        let route_name = self
            .set
            .prefixes
            .get(site)
            .and_then(|p| p.get(route))
            .cloned();
        let ev = SecurityEvent::of(req, cfg, &self.events, route_name);
        ev.waf = Some(state);
        decide(ev)
    }

    fn body_prefix_wanted(&self, _cfg: &Config, req: &RequestView) -> usize {
        // Asked for every request the WAF sees, so that phase 2 always runs (a request
        // without a body yields an empty prefix at once).
        self.route_of(req).map_or(0, |w| {
            usize::try_from(w.policy.body_limit)
                .unwrap_or(usize::MAX)
                .max(1)
        })
    }

    fn on_request_body(
        &self,
        _cfg: &Config,
        req: &mut RequestView,
        prefix: &[u8],
        _complete: bool,
    ) -> Flow {
        let Some(ev) = state_mut(req) else {
            return Flow::Continue;
        };
        // (A blocked request never gets here; in monitor mode every phase runs.)
        if let Some(w) = ev.waf.as_mut() {
            w.tx.process_request_body(prefix);
        }
        decide(ev)
    }

    fn inspects_responses(&self) -> bool {
        !self.set.is_empty()
    }

    fn applies_to(&self, _cfg: &Config, req: &RequestView) -> bool {
        self.route_of(req).is_some() && req.state.get::<SkipInspection>().is_none()
    }

    fn inspects_response_of(&self, _cfg: &Config, req: &RequestView) -> bool {
        // Only requests the WAF evaluated carry its state.
        req.state
            .get::<SecurityEvent>()
            .is_some_and(|e| e.waf.is_some())
    }

    fn on_response(
        &self,
        _cfg: &Config,
        req: &mut RequestView,
        resp: &mut http::response::Parts,
    ) -> Flow {
        let Some(ev) = state_mut(req) else {
            return Flow::Continue;
        };
        ev.response_status = Some(resp.status.as_u16());
        let headers: Vec<(Vec<u8>, Vec<u8>)> = resp
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let protocol = match resp.version {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        if let Some(w) = ev.waf.as_mut() {
            w.tx.process_response_headers(resp.status.as_u16(), protocol, &headers);
        }
        let flow = decide(ev);
        let Some(w) = ev.waf.as_mut() else {
            return flow;
        };
        if matches!(flow, Flow::Continue)
            && w.waf.policy.response_body_limit > 0
            && w.tx.response_body_inspected()
        {
            // Phase 4 runs when the edge has read the body prefix.
            w.body_wanted = true;
            return flow;
        }
        // No body to inspect: phase 4 on the head alone, so that CRS's outbound anomaly
        // evaluation sees what phase 3 found.
        w.tx.process_response_body(b"");
        match flow {
            Flow::Continue => decide(ev),
            respond => respond,
        }
    }

    fn response_body_prefix_wanted(
        &self,
        _cfg: &Config,
        req: &RequestView,
        _resp: &http::response::Parts,
    ) -> usize {
        // The state lives in the view, which this hook only reads: the decision was
        // taken in `on_response` (`body_wanted`), the limit is the route's.
        match self.route_of(req) {
            Some(w)
                if req
                    .state
                    .get::<SecurityEvent>()
                    .and_then(|e| e.waf.as_ref())
                    .is_some_and(|st| st.body_wanted) =>
            {
                usize::try_from(w.policy.response_body_limit).unwrap_or(usize::MAX)
            }
            _ => 0,
        }
    }

    fn on_response_body(
        &self,
        _cfg: &Config,
        req: &mut RequestView,
        prefix: &[u8],
        _complete: bool,
    ) -> Flow {
        let Some(ev) = state_mut(req) else {
            return Flow::Continue;
        };
        let Some(w) = ev.waf.as_mut() else {
            return Flow::Continue;
        };
        if !std::mem::take(&mut w.body_wanted) {
            return Flow::Continue;
        }
        w.tx.process_response_body(prefix);
        decide(ev)
    }
}

impl WafState {
    /// The engine's intervention (or, in monitor mode, the one it would make), the first
    /// time it asks for one: the deciding rule and the status.
    fn decide(&mut self) -> Option<(u64, u16)> {
        if self.decided.is_some() {
            // Monitor mode: noted once, the request goes on.
            return None;
        }
        let i = self.tx.intervention().or(self.tx.would_intervene())?;
        let status = if i.status >= 400 && i.status < 600 {
            i.status
        } else {
            403
        };
        self.decided = Some((i.rule_id, status));
        self.decided
    }

    /// Whether any rule matched.
    pub(crate) fn matched(&self) -> bool {
        !self.tx.matched_rules().is_empty()
    }

    /// A CRS score by the first of `names` the transaction has.
    fn score(&self, names: &[&str]) -> i64 {
        score_of(&self.tx, names)
    }

    /// Adds the WAF's part to an event: mode, level, scores, the deciding rule, and
    /// every matched rule (nothing when no rule matched).
    pub(crate) fn fill_event(&self, m: &mut Map<String, Value>) {
        let matched = self.tx.matched_rules();
        if matched.is_empty() {
            return;
        }
        let mode = self.waf.policy.mode;
        let s = |v: &str| Value::String(v.to_owned());
        if let Some((rule, status)) = self.decided {
            m.insert("rampart.waf.decided_by".into(), Value::from(rule));
            m.insert("rampart.waf.block_status".into(), Value::from(status));
        }
        m.insert(
            "rampart.waf.mode".into(),
            s(match mode {
                WafMode::Enforce => "enforce",
                WafMode::Monitor => "monitor",
            }),
        );
        m.insert(
            "rampart.waf.paranoia_level".into(),
            Value::from(self.waf.policy.paranoia_level),
        );
        // CRS v4 names first, then CRS 3.3's.
        let score = |names: &[&str]| self.score(names);
        m.insert(
            "rampart.waf.inbound_score".into(),
            Value::from(score(&[
                "blocking_inbound_anomaly_score",
                "inbound_anomaly_score",
                "anomaly_score",
            ])),
        );
        m.insert(
            "rampart.waf.outbound_score".into(),
            Value::from(score(&[
                "blocking_outbound_anomaly_score",
                "outbound_anomaly_score",
            ])),
        );
        let rules: Vec<Value> = matched
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("id".into(), Value::from(r.id));
                o.insert("phase".into(), Value::from(r.phase));
                o.insert("message".into(), s(&mask::text(&r.msg)));
                if let Some(sev) = r.severity {
                    o.insert("severity".into(), Value::from(sev));
                }
                o.insert(
                    "tags".into(),
                    Value::Array(r.tags.iter().map(|t| s(t)).collect()),
                );
                o.insert(
                    "matched_variables".into(),
                    Value::Array(r.matched_vars.iter().map(|v| s(v)).collect()),
                );
                if !r.logdata.is_empty() {
                    let sensitive = r.matched_vars.iter().any(|v| mask::sensitive_name(v));
                    let data = if sensitive {
                        mask::MASKED.to_owned()
                    } else {
                        mask::text(&r.logdata)
                    };
                    o.insert("matched_data".into(), s(&data));
                }
                Value::Object(o)
            })
            .collect();
        m.insert("rule".into(), Value::Array(rules));
    }
}

/// Masking of data before it leaves the edge in an event: card numbers (PAN), values of
/// sensitive variables (passwords, tokens, keys, `Authorization`, cookies), long excerpts.
pub mod mask {
    /// What replaces a masked value.
    pub const MASKED: &str = "[masked]";
    /// Excerpts are cut to this many characters.
    pub const MAX_EXCERPT: usize = 256;

    /// Whether a variable name (`ARGS:password`, `REQUEST_HEADERS:Authorization`,
    /// `REQUEST_COOKIES:session`) names data that must not be shown.
    pub fn sensitive_name(name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        if n.starts_with("request_cookies:") {
            return true;
        }
        let key = n.rsplit(':').next().unwrap_or(&n);
        [
            "pass",
            "pwd",
            "secret",
            "token",
            "auth",
            "session",
            "api_key",
            "apikey",
            "api-key",
            "credential",
            "cookie",
            "otp",
            "pin",
            "cvv",
            "cvc",
            "iban",
        ]
        .iter()
        .any(|w| key.contains(w))
    }

    /// Card numbers masked (all but the last four digits) and the text cut to
    /// [`MAX_EXCERPT`] characters.
    pub fn text(s: &str) -> String {
        let masked = mask_pans(s);
        if masked.chars().count() > MAX_EXCERPT {
            let mut cut: String = masked.chars().take(MAX_EXCERPT).collect();
            cut.push('…');
            cut
        } else {
            masked
        }
    }

    /// A query string with the values of sensitive parameters masked, and card numbers
    /// masked everywhere.
    pub fn query(q: &str) -> String {
        let parts: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if sensitive_name(k) => format!("{k}={MASKED}"),
                _ => pair.to_owned(),
            })
            .collect();
        text(&parts.join("&"))
    }

    /// Replaces the digits of every 13–19 digit run (spaces and dashes allowed between
    /// digits) that passes the Luhn check with `*`, except the last four.
    pub fn mask_pans(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = b.to_vec();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            // A run of digits with single separators.
            let start = i;
            let mut digits = Vec::new();
            let mut end = i;
            let mut j = i;
            while j < b.len() {
                if b[j].is_ascii_digit() {
                    digits.push(j);
                    end = j + 1;
                    j += 1;
                } else if (b[j] == b' ' || b[j] == b'-')
                    && j + 1 < b.len()
                    && b[j + 1].is_ascii_digit()
                    && !digits.is_empty()
                {
                    j += 1;
                } else {
                    break;
                }
            }
            if (13..=19).contains(&digits.len()) && luhn(digits.iter().map(|&k| b[k] - b'0')) {
                for &k in &digits[..digits.len() - 4] {
                    out[k] = b'*';
                }
            }
            i = end.max(start + 1);
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
        let sum: u32 = digits
            .rev()
            .enumerate()
            .map(|(i, d)| {
                let d = u32::from(d);
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 { x - 9 } else { x }
                } else {
                    d
                }
            })
            .sum();
        sum % 10 == 0
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn card_numbers_keep_only_their_last_four_digits() {
            assert_eq!(
                mask_pans("pan=4111111111111111 ok"),
                "pan=************1111 ok"
            );
            assert_eq!(mask_pans("4111 1111 1111 1111"), "**** **** **** 1111");
            assert_eq!(mask_pans("5500-0000-0000-0004."), "****-****-****-0004.");
            // Not a card: fails Luhn, or too short, or an id.
            assert_eq!(mask_pans("4111111111111112"), "4111111111111112");
            assert_eq!(mask_pans("order 123456789012"), "order 123456789012");
        }

        #[test]
        fn sensitive_variables_and_query_values_are_masked() {
            for n in [
                "ARGS:password",
                "ARGS_POST:user_pwd",
                "REQUEST_HEADERS:Authorization",
                "REQUEST_COOKIES:theme",
                "ARGS:access_token",
            ] {
                assert!(sensitive_name(n), "{n}");
            }
            for n in [
                "ARGS:q",
                "REQUEST_URI",
                "ARGS_NAMES:id",
                "REQUEST_HEADERS:User-Agent",
            ] {
                assert!(!sensitive_name(n), "{n}");
            }
            assert_eq!(
                query("q=1%27+or+1=1&password=hunter2&card=4111111111111111"),
                "q=1%27+or+1=1&password=[masked]&card=************1111"
            );
        }

        #[test]
        fn long_excerpts_are_cut() {
            let long = "a".repeat(1000);
            assert_eq!(text(&long).chars().count(), MAX_EXCERPT + 1);
        }
    }
}
