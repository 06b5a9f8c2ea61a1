//! The inline HTTP/1.1 origin client.
//!
//! The task that serves a client request writes the request to the origin connection and
//! reads the response itself; the response body is read from the origin socket as the
//! client consumes it. There is no per-connection task and no channel: on a proxy the
//! origin exchange is on the request path, and every hop between tasks costs a wake-up.
//!
//! Connections are kept per worker thread and per server ([`Idle`]), reused only when the
//! previous response was read to its end with keep-alive, and checked before reuse (a
//! connection the origin closed while idle is dropped). A request without a body that
//! fails on a reused connection before any response byte arrived is sent once more on a
//! new connection — the origin never saw it.
//!
//! Framing follows RFC 9112 §6: the request body is sent with Content-Length when its size
//! is known, otherwise chunked; the response body is delimited by the request method and
//! status (HEAD, 1xx, 204, 304 have none), chunked coding, Content-Length, or the end of
//! the connection, and any inconsistency (differing Content-Length values, a malformed
//! chunk) is an error that ends the connection, never a guess.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use std::sync::Arc;

use super::{ConnectError, Connector, Outgoing, PoolRuntime};
use crate::body::{BoxError, ReqBody};

/// Largest response head accepted from an origin.
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size line or trailer section accepted from an origin.
const MAX_LINE: usize = 16 * 1024;
/// Most header fields in an origin response.
const MAX_HEADERS: usize = 128;
/// Size of reads from the origin.
const READ_CHUNK: usize = 16 * 1024;

/// A connection to an origin, plain or TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        both!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        both!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        both!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        both!(self, s => s.poll_shutdown(cx))
    }
}

/// An origin connection with the bytes read from it and not yet used.
pub struct Conn {
    /// The socket.
    pub io: Stream,
    /// Bytes read past what was consumed (the start of a tunnel after a 101).
    pub buf: BytesMut,
    idle_since: Instant,
    reused: bool,
}

impl Conn {
    /// Whether an idle connection is still usable at `now`: not expired, and the origin
    /// has neither closed it nor sent anything unasked.
    fn still_good(&mut self, idle_timeout: Duration, now: Instant) -> bool {
        if now.saturating_duration_since(self.idle_since) >= idle_timeout {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }
}

/// Idle keep-alive connections to one server, for one thread.
#[derive(Default)]
pub struct Idle(Mutex<std::collections::VecDeque<Conn>>);

impl Idle {
    /// The most recently used good connection (LIFO keeps few connections warm).
    fn take(&self, idle_timeout: Duration, now: Instant) -> Option<Conn> {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut c) = list.pop_back() {
            if c.still_good(idle_timeout, now) {
                c.reused = true;
                return Some(c);
            }
        }
        None
    }

    /// Keeps a connection for reuse, closing those idle past `idle_timeout` (the oldest
    /// are at the front), so unused connections do not linger.
    pub fn put(&self, mut conn: Conn, idle_timeout: Duration) {
        let now = Instant::now();
        conn.idle_since = now;
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while list
            .front()
            .is_some_and(|c| now.saturating_duration_since(c.idle_since) >= idle_timeout)
        {
            list.pop_front();
        }
        // bounded: a burst should not leave thousands of sockets open
        if list.len() < 1024 {
            list.push_back(conn);
        }
    }
}

/// Why an exchange with the origin failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The client's request body failed (too large, too slow, malformed).
    #[error("request body: {0}")]
    Body(BoxError),
    /// The connection to the origin failed.
    #[error("origin connection: {0}")]
    Io(#[from] std::io::Error),
    /// The origin's response broke HTTP/1.1.
    #[error("invalid response from origin: {0}")]
    Protocol(&'static str),
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// An origin response: its head, and either its body or (after 101) the connection.
pub struct Exchange {
    /// Status, headers (none when they are in `raw`).
    pub head: http::response::Parts,
    /// The origin's fields as it sent them, when they are forwarded so.
    pub raw: Option<Box<RawFields>>,
    /// The body (empty for a 101).
    pub body: H1Body,
    /// After 101 Switching Protocols: the connection, to tunnel.
    pub upgraded: Option<Conn>,
}

/// Sends `req` to the server `connector` dials, reusing a connection from `idle` if one is
/// good at `now` (a clock reading the caller just took). Returns when the response head
/// has arrived. `raw_ok`: the response's fields may come back as [`RawFields`] (the
/// caller writes them to an HTTP/1.1 client and nothing reads them on the way).
pub async fn send(
    pool: &Arc<PoolRuntime>,
    server: usize,
    out: &Outgoing,
    mut body: ReqBody,
    now: Instant,
    raw_ok: bool,
) -> Result<Exchange, SendError> {
    let slot = super::thread_slot(pool.servers[server].h1_idle.len());
    let idle = &pool.servers[server].h1_idle[slot];
    let connector = &pool.servers[server].connector;
    let idle_timeout = pool.spec.idle_timeout;
    let head_bytes = encode_head(out, &body);
    let empty_body = body.is_end_stream();
    let head_only = out.method == Method::HEAD;
    let mut conn = match idle.take(idle_timeout, now) {
        Some(c) => c,
        None => new_conn(connector).await?,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = exchange(&mut conn, &head_bytes, &mut body, head_only, raw_ok).await;
        match result {
            Err(Failure::BeforeResponse(e)) if conn.reused && empty_body && attempt == 1 => {
                tracing::debug!(error = %e, "reused origin connection failed before answering; sending again on a new one");
                conn = new_conn(connector).await?;
            }
            Err(Failure::BeforeResponse(e)) | Err(Failure::Other(e)) => return Err(e),
            Ok((head, raw, framing, keep_alive)) => {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Ok(Exchange {
                        head,
                        raw,
                        body: H1Body::empty(),
                        upgraded: Some(conn),
                    });
                }
                let mut body = H1Body {
                    conn: Some(conn),
                    framing,
                    keep_alive,
                    home: Some((pool.clone(), server, slot)),
                };
                if body.framing == Framing::Done {
                    body.finish();
                }
                return Ok(Exchange {
                    head,
                    raw,
                    body,
                    upgraded: None,
                });
            }
        }
    }
}

async fn new_conn(connector: &Connector) -> Result<Conn, SendError> {
    let io = connector.dial_stream().await?;
    Ok(Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        idle_since: Instant::now(),
        reused: false,
    })
}

enum Failure {
    /// Nothing of a response arrived: the origin may never have seen the request.
    BeforeResponse(SendError),
    Other(SendError),
}

/// What reading a response head yields: the head (fields in its map, or none when they
/// are kept raw), the raw fields, the body's framing, and whether the connection can be
/// reused afterwards.
type Head = (http::response::Parts, Option<Box<RawFields>>, Framing, bool);

/// How a response field matters to the proxy, told from its name alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    /// Forwarded as it is.
    Plain,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Date,
    /// Hop-by-hop or replaced by the edge (TE, Upgrade, Proxy-Authenticate,
    /// Proxy-Connection, HTTP2-Settings, X-Request-Id): handled on the field map.
    Special,
}

fn classify(name: &[u8]) -> Field {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 if is("te") => Field::Special,
        4 if is("date") => Field::Date,
        7 if is("upgrade") => Field::Special,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::KeepAlive,
        12 if is("x-request-id") => Field::Special,
        14 if is("content-length") => Field::ContentLength,
        14 if is("http2-settings") => Field::Special,
        16 if is("proxy-connection") => Field::Special,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        18 if is("proxy-authenticate") => Field::Special,
        _ => Field::Plain,
    }
}

/// What the framing fields of a response head say.
struct FieldFacts {
    version_11: bool,
    /// `None`: no Content-Length; `Some(n)`: one value (or equal repeated ones).
    length: Option<u64>,
    te: bool,
    chunked: bool,
    close: bool,
}

impl FieldFacts {
    fn new(version_11: bool) -> Self {
        FieldFacts {
            version_11,
            length: None,
            te: false,
            chunked: false,
            close: !version_11,
        }
    }

    fn content_length(&mut self, raw: &[u8]) -> Result<(), Failure> {
        let v = std::str::from_utf8(raw)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Failure::Other(SendError::Protocol(
                "malformed Content-Length",
            )))?;
        match self.length {
            Some(m) if m != v => Err(Failure::Other(SendError::Protocol(
                "conflicting Content-Length values",
            ))),
            _ => {
                self.length = Some(v);
                Ok(())
            }
        }
    }

    fn transfer_encoding(&mut self, raw: &[u8]) {
        self.te = true;
        self.chunked = raw
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    }

    /// Takes `close` / `keep-alive` from a Connection field; true if it names other
    /// fields too (then it is kept for the hop-by-hop pass).
    fn connection(&mut self, raw: &[u8]) -> bool {
        let mut names_others = false;
        for token in raw.split(|&b| b == b',') {
            let t = token.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                if !self.version_11 {
                    self.close = false;
                }
            } else if !t.is_empty() {
                names_others = true;
            }
        }
        names_others
    }

    /// The body's framing and whether the connection can be reused after it.
    fn framing(&self, status: StatusCode, head_only: bool) -> (Framing, bool) {
        let no_body = head_only
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let framing = if no_body {
            Framing::Done
        } else if self.te {
            if self.chunked {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::UntilClose
            }
        } else {
            match self.length {
                Some(0) => Framing::Done,
                Some(len) => Framing::Length(len),
                None => Framing::UntilClose,
            }
        };
        let keep_alive = !self.close
            && framing != Framing::UntilClose
            && status != StatusCode::SWITCHING_PROTOCOLS;
        (framing, keep_alive)
    }
}

/// The fields of `head` (which `spans` index) in a map, less the framing fields the proxy
/// consumes, noting framing in `facts`.
fn map_fields(
    head: &Bytes,
    spans: &[crate::spans::Span],
    count: usize,
    facts: &mut FieldFacts,
) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::with_capacity(count + 2);
    for &(ns, ne, vs, ve) in spans {
        let name = &head[ns as usize..ne as usize];
        let value = &head[vs as usize..ve as usize];
        match classify(name) {
            Field::ContentLength => facts.content_length(value)?,
            // Framing is ours to choose towards the client.
            Field::TransferEncoding => {
                facts.transfer_encoding(value);
                continue;
            }
            // Only `close` / `keep-alive`: the field is consumed here. A field naming
            // others stays for the proxy's hop-by-hop pass, which also removes the
            // fields it names.
            Field::Connection => {
                if !facts.connection(value) {
                    continue;
                }
            }
            Field::KeepAlive => continue,
            Field::Plain | Field::Date | Field::Special => {}
        }
        let name = HeaderName::from_bytes(name)
            .map_err(|_| Failure::Other(SendError::Protocol("invalid header name")))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
            .map_err(|_| Failure::Other(SendError::Protocol("invalid header value")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// For the fuzzer: parses `data` as an origin's response head and, when its fields can
/// be kept raw, checks that the raw lines carry exactly the fields the field map would
/// (same names, values and order, re-parsed), end in CRLF, and yield the same framing;
/// an error either way must be an error both ways. Returns whether the head was kept raw.
#[doc(hidden)]
pub fn fuzz_response_head(data: &[u8]) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let Ok(httparse::Status::Complete(n)) = resp.parse(data) else {
        return false;
    };
    let version_11 = resp.version == Some(1);
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let spans = crate::spans::Spans::of(data, resp.headers);
    let head = Bytes::copy_from_slice(&data[..n]);
    let mut raw_facts = FieldFacts::new(version_11);
    let raw = RawFields::of(&head, spans.as_slice(), &mut raw_facts);
    let mut map_facts = FieldFacts::new(version_11);
    let map = map_fields(
        &head,
        spans.as_slice(),
        spans.as_slice().len(),
        &mut map_facts,
    );
    let (raw, map) = match (raw, map) {
        (Ok(Some(raw)), Ok(map)) => (raw, map),
        (raw, map) => {
            assert!(
                matches!(raw, Ok(None)) || raw.is_err() == map.is_err(),
                "raw and map disagree on whether the head is valid"
            );
            return false;
        }
    };
    let mut lines = b"HTTP/1.1 200 OK\r\n".to_vec();
    for run in raw.runs() {
        lines.extend_from_slice(run);
    }
    lines.extend_from_slice(b"\r\n");
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && lines[i - 1] == b'\r')),
        "a raw line does not end in CRLF"
    );
    let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut reparsed = httparse::Response::new(&mut again);
    assert!(
        matches!(reparsed.parse(&lines), Ok(httparse::Status::Complete(m)) if m == lines.len()),
        "raw lines do not parse as a head"
    );
    let mut from_raw = HeaderMap::new();
    for h in reparsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes());
        let value = HeaderValue::from_bytes(h.value);
        assert!(
            name.is_ok() && value.is_ok(),
            "a field httparse took is refused by http"
        );
        if let (Ok(name), Ok(value)) = (name, value) {
            from_raw.append(name, value);
        }
    }
    assert_eq!(from_raw, map, "raw and map fields differ");
    assert_eq!(raw.content_length, map_facts.length);
    assert_eq!(
        raw_facts.framing(status, false),
        map_facts.framing(status, false)
    );
    true
}

/// Most pieces a forwarded field block is copied in (each field the edge drops from the
/// middle of the block starts a new piece).
const MAX_RUNS: usize = 4;

/// An origin's response fields kept as it sent them, to be written to an HTTP/1.1
/// client byte for byte: no field map is built, checked and serialised again for a
/// response nothing on the way reads.
///
/// Only for heads that need no rewriting beyond dropping the framing fields the proxy
/// replaces (Transfer-Encoding, Connection with only `close`/`keep-alive`, Keep-Alive):
/// a head with any other hop-by-hop field or an X-Request-Id of the origin's, with a line
/// not ended by CRLF, or in more than [`MAX_RUNS`] pieces goes through the field map as
/// before. The field bytes were validated by httparse when it parsed the head (names are
/// tokens; values are HTAB, SP, visible ASCII and obs-text, the same rule as
/// `http::HeaderValue`'s).
pub struct RawFields {
    head: Bytes,
    runs: [(u32, u32); MAX_RUNS],
    n_runs: usize,
    /// The origin's Content-Length.
    pub content_length: Option<u64>,
    /// Whether the origin sent a Date field.
    pub has_date: bool,
    /// X-Request-Id, written after the origin's fields.
    pub request_id: Option<HeaderValue>,
}

impl std::fmt::Debug for RawFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawFields")
            .field("runs", &&self.runs[..self.n_runs])
            .field("content_length", &self.content_length)
            .finish()
    }
}

impl RawFields {
    /// The fields of `head` (which `spans` index) if they can be forwarded raw, noting
    /// framing in `facts`; `None` if they cannot (then `facts` is to be discarded).
    fn of(
        head: &Bytes,
        spans: &[crate::spans::Span],
        facts: &mut FieldFacts,
    ) -> Result<Option<Box<RawFields>>, Failure> {
        let n = head.len();
        if n < 2 || &head[n - 2..] != b"\r\n" {
            return Ok(None);
        }
        let mut raw = RawFields {
            head: head.clone(),
            runs: [(0, 0); MAX_RUNS],
            n_runs: 0,
            content_length: None,
            has_date: false,
            request_id: None,
        };
        // The end of the run being extended, if one is open.
        let mut open = false;
        for (i, &(ns, _, vs, ve)) in spans.iter().enumerate() {
            let line_end = spans.get(i + 1).map_or(n as u32 - 2, |next| next.0);
            if line_end < ns + 2 || &head[line_end as usize - 2..line_end as usize] != b"\r\n" {
                return Ok(None);
            }
            let name = &head[ns as usize..spans[i].1 as usize];
            let value = &head[vs as usize..ve as usize];
            let keep = match classify(name) {
                Field::Plain => true,
                Field::Date => {
                    raw.has_date = true;
                    true
                }
                Field::ContentLength => {
                    facts.content_length(value)?;
                    true
                }
                Field::TransferEncoding => {
                    facts.transfer_encoding(value);
                    false
                }
                Field::Connection => {
                    if facts.connection(value) {
                        return Ok(None);
                    }
                    false
                }
                Field::KeepAlive => false,
                Field::Special => return Ok(None),
            };
            if keep {
                if open {
                    raw.runs[raw.n_runs - 1].1 = line_end;
                } else {
                    if raw.n_runs == MAX_RUNS {
                        return Ok(None);
                    }
                    raw.runs[raw.n_runs] = (ns, line_end);
                    raw.n_runs += 1;
                    open = true;
                }
            } else {
                open = false;
            }
        }
        raw.content_length = facts.length;
        Ok(Some(Box::new(raw)))
    }

    /// The field lines to write, in order: each piece is whole CRLF-ended lines.
    pub fn runs(&self) -> impl Iterator<Item = &[u8]> {
        self.runs[..self.n_runs]
            .iter()
            .map(|&(s, e)| &self.head[s as usize..e as usize])
    }
}

/// The request line and header section, with our own framing.
fn encode_head(head: &Outgoing, body: &ReqBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path_and_query.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    head.write_added(&mut out);
    let mut had_length = false;
    for (name, value) in &head.headers {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || head.replaces(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let hint = body.size_hint();
    if body.is_end_stream() {
        if had_length || matches!(head.method, Method::POST | Method::PUT | Method::PATCH) {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
    } else if let Some(n) = hint.exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

async fn exchange(
    conn: &mut Conn,
    head: &[u8],
    body: &mut ReqBody,
    head_only: bool,
    raw_ok: bool,
) -> Result<Head, Failure> {
    let declared = body.size_hint().exact();
    let chunked = !body.is_end_stream() && declared.is_none();
    let mut sent: u64 = 0;
    let mut done = body.is_end_stream();
    if done {
        // No body: the head goes out as it is.
        if let Err(e) = conn.io.write_all(head).await {
            return Err(Failure::BeforeResponse(e.into()));
        }
        return read_head(conn, head_only, raw_ok).await;
    }
    // Coalesce the head with a first body frame that is already there (small POSTs).
    let mut out = head.to_vec();
    {
        let mut first = None;
        std::future::poll_fn(|cx| {
            first = Some(Pin::new(&mut *body).poll_frame(cx));
            Poll::Ready(())
        })
        .await;
        match first {
            Some(Poll::Ready(Some(Ok(frame)))) => {
                if let Some(d) = frame.data_ref() {
                    sent += d.len() as u64;
                    put_data(&mut out, d, chunked);
                }
            }
            Some(Poll::Ready(Some(Err(e)))) => return Err(Failure::Other(SendError::Body(e))),
            Some(Poll::Ready(None)) => done = true,
            _ => {}
        }
    }
    if done && chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if let Err(e) = conn.io.write_all(&out).await {
        return Err(Failure::BeforeResponse(e.into()));
    }
    while !done {
        match std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
            None => done = true,
            Some(Err(e)) => return Err(Failure::Other(SendError::Body(e))),
            Some(Ok(frame)) => {
                let mut piece = Vec::new();
                match frame.into_data() {
                    Ok(d) => {
                        sent += d.len() as u64;
                        if chunked {
                            put_data(&mut piece, &d, true);
                            conn.io
                                .write_all(&piece)
                                .await
                                .map_err(|e| Failure::Other(e.into()))?;
                        } else {
                            conn.io
                                .write_all(&d)
                                .await
                                .map_err(|e| Failure::Other(e.into()))?;
                        }
                    }
                    Err(frame) => {
                        if let (Ok(trailers), true) = (frame.into_trailers(), chunked) {
                            piece.extend_from_slice(b"0\r\n");
                            for (n, v) in &trailers {
                                piece.extend_from_slice(n.as_str().as_bytes());
                                piece.extend_from_slice(b": ");
                                piece.extend_from_slice(v.as_bytes());
                                piece.extend_from_slice(b"\r\n");
                            }
                            piece.extend_from_slice(b"\r\n");
                            conn.io
                                .write_all(&piece)
                                .await
                                .map_err(|e| Failure::Other(e.into()))?;
                            // the chunked end was written with the trailers
                            return read_head(conn, head_only, raw_ok).await;
                        }
                    }
                }
            }
        }
        if done && chunked {
            conn.io
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(|e| Failure::Other(e.into()))?;
        }
    }
    if let Some(n) = declared {
        if sent != n {
            return Err(Failure::Other(SendError::Protocol(
                "request body length differs from its Content-Length",
            )));
        }
    }
    read_head(conn, head_only, raw_ok).await
}

fn put_data(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

async fn read_more(conn: &mut Conn) -> std::io::Result<usize> {
    if conn.buf.capacity() - conn.buf.len() < 1024 {
        conn.buf.reserve(READ_CHUNK);
    }
    std::future::poll_fn(|cx| {
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
    })
    .await
}

/// Reads the response head. With `raw_ok` (the client speaks HTTP/1.1 and nothing reads
/// response fields) the fields are kept as the origin sent them when they can be
/// forwarded so ([`RawFields`]), and the returned map is empty.
async fn read_head(conn: &mut Conn, head_only: bool, raw_ok: bool) -> Result<Head, Failure> {
    let mut got_any = !conn.buf.is_empty();
    loop {
        if !conn.buf.is_empty() {
            // Left uninitialised: httparse writes the fields it returns.
            let mut headers =
                [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                &conn.buf,
                &mut headers,
            ) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    let status = StatusCode::from_u16(code).map_err(|_| {
                        Failure::Other(SendError::Protocol("status code out of range"))
                    })?;
                    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
                        // 100 Continue, 102, 103 Early Hints: not forwarded; the final
                        // response follows.
                        conn.buf.advance(n);
                        continue;
                    }
                    let version_11 = resp.version == Some(1);
                    // The values become slices of the frozen head, no copy per field
                    // (heads are at most MAX_HEAD bytes: offsets fit in u32).
                    let spans = crate::spans::Spans::of(&conn.buf, resp.headers);
                    let count = resp.headers.len();
                    let head = conn.buf.split_to(n).freeze();
                    let mut facts = FieldFacts::new(version_11);
                    let raw =
                        if raw_ok && !status.is_informational() && status != StatusCode::NO_CONTENT
                        {
                            let raw = RawFields::of(&head, spans.as_slice(), &mut facts)?;
                            if raw.is_none() {
                                facts = FieldFacts::new(version_11);
                            }
                            raw
                        } else {
                            None
                        };
                    let map = if raw.is_none() {
                        map_fields(&head, spans.as_slice(), count, &mut facts)?
                    } else {
                        HeaderMap::new()
                    };
                    let (framing, keep_alive) = facts.framing(status, head_only);
                    let mut parts = http::Response::new(()).into_parts().0;
                    parts.status = status;
                    parts.version = http::Version::HTTP_11;
                    parts.headers = map;
                    return Ok((parts, raw, framing, keep_alive));
                }
                Ok(httparse::Status::Partial) => {
                    if conn.buf.len() > MAX_HEAD {
                        return Err(Failure::Other(SendError::Protocol(
                            "response head too large",
                        )));
                    }
                }
                Err(_) => {
                    return Err(Failure::Other(SendError::Protocol(
                        "malformed response head",
                    )));
                }
            }
        }
        match read_more(conn).await {
            Ok(0) => {
                let e = SendError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "origin closed the connection before answering",
                ));
                return Err(if got_any {
                    Failure::Other(e)
                } else {
                    Failure::BeforeResponse(e)
                });
            }
            Ok(_) => got_any = true,
            Err(e) => {
                return Err(if got_any {
                    Failure::Other(e.into())
                } else {
                    Failure::BeforeResponse(e.into())
                });
            }
        }
    }
}

/// A response body read from the origin connection as the client takes it.
pub struct H1Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    /// Where the connection goes back to: pool, server index, thread slot.
    home: Option<(Arc<PoolRuntime>, usize, usize)>,
}

impl H1Body {
    fn empty() -> Self {
        H1Body {
            conn: None,
            framing: Framing::Done,
            keep_alive: false,
            home: None,
        }
    }

    /// The body ended: keep the connection if it can serve another request.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let (Some(conn), Some((pool, server, slot))) = (self.conn.take(), self.home.as_ref()) {
            if self.keep_alive && conn.buf.is_empty() {
                pool.servers[*server].h1_idle[*slot].put(conn, pool.spec.idle_timeout);
            }
        }
    }

    fn fail(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(BoxError::from(SendError::Protocol(why)))))
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // Serve what is buffered first.
            match this.framing {
                Framing::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) if !conn.buf.is_empty() => {
                    let k = (left.min(conn.buf.len() as u64)) as usize;
                    let data = conn.buf.split_to(k).freeze();
                    this.framing = if left - k as u64 == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left - k as u64)
                    };
                    if this.framing == Framing::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(state) => match state {
                    Chunk::Size => {
                        if let Some(lf) = conn.buf.iter().position(|&b| b == b'\n') {
                            let line = &conn.buf[..lf];
                            let Some(line) = line.strip_suffix(b"\r") else {
                                return this.fail("chunk-size line without CRLF");
                            };
                            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                            if digits == 0
                                || digits > 16
                                || !(line.len() == digits || line[digits] == b';')
                            {
                                return this.fail("invalid chunk size");
                            }
                            let size = std::str::from_utf8(&line[..digits])
                                .ok()
                                .and_then(|s| u64::from_str_radix(s, 16).ok());
                            let Some(size) = size else {
                                return this.fail("invalid chunk size");
                            };
                            conn.buf.advance(lf + 1);
                            this.framing = Framing::Chunked(if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            });
                            continue;
                        }
                        if conn.buf.len() > MAX_LINE {
                            return this.fail("chunk-size line too long");
                        }
                    }
                    Chunk::Data(left) if !conn.buf.is_empty() => {
                        let k = (left.min(conn.buf.len() as u64)) as usize;
                        let data = conn.buf.split_to(k).freeze();
                        this.framing = Framing::Chunked(if left - k as u64 == 0 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left - k as u64)
                        });
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Chunk::DataEnd if conn.buf.len() >= 2 => {
                        if &conn.buf[..2] != b"\r\n" {
                            return this.fail("chunk data not followed by CRLF");
                        }
                        conn.buf.advance(2);
                        this.framing = Framing::Chunked(Chunk::Size);
                        continue;
                    }
                    Chunk::Trailers => {
                        if conn.buf.starts_with(b"\r\n") {
                            conn.buf.advance(2);
                            this.finish();
                            return Poll::Ready(None);
                        }
                        if let Some(end) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let mut fields = [httparse::EMPTY_HEADER; 64];
                            let section = conn.buf.split_to(end + 4);
                            let trailers = match httparse::parse_headers(&section, &mut fields) {
                                Ok(httparse::Status::Complete((_, list))) => {
                                    let mut map = HeaderMap::new();
                                    for f in list {
                                        if let (Ok(n), Ok(v)) = (
                                            HeaderName::from_bytes(f.name.as_bytes()),
                                            HeaderValue::from_bytes(f.value),
                                        ) {
                                            map.append(n, v);
                                        }
                                    }
                                    map
                                }
                                _ => return this.fail("malformed trailer section"),
                            };
                            this.finish();
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        if conn.buf.len() > MAX_LINE {
                            return this.fail("trailer section too large");
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
            // Need more bytes from the origin.
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if conn.buf.capacity() - conn.buf.len() < 1024 {
                conn.buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.framing = Framing::Done;
                    return Poll::Ready(Some(Err(BoxError::from(e))));
                }
                Poll::Ready(Ok(0)) => {
                    if this.framing == Framing::UntilClose {
                        this.keep_alive = false;
                        this.conn = None;
                        this.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return this.fail("origin closed the connection inside the body");
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.framing {
            Framing::Done => http_body::SizeHint::with_exact(0),
            Framing::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn() -> (Conn, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server_side, _) = l.accept().await.unwrap();
        (
            Conn {
                io: Stream::Plain(c),
                buf: BytesMut::new(),
                idle_since: Instant::now(),
                reused: false,
            },
            server_side,
        )
    }

    #[tokio::test]
    async fn idle_connections_expire_and_closed_ones_are_not_reused() {
        let idle = Idle::default();
        let t = Duration::from_millis(100);
        let (a, _a_peer) = conn().await;
        idle.put(a, t);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (b, _b_peer) = conn().await;
        idle.put(b, t);
        assert_eq!(
            idle.0.lock().unwrap().len(),
            1,
            "the expired connection was closed on put"
        );
        // taken at a moment past its idle timeout, the connection is not handed out
        assert!(idle.take(t, Instant::now() + t).is_none());
        let (b, _b_peer) = conn().await;
        idle.put(b, t);
        let got = idle
            .take(t, Instant::now())
            .expect("the fresh connection is reused");
        assert!(got.reused);
        // a connection the origin closed while idle is dropped, not handed out
        let (c, c_peer) = conn().await;
        idle.put(c, Duration::from_secs(60));
        drop(c_peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(idle.take(Duration::from_secs(60), Instant::now()).is_none());
    }
}

#[cfg(test)]
mod raw_tests {
    use super::*;

    /// Parses `head` and returns what `RawFields::of` makes of it.
    fn raw_of(head: &[u8]) -> Result<Option<Box<RawFields>>, Failure> {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut fields);
        let n = match resp.parse(head) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("test head does not parse: {other:?}"),
        };
        let spans = crate::spans::Spans::of(head, resp.headers);
        let head = Bytes::copy_from_slice(&head[..n]);
        let mut facts = FieldFacts::new(true);
        RawFields::of(&head, spans.as_slice(), &mut facts)
    }

    fn pieces(r: &RawFields) -> Vec<String> {
        r.runs()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn kept_fields_are_whole_lines_in_pieces_split_where_fields_are_dropped() {
        let r = raw_of(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nConnection: close\r\nC: 3\r\nContent-Length: 7\r\nDate: d\r\n\r\n")
            .ok()
            .flatten()
            .expect("kept raw");
        assert_eq!(
            pieces(&r),
            [
                "A: 1\r\nB: 2\r\n",
                "C: 3\r\nContent-Length: 7\r\nDate: d\r\n"
            ]
        );
        assert_eq!(r.content_length, Some(7));
        assert!(r.has_date);
        let r = raw_of(b"HTTP/1.1 200 OK\r\n\r\n")
            .ok()
            .flatten()
            .expect("no fields is fine");
        assert!(pieces(&r).is_empty());
        assert_eq!(r.content_length, None);
    }

    #[test]
    fn heads_that_need_rewriting_are_not_kept_raw() {
        for head in [
            // bare LF line ends
            &b"HTTP/1.1 200 OK\nA: 1\n\n"[..],
            &b"HTTP/1.1 200 OK\r\nA: 1\nB: 2\r\n\r\n"[..],
            // hop-by-hop fields handled on the map, the origin's X-Request-Id
            &b"HTTP/1.1 200 OK\r\nUpgrade: x\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nTE: trailers\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nHTTP2-Settings: x\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nx-request-id: o\r\n\r\n"[..],
            // a Connection field naming another field
            &b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n"[..],
            // more pieces than kept raw
            &b"HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: t\r\nB: 2\r\nKeep-Alive: t\r\nC: 3\r\nKeep-Alive: t\r\nD: 4\r\nKeep-Alive: t\r\nE: 5\r\n\r\n"[..],
        ] {
            assert!(
                matches!(raw_of(head), Ok(None)),
                "kept raw: {:?}",
                String::from_utf8_lossy(head)
            );
        }
        // four pieces is still fine
        assert!(matches!(
            raw_of(b"HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: t\r\nB: 2\r\nKeep-Alive: t\r\nC: 3\r\nKeep-Alive: t\r\nD: 4\r\n\r\n"),
            Ok(Some(_))
        ));
    }

    #[test]
    fn framing_errors_are_the_same_as_on_the_map() {
        assert!(matches!(
            raw_of(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Failure::Other(SendError::Protocol(
                "conflicting Content-Length values"
            )))
        ));
        assert!(matches!(
            raw_of(b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"),
            Err(Failure::Other(SendError::Protocol(
                "malformed Content-Length"
            )))
        ));
        let mut facts = FieldFacts::new(true);
        facts.transfer_encoding(b"gzip, chunked");
        assert_eq!(
            facts.framing(StatusCode::OK, false),
            (Framing::Chunked(Chunk::Size), true)
        );
        let mut facts = FieldFacts::new(false);
        assert!(!facts.connection(b"keep-alive"));
        facts.content_length(b"3").ok();
        assert_eq!(
            facts.framing(StatusCode::OK, false),
            (Framing::Length(3), true)
        );
        assert_eq!(facts.framing(StatusCode::OK, true), (Framing::Done, true));
    }

    #[test]
    fn names_are_classified_case_insensitively() {
        assert_eq!(classify(b"Content-Length"), Field::ContentLength);
        assert_eq!(classify(b"TRANSFER-ENCODING"), Field::TransferEncoding);
        assert_eq!(classify(b"keep-alive"), Field::KeepAlive);
        assert_eq!(classify(b"X-Request-ID"), Field::Special);
        assert_eq!(classify(b"content-lengths"), Field::Plain);
        assert_eq!(classify(b"te"), Field::Special);
        assert_eq!(classify(b"tf"), Field::Plain);
    }
}
