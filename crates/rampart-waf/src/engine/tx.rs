//! One HTTP exchange through the rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::compile::{CCtl, COp, CRule, Item, KeySel, Ruleset};
use super::prefilter::{ScanState, Source};
use super::txvars::{Member, TxVars};
use crate::macros::{MacroRef, Resolve};
use crate::operator::Captures;
use crate::seclang::{BodyProcessor, Disruptive, EngineMode, Transform, Var};
use crate::transform;

/// What the connection tells about the request (before any header).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Client address and port.
    pub remote_addr: String,
    /// Client port.
    pub remote_port: u16,
    /// Address the request arrived on.
    pub server_addr: String,
    /// Port the request arrived on.
    pub server_port: u16,
    /// The request id (`UNIQUE_ID`).
    pub unique_id: String,
}

/// A rule (chain) that matched and is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    /// Rule id.
    pub id: u64,
    /// Phase it ran in.
    pub phase: u8,
    /// `msg`, expanded.
    pub msg: String,
    /// `logdata`, expanded.
    pub logdata: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Severity (0–7), if set.
    pub severity: Option<u8>,
    /// Names of the matched variables (`ARGS:q`, `REQUEST_HEADERS:User-Agent`).
    pub matched_vars: Vec<String>,
    /// The rule file.
    pub file: String,
    /// The rule's line in it.
    pub line: u32,
}

/// A disruptive outcome the engine asks for (only with `SecRuleEngine On`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    /// HTTP status to answer with.
    pub status: u16,
    /// Close the connection without an answer.
    pub drop: bool,
    /// Where to redirect.
    pub redirect: Option<String>,
    /// The rule that decided.
    pub rule_id: u64,
}

/// A value of a variable. Request and response data is referred to where it is stored
/// (no copy); values computed for the test (`TX`, counts, sizes…) are owned.
#[derive(Debug)]
enum Val {
    /// The `index`th value of a source.
    Slot(Source, u32),
    /// (is a collection member, value, member key).
    Owned(bool, Vec<u8>, Vec<u8>),
    /// A numbered `TX` member, read where it is kept.
    Tx(u32),
}

/// What a rule tests: the variable, whether the value is a count (`&VAR`), and the value.
/// The display name (`ARGS:q`) is built only when the value matches.
struct Tested {
    var: Var,
    count: bool,
    val: Val,
}

/// Where a transformed slot value is: the value itself (the chain left it alone) or an
/// entry of the transaction's store.
#[derive(Debug, Clone, Copy)]
enum Cached {
    Raw,
    Stored(u32),
}

/// A hasher for the packed integer keys of the transformation cache.
#[derive(Default)]
struct PackedHasher(u64);

impl std::hash::Hasher for PackedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PackedMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<PackedHasher>>;

fn pack(chain: usize, source: Source, index: u32) -> u64 {
    ((chain as u64) << 40) | ((source as u64) << 32) | u64::from(index)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgSource {
    Get,
    Post,
    /// JSON bodies: in ARGS, not in ARGS_POST (as in ModSecurity).
    Json,
}

/// What a finished transaction leaves for the next one on the same thread: its buffers,
/// emptied, with their capacity (a transaction otherwise makes ~100 small allocations,
/// most of them `TX` values and the prefilter's tables).
#[derive(Default)]
struct Spare {
    tx: TxVars,
    scratch_setvar: Vec<u8>,
    scratch_tested: Vec<Tested>,
    scratch_vals: Vec<Val>,
    scan: ScanState,
}

/// How many spares a thread keeps (transactions in flight on one thread at once).
const SPARES: usize = 8;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Spare>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One request (and its response) evaluated against a [`Ruleset`].
pub struct Transaction<'r> {
    rs: Rules<'r>,
    engine: EngineMode,
    info: RequestInfo,
    // Request.
    pub(super) method: Vec<u8>,
    pub(super) uri_raw: Vec<u8>,
    pub(super) request_uri: Vec<u8>,
    pub(super) request_line: Vec<u8>,
    pub(super) protocol: Vec<u8>,
    pub(super) query_string: Option<Vec<u8>>,
    pub(super) filename: Vec<u8>,
    pub(super) basename: Option<Vec<u8>>,
    pub(super) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) cookies: Vec<(Vec<u8>, Vec<u8>)>,
    args: Vec<(ArgSource, Vec<u8>, Vec<u8>)>,
    pub(super) args_combined: usize,
    pub(super) urlencoded_error: bool,
    pub(super) request_body: Option<Vec<u8>>,
    pub(super) reqbody_processor: Option<BodyProcessor>,
    pub(super) reqbody_error: Option<String>,
    pub(super) xml: Option<crate::body::XmlValues>,
    pub(super) multipart: Option<crate::body::MultipartData>,
    pub(super) auth_type: Option<Vec<u8>>,
    request_body_access: bool,
    force_body_variable: bool,
    // Response.
    pub(super) status: Option<u16>,
    pub(super) response_protocol: Vec<u8>,
    pub(super) response_headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) response_body: Option<Vec<u8>>,
    // State.
    /// `TX`: numbered names in a table, names made at run time by name.
    pub(super) tx: TxVars,
    /// The buffer `setvar` expands into (it becomes a `TX` value; the value it replaces
    /// comes back as the next buffer).
    scratch_setvar: Vec<u8>,
    pub(super) env: BTreeMap<String, Vec<u8>>,
    pub(super) matched_var: Option<(String, Vec<u8>)>,
    /// While learning outcomes at load ([`learn`]): per rule, what was seen.
    learning: Option<Vec<Option<Learnt>>>,
    pub(super) matched_vars: Vec<(String, Vec<u8>)>,
    pub(super) highest_severity: Option<u8>,
    /// Rules removed by `ctl` (per rule index; empty until the first removal).
    removed: Vec<bool>,
    /// `ctl:ruleRemoveTarget*` in force: (rule index, index in its `cctls`).
    removed_targets: Vec<(usize, usize)>,
    current_rule: Option<usize>,
    matched: Vec<MatchedRule>,
    intervention: Option<Intervention>,
    /// Monitor mode: disruptive actions are noted here and do not stop evaluation.
    monitor: bool,
    would_intervene: Option<Intervention>,
    allow_request: bool,
    /// Transformation results per (chain, slot).
    tcache: PackedMap<Cached>,
    /// Buffers of `eval_rule`, kept between rules.
    scratch_tested: Vec<Tested>,
    scratch_vals: Vec<Val>,
    tstore: Vec<Vec<u8>>,
    /// What the literal prefilter has seen.
    scan: ScanState,
}

/// The ruleset a transaction runs: borrowed (tests, benchmarks, the suite runner) or
/// shared (the edge, where a transaction outlives the call that started it).
#[derive(Clone)]
enum Rules<'r> {
    Borrowed(&'r Ruleset),
    Shared(Arc<Ruleset>),
}

impl std::ops::Deref for Rules<'_> {
    type Target = Ruleset;
    fn deref(&self) -> &Ruleset {
        match self {
            Rules::Borrowed(r) => r,
            Rules::Shared(r) => r,
        }
    }
}

impl Transaction<'static> {
    /// A transaction that holds its ruleset (for a caller that keeps it between calls).
    pub fn shared(rs: Arc<Ruleset>, info: RequestInfo) -> Self {
        Transaction::with(Rules::Shared(rs), info)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let mut spare = Spare {
            tx: std::mem::take(&mut self.tx),
            scratch_setvar: std::mem::take(&mut self.scratch_setvar),
            scratch_tested: std::mem::take(&mut self.scratch_tested),
            scratch_vals: std::mem::take(&mut self.scratch_vals),
            scan: std::mem::take(&mut self.scan),
        };
        spare.tx.reset();
        spare.scratch_setvar.clear();
        spare.scratch_tested.clear();
        spare.scratch_vals.clear();
        spare.scan.reset();
        // (During a thread's teardown there is no pool any more: the spare is dropped.)
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.len() < SPARES {
                    s.push(spare);
                }
            }
        });
    }
}

impl<'r> Transaction<'r> {
    /// A new transaction on `rs`.
    pub fn new(rs: &'r Ruleset, info: RequestInfo) -> Self {
        Transaction::with(Rules::Borrowed(rs), info)
    }

    fn with(rs: Rules<'r>, info: RequestInfo) -> Self {
        let spare = SPARE
            .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
            .ok()
            .flatten()
            .unwrap_or_default();
        Transaction {
            engine: rs.settings.engine,
            request_body_access: rs.settings.request_body_access,
            info,
            method: Vec::new(),
            uri_raw: Vec::new(),
            request_uri: Vec::new(),
            request_line: Vec::new(),
            protocol: Vec::new(),
            query_string: None,
            filename: Vec::new(),
            basename: None,
            headers: Vec::new(),
            cookies: Vec::new(),
            args: Vec::new(),
            args_combined: 0,
            urlencoded_error: false,
            request_body: None,
            reqbody_processor: None,
            reqbody_error: None,
            xml: None,
            multipart: None,
            auth_type: None,
            force_body_variable: false,
            status: None,
            response_protocol: Vec::new(),
            response_headers: Vec::new(),
            response_body: None,
            tx: spare.tx,
            scratch_setvar: spare.scratch_setvar,
            env: BTreeMap::new(),
            matched_var: None,
            learning: None,
            matched_vars: Vec::new(),
            highest_severity: None,
            removed: Vec::new(),
            removed_targets: Vec::new(),
            current_rule: None,
            matched: Vec::new(),
            intervention: None,
            monitor: false,
            would_intervene: None,
            allow_request: false,
            tcache: PackedMap::default(),
            scratch_tested: spare.scratch_tested,
            scratch_vals: spare.scratch_vals,
            rs,
            tstore: Vec::new(),
            scan: spare.scan,
        }
    }

    /// The request line: method, request target as received, and version (`1.1`).
    pub fn set_request_line(&mut self, method: &[u8], uri: &[u8], version: &str) {
        self.method = method.to_vec();
        self.uri_raw = uri.to_vec();
        self.protocol = format!("HTTP/{version}").into_bytes();
        let mut line = method.to_vec();
        line.push(b' ');
        line.extend_from_slice(uri);
        line.push(b' ');
        line.extend_from_slice(&self.protocol);
        self.request_line = line;
        // The fragment stays only in the raw forms.
        let no_fragment = match uri.iter().position(|&c| c == b'#') {
            Some(p) => &uri[..p],
            None => uri,
        };
        let (path_raw, query) = match no_fragment.iter().position(|&c| c == b'?') {
            Some(p) => (&no_fragment[..p], Some(&no_fragment[p + 1..])),
            None => (no_fragment, None),
        };
        let mut path = Vec::with_capacity(path_raw.len());
        transform::percent_decode(path_raw, false, &mut path);
        self.basename = path
            .iter()
            .rposition(|&c| c == b'/' || c == b'\\')
            .filter(|&p| p + 1 < path.len())
            .map(|p| path[p + 1..].to_vec());
        self.filename = path;
        let mut decoded = Vec::with_capacity(no_fragment.len());
        transform::percent_decode(no_fragment, false, &mut decoded);
        self.request_uri = strip_scheme_host(&decoded).to_vec();
        self.query_string = query.map(<[u8]>::to_vec);
        if let Some(q) = query {
            if !q.is_empty() {
                self.extract_args(ArgSource::Get, q);
            }
        }
    }

    /// Adds a request header field (in arrival order, name as sent).
    pub fn add_request_header(&mut self, name: &[u8], value: &[u8]) {
        self.headers.push((name.to_vec(), value.to_vec()));
        if name.eq_ignore_ascii_case(b"authorization") {
            self.auth_type = Some(value.split(|&c| c == b' ').next().unwrap_or(b"").to_vec());
        }
        if name.eq_ignore_ascii_case(b"cookie") {
            self.parse_cookies(value);
        }
        if name.eq_ignore_ascii_case(b"content-type") && self.reqbody_processor.is_none() {
            let l = value.to_ascii_lowercase();
            if l.starts_with(b"multipart/form-data") {
                self.reqbody_processor = Some(BodyProcessor::Multipart);
            } else if l.starts_with(b"application/x-www-form-urlencoded") {
                self.reqbody_processor = Some(BodyProcessor::UrlEncoded);
            }
        }
    }

    fn parse_cookies(&mut self, value: &[u8]) {
        let mut parts: Vec<&[u8]> = getline_split(value, b';');
        if let Some(last) = parts.last_mut() {
            *last = trim_end_space(last);
        }
        for c in parts {
            if c.is_empty() {
                continue;
            }
            let (k, v) = match c.iter().position(|&x| x == b'=') {
                Some(p) => (&c[..p], &c[p + 1..]),
                None => (c, &b""[..]),
            };
            let k = &k[k
                .iter()
                .take_while(|x| x.is_ascii_whitespace() || **x == 0x0b)
                .count()..];
            if k.is_empty() {
                continue;
            }
            self.cookies.push((k.to_vec(), v.to_vec()));
        }
    }

    fn extract_args(&mut self, source: ArgSource, data: &[u8]) {
        let sep = self.rs.settings.argument_separator;
        for pair in getline_split(data, sep) {
            let (k, v) = match pair.iter().position(|&c| c == b'=') {
                Some(p) => (&pair[..p], &pair[p + 1..]),
                None => (pair, &b""[..]),
            };
            let mut key = Vec::new();
            transform::url_decode(k, &mut key);
            let mut val = Vec::new();
            transform::url_decode(v, &mut val);
            // ModSecurity keeps the invalid count of the value's decoding only.
            if !crate::operator::valid_url_encoding(v) {
                self.urlencoded_error = true;
            }
            if let Some(limit) = self.rs.settings.arguments_limit {
                if self.args.len() as u64 >= limit {
                    return;
                }
            }
            self.args_combined += key.len() + val.len();
            self.args.push((source, key, val));
        }
    }

    /// Runs phase 1 (request headers).
    pub fn process_request_headers(&mut self) {
        self.run_phase(1);
    }

    /// Stores the request body (as much as was read) and runs phase 2.
    pub fn process_request_body(&mut self, body: &[u8]) {
        if self.engine != EngineMode::Off && self.request_body_access {
            match self.reqbody_processor {
                Some(BodyProcessor::UrlEncoded) => self.extract_args(ArgSource::Post, body),
                Some(BodyProcessor::Json) => {
                    let depth = self.rs.settings.json_depth_limit.unwrap_or(10_000);
                    let parsed =
                        crate::body::json_args(body, usize::try_from(depth).unwrap_or(usize::MAX));
                    for (k, v) in parsed.args {
                        if let Some(limit) = self.rs.settings.arguments_limit {
                            if self.args.len() as u64 >= limit {
                                break;
                            }
                        }
                        self.args_combined += k.len() + v.len();
                        self.args.push((ArgSource::Json, k, v));
                    }
                    if !body.is_empty() {
                        self.reqbody_error = parsed.error;
                    }
                }
                Some(BodyProcessor::Xml) => {
                    let x = crate::body::xml_values(body);
                    self.reqbody_error.clone_from(&x.error);
                    self.xml = Some(x);
                }
                Some(BodyProcessor::Multipart) => {
                    let ct = self
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    let m = crate::body::multipart(&ct, body);
                    for (k, v) in &m.args {
                        self.args_combined += k.len() + v.len();
                        self.args.push((ArgSource::Post, k.clone(), v.clone()));
                    }
                    self.reqbody_error = m
                        .error
                        .as_ref()
                        .map(|e| format!("Multipart parsing error: {e}"));
                    self.multipart = Some(m);
                }
                None => {}
            }
            // REQUEST_BODY as CRS's suite expects it: ModSecurity v3 sets it for every
            // body, which makes rules with REQUEST_BODY among their targets fire on XML
            // element names (CRS lists those tests as libmodsecurity3 deviations), so
            // XML bodies are the exception unless a rule forces the variable
            // (ctl:forceRequestBodyVariable). JSON keeps it: CRS rules such as 934210
            // look for `"key":` in the raw JSON.
            let raw_wanted =
                self.reqbody_processor != Some(BodyProcessor::Xml) || self.force_body_variable;
            if !body.is_empty() && raw_wanted {
                self.request_body = Some(body.to_vec());
            }
        }
        self.run_phase(2);
    }

    /// Stores the response status and headers and runs phase 3.
    pub fn process_response_headers(
        &mut self,
        status: u16,
        protocol: &str,
        headers: &[(Vec<u8>, Vec<u8>)],
    ) {
        self.status = Some(status);
        self.response_protocol = protocol.as_bytes().to_vec();
        self.response_headers = headers.to_vec();
        self.run_phase(3);
    }

    /// Stores the response body (a bounded prefix) and runs phase 4.
    pub fn process_response_body(&mut self, body: &[u8]) {
        if self.rs.settings.response_body_access && self.response_body_inspected() {
            let limit = usize::try_from(self.rs.settings.response_body_limit).unwrap_or(usize::MAX);
            self.response_body = Some(body[..body.len().min(limit)].to_vec());
        }
        self.run_phase(4);
    }

    /// Whether the response's media type is one `SecResponseBodyMimeType` lists (a
    /// response without Content-Type is not inspected, as in ModSecurity).
    pub fn response_body_inspected(&self) -> bool {
        let Some((_, ct)) = self
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
        else {
            return false;
        };
        let media = ct
            .split(|&c| c == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii()
            .to_ascii_lowercase();
        self.rs
            .settings
            .response_body_mime_types
            .iter()
            .any(|t| t.as_bytes() == media.as_slice())
    }

    /// Runs phase 5 (logging).
    pub fn process_logging(&mut self) {
        self.run_phase(5);
    }

    /// The rules that matched and are logged, in order.
    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.matched
    }

    /// What the engine asks the edge to do, if anything.
    pub fn intervention(&self) -> Option<&Intervention> {
        self.intervention.as_ref()
    }

    /// Monitor mode: a disruptive action does not stop the transaction (every phase
    /// runs, as with `SecRuleEngine DetectionOnly`), but the first one is kept and
    /// reported by [`Transaction::would_intervene`].
    pub fn set_monitor(&mut self, on: bool) {
        self.monitor = on;
    }

    /// In monitor mode, what the engine would have asked for first.
    pub fn would_intervene(&self) -> Option<&Intervention> {
        self.would_intervene.as_ref()
    }

    /// A TX variable (lower-case name), for tests and events (anomaly scores).
    pub fn tx_var(&self, name: &str) -> Option<&[u8]> {
        self.tx.get_named(&self.rs.tx_names, name)
    }

    fn run_phase(&mut self, phase: u8) {
        if self.engine == EngineMode::Off || self.intervention.is_some() {
            return;
        }
        if self.allow_request && phase <= 2 {
            return;
        }
        let rs = self.rs.clone();
        let rs = &*rs;
        self.scan_new_values();
        let prog = &rs.phases[usize::from(phase - 1)];
        let mut k = 0;
        while k < prog.len() {
            let Item::Rule(ci) = prog[k] else {
                k += 1;
                continue;
            };
            let rule = &rs.rules[ci];
            if rs.prefilter.skips(&self.scan, ci) || self.removed.get(ci).copied().unwrap_or(false)
            {
                k += 1;
                continue;
            }
            self.matched_vars.clear();
            if !self.decide(rs, ci) {
                k += 1;
                continue;
            }
            // The whole chain matched: the remaining actions of every link.
            let mut link = Some(ci);
            let mut names = Vec::new();
            while let Some(l) = link {
                self.run_ctls(rs, l);
                link = rs.rules[l].next;
            }
            names.extend(self.matched_vars.iter().map(|(n, _)| n.clone()));
            self.current_rule = Some(ci);
            if let Some(s) = rule.severity {
                self.highest_severity = Some(self.highest_severity.map_or(s, |h| h.min(s)));
            }
            if rule.log {
                let msg = rule
                    .msg
                    .as_ref()
                    .map(|m| String::from_utf8_lossy(&m.expand(self)).into_owned())
                    .unwrap_or_default();
                let logdata = rule
                    .logdata
                    .as_ref()
                    .map(|m| String::from_utf8_lossy(&m.expand(self)).into_owned())
                    .unwrap_or_default();
                self.matched.push(MatchedRule {
                    id: rule.id,
                    phase,
                    msg,
                    logdata,
                    tags: rule.tags.clone(),
                    severity: rule.severity,
                    matched_vars: names,
                    file: rule.origin.file.to_string(),
                    line: rule.origin.line,
                });
            }
            self.current_rule = None;
            match &rule.disruptive {
                Disruptive::Pass | Disruptive::Block => {}
                Disruptive::Allow(scope) => {
                    match scope.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        Some("phase") => return,
                        Some("request") => {
                            self.allow_request = true;
                            return;
                        }
                        _ => {
                            self.allow_request = true;
                            self.engine = EngineMode::Off;
                            return;
                        }
                    }
                }
                d @ (Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect(_)) => {
                    if self.engine == EngineMode::On {
                        let i = Intervention {
                            status: rule.status.unwrap_or(
                                if matches!(d, Disruptive::Redirect(_)) {
                                    302
                                } else {
                                    403
                                },
                            ),
                            drop: matches!(d, Disruptive::Drop),
                            redirect: match d {
                                Disruptive::Redirect(u) => Some(u.clone()),
                                _ => None,
                            },
                            rule_id: rule.id,
                        };
                        if self.monitor {
                            // Noted, and evaluation goes on as in DetectionOnly.
                            self.would_intervene.get_or_insert(i);
                        } else {
                            self.intervention = Some(i);
                            return;
                        }
                    }
                }
                Disruptive::Proxy(_) | Disruptive::Pause(_) => {}
            }
            if let Some(to) = rule.skip_to {
                k = to;
                continue;
            }
            k += 1 + rule.skip as usize;
        }
    }

    /// Feeds the values that appeared since the last phase to the prefilter.
    fn scan_new_values(&mut self) {
        let pf = &self.rs.prefilter;
        if !pf.active() {
            return;
        }
        let st = &mut self.scan;
        let idx = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        for (i, (_, k, v)) in self.args.iter().enumerate().skip(st.args) {
            pf.scan(st, Source::ArgValue, idx(i), v);
            pf.scan(st, Source::ArgName, idx(i), k);
        }
        st.args = self.args.len();
        for (i, (k, v)) in self.headers.iter().enumerate().skip(st.headers) {
            pf.scan_header(st, idx(i), k, v);
            pf.scan(st, Source::HeaderName, idx(i), k);
        }
        st.headers = self.headers.len();
        for (i, (k, v)) in self.cookies.iter().enumerate().skip(st.cookies) {
            pf.scan(st, Source::CookieValue, idx(i), v);
            pf.scan(st, Source::CookieName, idx(i), k);
        }
        st.cookies = self.cookies.len();
        for (i, (k, v)) in self
            .response_headers
            .iter()
            .enumerate()
            .skip(st.response_headers)
        {
            pf.scan(st, Source::ResponseHeaderValue, idx(i), v);
            pf.scan(st, Source::ResponseHeaderName, idx(i), k);
        }
        st.response_headers = self.response_headers.len();
        if st.scalar_pending(Source::Method) {
            pf.scan(st, Source::Method, 0, &self.method);
            pf.scan(st, Source::UriRaw, 0, &self.uri_raw);
            pf.scan(st, Source::Uri, 0, &self.request_uri);
            pf.scan(st, Source::Line, 0, &self.request_line);
            pf.scan(st, Source::Protocol, 0, &self.protocol);
            pf.scan(
                st,
                Source::Query,
                0,
                self.query_string.as_deref().unwrap_or_default(),
            );
            pf.scan(st, Source::Filename, 0, &self.filename);
            pf.scan(
                st,
                Source::Basename,
                0,
                self.basename.as_deref().unwrap_or_default(),
            );
        }
        if let Some(body) = &self.request_body {
            if st.scalar_pending(Source::Body) {
                pf.scan(st, Source::Body, 0, body);
            }
        }
        if let Some(x) = &self.xml {
            if st.scalar_pending(Source::XmlText) {
                pf.scan(
                    st,
                    Source::XmlText,
                    0,
                    x.text.as_deref().unwrap_or_default(),
                );
                for (i, a) in x.attributes.iter().enumerate() {
                    pf.scan(st, Source::XmlAttr, idx(i), a);
                }
            }
        }
        if let Some(m) = &self.multipart {
            if st.scalar_pending(Source::PartHeader) {
                for (i, (field, filename, _)) in m.files.iter().enumerate() {
                    pf.scan(st, Source::FileName, idx(i), filename);
                    pf.scan(st, Source::FileField, idx(i), field);
                }
                for (i, n) in m.names.iter().enumerate() {
                    pf.scan(st, Source::MultipartName, idx(i), n);
                }
                for (i, f) in m.filenames.iter().enumerate() {
                    pf.scan(st, Source::MultipartFilename, idx(i), f);
                }
                for (i, (_, v)) in m.part_headers.iter().enumerate() {
                    pf.scan(st, Source::PartHeader, idx(i), v);
                }
            }
        }
        if self.status.is_some() && st.scalar_pending(Source::ResponseProtocol) {
            pf.scan(st, Source::ResponseProtocol, 0, &self.response_protocol);
        }
        if let Some(body) = &self.response_body {
            if st.scalar_pending(Source::ResponseBody) {
                pf.scan(st, Source::ResponseBody, 0, body);
            }
        }
        st.settle();
    }

    /// Evaluates one rule and, if it matches, the rest of its chain.
    /// Whether rule `ci` (a chain's first) matches: its outcome learnt at load when the
    /// `TX` values it reads are the ones it was learnt with, else evaluated.
    fn decide(&mut self, rs: &Ruleset, ci: usize) -> bool {
        let rule = &rs.rules[ci];
        if let Some(m) = rs.memo.get(ci) {
            if !self.has_removed_targets(ci) && rs.memo.holds(m, &self.tx) {
                if m.outcome {
                    if let Some((name, value)) = &m.matched_var {
                        self.set_matched_var(name, value);
                    }
                    if !rule.setvars.is_empty() {
                        // What a match does besides MATCHED_VAR (the rule's one value
                        // matched once): its `setvar`s, run now.
                        self.current_rule = Some(ci);
                        self.run_setvars(rule);
                    }
                }
                return m.outcome;
            }
        }
        // While learning: the inputs as the rule sees them (its `setvar`s may change them).
        let inputs = match &self.learning {
            Some(l) if l.get(ci).is_some_and(Option::is_none) && !self.has_removed_targets(ci) => {
                Memo::inputs(rule)
                    .or_else(|| Memo::head_inputs(rule))
                    .map(|ids| {
                        let values = ids
                            .iter()
                            .map(|&id| self.tx.get(id).map(<[u8]>::to_vec))
                            .collect();
                        (ids, values)
                    })
            }
            _ => None,
        };
        let outcome = self.eval_rule(rs, ci);
        // A chain's head is learnt only when it did not match (nothing ran).
        let learnable = rule.next.is_none() || (!outcome && self.matched_vars.is_empty());
        if let (Some((ids, values)), Some(learning), true) =
            (inputs, self.learning.as_mut(), learnable)
        {
            learning[ci] = Some(Learnt {
                values,
                ids,
                outcome,
                matched_var: if outcome {
                    self.matched_var.clone()
                } else {
                    None
                },
            });
        }
        outcome
    }

    fn eval_rule(&mut self, rs: &Ruleset, ci: usize) -> bool {
        let rule = &rs.rules[ci];
        self.current_rule = Some(ci);
        let Some(op) = &rule.operator else {
            // SecAction: always matches.
            self.run_setvars(rule);
            return match rule.next {
                Some(n) => self.eval_rule(rs, n),
                None => true,
            };
        };
        // Buffers reused from rule to rule (a chain's next link finds them empty).
        let mut values = std::mem::take(&mut self.scratch_tested);
        let mut vals = std::mem::take(&mut self.scratch_vals);
        values.clear();
        self.collect(ci, &mut values, &mut vals);
        self.scratch_vals = vals;
        let mut any = false;
        // A parameter with macros is expanded once, and again only after a match (whose
        // `setvar`s may change what it reads).
        let mut expanded: Option<Option<Vec<u8>>> = None;
        for target in values.drain(..) {
            if rule.multi_match {
                // Most values are left as they are by every step: then the operator sees
                // the value alone, tested in place.
                let untouched = {
                    let raw = self.val_value(&target.val);
                    let has = transform::ByteSet::of(raw);
                    if rule
                        .transforms
                        .iter()
                        .all(|&t| transform::unchanged_exactly(t, raw, &has))
                    {
                        let mut caps = rule.capture.then(Captures::new);
                        let param = expanded.get_or_insert_with(|| op.expand(self));
                        Some(
                            op.matches_expanded(raw, param.as_deref(), caps.as_mut())
                                .then(|| (raw.to_vec(), caps)),
                        )
                    } else {
                        None
                    }
                };
                if let Some(hit) = untouched {
                    if let Some((tv, caps)) = hit {
                        self.on_match(rs, ci, &target, tv, caps);
                        expanded = None;
                        any = true;
                    }
                    continue;
                }
                let value = self.val_value(&target.val).to_vec();
                let mut candidates = vec![value.clone()];
                let mut cur = value;
                let mut out = Vec::new();
                for &t in &rule.transforms {
                    transform::apply(t, &cur, &mut out);
                    if out != cur {
                        candidates.push(out.clone());
                    }
                    std::mem::swap(&mut cur, &mut out);
                }
                for tv in candidates {
                    any |= self.test_value(rs, ci, op, &target, &tv);
                }
                continue;
            }
            let owned;
            let tv: &[u8] = match &target.val {
                Val::Slot(src, i) => match self.transformed_slot(rule, *src, *i) {
                    Cached::Raw => self.slot(*src, *i).0,
                    Cached::Stored(k) => &self.tstore[k as usize],
                },
                Val::Owned(_, v, _) if rule.transforms.is_empty() => v,
                Val::Owned(_, v, _) => {
                    owned = apply_chain(&rule.transforms, v);
                    &owned
                }
                Val::Tx(id) if rule.transforms.is_empty() => self.tx.get(*id).unwrap_or_default(),
                Val::Tx(id) => {
                    owned = apply_chain(&rule.transforms, self.tx.get(*id).unwrap_or_default());
                    &owned
                }
            };
            let mut caps = rule.capture.then(Captures::new);
            let param = expanded.get_or_insert_with(|| op.expand(self));
            if !op.matches_expanded(tv, param.as_deref(), caps.as_mut()) {
                continue;
            }
            let tv = tv.to_vec();
            self.on_match(rs, ci, &target, tv, caps);
            expanded = None;
            any = true;
        }
        self.scratch_tested = values;
        if !any {
            return false;
        }
        match rule.next {
            Some(n) => self.eval_rule(rs, n),
            None => true,
        }
    }

    /// Tests one (already transformed) value; on a match, records it.
    fn test_value(
        &mut self,
        rs: &Ruleset,
        ci: usize,
        op: &crate::operator::Operator,
        target: &Tested,
        tv: &[u8],
    ) -> bool {
        let rule = &rs.rules[ci];
        let mut caps = rule.capture.then(Captures::new);
        if !op.matches(tv, self, caps.as_mut()) {
            return false;
        }
        self.on_match(rs, ci, target, tv.to_vec(), caps);
        true
    }

    /// A value matched: captures, `MATCHED_VAR(S)` and the rule's `setvar`s.
    fn on_match(
        &mut self,
        rs: &Ruleset,
        ci: usize,
        target: &Tested,
        tv: Vec<u8>,
        caps: Option<Captures>,
    ) {
        if let Some(caps) = caps {
            for (i, bytes) in caps {
                match u32::try_from(i) {
                    // Groups 0…9 are the first numbered names.
                    Ok(g) if g < super::txvars::CAPTURES => {
                        self.tx.put(g, bytes);
                    }
                    _ => self.tx.put_named(&self.rs.tx_names, i.to_string(), bytes),
                }
            }
        }
        let name = self.name_of(target);
        self.set_matched_var(&name, &tv);
        self.matched_vars.push((name, tv));
        self.current_rule = Some(ci);
        self.run_setvars(&rs.rules[ci]);
    }

    /// `MATCHED_VAR` and its name, written into the buffers of the previous one.
    fn set_matched_var(&mut self, name: &str, value: &[u8]) {
        match &mut self.matched_var {
            Some((n, v)) => {
                n.clear();
                n.push_str(name);
                v.clear();
                v.extend_from_slice(value);
            }
            None => self.matched_var = Some((name.to_owned(), value.to_vec())),
        }
    }

    /// The display name of a tested value: `ARGS:q`, `REQUEST_URI`, `&ARGS`.
    fn name_of(&self, t: &Tested) -> String {
        let var = t.var.name();
        if t.count {
            let mut n = String::with_capacity(var.len() + 1);
            n.push('&');
            n.push_str(var);
            return n;
        }
        let (member, key) = match &t.val {
            Val::Slot(src, i) => {
                let (_, key, member) = self.slot(*src, *i);
                (member, key)
            }
            Val::Owned(member, _, key) => (*member, key.as_slice()),
            Val::Tx(id) => (true, self.rs.tx_names.name(*id).as_bytes()),
        };
        if member {
            let key = String::from_utf8_lossy(key);
            let mut n = String::with_capacity(var.len() + 1 + key.len());
            n.push_str(var);
            n.push(':');
            n.push_str(&key);
            n
        } else {
            var.to_owned()
        }
    }

    /// A slot value after the rule's transformation chain, computed once per transaction
    /// for each (chain, slot) and shared by every rule with that chain. A chain that
    /// leaves the value as it is (told from the bytes it holds) stores nothing.
    fn transformed_slot(&mut self, rule: &CRule, src: Source, i: u32) -> Cached {
        if rule.transforms.is_empty() {
            return Cached::Raw;
        }
        let key = pack(rule.chain, src, i);
        if let Some(c) = self.tcache.get(&key) {
            return *c;
        }
        let value = self.slot(src, i).0;
        let has = transform::ByteSet::of(value);
        let unchanged = rule
            .transforms
            .iter()
            .all(|&t| transform::unchanged_exactly(t, value, &has));
        let c = if unchanged {
            Cached::Raw
        } else {
            let out = apply_chain(&rule.transforms, value);
            self.tstore.push(out);
            Cached::Stored(u32::try_from(self.tstore.len() - 1).unwrap_or(u32::MAX))
        };
        self.tcache.insert(key, c);
        c
    }

    fn run_setvars(&mut self, rule: &CRule) {
        /// Where a `setvar` writes.
        enum Key {
            Id(u32),
            Name(String),
        }
        let mut buf = std::mem::take(&mut self.scratch_setvar);
        for sv in &rule.setvars {
            if sv.collection != "tx" {
                // Persistent collections (ip, session, …) are not kept by this engine.
                continue;
            }
            let key = match sv.slot {
                Some(id) => Key::Id(id),
                None => {
                    sv.name.expand_into(self, &mut buf);
                    let mut name = String::from_utf8_lossy(&buf).into_owned();
                    name.make_ascii_lowercase();
                    match self.rs.tx_names.id(&name) {
                        Some(id) => Key::Id(id),
                        None => Key::Name(name),
                    }
                }
            };
            match &sv.op {
                COp::Set(v) => v.expand_into(self, &mut buf),
                COp::Add(v) | COp::Sub(v) => {
                    v.expand_into(self, &mut buf);
                    let delta = crate::operator::atoll(&buf);
                    let cur = match &key {
                        Key::Id(id) => self.tx.get(*id),
                        Key::Name(n) => self.tx.get_made(n),
                    }
                    .map_or(0, crate::operator::atoll);
                    let n = if matches!(sv.op, COp::Add(_)) {
                        cur.saturating_add(delta)
                    } else {
                        cur.saturating_sub(delta)
                    };
                    buf.clear();
                    // Writing to a Vec cannot fail.
                    let _ = std::io::Write::write_fmt(&mut buf, format_args!("{n}"));
                }
                COp::Delete => {
                    match key {
                        Key::Id(id) => self.tx.remove(id),
                        Key::Name(n) => self.tx.remove_made(&n),
                    }
                    continue;
                }
            }
            match key {
                Key::Id(id) => buf = self.tx.put(id, buf),
                Key::Name(n) => self.tx.put_made(n, buf.clone()),
            }
        }
        self.scratch_setvar = buf;
    }

    fn run_ctls(&mut self, rs: &Ruleset, ci: usize) {
        for (k, c) in rs.rules[ci].cctls.iter().enumerate() {
            match c {
                CCtl::Engine(m) => self.engine = *m,
                CCtl::RemoveRules(sel) => {
                    if self.removed.is_empty() {
                        self.removed = vec![false; sel.len()];
                    }
                    for (r, s) in self.removed.iter_mut().zip(sel) {
                        *r |= *s;
                    }
                }
                CCtl::RemoveTargets(_) => self.removed_targets.push((ci, k)),
                CCtl::BodyProcessor(bp) => self.reqbody_processor = Some(*bp),
                CCtl::ForceBodyVariable(b) => self.force_body_variable = *b,
                CCtl::BodyAccess(b) => self.request_body_access = *b,
            }
        }
    }

    /// Every value the rule's targets select, exclusions applied.
    fn collect(&self, ci: usize, out: &mut Vec<Tested>, vals: &mut Vec<Val>) {
        let rule = &self.rs.rules[ci];
        // Whether some of this transaction's ctl:ruleRemoveTarget* apply to the rule.
        let removals = !self.removed_targets.is_empty() && self.has_removed_targets(ci);
        // A rule that sets `TX` members tests copies of the members it reads: its own
        // `setvar`s must not change a value it has yet to test.
        let writes_tx = rule.setvars.iter().any(|sv| sv.collection == "tx");
        let gate = self.rs.prefilter.gate(ci);
        // The sources the gated rule's hits come from: a collection of stored members
        // (every value a slot of its source) none of them comes from is not listed.
        let hit_sources = gate.map(|g| self.scan.hit_sources(g));
        for t in &rule.targets {
            if let (Some(hs), Some(bits)) = (hit_sources, slot_sources(t.var)) {
                if hs & bits == 0 {
                    continue;
                }
            }
            vals.clear();
            match (t.tx, &t.tx_members, &t.key) {
                (Some(id), _, _) => {
                    if self.tx.get(id).is_some() {
                        vals.push(Val::Tx(id));
                    }
                }
                (None, Some(ids), Some(sel)) => {
                    // The numbered names the selector matches are known; only names made
                    // at run time are matched here.
                    self.tx
                        .for_each_member_of(&self.rs.tx_names, ids, |m| match m {
                            Member::Id(id) => vals.push(Val::Tx(id)),
                            Member::Named(k, v) => {
                                if key_matches(sel, k.as_bytes(), Var::Tx) {
                                    vals.push(Val::Owned(true, v.to_vec(), k.as_bytes().to_vec()));
                                }
                            }
                        });
                }
                _ => self.values(t.var, t.key.as_ref(), vals),
            }
            if writes_tx && t.var == Var::Tx {
                for v in vals.iter_mut() {
                    if let Val::Tx(id) = *v {
                        *v = Val::Owned(
                            true,
                            self.tx.get(id).unwrap_or_default().to_vec(),
                            self.rs.tx_names.name(id).as_bytes().to_vec(),
                        );
                    }
                }
            }
            if let Some(g) = gate {
                // A gated rule tests only the values that hold one of its literals.
                vals.retain(|v| match *v {
                    Val::Slot(src, i) => self.scan.hit(g, src, i),
                    _ => true,
                });
            }
            if !rule.exclusions.is_empty() || removals {
                vals.retain(|v| {
                    let key = self.val_key(v);
                    !rule
                        .exclusions
                        .iter()
                        .any(|x| x.var == t.var && key_matches(&x.key, key, t.var))
                        && !self.target_removed(ci, t.var, key)
                });
            }
            if t.count {
                out.push(Tested {
                    var: t.var,
                    count: true,
                    val: Val::Owned(false, vals.len().to_string().into_bytes(), Vec::new()),
                });
            } else {
                out.extend(vals.drain(..).map(|val| Tested {
                    var: t.var,
                    count: false,
                    val,
                }));
            }
        }
    }

    /// A slot's (value, member key, is a collection member).
    fn slot(&self, src: Source, i: u32) -> (&[u8], &[u8], bool) {
        let i = i as usize;
        let empty: &[u8] = b"";
        fn pair(p: Option<&(Vec<u8>, Vec<u8>)>, name: bool) -> (&[u8], &[u8], bool) {
            match p {
                Some((k, v)) => (if name { k } else { v }, k, true),
                None => (b"", b"", true),
            }
        }
        fn list(l: Option<&Vec<Vec<u8>>>, i: usize) -> (&[u8], &[u8], bool) {
            match l.and_then(|l| l.get(i)) {
                Some(v) => (v, v, true),
                None => (b"", b"", true),
            }
        }
        fn scalar(v: &[u8]) -> (&[u8], &[u8], bool) {
            (v, b"", false)
        }
        match src {
            Source::ArgValue | Source::ArgName => match self.args.get(i) {
                Some((_, k, v)) => (if src == Source::ArgName { k } else { v }, k, true),
                None => (empty, empty, true),
            },
            Source::HeaderValue => pair(self.headers.get(i), false),
            Source::HeaderName => pair(self.headers.get(i), true),
            Source::CookieValue => pair(self.cookies.get(i), false),
            Source::CookieName => pair(self.cookies.get(i), true),
            Source::ResponseHeaderValue => pair(self.response_headers.get(i), false),
            Source::ResponseHeaderName => pair(self.response_headers.get(i), true),
            Source::PartHeader => pair(
                self.multipart.as_ref().and_then(|m| m.part_headers.get(i)),
                false,
            ),
            Source::FileName | Source::FileField => {
                match self.multipart.as_ref().and_then(|m| m.files.get(i)) {
                    Some((field, file, _)) => (
                        if src == Source::FileName { file } else { field },
                        field,
                        true,
                    ),
                    None => (empty, empty, true),
                }
            }
            Source::MultipartName => list(self.multipart.as_ref().map(|m| &m.names), i),
            Source::MultipartFilename => list(self.multipart.as_ref().map(|m| &m.filenames), i),
            Source::XmlText => (
                self.xml
                    .as_ref()
                    .and_then(|x| x.text.as_deref())
                    .unwrap_or_default(),
                b"/*",
                true,
            ),
            Source::XmlAttr => (
                self.xml
                    .as_ref()
                    .and_then(|x| x.attributes.get(i))
                    .map_or(empty, Vec::as_slice),
                b"//@*",
                true,
            ),
            Source::Method => scalar(&self.method),
            Source::UriRaw => scalar(&self.uri_raw),
            Source::Uri => scalar(&self.request_uri),
            Source::Line => scalar(&self.request_line),
            Source::Protocol => scalar(&self.protocol),
            Source::Query => scalar(self.query_string.as_deref().unwrap_or_default()),
            Source::Filename => scalar(&self.filename),
            Source::Basename => scalar(self.basename.as_deref().unwrap_or_default()),
            Source::Body => scalar(self.request_body.as_deref().unwrap_or_default()),
            Source::ResponseProtocol => scalar(&self.response_protocol),
            Source::ResponseBody => scalar(self.response_body.as_deref().unwrap_or_default()),
        }
    }

    fn val_value<'a>(&'a self, v: &'a Val) -> &'a [u8] {
        match v {
            Val::Slot(s, i) => self.slot(*s, *i).0,
            Val::Owned(_, value, _) => value,
            Val::Tx(id) => self.tx.get(*id).unwrap_or_default(),
        }
    }

    fn val_key<'a>(&'a self, v: &'a Val) -> &'a [u8] {
        match v {
            Val::Slot(s, i) => self.slot(*s, *i).1,
            Val::Owned(_, _, key) => key,
            Val::Tx(id) => self.rs.tx_names.name(*id).as_bytes(),
        }
    }

    /// Whether a `ctl:ruleRemoveTarget*` of this transaction applies to rule `ci`.
    fn has_removed_targets(&self, ci: usize) -> bool {
        self.removed_targets.iter().any(|&(owner, k)| {
            matches!(self.rs.rules[owner].cctls.get(k),
                Some(CCtl::RemoveTargets(r)) if r.rules.get(ci).copied().unwrap_or(false))
        })
    }

    fn target_removed(&self, ci: usize, var: Var, key: &[u8]) -> bool {
        self.removed_targets.iter().any(|&(owner, k)| {
            let Some(CCtl::RemoveTargets(r)) = self.rs.rules[owner].cctls.get(k) else {
                return false;
            };
            r.rules.get(ci).copied().unwrap_or(false)
                && r.targets.iter().any(|(v, sel)| {
                    *v == var && sel.as_ref().is_none_or(|sel| key_matches(sel, key, var))
                })
        })
    }

    /// The values of a variable.
    fn values(&self, var: Var, key: Option<&KeySel>, out: &mut Vec<Val>) {
        let sel = |k: &[u8]| key.is_none_or(|s| key_matches(s, k, var));
        // Members of a stored collection: slot `i` of `src` for each selected key.
        let slots = |out: &mut Vec<Val>, src: Source, keys: &mut dyn Iterator<Item = &[u8]>| {
            for (i, k) in keys.enumerate() {
                if sel(k) {
                    out.push(Val::Slot(src, u32::try_from(i).unwrap_or(u32::MAX)));
                }
            }
        };
        let owned = |out: &mut Vec<Val>, items: &mut dyn Iterator<Item = (&[u8], &[u8])>| {
            for (k, v) in items {
                if sel(k) {
                    out.push(Val::Owned(true, v.to_vec(), k.to_vec()));
                }
            }
        };
        // ModSecurity v3's scalar ("anchored") variables always yield one value, empty
        // when unset: `REQUEST_BASENAME "!@endsWith .pdf"` matches a request for `/`.
        let scalar = |out: &mut Vec<Val>, v: Option<&[u8]>| {
            out.push(Val::Owned(
                false,
                v.unwrap_or_default().to_vec(),
                Vec::new(),
            ));
        };
        let args = |out: &mut Vec<Val>, src: Option<ArgSource>, names: bool| {
            let kind = if names {
                Source::ArgName
            } else {
                Source::ArgValue
            };
            for (i, (s, k, _)) in self.args.iter().enumerate() {
                if src.is_none_or(|x| x == *s) && sel(k) {
                    out.push(Val::Slot(kind, u32::try_from(i).unwrap_or(u32::MAX)));
                }
            }
        };
        match var {
            Var::Args => args(out, None, false),
            Var::ArgsGet => args(out, Some(ArgSource::Get), false),
            Var::ArgsPost => args(out, Some(ArgSource::Post), false),
            Var::ArgsNames => args(out, None, true),
            Var::ArgsGetNames => args(out, Some(ArgSource::Get), true),
            Var::ArgsPostNames => args(out, Some(ArgSource::Post), true),
            Var::ArgsCombinedSize => scalar(out, Some(self.args_combined.to_string().as_bytes())),
            Var::RequestHeaders => slots(
                out,
                Source::HeaderValue,
                &mut self.headers.iter().map(|(k, _)| k.as_slice()),
            ),
            Var::RequestHeadersNames => slots(
                out,
                Source::HeaderName,
                &mut self.headers.iter().map(|(k, _)| k.as_slice()),
            ),
            Var::RequestCookies => slots(
                out,
                Source::CookieValue,
                &mut self.cookies.iter().map(|(k, _)| k.as_slice()),
            ),
            Var::RequestCookiesNames => slots(
                out,
                Source::CookieName,
                &mut self.cookies.iter().map(|(k, _)| k.as_slice()),
            ),
            Var::ResponseHeaders => slots(
                out,
                Source::ResponseHeaderValue,
                &mut self.response_headers.iter().map(|(k, _)| k.as_slice()),
            ),
            Var::ResponseHeadersNames => slots(
                out,
                Source::ResponseHeaderName,
                &mut self.response_headers.iter().map(|(k, _)| k.as_slice()),
            ),
            Var::Tx if matches!(key, Some(KeySel::Name(_))) => {
                if let Some(KeySel::Name(n)) = key {
                    match self.rs.tx_names.id(n) {
                        Some(id) => {
                            if self.tx.get(id).is_some() {
                                out.push(Val::Tx(id));
                            }
                        }
                        None => {
                            if let Some(v) = self.tx.get_made(n) {
                                out.push(Val::Owned(true, v.to_vec(), n.as_bytes().to_vec()));
                            }
                        }
                    }
                }
            }
            Var::Tx => {
                let names = &self.rs.tx_names;
                self.tx.for_each_member(names, |m| match m {
                    Member::Id(id) => {
                        if sel(names.name(id).as_bytes()) {
                            out.push(Val::Tx(id));
                        }
                    }
                    Member::Named(k, v) => {
                        if sel(k.as_bytes()) {
                            out.push(Val::Owned(true, v.to_vec(), k.as_bytes().to_vec()));
                        }
                    }
                });
            }
            Var::Env => owned(
                out,
                &mut self.env.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())),
            ),
            Var::MatchedVars => owned(
                out,
                &mut self
                    .matched_vars
                    .iter()
                    .map(|(n, v)| (n.as_bytes(), v.as_slice())),
            ),
            Var::MatchedVarsNames => {
                for (n, _) in &self.matched_vars {
                    out.push(Val::Owned(
                        true,
                        n.as_bytes().to_vec(),
                        n.as_bytes().to_vec(),
                    ));
                }
            }
            Var::MatchedVar => scalar(out, self.matched_var.as_ref().map(|(_, v)| v.as_slice())),
            Var::MatchedVarName => {
                scalar(out, self.matched_var.as_ref().map(|(n, _)| n.as_bytes()))
            }
            Var::RequestMethod => out.push(Val::Slot(Source::Method, 0)),
            Var::RequestUri => out.push(Val::Slot(Source::Uri, 0)),
            Var::RequestUriRaw => out.push(Val::Slot(Source::UriRaw, 0)),
            Var::RequestLine => out.push(Val::Slot(Source::Line, 0)),
            Var::RequestProtocol => out.push(Val::Slot(Source::Protocol, 0)),
            Var::QueryString => out.push(Val::Slot(Source::Query, 0)),
            Var::RequestFilename | Var::PathInfo => out.push(Val::Slot(Source::Filename, 0)),
            Var::RequestBasename => out.push(Val::Slot(Source::Basename, 0)),
            Var::RequestBody => out.push(Val::Slot(Source::Body, 0)),
            Var::RequestBodyLength => scalar(
                out,
                self.request_body
                    .as_ref()
                    .map(|b| b.len().to_string().into_bytes())
                    .as_deref(),
            ),
            Var::ReqbodyProcessor => scalar(
                out,
                self.reqbody_processor.map(|p| match p {
                    BodyProcessor::UrlEncoded => &b"URLENCODED"[..],
                    BodyProcessor::Multipart => b"MULTIPART",
                    BodyProcessor::Xml => b"XML",
                    BodyProcessor::Json => b"JSON",
                }),
            ),
            Var::ReqbodyError | Var::ReqbodyProcessorError => scalar(
                out,
                Some(if self.reqbody_error.is_some() {
                    b"1"
                } else {
                    b"0"
                }),
            ),
            Var::ReqbodyErrorMsg | Var::ReqbodyProcessorErrorMsg => {
                scalar(out, self.reqbody_error.as_ref().map(|s| s.as_bytes()))
            }
            Var::UrlencodedError => scalar(out, self.urlencoded_error.then_some(&b"1"[..])),
            Var::RemoteAddr => scalar(out, Some(self.info.remote_addr.as_bytes())),
            Var::RemotePort => scalar(out, Some(self.info.remote_port.to_string().as_bytes())),
            Var::ServerAddr => scalar(out, Some(self.info.server_addr.as_bytes())),
            Var::ServerPort => scalar(out, Some(self.info.server_port.to_string().as_bytes())),
            Var::ServerName => scalar(
                out,
                self.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(b"host"))
                    .map(|(_, v)| v.split(|&c| c == b':').next().unwrap_or(b"")),
            ),
            Var::UniqueId => scalar(out, Some(self.info.unique_id.as_bytes())),
            Var::AuthType => scalar(out, self.auth_type.as_deref()),
            Var::HighestSeverity => scalar(
                out,
                Some(self.highest_severity.unwrap_or(255).to_string().as_bytes()),
            ),
            Var::ResponseStatus => scalar(
                out,
                self.status.map(|s| s.to_string().into_bytes()).as_deref(),
            ),
            Var::ResponseProtocol => out.push(Val::Slot(Source::ResponseProtocol, 0)),
            Var::ResponseBody => out.push(Val::Slot(Source::ResponseBody, 0)),
            Var::ResponseContentType => scalar(
                out,
                self.response_headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
                    .map(|(_, v)| v.as_slice()),
            ),
            Var::ResponseContentLength => scalar(
                out,
                self.response_headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(b"content-length"))
                    .map(|(_, v)| v.as_slice()),
            ),
            Var::FullRequestLength => scalar(
                out,
                Some(
                    (self.request_line.len()
                        + self
                            .headers
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 4)
                            .sum::<usize>()
                        + self.request_body.as_ref().map_or(0, Vec::len))
                    .to_string()
                    .as_bytes(),
                ),
            ),
            Var::Files => {
                if let Some(m) = &self.multipart {
                    slots(
                        out,
                        Source::FileName,
                        &mut m.files.iter().map(|(n, _, _)| n.as_slice()),
                    );
                }
            }
            Var::FilesNames => {
                if let Some(m) = &self.multipart {
                    slots(
                        out,
                        Source::FileField,
                        &mut m.files.iter().map(|(n, _, _)| n.as_slice()),
                    );
                }
            }
            Var::FilesSizes => {
                if let Some(m) = &self.multipart {
                    for (n, _, size) in &m.files {
                        if sel(n) {
                            out.push(Val::Owned(true, size.to_string().into_bytes(), n.clone()));
                        }
                    }
                }
            }
            Var::FilesCombinedSize => {
                let total: usize = self
                    .multipart
                    .as_ref()
                    .map_or(0, |m| m.files.iter().map(|f| f.2).sum());
                scalar(out, Some(total.to_string().as_bytes()));
            }
            Var::MultipartPartHeaders => {
                if let Some(m) = &self.multipart {
                    slots(
                        out,
                        Source::PartHeader,
                        &mut m.part_headers.iter().map(|(k, _)| k.as_slice()),
                    );
                }
            }
            Var::MultipartName => {
                if let Some(m) = &self.multipart {
                    slots(
                        out,
                        Source::MultipartName,
                        &mut m.names.iter().map(Vec::as_slice),
                    );
                }
            }
            Var::MultipartFilename => {
                if let Some(m) = &self.multipart {
                    slots(
                        out,
                        Source::MultipartFilename,
                        &mut m.filenames.iter().map(Vec::as_slice),
                    );
                }
            }
            Var::MultipartStrictError
            | Var::MultipartBoundaryQuoted
            | Var::MultipartBoundaryWhitespace
            | Var::MultipartDataBefore
            | Var::MultipartDataAfter
            | Var::MultipartHeaderFolding
            | Var::MultipartInvalidHeaderFolding
            | Var::MultipartLfLine
            | Var::MultipartCrlfLfLines
            | Var::MultipartInvalidQuoting
            | Var::MultipartInvalidPart
            | Var::MultipartMissingSemicolon
            | Var::MultipartUnmatchedBoundary
            | Var::MultipartFileLimitExceeded => {
                let f = self.multipart.as_ref().map(|m| m.flags).unwrap_or_default();
                let on = match var {
                    Var::MultipartStrictError => f.strict_error(),
                    Var::MultipartBoundaryQuoted => f.boundary_quoted,
                    Var::MultipartBoundaryWhitespace => f.boundary_whitespace,
                    Var::MultipartDataBefore => f.data_before,
                    Var::MultipartDataAfter => f.data_after,
                    Var::MultipartHeaderFolding => f.header_folding,
                    Var::MultipartInvalidHeaderFolding => f.invalid_header_folding,
                    Var::MultipartLfLine => f.lf_line,
                    Var::MultipartCrlfLfLines => f.lf_line && f.crlf_line,
                    Var::MultipartInvalidQuoting => f.invalid_quoting,
                    Var::MultipartInvalidPart => f.invalid_part,
                    Var::MultipartMissingSemicolon => f.missing_semicolon,
                    Var::MultipartUnmatchedBoundary => f.unmatched_boundary,
                    _ => false,
                };
                scalar(out, Some(if on { b"1" } else { b"0" }));
            }
            Var::Xml => {
                if let Some(x) = &self.xml {
                    match key {
                        Some(KeySel::Name(p)) if p == "/*" && x.text.is_some() => {
                            out.push(Val::Slot(Source::XmlText, 0));
                        }
                        Some(KeySel::Name(p)) if p == "//@*" => {
                            for i in 0..x.attributes.len() {
                                out.push(Val::Slot(
                                    Source::XmlAttr,
                                    u32::try_from(i).unwrap_or(u32::MAX),
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Persistent collections are not kept.
            _ => {}
        }
    }
}

fn apply_chain(steps: &[Transform], value: &[u8]) -> Vec<u8> {
    let mut cur = value.to_vec();
    let mut out = Vec::new();
    for &t in steps {
        transform::apply(t, &cur, &mut out);
        std::mem::swap(&mut cur, &mut out);
    }
    cur
}

/// For a collection whose every value is a slot of one source ([`Transaction::values`]
/// lists its stored members as `Val::Slot`s), that source as a bit (`1 << source`).
fn slot_sources(var: Var) -> Option<u32> {
    let s = match var {
        Var::Args | Var::ArgsGet | Var::ArgsPost => Source::ArgValue,
        Var::ArgsNames | Var::ArgsGetNames | Var::ArgsPostNames => Source::ArgName,
        Var::RequestHeaders => Source::HeaderValue,
        Var::RequestHeadersNames => Source::HeaderName,
        Var::RequestCookies => Source::CookieValue,
        Var::RequestCookiesNames => Source::CookieName,
        Var::ResponseHeaders => Source::ResponseHeaderValue,
        Var::ResponseHeadersNames => Source::ResponseHeaderName,
        _ => return None,
    };
    Some(1 << (s as u32))
}

pub(super) fn key_matches(sel: &KeySel, key: &[u8], var: Var) -> bool {
    match sel {
        KeySel::Name(n) => {
            if super::compile::case_insensitive_keys(var) {
                n.as_bytes().eq_ignore_ascii_case(key)
            } else {
                n.as_bytes() == key
            }
        }
        KeySel::Regex(re) => re.is_match(key),
        // `(?i:^p)` in multi-line mode: at the start, or after a newline.
        KeySel::Prefix(p) => {
            let at =
                |s: &[u8]| s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p.as_bytes());
            at(key) || memchr::memchr_iter(b'\n', key).any(|i| at(&key[i + 1..]))
        }
    }
}

impl Resolve for Transaction<'_> {
    fn resolve(&self, r: &MacroRef, out: &mut Vec<u8>) {
        match r {
            MacroRef::TxId(id) => {
                if let Some(v) = self.tx.get(*id) {
                    out.extend_from_slice(v);
                }
            }
            MacroRef::Var(Var::Tx, Some(k)) => {
                if let Some(v) = self
                    .tx
                    .get_named(&self.rs.tx_names, &k.to_ascii_lowercase())
                {
                    out.extend_from_slice(v);
                }
            }
            MacroRef::Var(var, key) => {
                let sel = key.as_ref().map(|k| KeySel::Name(k.to_ascii_lowercase()));
                let mut vals = Vec::new();
                self.values(*var, sel.as_ref(), &mut vals);
                if let Some(v) = vals.first() {
                    out.extend_from_slice(self.val_value(v));
                }
            }
            MacroRef::Rule(field) => {
                let Some(rule) = self.current_rule.map(|c| &self.rs.rules[c]) else {
                    return;
                };
                match field.as_str() {
                    "id" => out.extend_from_slice(rule.id.to_string().as_bytes()),
                    "severity" => {
                        if let Some(s) = rule.severity {
                            out.extend_from_slice(s.to_string().as_bytes());
                        }
                    }
                    "ver" => {
                        if let Some(v) = &rule.ver {
                            out.extend_from_slice(v.as_bytes());
                        }
                    }
                    "phase" => out.extend_from_slice(rule.phase.to_string().as_bytes()),
                    "msg" => {
                        if let Some(m) = &rule.msg {
                            out.extend_from_slice(&m.expand(self));
                        }
                    }
                    "logdata" => {
                        if let Some(m) = &rule.logdata {
                            out.extend_from_slice(&m.expand(self));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `std::getline` splitting: a trailing separator yields no empty last piece.
fn getline_split(data: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.split(|&c| c == sep).collect();
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

fn trim_end_space(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_whitespace() || **c == 0x0b)
        .count();
    &s[..s.len() - n]
}

/// `scheme://host/path` → `/path` (REQUEST_URI of an absolute-form target).
fn strip_scheme_host(u: &[u8]) -> &[u8] {
    if u.first().is_none_or(|&c| c == b'/') {
        return u;
    }
    let Some(colon) = u.iter().position(|&c| c == b':') else {
        return u;
    };
    if !u[colon + 1..].starts_with(b"//") {
        return u;
    }
    let netloc = colon + 3;
    match u[netloc..].iter().position(|&c| c == b'/') {
        Some(p) => &u[netloc + p..],
        None => u,
    }
}

#[cfg(test)]
mod key_tests {
    use super::{KeySel, Var, key_matches};

    /// A `^literal` key selector decides exactly as the expression it replaces.
    #[test]
    fn prefix_selectors_match_like_their_expression() {
        let re = crate::operator::regex("(?i:^header_name_)").unwrap_or_else(|e| panic!("{e}"));
        let prefix = KeySel::Prefix("header_name_".into());
        for key in [
            &b"header_name_host"[..],
            b"HEADER_NAME_x",
            b"header_name_",
            b"header_nam",
            b"x_header_name_y",
            b"a\nheader_name_b",
            b"a\nHeader_Name_",
            b"a\n\nheader_name",
            b"",
        ] {
            assert_eq!(
                key_matches(&prefix, key, Var::Tx),
                re.is_match(key),
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
}

/// The outcome of a rule decided by `TX` values alone, learnt at load.
///
/// Many rules read nothing but configuration values: CRS's paranoia-level gates (`SecRule
/// TX:DETECTION_PARANOIA_LEVEL "@lt 2" "…,pass,nolog,skipAfter:…"`, about a hundred of
/// them), its defaults (`SecRule &TX:inbound_anomaly_score_threshold "@eq 0"
/// "…,setvar:tx.inbound_anomaly_score_threshold=5"`) and the like. A rule qualifies when
/// it is a single rule (no chain) whose targets are all `TX:name`, whose operator's
/// parameter reads nothing but `TX` members, and which does nothing when it matches but
/// set `MATCHED_VAR`, run `setvar`s and go on (`pass`, `nolog`, no `ctl`, `capture` or
/// `multiMatch`; with `setvar`s, a single target, so that a match is one value and runs
/// them once). Its outcome is then a function of those `TX` values: it is learnt by
/// running one template request through the ruleset at load, and reused by every
/// transaction in which the values are the same (compared each time; a request that
/// changes them, or removes targets with `ctl`, evaluates the rule as usual). A reused
/// match still runs the rule's `setvar`s, as evaluation would.
///
/// A chain's head that reads only `TX` (`SecRule &TX:MAX_NUM_ARGS "@eq 1" "…,chain"`,
/// CRS's optional limits) is learnt too, but only when it does not match: then nothing of
/// the chain runs, whatever its actions, and the chain fails while those values hold.
#[derive(Debug)]
pub(crate) struct Memo {
    /// The `TX` members the outcome depends on (the targets', then the parameter's) and
    /// their values when the rule was learnt: `inputs[a..b]` of the [`Memos`] table.
    inputs: (u32, u32),
    outcome: bool,
    /// `MATCHED_VAR` after a match, replayed.
    matched_var: Option<(String, Vec<u8>)>,
}

/// One input of a [`Memo`]: a `TX` member and its learnt value (`bytes[start..start +
/// len]`, or absent when `len` is [`ABSENT`]).
#[derive(Debug, Clone, Copy)]
struct MemoInput {
    id: u32,
    start: u32,
    len: u32,
}

const ABSENT: u32 = u32::MAX;

/// The outcomes learnt at load, laid out for the rule loop: a rule's entry is found
/// through a dense index, and all inputs and their values sit in two flat arrays (the
/// loop visits every rule of a phase; scattered small allocations cost cache misses).
#[derive(Debug, Default)]
pub(crate) struct Memos {
    /// Per rule: its entry in `entries`, or [`ABSENT`].
    index: Vec<u32>,
    entries: Vec<Memo>,
    inputs: Vec<MemoInput>,
    bytes: Vec<u8>,
}

impl Memos {
    fn get(&self, ci: usize) -> Option<&Memo> {
        let i = *self.index.get(ci)?;
        self.entries.get(i as usize)
    }

    /// Whether `m`'s inputs hold the values it was learnt with.
    fn holds(&self, m: &Memo, tx: &TxVars) -> bool {
        let inputs = self.inputs.get(m.inputs.0 as usize..m.inputs.1 as usize);
        inputs.is_some_and(|inputs| {
            inputs.iter().all(|i| {
                let learnt = (i.len != ABSENT).then(|| {
                    let a = i.start as usize;
                    self.bytes.get(a..a + i.len as usize).unwrap_or_default()
                });
                tx.get(i.id) == learnt
            })
        })
    }

    /// Rule `ci`'s learnt outcome (whether it matched), if it has one.
    pub(crate) fn outcome(&self, ci: usize) -> Option<bool> {
        self.get(ci).map(|m| m.outcome)
    }

    /// How many rules have an entry.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn build(learnt: Vec<Option<Learnt>>) -> Memos {
        let mut m = Memos {
            index: vec![ABSENT; learnt.len()],
            ..Memos::default()
        };
        let n = |x: usize| u32::try_from(x).unwrap_or(ABSENT);
        for (ci, l) in learnt.into_iter().enumerate() {
            let Some(l) = l else { continue };
            let a = n(m.inputs.len());
            for (id, v) in l.ids.iter().zip(&l.values) {
                let (start, len) = match v {
                    Some(v) => (n(m.bytes.len()), n(v.len())),
                    None => (0, ABSENT),
                };
                if let Some(v) = v {
                    m.bytes.extend_from_slice(v);
                }
                m.inputs.push(MemoInput {
                    id: *id,
                    start,
                    len,
                });
            }
            m.index[ci] = n(m.entries.len());
            m.entries.push(Memo {
                inputs: (a, n(m.inputs.len())),
                outcome: l.outcome,
                matched_var: l.matched_var,
            });
        }
        m
    }
}

/// What learning saw of a rule (becomes a [`Memo`]).
#[derive(Debug)]
struct Learnt {
    ids: Vec<u32>,
    values: Vec<Option<Vec<u8>>>,
    outcome: bool,
    matched_var: Option<(String, Vec<u8>)>,
}

impl Memo {
    /// The `TX` members a qualifying rule's outcome depends on; `None` if it does not
    /// qualify.
    fn inputs(rule: &CRule) -> Option<Vec<u32>> {
        let plain = rule.next.is_none()
            && !rule.capture
            && !rule.multi_match
            && !rule.log
            && rule.ctls.is_empty()
            && rule.cctls.is_empty()
            && rule.exclusions.is_empty()
            && matches!(rule.disruptive, Disruptive::Pass)
            && !rule.targets.is_empty()
            && (rule.setvars.is_empty() || rule.targets.len() == 1)
            && rule.setvars.iter().all(|sv| {
                let text = match &sv.op {
                    COp::Set(v) | COp::Add(v) | COp::Sub(v) => Some(v),
                    COp::Delete => None,
                };
                // MATCHED_VARS would list what evaluation matched; replay does not
                // rebuild it.
                std::iter::once(&sv.name).chain(text).all(|m| {
                    m.refs().all(|r| {
                        !matches!(
                            r,
                            MacroRef::Var(Var::MatchedVars | Var::MatchedVarsNames, _)
                        )
                    })
                })
            });
        if !plain {
            return None;
        }
        Memo::tx_reads(rule)
    }

    /// The `TX` members a chain's head reads, when it reads nothing else (its outcome is
    /// learnt only if it does not match: see [`Memo`]).
    fn head_inputs(rule: &CRule) -> Option<Vec<u32>> {
        if rule.next.is_none() || !rule.exclusions.is_empty() || rule.targets.is_empty() {
            return None;
        }
        Memo::tx_reads(rule)
    }

    /// The `TX` members the rule's targets and parameter read, when it reads nothing
    /// else.
    fn tx_reads(rule: &CRule) -> Option<Vec<u32>> {
        let mut ids: Vec<u32> = rule.targets.iter().map(|t| t.tx).collect::<Option<_>>()?;
        if rule.targets.iter().any(|t| t.var != Var::Tx) {
            return None;
        }
        ids.extend(rule.operator.as_ref()?.tx_inputs()?);
        Some(ids)
    }
}

/// Learns the outcomes of the rules [`Memo`] describes, by running a template request
/// (`GET /` with a few ordinary headers, a `200 text/html` response) through every phase.
pub(crate) fn learn(rs: &Ruleset) -> Memos {
    if !rs
        .rules
        .iter()
        .any(|r| Memo::inputs(r).or_else(|| Memo::head_inputs(r)).is_some())
    {
        return Memos::default();
    }
    let mut tx = Transaction::new(
        rs,
        RequestInfo {
            remote_addr: "127.0.0.1".into(),
            remote_port: 40000,
            server_addr: "127.0.0.1".into(),
            server_port: 80,
            unique_id: "rampart-learn".into(),
        },
    );
    tx.learning = Some((0..rs.rules.len()).map(|_| None).collect());
    tx.set_request_line(b"GET", b"/", "1.1");
    tx.add_request_header(b"Host", b"localhost");
    tx.add_request_header(b"User-Agent", b"Mozilla/5.0");
    tx.add_request_header(b"Accept", b"text/html");
    tx.process_request_headers();
    tx.process_request_body(b"");
    tx.process_response_headers(
        200,
        "HTTP/1.1",
        &[(b"Content-Type".to_vec(), b"text/html".to_vec())],
    );
    tx.process_response_body(b"");
    tx.process_logging();
    Memos::build(tx.learning.take().unwrap_or_default())
}
