//! The CRS regression suite (go-ftw YAML) run in-process.
//!
//! Each test stage is turned into the exact bytes go-ftw would send (request line,
//! headers in order, `data` with go-ftw's autocompletion of `Content-Type`,
//! `Content-Length` and `Connection`, or `encoded_request` verbatim). The bytes go
//! through the edge's HTTP/1 framing guard — a request the edge would refuse gets the
//! edge's status and never reaches the rules, as over the wire — and are then parsed and
//! evaluated by a [`Transaction`] on CRS configured as CRS's own CI does (paranoia level
//! 4, `DetectionOnly`, request and response body access). The response comes from an
//! emulation of CRS's test backend: `POST /reflect` answers with the status, headers and
//! body its JSON asks for; anything else gets an empty 200.
//!
//! A stage passes when every `expect_ids` id fired, no `no_expect_ids` id fired, the
//! status is one of `status`, and the log lines match `match_regex` (and not
//! `no_match_regex`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use rampart_core::h1::{Guard, Limits, Step};
use yaml_rust2::{Yaml, YamlLoader};

use crate::engine::{RequestInfo, Ruleset, Transaction};
use crate::seclang::{self, MemFs, OverlayFs, Transform};

/// One test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// Path relative to the tests directory.
    pub path: String,
    /// Its tests.
    pub tests: Vec<Test>,
}

/// One test: stages run in order.
#[derive(Debug, Clone)]
pub struct Test {
    /// The rule the test is about.
    pub rule_id: u64,
    /// Its number within the file.
    pub test_id: u64,
    /// Stages.
    pub stages: Vec<Stage>,
}

impl Test {
    /// `RULE-TEST`, as go-ftw names tests.
    pub fn name(&self) -> String {
        format!("{}-{}", self.rule_id, self.test_id)
    }
}

/// One request and what is expected of it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The request, as bytes on the wire, or why it cannot be built.
    pub request: Result<Vec<u8>, String>,
    /// Rule ids that must fire.
    pub expect_ids: Vec<u64>,
    /// Rule ids that must not fire.
    pub no_expect_ids: Vec<u64>,
    /// Acceptable statuses (empty: any).
    pub status: Vec<u16>,
    /// A log line must match this.
    pub match_regex: Option<String>,
    /// No log line may match this.
    pub no_match_regex: Option<String>,
    /// The request is expected to fail at the connection level.
    pub expect_error: bool,
    /// Exactly one rule may fire.
    pub isolated: bool,
}

/// Reads every `*.yaml` under `dir` (recursively, in path order).
pub fn load_tests(dir: &Path) -> Result<Vec<TestFile>, String> {
    let mut paths = Vec::new();
    walk(dir, &mut paths).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    paths.sort();
    let mut files = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{rel}: {e}"))?;
        let docs = YamlLoader::load_from_str(&text).map_err(|e| format!("{rel}: {e}"))?;
        let Some(doc) = docs.first() else { continue };
        let file_rule = as_u64(&doc["rule_id"]).or_else(|| {
            p.file_name()?
                .to_str()?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        });
        let mut tests = Vec::new();
        if let Some(list) = doc["tests"].as_vec() {
            for t in list {
                let rule_id = as_u64(&t["rule_id"]).or(file_rule).unwrap_or(0);
                let test_id = as_u64(&t["test_id"]).unwrap_or(0);
                let stages = t["stages"]
                    .as_vec()
                    .map(|v| {
                        v.iter()
                            .map(|s| {
                                stage(if s["stage"].is_badvalue() {
                                    s
                                } else {
                                    &s["stage"]
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                tests.push(Test {
                    rule_id,
                    test_id,
                    stages,
                });
            }
        }
        files.push(TestFile { path: rel, tests });
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn as_u64(y: &Yaml) -> Option<u64> {
    scalar(y)?.trim().parse().ok()
}

fn as_bool(y: &Yaml, default: bool) -> bool {
    match scalar(y) {
        Some(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1"
        ),
        None => default,
    }
}

fn ids(y: &Yaml) -> Vec<u64> {
    match y {
        Yaml::Array(v) => v.iter().filter_map(as_u64).collect(),
        other => as_u64(other).into_iter().collect(),
    }
}

fn stage(s: &Yaml) -> Stage {
    let out = &s["output"];
    let log = &out["log"];
    let status = match &out["status"] {
        Yaml::Array(v) => v
            .iter()
            .filter_map(as_u64)
            .filter_map(|n| u16::try_from(n).ok())
            .collect(),
        other => as_u64(other)
            .and_then(|n| u16::try_from(n).ok())
            .into_iter()
            .collect(),
    };
    Stage {
        request: build_request(&s["input"]),
        expect_ids: [
            ids(&log["expect_ids"]),
            ids(&out["log_contains_id"]),
            ids(&log["expect_id"]),
        ]
        .concat(),
        no_expect_ids: [ids(&log["no_expect_ids"]), ids(&log["no_expect_id"])].concat(),
        status,
        match_regex: scalar(&log["match_regex"]),
        no_match_regex: scalar(&log["no_match_regex"]),
        expect_error: as_bool(&out["expect_error"], false),
        isolated: as_bool(&out["isolated"], false),
    }
}

/// The bytes go-ftw sends for a stage's `input`.
fn build_request(input: &Yaml) -> Result<Vec<u8>, String> {
    if let Some(enc) = scalar(&input["encoded_request"]) {
        let mut out = Vec::new();
        let clean: Vec<u8> = enc.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        crate::transform::apply(Transform::Base64Decode, &clean, &mut out);
        return Ok(out);
    }
    for unsupported in ["follow_redirect", "save_cookie", "virtual_host_mode"] {
        if as_bool(&input[unsupported], false) {
            return Err(format!("input field `{unsupported}` is not supported"));
        }
    }
    if let Some(p) = scalar(&input["protocol"]) {
        if p != "http" {
            return Err(format!("protocol `{p}` is not supported"));
        }
    }
    let method = scalar(&input["method"]).unwrap_or_else(|| "GET".into());
    let uri = scalar(&input["uri"]).unwrap_or_else(|| "/".into());
    let version = scalar(&input["version"]).unwrap_or_else(|| "HTTP/1.1".into());
    let mut autocomplete = as_bool(&input["autocomplete_headers"], true);
    if !input["stop_magic"].is_badvalue() {
        autocomplete = !as_bool(&input["stop_magic"], false);
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(list) = input["ordered_headers"].as_vec() {
        for h in list {
            headers.push((
                scalar(&h["name"]).unwrap_or_default(),
                scalar(&h["value"]).unwrap_or_default(),
            ));
        }
    } else if let Some(map) = input["headers"].as_hash() {
        for (k, v) in map {
            headers.push((scalar(k).unwrap_or_default(), scalar(v).unwrap_or_default()));
        }
    }
    let has = |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut data: Vec<u8> = match (&input["data"], scalar(&input["encoded_data"])) {
        (Yaml::Array(lines), _) => lines
            .iter()
            .filter_map(scalar)
            .collect::<Vec<_>>()
            .join("\r\n")
            .into_bytes(),
        (d, _) if scalar(d).is_some() => {
            expand_template(&scalar(d).unwrap_or_default())?.into_bytes()
        }
        (_, Some(enc)) => {
            let mut out = Vec::new();
            crate::transform::apply(Transform::Base64Decode, enc.as_bytes(), &mut out);
            out
        }
        _ => Vec::new(),
    };
    if !data.is_empty() && autocomplete {
        if !has(&headers, "content-type") {
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        if headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v == "application/x-www-form-urlencoded"
        }) {
            data = encode_form_data(&data);
        }
    }
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.contains("multipart/form-data;"))
    {
        let mut fixed = Vec::with_capacity(data.len());
        for &c in &data {
            if c == b'\n' {
                fixed.push(b'\r');
            }
            fixed.push(c);
        }
        data = fixed;
    }
    if autocomplete {
        if !has(&headers, "connection") {
            headers.push(("Connection".into(), "close".into()));
        }
        // go-ftw's regex `^POST|PUT|PATCH|DELETE$` (an unanchored alternation).
        let body_method = method.starts_with("POST")
            || method.contains("PUT")
            || method.contains("PATCH")
            || method.ends_with("DELETE");
        if !has(&headers, "content-length") && (!data.is_empty() || body_method) {
            headers.push(("Content-Length".into(), data.len().to_string()));
        }
    }
    let mut out = format!("{method} {uri} {version}\r\n").into_bytes();
    for (k, v) in &headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&data);
    Ok(out)
}

/// The one Go template form CRS tests use: `{{ "x" | repeat N }}`.
fn expand_template(data: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = data;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            return Err("unsupported Go template in data".into());
        };
        let inner = rest[start + 2..start + end].trim();
        let parsed = inner.strip_prefix('"').and_then(|r| {
            let close = r.find('"')?;
            let text = &r[..close];
            let n = r[close + 1..]
                .trim()
                .strip_prefix('|')?
                .trim()
                .strip_prefix("repeat")?
                .trim()
                .parse::<usize>()
                .ok()?;
            Some(text.repeat(n))
        });
        match parsed {
            Some(s) => out.push_str(&s),
            None => return Err("unsupported Go template in data".into()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// go-ftw URL-encodes form data that is not already encoded: each key and value with
/// Go's `url.QueryEscape`.
fn encode_form_data(data: &[u8]) -> Vec<u8> {
    if data.contains(&b'+') || data.contains(&b'%') {
        return data.to_vec();
    }
    let esc = |s: &[u8], out: &mut Vec<u8>| {
        for &c in s {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
                out.push(c);
            } else if c == b' ' {
                out.push(b'+');
            } else {
                out.extend_from_slice(format!("%{c:02X}").as_bytes());
            }
        }
    };
    let mut out = Vec::with_capacity(data.len());
    for (i, token) in data.split(|&c| c == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        match token.iter().position(|&c| c == b'=') {
            Some(p) => {
                esc(&token[..p], &mut out);
                out.push(b'=');
                esc(&token[p + 1..], &mut out);
            }
            None => esc(token, &mut out),
        }
    }
    out
}

/// CRS configured as its regression suite documents (`tests/regression/README.md`,
/// SecAction 900005: paranoia level 4, DetectionOnly, UTF-8 validation, argument
/// limits), behind ModSecurity's recommended body-processor rules.
pub fn harness_ruleset(crs_dir: &Path) -> Result<Ruleset, Vec<String>> {
    harness_ruleset_at(crs_dir, 4)
}

/// [`harness_ruleset`] at another blocking paranoia level (1–4): the rules above it are
/// skipped, as in a deployment at that level.
pub fn harness_ruleset_at(crs_dir: &Path, paranoia: u8) -> Result<Ruleset, Vec<String>> {
    let setup = if crs_dir.join("crs-setup.conf").exists() {
        "crs-setup.conf"
    } else {
        "crs-setup.conf.example"
    };
    let harness = format!(
        r#"SecRuleEngine DetectionOnly
SecRequestBodyAccess On
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecResponseBodyLimit 524288
SecResponseBodyLimitAction ProcessPartial
SecArgumentSeparator &
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule &ARGS "@ge 1000" "id:200007,phase:2,t:none,log,deny,status:400,msg:'Failed to fully parse request body due to large argument count',severity:2"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{{reqbody_error_msg}}',severity:2"
Include {setup}
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,ctl:ruleRemoveById=910000,setvar:tx.blocking_paranoia_level={paranoia},setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"
Include rules/*.conf
"#
    );
    let path = crs_dir.join("rampart-ftw-harness.conf");
    let mut mem = MemFs::new();
    mem.insert(&path, harness);
    let fs = OverlayFs(mem);
    let loaded = seclang::load(&fs, &path);
    if !loaded.diagnostics.is_empty() {
        return Err(loaded.diagnostics.iter().map(ToString::to_string).collect());
    }
    let rs = Ruleset::compile(&loaded, &fs);
    if !rs.errors.is_empty() {
        return Err(rs.errors.clone());
    }
    Ok(rs)
}

/// The result of one stage.
#[derive(Debug, Clone, Default)]
pub struct StageResult {
    /// Status the edge (or the backend) answered.
    pub status: Option<u16>,
    /// Ids that fired.
    pub fired: Vec<u64>,
    /// Log lines, ModSecurity style.
    pub log: Vec<String>,
}

/// Runs one request through the framing guard, the rules and the emulated backend.
pub fn evaluate(rs: &Ruleset, raw: &[u8]) -> StageResult {
    let mut result = StageResult::default();
    // The edge's framing guard first, with the edge's default limits.
    let mut guard = Guard::new(Limits {
        max_uri_bytes: 8 * 1024,
        max_head_bytes: 32 * 1024,
        max_headers: 100,
    });
    let mut offset = 0;
    let mut head_end = None;
    while offset < raw.len() {
        match guard.advance(&raw[offset..]) {
            Step::Pass(n) => {
                offset += n;
                if head_end.is_none() {
                    head_end = Some(offset);
                }
            }
            Step::NeedMore => break,
            Step::Reject(r) => {
                if head_end.is_none() {
                    result.status = Some(r.status.as_u16());
                    return result;
                }
                break;
            }
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(hlen)) = req.parse(raw) else {
        result.status = Some(400);
        return result;
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        result.status = Some(400);
        return result;
    };
    let body = request_body(&raw[hlen..], req.headers);
    let mut tx = Transaction::new(
        rs,
        RequestInfo {
            remote_addr: "127.0.0.1".into(),
            remote_port: 40000,
            server_addr: "127.0.0.1".into(),
            server_port: 80,
            unique_id: "rampart-ftw".into(),
        },
    );
    tx.set_request_line(
        method.as_bytes(),
        path.as_bytes(),
        if minor == 0 { "1.0" } else { "1.1" },
    );
    for h in req.headers.iter() {
        tx.add_request_header(h.name.as_bytes(), h.value);
    }
    tx.process_request_headers();
    tx.process_request_body(&body);
    let (status, rheaders, rbody) = backend(method, path, &body);
    tx.process_response_headers(status, "HTTP/1.1", &rheaders);
    tx.process_response_body(&rbody);
    tx.process_logging();
    result.status = Some(status);
    for m in tx.matched_rules() {
        result.fired.push(m.id);
        let mut line = format!(
            "ModSecurity: Warning. [file \"{}\"] [line \"{}\"] [id \"{}\"] [msg \"{}\"] [data \"{}\"]",
            m.file,
            m.line,
            m.id,
            log_escape(&m.msg),
            log_escape(&m.logdata)
        );
        if let Some(s) = m.severity {
            line.push_str(&format!(" [severity \"{s}\"]"));
        }
        for t in &m.tags {
            line.push_str(&format!(" [tag \"{t}\"]"));
        }
        result.log.push(line);
    }
    result
}

/// Escapes a log field as ModSecurity does: control and non-ASCII bytes as `\xHH`,
/// quotes and backslashes with a backslash, so one match is one line.
fn log_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

fn request_body(rest: &[u8], headers: &[httparse::Header<'_>]) -> Vec<u8> {
    let get = |n: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value)
    };
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked")) {
        let mut out = Vec::new();
        let mut r = rest;
        while let Some(eol) = r.windows(2).position(|w| w == b"\r\n") {
            let size_text = std::str::from_utf8(&r[..eol]).unwrap_or("0");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = eol + 2;
            let end = (start + size).min(r.len());
            out.extend_from_slice(&r[start..end]);
            r = r.get(end + 2..).unwrap_or(&[]);
        }
        return out;
    }
    let len = get("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(0);
    rest[..len.min(rest.len())].to_vec()
}

/// CRS's test backend: `POST /reflect` answers as its JSON body asks; anything else
/// with an empty 200.
/// Status, header fields and body of a backend answer.
type Answer = (u16, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>);

fn backend(method: &str, path: &str, body: &[u8]) -> Answer {
    let plain = |status: u16, mut headers: Vec<(Vec<u8>, Vec<u8>)>, body: Vec<u8>| {
        headers.push((
            b"Content-Length".to_vec(),
            body.len().to_string().into_bytes(),
        ));
        (status, headers, body)
    };
    let route = path.split('?').next().unwrap_or("");
    if route != "/reflect" || method != "POST" {
        return plain(
            200,
            vec![(b"Server".to_vec(), b"reflect-origin".to_vec())],
            Vec::new(),
        );
    }
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(body) else {
        return plain(200, Vec::new(), Vec::new());
    };
    let status = spec["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s))
        .unwrap_or(200);
    let mut headers = Vec::new();
    let mut has_ct = false;
    if let Some(map) = spec["headers"].as_object() {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let lk = k.to_ascii_lowercase();
            if matches!(
                lk.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            ) {
                continue;
            }
            has_ct |= lk == "content-type";
            headers.push((k.as_bytes().to_vec(), v.into_bytes()));
        }
    }
    let rbody = match (spec["encodedBody"].as_str(), spec["body"].as_str()) {
        (Some(enc), _) => {
            let mut out = Vec::new();
            crate::transform::apply(Transform::Base64Decode, enc.as_bytes(), &mut out);
            out
        }
        (None, Some(b)) => b.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    if !has_ct && !rbody.is_empty() {
        headers.push((b"Content-Type".to_vec(), b"text/plain".to_vec()));
    }
    plain(status, headers, rbody)
}

/// Whether a stage's result meets its expectations; the reasons if not.
pub fn check(stage: &Stage, r: &StageResult) -> Vec<String> {
    let mut reasons = Vec::new();
    if stage.expect_error {
        reasons
            .push("expect_error: the request is expected to fail at the connection level".into());
    }
    if !stage.status.is_empty() && !r.status.is_some_and(|s| stage.status.contains(&s)) {
        reasons.push(format!("status {:?} not in {:?}", r.status, stage.status));
    }
    let missing: Vec<u64> = stage
        .expect_ids
        .iter()
        .copied()
        .filter(|i| !r.fired.contains(i))
        .collect();
    if !missing.is_empty() {
        reasons.push(format!("missing ids {missing:?}"));
    }
    let unexpected: Vec<u64> = stage
        .no_expect_ids
        .iter()
        .copied()
        .filter(|i| r.fired.contains(i))
        .collect();
    if !unexpected.is_empty() {
        reasons.push(format!("unexpected ids {unexpected:?}"));
    }
    if let Some(rx) = &stage.match_regex {
        match regex::Regex::new(rx) {
            Ok(re) if r.log.iter().any(|l| re.is_match(l)) => {}
            Ok(_) => reasons.push(format!("no log line matches {rx:?}")),
            Err(e) => reasons.push(format!("match_regex does not compile: {e}")),
        }
    }
    if let Some(rx) = &stage.no_match_regex {
        if regex::Regex::new(rx).is_ok_and(|re| r.log.iter().any(|l| re.is_match(l))) {
            reasons.push(format!("a log line matches {rx:?}"));
        }
    }
    if stage.isolated {
        let distinct: std::collections::BTreeSet<_> = r.fired.iter().collect();
        if distinct.len() != 1 {
            reasons.push(format!("isolated: {} rules fired", distinct.len()));
        }
    }
    reasons
}

/// Reads an exclusions file: a TOML table of `"RULE-TEST" = "reason"`.
pub fn load_exclusions(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_exclusions(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses exclusions: one `"RULE-TEST" = "reason"` per line; `#` comments; every
/// reason must be given.
pub fn parse_exclusions(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once('=').and_then(|(k, v)| {
            let k = k.trim().strip_prefix('"')?.strip_suffix('"')?;
            let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some((k.to_owned(), v.to_owned()))
        });
        match parsed {
            Some((k, v))
                if !v.trim().is_empty()
                    && k.split_once('-').is_some_and(|(a, b)| {
                        a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()
                    }) =>
            {
                if out.insert(k.clone(), v).is_some() {
                    return Err(format!("line {}: `{k}` is listed twice", n + 1));
                }
            }
            _ => {
                return Err(format!(
                    "line {}: expected `\"RULE-TEST\" = \"reason\"` with a non-empty reason",
                    n + 1
                ));
            }
        }
    }
    Ok(out)
}

/// Outcome of a whole run.
#[derive(Debug, Default)]
pub struct Report {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed: file → (test, reasons).
    pub failed: BTreeMap<String, Vec<(String, Vec<String>)>>,
    /// Tests not run: (test, reason).
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// Number of failed tests.
    pub fn failed_count(&self) -> usize {
        self.failed.values().map(Vec::len).sum()
    }
}

/// Runs every test (those `exclude` names are skipped with its reason).
pub fn run(
    rs: &Ruleset,
    files: &[TestFile],
    exclude: &BTreeMap<String, String>,
    filter: Option<&regex::Regex>,
) -> Report {
    let mut report = Report::default();
    for f in files {
        for t in &f.tests {
            let name = t.name();
            if filter.is_some_and(|re| !re.is_match(&name)) {
                continue;
            }
            if let Some(why) = exclude.get(&name) {
                report.skipped.push((name, why.clone()));
                continue;
            }
            let mut reasons = Vec::new();
            let mut skip = None;
            for (i, s) in t.stages.iter().enumerate() {
                let raw = match &s.request {
                    Ok(r) => r,
                    Err(why) => {
                        skip = Some(why.clone());
                        break;
                    }
                };
                let r = evaluate(rs, raw);
                let rs_ = check(s, &r);
                if !rs_.is_empty() {
                    reasons.extend(rs_.into_iter().map(|x| format!("stage {i}: {x}")));
                    break;
                }
            }
            match (skip, reasons.is_empty()) {
                (Some(why), _) => report.skipped.push((name, why)),
                (None, true) => report.passed += 1,
                (None, false) => report
                    .failed
                    .entry(f.path.clone())
                    .or_default()
                    .push((name, reasons)),
            }
        }
    }
    report
}

#[cfg(test)]
mod tests;
