//! Pages the edge answers with itself: errors (400-504) and, later, block pages.
//!
//! Every page carries the request id, so a customer can quote it to support. Browsers get
//! HTML; API clients (an `Accept` that prefers JSON) get a JSON document.

use http::{HeaderValue, StatusCode, header};

/// The page format chosen from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/html`.
    Html,
    /// `application/json`.
    Json,
}

/// JSON when the client asks for JSON and not for HTML; HTML otherwise.
pub fn negotiate(accept: Option<&HeaderValue>) -> Format {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return Format::Html;
    };
    let mut json_q = -1.0f32;
    let mut html_q = -1.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "application/json" || media.ends_with("+json") {
            json_q = json_q.max(q);
        } else if media == "text/html" || media == "application/xhtml+xml" {
            html_q = html_q.max(q);
        }
    }
    if json_q > 0.0 && json_q > html_q {
        Format::Json
    } else {
        Format::Html
    }
}

fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        403 => "Access denied",
        404 => "Not found",
        405 => "Method not allowed",
        408 => "Request timeout",
        413 => "Request body too large",
        414 => "Request target too long",
        421 => "Misdirected request",
        431 => "Request headers too large",
        502 => "Bad gateway",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The body and content type of an error page.
pub fn render(
    status: StatusCode,
    reason: &str,
    request_id: &str,
    format: Format,
) -> (&'static str, String) {
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "error": { "status": status.as_u16(), "title": title(status), "reason": reason, "request_id": request_id }
            });
            ("application/json", doc.to_string())
        }
        Format::Html => {
            let t = title(status);
            let body = format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{code} {t}</title><style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}\
code{{background:#eee;padding:.1em .3em}}</style></head>\n<body><main><h1>{code} {t}</h1><p>{reason}.</p>\
<p>If you contact support, please quote this request id: <code>{id}</code></p></main></body></html>\n",
                code = status.as_u16(),
                reason = html_escape(reason),
                id = html_escape(request_id),
            );
            ("text/html; charset=utf-8", body)
        }
    }
}

/// A complete HTTP/1.1 error response for a connection the framing guard refused, written
/// raw on the socket before it closes.
pub fn raw_response(status: StatusCode, reason: &str, request_id: &str) -> Vec<u8> {
    let (ctype, body) = render(status, reason, request_id, Format::Html);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\ncache-control: no-store\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Headers every edge-generated page carries.
pub fn headers(h: &mut http::HeaderMap, ctype: &'static str, request_id: &str) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(negotiate(None), Format::Html);
        assert_eq!(negotiate(Some(&v("application/json"))), Format::Json);
        assert_eq!(
            negotiate(Some(&v("application/problem+json"))),
            Format::Json
        );
        assert_eq!(
            negotiate(Some(&v("text/html,application/xhtml+xml,*/*;q=0.8"))),
            Format::Html
        );
        assert_eq!(
            negotiate(Some(&v("text/html;q=0.5, application/json"))),
            Format::Json
        );
        assert_eq!(negotiate(Some(&v("application/json;q=0"))), Format::Html);
        assert_eq!(negotiate(Some(&v("*/*"))), Format::Html);
    }

    #[test]
    fn pages_carry_the_request_id_and_escape() {
        let (ct, body) = render(
            StatusCode::BAD_GATEWAY,
            "origin <down>",
            "abc123",
            Format::Html,
        );
        assert!(ct.starts_with("text/html"));
        assert!(
            body.contains("abc123")
                && body.contains("origin &lt;down&gt;")
                && body.contains("502 Bad gateway")
        );
        let (ct, body) = render(StatusCode::GATEWAY_TIMEOUT, "slow", "abc123", Format::Json);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["error"]["status"], 504);
        assert_eq!(v["error"]["request_id"], "abc123");
        let raw = String::from_utf8(raw_response(StatusCode::REQUEST_TIMEOUT, "slow", "id1"))
            .unwrap_or_default();
        assert!(
            raw.starts_with("HTTP/1.1 408 Request Timeout\r\n")
                && raw.contains("\r\nconnection: close\r\n")
                && raw.contains("x-request-id: id1")
        );
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
