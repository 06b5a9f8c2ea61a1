//! Finding many literals in short values, ASCII case-insensitively, for the prefilter.
//!
//! The prefilter looks for thousands of literals (CRS at paranoia level 1: about 7,200)
//! in every request value, and nearly all values hold none of them — or a handful. An
//! Aho-Corasick automaton small enough to keep (a contiguous NFA; a DFA of these
//! literals takes tens of megabytes) spends fifty to sixty instructions per byte there,
//! walking failure links through its sparse states. This finder instead keeps the last
//! eight bytes read (lower-cased) in a word and, at each position, probes three small
//! bit sets (20 KiB in all, cache-resident) for a literal that could start two, four or
//! eight bytes back; only at the rare positions that pass does it look the candidates
//! up and compare them.
//!
//! Literals are grouped by length. *Short* ones (two or three bytes) are keyed by their
//! first two bytes, an exact 64 Kibit set of byte pairs. *Middle* ones (four to seven
//! bytes) are keyed by their first four bytes and *long* ones (eight or more — most of
//! CRS's) by their first eight, each hashed into a bit set; then an open-addressing map
//! from the exact key gives the literals that start with it, compared from there on.
//! Keying long literals on eight bytes matters: four-byte prefixes such as `arra` or
//! `item` start many literals and occur in ordinary text, eight-byte ones rarely do.
//! Every occurrence of every literal is reported, like an overlapping Aho-Corasick
//! search (in order of position, not of end).
//!
//! Case is folded for ASCII letters only (as `aho_corasick`'s `ascii_case_insensitive`
//! does); other bytes compare exactly. One-byte literals are not supported (the
//! prefilter handles them through the set of bytes a value holds).

/// ASCII lower-casing as a table (one load per byte).
const LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).to_ascii_lowercase();
        i += 1;
    }
    t
};

/// Bits of the hashed sets of middle and long keys: CRS's thousand and five thousand
/// keys fill under one bit in twelve.
const MIDDLE_BITS: u32 = 14;
const LONG_BITS: u32 = 16;

/// Fibonacci hashing of a key into `bits` bits.
fn hash(key: u64, bits: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

fn put(set: &mut [u64], i: usize) {
    if let Some(w) = set.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// An open-addressing map from a key (up to eight lower-cased bytes, packed first byte
/// highest) to a range of [`Literals::entries`].
#[derive(Debug, Default)]
struct Map {
    keys: Vec<u64>,
    /// Per slot: the range of entries (empty: a free slot).
    ranges: Vec<(u32, u32)>,
    bits: u32,
}

impl Map {
    /// A map of `entries` (key, range), with keys distinct.
    fn new(entries: &[(u64, (u32, u32))]) -> Map {
        let mut bits = 4;
        while (1usize << bits) < entries.len() * 2 {
            bits += 1;
        }
        let size = 1usize << bits;
        let mut map = Map {
            keys: vec![0; size],
            ranges: vec![(0, 0); size],
            bits,
        };
        for &(key, range) in entries {
            let mut i = hash(key, bits);
            while map.ranges[i].0 != map.ranges[i].1 {
                i = (i + 1) & (size - 1);
            }
            map.keys[i] = key;
            map.ranges[i] = range;
        }
        map
    }

    fn get(&self, key: u64) -> Option<(u32, u32)> {
        if self.keys.is_empty() {
            return None;
        }
        let mask = self.keys.len() - 1;
        let mut i = hash(key, self.bits);
        loop {
            let range = self.ranges[i];
            if range.0 == range.1 {
                return None;
            }
            if self.keys[i] == key {
                return Some(range);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A set of literals (two bytes or longer) to find in values; see the module's
/// documentation.
#[derive(Debug, Default)]
pub(crate) struct Literals {
    /// Every literal, lower-cased, one after another: literal `id` is
    /// `bytes[spans[id].0..spans[id].1]`.
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// The first two bytes of short literals, exactly (`None`: there are none).
    short: Option<Box<[u64; 1 << 10]>>,
    /// The first four bytes of middle literals, hashed.
    middle: Option<Box<[u64; 1 << (MIDDLE_BITS - 6)]>>,
    /// The first eight bytes of long literals, hashed.
    long: Option<Box<[u64; 1 << (LONG_BITS - 6)]>>,
    short_map: Map,
    middle_map: Map,
    long_map: Map,
    /// The literals, grouped by key (the maps' ranges index this).
    entries: Vec<Entry>,
}

/// A literal under its key.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u32,
    /// Its length.
    len: u32,
    /// The bytes that follow its key, as far as it has them and up to four (lower-cased,
    /// packed first byte highest), and the mask of those it has: most candidates fail
    /// on these.
    next: u32,
    mask: u32,
}

/// Up to eight bytes, lower-cased, packed as the scan's rolling word packs them.
fn key(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |w, &b| (w << 8) | u64::from(LOWER[usize::from(b)]))
}

/// Up to four bytes of `bytes` from `from` on, lower-cased and packed first byte highest
/// (missing ones zero), and the mask of those it has.
fn next_four(bytes: &[u8], from: usize) -> (u32, u32) {
    let (mut next, mut mask) = (0u32, 0u32);
    for i in from..from + 4 {
        next <<= 8;
        mask <<= 8;
        if let Some(&b) = bytes.get(i) {
            next |= u32::from(LOWER[usize::from(b)]);
            mask |= 0xFF;
        }
    }
    (next, mask)
}

/// The length of a class's key.
const KEY_LEN: [usize; 3] = [2, 4, 8];

impl Literals {
    /// The finder for `literals` (ids are their indices). Literals shorter than two
    /// bytes are never found.
    pub(crate) fn new(literals: &[Vec<u8>]) -> Literals {
        let mut lits = Literals::default();
        // (class, key, id), sorted to group the ids of each key.
        let mut keyed: Vec<(usize, u64, u32)> = Vec::new();
        for (id, lit) in literals.iter().enumerate() {
            let start = lits.bytes.len() as u32;
            lits.bytes
                .extend(lit.iter().map(|&b| LOWER[usize::from(b)]));
            lits.spans.push((start, lits.bytes.len() as u32));
            let class = match lit.len() {
                0 | 1 => continue,
                2 | 3 => 0,
                4..=7 => 1,
                _ => 2,
            };
            keyed.push((class, key(&lit[..KEY_LEN[class]]), id as u32));
        }
        keyed.sort_unstable();
        let mut groups: [Vec<(u64, (u32, u32))>; 3] = Default::default();
        let mut i = 0;
        while i < keyed.len() {
            let (class, k, _) = keyed[i];
            let from = lits.entries.len() as u32;
            while i < keyed.len() && keyed[i].0 == class && keyed[i].1 == k {
                let id = keyed[i].2;
                let lit = literals.get(id as usize).map_or(&[][..], Vec::as_slice);
                let (next, mask) = next_four(lit, KEY_LEN[class]);
                lits.entries.push(Entry {
                    id,
                    len: lit.len() as u32,
                    next,
                    mask,
                });
                i += 1;
            }
            groups[class].push((k, (from, lits.entries.len() as u32)));
        }
        if !groups[0].is_empty() {
            let mut set = Box::new([0; 1 << 10]);
            for &(k, _) in &groups[0] {
                put(&mut set[..], k as usize);
            }
            lits.short = Some(set);
        }
        if !groups[1].is_empty() {
            let mut set = Box::new([0; 1 << (MIDDLE_BITS - 6)]);
            for &(k, _) in &groups[1] {
                put(&mut set[..], hash(k, MIDDLE_BITS));
            }
            lits.middle = Some(set);
        }
        if !groups[2].is_empty() {
            let mut set = Box::new([0; 1 << (LONG_BITS - 6)]);
            for &(k, _) in &groups[2] {
                put(&mut set[..], hash(k, LONG_BITS));
            }
            lits.long = Some(set);
        }
        lits.short_map = Map::new(&groups[0]);
        lits.middle_map = Map::new(&groups[1]);
        lits.long_map = Map::new(&groups[2]);
        lits
    }

    /// Whether there is any literal to find.
    pub(crate) fn is_empty(&self) -> bool {
        self.short.is_none() && self.middle.is_none() && self.long.is_none()
    }

    /// Calls `found` with the id of every occurrence of a literal in `text` (a literal
    /// found at several positions is reported at each).
    pub(crate) fn find(&self, text: &[u8], mut found: impl FnMut(u32)) {
        let (short, middle, long) = (
            self.short.as_deref(),
            self.middle.as_deref(),
            self.long.as_deref(),
        );
        // `w`: the last eight bytes read, lower-cased, the one at `j` lowest.
        let mut w: u64 = 0;
        for (j, &b) in text.iter().enumerate() {
            w = (w << 8) | u64::from(LOWER[usize::from(b)]);
            if let Some(set) = short {
                let k = (w & 0xFFFF) as usize;
                if j >= 1 && set[k / 64] & (1 << (k % 64)) != 0 {
                    self.verify(&self.short_map, w & 0xFFFF, text, j - 1, 2, &mut found);
                }
            }
            if let Some(set) = middle {
                let k = w & 0xFFFF_FFFF;
                let h = hash(k, MIDDLE_BITS);
                if j >= 3 && set[h / 64] & (1 << (h % 64)) != 0 {
                    self.verify(&self.middle_map, k, text, j - 3, 4, &mut found);
                }
            }
            if let Some(set) = long {
                let h = hash(w, LONG_BITS);
                if j >= 7 && set[h / 64] & (1 << (h % 64)) != 0 {
                    self.verify(&self.long_map, w, text, j - 7, 8, &mut found);
                }
            }
        }
    }

    /// The literals whose first `key_len` bytes are `key` (found at `start`), compared
    /// with `text` from there on.
    #[inline(never)]
    fn verify(
        &self,
        map: &Map,
        key: u64,
        text: &[u8],
        start: usize,
        key_len: usize,
        found: &mut impl FnMut(u32),
    ) {
        let Some((a, z)) = map.get(key) else {
            return;
        };
        let from = start + key_len;
        let left = text.len().saturating_sub(from);
        let next = match text.get(from..from + 4) {
            // (The usual case, unrolled: four table loads.)
            Some(&[a, b, c, d]) => u32::from_be_bytes([
                LOWER[usize::from(a)],
                LOWER[usize::from(b)],
                LOWER[usize::from(c)],
                LOWER[usize::from(d)],
            ]),
            _ => next_four(text, from).0,
        };
        for e in self.entries.get(a as usize..z as usize).unwrap_or_default() {
            let len = e.len as usize;
            if next & e.mask != e.next || len > left + key_len {
                continue;
            }
            if len > key_len + 4 {
                // Beyond the key and the four bytes that follow it.
                let (s, end) = self.spans[e.id as usize];
                let lit = &self.bytes[s as usize + key_len + 4..end as usize];
                let Some(rest) = text.get(from + 4..start + len) else {
                    continue;
                };
                if !rest
                    .iter()
                    .zip(lit)
                    .all(|(&t, &l)| LOWER[usize::from(t)] == l)
                {
                    continue;
                }
            }
            found(e.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::Xorshift;
    use aho_corasick::{AhoCorasickBuilder, MatchKind};

    /// The ids of every occurrence found by `Literals` and by an overlapping, ASCII
    /// case-insensitive Aho-Corasick search (sorted: the orders differ) — which must agree.
    fn both(literals: &[Vec<u8>], text: &[u8]) -> (Vec<u32>, Vec<u32>) {
        let mut ours = Vec::new();
        Literals::new(literals).find(text, |id| ours.push(id));
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(literals)
            .unwrap();
        let mut theirs: Vec<u32> = ac
            .find_overlapping_iter(text)
            .map(|m| m.pattern().as_u32())
            .collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        (ours, theirs)
    }

    #[test]
    fn finds_what_aho_corasick_finds_on_words_and_cases() {
        let literals: Vec<Vec<u8>> = [
            "or",
            "on",
            "<a",
            "cat",
            "select",
            "union select",
            "SeLeCt",
            "sel",
            "lect",
            "alert(",
            "\u{e9}t\u{e9}",
            "\n\r",
            "${",
            "passwd",
            "etc/passwd",
            "ls",
            "union all select",
            "union all selection",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        for text in [
            "",
            "o",
            "or",
            "OR 1=1",
            "xx UNION SELECT passwd FROM /ETC/PASSWD",
            "selselectselect",
            "concatenate alerts: alert(1) on <A href>",
            "UNION ALL SELECT; union all selectio; union all selex; union all selectION",
            "\u{c9}T\u{c9} \u{e9}t\u{e9} ${x}\n\r",
        ] {
            let (ours, theirs) = both(&literals, text.as_bytes());
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn finds_what_aho_corasick_finds_on_random_literals_and_texts() {
        let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
        // A small alphabet makes overlaps, shared prefixes and hash collisions common;
        // upper case and bytes above 0x7F test the case folding.
        let alphabet = b"abcABC-_ \xc3\xa9\x00";
        for round in 0..300 {
            let n = 1 + rng.below(60);
            let mut literals: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = 2 + rng.below(13);
                    (0..len)
                        .map(|_| alphabet[rng.below(alphabet.len())])
                        .collect()
                })
                .collect();
            literals.sort();
            literals.dedup();
            for _ in 0..20 {
                // Random bytes and literals, some flipped to upper case, cut short or
                // with one byte changed (so that long keys match and the rest does not).
                let mut text: Vec<u8> = Vec::new();
                for _ in 0..rng.below(8) {
                    if rng.below(2) == 0 {
                        text.push(alphabet[rng.below(alphabet.len())]);
                        continue;
                    }
                    let mut piece = literals[rng.below(literals.len())].clone();
                    match rng.below(4) {
                        0 => piece.make_ascii_uppercase(),
                        1 => piece.truncate(rng.below(piece.len())),
                        2 => {
                            let at = rng.below(piece.len());
                            piece[at] = alphabet[rng.below(alphabet.len())];
                        }
                        _ => {}
                    }
                    text.extend(piece);
                }
                let (ours, theirs) = both(&literals, &text);
                assert_eq!(ours, theirs, "round {round}: {literals:?} in {text:?}");
            }
        }
    }

    #[test]
    fn one_byte_literals_and_empty_sets_find_nothing() {
        let lits = Literals::new(&[b"a".to_vec()]);
        assert!(lits.is_empty());
        let mut n = 0;
        lits.find(b"aaaa", |_| n += 1);
        assert_eq!(n, 0);
        let lits = Literals::new(&[]);
        lits.find(b"anything", |_| n += 1);
        assert_eq!(n, 0);
    }
}
