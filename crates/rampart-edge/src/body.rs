//! Message bodies as they flow through the proxy, streamed and never fully buffered.
//!
//! [`ReqBody`] carries a client's request body to the origin: an optional prefix the
//! pipeline already read, then the rest of the stream, with the size limit
//! (`max_body_bytes` → 413) and the idle timeout (`body_timeout` → 408) enforced as it
//! flows. [`RespBody`] carries a response to the client: the origin's body with the
//! origin read timeout, or a page the edge generated; it counts bytes, and when it is
//! finished or dropped it runs its completion hook (access log, metrics).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Boxed error type used by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More than `max_body_bytes` arrived.
    #[error("request body larger than the configured limit")]
    TooLarge,
    /// The peer paused longer than allowed.
    #[error("body read timed out")]
    Timeout,
}

/// The client's request body could not be read (connection reset, framing error, the
/// framing guard cut the stream): never the origin's fault.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

/// A client's request body as the server that read the head delivers it.
#[derive(Debug, Default)]
pub enum ClientBody {
    /// No body.
    #[default]
    Empty,
    /// From hyper's HTTP/2 server.
    Hyper(Incoming),
    /// From the edge's own HTTP/1 server.
    H1(crate::server::H1RequestBody),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::H1(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::H1(b) => b.size_hint(),
        }
    }
}

/// Whether an error's source chain holds a [`ClientBodyError`].
pub fn is_client_body_error(mut err: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if err.downcast_ref::<ClientBodyError>().is_some() {
            return true;
        }
        match err.source() {
            Some(s) => err = s,
            None => return false,
        }
    }
}

/// Finds a [`BodyError`] in an error's source chain.
pub fn find_body_error(mut err: &(dyn std::error::Error + 'static)) -> Option<BodyError> {
    loop {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return Some(*b);
        }
        err = err.source()?;
    }
}

/// An idle timer: it starts at the first pause and is re-armed after every frame. It is
/// created lazily, so a body that never has to wait (the common small response) never
/// touches the timer wheel.
struct Idle {
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    fn new(after: Duration) -> Self {
        Idle { after, sleep: None }
    }
    fn reset(&mut self) {
        if let Some(s) = self.sleep.as_mut() {
            s.as_mut().reset(Instant::now() + self.after);
        }
    }
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.after;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// A request body on its way to the origin.
pub struct ReqBody {
    prefix: Option<Bytes>,
    /// Trailers met while reading the prefix; sent after it.
    trailers: Option<Frame<Bytes>>,
    inner: Option<ClientBody>,
    /// Bytes still allowed (`None` = unlimited).
    allowance: Option<u64>,
    idle: Option<Idle>,
}

impl std::fmt::Debug for ReqBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqBody")
            .field("prefix", &self.prefix.as_ref().map(Bytes::len))
            .field("allowance", &self.allowance)
            .finish()
    }
}

impl ReqBody {
    /// An empty body.
    pub fn empty() -> Self {
        ReqBody {
            prefix: None,
            trailers: None,
            inner: None,
            allowance: None,
            idle: None,
        }
    }

    /// The client's body, limited to `max` bytes, failing after `idle` without data
    /// (`None`: the framing guard already times the connection).
    pub fn new(inner: ClientBody, max: Option<u64>, idle: Option<Duration>) -> Self {
        let inner = if inner.is_end_stream() {
            None
        } else {
            Some(inner)
        };
        let idle = if inner.is_some() {
            idle.map(Idle::new)
        } else {
            None
        };
        ReqBody {
            prefix: None,
            trailers: None,
            inner,
            allowance: max,
            idle,
        }
    }

    /// Reads up to `want` bytes into a prefix kept at the front of this body. Returns the
    /// prefix and whether the body ended within it.
    pub async fn read_prefix(&mut self, want: usize) -> Result<(Bytes, bool), BoxError> {
        let mut buf = bytes::BytesMut::new();
        if let Some(p) = self.prefix.take() {
            buf.extend_from_slice(&p);
        }
        let mut pending_trailers = None;
        while buf.len() < want && self.trailers.is_none() {
            let frame = std::future::poll_fn(|cx| self.poll_inner(cx)).await;
            match frame {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => buf.extend_from_slice(&d),
                    Err(f) => {
                        pending_trailers = Some(f);
                        break;
                    }
                },
            }
        }
        if pending_trailers.is_some() {
            self.trailers = pending_trailers;
            self.inner = None;
        }
        let complete = self.inner.is_none();
        let prefix = buf.freeze();
        if !prefix.is_empty() {
            self.prefix = Some(prefix.clone());
        }
        Ok((prefix, complete))
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => {
                if let Some(idle) = self.idle.as_mut() {
                    if idle.poll_expired(cx) {
                        self.inner = None;
                        return Poll::Ready(Some(Err(BodyError::Timeout.into())));
                    }
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.inner = None;
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e)))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = self.idle.as_mut() {
                    idle.reset();
                }
                if let (Some(allow), Some(data)) = (self.allowance.as_mut(), frame.data_ref()) {
                    let n = data.len() as u64;
                    if n > *allow {
                        self.inner = None;
                        return Poll::Ready(Some(Err(BodyError::TooLarge.into())));
                    }
                    *allow -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(t)));
        }
        self.poll_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && self.trailers.is_none()
            && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let p = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.inner {
            None => SizeHint::with_exact(p),
            Some(b) => {
                let h = b.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + p);
                if let Some(u) = h.upper() {
                    out.set_upper(u + p);
                }
                out
            }
        }
    }
}

/// Runs once when a response body is finished or dropped, with the bytes sent and
/// whether it ended cleanly.
pub type OnDone = Box<dyn FnOnce(u64, bool) + Send>;

enum Source {
    Origin {
        body: Incoming,
        idle: Idle,
    },
    OriginH1 {
        body: crate::upstream::h1::H1Body,
        idle: Idle,
    },
    Page(Option<Bytes>),
}

/// A response body on its way to the client.
pub struct RespBody {
    source: Source,
    sent: u64,
    ok: bool,
    on_done: Option<OnDone>,
    /// Frames read ahead by [`RespBody::read_prefix`], sent before the rest.
    pending: std::collections::VecDeque<Frame<Bytes>>,
    /// The source ended while reading ahead.
    ended: bool,
    /// The origin's fields, when they were kept raw for an HTTP/1.1 client.
    raw: Option<Box<crate::upstream::h1::RawFields>>,
}

impl std::fmt::Debug for RespBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespBody")
            .field("sent", &self.sent)
            .finish()
    }
}

impl RespBody {
    /// The origin's body; fails if the origin pauses longer than `read_timeout`.
    pub fn origin(body: Incoming, read_timeout: Duration) -> Self {
        RespBody {
            source: Source::Origin {
                body,
                idle: Idle::new(read_timeout),
            },
            sent: 0,
            ok: true,
            on_done: None,
            pending: std::collections::VecDeque::new(),
            ended: false,
            raw: None,
        }
    }

    /// A body read by the inline HTTP/1.1 client; fails if the origin pauses longer than
    /// `read_timeout`.
    /// `raw`: the response's fields as the origin sent them, when they travel so (see
    /// [`crate::upstream::h1::RawFields`]); [`RespBody::take_raw_fields`] hands them to
    /// the HTTP/1.1 writer.
    pub fn origin_h1(
        body: crate::upstream::h1::H1Body,
        read_timeout: Duration,
        raw: Option<Box<crate::upstream::h1::RawFields>>,
    ) -> Self {
        RespBody {
            source: Source::OriginH1 {
                body,
                idle: Idle::new(read_timeout),
            },
            sent: 0,
            ok: true,
            on_done: None,
            pending: std::collections::VecDeque::new(),
            ended: false,
            raw,
        }
    }

    /// The origin's response fields kept raw, if they were (taken once).
    pub fn take_raw_fields(&mut self) -> Option<Box<crate::upstream::h1::RawFields>> {
        self.raw.take()
    }

    /// A body the edge generated.
    pub fn page(bytes: impl Into<Bytes>) -> Self {
        let b: Bytes = bytes.into();
        RespBody {
            source: Source::Page(if b.is_empty() { None } else { Some(b) }),
            sent: 0,
            ok: true,
            on_done: None,
            pending: std::collections::VecDeque::new(),
            ended: false,
            raw: None,
        }
    }

    /// Sets the completion hook.
    pub fn on_done(mut self, f: OnDone) -> Self {
        self.on_done = Some(f);
        self
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(self.sent, self.ok);
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if self.on_done.is_some() {
            // dropped before the end: the client went away or the stream was reset
            self.ok = self.ok && self.is_end_stream();
            self.finish();
        }
    }
}

/// Polls an origin body, failing with [`BodyError::Timeout`] when it pauses longer than
/// the idle timer allows.
fn poll_timed<B>(
    body: Pin<&mut B>,
    idle: &mut Idle,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match body.poll_frame(cx) {
        Poll::Pending => {
            if idle.poll_expired(cx) {
                Poll::Ready(Some(Err(BoxError::from(BodyError::Timeout))))
            } else {
                Poll::Pending
            }
        }
        Poll::Ready(Some(Ok(f))) => {
            idle.reset();
            Poll::Ready(Some(Ok(f)))
        }
        Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
        Poll::Ready(None) => Poll::Ready(None),
    }
}

impl RespBody {
    /// Reads ahead until `want` body bytes are buffered or the body ends (`true`): what
    /// was read is kept and sent first, as if nothing had happened. A stage inspects the
    /// returned bytes before the response head goes out.
    pub async fn read_prefix(&mut self, want: usize) -> Result<(Bytes, bool), BoxError> {
        let mut buf = bytes::BytesMut::new();
        while buf.len() < want {
            match std::future::poll_fn(|cx| self.poll_source(cx)).await {
                None => {
                    self.ended = true;
                    return Ok((buf.freeze(), true));
                }
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        buf.extend_from_slice(d);
                    }
                    self.pending.push_back(frame);
                }
                Some(Err(e)) => return Err(e),
            }
        }
        Ok((buf.freeze(), false))
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self;
        let polled = match &mut this.source {
            Source::Page(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Source::Origin { body, idle } => poll_timed(Pin::new(body), idle, cx),
            Source::OriginH1 { body, idle } => poll_timed(Pin::new(body), idle, cx),
        };
        let out = ready!(polled);
        match &out {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Some(Err(_)) => {
                this.ok = false;
                this.finish();
            }
            None => this.finish(),
        }
        Poll::Ready(out)
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(f) = this.pending.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if this.ended {
            this.finish();
            return Poll::Ready(None);
        }
        this.poll_source(cx)
    }

    fn is_end_stream(&self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        if self.ended {
            return true;
        }
        match &self.source {
            Source::Page(b) => b.is_none(),
            Source::Origin { body, .. } => body.is_end_stream(),
            Source::OriginH1 { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self
            .pending
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let rest = if self.ended {
            SizeHint::with_exact(0)
        } else {
            match &self.source {
                Source::Page(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
                Source::Origin { body, .. } => body.size_hint(),
                Source::OriginH1 { body, .. } => body.size_hint(),
            }
        };
        let mut out = SizeHint::new();
        out.set_lower(rest.lower() + ahead);
        if let Some(u) = rest.upper() {
            out.set_upper(u + ahead);
        }
        out
    }
}
