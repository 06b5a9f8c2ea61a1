//! [`LazyTimer`]: a timeout re-armed on every request without touching the timer wheel.
//!
//! Registering a `tokio::time::Sleep` and cancelling it again costs a timer-wheel insert
//! and removal; on a keep-alive connection that happens for every request although the
//! timeout almost never fires. A `LazyTimer` keeps one registered `Sleep` and a separate
//! deadline: re-arming only moves the deadline (the wheel entry moves only when the new
//! deadline is *earlier*); when the `Sleep` fires before the deadline, it is moved to the
//! deadline then. A timer that is armed and never expires thus costs a clock read per
//! arming, and at most one spurious wake-up per timeout period.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One connection's lazily moved timeout.
#[derive(Debug)]
pub struct LazyTimer {
    deadline: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl LazyTimer {
    /// A timer armed to expire `after` from now.
    pub fn new(after: Duration) -> Self {
        Self::new_at(Instant::now(), after)
    }

    /// A timer armed to expire `after` from `now` (a clock reading the caller just took).
    pub fn new_at(now: Instant, after: Duration) -> Self {
        LazyTimer {
            deadline: now + after,
            sleep: Box::pin(tokio::time::sleep_until(now + after)),
        }
    }

    /// Re-arms the timer to expire `after` from now.
    pub fn arm(&mut self, after: Duration) {
        self.arm_at(Instant::now(), after);
    }

    /// Re-arms the timer to expire `after` from `now` (a clock reading the caller just
    /// took: passing one saves reading the clock again).
    pub fn arm_at(&mut self, now: Instant, after: Duration) {
        self.deadline = now + after;
        if self.deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(self.deadline);
        }
    }

    /// Whether the deadline has passed; otherwise the task is woken when it may have.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if Instant::now() < self.deadline {
            // Fired at an earlier deadline that was since pushed out.
            self.sleep.as_mut().reset(self.deadline);
            return self.sleep.as_mut().poll(cx).is_ready();
        }
        true
    }

    /// Runs `fut` until it completes or the timer (armed by the caller) expires first.
    /// (Pinned by the caller, so that a large future is not moved into this one.)
    pub async fn run<F: Future>(&mut self, mut fut: Pin<&mut F>) -> Result<F::Output, Expired> {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if self.poll_expired(cx) {
                return Poll::Ready(Err(Expired));
            }
            Poll::Pending
        })
        .await
    }
}

/// The timer expired before the work was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_at_the_latest_deadline_not_the_first() {
        let mut t = LazyTimer::new(Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(6)).await;
        // Pushed out to 6 + 10 = 16 s: the wheel still holds 10 s.
        t.arm(Duration::from_secs(10));
        let r = t
            .run(std::pin::pin!(tokio::time::sleep(Duration::from_secs(9))))
            .await;
        assert_eq!(r, Ok(()), "done at 15 s, before the deadline at 16 s");
        let started = Instant::now();
        let r = t.run(std::pin::pin!(std::future::pending::<()>())).await;
        assert_eq!(r, Err(Expired));
        assert_eq!(
            Instant::now(),
            started + Duration::from_secs(1),
            "expired at 16 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_in() {
        let mut t = LazyTimer::new(Duration::from_secs(60));
        t.arm(Duration::from_secs(2));
        let started = Instant::now();
        let r = t.run(std::pin::pin!(std::future::pending::<()>())).await;
        assert_eq!(r, Err(Expired));
        assert_eq!(Instant::now(), started + Duration::from_secs(2));
    }
}
