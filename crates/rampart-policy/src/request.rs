//! [`Request`]: what expressions and rate-limit keys read about a request.
//!
//! The edge fills one from its request view (borrowing, not copying, the head); query
//! arguments and cookies are parsed the first time a rule asks for them and kept for the
//! other rules of the request.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use crate::expr::Field;

/// A decoded query argument: name and value.
type Arg<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The response, for rules that run once the origin answered.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Header fields.
    pub headers: &'a HeaderMap,
}

/// A request's fields. Construct with [`Request::new`], then set what is known.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's address.
    pub client_ip: IpAddr,
    /// ISO 3166-1 alpha-2 country of `client_ip`; empty when unknown.
    pub country: &'a str,
    /// Autonomous system number of `client_ip`; 0 when unknown.
    pub asn: u32,
    /// The method as sent.
    pub method: &'a str,
    /// Whether the request came over TLS.
    pub tls: bool,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub version: &'a str,
    /// Host, lower case, without port.
    pub host: &'a str,
    /// The port the client connected to.
    pub port: u16,
    /// Path and query as received.
    pub target: &'a str,
    /// Request header fields.
    pub headers: &'a HeaderMap,
    /// Arguments of the body (urlencoded or flattened JSON), when it was read.
    pub body_args: Option<&'a [(Vec<u8>, Vec<u8>)]>,
    /// TLS fingerprint (JA4); empty when not computed.
    pub tls_fingerprint: &'a str,
    /// HTTP fingerprint (see the field `http.fingerprint`); empty when not known.
    pub http_fingerprint: &'a str,
    /// The client's identity (`client.identity`); empty when not computed.
    pub identity: &'a str,
    /// The bot score (`bot.score`).
    pub bot_score: i64,
    /// Its reasons (`bot.reasons`).
    pub bot_reasons: &'a [&'static str],
    /// Tags set by earlier stages.
    pub tags: &'a [Cow<'static, str>],
    /// The WAF's inbound anomaly score (0 when it did not run).
    pub waf_score: i64,
    /// The response, in the response phase.
    pub response: Option<Response<'a>>,
    /// Tags rules of this policy added (later rules see them).
    added_tags: Vec<Arc<str>>,
    query_args: OnceCell<Vec<Arg<'a>>>,
    cookies: OnceCell<Vec<(&'a [u8], &'a [u8])>>,
}

impl<'a> Request<'a> {
    /// A request with what every request has; the rest is empty, zero or absent.
    pub fn new(
        client_ip: IpAddr,
        method: &'a str,
        host: &'a str,
        target: &'a str,
        headers: &'a HeaderMap,
    ) -> Self {
        Request {
            client_ip,
            country: "",
            asn: 0,
            method,
            tls: false,
            version: "HTTP/1.1",
            host,
            port: 0,
            target,
            headers,
            body_args: None,
            tls_fingerprint: "",
            http_fingerprint: "",
            identity: "",
            bot_score: 0,
            bot_reasons: &[],
            tags: &[],
            waf_score: 0,
            response: None,
            added_tags: Vec::new(),
            query_args: OnceCell::new(),
            cookies: OnceCell::new(),
        }
    }

    /// Adds a tag that later rules (and the event) see.
    pub fn add_tag(&mut self, tag: Arc<str>) {
        if !self.has_tag(&tag) {
            self.added_tags.push(tag);
        }
    }

    /// Tags added with [`Request::add_tag`].
    pub fn added_tags(&self) -> &[Arc<str>] {
        &self.added_tags
    }

    /// Whether the request carries `tag` (from a stage or a rule).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag) || self.added_tags.iter().any(|t| &**t == tag)
    }

    /// The path (the target up to `?`).
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query (after `?`; empty when absent).
    pub fn query(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    fn header_str(&self, name: http::header::HeaderName) -> &'a [u8] {
        self.headers.get(name).map_or(&[], |v| v.as_bytes())
    }

    /// A string field's value.
    pub(crate) fn str_field(&self, f: Field) -> &[u8] {
        match f {
            Field::Country => self.country.as_bytes(),
            Field::Method => self.method.as_bytes(),
            Field::Scheme => {
                if self.tls {
                    b"https"
                } else {
                    b"http"
                }
            }
            Field::Version => self.version.as_bytes(),
            Field::Host => self.host.as_bytes(),
            Field::Uri => self.target.as_bytes(),
            Field::Path => self.path().as_bytes(),
            Field::Query => self.query().as_bytes(),
            Field::UserAgent => self.header_str(http::header::USER_AGENT),
            Field::Referer => self.header_str(http::header::REFERER),
            Field::TlsFingerprint => self.tls_fingerprint.as_bytes(),
            Field::HttpFingerprint => self.http_fingerprint.as_bytes(),
            Field::Identity => self.identity.as_bytes(),
            _ => &[],
        }
    }

    /// An integer field's value.
    pub(crate) fn int_field(&self, f: Field) -> i64 {
        match f {
            Field::Asn => i64::from(self.asn),
            Field::Port => i64::from(self.port),
            Field::WafScore => self.waf_score,
            Field::BotScore => self.bot_score,
            Field::ResponseCode => self.response.map_or(0, |r| i64::from(r.status)),
            _ => 0,
        }
    }

    fn query_args(&self) -> &[Arg<'a>] {
        self.query_args
            .get_or_init(|| form_pairs(self.query().as_bytes()).collect())
    }

    fn cookies(&self) -> &[(&'a [u8], &'a [u8])] {
        self.cookies.get_or_init(|| {
            let mut out = Vec::new();
            for v in self.headers.get_all(http::header::COOKIE) {
                for part in v.as_bytes().split(|&c| c == b';') {
                    let part = part.trim_ascii();
                    if part.is_empty() {
                        continue;
                    }
                    match part.iter().position(|&c| c == b'=') {
                        Some(i) => out.push((part[..i].trim_ascii(), part[i + 1..].trim_ascii())),
                        None => out.push((part, &part[part.len()..])),
                    }
                }
            }
            out
        })
    }

    /// The `n`th value of an array field, if there is one.
    pub(crate) fn nth(&self, field: Field, key: Option<&Key>, n: usize) -> Option<&[u8]> {
        let mut i = 0;
        let mut found = None;
        self.each(field, key, &mut |v| {
            if i == n {
                found = Some(v);
                return true;
            }
            i += 1;
            false
        });
        found
    }

    /// Calls `visit` with each value of an array field (or of a map field's `key`) until
    /// it returns `true`; returns whether it did.
    pub(crate) fn each<'s>(
        &'s self,
        field: Field,
        key: Option<&Key>,
        visit: &mut dyn FnMut(&'s [u8]) -> bool,
    ) -> bool {
        match (field, key) {
            (Field::Headers, Some(Key::Header(name))) => self
                .headers
                .get_all(name)
                .iter()
                .any(|v| visit(v.as_bytes())),
            (Field::HeaderNames, None) => self.headers.keys().any(|k| visit(k.as_str().as_bytes())),
            (Field::ResponseHeaders, Some(Key::Header(name))) => self
                .response
                .is_some_and(|r| r.headers.get_all(name).iter().any(|v| visit(v.as_bytes()))),
            (Field::ResponseHeaderNames, None) => self
                .response
                .is_some_and(|r| r.headers.keys().any(|k| visit(k.as_str().as_bytes()))),
            (Field::QueryArgs, Some(Key::Name(n))) => self
                .query_args()
                .iter()
                .any(|(k, v)| **k == **n && visit(v)),
            (Field::QueryArgNames, None) => self.query_args().iter().any(|(k, _)| visit(k)),
            (Field::Cookies, Some(Key::Name(n))) => {
                self.cookies().iter().any(|(k, v)| *k == &**n && visit(v))
            }
            (Field::CookieNames, None) => self.cookies().iter().any(|(k, _)| visit(k)),
            (Field::BodyArgs, Some(Key::Name(n))) => self
                .body_args
                .is_some_and(|a| a.iter().any(|(k, v)| **k == **n && visit(v))),
            (Field::BodyArgNames, None) => self
                .body_args
                .is_some_and(|a| a.iter().any(|(k, _)| visit(k))),
            (Field::BotReasons, None) => self.bot_reasons.iter().any(|r| visit(r.as_bytes())),
            (Field::Tags, None) => {
                self.tags.iter().any(|t| visit(t.as_bytes()))
                    || self.added_tags.iter().any(|t| visit(t.as_bytes()))
            }
            _ => false,
        }
    }
}

/// The name a map field is indexed by, prepared at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A header name (matched ignoring case).
    Header(http::header::HeaderName),
    /// An argument or cookie name (matched exactly).
    Name(Box<[u8]>),
}

/// The `name=value` pairs of a query string or an urlencoded body, decoded.
pub fn form_pairs(s: &[u8]) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    s.split(|&c| c == b'&').filter(|p| !p.is_empty()).map(|p| {
        let (n, v) = match p.iter().position(|&c| c == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &p[p.len()..]),
        };
        (form_decode(n), form_decode(v))
    })
}

/// Decodes `+` and `%XX` (invalid escapes stay as they are); borrows when nothing changes.
pub fn form_decode(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.iter().any(|&c| c == b'%' || c == b'+') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
