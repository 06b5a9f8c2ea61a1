//! The HTTP/1 framing guard: validates a client's byte stream *before* the HTTP parser
//! sees it, so that no request with ambiguous message boundaries is ever processed.
//!
//! hyper, like most servers, is lenient where RFC 9112 allows it: it merges identical
//! Content-Length fields and lets Transfer-Encoding override Content-Length. A proxy
//! that is lenient while its origin is strict (or the other way round) is how request
//! smuggling happens. The guard is strict instead: it parses every request head with
//! `httparse`, enforces the limits, decides the body framing itself and then follows the
//! body (Content-Length countdown, or chunk by chunk) to find the next head. Bytes are
//! released to the parser only once validated; on a violation the guard stops releasing
//! bytes and reports a [`Rejection`] that the edge answers with (400, 408, 414, 431)
//! before closing the connection.
//!
//! Rejected: Content-Length with Transfer-Encoding; repeated or non-numeric
//! Content-Length; Transfer-Encoding other than one `chunked`, or on HTTP/1.0; obs-fold,
//! bare CR, control characters and other syntax `httparse` refuses; chunk sizes that are
//! not 1-16 hex digits, chunk extensions with control characters, chunk data not
//! followed by CRLF; oversize request target (414), header section or field count (431).
//!
//! After a request that asks for a protocol switch (`Upgrade`, `CONNECT`), or after the
//! HTTP/2 connection preface, the guard passes bytes through untouched: the edge closes
//! such a connection if the switch is refused, so no further request is read unchecked.
//!
//! [`Guard::advance`] is pure and incremental: give it the bytes not yet released, and
//! it says how many may be released now, that it needs more, or that it rejects.

use std::mem::MaybeUninit;

use http::StatusCode;

pub mod fingerprint;

#[cfg(test)]
mod tests;

/// Limits the guard enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request target (414 beyond).
    pub max_uri_bytes: usize,
    /// Longest head: request line plus header fields (431 beyond).
    pub max_head_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
}

/// Why the guard refused the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status to answer with.
    pub status: StatusCode,
    /// Reason, for the log and the error page.
    pub reason: &'static str,
}

/// What [`Guard::advance`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first `n` bytes of the input are valid and may be released (n > 0).
    Pass(usize),
    /// Nothing can be released until more bytes arrive.
    NeedMore,
    /// The stream is invalid from the start of the input on.
    Reject(Rejection),
}

/// Where the guard is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests, or inside a head not yet complete.
    Head,
    /// Inside a Content-Length body.
    Body,
    /// Inside a chunked body.
    Chunked,
    /// Raw pass-through (after an upgrade request or the HTTP/2 preface).
    Tunnel,
    /// A rejection was reported; nothing more passes.
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { remaining: u64, then_tunnel: bool },
    ChunkSize { then_tunnel: bool },
    ChunkData { remaining: u64, then_tunnel: bool },
    ChunkDataEnd { then_tunnel: bool },
    Trailers { then_tunnel: bool },
    Tunnel,
    Rejected,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// Offsets of a field's name and value in its head: (name start, name end, value start,
/// value end).
pub type FieldSpan = (u32, u32, u32, u32);

/// Where the parts of the last request head the guard released lie, as offsets from the
/// head's first byte (after any empty lines before it). The HTTP/1 server builds the
/// request from these instead of parsing the head a second time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadLayout {
    /// Length of the head, up to and including the empty line that ends it.
    pub len: usize,
    /// The method.
    pub method: (u32, u32),
    /// The request target.
    pub target: (u32, u32),
    /// HTTP/1.x minor version.
    pub minor: u8,
    /// The header fields, in order.
    pub fields: Vec<FieldSpan>,
}

/// The guard of one connection.
#[derive(Debug, Clone)]
pub struct Guard {
    limits: Limits,
    state: State,
    /// Nothing at all has been released yet (the HTTP/2 preface is only valid here).
    at_start: bool,
    /// Requests whose head was released.
    requests: u64,
    /// The connection speaks HTTP/2 (preface seen, or negotiated by ALPN).
    h2: bool,
    /// The layout of the last head released (request number `requests`).
    layout: HeadLayout,
}

impl Guard {
    /// A guard for a new connection.
    pub fn new(limits: Limits) -> Self {
        Guard {
            limits,
            state: State::Head,
            at_start: true,
            requests: 0,
            h2: false,
            layout: HeadLayout::default(),
        }
    }

    /// A guard for a connection that negotiated HTTP/2 by ALPN: everything passes (the
    /// HTTP/2 framing layer validates), and [`Guard::is_h2`] says so.
    pub fn h2(limits: Limits) -> Self {
        Guard {
            limits,
            state: State::Tunnel,
            at_start: false,
            requests: 0,
            h2: true,
            layout: HeadLayout::default(),
        }
    }

    /// Whether the connection speaks HTTP/2 (its bytes pass through; HTTP/2 has its own
    /// framing, validated by the HTTP/2 implementation).
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// Where the guard is.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Head => Phase::Head,
            State::Body { .. } => Phase::Body,
            State::ChunkSize { .. }
            | State::ChunkData { .. }
            | State::ChunkDataEnd { .. }
            | State::Trailers { .. } => Phase::Chunked,
            State::Tunnel => Phase::Tunnel,
            State::Rejected => Phase::Rejected,
        }
    }

    /// Number of request heads released so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The layout of the last request head released: that of request number
    /// [`Guard::requests`] (meaningless while that is 0).
    pub fn last_head(&self) -> &HeadLayout {
        &self.layout
    }

    /// Decides how much of `input` (the bytes received and not yet released) may be
    /// released now. Call again with the remaining bytes after releasing `n`.
    pub fn advance(&mut self, input: &[u8]) -> Step {
        if input.is_empty() {
            return if self.state == State::Rejected {
                self.rejected()
            } else {
                Step::NeedMore
            };
        }
        let step = match self.state {
            State::Head => self.head(input),
            State::Body {
                remaining,
                then_tunnel,
            } => {
                let n = remaining.min(input.len() as u64);
                let left = remaining - n;
                self.state = if left > 0 {
                    State::Body {
                        remaining: left,
                        then_tunnel,
                    }
                } else {
                    self.after_message(then_tunnel)
                };
                Step::Pass(n as usize)
            }
            State::ChunkSize { then_tunnel } => self.chunk_size(input, then_tunnel),
            State::ChunkData {
                remaining,
                then_tunnel,
            } => {
                let n = remaining.min(input.len() as u64);
                let left = remaining - n;
                self.state = if left > 0 {
                    State::ChunkData {
                        remaining: left,
                        then_tunnel,
                    }
                } else {
                    State::ChunkDataEnd { then_tunnel }
                };
                Step::Pass(n as usize)
            }
            State::ChunkDataEnd { then_tunnel } => {
                if input.len() < 2 {
                    return if input[0] == b'\r' {
                        Step::NeedMore
                    } else {
                        self.reject(StatusCode::BAD_REQUEST, "chunk data not followed by CRLF")
                    };
                }
                if &input[..2] != b"\r\n" {
                    return self.reject(StatusCode::BAD_REQUEST, "chunk data not followed by CRLF");
                }
                self.state = State::ChunkSize { then_tunnel };
                Step::Pass(2)
            }
            State::Trailers { then_tunnel } => self.trailers(input, then_tunnel),
            State::Tunnel => Step::Pass(input.len()),
            State::Rejected => self.rejected(),
        };
        if matches!(step, Step::Pass(_)) {
            self.at_start = false;
        }
        step
    }

    fn rejected(&self) -> Step {
        Step::Reject(Rejection {
            status: StatusCode::BAD_REQUEST,
            reason: "stream already rejected",
        })
    }

    fn reject(&mut self, status: StatusCode, reason: &'static str) -> Step {
        self.state = State::Rejected;
        Step::Reject(Rejection { status, reason })
    }

    fn after_message(&self, then_tunnel: bool) -> State {
        if then_tunnel {
            State::Tunnel
        } else {
            State::Head
        }
    }

    fn head(&mut self, input: &[u8]) -> Step {
        if self.at_start {
            let n = input.len().min(H2_PREFACE.len());
            if input[..n] == H2_PREFACE[..n] {
                if n < H2_PREFACE.len() {
                    return Step::NeedMore;
                }
                self.state = State::Tunnel;
                self.h2 = true;
                return Step::Pass(input.len());
            }
        }
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request.
        // hyper skips any number; the guard releases them as they are.
        let blank = leading_crlfs(input);
        if blank > 0 {
            return Step::Pass(blank);
        }
        // The usual case fits on the stack (left uninitialised: httparse writes the
        // fields it returns); only very large limits allocate.
        let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let mut heap = Vec::new();
        let headers: &mut [MaybeUninit<httparse::Header<'_>>] =
            if self.limits.max_headers <= stack.len() {
                &mut stack[..self.limits.max_headers]
            } else {
                heap.resize_with(self.limits.max_headers, MaybeUninit::uninit);
                &mut heap
            };
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(input, headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if let Some(step) = self.partial_limits(input) {
                    return step;
                }
                return Step::NeedMore;
            }
            Err(httparse::Error::TooManyHeaders) => {
                return self.reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too many header fields",
                );
            }
            Err(_) => {
                // An over-long target is reported as such even when the line is also malformed.
                if let Some(step) = self.partial_limits(input) {
                    return step;
                }
                return self.reject(StatusCode::BAD_REQUEST, "malformed request head");
            }
        };
        if req
            .path
            .is_some_and(|p| p.len() > self.limits.max_uri_bytes)
        {
            return self.reject(StatusCode::URI_TOO_LONG, "request target too long");
        }
        if head_len > self.limits.max_head_bytes {
            return self.reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large",
            );
        }
        let version = req.version.unwrap_or(1);
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                if content_length.is_some() {
                    return self.reject(StatusCode::BAD_REQUEST, "repeated Content-Length");
                }
                let v = h.value;
                if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                    return self.reject(StatusCode::BAD_REQUEST, "malformed Content-Length");
                }
                content_length = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                if content_length.is_none() {
                    return self.reject(StatusCode::BAD_REQUEST, "malformed Content-Length");
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if chunked {
                    return self.reject(StatusCode::BAD_REQUEST, "repeated Transfer-Encoding");
                }
                if !h.value.eq_ignore_ascii_case(b"chunked") {
                    return self.reject(StatusCode::BAD_REQUEST, "unsupported Transfer-Encoding");
                }
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
            if has_control(h.value) {
                return self.reject(StatusCode::BAD_REQUEST, "control character in header value");
            }
        }
        if chunked && content_length.is_some() {
            return self.reject(
                StatusCode::BAD_REQUEST,
                "both Content-Length and Transfer-Encoding",
            );
        }
        if chunked && version == 0 {
            return self.reject(
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding is not allowed in HTTP/1.0",
            );
        }
        // The layout, for the server (offsets fit in u32: heads are limited far below).
        let base = input.as_ptr() as usize;
        let at = |s: &[u8]| {
            let o = s.as_ptr() as usize - base;
            (o as u32, (o + s.len()) as u32)
        };
        self.layout.len = head_len;
        self.layout.method = req.method.map_or((0, 0), |m| at(m.as_bytes()));
        self.layout.target = req.path.map_or((0, 0), |p| at(p.as_bytes()));
        self.layout.minor = version;
        self.layout.fields.clear();
        self.layout.fields.extend(req.headers.iter().map(|h| {
            let (ns, ne) = at(h.name.as_bytes());
            let (vs, ve) = at(h.value);
            (ns, ne, vs, ve)
        }));
        self.requests += 1;
        self.state = if chunked {
            State::ChunkSize {
                then_tunnel: upgrade,
            }
        } else {
            match content_length {
                Some(n) if n > 0 => State::Body {
                    remaining: n,
                    then_tunnel: upgrade,
                },
                _ => self.after_message(upgrade),
            }
        };
        Step::Pass(head_len)
    }

    /// Limits that can be judged on an incomplete head.
    fn partial_limits(&mut self, input: &[u8]) -> Option<Step> {
        let line_end = input.iter().position(|&b| b == b'\n');
        let line = &input[..line_end.unwrap_or(input.len())];
        // method SP target SP version: the target starts after the first space
        if let Some(sp) = line.iter().position(|&b| b == b' ') {
            let target_len = line[sp + 1..]
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(line.len() - sp - 1);
            if target_len > self.limits.max_uri_bytes {
                return Some(self.reject(StatusCode::URI_TOO_LONG, "request target too long"));
            }
        }
        if input.len() > self.limits.max_head_bytes {
            return Some(self.reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large",
            ));
        }
        None
    }

    fn chunk_size(&mut self, input: &[u8], then_tunnel: bool) -> Step {
        let window = &input[..input.len().min(MAX_CHUNK_LINE)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if input.len() >= MAX_CHUNK_LINE {
                return self.reject(StatusCode::BAD_REQUEST, "chunk-size line too long");
            }
            // Reject early what can never become valid.
            let partial = window.strip_suffix(b"\r").unwrap_or(window);
            return match scan_chunk_line(partial, false) {
                Err(reason) => self.reject(StatusCode::BAD_REQUEST, reason),
                Ok(_) => Step::NeedMore,
            };
        };
        if lf == 0 || window[lf - 1] != b'\r' {
            return self.reject(StatusCode::BAD_REQUEST, "chunk-size line not ended by CRLF");
        }
        let size = match scan_chunk_line(&window[..lf - 1], true) {
            Ok(Some(size)) => size,
            Ok(None) | Err(_) => {
                let reason = scan_chunk_line(&window[..lf - 1], true)
                    .err()
                    .unwrap_or("invalid chunk size");
                return self.reject(StatusCode::BAD_REQUEST, reason);
            }
        };
        self.state = if size == 0 {
            State::Trailers { then_tunnel }
        } else {
            State::ChunkData {
                remaining: size,
                then_tunnel,
            }
        };
        Step::Pass(lf + 1)
    }

    fn trailers(&mut self, input: &[u8], then_tunnel: bool) -> Step {
        // Trailer section: field lines, then an empty line. Released whole.
        if input.len() >= 2 && &input[..2] == b"\r\n" {
            self.state = self.after_message(then_tunnel);
            return Step::Pass(2);
        }
        let window = &input[..input.len().min(MAX_TRAILERS)];
        let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
            if input.len() >= MAX_TRAILERS {
                return self.reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "trailer section too large",
                );
            }
            if input.len() == 1 && input[0] == b'\r' {
                return Step::NeedMore;
            }
            return Step::NeedMore;
        };
        let section = &window[..end + 2];
        for line in section.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let Some(line) = line.strip_suffix(b"\r") else {
                return self.reject(StatusCode::BAD_REQUEST, "trailer line not ended by CRLF");
            };
            let mut one = [httparse::EMPTY_HEADER; 1];
            let mut with_crlf = line.to_vec();
            with_crlf.extend_from_slice(b"\r\n\r\n");
            if !matches!(
                httparse::parse_headers(&with_crlf, &mut one),
                Ok(httparse::Status::Complete(_))
            ) {
                return self.reject(StatusCode::BAD_REQUEST, "malformed trailer field");
            }
        }
        self.state = self.after_message(then_tunnel);
        Step::Pass(end + 4)
    }
}

/// Whether a field value holds a control character other than HTAB (NUL, CR and LF
/// among them) or DEL. httparse refuses these already; the guard does not rely on it.
/// Written without an early exit so that it compiles to a vector loop.
pub(crate) fn has_control(value: &[u8]) -> bool {
    value.iter().fold(false, |bad, &b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// Length of the empty lines (CRLF pairs) at the start of `input`, which the guard
/// releases on their own before a head.
pub fn leading_crlfs(input: &[u8]) -> usize {
    let mut i = 0;
    while i + 1 < input.len() && input[i] == b'\r' && input[i + 1] == b'\n' {
        i += 2;
    }
    i
}

/// Checks a chunk-size line without its CRLF: `1*16HEXDIG *( ";" ext )`.
/// With `complete`, returns the size; otherwise only reports impossible prefixes.
fn scan_chunk_line(line: &[u8], complete: bool) -> Result<Option<u64>, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > 16 {
        return Err("chunk size too large");
    }
    let rest = &line[digits..];
    if digits == 0 && (complete || !rest.is_empty()) {
        return Err("invalid chunk size");
    }
    if !rest.is_empty() && rest[0] != b';' {
        return Err("invalid chunk size");
    }
    if rest.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err("control character in chunk extension");
    }
    if !complete {
        return Ok(None);
    }
    let s = std::str::from_utf8(&line[..digits]).map_err(|_| "invalid chunk size")?;
    u64::from_str_radix(s, 16)
        .map(Some)
        .map_err(|_| "chunk size too large")
}
