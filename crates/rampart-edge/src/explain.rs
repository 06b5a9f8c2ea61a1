//! `rampart explain`: the decision an edge would take for one raw HTTP request, with its
//! whole trace — without a running edge.
//!
//! The request (as bytes on the wire) is routed like the edge routes it (listener, host,
//! route), then goes through the same steps: lists, rate limits (counters start at zero;
//! limits kept in Redis are counted in process here), the rules before the WAF, the
//! route's WAF (phases 1 and 2 over the request's body), the rules after it, and — given
//! `--response-status` — the response rules. Every verdict is printed in order, then the
//! final action and what monitor mode would have done.

use rampart_core::h1::fingerprint::H1Fingerprint;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use rampart_core::config::{Config, ListenerKind, SourceFile};
use rampart_core::decision::{Action, Decision, Mode, Source, Verdict};
use rampart_policy::policy::{Check, Effects, LimitResult, LocalCounters, RulePhase};
use rampart_policy::{Request, Response};
use rampart_waf::engine::RequestInfo;

/// What to explain.
#[derive(Debug, Clone)]
pub struct Input {
    /// The request as sent: head and body.
    pub raw: Vec<u8>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The listener it arrives on (the first HTTP listener when `None`).
    pub listener: Option<String>,
    /// Also run the response rules, as if the origin answered with this status.
    pub response_status: Option<u16>,
}

/// The trace, as text, or why the request cannot be explained.
pub fn explain(src: &SourceFile, cfg: &Config, input: &Input) -> Result<String, String> {
    let (head_len, method, target, version, headers, http_fp) = parse(&input.raw)?;
    let body = &input.raw[head_len..];
    let li = match &input.listener {
        Some(name) => cfg
            .listeners
            .iter()
            .position(|l| &*l.name == name.as_str())
            .ok_or_else(|| format!("no listener named `{name}`"))?,
        None => cfg
            .listeners
            .iter()
            .position(|l| matches!(l.kind, ListenerKind::Http { .. }))
            .ok_or("the configuration has no HTTP listener")?,
    };
    let listener = &cfg.listeners[li];
    let host_header = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = host_header
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host_header, |(h, _)| h)
        .to_ascii_lowercase();
    let site_idx = cfg
        .routing
        .get(li)
        .and_then(|t| t.lookup(&host))
        .ok_or_else(|| {
            format!(
                "no site serves host `{host}` on listener `{}`",
                listener.name
            )
        })?;
    let site = &cfg.sites[site_idx];
    let path = target.split('?').next().unwrap_or("/");
    let route_idx = site
        .routes
        .iter()
        .position(|r| path.starts_with(r.prefix.as_str()))
        .ok_or_else(|| format!("no route of site `{}` matches `{path}`", site.id))?;
    let route = &site.routes[route_idx];
    let port = listener.bind.port();
    let tls = listener.is_tls();
    let mut out = format!(
        "request: {method} {target} from {} on listener `{}` (port {port}{})\nsite: {}, route: {}\n",
        input.client_ip,
        listener.name,
        if tls { ", TLS" } else { "" },
        site.id,
        route.prefix
    );

    let mut d = Decision::new();
    let mut fx = Effects::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_secs());
    let geo = match &cfg.geo {
        Some(g) => Some(crate::geo::Geo::load(src, g).map_err(|e| e.to_string())?),
        None => None,
    };
    let country = geo.as_ref().and_then(|g| g.country(input.client_ip));
    let asn = geo.as_ref().map_or(0, |g| g.asn(input.client_ip));
    let body_args = crate::policy::body_args(&headers, body);
    let tags: Vec<std::borrow::Cow<'static, str>> = Vec::new();
    let fill = |r: &mut Request<'_>| {
        r.tls = tls;
        r.port = port;
        r.version = version;
        r.asn = asn;
    };

    let policy = match &route.policy {
        Some(spec) => {
            let mut read = |p: &str| -> Result<String, String> {
                std::fs::read_to_string(crate::tls::resolve(src, p)).map_err(|e| e.to_string())
            };
            let lists =
                rampart_policy::build::lists(&cfg.lists, &mut read, src).map_err(|d| render(&d))?;
            Some(
                rampart_policy::build::policy(spec, &cfg.lists, &lists, src)
                    .map_err(|d| render(&d))?,
            )
        }
        None => None,
    };
    let mut req = Request::new(input.client_ip, &method, &host, &target, &headers);
    fill(&mut req);
    req.http_fingerprint = http_fp.as_str();
    req.tags = &tags;
    if let Some(c) = &country {
        req.country = std::str::from_utf8(c).unwrap_or("");
    }
    if let Some(p) = &policy {
        if p.limits
            .iter()
            .any(|l| l.backend == rampart_policy::policy::Backend::Redis)
        {
            out.push_str("note: limits kept in Redis are counted here in process, from zero\n");
        }
        p.acl(&req, &mut d, &mut fx);
        if !d.is_settled() {
            let mut checks: Vec<Check> = Vec::new();
            p.limit_checks(&req, false, now, &mut checks);
            let counters = LocalCounters::new(p);
            let mut results: Vec<LimitResult> = Vec::new();
            counters.run(&checks, 0, &mut results);
            p.apply_limits(&checks, &results, &mut d);
        }
        if !d.is_settled() {
            p.rules(RulePhase::BeforeWaf, &mut req, now, &mut d, &mut fx);
        }
    }

    // The WAF, unless something before it settled the request or skipped inspection.
    let skip = fx.bypass_inspection || d.is_settled();
    let mut waf_score = 0;
    if let (Some(waf_policy), false) = (&route.waf, skip) {
        let set = crate::waf::WafSet::build(src, cfg).map_err(|e| e.to_string())?;
        if let Some(w) = set.route(site_idx, route_idx) {
            let mut tx = crate::waf::start_transaction(
                w,
                RequestInfo {
                    remote_addr: input.client_ip.to_string(),
                    remote_port: 0,
                    server_addr: listener.bind.ip().to_string(),
                    server_port: port,
                    unique_id: "explain".into(),
                },
                &method,
                &target,
                http::Version::HTTP_11,
                &host,
                &headers,
            );
            tx.process_request_headers();
            if tx.intervention().is_none() {
                let limit = usize::try_from(waf_policy.body_limit).unwrap_or(usize::MAX);
                tx.process_request_body(&body[..body.len().min(limit)]);
            }
            for m in tx.matched_rules() {
                out.push_str(&format!(
                    "  waf rule {} (phase {}): {}\n",
                    m.id, m.phase, m.msg
                ));
            }
            waf_score = crate::waf::transaction_inbound_score(&tx);
            if let Some(i) = tx.intervention().or(tx.would_intervene()) {
                let status = if (400..600).contains(&i.status) {
                    i.status
                } else {
                    403
                };
                d.push(Verdict {
                    source: Source::Waf,
                    id: i.rule_id.to_string().into(),
                    action: Action::Block { status, page: None },
                    mode: if waf_policy.mode == rampart_core::config::WafMode::Monitor {
                        Mode::Monitor
                    } else {
                        Mode::Enforce
                    },
                    reason: format!(
                        "anomaly score {waf_score} reached the threshold {}",
                        waf_policy.inbound_threshold
                    ),
                });
            }
        }
    }
    if let Some(p) = &policy {
        if !d.is_settled() {
            req.waf_score = waf_score;
            req.body_args = Some(&body_args);
            p.rules(RulePhase::AfterWaf, &mut req, now, &mut d, &mut fx);
        }
        if let (Some(status), false) = (input.response_status, d.is_settled()) {
            let rh = HeaderMap::new();
            req.response = Some(Response {
                status,
                headers: &rh,
            });
            p.rules(RulePhase::Response, &mut req, now, &mut d, &mut fx);
        }
    }
    for (n, v) in &fx.set_headers {
        out.push_str(&format!(
            "  header to the origin: {n}: {}\n",
            v.to_str().unwrap_or("?")
        ));
    }
    for n in &fx.remove_headers {
        out.push_str(&format!("  header removed: {n}\n"));
    }
    if fx.bypass_inspection {
        out.push_str("  inspection bypassed\n");
    }
    out.push_str(&d.to_string());
    out.push('\n');
    Ok(out)
}

fn render(d: &[rampart_core::config::Diagnostic]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

type Parsed = (
    usize,
    String,
    String,
    &'static str,
    HeaderMap,
    H1Fingerprint,
);

/// The request's head: its length, method, target, version and fields.
fn parse(raw: &[u8]) -> Result<Parsed, String> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Request::new(&mut fields);
    let len = match r.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(
                "the request's head is incomplete (it ends with an empty line: CRLF CRLF)".into(),
            );
        }
        Err(e) => return Err(format!("the request does not parse: {e}")),
    };
    let method = r.method.unwrap_or("GET").to_owned();
    let target = r.path.unwrap_or("/").to_owned();
    let version = if r.version == Some(0) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let mut headers = HeaderMap::new();
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("invalid header name `{}`", h.name))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| format!("invalid value of `{}`", h.name))?;
        headers.append(name, value);
    }
    let minor = r.version.unwrap_or(1);
    let fp = rampart_core::h1::fingerprint::of(minor, r.headers.iter().map(|h| h.name.as_bytes()));
    Ok((len, method, target, version, headers, fp))
}
