//! Rate-limit arithmetic and the in-process counter store.
//!
//! A limit counts requests (or responses) per *key* — composed of request fields such
//! as the client's /24, an API key header or a session cookie — and compares the count
//! with up to [`MAX_THRESHOLDS`] graduated thresholds (log → challenge → block for a ban
//! period). Two algorithms:
//!
//! - **Sliding window** (the default): a counter per fixed window plus the previous
//!   window's, weighted by how much of it still overlaps the sliding window
//!   (`prev × (1 − elapsed/window) + current`). Two integers per key; accurate to a few
//!   percent for steady traffic.
//! - **GCRA** (generic cell rate algorithm): per threshold, a theoretical arrival time;
//!   a request conforms when it arrives no earlier than `TAT − burst`. Exact, no window
//!   edges: `limit` requests per `window` with a burst of `limit`.
//!
//! A limit can also count *distinct values* of a field per key (more than 5 distinct
//! usernames per /24 in 10 minutes): each window keeps the hashes of the values seen,
//! up to one more than the highest threshold.
//!
//! [`LocalStore`] keeps the state of one limit in memory: 64 shards, each behind its own
//! lock (a request holds one shard's lock for a few dozen nanoseconds; there is no
//! global lock), with a fixed number of slots: when a shard is full, the CLOCK hand
//! evicts a key that was not used since its last pass — a key's first hit does not
//! count as a use, so keys seen once (scans, spoofed values) go before keys seen again. Keys are 64-bit SipHash digests
//! under a per-process random key, so a client cannot choose values that collide.
//!
//! Time is an argument (milliseconds on any monotonic scale); nothing here reads a
//! clock.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Most thresholds one limit may have.
pub const MAX_THRESHOLDS: usize = 4;

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Sliding window counter.
    SlidingWindow,
    /// Generic cell rate algorithm.
    Gcra,
}

/// The arithmetic of a limit: algorithm, window and threshold values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counting {
    /// How it counts.
    pub algorithm: Algorithm,
    /// The window (ms) a threshold's count is per.
    pub window_ms: u64,
    /// Threshold counts, ascending: exceeding `thresholds[i]` in a window is level `i`.
    pub thresholds: Vec<u32>,
    /// For each threshold, how long (ms) a key that exceeds it stays at that level
    /// whatever its count (a ban), or 0.
    pub hold_ms: Vec<u64>,
    /// Counting distinct values of a field rather than requests.
    pub distinct: bool,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The count the thresholds were compared with (requests or distinct values in the
    /// sliding window; for GCRA, the highest level's requests in its window).
    pub count: f64,
    /// The highest threshold exceeded (index), if any.
    pub level: Option<usize>,
    /// When the key is held at its level (banned), for how much longer (ms).
    pub held_for: Option<u64>,
}

/// One key's state, in 56 bytes so that a slot (with its key) is one cache line.
#[derive(Debug, Clone, Default)]
struct State {
    /// Sliding window: `[window index, prev | cur << 32, -, -]`; GCRA: the theoretical
    /// arrival time (µs) per threshold.
    words: [u64; MAX_THRESHOLDS],
    /// Held at `held_level` until this time (ms), 0 when not held.
    held_until: u64,
    /// Distinct counting: value hashes of the previous and current windows.
    distinct: Option<Box<Distinct>>,
    held_level: u8,
    /// Used since the CLOCK hand last passed (the store's eviction).
    used: bool,
}

impl State {
    fn window(&self) -> u64 {
        self.words[0]
    }
    fn prev(&self) -> u32 {
        self.words[1] as u32
    }
    fn cur(&self) -> u32 {
        (self.words[1] >> 32) as u32
    }
    fn set_counts(&mut self, prev: u32, cur: u32) {
        self.words[1] = u64::from(prev) | u64::from(cur) << 32;
    }
}

#[derive(Debug, Clone, Default)]
struct Distinct {
    prev: Vec<u32>,
    cur: Vec<u32>,
}

impl Counting {
    /// Records one hit at `now` (ms) for a key in `state` and compares with the
    /// thresholds. `value`: for distinct counting, the hash of the counted value.
    fn hit(&self, st: &mut State, now: u64, value: u32) -> Outcome {
        let held = (st.held_until > now).then_some(st.held_level as usize);
        let (count, exceeded) = match (self.algorithm, self.distinct) {
            (_, true) => self.distinct_hit(st, now, value),
            (Algorithm::SlidingWindow, false) => self.window_hit(st, now),
            (Algorithm::Gcra, false) => self.gcra_hit(st, now),
        };
        // Exceeding a level that holds starts a hold, unless one at that level or
        // above runs already (a hold is not extended by the hits it refuses).
        if let Some(l) = exceeded {
            let hold = self.hold_ms.get(l).copied().unwrap_or(0);
            if hold > 0 && held.is_none_or(|h| l > h) {
                st.held_until = now.saturating_add(hold);
                st.held_level = l as u8;
            }
        }
        let held_now = (st.held_until > now).then_some(st.held_level as usize);
        Outcome {
            count,
            level: exceeded.max(held_now),
            held_for: held_now.map(|_| st.held_until - now),
        }
    }

    /// The key's count and level at `now`, without adding to it (a limit that counts
    /// responses, asked on the request).
    fn peek(&self, st: &mut State, now: u64) -> Outcome {
        let count = match (self.algorithm, self.distinct) {
            (_, true) => {
                let weight = self.roll(st, now);
                st.distinct.as_ref().map_or(0.0, |d| {
                    let older = d.prev.iter().filter(|v| !d.cur.contains(v)).count();
                    d.cur.len() as f64 + older as f64 * weight
                })
            }
            (Algorithm::SlidingWindow, false) => {
                let weight = self.roll(st, now);
                f64::from(st.prev()) * weight + f64::from(st.cur())
            }
            (Algorithm::Gcra, false) => {
                let now_us = now.saturating_mul(1000);
                let limit = u64::from(self.thresholds.first().copied().unwrap_or(1).max(1));
                let t = (self.window_ms.saturating_mul(1000) / limit).max(1);
                st.words[0].saturating_sub(now_us) as f64 / t as f64
            }
        };
        let held = (st.held_until > now).then_some(st.held_level as usize);
        Outcome {
            count,
            level: self.level_of(count).max(held),
            held_for: held.map(|_| st.held_until - now),
        }
    }

    fn level_of(&self, count: f64) -> Option<usize> {
        self.thresholds.iter().rposition(|&t| count > f64::from(t))
    }

    /// Rolls the fixed windows forward to the one holding `now`; returns the weight of
    /// the previous window.
    fn roll(&self, st: &mut State, now: u64) -> f64 {
        let w = self.window_ms.max(1);
        let index = now / w;
        // A fresh state has window 0, prev 0, cur 0: nothing to roll over.
        if index != st.window() {
            let next = index == st.window() + 1;
            let prev = if next { st.cur() } else { 0 };
            st.set_counts(prev, 0);
            if let Some(d) = &mut st.distinct {
                if next {
                    d.prev = std::mem::take(&mut d.cur);
                } else {
                    d.prev.clear();
                    d.cur.clear();
                }
            }
            st.words[0] = index;
        }
        let elapsed = (now % w) as f64 / w as f64;
        1.0 - elapsed
    }

    fn window_hit(&self, st: &mut State, now: u64) -> (f64, Option<usize>) {
        let weight = self.roll(st, now);
        let (prev, cur) = (st.prev(), st.cur().saturating_add(1));
        st.set_counts(prev, cur);
        let count = f64::from(prev) * weight + f64::from(cur);
        (count, self.level_of(count))
    }

    fn distinct_hit(&self, st: &mut State, now: u64, value: u32) -> (f64, Option<usize>) {
        let cap = self.thresholds.last().map_or(0, |&t| t as usize + 1);
        let weight = self.roll(st, now);
        let d = st.distinct.get_or_insert_with(Default::default);
        if !d.cur.contains(&value) && d.cur.len() < cap {
            d.cur.push(value);
        }
        let older = d.prev.iter().filter(|v| !d.cur.contains(v)).count();
        let count = d.cur.len() as f64 + older as f64 * weight;
        (count, self.level_of(count))
    }

    fn gcra_hit(&self, st: &mut State, now: u64) -> (f64, Option<usize>) {
        // In microseconds, so that 1,000 per second keeps its precision.
        let now_us = now.saturating_mul(1000);
        let mut level = None;
        let mut count = 0.0;
        for (i, &limit) in self.thresholds.iter().enumerate().take(MAX_THRESHOLDS) {
            let limit = u64::from(limit.max(1));
            // Emission interval; `limit` requests may come at once (the burst).
            let t = (self.window_ms.saturating_mul(1000) / limit).max(1);
            let tau = t.saturating_mul(limit);
            let next = st.words[i].max(now_us).saturating_add(t);
            if next - now_us > tau {
                // Not conforming: over this threshold. The arrival time does not move
                // for a refused request.
                level = Some(i);
            } else {
                st.words[i] = next;
            }
            // Requests in the window as the arrival time says, this one included.
            if i == 0 || level == Some(i) {
                count = (next - now_us) as f64 / t as f64;
            }
        }
        (count, level)
    }
}

/// The Lua script that performs one check in Redis with the same arithmetic as
/// [`Counting`] (sliding window or GCRA, thresholds, holds, distinct values), on the
/// Redis server's clock so that every edge agrees. Run it with `EVALSHA`/`EVAL`, one key,
/// and the arguments of [`Counting::redis_args`]; read its reply with [`redis_outcome`].
pub const REDIS_SCRIPT: &str = include_str!("ratelimit/check.lua");

impl Counting {
    /// The script's `ARGV` for one check: count or only read, and for distinct counting
    /// the hash of the value ([`stable_hash`], so that every edge writes the same).
    pub fn redis_args(&self, count: bool, value: Option<u64>) -> Vec<Vec<u8>> {
        let n = self.thresholds.len().min(MAX_THRESHOLDS);
        let mut out = Vec::with_capacity(5 + 2 * n);
        out.push(if count { b"1".to_vec() } else { b"0".to_vec() });
        out.push(match self.algorithm {
            Algorithm::SlidingWindow => b"0".to_vec(),
            Algorithm::Gcra => b"1".to_vec(),
        });
        out.push(self.window_ms.max(1).to_string().into_bytes());
        out.push(match (self.distinct, value) {
            (true, Some(h)) => format!("{h:016x}").into_bytes(),
            _ => Vec::new(),
        });
        out.push(n.to_string().into_bytes());
        for t in self.thresholds.iter().take(n) {
            out.push(t.to_string().into_bytes());
        }
        for i in 0..n {
            out.push(
                self.hold_ms
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .to_string()
                    .into_bytes(),
            );
        }
        out
    }
}

/// The script's reply (`{count × 1000, level, held for, level held before}`) as an
/// [`Outcome`]; `None` for a reply of another shape.
pub fn redis_outcome(reply: &[i64]) -> Option<Outcome> {
    let (&count, &level, &held) = (reply.first()?, reply.get(1)?, reply.get(2)?);
    if reply.len() > 4 {
        return None;
    }
    Some(Outcome {
        count: count as f64 / 1000.0,
        level: usize::try_from(level).ok(),
        held_for: u64::try_from(held).ok(),
    })
}

impl Counting {
    /// Whether several hits of one key can be counted by one script call (a sliding
    /// window counting requests: the hits add up; GCRA and distinct values decide per
    /// hit).
    pub fn coalescable(&self) -> bool {
        self.algorithm == Algorithm::SlidingWindow && !self.distinct
    }

    /// The outcome of each of `hits` hits counted by one script call (`reply` to
    /// arguments whose first is `hits`): the i-th saw the count `final − (hits − 1 − i)`,
    /// and any level held before the call.
    pub fn redis_outcomes(&self, reply: &[i64], hits: usize) -> Option<Vec<Outcome>> {
        let last = redis_outcome(reply)?;
        if hits <= 1 {
            return Some(vec![last]);
        }
        let held_before = reply.get(3).and_then(|&h| usize::try_from(h).ok());
        Some(
            (0..hits)
                .map(|i| {
                    let count = last.count - (hits - 1 - i) as f64;
                    let level = self.level_of(count).max(held_before);
                    Outcome {
                        count,
                        level,
                        held_for: last
                            .held_for
                            .filter(|_| level.is_some() && level >= last.level),
                    }
                })
                .collect(),
        )
    }
}

/// A 64-bit FNV-1a hash: the same on every edge and every build, for values shared
/// through Redis (distinct counting, shortened keys).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    stable_hash_more(STABLE_HASH_SEED, bytes)
}

/// The starting state of [`stable_hash`] (FNV-1a's offset basis).
pub const STABLE_HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues [`stable_hash`] from state `h` over more bytes (a hash of several parts
/// without joining them).
pub fn stable_hash_more(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Shards of a store: a request locks one.
const SHARDS: usize = 64;

/// The in-process state of one limit.
pub struct LocalStore {
    shards: Box<[Mutex<Table>]>,
    hasher: RandomState,
    counting: Counting,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("shards", &self.shards.len())
            .field("counting", &self.counting)
            .finish()
    }
}

/// A key and its state: one cache line.
#[derive(Debug, Clone, Default)]
#[repr(align(64))]
struct Slot {
    /// The key's digest; 0 marks an empty slot.
    key: u64,
    state: State,
}

/// One shard: an open-addressed table (linear probing) that grows by doubling up to
/// twice its key cap, so that at most half of it is in use; at the cap, the CLOCK hand
/// evicts a key to make room.
#[derive(Debug)]
struct Table {
    slots: Vec<Slot>,
    len: usize,
    cap: usize,
    hand: usize,
    evictions: u64,
}

impl LocalStore {
    /// A store for `counting` that holds at most about `capacity` keys.
    pub fn new(counting: Counting, capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(8);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Table {
                    slots: vec![Slot::default(); 16],
                    len: 0,
                    cap: per_shard,
                    hand: 0,
                    evictions: 0,
                })
            })
            .collect();
        LocalStore {
            shards,
            hasher: RandomState::new(),
            counting,
        }
    }

    /// The limit's arithmetic.
    pub fn counting(&self) -> &Counting {
        &self.counting
    }

    fn digest(&self, key: &[u8]) -> u64 {
        // 0 marks an empty slot.
        self.hasher.hash_one(key).max(1)
    }

    /// Records a hit for `key` at `now` (ms); `value` is the counted value for distinct
    /// counting (ignored otherwise).
    pub fn hit(&self, key: &[u8], value: &[u8], now: u64) -> Outcome {
        let h = self.digest(key);
        let v = if self.counting.distinct {
            self.hasher.hash_one(value) as u32
        } else {
            0
        };
        // A poisoned lock only means another thread panicked mid-update of plain
        // counters: the state is still usable.
        let mut t = self.shards[(h >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (i, fresh) = t.slot(h);
        let st = &mut t.slots[i].state;
        // A key's first hit does not mark it used: keys seen once (scanners, spoofed
        // values) are the first evicted, before keys seen again.
        st.used |= !fresh;
        self.counting.hit(st, now, v)
    }

    /// The count and level of `key` at `now`, without adding to it.
    pub fn peek(&self, key: &[u8], now: u64) -> Outcome {
        let h = self.digest(key);
        let mut t = self.shards[(h >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match t.find(h) {
            Ok(i) => self.counting.peek(&mut t.slots[i].state, now),
            Err(_) => self.counting.peek(&mut State::default(), now),
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len)
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys evicted to make room, since the start.
    pub fn evictions(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).evictions)
            .sum()
    }

    /// Bytes the store's tables take (for the memory benchmark).
    pub fn table_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock().unwrap_or_else(|p| p.into_inner()).slots.capacity()
                    * std::mem::size_of::<Slot>()
            })
            .sum()
    }
}

impl Table {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot of `key` (`Ok`), or the empty slot where it would go (`Err`).
    fn find(&self, key: u64) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = key as usize & mask;
        loop {
            match self.slots[i].key {
                k if k == key => return Ok(i),
                0 => return Err(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The slot of `key`, made (growing the table, or evicting a key at the cap) if
    /// absent; whether it was.
    fn slot(&mut self, key: u64) -> (usize, bool) {
        let empty = match self.find(key) {
            Ok(i) => return (i, false),
            Err(i) => i,
        };
        let empty = if self.len >= self.cap {
            self.evict();
            // Removal shifts keys: look again.
            match self.find(key) {
                Ok(i) | Err(i) => i,
            }
        } else if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
            match self.find(key) {
                Ok(i) | Err(i) => i,
            }
        } else {
            empty
        };
        self.slots[empty] = Slot {
            key,
            state: State::default(),
        };
        self.len += 1;
        (empty, true)
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        for s in old.into_iter().filter(|s| s.key != 0) {
            if let Err(i) = self.find(s.key) {
                self.slots[i] = s;
            }
        }
        self.hand = 0;
    }

    /// CLOCK: passes over used keys, clearing their bit, and removes the first one not
    /// used since the hand last passed.
    fn evict(&mut self) {
        let mask = self.mask();
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) & mask;
            let s = &mut self.slots[i];
            if s.key == 0 {
                continue;
            }
            if s.state.used {
                s.state.used = false;
                continue;
            }
            self.remove(i);
            self.evictions += 1;
            return;
        }
    }

    /// Removes the key at `i`, shifting back the keys after it that probed past it.
    fn remove(&mut self, mut i: usize) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j].key;
            if k == 0 {
                break;
            }
            let home = k as usize & mask;
            // The key at j may move to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = std::mem::take(&mut self.slots[j]);
                i = j;
            }
        }
        self.slots[i] = Slot::default();
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests;
