//! [`HeadCheck`]: strict validation and normalisation of the request head.
//!
//! The HTTP parser (hyper/httparse for HTTP/1, h2 for HTTP/2) already rejects malformed
//! syntax: bad tokens, obs-fold, CR/LF/NUL in fields, differing Content-Length values,
//! chunked on a non-final coding. This stage closes what a lenient parser lets through
//! and that lets two HTTP implementations disagree on where a message ends
//! (request smuggling), and enforces the configured size limits:
//!
//! - Content-Length together with Transfer-Encoding → 400, connection closed;
//! - more than one Content-Length field, or one that is not plain digits → 400;
//! - Transfer-Encoding other than exactly one `chunked` coding, or on HTTP/1.0 → 400;
//! - missing or repeated Host on HTTP/1.1, or an absolute-form URI whose authority
//!   disagrees with Host → 400;
//! - request target longer than `max_uri_bytes` → 414; more than `max_headers` fields
//!   or more than `max_header_bytes` of them → 431;
//! - CONNECT (other than an RFC 8441 extended CONNECT) → 405: this is not a forward proxy.
//!
//! It sets [`RequestView::host`] to the lower-case host without port.

use http::{Method, StatusCode, Version, header};

use super::{ExtendedConnect, Flow, Reply, RequestView, Stage};
use crate::config::{Config, strip_port};

/// The strict head check; see the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadCheck;

impl Stage for HeadCheck {
    fn name(&self) -> &'static str {
        "head_check"
    }

    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow {
        let Some(listener) = cfg.listeners.get(req.listener) else {
            return Flow::Respond(Reply::closing(
                StatusCode::MISDIRECTED_REQUEST,
                "listener no longer configured",
            ));
        };
        match check(&req.head, &listener.limits) {
            Ok(host) => {
                req.host = host;
                Flow::Continue
            }
            Err(reply) => Flow::Respond(reply),
        }
    }
}

fn bad(reason: &'static str) -> Reply {
    Reply::closing(StatusCode::BAD_REQUEST, reason)
}

/// Validates a head against limits; returns the normalised host.
pub(crate) fn check(
    head: &http::request::Parts,
    limits: &crate::config::HttpLimits,
) -> Result<String, Reply> {
    let uri_len = head
        .uri
        .path_and_query()
        .map_or(head.uri.path().len(), |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Err(Reply::closing(
            StatusCode::URI_TOO_LONG,
            "request target too long",
        ));
    }
    if head.headers.len() > limits.max_headers {
        return Err(Reply::closing(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        ));
    }
    let mut header_bytes = 0usize;
    let mut cl_count = 0;
    let mut te_count = 0;
    let mut host_count = 0;
    let mut host_value = None;
    for (name, value) in &head.headers {
        // name + ": " + value + CRLF, as on the HTTP/1.1 wire
        header_bytes += name.as_str().len() + value.len() + 4;
        if crate::h1::has_control(value.as_bytes()) {
            return Err(bad("control character in header value"));
        }
        if name == header::CONTENT_LENGTH {
            cl_count += 1;
            let v = value.as_bytes();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(bad("malformed Content-Length"));
            }
        } else if name == header::TRANSFER_ENCODING {
            te_count += 1;
            if !value.as_bytes().eq_ignore_ascii_case(b"chunked") {
                return Err(bad("unsupported Transfer-Encoding"));
            }
        } else if name == header::HOST {
            host_count += 1;
            host_value.get_or_insert(value);
        }
    }
    if header_bytes > limits.max_header_bytes {
        return Err(Reply::closing(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header fields too large",
        ));
    }
    if cl_count > 1 {
        return Err(bad("repeated Content-Length"));
    }
    if te_count > 1 {
        return Err(bad("repeated Transfer-Encoding"));
    }
    if te_count > 0 {
        if cl_count > 0 {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if head.version != Version::HTTP_11 {
            return Err(bad("Transfer-Encoding is not allowed in this HTTP version"));
        }
    }

    let is_extended_connect = head.extensions.get::<ExtendedConnect>().is_some();
    if head.method == Method::CONNECT && !is_extended_connect {
        return Err(Reply::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported",
        ));
    }
    if head.uri.path() == "*" && head.method != Method::OPTIONS {
        return Err(bad("asterisk-form target on a method other than OPTIONS"));
    }

    let host_header = host_value.map(|v| v.to_str());
    if host_count > 1 {
        return Err(bad("repeated Host"));
    }
    let authority = head.uri.authority().map(|a| a.as_str());
    let host = match (authority, host_header) {
        (_, Some(Err(_))) => return Err(bad("Host is not visible ASCII")),
        (Some(a), Some(Ok(h))) => {
            if head.version <= Version::HTTP_11 && !a.eq_ignore_ascii_case(h) {
                return Err(bad("absolute-form target disagrees with Host"));
            }
            a
        }
        (Some(a), None) => a,
        (None, Some(Ok(h))) => h,
        (None, None) => {
            if head.version == Version::HTTP_11 {
                return Err(bad("missing Host"));
            }
            ""
        }
    };
    if host
        .bytes()
        .any(|b| b <= b' ' || b == b'/' || b == b'\\' || b == b'@' || b >= 0x7f)
    {
        return Err(bad("invalid Host"));
    }
    let host = strip_port(host);
    Ok(host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase())
}
