//! [`GuardedIo`]: puts the HTTP/1 framing guard ([`rampart_core::h1::Guard`]) and the
//! client-side timeouts between a client connection and the HTTP parser.
//!
//! Reads from the client land in a buffer; bytes are handed to hyper only once the guard
//! validated them. On a violation — or when a client is too slow: the request head not
//! complete within `header_timeout`, or a body pausing longer than `body_timeout` — the
//! wrapper stops reading and reports end-of-stream to hyper. hyper finishes what it was
//! doing and shuts the connection down; at that moment, if no response bytes were
//! written since the offending request began, the wrapper writes the error response
//! itself (400, 408, 413, 414, 431, with `Connection: close` and a request id) and closes.
//! An idle keep-alive connection (no request in flight, nothing received) is closed
//! silently after `keepalive_timeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use rampart_core::h1::{Guard, Phase, Rejection, Step};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::deadline::LazyTimer;

/// State shared between a connection's [`GuardedIo`] and the requests served on it.
#[derive(Debug, Default)]
pub struct ConnShared {
    /// Requests currently being served (the idle and head timers wait while > 0).
    pub in_flight: AtomicU32,
    /// Response bytes written so far.
    pub written: AtomicU64,
    /// The violation that ended the stream, if any.
    pub violation: Mutex<Option<Violation>>,
    /// The HTTP/2 fingerprint of the connection, once its first request was read.
    pub h2_fingerprint: std::sync::OnceLock<Arc<str>>,
}

/// A refused request and when it was refused.
#[derive(Debug, Clone)]
pub struct Violation {
    /// What to answer.
    pub rejection: Rejection,
    /// `written` at the time: the error is sent only if nothing was written since.
    pub written_at: u64,
}

impl ConnShared {
    /// The violation, if one ended the stream.
    pub fn violation(&self) -> Option<Violation> {
        self.violation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Timeouts applied by the wrapper.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Whole request head.
    pub header: Duration,
    /// Pause within a body.
    pub body: Duration,
    /// Idle keep-alive.
    pub idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Off,
    Idle,
    Head,
    Body,
}

/// Builds the raw error response written when the stream is refused.
pub type ErrorResponder = Box<dyn Fn(&Rejection) -> Vec<u8> + Send + Sync>;

/// The wrapped client stream; see the module docs.
pub struct GuardedIo<T> {
    inner: T,
    guard: Guard,
    buf: BytesMut,
    /// Bytes at the front of `buf` validated and not yet handed out.
    ready: usize,
    eof: bool,
    stopped: bool,
    timeouts: Timeouts,
    timer: Timer,
    /// The running timer's expiry (most re-arms extend it: see `LazyTimer`).
    clock: LazyTimer,
    shared: Arc<ConnShared>,
    responder: Arc<ErrorResponder>,
    /// Error response being written during shutdown.
    farewell: Option<(Vec<u8>, usize)>,
    /// The bytes of an HTTP/2 connection up to its first request, while they are read
    /// for its fingerprint (`None` once done).
    h2_probe: Option<Vec<u8>>,
}

/// Reads are made in pieces of this size (the buffer is kept for the connection's life,
/// like hyper's own read buffer).
const READ_CHUNK: usize = 8 * 1024;

impl<T> GuardedIo<T> {
    /// Wraps a client stream.
    pub fn new(
        inner: T,
        guard: Guard,
        timeouts: Timeouts,
        shared: Arc<ConnShared>,
        responder: Arc<ErrorResponder>,
    ) -> Self {
        GuardedIo {
            inner,
            guard,
            buf: BytesMut::new(),
            ready: 0,
            eof: false,
            stopped: false,
            timeouts,
            timer: Timer::Off,
            clock: LazyTimer::new(timeouts.idle),
            shared,
            responder,
            farewell: None,
            h2_probe: Some(Vec::new()),
        }
    }

    /// Reads the HTTP/2 fingerprint from the bytes released to the server, until the
    /// first request is complete (or the bytes cannot give one).
    fn probe_h2(&mut self, n: usize) {
        let Some(probe) = self.h2_probe.as_mut() else {
            return;
        };
        probe.extend_from_slice(&self.buf[..n]);
        match rampart_policy::fingerprint::h2_fingerprint(probe) {
            Ok(fp) => {
                let _ = self.shared.h2_fingerprint.set(Arc::from(fp));
                self.h2_probe = None;
            }
            Err(rampart_policy::fingerprint::HelloError::Incomplete(_)) => {}
            Err(rampart_policy::fingerprint::HelloError::Invalid(why)) => {
                tracing::debug!(reason = why, "no HTTP/2 fingerprint");
                self.h2_probe = None;
            }
        }
    }

    /// Whether the connection turned out to speak HTTP/2 (by its preface).
    pub fn is_h2(&self) -> bool {
        self.guard.is_h2()
    }

    /// How many request heads the guard released, and the layout of the last one.
    pub fn last_head(&self) -> (u64, &rampart_core::h1::HeadLayout) {
        (self.guard.requests(), self.guard.last_head())
    }

    fn stop(&mut self, rejection: Rejection) {
        tracing::debug!(
            status = rejection.status.as_u16(),
            reason = rejection.reason,
            "client stream refused"
        );
        let written_at = self.shared.written.load(Ordering::Relaxed);
        *self
            .shared
            .violation
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Violation {
            rejection,
            written_at,
        });
        self.stopped = true;
        self.buf.clear();
        self.ready = 0;
    }

    /// Which timer should run now.
    fn wanted_timer(&self) -> Timer {
        let busy = self.shared.in_flight.load(Ordering::Relaxed) > 0;
        match self.guard.phase() {
            Phase::Head if busy => Timer::Off,
            Phase::Head if self.buf.is_empty() => Timer::Idle,
            Phase::Head => Timer::Head,
            Phase::Body | Phase::Chunked => Timer::Body,
            // An HTTP/2 connection with no stream in flight is idle; an upgraded
            // (WebSocket) tunnel is not timed here.
            Phase::Tunnel if self.guard.is_h2() && !busy => Timer::Idle,
            Phase::Tunnel | Phase::Rejected => Timer::Off,
        }
    }

    fn arm(&mut self, t: Timer) {
        let after = match t {
            Timer::Off => return,
            Timer::Idle => self.timeouts.idle,
            Timer::Head => self.timeouts.header,
            Timer::Body => self.timeouts.body,
        };
        self.clock.arm(after);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if this.stopped {
                return Poll::Ready(Ok(()));
            }
            if !this.buf.is_empty() || this.guard.phase() == Phase::Rejected {
                match this.guard.advance(&this.buf) {
                    Step::Pass(n) => {
                        this.ready = n;
                        if this.h2_probe.is_some() {
                            if this.guard.is_h2() {
                                this.probe_h2(n);
                            } else if this.guard.requests() > 0 {
                                // HTTP/1: the preface can no longer come.
                                this.h2_probe = None;
                            }
                        }
                        // A body segment restarts the body timer. Anything else: the
                        // next wait picks and arms its timer afresh (a complete head
                        // never needs the head timer).
                        let want = this.wanted_timer();
                        if want == Timer::Body {
                            this.timer = want;
                            this.arm(want);
                        } else {
                            this.timer = Timer::Off;
                        }
                        continue;
                    }
                    Step::Reject(r) => {
                        this.stop(r);
                        return Poll::Ready(Ok(()));
                    }
                    Step::NeedMore => {}
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // read more from the client
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(0)) => {
                    this.eof = true;
                    continue;
                }
                Poll::Ready(Ok(_)) => {
                    if this.timer == Timer::Body {
                        this.arm(Timer::Body);
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let want = this.wanted_timer();
                    if want != this.timer {
                        this.timer = want;
                        this.arm(want);
                    }
                    if want != Timer::Off && this.clock.poll_expired(cx) {
                        match want {
                            Timer::Idle => {
                                // idle keep-alive connection: close without a response
                                this.stopped = true;
                                return Poll::Ready(Ok(()));
                            }
                            Timer::Head => this.stop(Rejection {
                                status: StatusCode::REQUEST_TIMEOUT,
                                reason: "request head not received in time",
                            }),
                            Timer::Body => this.stop(Rejection {
                                status: StatusCode::REQUEST_TIMEOUT,
                                reason: "request body not received in time",
                            }),
                            Timer::Off => {}
                        }
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.farewell.is_none() {
            if let Some(v) = this.shared.violation() {
                if v.written_at == this.shared.written.load(Ordering::Relaxed) {
                    this.farewell = Some(((this.responder)(&v.rejection), 0));
                }
            }
            if this.farewell.is_none() {
                this.farewell = Some((Vec::new(), 0));
            }
        }
        if let Some((bytes, off)) = this.farewell.as_mut() {
            while *off < bytes.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &bytes[*off..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        *off = bytes.len();
                    }
                    Poll::Ready(Ok(n)) => *off += n,
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
