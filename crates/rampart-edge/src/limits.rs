//! Per-client-IP connection limits: concurrent connections, and (for tcp listeners) new
//! connections per second.
//!
//! State is sharded by address hash with a small mutex per shard, held only for a map
//! update; no global lock on the accept path. Entries disappear when their last
//! connection closes (concurrency) or when they have been idle long enough to be full
//! again (rate), so memory follows the number of active clients.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SHARDS: usize = 32;

/// Counts concurrent connections per client IP.
#[derive(Debug)]
pub struct ConnLimiter {
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
    hasher: RandomState,
}

impl Default for ConnLimiter {
    fn default() -> Self {
        ConnLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

fn shard_of(hasher: &RandomState, ip: &IpAddr) -> usize {
    (hasher.hash_one(ip) as usize) % SHARDS
}

/// One counted connection; released on drop.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let shard = &self.limiter.shards[shard_of(&self.limiter.hasher, &self.ip)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl ConnLimiter {
    /// Counts a new connection from `ip`, unless it already holds `max`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<ConnPermit> {
        let shard = &self.shards[shard_of(&self.hasher, &ip)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections currently held by `ip`.
    pub fn held(&self, ip: IpAddr) -> u32 {
        let map = self.shards[shard_of(&self.hasher, &ip)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }
}

/// A token bucket per client IP: `rate` connections per second, bursts up to
/// `max(1, rate)`.
#[derive(Debug)]
pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
    hasher: RandomState,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

/// Entries per shard above which full buckets are swept.
const SWEEP_AT: usize = 4096;

impl RateLimiter {
    /// Takes a token for `ip` at `now`; `false` if none is left.
    pub fn allow(&self, ip: IpAddr, rate: f64, now: Instant) -> bool {
        let burst = rate.max(1.0);
        let mut map = self.shards[shard_of(&self.hasher, &ip)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = map.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn concurrent_connections_are_capped_and_released() {
        let l = Arc::new(ConnLimiter::default());
        let ip: IpAddr = [192, 0, 2, 1].into();
        let a = l.acquire(ip, 2);
        let b = l.acquire(ip, 2);
        assert!(a.is_some() && b.is_some());
        assert!(l.acquire(ip, 2).is_none());
        assert!(
            l.acquire([192, 0, 2, 2].into(), 2).is_some(),
            "other clients unaffected"
        );
        drop(a);
        assert_eq!(l.held(ip), 1);
        assert!(l.acquire(ip, 2).is_some());
        drop(b);
    }

    #[test]
    fn rate_refills() {
        let r = RateLimiter::default();
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = Instant::now();
        assert!(r.allow(ip, 2.0, t0));
        assert!(r.allow(ip, 2.0, t0));
        assert!(!r.allow(ip, 2.0, t0));
        assert!(r.allow(ip, 2.0, t0 + Duration::from_millis(500)));
        assert!(!r.allow(ip, 2.0, t0 + Duration::from_millis(500)));
        assert!(r.allow(ip, 0.5, t0 + Duration::from_secs(100)));
    }
}
