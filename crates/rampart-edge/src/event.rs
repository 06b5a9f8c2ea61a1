//! The security event: one JSON line per request that anything matched — a list, a
//! limit, a custom rule, a WAF rule — written when the request's state is dropped
//! (blocked, answered, or failed: never lost, never twice).
//!
//! Stages contribute to one [`SecurityEvent`] kept in the request's state: the policy
//! stage its verdicts, the WAF its transaction (its rules, scores and its own verdict).
//! The event explains the whole decision: `rampart.decision` lists every verdict in the
//! order it was reached, with its source, id, mode, outcome and reason;
//! `event.action` is the final outcome (the most severe enforced verdict, else what
//! monitor mode would have done, else `log`). Names follow the Elastic Common Schema
//! where one exists; data is masked before it is written ([`crate::waf::mask`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rampart_core::config::Config;
use rampart_core::decision::{Decision, Source};
use rampart_core::pipeline::{HttpFingerprint, RequestView};
use serde_json::{Map, Value};

use crate::accesslog::AccessLog;
use crate::waf::{WafState, mask};

/// Request facts for the event, taken when the first stage needs an event.
/// What is kept is shared or cheap to clone (two small strings are copied).
struct EventBase {
    start: SystemTime,
    tenant: Option<Arc<str>>,
    site: Arc<str>,
    route: Option<Arc<str>>,
    request_id: String,
    method: http::Method,
    uri: http::Uri,
    host: String,
    source: SocketAddr,
    client_ip: std::net::IpAddr,
    destination_port: u16,
    ja4: Option<Arc<str>>,
    http_fingerprint: HttpFingerprint,
    bot: Option<crate::bot::BotView>,
}

/// The request's security event, in the making.
pub struct SecurityEvent {
    base: EventBase,
    events: AccessLog,
    /// Every verdict so far.
    pub decision: Decision,
    /// The WAF's transaction, when the WAF ran.
    pub(crate) waf: Option<WafState>,
    /// The origin's status, once known.
    pub response_status: Option<u16>,
    /// Tags rules added.
    pub tags: Vec<Arc<str>>,
    /// The client's country code and ASN (0: unknown), when looked up.
    pub geo: Option<(Option<[u8; 2]>, u32)>,
}

impl SecurityEvent {
    /// The request's event, made (with the request's facts) if it has none yet.
    /// `route` names the route for the event.
    pub fn of<'r>(
        req: &'r mut RequestView,
        cfg: &Config,
        events: &AccessLog,
        route: Option<Arc<str>>,
    ) -> &'r mut SecurityEvent {
        if req.state.get::<SecurityEvent>().is_none() {
            let site = req.site.and_then(|s| cfg.sites.get(s));
            let base = EventBase {
                start: SystemTime::now(),
                tenant: site
                    .and_then(|s| cfg.tenants.get(s.tenant))
                    .map(|t| t.id.clone()),
                site: site.map_or_else(|| Arc::from("-"), |s| s.id.clone()),
                route,
                request_id: req.request_id.clone(),
                method: req.head.method.clone(),
                uri: req.head.uri.clone(),
                host: req.host.clone(),
                source: req.conn.peer,
                client_ip: req.client_ip,
                destination_port: req.conn.local.port(),
                ja4: req.conn.tls_fingerprint.clone(),
                http_fingerprint: req.http_fingerprint.clone(),
                bot: req.state.get::<crate::bot::BotView>().cloned(),
            };
            req.state.insert(SecurityEvent {
                base,
                events: events.clone(),
                decision: Decision::new(),
                waf: None,
                response_status: None,
                tags: Vec::new(),
                geo: None,
            });
        }
        match req.state.get_mut::<SecurityEvent>() {
            Some(e) => e,
            // Inserted just above.
            None => unreachable!("the security event was just stored"),
        }
    }

    fn render(&self) -> Option<String> {
        let waf_matched = self.waf.as_ref().is_some_and(|w| w.matched());
        if !self.decision.is_notable() && !waf_matched {
            return None;
        }
        let e = &self.base;
        let d = &self.decision;
        // The enforced verdict that changed what happened (redirect, challenge, block),
        // else what monitor mode would have done, else allow or log.
        let decided_by = d
            .final_verdict()
            .filter(|v| v.action.severity() >= 2)
            .or(d.would())
            .or(d.final_verdict());
        let action = decided_by.map_or("log", |v| v.outcome());
        let module = match decided_by.map(|v| v.source) {
            Some(Source::Waf) => "waf",
            Some(_) => "policy",
            None if waf_matched => "waf",
            None => "policy",
        };
        let mut m = Map::new();
        let s = |v: &str| Value::String(v.to_owned());
        m.insert("@timestamp".into(), s(&crate::accesslog::rfc3339(e.start)));
        m.insert("event.dataset".into(), s("rampart.security"));
        m.insert("event.kind".into(), s("alert"));
        m.insert(
            "event.category".into(),
            Value::Array(vec![s("web"), s("intrusion_detection")]),
        );
        m.insert("event.action".into(), s(action));
        m.insert("event.module".into(), s(module));
        m.insert(
            "organization.id".into(),
            s(e.tenant.as_deref().unwrap_or("")),
        );
        m.insert("rampart.site".into(), s(&e.site));
        m.insert("rampart.route".into(), s(e.route.as_deref().unwrap_or("")));
        m.insert("http.request.id".into(), s(&e.request_id));
        m.insert("http.request.method".into(), s(e.method.as_str()));
        m.insert("url.domain".into(), s(&e.host));
        m.insert("url.path".into(), s(&mask::text(e.uri.path())));
        if let Some(q) = e.uri.query() {
            m.insert("url.query".into(), s(&mask::query(q)));
        }
        m.insert("source.ip".into(), s(&e.source.ip().to_string()));
        m.insert("source.port".into(), Value::from(e.source.port()));
        m.insert("client.ip".into(), s(&e.client_ip.to_string()));
        m.insert("destination.port".into(), Value::from(e.destination_port));
        if let Some(fp) = &e.ja4 {
            m.insert("tls.client.ja4".into(), s(fp));
        }
        if let Some(b) = &e.bot {
            m.insert("rampart.client.identity".into(), s(&b.identity));
            m.insert("rampart.bot.score".into(), serde_json::Value::from(b.score));
            m.insert(
                "rampart.bot.reasons".into(),
                serde_json::Value::from(b.reasons.clone()),
            );
        }
        if e.http_fingerprint != HttpFingerprint::None {
            m.insert(
                "http.request.fingerprint".into(),
                s(e.http_fingerprint.as_str()),
            );
        }
        if let Some((country, asn)) = self.geo {
            if let Some(c) = country {
                m.insert(
                    "source.geo.country_iso_code".into(),
                    s(&String::from_utf8_lossy(&c)),
                );
            }
            if asn != 0 {
                m.insert("source.as.number".into(), Value::from(asn));
            }
        }
        if let Some(st) = self.response_status {
            m.insert("http.response.status_code".into(), Value::from(st));
        }
        if !self.tags.is_empty() {
            m.insert(
                "tags".into(),
                Value::Array(self.tags.iter().map(|t| s(t)).collect()),
            );
        }
        if !d.is_empty() {
            let verdicts = d
                .verdicts()
                .iter()
                .map(|v| {
                    let mut o = Map::new();
                    o.insert("source".into(), s(v.source.as_str()));
                    o.insert("id".into(), s(&v.id));
                    o.insert("outcome".into(), s(v.outcome()));
                    o.insert("mode".into(), s(v.mode.as_str()));
                    o.insert("reason".into(), s(&mask::text(&v.reason)));
                    Value::Object(o)
                })
                .collect();
            m.insert("rampart.decision".into(), Value::Array(verdicts));
        }
        if let Some(w) = &self.waf {
            w.fill_event(&mut m);
        }
        Some(Value::Object(m).to_string())
    }
}

impl Drop for SecurityEvent {
    fn drop(&mut self) {
        // The WAF's phase 5, then the event, however the request ended.
        if let Some(w) = &mut self.waf {
            w.tx.process_logging();
        }
        if self.events.enabled() {
            if let Some(line) = self.render() {
                self.events.write_line(line);
            }
        }
    }
}
