//! The access log: one JSON line per request, with Elastic Common Schema field names.
//!
//! Lines are formatted on the request path and handed to a writer thread over a bounded
//! channel; when the writer falls behind, lines are dropped and counted
//! (`rampart_access_log_dropped_total`) rather than slowing requests down.
//!
//! Fields: `@timestamp`, `event.dataset` (`rampart.access`), `event.duration` (ns),
//! `organization.id` (the tenant), `rampart.site`, `rampart.route`, `rampart.listener`,
//! `http.request.id`, `http.request.method`, `http.version`, `url.domain`, `url.path`,
//! `url.query`, `url.scheme`, `source.ip`, `source.port`, `client.ip`, `destination.port`,
//! `user_agent.original`, `http.request.referrer`, `http.response.status_code`,
//! `http.response.body.bytes`, `tls.established`, `tls.client.server_name`,
//! `rampart.upstream.pool`, `rampart.upstream.address`, `rampart.reason` (why the edge
//! answered itself), `error.message`.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::metrics::Counter;

/// Capacity of the channel to the writer thread, in lines.
const QUEUE: usize = 64 * 1024;

/// A handle to the access log; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
    dropped: Arc<Counter>,
}

impl AccessLog {
    /// A log that writes nothing.
    pub fn off() -> Self {
        AccessLog {
            tx: None,
            dropped: Arc::new(Counter::default()),
        }
    }

    /// A log written to `sink` by a background thread.
    pub fn to_writer(sink: Box<dyn Write + Send>, dropped: Arc<Counter>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("rampart-access-log".into())
            .spawn(move || writer(rx, sink))?;
        Ok(AccessLog {
            tx: Some(tx),
            dropped,
        })
    }

    /// Whether lines are written at all (callers skip formatting when not).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one ready-made JSON line (the security log shares this writer).
    pub fn write_line(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(line).is_err() {
            self.dropped.inc();
        }
    }

    /// Queues one entry.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let line = entry.to_json();
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

fn writer(rx: Receiver<String>, sink: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        while let Ok(line) = rx.try_recv() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}

/// One access-log entry. Fields left `None` are omitted.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    /// When the request head was received.
    pub start: Option<SystemTime>,
    /// Time to the end of the response.
    pub duration: Duration,
    /// Tenant id.
    pub tenant: Option<&'a str>,
    /// Site id.
    pub site: Option<&'a str>,
    /// Route prefix.
    pub route: Option<&'a str>,
    /// Listener name.
    pub listener: &'a str,
    /// Request id.
    pub request_id: &'a str,
    /// Method.
    pub method: Option<&'a str>,
    /// HTTP version (`1.1`, `2`).
    pub version: Option<&'a str>,
    /// Host.
    pub domain: Option<&'a str>,
    /// Path.
    pub path: Option<&'a str>,
    /// Query string.
    pub query: Option<&'a str>,
    /// Scheme.
    pub scheme: &'a str,
    /// TCP (or PROXY) peer.
    pub source: Option<std::net::SocketAddr>,
    /// Client IP after trusted X-Forwarded-For.
    pub client_ip: Option<std::net::IpAddr>,
    /// Listener port.
    pub destination_port: u16,
    /// User-Agent.
    pub user_agent: Option<&'a str>,
    /// Referer.
    pub referrer: Option<&'a str>,
    /// Response status.
    pub status: u16,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// TLS terminated.
    pub tls: bool,
    /// SNI.
    pub sni: Option<&'a str>,
    /// Origin pool.
    pub pool: Option<&'a str>,
    /// Origin server.
    pub upstream: Option<&'a str>,
    /// Why the edge answered itself.
    pub reason: Option<&'a str>,
    /// Error detail.
    pub error: Option<&'a str>,
}

impl Entry<'_> {
    /// The JSON line (without newline).
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        let ts = self.start.unwrap_or_else(SystemTime::now);
        m.insert("@timestamp".into(), Value::String(rfc3339(ts)));
        m.insert("event.dataset".into(), "rampart.access".into());
        m.insert(
            "event.duration".into(),
            Value::from(u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX)),
        );
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.to_owned()));
            }
        };
        put("organization.id", self.tenant);
        put("rampart.site", self.site);
        put("rampart.route", self.route);
        put("rampart.listener", Some(self.listener));
        put("http.request.id", Some(self.request_id));
        put("http.request.method", self.method);
        put("http.version", self.version);
        put("url.domain", self.domain);
        put("url.path", self.path);
        put("url.query", self.query);
        put("url.scheme", Some(self.scheme));
        put("user_agent.original", self.user_agent);
        put("http.request.referrer", self.referrer);
        put("tls.client.server_name", self.sni);
        put("rampart.upstream.pool", self.pool);
        put("rampart.upstream.address", self.upstream);
        put("rampart.reason", self.reason);
        put("error.message", self.error);
        if let Some(src) = self.source {
            m.insert("source.ip".into(), Value::String(src.ip().to_string()));
            m.insert("source.port".into(), Value::from(src.port()));
        }
        if let Some(ip) = self.client_ip {
            m.insert("client.ip".into(), Value::String(ip.to_string()));
        }
        m.insert(
            "destination.port".into(),
            Value::from(self.destination_port),
        );
        m.insert("http.response.status_code".into(), Value::from(self.status));
        m.insert(
            "http.response.body.bytes".into(),
            Value::from(self.body_bytes),
        );
        m.insert("tls.established".into(), Value::Bool(self.tls));
        Value::Object(m).to_string()
    }
}

/// `2026-11-22T08:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_334_400_123)),
            "2026-11-22T08:00:00.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn entry_is_ecs_json() {
        let e = Entry {
            tenant: Some("acme"),
            listener: "web",
            request_id: "abc",
            method: Some("GET"),
            path: Some("/x\"y"),
            scheme: "https",
            status: 502,
            source: Some("192.0.2.1:4000".parse().unwrap_or_else(|_| unreachable!())),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&e.to_json()).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(v["organization.id"], "acme");
        assert_eq!(v["http.response.status_code"], 502);
        assert_eq!(v["url.path"], "/x\"y");
        assert_eq!(v["source.ip"], "192.0.2.1");
        assert_eq!(v["source.port"], 4000);
        assert!(v.get("url.query").is_none());
    }
}
