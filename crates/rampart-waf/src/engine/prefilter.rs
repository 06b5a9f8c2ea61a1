//! The prefilter: one literal finder ([`super::literals`]) over the required literals of
//! every rule that has them (see [`crate::factor`]), run once per request value and
//! transformation chain, so that a rule none of whose literals occur in any value it
//! could see is skipped without collecting its values or running its operator.
//!
//! # Soundness
//!
//! A rule is *gated* only when a skip cannot change the outcome: its operator is not
//! negated and has required literals (with `multiMatch`, the value after every step is
//! scanned), and every target is request or response data that does not change while a
//! phase runs (arguments, headers, cookies, URI parts, bodies, XML, multipart fields —
//! never `TX`, `MATCHED_VAR` or counts). A gated chain head none of whose values hold a
//! literal is skipped whole; a gated rule that runs (a head with some hits, or a later
//! link of a chain) skips its values that hold none. "Required literals" include single
//! bytes for checks that can only fail on certain bytes (`@validateByteRange`: the bytes
//! outside the ranges; `@validateUtf8Encoding`: bytes above 0x7F; `@validateUrlEncoding`:
//! `%`; `@detectXSS`: `<` or `=`). The scan over-approximates on purpose: literals match
//! ASCII case-insensitively, and a value marks every rule owning a found literal whose
//! chain produced the scanned bytes, whatever its exact targets.
//!
//! # Cost
//!
//! Most benign values are left alone by most transformations (no `%`, `&`, `\`, …), and
//! [`transform::unchanged`] tells so from the set of bytes a value holds; all such chains
//! share one scan of the raw value. Other chains are applied and scanned one by one.

use super::compile::CRule;
use super::literals::Literals;
use crate::alphabet;
use crate::seclang::{Transform, Var};
use crate::transform::{self, ByteSet};

/// Where a value comes from. A target variable maps onto one or more sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Source {
    ArgValue,
    ArgName,
    HeaderValue,
    HeaderName,
    CookieValue,
    CookieName,
    Method,
    UriRaw,
    Uri,
    Line,
    Protocol,
    Query,
    Filename,
    Basename,
    Body,
    XmlText,
    XmlAttr,
    FileName,
    FileField,
    MultipartName,
    MultipartFilename,
    PartHeader,
    ResponseHeaderValue,
    ResponseHeaderName,
    ResponseProtocol,
    ResponseBody,
}

const SOURCES: usize = Source::ResponseBody as usize + 1;

/// [`Prefilter`]'s mark for a rule that is not gated.
const NOT_GATED: u32 = u32::MAX;

/// The sources a target reaches, or `None` for variables the prefilter does not cover.
fn sources(var: Var, key: Option<&super::compile::KeySel>) -> Option<&'static [Source]> {
    use Source as S;
    Some(match var {
        Var::Args | Var::ArgsGet | Var::ArgsPost => &[S::ArgValue],
        Var::ArgsNames | Var::ArgsGetNames | Var::ArgsPostNames => &[S::ArgName],
        Var::RequestHeaders => &[S::HeaderValue],
        Var::RequestHeadersNames => &[S::HeaderName],
        Var::RequestCookies => &[S::CookieValue],
        Var::RequestCookiesNames => &[S::CookieName],
        Var::RequestMethod => &[S::Method],
        Var::RequestUriRaw => &[S::UriRaw],
        Var::RequestUri => &[S::Uri],
        Var::RequestLine => &[S::Line],
        Var::RequestProtocol => &[S::Protocol],
        Var::QueryString => &[S::Query],
        Var::RequestFilename | Var::PathInfo => &[S::Filename],
        Var::RequestBasename => &[S::Basename],
        Var::RequestBody => &[S::Body],
        Var::Xml => match key {
            Some(super::compile::KeySel::Name(p)) if p == "/*" => &[S::XmlText],
            Some(super::compile::KeySel::Name(p)) if p == "//@*" => &[S::XmlAttr],
            _ => return None,
        },
        Var::Files | Var::MultipartFilename => &[S::FileName, S::MultipartFilename],
        Var::FilesNames | Var::MultipartName => &[S::FileField, S::MultipartName],
        Var::MultipartPartHeaders => &[S::PartHeader],
        Var::ResponseHeaders => &[S::ResponseHeaderValue],
        Var::ResponseHeadersNames => &[S::ResponseHeaderName],
        Var::ResponseProtocol => &[S::ResponseProtocol],
        Var::ResponseBody => &[S::ResponseBody],
        _ => return None,
    })
}

// Every transformation has its own bit.
const _: () = assert!(Transform::ALL.len() <= 64);

fn transform_bit(t: Transform) -> u64 {
    1u64 << (t as u8 & 63)
}

/// Chains are told apart by bits of a `u128`: at most this many distinct chains are
/// gated (rules with other chains simply always run).
const MAX_CHAINS: usize = 128;

/// The compiled prefilter of a ruleset.
#[derive(Debug)]
pub(crate) struct Prefilter {
    /// The literal finder and its tables for every value.
    full: Tables,
    /// The same for *plain* values — values whose bytes all lie in [`PLAIN`] — holding
    /// only the rules that can match such a value at all (after their transformations;
    /// see [`crate::alphabet`]). Most benign values are plain, and most rules cannot
    /// match them: a plain value is scanned with fewer chains and fewer literals.
    plain: Tables,
    /// [`PLAIN`] as a set.
    plain_set: [u64; 4],
    /// Per gated rule: sets of bytes every match holds one of each (a value lacking one
    /// does not mark the rule, whatever literals it holds).
    needs: Vec<Box<[[u64; 4]]>>,
    /// Per rule: its number among the gated rules, or [`NOT_GATED`]. Scan state is kept
    /// per gated rule (a few hundred), not per rule (a few thousand).
    gated: Vec<u32>,
    n_gated: usize,
    /// Per dense chain: the request headers its rules read by name, lower-cased (`None`:
    /// all of them) — a header value is scanned only for the chains that read it.
    header_names: Vec<Option<Vec<Vec<u8>>>>,
    /// Per dense chain: its transformations, and whether its rules test every step's
    /// result (`multiMatch`).
    chains: Vec<(Vec<Transform>, bool)>,
    /// Per dense chain: its transformations as bits (`1 << t as u8`).
    chain_bits: Vec<u64>,
    /// Per dense chain: whether a case-changing step comes before one that reads case
    /// ([`transform::chain_reads_case`]): its steps are skipped only when exactly no-ops.
    chain_exact: Vec<bool>,
    /// Each transformation by its bit (see `transform_bit`).
    by_bit: [Option<Transform>; 64],
}

/// The bytes of a plain value: ASCII letters and digits, space, `.`, `-`, `_`, `@`.
const PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .-_@";

/// A finder of gated rules' literals, and the tables that go with it.
#[derive(Debug, Default)]
struct Tables {
    lits: Literals,
    /// The gated rules owning each literal (by their gated number), with their dense
    /// chain number: literal `p`'s are `owners[owned[p]..owned[p + 1]]` (one array, so
    /// that a match reads one place).
    owners: Vec<(u32, u8)>,
    owned: Vec<u32>,
    /// Per literal: its owners' chains, as bits — a literal found in bytes made by other
    /// chains is dropped on one test (a 2 KiB form yields ~1,500 finds, half of them in
    /// bytes one chain made, a `base64Decode` or `removeWhitespace` output, that the
    /// literal's owners do not read).
    owner_chains: Vec<u128>,
    /// One-byte literals are not in the finder (they would report a match at most
    /// positions of some values): per (lower-case) byte, its owners, found through the
    /// set of bytes a value holds.
    single: Vec<Vec<(u32, u8)>>,
    /// The bytes `single` has owners for, in both cases, as a set (intersected with a
    /// value's bytes to find the ones it holds).
    single_bytes: [u64; 4],
    /// Per source: the dense chains some gated rule reads it through.
    chains_of: [Vec<u8>; SOURCES],
    /// Per source: the transformations of its chains, as bits — of the chains judged up
    /// to case, and of those judged exactly (see `chain_exact`).
    judge: [(u64, u64); SOURCES],
}

/// Per-transaction prefilter state: the candidate rules found so far, and how far each
/// growing collection has been scanned.
#[derive(Debug, Default)]
pub(crate) struct ScanState {
    candidates: Vec<u64>,
    /// (rule, value number) for every value that holds a literal of the rule, in the
    /// order values were scanned (so by value number).
    hits: Vec<(u32, u32)>,
    /// Per source: the number given to each index's value when it was scanned
    /// (`u32::MAX`: not scanned).
    numbers: [Vec<u32>; SOURCES],
    /// `hits` grouped by rule when a phase starts (a counting sort: each group stays in
    /// value-number order): `grouped[offsets[r]..offsets[r + 1]]` are rule `r`'s.
    grouped: Vec<u32>,
    offsets: Vec<u32>,
    /// How many hits `grouped` holds (a phase without new hits keeps it as it is).
    settled: usize,
    pub(crate) args: usize,
    pub(crate) headers: usize,
    pub(crate) cookies: usize,
    pub(crate) response_headers: usize,
    /// Sources scanned once and for all (scalars), as bits.
    pub(crate) scalars: u32,
    buf: Vec<u8>,
    tmp: Vec<u8>,
    /// Per literal: the number of the [`Prefilter::mark`] call that last found it (so the
    /// bytes it marks for are looked up once per call, however often it occurs).
    seen: Vec<u32>,
    /// The number of the current `mark` call (0: none yet).
    mark_seq: u32,
    /// Per gated rule: the number of the value that last marked it (so a value marks a rule
    /// once, whatever number of its literals it holds).
    marked: Vec<u32>,
    /// The number of the value being scanned.
    seq: u32,
    /// Per value number: its source.
    source_of: Vec<u8>,
    /// The distinct results of the value's transformation chains (buffers reused: the
    /// first `n_outputs` are current), with the chains that made each.
    outputs: Vec<(Vec<u8>, u128)>,
    n_outputs: usize,
}

impl ScanState {
    /// Queues a transformed value to scan for `chains`: bytes another chain already
    /// made (equal up to ASCII case, as the scan compares) share its one scan; empty
    /// bytes hold no literal.
    fn add_output(&mut self, bytes: &[u8], chains: u128) {
        if bytes.is_empty() {
            return;
        }
        if let Some(o) = self.outputs[..self.n_outputs]
            .iter_mut()
            .find(|(b, _)| b.eq_ignore_ascii_case(bytes))
        {
            o.1 |= chains;
            return;
        }
        if self.outputs.len() == self.n_outputs {
            self.outputs.push((Vec::new(), 0));
        }
        let slot = &mut self.outputs[self.n_outputs];
        slot.0.clear();
        slot.0.extend_from_slice(bytes);
        slot.1 = chains;
        self.n_outputs += 1;
    }

    /// Groups the hits found so far by rule, for [`ScanState::hit`].
    pub(crate) fn settle(&mut self) {
        if self.hits.len() == self.settled && !self.offsets.is_empty() {
            return;
        }
        self.settled = self.hits.len();
        let rules = self.marked.len();
        self.offsets.clear();
        self.offsets.resize(rules + 1, 0);
        for &(r, _) in &self.hits {
            self.offsets[r as usize + 1] += 1;
        }
        for r in 0..rules {
            self.offsets[r + 1] += self.offsets[r];
        }
        self.grouped.clear();
        self.grouped.resize(self.hits.len(), 0);
        let mut next: Vec<u32> = self.offsets[..rules].to_vec();
        for &(r, n) in &self.hits {
            let at = &mut next[r as usize];
            self.grouped[*at as usize] = n;
            *at += 1;
        }
    }

    /// The sources (as bits, `1 << source`) of the values that hold a literal of the gated
    /// rule numbered `gate`: a collection none of them comes from has no value to test.
    pub(crate) fn hit_sources(&self, gate: u32) -> u32 {
        let ri = gate as usize;
        match (self.offsets.get(ri), self.offsets.get(ri + 1)) {
            (Some(&a), Some(&b)) => self
                .grouped
                .get(a as usize..b as usize)
                .unwrap_or_default()
                .iter()
                .fold(0, |bits, &n| {
                    bits | self
                        .source_of
                        .get(n as usize)
                        .filter(|&&s| u32::from(s) < 32)
                        .map_or(0, |&s| 1 << s)
                }),
            _ => 0,
        }
    }

    /// Whether the `index`th value of `source` holds a literal of the gated rule numbered
    /// `gate` (see [`Prefilter::gate`]), after the rule's transformation chain.
    pub(crate) fn hit(&self, gate: u32, source: Source, index: u32) -> bool {
        let ri = gate as usize;
        let Some(&n) = self.numbers[source as usize].get(index as usize) else {
            return false;
        };
        match (self.offsets.get(ri), self.offsets.get(ri + 1)) {
            (Some(&a), Some(&b)) => self.grouped[a as usize..b as usize]
                .binary_search(&n)
                .is_ok(),
            _ => false,
        }
    }

    /// Forgets the transaction (for the next one, maybe on another ruleset), keeping the
    /// buffers' capacity.
    pub(crate) fn reset(&mut self) {
        let ScanState {
            candidates,
            hits,
            numbers,
            grouped,
            offsets,
            settled,
            args,
            headers,
            cookies,
            response_headers,
            scalars,
            buf,
            tmp,
            seen,
            mark_seq,
            marked,
            seq,
            source_of,
            outputs,
            n_outputs,
        } = self;
        candidates.clear();
        hits.clear();
        numbers.iter_mut().for_each(Vec::clear);
        grouped.clear();
        offsets.clear();
        *settled = 0;
        *args = 0;
        *headers = 0;
        *cookies = 0;
        *response_headers = 0;
        *scalars = 0;
        buf.clear();
        tmp.clear();
        // (Stamps stay valid across transactions; only a wrap of the counter clears them.)
        let _ = (seen, mark_seq);
        // (Emptied, so the next scan fills it anew: a stale mark could equal a new
        // value's number.)
        marked.clear();
        *seq = 0;
        source_of.clear();
        *n_outputs = 0;
        outputs.truncate(16);
    }

    pub(crate) fn scalar_pending(&mut self, s: Source) -> bool {
        let bit = 1u32 << (s as u32);
        let pending = self.scalars & bit == 0;
        self.scalars |= bit;
        pending
    }
}

/// [`Tables`] being built: the literals so far, and each one's index.
#[derive(Default)]
struct TablesBuilder {
    tables: Tables,
    literals: Vec<Vec<u8>>,
    /// Per literal: its owners (flattened into the tables at the end).
    owners: Vec<Vec<(u32, u8)>>,
    index: std::collections::HashMap<Vec<u8>, usize>,
}

impl TablesBuilder {
    fn new() -> TablesBuilder {
        let mut b = TablesBuilder::default();
        b.tables.single = vec![Vec::new(); 256];
        b
    }

    /// Records that a gated rule reads `source` through `chain`.
    fn read(&mut self, source: Source, chain: u8) {
        let list = &mut self.tables.chains_of[source as usize];
        if !list.contains(&chain) {
            list.push(chain);
        }
    }

    /// Adds a literal of the gated rule `rid` (on `chain`).
    fn literal(&mut self, f: &[u8], rid: u32, chain: u8) {
        if let [b] = f[..] {
            self.tables.single[usize::from(b)].push((rid, chain));
            return;
        }
        let next = self.literals.len();
        let li = *self.index.entry(f.to_vec()).or_insert(next);
        if li == next {
            self.literals.push(f.to_vec());
            self.owners.push(Vec::new());
        }
        self.owners[li].push((rid, chain));
    }

    /// The tables with their finder; the judging masks are filled by the caller.
    fn finish(mut self) -> Tables {
        self.tables.lits = Literals::new(&self.literals);
        let t = &mut self.tables;
        t.owned.push(0);
        for list in &self.owners {
            t.owners.extend_from_slice(list);
            t.owned.push(t.owners.len() as u32);
            t.owner_chains.push(
                list.iter()
                    .fold(0, |bits, &(_, c)| bits | 1u128 << (c & 127)),
            );
        }
        self.tables.single_bytes = single_bytes(&self.tables.single);
        self.tables
    }
}

/// The bytes (both cases) that have single-byte owners, as a set.
fn single_bytes(single: &[Vec<(u32, u8)>]) -> [u64; 4] {
    let mut set = [0u64; 4];
    for b in 0..=255u8 {
        if single.get(usize::from(b)).is_some_and(|o| !o.is_empty()) {
            alphabet::add(&mut set, b);
            alphabet::add(&mut set, b.to_ascii_uppercase());
        }
    }
    set
}

impl Prefilter {
    /// Builds the prefilter for compiled rules (chain links included: a link's values
    /// are skipped the same way, and its chain fails when none is left). Only rules
    /// `reach` holds true for are gated (the ones a transaction is expected to reach; the
    /// others, if reached, run ungated).
    pub(crate) fn build(rules: &[CRule], reach: &[bool]) -> Prefilter {
        let mut pf = Prefilter {
            full: Tables::default(),
            plain: Tables::default(),
            plain_set: alphabet::of(PLAIN),
            gated: vec![NOT_GATED; rules.len()],
            n_gated: 0,
            needs: Vec::new(),
            header_names: Vec::new(),
            chains: Vec::new(),
            chain_bits: Vec::new(),
            chain_exact: Vec::new(),
            by_bit: [None; 64],
        };
        for &(_, t) in Transform::ALL {
            pf.by_bit[usize::from(t as u8 & 63)] = Some(t);
        }
        let plain_bytes = pf.plain_set;
        let (mut full, mut plain) = (TablesBuilder::new(), TablesBuilder::new());
        // (rule chain number, multiMatch) → dense
        let mut dense: std::collections::HashMap<(usize, bool), u8> = Default::default();
        for (ri, rule) in rules.iter().enumerate() {
            if rule.targets.is_empty() || !reach.get(ri).copied().unwrap_or(false) {
                continue;
            }
            let Some(op) = &rule.operator else { continue };
            let mut srcs: Vec<Source> = Vec::new();
            let covered = rule.targets.iter().all(|t| {
                !t.count
                    && sources(t.var, t.key.as_ref()).is_some_and(|s| {
                        srcs.extend_from_slice(s);
                        true
                    })
            });
            if !covered {
                continue;
            }
            let Some(factors) = op.factors() else {
                continue;
            };
            let key = (rule.chain, rule.multi_match);
            let chain = match dense.get(&key) {
                Some(&c) => c,
                None if pf.chains.len() < MAX_CHAINS => {
                    let c = u8::try_from(pf.chains.len()).unwrap_or(u8::MAX);
                    pf.chains.push((rule.transforms.clone(), rule.multi_match));
                    pf.chain_bits
                        .push(rule.transforms.iter().fold(0, |b, &t| b | transform_bit(t)));
                    pf.chain_exact
                        .push(transform::chain_reads_case(&rule.transforms));
                    dense.insert(key, c);
                    c
                }
                None => continue,
            };
            let rid = u32::try_from(pf.n_gated).unwrap_or(NOT_GATED);
            pf.gated[ri] = rid;
            pf.n_gated += 1;
            pf.needs.push(op.required_bytes().into());
            if pf.header_names.len() <= usize::from(chain) {
                pf.header_names
                    .resize(usize::from(chain) + 1, Some(Vec::new()));
            }
            for t in rule.targets.iter().filter(|t| t.var == Var::RequestHeaders) {
                let entry = &mut pf.header_names[usize::from(chain)];
                match (&t.key, entry.as_mut()) {
                    (Some(super::compile::KeySel::Name(n)), Some(names)) => {
                        if !names.iter().any(|x| x == n.as_bytes()) {
                            names.push(n.as_bytes().to_vec());
                        }
                    }
                    (_, Some(_)) => *entry = None,
                    (_, None) => {}
                }
            }
            // Whether the rule can match a plain value (what its operator sees of one is
            // made of the bytes its chain can produce from plain bytes).
            let plain_ok = op.possible_over(&alphabet::chain_output(
                &rule.transforms,
                &plain_bytes,
                rule.multi_match,
            ));
            for s in srcs {
                full.read(s, chain);
                if plain_ok {
                    plain.read(s, chain);
                }
            }
            for f in &factors {
                full.literal(f, rid, chain);
                if plain_ok {
                    plain.literal(f, rid, chain);
                }
            }
        }
        pf.full = full.finish();
        pf.plain = plain.finish();
        let judge = |chains: &[u8]| {
            chains.iter().fold((0, 0), |(ci, x), &c| {
                let bits = pf.chain_bits.get(usize::from(c)).copied().unwrap_or(0);
                if pf.chain_exact.get(usize::from(c)).copied().unwrap_or(false) {
                    (ci, x | bits)
                } else {
                    (ci | bits, x)
                }
            })
        };
        for tables in [&mut pf.full, &mut pf.plain] {
            let judged: Vec<(u64, u64)> = tables.chains_of.iter().map(|c| judge(c)).collect();
            for (slot, j) in tables.judge.iter_mut().zip(judged) {
                *slot = j;
            }
        }
        pf
    }

    /// Whether any rule is gated (else scanning is skipped).
    pub(crate) fn active(&self) -> bool {
        self.n_gated > 0
    }

    /// Rule `ri`'s number among the gated rules, if it is gated: then only the values
    /// [`ScanState::hit`] names can match it.
    pub(crate) fn gate(&self, ri: usize) -> Option<u32> {
        self.gated.get(ri).copied().filter(|&g| g != NOT_GATED)
    }

    /// How many rules are gated.
    pub(crate) fn gated_count(&self) -> usize {
        self.n_gated
    }

    /// How many distinct literals the finder holds.
    pub(crate) fn literal_count(&self) -> usize {
        self.full.owner_chains.len()
    }

    /// Whether rule `ri` may be skipped: it is gated and no scanned value holds one of
    /// its literals.
    pub(crate) fn skips(&self, st: &ScanState, ri: usize) -> bool {
        self.gate(ri).is_some_and(|g| {
            let g = g as usize;
            st.candidates
                .get(g / 64)
                .is_none_or(|w| w & (1 << (g % 64)) == 0)
        })
    }

    /// Scans one value of `source`.
    pub(crate) fn scan(&self, st: &mut ScanState, source: Source, index: u32, value: &[u8]) {
        self.scan_named(st, source, index, value, None);
    }

    /// [`Prefilter::scan`] for a request header's value, named `name`: only the chains
    /// whose rules read that header (or every header) scan it.
    pub(crate) fn scan_header(&self, st: &mut ScanState, index: u32, name: &[u8], value: &[u8]) {
        self.scan_named(st, Source::HeaderValue, index, value, Some(name));
    }

    fn scan_named(
        &self,
        st: &mut ScanState,
        source: Source,
        index: u32,
        value: &[u8],
        header: Option<&[u8]>,
    ) {
        if self.full.chains_of[source as usize].is_empty() || value.is_empty() {
            return;
        }
        let has = ByteSet::of(value);
        let plain = alphabet::subset(&has.words(), &self.plain_set);
        let tables = if plain { &self.plain } else { &self.full };
        let chains = &tables.chains_of[source as usize];
        st.seq = st.seq.wrapping_add(1);
        if st.marked.len() != self.n_gated {
            st.marked.clear();
            st.marked.resize(self.n_gated, u32::MAX);
        }
        let numbers = &mut st.numbers[source as usize];
        let at = index as usize;
        if numbers.len() <= at {
            numbers.resize(at + 1, u32::MAX);
        }
        numbers[at] = st.seq;
        let n = st.seq as usize;
        if st.source_of.len() <= n {
            st.source_of.resize(n + 1, u8::MAX);
        }
        st.source_of[n] = source as u8;
        let mut raw: u128 = 0;
        // Which transformations leave the value alone, each judged once per value (all
        // the source's chains use, at once): up to ASCII case (the scan ignores case),
        // and exactly, for the chains with a step that reads case (`hexEncode` of `A`
        // and of `a` differ).
        let (ci_bits, x_bits) = tables.judge[source as usize];
        let judge = |mut bits: u64, exactly: bool| {
            let mut unchanged = 0u64;
            while bits != 0 {
                let i = bits.trailing_zeros();
                bits &= bits - 1;
                if let Some(&Some(t)) = self.by_bit.get(i as usize) {
                    let same = if exactly {
                        transform::unchanged_exactly(t, value, &has)
                    } else {
                        transform::unchanged(t, value, &has)
                    };
                    if same {
                        unchanged |= 1 << i;
                    }
                }
            }
            unchanged
        };
        let (unchanged_ci, unchanged_x) = (judge(ci_bits, false), judge(x_bits, true));
        for &c in chains {
            if let (Some(name), Some(Some(names))) = (header, self.header_names.get(usize::from(c)))
            {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    continue;
                }
            }
            let (steps, multi) = &self.chains[usize::from(c)];
            let bits = self.chain_bits[usize::from(c)];
            let exact = self.chain_exact[usize::from(c)];
            let unchanged = if exact { unchanged_x } else { unchanged_ci };
            if bits & !unchanged == 0 {
                raw |= 1 << c;
                continue;
            }
            let mut buf = std::mem::take(&mut st.buf);
            let mut tmp = std::mem::take(&mut st.tmp);
            buf.clear();
            buf.extend_from_slice(value);
            if *multi {
                // multiMatch: the operator sees the value and every step that changed it.
                // Steps that leave the value as it is (up to case, where case cannot
                // matter downstream) add nothing to scan until one changes it.
                raw |= 1 << c;
                let mut changed = false;
                // The bytes the current result holds, once it differs from the value.
                let mut held: Option<ByteSet> = None;
                for &t in steps {
                    if !changed && unchanged & transform_bit(t) != 0 {
                        continue;
                    }
                    if changed {
                        let h = *held.get_or_insert_with(|| ByteSet::of(&buf));
                        if transform::unchanged_exactly(t, &buf, &h) {
                            continue;
                        }
                    }
                    transform::apply(t, &buf, &mut tmp);
                    std::mem::swap(&mut buf, &mut tmp);
                    if buf != tmp {
                        changed = true;
                        held = None;
                        st.add_output(&buf, 1 << c);
                    }
                }
            } else {
                // Steps that leave the value as it is are skipped until one changes it
                // (judged exactly in a chain that reads case).
                let mut changed = false;
                let mut held: Option<ByteSet> = None;
                for &t in steps {
                    if !changed && unchanged & transform_bit(t) != 0 {
                        continue;
                    }
                    if changed {
                        // Once changed, a step is skipped when it leaves the current
                        // result alone (judged the same way on it).
                        let h = *held.get_or_insert_with(|| ByteSet::of(&buf));
                        let same = if exact {
                            transform::unchanged_exactly(t, &buf, &h)
                        } else {
                            transform::unchanged(t, &buf, &h)
                        };
                        if same {
                            continue;
                        }
                    }
                    transform::apply(t, &buf, &mut tmp);
                    let diff = if exact {
                        tmp != buf
                    } else {
                        !tmp.eq_ignore_ascii_case(&buf)
                    };
                    changed |= diff;
                    if tmp != buf {
                        held = None;
                    }
                    std::mem::swap(&mut buf, &mut tmp);
                }
                if !changed {
                    raw |= 1 << c;
                } else {
                    st.add_output(&buf, 1 << c);
                }
            }
            st.buf = buf;
            st.tmp = tmp;
        }
        if raw != 0 {
            self.mark(st, tables, value, Some(&has), raw);
        }
        let outputs = std::mem::take(&mut st.outputs);
        for (bytes, mask) in &outputs[..st.n_outputs] {
            self.mark(st, tables, bytes, None, *mask);
        }
        st.outputs = outputs;
        st.n_outputs = 0;
    }

    /// Marks the rules owning a literal of `tables` found in `bytes` (`has`: its byte
    /// set, if known) for the given chains (`tables`: the plain ones for bytes made from a
    /// plain value, which only their rules can match).
    fn mark(
        &self,
        st: &mut ScanState,
        tables: &Tables,
        bytes: &[u8],
        has: Option<&ByteSet>,
        chains: u128,
    ) {
        let (lits, owner_chains, single, single_set) = (
            &tables.lits,
            &tables.owner_chains,
            &tables.single,
            &tables.single_bytes,
        );
        if st.candidates.is_empty() {
            st.candidates.resize(self.n_gated.div_ceil(64), 0);
        }
        let computed;
        let has = match has {
            Some(h) => h,
            None => {
                computed = ByteSet::of(bytes);
                &computed
            }
        };
        let words = has.words();
        let found = |owners: &[(u32, u8)], st: &mut ScanState| {
            for &(r, c) in owners {
                let r = r as usize;
                if chains & (1 << c) != 0 && st.marked[r] != st.seq {
                    // Bytes every match needs and these bytes lack: not this value.
                    if self.needs[r]
                        .iter()
                        .any(|set| set.iter().zip(&words).all(|(a, b)| a & b == 0))
                    {
                        continue;
                    }
                    st.marked[r] = st.seq;
                    st.candidates[r / 64] |= 1 << (r % 64);
                    st.hits.push((r as u32, st.seq));
                }
            }
        };
        if *single_set != [0; 4] {
            // The single-byte literals the value holds (either case), bit by bit.
            for (w, (&set, &held)) in single_set.iter().zip(&has.words()).enumerate() {
                let mut bits = set & held;
                while bits != 0 {
                    let b = (w as u32 * 64 + bits.trailing_zeros()) as u8;
                    bits &= bits - 1;
                    let lower = b.to_ascii_lowercase();
                    // Both cases held: the lower-case one marks.
                    if b != lower && has.has(lower) {
                        continue;
                    }
                    found(&single[usize::from(lower)], st);
                }
            }
        }
        if !lits.is_empty() {
            st.mark_seq = st.mark_seq.wrapping_add(1);
            if st.mark_seq == 0 {
                st.seen.iter_mut().for_each(|s| *s = 0);
                st.mark_seq = 1;
            }
            if st.seen.len() < owner_chains.len() {
                st.seen.resize(owner_chains.len(), 0);
            }
            let stamp = st.mark_seq;
            lits.find(bytes, |p| {
                let p = p as usize;
                if owner_chains.get(p).is_none_or(|&c| c & chains == 0) {
                    return;
                }
                match st.seen.get_mut(p) {
                    Some(s) if *s == stamp => return,
                    Some(s) => *s = stamp,
                    None => {}
                }
                let (a, z) = (tables.owned[p] as usize, tables.owned[p + 1] as usize);
                if let Some(o) = tables.owners.get(a..z) {
                    found(o, st);
                }
            });
        }
    }
}
