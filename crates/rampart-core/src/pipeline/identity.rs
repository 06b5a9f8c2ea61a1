//! [`Identity`]: who the client is, and which id the request carries.
//!
//! The client IP is the TCP peer (or the PROXY-protocol source). When that peer is a
//! trusted proxy (`edge.trusted_proxies`), X-Forwarded-For is walked from the right,
//! skipping trusted addresses: the first untrusted address is the client. Entries a
//! client could have forged (left of it) are never believed.
//!
//! The request id is taken from X-Request-Id only when a trusted proxy sent it and it is
//! well formed; otherwise a fresh one is generated.

use std::net::IpAddr;

use super::{Flow, RequestView, Stage};
use crate::config::Config;
use crate::net::canonical;
use crate::request_id::is_acceptable;

/// X-Request-Id.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The identity stage; see the module docs.
pub struct Identity {
    new_id: fn() -> String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl Identity {
    /// An identity stage that draws fresh request ids from `new_id`.
    pub fn new(new_id: fn() -> String) -> Self {
        Identity { new_id }
    }
}

impl Stage for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow {
        let trusted = &cfg.edge.trusted_proxies;
        let peer = canonical(req.conn.peer.ip());
        let from_trusted = trusted.contains(peer);
        req.from_trusted_proxy = from_trusted;
        req.client_ip = if from_trusted {
            client_from_xff(&req.head.headers, peer, |ip| trusted.contains(ip))
        } else {
            peer
        };
        // (Only a trusted proxy's id is looked up: no field lookup for anyone else.)
        let forwarded = from_trusted
            .then(|| req.head.headers.get(X_REQUEST_ID))
            .flatten()
            .filter(|v| is_acceptable(v.as_bytes()));
        req.request_id = match forwarded {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None => (self.new_id)(),
        };
        Flow::Continue
    }
}

/// The rightmost untrusted address of X-Forwarded-For (all fields, in order), or `peer`
/// if every listed address is trusted or a field is malformed past that point.
pub fn client_from_xff(
    headers: &http::HeaderMap,
    peer: IpAddr,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut client = peer;
    let fields: Vec<&http::HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    for value in fields.iter().rev() {
        let Ok(s) = value.to_str() else { return client };
        for entry in s.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some(ip) = parse_xff_entry(entry) else {
                return client;
            };
            let ip = canonical(ip);
            client = ip;
            if !is_trusted(ip) {
                return client;
            }
        }
    }
    client
}

/// An X-Forwarded-For entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_xff_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    s.rsplit_once(':')
        .and_then(|(ip, port)| port.parse::<u16>().ok().and(ip.parse().ok()))
}
