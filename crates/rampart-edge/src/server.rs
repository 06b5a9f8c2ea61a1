//! The edge's own HTTP/1.1 server: one loop per client connection that reads a request
//! head, runs [`crate::proxy::serve`], and writes the response — no per-request task,
//! channel or dispatcher between the client's bytes and the origin's.
//!
//! It reads from a [`GuardedIo`], so every byte it parses was already validated by the
//! framing guard ([`rampart_core::h1::Guard`]: message boundaries, limits, timeouts);
//! parsing here is still defensive — anything it cannot make sense of ends the connection
//! with a 400, never a panic. HTTP/2 connections (ALPN `h2`, or the cleartext preface
//! seen on the first bytes) are handed to hyper's HTTP/2 server instead.
//!
//! Request bodies are decoded (Content-Length or chunked, trailers included) on demand
//! while the proxy streams them to the origin: [`H1RequestBody`] and the loop share the
//! connection's read state under an uncontended lock, taken only inside `poll` calls.
//! `Expect: 100-continue` is answered when the body is first read. Responses are framed
//! by Content-Length when known, otherwise chunked (HTTP/1.1) or by closing (HTTP/1.0);
//! a small response goes out in a single write with its head. After a `101`, the raw
//! connection (with any bytes read past the head) is handed to the tunnel.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, watch};

use rampart_core::h1::HeadLayout;
use rampart_core::pipeline::HttpFingerprint;

use crate::body::{ClientBody, RespBody};
use crate::framing::GuardedIo;
use crate::listener::ClientIo;
use crate::proxy::ConnCtx;

/// The client stream as the server sees it.
pub type Io = GuardedIo<ClientIo>;

/// Headers parsed without allocating; a head with more falls back to the heap.
const STACK_HEADERS: usize = 64;
/// Free space kept in the read buffer before reading.
const READ_RESERVE: usize = 8 * 1024;
/// Response body bytes copied next to the head so both go out in one write.
const COALESCE: usize = 16 * 1024;

/// What the loop and the request body share.
struct ReadSide {
    io: Io,
    buf: BytesMut,
    /// A request body is being (or still to be) read.
    body_pending: bool,
    /// Request heads parsed so far (to match the framing guard's count).
    heads: u64,
}

impl ReadSide {
    /// Reads more validated bytes; `Ok(0)` is the end of the stream (or the guard
    /// stopped it).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_RESERVE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        off: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *off < bytes.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*off..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *off += n;
        }
        Poll::Ready(Ok(()))
    }
}

type SharedRead = Arc<Mutex<Option<ReadSide>>>;

fn lock(s: &SharedRead) -> std::sync::MutexGuard<'_, Option<ReadSide>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "client connection handed over")
}

/// The raw client connection after a `101 Switching Protocols`.
pub struct Upgraded {
    io: Io,
    /// Bytes read past the request head, sent to the origin first.
    pending: Bytes,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(out.remaining());
            out.put_slice(&self.pending[..n]);
            self.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Request extension: where the connection arrives if the origin accepts the upgrade.
#[derive(Clone)]
pub struct UpgradeSlot(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl UpgradeSlot {
    /// Waits for the connection (it fails if no `101` was sent).
    pub async fn wait(self) -> Result<Upgraded, ()> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match rx {
            Some(rx) => rx.await.map_err(|_| ()),
            None => Err(()),
        }
    }
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A client's HTTP/1 request body, decoded as the proxy reads it.
pub struct H1RequestBody {
    read: SharedRead,
    framing: Option<Framing>,
    /// `100 Continue` still to be written (bytes written so far).
    expect_continue: Option<usize>,
}

impl std::fmt::Debug for H1RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1RequestBody")
            .field("framing", &self.framing)
            .finish()
    }
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl H1RequestBody {
    fn finish(&mut self, rs: &mut ReadSide) {
        self.framing = None;
        rs.body_pending = false;
    }

    fn poll_decode(
        &mut self,
        rs: &mut ReadSide,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if let Some(off) = self.expect_continue.as_mut() {
            ready!(rs.poll_write_all(cx, CONTINUE, off))?;
            self.expect_continue = None;
        }
        loop {
            match decode(&mut self.framing, &mut rs.buf) {
                Err(why) => {
                    self.finish(rs);
                    return Poll::Ready(Some(Err(invalid(why))));
                }
                Ok(Decoded::End) => {
                    self.finish(rs);
                    return Poll::Ready(None);
                }
                Ok(Decoded::Frame(f)) => {
                    if self.framing.is_none() {
                        self.finish(rs);
                    }
                    return Poll::Ready(Some(Ok(f)));
                }
                Ok(Decoded::NeedMore) => {}
            }
            if ready!(rs.poll_fill(cx))? == 0 {
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection within the request body",
                ))));
            }
        }
    }
}

/// One step of request body decoding.
#[derive(Debug)]
enum Decoded {
    Frame(Frame<Bytes>),
    /// The body ended (no frame).
    End,
    NeedMore,
}

/// Takes the next frame of a body framed by `framing` from the front of `buf`; `framing`
/// becomes `None` once the body is complete. Pure: no I/O, fuzzed.
fn decode(framing: &mut Option<Framing>, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
    loop {
        let Some(f) = *framing else {
            return Ok(Decoded::End);
        };
        match f {
            Framing::Length(0) => {
                *framing = None;
                return Ok(Decoded::End);
            }
            Framing::Length(rem) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = (buf.len() as u64).min(rem) as usize;
                let data = buf.split_to(n).freeze();
                let left = rem - n as u64;
                *framing = (left > 0).then_some(Framing::Length(left));
                return Ok(Decoded::Frame(Frame::data(data)));
            }
            Framing::Chunked(Chunk::Size) => {
                let Some(eol) = find_crlf(buf) else {
                    return Ok(Decoded::NeedMore);
                };
                let size = chunk_size(&buf[..eol]).ok_or("invalid chunk size")?;
                buf.advance(eol + 2);
                *framing = Some(Framing::Chunked(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                }));
            }
            Framing::Chunked(Chunk::Data(rem)) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = (buf.len() as u64).min(rem) as usize;
                let data = buf.split_to(n).freeze();
                let left = rem - n as u64;
                *framing = Some(Framing::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                }));
                return Ok(Decoded::Frame(Frame::data(data)));
            }
            Framing::Chunked(Chunk::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err("chunk not followed by CRLF");
                }
                buf.advance(2);
                *framing = Some(Framing::Chunked(Chunk::Size));
            }
            Framing::Chunked(Chunk::Trailers) => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *framing = None;
                    return Ok(Decoded::End);
                }
                let Some(end) = find_head_end(buf) else {
                    return Ok(Decoded::NeedMore);
                };
                let block = buf.split_to(end);
                *framing = None;
                let trailers = parse_trailers(&block).ok_or("invalid trailer section")?;
                return Ok(Decoded::Frame(Frame::trailers(trailers)));
            }
        }
    }
}

/// For the fuzzer: parses `data` as a client stream — heads and bodies, one message after
/// another — and checks the parser's own invariants. Never panics on any input (that is
/// what the fuzzer checks); returns how many messages were complete.
#[doc(hidden)]
pub fn fuzz_stream(data: &[u8], split: usize) -> usize {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut messages = 0;
    let mut framing: Option<Framing> = None;
    let mut in_body = false;
    loop {
        let step = if in_body {
            match decode(&mut framing, &mut buf) {
                Err(_) => return messages,
                Ok(Decoded::NeedMore) => None,
                Ok(Decoded::End) => {
                    in_body = false;
                    messages += 1;
                    Some(())
                }
                Ok(Decoded::Frame(_)) => {
                    if framing.is_none() {
                        in_body = false;
                        messages += 1;
                    }
                    Some(())
                }
            }
        } else if buf.is_empty() {
            None
        } else {
            match parse_head(&mut buf, 100, None) {
                Parsed::Invalid(_) => return messages,
                Parsed::Partial => None,
                Parsed::Head(h) => {
                    framing = h.framing;
                    if framing.is_some() {
                        in_body = true;
                    } else {
                        messages += 1;
                    }
                    Some(())
                }
            }
        };
        if step.is_none() {
            if fed == data.len() {
                return messages;
            }
            let next = (fed + split.max(1)).min(data.len());
            buf.extend_from_slice(&data[fed..next]);
            fed = next;
        }
    }
}

/// For the fuzzer: passes `data` through the framing guard until it releases a request
/// head, then builds the request from the guard's layout and by parsing the head again,
/// and panics if the two differ. Returns whether a head was released.
#[doc(hidden)]
pub fn fuzz_layout(data: &[u8]) -> bool {
    let Some((released, guard)) = first_head(data) else {
        return false;
    };
    let by_layout = head_summary(parse_head(
        &mut BytesMut::from(released),
        100,
        Some(guard.last_head()),
    ));
    let reparsed = head_summary(parse_head(&mut BytesMut::from(released), 100, None));
    assert_eq!(
        by_layout,
        reparsed,
        "{:?}",
        String::from_utf8_lossy(released)
    );
    true
}

/// Passes `data` through a framing guard until it releases its first request head:
/// the bytes released up to then (empty lines, the head) and the guard.
fn first_head(data: &[u8]) -> Option<(&[u8], rampart_core::h1::Guard)> {
    use rampart_core::h1::{Guard, Limits, Step};
    let mut guard = Guard::new(Limits {
        max_uri_bytes: 8192,
        max_head_bytes: 65536,
        max_headers: 100,
    });
    let mut off = 0;
    while off < data.len() && guard.requests() == 0 {
        match guard.advance(&data[off..]) {
            Step::Pass(n) => off += n,
            Step::NeedMore | Step::Reject(_) => return None,
        }
    }
    (guard.requests() == 1).then_some((&data[..off], guard))
}

/// What a parsed head amounts to, to compare two ways of parsing it.
fn head_summary(p: Parsed) -> String {
    match p {
        Parsed::Head(h) => format!(
            "{} {:?} {:?} {:?} {:?} keep={} cont={} up={} raw={}",
            h.parts.method,
            h.parts.uri,
            h.parts.version,
            h.parts.headers,
            h.framing.map(|f| match f {
                Framing::Length(n) => format!("len {n}"),
                Framing::Chunked(_) => "chunked".into(),
            }),
            h.keep_alive,
            h.expect_continue,
            h.upgrade,
            h.parts
                .extensions
                .get::<rampart_core::pipeline::RawTarget>()
                .is_some()
        ),
        Parsed::Partial => "partial".into(),
        Parsed::Invalid(w) => format!("invalid {w}"),
    }
}

impl Body for H1RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = &mut *self;
        if this.framing.is_none() {
            return Poll::Ready(None);
        }
        let read = this.read.clone();
        let mut guard = lock(&read);
        let Some(rs) = guard.as_mut() else {
            this.framing = None;
            return Poll::Ready(Some(Err(gone())));
        };
        let out = ready!(this.poll_decode(rs, cx));
        if matches!(out, Some(Err(_))) {
            this.framing = None;
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            None => SizeHint::with_exact(0),
            Some(Framing::Length(n)) => SizeHint::with_exact(n),
            Some(Framing::Chunked(_)) => SizeHint::new(),
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The size of a chunk-size line (without its CRLF); extensions are ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&c| c == b';').next()?.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in hex {
        let d = (c as char).to_digit(16)?;
        n = n * 16 + u64::from(d);
    }
    Some(n)
}

fn parse_trailers(block: &[u8]) -> Option<HeaderMap> {
    let mut hs = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let httparse::Status::Complete((_, parsed)) = httparse::parse_headers(block, &mut hs).ok()?
    else {
        return None;
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    Some(map)
}

/// A parsed request head and what the loop needs to know about it.
struct Head {
    parts: http::request::Parts,
    framing: Option<Framing>,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    /// The head's header fingerprint.
    fingerprint: rampart_core::h1::fingerprint::H1Fingerprint,
}

enum Parsed {
    Head(Box<Head>),
    Partial,
    Invalid(&'static str),
}

/// Parses the head at the front of `buf`, splitting it off when complete.
///
/// `known` is the framing guard's layout of this head when the guard says it is the one
/// at the front of `buf` (it parsed it before releasing it): then the head is not parsed
/// a second time. A layout that does not fit the bytes is ignored.
fn parse_head(buf: &mut BytesMut, max_headers: usize, known: Option<&HeadLayout>) -> Parsed {
    if let Some(l) = known {
        let blank = rampart_core::h1::leading_crlfs(buf);
        if buf.len() < blank + l.len {
            return Parsed::Partial;
        }
        if layout_fits(l) {
            buf.advance(blank);
            let m = &buf[l.method.0 as usize..l.method.1 as usize];
            let Ok(method) = Method::from_bytes(m) else {
                return Parsed::Invalid("invalid method");
            };
            let target = l.target.0 as usize..l.target.1 as usize;
            return build_head(buf, l.len, method, l.minor, target, &l.fields);
        }
    }
    // Left uninitialised: httparse writes the fields it returns.
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap;
    let headers: &mut [MaybeUninit<httparse::Header<'_>>] = if max_headers > STACK_HEADERS {
        heap = Vec::new();
        heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap
    } else {
        &mut stack
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid("malformed request head"),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid("malformed request line");
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Invalid("invalid method");
    };
    let path_range = range(path.as_bytes());
    let spans = crate::spans::Spans::of(buf, req.headers);
    build_head(buf, len, method, minor, path_range, spans.as_slice())
}

/// Whether every part of a layout lies within its head (so slicing cannot fail).
fn layout_fits(l: &HeadLayout) -> bool {
    let within = |(s, e): (u32, u32)| s <= e && e as usize <= l.len;
    within(l.method)
        && within(l.target)
        && l.fields
            .iter()
            .all(|&(ns, ne, vs, ve)| within((ns, ne)) && within((vs, ve)))
}

/// Builds the request from a head of `len` bytes at the front of `buf`, whose parts lie
/// at the given offsets, and splits it off.
fn build_head(
    buf: &mut BytesMut,
    len: usize,
    method: Method,
    minor: u8,
    path_range: std::ops::Range<usize>,
    spans: &[rampart_core::h1::FieldSpan],
) -> Parsed {
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let head = buf.split_to(len).freeze();

    let mut raw_target = None;
    let uri = match http::Uri::from_maybe_shared(head.slice(path_range.clone())) {
        Ok(u) => u,
        Err(_) => {
            let raw = &head[path_range];
            let Some(u) = lenient_target(raw) else {
                return Parsed::Invalid("invalid request target");
            };
            raw_target = Some(rampart_core::pipeline::RawTarget(std::sync::Arc::from(raw)));
            u
        }
    };
    // (The fields the edge adds towards an HTTP/1.1 origin do not go through the map:
    // see `upstream::Outgoing`.)
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut has_upgrade = false;
    let mut expect_continue = false;
    let mut fingerprint = rampart_core::h1::fingerprint::Builder::default();
    for &(ns, ne, vs, ve) in spans {
        let (n, v) = (ns as usize..ne as usize, vs as usize..ve as usize);
        fingerprint.name(&head[n.clone()]);
        let Ok(name) = HeaderName::from_bytes(&head[n]) else {
            return Parsed::Invalid("invalid header name");
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(v)) else {
            return Parsed::Invalid("invalid header value");
        };
        if name == header::CONTENT_LENGTH {
            let Some(len) = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            else {
                return Parsed::Invalid("invalid Content-Length");
            };
            if content_length.is_some_and(|l| l != len) {
                return Parsed::Invalid("conflicting Content-Length");
            }
            content_length = Some(len);
        } else if name == header::TRANSFER_ENCODING {
            // The guard admits only `chunked` as the final coding (and none on HTTP/1.0).
            chunked = value
                .as_bytes()
                .rsplit(|&c| c == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                return Parsed::Invalid("unsupported Transfer-Encoding");
            }
        } else if name == header::CONNECTION {
            for t in value.as_bytes().split(|&c| c == b',') {
                let t = t.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= t.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name == header::UPGRADE {
            has_upgrade = true;
        } else if name == header::EXPECT {
            expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    if chunked && content_length.is_some() {
        return Parsed::Invalid("Content-Length with Transfer-Encoding");
    }
    let framing = if chunked {
        Some(Framing::Chunked(Chunk::Size))
    } else {
        content_length.filter(|&n| n > 0).map(Framing::Length)
    };
    let keep_alive = match version {
        Version::HTTP_10 => keep_alive_token && !close,
        _ => !close,
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    if let Some(raw) = raw_target {
        req.extensions_mut().insert(raw);
    }
    let (parts, ()) = req.into_parts();
    Parsed::Head(Box::new(Head {
        parts,
        expect_continue: expect_continue && version == Version::HTTP_11 && framing.is_some(),
        framing,
        keep_alive,
        upgrade: version == Version::HTTP_11 && has_upgrade && upgrade_token,
        fingerprint: fingerprint.finish(minor),
    }))
}

/// Why the connection loop ended.
enum End {
    /// Cleanly, or the client went away.
    Close,
    /// An HTTP/2 preface arrived: serve the connection with hyper from here.
    H2(Box<Upgraded>),
}

/// Serves an HTTP/1 connection; returns the stream if the client opened with the HTTP/2
/// preface instead, so the caller can hand it to hyper.
pub async fn serve(
    io: Io,
    ctx: Arc<ConnCtx>,
    max_headers: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Io, Bytes)> {
    let read: SharedRead = Arc::new(Mutex::new(Some(ReadSide {
        io,
        buf: BytesMut::with_capacity(READ_RESERVE),
        body_pending: false,
        heads: 0,
    })));
    let mut wbuf: Vec<u8> = Vec::with_capacity(1024);
    drain::watch(shutdown);
    let mut idle_wait = drain::Idle::default();
    let mut first = true;
    // Times origin answers for this connection's requests (made on first use).
    let mut origin_timer = None;
    let end = loop {
        // 1. the next head (idle connections close at once on shutdown)
        let head = {
            let next = read_head(&read, max_headers, first);
            tokio::pin!(next);
            let idle = lock(&read).as_ref().is_some_and(|rs| rs.buf.is_empty());
            if idle && drain::draining() {
                break End::Close;
            }
            tokio::select! {
                biased;
                h = next.as_mut() => h,
                () = std::future::poll_fn(|cx| idle_wait.poll(cx)), if idle => break End::Close,
            }
        };
        first = false;
        let head = match head {
            Ok(Next::Head(h)) => h,
            Ok(Next::H2) => {
                let rs = lock(&read).take();
                match rs {
                    Some(rs) => {
                        break End::H2(Box::new(Upgraded {
                            io: rs.io,
                            pending: rs.buf.freeze(),
                        }));
                    }
                    None => break End::Close,
                }
            }
            Ok(Next::Closed) => break End::Close,
            Ok(Next::Invalid(why)) => {
                tracing::debug!(listener = %ctx.conn.listener, reason = why, "unparsable request head");
                let id = crate::runtime::new_request_id();
                let page = crate::errorpage::raw_response(StatusCode::BAD_REQUEST, why, &id);
                let _ = write_all(&read, &page).await;
                break End::Close;
            }
            Err(e) => {
                tracing::debug!(listener = %ctx.conn.listener, error = %e, "client read failed");
                break End::Close;
            }
        };
        let Head {
            parts,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
            fingerprint,
        } = *head;
        let head_req = ReqMeta {
            method_head: parts.method == Method::HEAD,
            version: parts.version,
        };
        let mut req = Request::from_parts(parts, ClientBody::Empty);
        if let Some(framing) = framing {
            if let Some(rs) = lock(&read).as_mut() {
                rs.body_pending = true;
            }
            *req.body_mut() = ClientBody::H1(H1RequestBody {
                read: read.clone(),
                framing: Some(framing),
                expect_continue: expect_continue.then_some(0),
            });
        }
        let upgrade_tx = if upgrade {
            let (tx, rx) = oneshot::channel();
            req.extensions_mut()
                .insert(crate::proxy::ClientUpgrade::Own(UpgradeSlot(Arc::new(
                    Mutex::new(Some(rx)),
                ))));
            Some(tx)
        } else {
            None
        };

        // 2. the proxy
        let fingerprint = HttpFingerprint::H1(fingerprint);
        let resp = crate::proxy::serve(&ctx, req, fingerprint, Some(&mut origin_timer)).await;

        // 3. the response
        // A request body not read to its end cannot be told from the next request: the
        // connection closes after this response, and the response says so.
        let body_left = lock(&read).as_ref().is_none_or(|rs| rs.body_pending);
        let closing = !keep_alive || body_left || drain::draining();
        match write_response(&read, &mut wbuf, resp, head_req, closing).await {
            Ok(Written::KeepAlive) => {
                let body_left = lock(&read).as_ref().is_none_or(|rs| rs.body_pending);
                if body_left {
                    // the request body was not read to its end: its rest cannot be told
                    // from the next request
                    break End::Close;
                }
            }
            Ok(Written::Close) => break End::Close,
            Ok(Written::Switched) => {
                let rs = lock(&read).take();
                if let (Some(rs), Some(tx)) = (rs, upgrade_tx) {
                    let _ = tx.send(Upgraded {
                        io: rs.io,
                        pending: rs.buf.freeze(),
                    });
                }
                return None;
            }
            Err(e) => {
                tracing::debug!(listener = %ctx.conn.listener, error = %e, "response write failed");
                break End::Close;
            }
        }
    };
    match end {
        End::H2(up) => Some((up.io, up.pending)),
        End::Close => {
            let rs = lock(&read).take();
            if let Some(mut rs) = rs {
                let _ = std::future::poll_fn(|cx| Pin::new(&mut rs.io).poll_shutdown(cx)).await;
            }
            None
        }
    }
}

enum Next {
    Head(Box<Head>),
    /// The HTTP/2 connection preface.
    H2,
    Closed,
    Invalid(&'static str),
}

async fn read_head(read: &SharedRead, max_headers: usize, first: bool) -> io::Result<Next> {
    std::future::poll_fn(|cx| {
        let mut guard = lock(read);
        let Some(rs) = guard.as_mut() else {
            return Poll::Ready(Ok(Next::Closed));
        };
        loop {
            if !rs.buf.is_empty() {
                if first && rs.io.is_h2() {
                    return Poll::Ready(Ok(Next::H2));
                }
                // The guard's layout is this head's when the guard has released exactly
                // one head more than was parsed here.
                let (released, layout) = rs.io.last_head();
                let known = (released == rs.heads + 1).then_some(layout);
                match parse_head(&mut rs.buf, max_headers, known) {
                    Parsed::Head(h) => {
                        rs.heads += 1;
                        return Poll::Ready(Ok(Next::Head(h)));
                    }
                    Parsed::Invalid(why) => return Poll::Ready(Ok(Next::Invalid(why))),
                    Parsed::Partial => {}
                }
            }
            if ready!(rs.poll_fill(cx))? == 0 {
                return Poll::Ready(Ok(Next::Closed));
            }
        }
    })
    .await
}

async fn write_all(read: &SharedRead, bytes: &[u8]) -> io::Result<()> {
    let mut off = 0;
    std::future::poll_fn(|cx| {
        let mut guard = lock(read);
        let rs = guard.as_mut().ok_or_else(gone)?;
        rs.poll_write_all(cx, bytes, &mut off)
    })
    .await
}

async fn flush(read: &SharedRead) -> io::Result<()> {
    std::future::poll_fn(|cx| {
        let mut guard = lock(read);
        let rs = guard.as_mut().ok_or_else(gone)?;
        Pin::new(&mut rs.io).poll_flush(cx)
    })
    .await
}

#[derive(Clone, Copy)]
struct ReqMeta {
    method_head: bool,
    version: Version,
}

enum Written {
    KeepAlive,
    Close,
    Switched,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

async fn write_response(
    read: &SharedRead,
    wbuf: &mut Vec<u8>,
    resp: Response<RespBody>,
    req: ReqMeta,
    mut closing: bool,
) -> io::Result<Written> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    // The origin's fields as it sent them (then the map is empty), if they were kept so.
    let raw = body.take_raw_fields();
    // One pass over the fields for what framing needs (names compare as enum tags),
    // instead of a hash lookup per question; the first field of a name counts.
    let mut connection = None;
    let mut length = None;
    let mut has_date = raw.as_ref().is_some_and(|r| r.has_date);
    for (name, value) in &parts.headers {
        if name == header::CONNECTION {
            connection.get_or_insert(value);
        } else if name == header::CONTENT_LENGTH {
            length.get_or_insert(value);
        } else if name == header::DATE {
            has_date = true;
        }
    }
    if connection.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")) {
        closing = true;
    }
    let no_body = req.method_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared = match &raw {
        Some(r) => r.content_length,
        None => length
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|s| s.parse::<u64>().ok()),
    };
    // Content-Length fields of the map that do not go out (dropped, or replaced by ours).
    let mut skip_length = false;
    let mut own_length = None;
    let out = if switching || status.is_informational() || status == StatusCode::NO_CONTENT {
        skip_length = true;
        Out::None
    } else if no_body {
        // HEAD and 304: the fields describe the full representation; pass on what the
        // origin (or page) said, never a length of the empty body
        Out::None
    } else if let Some(n) = declared {
        Out::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        skip_length = true;
        own_length = Some(n);
        Out::Length(n)
    } else if req.version == Version::HTTP_11 {
        Out::Chunked
    } else {
        closing = true;
        Out::UntilClose
    };

    wbuf.clear();
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    wbuf.extend_from_slice(status.as_str().as_bytes());
    wbuf.push(b' ');
    wbuf.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    wbuf.extend_from_slice(b"\r\n");
    if !switching {
        if closing {
            wbuf.extend_from_slice(b"connection: close\r\n");
        } else if req.version == Version::HTTP_10 {
            wbuf.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    if out == Out::Chunked {
        wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(n) = own_length {
        wbuf.extend_from_slice(b"content-length: ");
        wbuf.extend_from_slice(n.to_string().as_bytes());
        wbuf.extend_from_slice(b"\r\n");
    }
    if !has_date {
        wbuf.extend_from_slice(b"date: ");
        date::put(wbuf);
        wbuf.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        // Framing is ours: the origin's Transfer-Encoding never passes, nor its
        // Connection (except on a switch, where it names the upgrade).
        if name == header::TRANSFER_ENCODING
            || (name == header::CONNECTION && !switching)
            || (name == header::CONTENT_LENGTH && skip_length)
        {
            continue;
        }
        wbuf.extend_from_slice(name.as_str().as_bytes());
        wbuf.extend_from_slice(b": ");
        wbuf.extend_from_slice(value.as_bytes());
        wbuf.extend_from_slice(b"\r\n");
    }
    if let Some(r) = &raw {
        // (Kept raw only when no Content-Length of the origin's has to be dropped: 1xx
        // and 204 responses always go through the map.)
        for run in r.runs() {
            wbuf.extend_from_slice(run);
        }
        if let Some(id) = &r.request_id {
            wbuf.extend_from_slice(b"x-request-id: ");
            wbuf.extend_from_slice(id.as_bytes());
            wbuf.extend_from_slice(b"\r\n");
        }
    }
    wbuf.extend_from_slice(b"\r\n");
    if switching {
        write_all(read, wbuf).await?;
        flush(read).await?;
        drop(body);
        return Ok(Written::Switched);
    }
    if out == Out::None {
        write_all(read, wbuf).await?;
        flush(read).await?;
        drop(body);
        return Ok(if closing {
            Written::Close
        } else {
            Written::KeepAlive
        });
    }

    // The body: frames that are ready at once join the head in one write.
    let mut sent: u64 = 0;
    let mut trailers = None;
    let clean = loop {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !wbuf.is_empty() {
                    write_all(read, wbuf).await?;
                    wbuf.clear();
                }
                flush(read).await?;
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        match frame {
            None => break true,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed");
                break false;
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    if let Out::Length(n) = out {
                        if sent > n {
                            tracing::debug!("response body longer than its Content-Length");
                            break false;
                        }
                    }
                    if out == Out::Chunked {
                        put_chunk_size(wbuf, data.len());
                    }
                    if wbuf.len() + data.len() <= COALESCE {
                        wbuf.extend_from_slice(&data);
                    } else {
                        if !wbuf.is_empty() {
                            write_all(read, wbuf).await?;
                            wbuf.clear();
                        }
                        write_all(read, &data).await?;
                    }
                    if out == Out::Chunked {
                        wbuf.extend_from_slice(b"\r\n");
                    }
                }
                Err(f) => {
                    if let Ok(t) = f.into_trailers() {
                        trailers = Some(t);
                    }
                }
            },
        }
    };
    let complete = clean
        && match out {
            Out::Length(n) => sent == n,
            _ => true,
        };
    if complete && out == Out::Chunked {
        wbuf.extend_from_slice(b"0\r\n");
        if let Some(t) = &trailers {
            for (name, value) in t {
                wbuf.extend_from_slice(name.as_str().as_bytes());
                wbuf.extend_from_slice(b": ");
                wbuf.extend_from_slice(value.as_bytes());
                wbuf.extend_from_slice(b"\r\n");
            }
        }
        wbuf.extend_from_slice(b"\r\n");
    }
    if !wbuf.is_empty() {
        write_all(read, wbuf).await?;
        wbuf.clear();
    }
    flush(read).await?;
    drop(body);
    Ok(if complete && !closing {
        Written::KeepAlive
    } else {
        Written::Close
    })
}

fn put_chunk_size(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Draining, per worker thread: idle keep-alive connections wait for the next request
/// and for the edge to drain. Watching the edge's shutdown channel from every connection
/// would touch one shared lock per request from every worker; instead one task per
/// worker watches it and wakes that worker's idle connections, whose wakers sit in a
/// thread-local list.
mod drain {
    use std::cell::RefCell;
    use std::task::{Context, Poll, Waker};

    use tokio::sync::watch;

    #[derive(Default)]
    struct State {
        watching: bool,
        draining: bool,
        wakers: Vec<Option<Waker>>,
        free: Vec<usize>,
    }

    thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    /// Starts this worker's watcher, once.
    pub(super) fn watch(rx: &watch::Receiver<bool>) {
        let start = STATE.with(|s| !std::mem::replace(&mut s.borrow_mut().watching, true));
        if start {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                crate::runtime::drained(&mut rx).await;
                let wakers: Vec<Waker> = STATE.with(|s| {
                    let mut s = s.borrow_mut();
                    s.draining = true;
                    s.wakers.iter_mut().filter_map(Option::take).collect()
                });
                for w in wakers {
                    w.wake();
                }
            });
        }
    }

    /// Whether this worker is draining.
    pub(super) fn draining() -> bool {
        STATE.with(|s| s.borrow().draining)
    }

    /// A connection's place in the list.
    #[derive(Default)]
    pub(super) struct Idle {
        slot: Option<usize>,
    }

    impl Idle {
        /// Ready once the worker drains.
        pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                if s.draining {
                    return Poll::Ready(());
                }
                match self.slot {
                    Some(i) => {
                        if let Some(w) = s.wakers.get_mut(i) {
                            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                                *w = Some(cx.waker().clone());
                            }
                        }
                    }
                    None => {
                        let w = Some(cx.waker().clone());
                        let i = match s.free.pop() {
                            Some(i) => {
                                s.wakers[i] = w;
                                i
                            }
                            None => {
                                s.wakers.push(w);
                                s.wakers.len() - 1
                            }
                        };
                        self.slot = Some(i);
                    }
                }
                Poll::Pending
            })
        }
    }

    impl Drop for Idle {
        fn drop(&mut self) {
            if let Some(i) = self.slot {
                // `try_with`: the thread may be tearing down its locals
                let _ = STATE.try_with(|s| {
                    if let Ok(mut s) = s.try_borrow_mut() {
                        if let Some(w) = s.wakers.get_mut(i) {
                            *w = None;
                            s.free.push(i);
                        }
                    }
                });
            }
        }
    }
}

/// The `Date` field, formatted once per second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    }

    pub(super) fn put(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                let s = httpdate::fmt_http_date(now);
                if s.len() == 29 {
                    c.1.copy_from_slice(s.as_bytes());
                    c.0 = secs;
                } else {
                    out.extend_from_slice(s.as_bytes());
                    return;
                }
            }
            out.extend_from_slice(&c.1);
        });
    }
}

/// A request target with printable characters a URI may not hold as they are (`"`, `<`,
/// `>`, `\\`, `^`, `` ` ``, `{`, `|`, `}` — nginx and Apache accept them in the request
/// line): the same target with those percent-encoded, if that makes a valid URI. Control
/// bytes, spaces and non-ASCII bytes stay refused.
fn lenient_target(raw: &[u8]) -> Option<http::Uri> {
    if raw.is_empty() || !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    let mut s = String::with_capacity(raw.len() + 16);
    for &b in raw {
        if b"\"<>\\^`{|}".contains(&b) {
            s.push_str(&format!("%{b:02X}"));
        } else {
            s.push(char::from(b));
        }
    }
    http::Uri::try_from(s).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_characters_a_uri_refuses_are_encoded_not_refused() {
        let u =
            super::lenient_target(br#"/s?q={"a":1}|x\y^`<>"#).unwrap_or_else(|| panic!("accepted"));
        assert_eq!(
            u.path_and_query().map(|p| p.as_str()),
            Some("/s?q=%7B%22a%22:1%7D%7Cx%5Cy%5E%60%3C%3E")
        );
        for bad in [&b"/a b"[..], b"/a\x01", b"/caf\xc3\xa9", b""] {
            assert!(super::lenient_target(bad).is_none(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"A;ext=1"), Some(10));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"g"), None);
        assert_eq!(chunk_size(b"1234567890abcdef"), None);
        let mut v = Vec::new();
        put_chunk_size(&mut v, 0x1a2b);
        assert_eq!(v, b"1a2b\r\n");
        v.clear();
        put_chunk_size(&mut v, 0);
        assert_eq!(v, b"0\r\n");
    }

    fn head(raw: &[u8]) -> Head {
        let mut b = BytesMut::from(raw);
        match parse_head(&mut b, 100, None) {
            Parsed::Head(h) => *h,
            Parsed::Partial => panic!("partial"),
            Parsed::Invalid(w) => panic!("invalid: {w}"),
        }
    }

    #[test]
    fn the_guards_layout_builds_the_same_request_as_parsing_again() {
        let many: String = (0..70).map(|i| format!("X-F{i}: v{i}\r\n")).collect();
        let heads: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"\r\n\r\nGET /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n".to_vec(),
            b"\nGET /lf HTTP/1.1\nHost: a\n\n".to_vec(),
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
                .to_vec(),
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec(),
            b"GET /a{b}|c HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\tx\r\n\r\n".to_vec(),
            b"GET http://a/abs HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n".to_vec(),
            format!("GET /many HTTP/1.1\r\nHost: a\r\n{many}\r\n").into_bytes(),
        ];
        for raw in heads {
            assert!(fuzz_layout(&raw), "{}", String::from_utf8_lossy(&raw));
            let (released, guard) = first_head(&raw).unwrap();
            let reparsed = head_summary(parse_head(&mut BytesMut::from(released), 100, None));
            assert!(!reparsed.starts_with("invalid"), "{reparsed}");
            // Short of the whole head, the layout says to wait.
            let short = &released[..released.len() - 1];
            assert_eq!(
                head_summary(parse_head(
                    &mut BytesMut::from(short),
                    100,
                    Some(guard.last_head())
                )),
                "partial"
            );
        }
    }

    #[test]
    fn a_layout_that_does_not_fit_its_head_is_not_used() {
        let raw = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut bad = HeadLayout {
            len: raw.len(),
            method: (0, 3),
            target: (4, 6),
            minor: 1,
            fields: vec![(17, 21, 23, 400)],
        };
        // Falls back to parsing: the same request as without a layout, no panic.
        let want = head_summary(parse_head(&mut BytesMut::from(&raw[..]), 100, None));
        let got = head_summary(parse_head(&mut BytesMut::from(&raw[..]), 100, Some(&bad)));
        assert_eq!(got, want);
        bad.fields.clear();
        bad.method = (5, 2);
        let got = head_summary(parse_head(&mut BytesMut::from(&raw[..]), 100, Some(&bad)));
        assert_eq!(got, want);
    }

    #[test]
    fn heads() {
        let h = head(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(h.parts.uri.path(), "/a");
        assert_eq!(h.parts.headers["host"], "x");
        assert!(!h.keep_alive);
        assert!(h.framing.is_none());
        let h = head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = head(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
        assert!(matches!(h.framing, Some(Framing::Length(5))));
        assert!(h.expect_continue);
        let h = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(h.framing, Some(Framing::Chunked(Chunk::Size))));
        let h = head(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
        assert!(h.upgrade);
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        assert!(matches!(parse_head(&mut b, 100, None), Parsed::Partial));
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..]);
        assert!(matches!(parse_head(&mut b, 100, None), Parsed::Invalid(_)));
        let mut b = BytesMut::from(
            &b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
        );
        assert!(matches!(parse_head(&mut b, 100, None), Parsed::Invalid(_)));
    }

    #[test]
    fn bodies_decode_however_the_bytes_arrive() {
        let stream: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nx-sum: 6\r\n\r\n\
GET / HTTP/1.1\r\n\r\n";
        for split in 1..=stream.len() {
            assert_eq!(fuzz_stream(stream, split), 3, "split {split}");
        }
        // a whole chunked body, frame by frame
        let mut framing = Some(Framing::Chunked(Chunk::Size));
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\nx-a: 1\r\n\r\nNEXT"[..]);
        let mut data = Vec::new();
        let mut trailers = None;
        loop {
            match decode(&mut framing, &mut buf).unwrap() {
                Decoded::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Decoded::End => break,
                Decoded::NeedMore => panic!("all bytes were there"),
            }
            if framing.is_none() {
                break;
            }
        }
        assert_eq!(data, b"abc");
        assert_eq!(trailers.unwrap()["x-a"], "1");
        assert_eq!(&buf[..], b"NEXT", "the next message is left alone");
        // defects are errors
        for bad in [&b"zz\r\n"[..], b"3\r\nabcXY", b"0\r\nno colon\r\n\r\n"] {
            let mut framing = Some(Framing::Chunked(Chunk::Size));
            let mut buf = BytesMut::from(bad);
            let mut result = Ok(Decoded::NeedMore);
            for _ in 0..4 {
                result = decode(&mut framing, &mut buf);
                if result.is_err() {
                    break;
                }
            }
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn trailers() {
        let t = parse_trailers(b"grpc-status: 0\r\nx-a: b\r\n\r\n").unwrap();
        assert_eq!(t["grpc-status"], "0");
        assert!(parse_trailers(b"bad header\r\n\r\n").is_none());
    }
}
