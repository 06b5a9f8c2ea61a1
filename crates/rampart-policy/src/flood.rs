//! Automatic L7 flood mitigation, the arithmetic: a site's baseline, detection of a
//! departure from it, and the search for the most specific signatures that explain the
//! excess without touching the baseline. Pure: the edge feeds samples and per-second
//! counts, and runs the rules this module proposes.
//!
//! - **Features** of a request ([`Feature`]): path, method, TLS fingerprint, HTTP
//!   fingerprint, `User-Agent`, ASN, country, and the client's /16 and /24 (IPv6 /32 and
//!   /48), each kept as a 64-bit hash ([`Features`]).
//! - **Baseline**: a ring of request samples taken in normal times (recent traffic,
//!   frozen during an attack), and an exponentially weighted mean of the request rate.
//! - **Detection** ([`Detector`]): the rate over the last seconds above `factor` times the
//!   baseline and at least `min_excess` requests a second more, for `confirm` seconds. The
//!   attack ends after `quiet` seconds back under the threshold.
//! - **Signatures** ([`search`]): conjunctions of one to three feature values, taken from
//!   the values frequent in the current traffic. For each, its *coverage* (share of current
//!   samples it matches) and its *baseline share* (share of baseline samples it matches) are
//!   counted with bitsets. Greedily, the signature that covers the most of the traffic not
//!   yet covered is chosen among those whose baseline share is at most `bound` — and among
//!   those covering nearly as much (90 %), the most specific (more features, then the lower
//!   baseline share) — until the excess is explained or nothing qualifies.

use std::collections::HashMap;

/// A request feature that signatures combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// Request path (without query).
    Path,
    /// Method.
    Method,
    /// JA4.
    TlsFingerprint,
    /// HTTP/2 fingerprint or HTTP/1 header shape.
    HttpFingerprint,
    /// `User-Agent`.
    UserAgent,
    /// Autonomous system.
    Asn,
    /// Country.
    Country,
    /// IPv4 /16, IPv6 /32.
    Net16,
    /// IPv4 /24, IPv6 /48.
    Net24,
}

/// Every feature, in the order of [`Features`].
pub const FEATURES: [Feature; 9] = [
    Feature::Path,
    Feature::Method,
    Feature::TlsFingerprint,
    Feature::HttpFingerprint,
    Feature::UserAgent,
    Feature::Asn,
    Feature::Country,
    Feature::Net16,
    Feature::Net24,
];

impl Feature {
    /// The expression field it corresponds to (for operators reading a signature).
    pub fn field(self) -> &'static str {
        match self {
            Feature::Path => "http.request.uri.path",
            Feature::Method => "http.request.method",
            Feature::TlsFingerprint => "tls.fingerprint",
            Feature::HttpFingerprint => "http.fingerprint",
            Feature::UserAgent => "http.user_agent",
            Feature::Asn => "ip.src.asn",
            Feature::Country => "ip.src.country",
            Feature::Net16 => "cidr(ip.src, 16, 32)",
            Feature::Net24 => "cidr(ip.src, 24, 48)",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The hashed feature values of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features(pub [u64; 9]);

/// FNV-1a of a value (0 is kept for "absent").
pub fn hash(b: &[u8]) -> u64 {
    crate::ratelimit::stable_hash(b).max(1)
}

impl Features {
    /// The value of feature `f`.
    pub fn get(&self, f: Feature) -> u64 {
        self.0[f.index()]
    }
}

/// One term of a signature: feature `f` has the value whose hash is `h`.
pub type Item = (Feature, u64);

/// A conjunction of feature values.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Its terms, in feature order.
    pub items: Vec<Item>,
    /// Share of the current traffic sample it matched when chosen.
    pub coverage: f64,
    /// Share of the baseline sample it matches.
    pub baseline_share: f64,
}

impl Signature {
    /// Whether a request's features match every term.
    pub fn matches(&self, f: &Features) -> bool {
        self.items.iter().all(|(k, h)| f.get(*k) == *h)
    }
}

/// A ring of samples.
#[derive(Debug, Clone)]
pub struct Ring {
    items: Vec<Features>,
    next: usize,
    cap: usize,
}

impl Ring {
    /// A ring of at most `cap` samples.
    pub fn new(cap: usize) -> Ring {
        Ring {
            items: Vec::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    /// Adds a sample, replacing the oldest when full.
    pub fn push(&mut self, f: Features) {
        if self.items.len() < self.cap {
            self.items.push(f);
        } else {
            self.items[self.next] = f;
        }
        self.next = (self.next + 1) % self.cap;
    }

    /// The samples (in no particular order).
    pub fn samples(&self) -> &[Features] {
        &self.items
    }

    /// How many samples it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.items.clear();
        self.next = 0;
    }
}

/// Detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectSettings {
    /// The rate must exceed the baseline this many times…
    pub factor: f64,
    /// …and by at least this many requests a second.
    pub min_excess: f64,
    /// Seconds above the threshold before an attack is declared.
    pub confirm: u32,
    /// Seconds back under the threshold before it is over.
    pub quiet: u32,
    /// Seconds of traffic before the baseline is trusted.
    pub learn: u32,
    /// Weight of each new second in the baseline rate (exponential mean).
    pub alpha: f64,
    /// A rate above this many times the baseline (and the minimum excess) for `confirm`
    /// seconds is *suspect*: the edge then looks at the traffic's distribution, and
    /// declares an attack when signatures absent from the baseline explain the excess.
    pub suspect_factor: f64,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            factor: 3.0,
            min_excess: 20.0,
            confirm: 2,
            quiet: 30,
            learn: 30,
            alpha: 1.0 / 300.0,
            suspect_factor: 1.5,
        }
    }
}

/// What one second changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// Nothing.
    None,
    /// An attack started: current rate and baseline (requests a second).
    Started {
        /// The recent rate.
        rate: f64,
        /// The baseline.
        baseline: f64,
    },
    /// The rate is suspect (see [`DetectSettings::suspect_factor`]): current rate and
    /// baseline. Reported every second it stays so.
    Suspect {
        /// The recent rate.
        rate: f64,
        /// The baseline.
        baseline: f64,
    },
    /// The attack ended.
    Ended,
}

/// The per-site rate baseline and attack state.
#[derive(Debug, Clone)]
pub struct Detector {
    s: DetectSettings,
    /// Exponential mean of requests a second in normal times.
    baseline: f64,
    /// Seconds observed in normal times.
    learned: u32,
    /// The last few seconds' counts.
    recent: [f64; 3],
    above: u32,
    suspect: u32,
    below: u32,
    attack: bool,
}

impl Detector {
    /// A detector with `s`.
    pub fn new(s: DetectSettings) -> Detector {
        Detector {
            s,
            baseline: 0.0,
            learned: 0,
            recent: [0.0; 3],
            above: 0,
            suspect: 0,
            below: 0,
            attack: false,
        }
    }

    /// Changes the settings, keeping what was learned.
    pub fn set_settings(&mut self, s: DetectSettings) {
        self.s = s;
    }

    /// The baseline rate.
    pub fn baseline(&self) -> f64 {
        self.baseline
    }

    /// The rate over the last three seconds.
    pub fn rate(&self) -> f64 {
        self.recent.iter().sum::<f64>() / 3.0
    }

    /// Whether an attack is on.
    pub fn under_attack(&self) -> bool {
        self.attack
    }

    /// Whether the baseline has been learned.
    pub fn learned(&self) -> bool {
        self.learned >= self.s.learn
    }

    /// The share of current traffic above the baseline (0 when none).
    pub fn excess(&self) -> f64 {
        let r = self.rate();
        if r <= 0.0 {
            0.0
        } else {
            (1.0 - self.baseline / r).clamp(0.0, 1.0)
        }
    }

    fn threshold(&self) -> f64 {
        (self.baseline * self.s.factor).max(self.baseline + self.s.min_excess)
    }

    fn suspect_threshold(&self) -> f64 {
        (self.baseline * self.s.suspect_factor).max(self.baseline + self.s.min_excess)
    }

    /// Declares an attack (the edge found the distribution shifted while suspect).
    pub fn declare(&mut self) {
        self.attack = true;
        self.below = 0;
        self.suspect = 0;
    }

    /// Feeds the count of one second.
    pub fn second(&mut self, count: f64) -> Transition {
        self.recent.rotate_left(1);
        self.recent[2] = count;
        let rate = self.rate();
        if !self.attack {
            let over = self.learned() && rate > self.threshold();
            if over {
                self.above += 1;
                if self.above >= self.s.confirm {
                    self.attack = true;
                    self.below = 0;
                    return Transition::Started {
                        rate,
                        baseline: self.baseline,
                    };
                }
            } else if self.learned() && rate > self.suspect_threshold() {
                self.above = 0;
                self.suspect += 1;
                if self.suspect >= self.s.confirm {
                    return Transition::Suspect {
                        rate,
                        baseline: self.baseline,
                    };
                }
            } else {
                self.above = 0;
                self.suspect = 0;
                // Learn from normal seconds only (a first second sets the mean).
                if self.learned == 0 {
                    self.baseline = count;
                } else {
                    let a = self.s.alpha.max(1.0 / f64::from(self.learned + 1));
                    self.baseline += a * (count - self.baseline);
                }
                self.learned = self.learned.saturating_add(1);
            }
            Transition::None
        } else {
            if rate > self.threshold() {
                self.below = 0;
            } else {
                self.below += 1;
                if self.below >= self.s.quiet {
                    self.attack = false;
                    self.above = 0;
                    return Transition::Ended;
                }
            }
            Transition::None
        }
    }
}

/// Search settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSettings {
    /// Largest baseline share a signature may match (0.001 = 0.1 %).
    pub bound: f64,
    /// Smallest share of current traffic a feature value needs to be considered.
    pub min_support: f64,
    /// Smallest share of current traffic a chosen signature must cover.
    pub min_cover: f64,
    /// Most signatures proposed at once.
    pub max_signatures: usize,
    /// Feature values considered (the most frequent).
    pub max_items: usize,
    /// Every signature must name a client absent from the baseline (its fingerprints,
    /// user agent, ASN, country or networks alone hit at most `bound` of it), not only a
    /// new page: used when the rate is merely suspect, so that the usual clients flocking
    /// to a new page are not taken for an attack.
    pub client_feature: bool,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            bound: 0.001,
            min_support: 0.05,
            min_cover: 0.05,
            max_signatures: 4,
            max_items: 16,
            client_feature: false,
        }
    }
}

/// The baseline samples needed before rules may be proposed: `1 / bound` (1,000 for
/// 0.1 %), at least 200.
pub fn min_baseline(bound: f64) -> usize {
    if bound <= 0.0 {
        return BASELINE_CAP;
    }
    ((1.0 / bound).ceil() as usize).clamp(200, BASELINE_CAP)
}

/// Largest baseline the edge keeps (samples).
pub const BASELINE_CAP: usize = 8192;

/// A bitset over samples.
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn of(samples: &[Features], item: Item) -> Bits {
        let mut b = vec![0u64; samples.len().div_ceil(64)];
        for (i, s) in samples.iter().enumerate() {
            if s.get(item.0) == item.1 {
                b[i / 64] |= 1 << (i % 64);
            }
        }
        Bits(b)
    }
    fn and(&self, o: &Bits) -> Bits {
        Bits(self.0.iter().zip(&o.0).map(|(a, b)| a & b).collect())
    }
    fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
    fn and_not_count(&self, o: &Bits) -> u32 {
        self.0
            .iter()
            .zip(&o.0)
            .map(|(a, b)| (a & !b).count_ones())
            .sum()
    }
    fn or_assign(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
}

struct Candidate {
    items: Vec<Item>,
    current: Bits,
    base_share: f64,
    /// Baseline share of its client features alone (1 without any).
    client_share: f64,
}

/// The signatures that explain `excess` (a share of the current traffic) in `current`
/// without matching more than `bound` of `baseline` (see the module docs). Empty when the
/// samples are too few to tell: under 100 current samples, or fewer baseline samples than
/// [`min_baseline`] (a share of at most `bound` cannot be measured on fewer).
pub fn search(
    current: &[Features],
    baseline: &[Features],
    excess: f64,
    s: &SearchSettings,
) -> Vec<Signature> {
    if current.len() < 100 || baseline.len() < min_baseline(s.bound) {
        return Vec::new();
    }
    let n = current.len() as f64;
    let nb = baseline.len() as f64;
    // Frequent values per feature in the current traffic.
    let mut items: Vec<(Item, u32)> = Vec::new();
    for f in FEATURES {
        let mut counts: HashMap<u64, u32> = HashMap::new();
        for x in current {
            let v = x.get(f);
            if v != 0 {
                *counts.entry(v).or_default() += 1;
            }
        }
        for (v, c) in counts {
            if f64::from(c) >= s.min_support * n {
                items.push(((f, v), c));
            }
        }
    }
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    items.truncate(s.max_items);
    let cur: Vec<Bits> = items.iter().map(|(i, _)| Bits::of(current, *i)).collect();
    let base: Vec<Bits> = items.iter().map(|(i, _)| Bits::of(baseline, *i)).collect();
    // Conjunctions of one to three values of different features.
    let mut cands: Vec<Candidate> = Vec::new();
    let k = items.len();
    let mut push = |idx: &[usize]| {
        let feats: Vec<Feature> = idx.iter().map(|&i| items[i].0.0).collect();
        if (1..feats.len()).any(|j| feats[..j].contains(&feats[j])) {
            return;
        }
        let mut c = cur[idx[0]].clone();
        let mut b = base[idx[0]].clone();
        for &i in &idx[1..] {
            c = c.and(&cur[i]);
            b = b.and(&base[i]);
        }
        if f64::from(c.count()) < s.min_cover * n {
            return;
        }
        // The client part alone (fingerprints, user agent, ASN, country, networks).
        let client: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| !matches!(items[i].0.0, Feature::Path | Feature::Method))
            .collect();
        let client_share = match client.split_first() {
            None => 1.0,
            Some((&first, rest)) => {
                let mut cb = base[first].clone();
                for &i in rest {
                    cb = cb.and(&base[i]);
                }
                f64::from(cb.count()) / nb
            }
        };
        let mut its: Vec<Item> = idx.iter().map(|&i| items[i].0).collect();
        its.sort();
        cands.push(Candidate {
            items: its,
            current: c,
            base_share: f64::from(b.count()) / nb,
            client_share,
        });
    };
    for a in 0..k {
        push(&[a]);
        for b in a + 1..k {
            push(&[a, b]);
            for c in b + 1..k {
                push(&[a, b, c]);
            }
        }
    }
    cands.retain(|c| c.base_share <= s.bound && (!s.client_feature || c.client_share <= s.bound));
    // Greedy cover.
    let mut covered = Bits(vec![0; current.len().div_ceil(64)]);
    let mut chosen: Vec<Signature> = Vec::new();
    while chosen.len() < s.max_signatures {
        let gain = |c: &Candidate| c.current.and_not_count(&covered);
        let Some(best) = cands.iter().map(gain).max() else {
            break;
        };
        if f64::from(best) < s.min_cover * n {
            break;
        }
        let floor = f64::from(best) * 0.9;
        let Some(pick) = cands
            .iter()
            .filter(|c| f64::from(gain(c)) >= floor)
            .min_by(|a, b| {
                b.items
                    .len()
                    .cmp(&a.items.len())
                    .then(a.base_share.total_cmp(&b.base_share))
                    .then(gain(b).cmp(&gain(a)))
                    .then(a.items.cmp(&b.items))
            })
        else {
            break;
        };
        chosen.push(Signature {
            items: pick.items.clone(),
            coverage: f64::from(pick.current.count()) / n,
            baseline_share: pick.base_share,
        });
        let bits = pick.current.clone();
        covered.or_assign(&bits);
        if f64::from(covered.count()) >= excess * n * 0.95 {
            break;
        }
    }
    chosen
}

#[cfg(test)]
mod tests;
