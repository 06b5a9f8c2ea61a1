//! The request head as it goes to an origin: the client's fields after normalisation,
//! plus the fields the edge sets (Host, X-Forwarded-For/-Proto/-Port, X-Request-Id).
//!
//! The edge's fields are kept beside the client's map instead of inserted into it: the
//! inline HTTP/1.1 client writes them straight into the request head (leaving out any
//! copy the client sent), which spares a hash insertion and a value allocation per field
//! on every request. For hyper's HTTP/2 client, [`Outgoing::into_request`] puts them in
//! the map. Either way the origin receives the same fields.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};
use rampart_core::config::UpstreamProtocol;

use crate::body::ReqBody;

use super::{Lease, PoolRuntime};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// The head to send upstream; kept (borrowed) so a retry can send it again.
#[derive(Clone)]
pub struct Outgoing {
    /// Method (GET for an RFC 8441 extended CONNECT turned into an HTTP/1.1 upgrade).
    pub method: Method,
    /// Origin-form target.
    pub path_and_query: http::uri::PathAndQuery,
    /// The authority the client addressed, sent as Host (HTTP/1.1) or `:authority`.
    pub host: Option<HeaderValue>,
    /// The client's fields, hop-by-hop ones removed. Its own Host, X-Forwarded-For and
    /// X-Request-Id (and X-Forwarded-Proto/-Port when `proto`/`port` are set) are not sent.
    pub headers: HeaderMap,
    /// X-Forwarded-For: the trusted chain and the peer.
    pub forwarded_for: HeaderValue,
    /// X-Forwarded-Proto to set; `None` keeps the one a trusted proxy sent.
    pub proto: Option<&'static str>,
    /// X-Forwarded-Port to set; `None` keeps the one a trusted proxy sent.
    pub port: Option<u16>,
    /// X-Request-Id.
    pub request_id: HeaderValue,
}

impl Default for Outgoing {
    fn default() -> Self {
        Outgoing {
            method: Method::GET,
            path_and_query: http::uri::PathAndQuery::from_static("/"),
            host: None,
            headers: HeaderMap::new(),
            forwarded_for: HeaderValue::from_static(""),
            proto: None,
            port: None,
            request_id: HeaderValue::from_static(""),
        }
    }
}

impl Outgoing {
    /// Whether the client's field `name` gives way to one the edge sets.
    pub fn replaces(&self, name: &HeaderName) -> bool {
        name == header::HOST
            || name == X_FORWARDED_FOR
            || name == X_REQUEST_ID
            || (name == X_FORWARDED_PROTO && self.proto.is_some())
            || (name == X_FORWARDED_PORT && self.port.is_some())
    }

    /// Writes the edge's fields as header lines (`name: value\r\n`).
    pub fn write_added(&self, out: &mut Vec<u8>) {
        let mut line = |name: &HeaderName, value: &[u8]| {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        if let Some(h) = &self.host {
            line(&header::HOST, h.as_bytes());
        }
        line(&X_FORWARDED_FOR, self.forwarded_for.as_bytes());
        if let Some(p) = self.proto {
            line(&X_FORWARDED_PROTO, p.as_bytes());
        }
        if let Some(p) = self.port {
            let mut digits = [0u8; 5];
            line(&X_FORWARDED_PORT, port_text(p, &mut digits));
        }
        line(&X_REQUEST_ID, self.request_id.as_bytes());
    }

    /// The head as an `http::Request` for hyper's client, with every field in the map.
    pub fn into_request(
        self,
        pool: &PoolRuntime,
        lease: &Lease,
        body: ReqBody,
    ) -> Request<ReqBody> {
        let server = lease.server();
        let (version, authority) = match pool.spec.protocol {
            UpstreamProtocol::Http1 => (Version::HTTP_11, server.authority_parsed.clone()),
            UpstreamProtocol::Http2 => (
                Version::HTTP_2,
                self.host
                    .as_ref()
                    .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
                    .unwrap_or_else(|| server.authority_parsed.clone()),
            ),
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(if pool.spec.tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        parts.authority = Some(authority);
        parts.path_and_query = Some(self.path_and_query);
        let mut headers = self.headers;
        if let Some(h) = self.host {
            headers.insert(header::HOST, h);
        }
        headers.insert(X_FORWARDED_FOR.clone(), self.forwarded_for);
        if let Some(p) = self.proto {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(p));
        }
        if let Some(p) = self.port {
            headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(p));
        }
        headers.insert(X_REQUEST_ID.clone(), self.request_id);
        if version == Version::HTTP_2 {
            headers.remove(header::HOST);
        }
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() =
            http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"));
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        req
    }
}

/// `port` in decimal, in `buf`.
fn port_text(mut port: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (port % 10) as u8;
        port /= 10;
        if port == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_print_in_decimal() {
        for p in [0u16, 7, 10, 80, 443, 8080, 9999, 10000, 65535] {
            let mut b = [0u8; 5];
            assert_eq!(port_text(p, &mut b), p.to_string().as_bytes());
        }
    }

    #[test]
    fn the_client_copies_of_set_fields_give_way() {
        let mut o = Outgoing {
            method: Method::GET,
            path_and_query: http::uri::PathAndQuery::from_static("/"),
            host: Some(HeaderValue::from_static("a.example")),
            headers: HeaderMap::new(),
            forwarded_for: HeaderValue::from_static("10.0.0.1"),
            proto: Some("https"),
            port: Some(8443),
            request_id: HeaderValue::from_static("abc"),
        };
        for n in [
            "host",
            "x-forwarded-for",
            "x-request-id",
            "x-forwarded-proto",
            "x-forwarded-port",
        ] {
            assert!(o.replaces(&HeaderName::from_static(n)), "{n}");
        }
        assert!(!o.replaces(&header::ACCEPT));
        let mut out = Vec::new();
        o.write_added(&mut out);
        assert_eq!(
            out,
            b"host: a.example\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: https\r\n\
              x-forwarded-port: 8443\r\nx-request-id: abc\r\n"
        );
        // A trusted proxy's Proto and Port are kept: the client's copies stay.
        o.proto = None;
        o.port = None;
        assert!(!o.replaces(&X_FORWARDED_PROTO));
        assert!(!o.replaces(&X_FORWARDED_PORT));
    }
}
