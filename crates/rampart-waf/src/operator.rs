//! Operators (`@rx`, `@pm`, `@eq`, …), compiled once and evaluated with ModSecurity v3's
//! semantics.
//!
//! Regular expressions run on bytes with PCRE's defaults as ModSecurity sets them: `.`
//! matches a newline and `^`/`$` match at line breaks (`PCRE2_DOTALL | PCRE2_MULTILINE`),
//! classes such as `\w` and `\s` are ASCII, `(?i)` folds ASCII only. The engine is the
//! `regex` crate (linear time: no backtracking limit is needed, and a crafted input
//! cannot make a rule slow); `\x{HH}` is rewritten to the byte escape `\xHH` it means in
//! PCRE's non-UTF mode. A pattern it cannot take (look-around, back-references) is an
//! error at load naming the rule.

use std::net::IpAddr;
use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use crate::macros::{MacroText, Resolve};
use crate::seclang::{Op, OperatorSpec, RuleFs};

/// A compiled operator.
#[derive(Debug)]
pub struct Operator {
    kind: Kind,
    negated: bool,
}

#[derive(Debug)]
enum Kind {
    /// The expression, and sets of bytes every match holds one of each (checked first:
    /// a value lacking one cannot match — see [`crate::factor::required_bytes`]).
    Rx(Box<Regex>, Box<[[u64; 4]]>),
    /// `@rx ^.*$` (CRS's way to visit every name): with `.` matching newlines, it
    /// matches every input whole — no expression runs.
    RxWhole,
    RxDynamic(MacroText, DynamicCache),
    Pm(Box<AhoCorasick>, Vec<Vec<u8>>),
    Within(Param),
    Contains(Param),
    ContainsWord(Param),
    BeginsWith(Param),
    EndsWith(Param),
    StrEq(Param),
    Eq(Param),
    Ge(Param),
    Gt(Param),
    Le(Param),
    Lt(Param),
    IpMatch(Vec<IpNet>),
    ValidateByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    Unconditional,
    NoMatch,
    DetectSqli,
    DetectXss,
}

/// Compiled expressions of an `@rx` with macros, by expanded pattern. The expansions
/// come from configuration variables (`tx.allowed_…`) and repeat from one request to the
/// next; the cache is bounded so that request-controlled expansions cannot grow it.
#[derive(Debug, Default)]
struct DynamicCache(std::sync::RwLock<Vec<DynamicEntry>>);

/// An expanded pattern and its expression (`None`: it does not compile).
type DynamicEntry = (Vec<u8>, Option<std::sync::Arc<Regex>>);

const DYNAMIC_CACHE_ENTRIES: usize = 16;

impl DynamicCache {
    /// The expression for `pattern` (`None`: it does not compile).
    fn get(&self, pattern: &[u8]) -> Option<std::sync::Arc<Regex>> {
        if let Ok(entries) = self.0.read() {
            if let Some((_, re)) = entries.iter().find(|(p, _)| p == pattern) {
                return re.clone();
            }
        }
        let re = std::str::from_utf8(pattern)
            .ok()
            .and_then(|p| regex(p).ok())
            .map(std::sync::Arc::new);
        if let Ok(mut entries) = self.0.write() {
            if entries.len() < DYNAMIC_CACHE_ENTRIES {
                entries.push((pattern.to_vec(), re.clone()));
            }
        }
        re
    }
}

/// A parameter that is static or expanded per transaction.
#[derive(Debug)]
enum Param {
    Static(Vec<u8>),
    Dynamic(MacroText),
}

impl Param {
    fn new(text: &str) -> Param {
        let m = MacroText::parse(text);
        match m.static_text() {
            Some(t) => Param::Static(t),
            None => Param::Dynamic(m),
        }
    }
}

/// Where operators that read data files (`@pmFromFile`, `@ipMatchFromFile`) find them.
pub struct DataFiles<'a> {
    /// The file system rules are read from.
    pub fs: &'a dyn RuleFs,
    /// The directory of the rule file (relative data file names start here).
    pub dir: &'a Path,
}

/// Captured groups of a match: `(group number, bytes)`, for `capture` (`TX.0`…).
pub type Captures = Vec<(usize, Vec<u8>)>;

/// The macros of an operator's parameter (`&Kind` or `&mut Kind` in, the same kind of
/// reference out): the one list of the kinds whose parameter may hold macros.
macro_rules! param_macros {
    ($kind:expr) => {
        match $kind {
            Kind::RxDynamic(m, _) => Some(m),
            Kind::Within(p)
            | Kind::Contains(p)
            | Kind::ContainsWord(p)
            | Kind::BeginsWith(p)
            | Kind::EndsWith(p)
            | Kind::StrEq(p)
            | Kind::Eq(p)
            | Kind::Ge(p)
            | Kind::Gt(p)
            | Kind::Le(p)
            | Kind::Lt(p) => match p {
                Param::Static(_) => None,
                Param::Dynamic(m) => Some(m),
            },
            _ => None,
        }
    };
}

impl Operator {
    /// Compiles an operator. The error says why (an unsupported operator, a regular
    /// expression the engine cannot take, a data file that cannot be read).
    pub fn compile(spec: &OperatorSpec, files: &DataFiles<'_>) -> Result<Operator, String> {
        let p = spec.param.as_str();
        let kind = match spec.op {
            Op::Rx => {
                let m = MacroText::parse(p);
                if p == "^.*$" {
                    Kind::RxWhole
                } else if m.is_static() {
                    let re = regex(p)?;
                    let needs = crate::factor::required_bytes(re.as_str());
                    Kind::Rx(Box::new(re), needs.into_boxed_slice())
                } else {
                    Kind::RxDynamic(m, DynamicCache::default())
                }
            }
            Op::Pm => {
                let phrases = pm_phrases(p);
                pm(phrases)?
            }
            Op::PmFromFile => {
                let mut phrases = Vec::new();
                for name in p.split_ascii_whitespace() {
                    let text = read_data(files, name)?;
                    phrases.extend(
                        text.lines()
                            .filter(|l| !is_comment(l))
                            .map(|l| l.as_bytes().to_vec()),
                    );
                }
                pm(phrases)?
            }
            Op::Within => Kind::Within(Param::new(p)),
            Op::Contains => Kind::Contains(Param::new(p)),
            Op::ContainsWord => Kind::ContainsWord(Param::new(p)),
            Op::BeginsWith => Kind::BeginsWith(Param::new(p)),
            Op::EndsWith => Kind::EndsWith(Param::new(p)),
            Op::StrEq => Kind::StrEq(Param::new(p)),
            Op::Eq => Kind::Eq(Param::new(p)),
            Op::Ge => Kind::Ge(Param::new(p)),
            Op::Gt => Kind::Gt(Param::new(p)),
            Op::Le => Kind::Le(Param::new(p)),
            Op::Lt => Kind::Lt(Param::new(p)),
            Op::IpMatch => Kind::IpMatch(cidrs(p.split(',').map(str::trim))?),
            Op::IpMatchFromFile => {
                let text = read_data(files, p.trim())?;
                Kind::IpMatch(cidrs(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#')),
                )?)
            }
            Op::ValidateByteRange => Kind::ValidateByteRange(byte_ranges(p)?),
            Op::ValidateUrlEncoding => Kind::ValidateUrlEncoding,
            Op::ValidateUtf8Encoding => Kind::ValidateUtf8Encoding,
            Op::UnconditionalMatch => Kind::Unconditional,
            Op::NoMatch => Kind::NoMatch,
            Op::DetectSqli => Kind::DetectSqli,
            Op::DetectXss => Kind::DetectXss,
            other => return Err(format!("@{other} is not supported yet")),
        };
        Ok(Operator {
            kind,
            negated: spec.negated,
        })
    }

    /// The parameter's macros, if it has any.
    fn macros(&self) -> Option<&MacroText> {
        param_macros!(&self.kind)
    }

    /// The numbered `TX` members the parameter reads, when those are all it reads
    /// (empty for a static parameter); `None` when it reads anything else.
    pub(crate) fn tx_inputs(&self) -> Option<Vec<u32>> {
        let Some(m) = self.macros() else {
            return Some(Vec::new());
        };
        m.refs()
            .map(|r| match r {
                crate::macros::MacroRef::TxId(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// Numbers the `TX` members the parameter's macros name (see
    /// [`MacroText::bind_tx`]).
    pub(crate) fn bind_tx(&mut self, id: &mut dyn FnMut(&str) -> u32) {
        if let Some(m) = param_macros!(&mut self.kind) {
            m.bind_tx(id);
        }
    }

    /// Sets of bytes of which every input the operator matches holds one of each (empty
    /// when none are known).
    pub(crate) fn required_bytes(&self) -> &[[u64; 4]] {
        match &self.kind {
            Kind::Rx(_, needs) if !self.negated => needs,
            _ => &[],
        }
    }

    /// Literals of which every input the operator matches holds one (compared ASCII
    /// case-insensitively; lower-cased here), or `None` when it may match without any:
    /// negated, numeric and macro-expanded operators, and expressions without a
    /// selective literal. The engine's prefilter skips a rule whose literals are absent.
    pub(crate) fn factors(&self) -> Option<Vec<Vec<u8>>> {
        if self.negated {
            return None;
        }
        match &self.kind {
            Kind::Rx(re, _) => crate::factor::required_literals(re.as_str()),
            Kind::Pm(_, phrases)
                if !phrases.is_empty() && phrases.iter().all(|p| !p.is_empty()) =>
            {
                Some(phrases.iter().map(|p| p.to_ascii_lowercase()).collect())
            }
            Kind::Contains(Param::Static(s))
            | Kind::ContainsWord(Param::Static(s))
            | Kind::BeginsWith(Param::Static(s))
            | Kind::EndsWith(Param::Static(s))
            | Kind::StrEq(Param::Static(s))
                if !s.is_empty() =>
            {
                Some(vec![s.to_ascii_lowercase()])
            }
            // Checks that fail only on certain bytes: a value without any of them passes.
            Kind::ValidateByteRange(allowed) => {
                let mut bytes: Vec<Vec<u8>> = (0..=255u8)
                    .filter(|&b| !allowed[usize::from(b)])
                    .map(|b| vec![b.to_ascii_lowercase()])
                    .collect();
                bytes.sort_unstable();
                bytes.dedup();
                (!bytes.is_empty()).then_some(bytes)
            }
            // Pure ASCII is valid UTF-8.
            Kind::ValidateUtf8Encoding => Some((0x80..=0xffu8).map(|b| vec![b]).collect()),
            Kind::ValidateUrlEncoding => Some(vec![b"%".to_vec()]),
            // libinjection's XSS verdicts all need a tag or an attribute value.
            Kind::DetectXss => Some(vec![b"<".to_vec(), b"=".to_vec()]),
            _ => None,
        }
    }

    /// Whether the operator can match some input made only of bytes in `alphabet` (see
    /// [`crate::alphabet`]); `true` when unsure (negation, numbers, macros,
    /// libinjection's SQL verdicts).
    pub(crate) fn possible_over(&self, alphabet: &crate::alphabet::Bytes) -> bool {
        use crate::alphabet::{case_closed, has, of, subset};
        if self.negated {
            return true;
        }
        let a = case_closed(alphabet);
        match &self.kind {
            Kind::Rx(re, _) => crate::alphabet::regex_possible(re.as_str(), alphabet),
            Kind::Pm(_, phrases) => phrases.iter().any(|p| subset(&of(p), &a)),
            Kind::Contains(Param::Static(s))
            | Kind::ContainsWord(Param::Static(s))
            | Kind::BeginsWith(Param::Static(s))
            | Kind::EndsWith(Param::Static(s))
            | Kind::StrEq(Param::Static(s)) => subset(&of(s), &a),
            Kind::ValidateByteRange(allowed) => {
                (0..=255u8).any(|b| !allowed[usize::from(b)] && has(alphabet, b))
            }
            Kind::ValidateUtf8Encoding => alphabet[2] | alphabet[3] != 0,
            Kind::ValidateUrlEncoding => has(alphabet, b'%'),
            Kind::DetectXss => has(alphabet, b'<') || has(alphabet, b'='),
            Kind::NoMatch => false,
            _ => true,
        }
    }

    /// Whether the operator matches `input` (negation applied). With `captures`, the
    /// groups of an `@rx` match (or the phrase an `@pm` found, as group 0) are appended.
    pub fn matches(&self, input: &[u8], r: &dyn Resolve, captures: Option<&mut Captures>) -> bool {
        let expanded = self.expand(r);
        self.matches_expanded(input, expanded.as_deref(), captures)
    }

    /// The parameter with its macros expanded, for an operator that has macros (`None`
    /// otherwise). A caller testing many values expands once and passes it to
    /// [`Operator::matches_expanded`].
    pub fn expand(&self, r: &dyn Resolve) -> Option<Vec<u8>> {
        self.macros().map(|m| m.expand(r))
    }

    /// [`Operator::matches`] with the parameter already expanded ([`Operator::expand`]).
    pub fn matches_expanded(
        &self,
        input: &[u8],
        expanded: Option<&[u8]>,
        captures: Option<&mut Captures>,
    ) -> bool {
        // A parameter with macros reads as its expansion (as empty if the caller gave
        // none).
        fn value<'a>(p: &'a Param, expanded: Option<&'a [u8]>) -> &'a [u8] {
            match p {
                Param::Static(s) => s,
                Param::Dynamic(_) => expanded.unwrap_or_default(),
            }
        }
        let get = |p| value(p, expanded);
        let hit = match &self.kind {
            Kind::Rx(re, needs) => {
                let holds = |set: &[u64; 4]| {
                    input
                        .iter()
                        .any(|&c| set[usize::from(c >> 6)] & (1 << (c & 63)) != 0)
                };
                needs.iter().all(holds) && rx(re, input, captures)
            }
            Kind::RxWhole => {
                if let Some(c) = captures {
                    c.push((0, input.to_vec()));
                }
                true
            }
            Kind::RxDynamic(_, cache) => {
                let pattern = expanded.unwrap_or_default();
                match cache.get(pattern) {
                    Some(re) => rx(&re, input, captures),
                    None => false,
                }
            }
            Kind::Pm(ac, phrases) => match ac.find(input) {
                Some(m) => {
                    if let Some(c) = captures {
                        c.push((0, phrases[m.pattern().as_usize()].clone()));
                    }
                    true
                }
                None => false,
            },
            Kind::Within(p) => input.is_empty() || find(get(p), input),
            Kind::Contains(p) => find(input, get(p)),
            Kind::ContainsWord(p) => contains_word(input, get(p)),
            Kind::BeginsWith(p) => input.starts_with(get(p)),
            Kind::EndsWith(p) => input.ends_with(get(p)),
            Kind::StrEq(p) => input == get(p),
            Kind::Eq(p) => stoi(input) == stoi(get(p)),
            Kind::Ge(p) => atoll(input) >= atoll(get(p)),
            Kind::Gt(p) => atoll(input) > atoll(get(p)),
            Kind::Le(p) => atoll(input) <= atoll(get(p)),
            Kind::Lt(p) => atoll(input) < atoll(get(p)),
            Kind::IpMatch(set) => std::str::from_utf8(input)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| set.iter().any(|c| c.contains(ip))),
            Kind::ValidateByteRange(allowed) => input.iter().any(|&b| !allowed[usize::from(b)]),
            Kind::ValidateUrlEncoding => !input.is_empty() && !valid_url_encoding(input),
            Kind::ValidateUtf8Encoding => !valid_utf8(input),
            Kind::Unconditional => true,
            Kind::NoMatch => false,
            Kind::DetectSqli => match crate::libinjection::sqli(input) {
                Some(fingerprint) => {
                    if let Some(c) = captures {
                        c.push((0, fingerprint.to_vec()));
                    }
                    true
                }
                None => false,
            },
            Kind::DetectXss => {
                let hit = crate::libinjection::xss(input);
                if hit {
                    if let Some(c) = captures {
                        c.push((0, input.to_vec()));
                    }
                }
                hit
            }
        };
        hit != self.negated
    }
}

/// Builds the byte regex for a PCRE pattern as ModSecurity compiles it.
pub fn regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&pcre_to_regex(pattern))
        .unicode(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_owned();
            format!("regular expression not supported: {last}")
        })
}

/// Rewrites PCRE syntax (non-UTF mode) into the `regex` crate's, keeping the meaning:
///
/// - `\x{HH}` and `\xH` become `\xHH`; `\e` becomes `\x1b`;
/// - an escaped punctuation character (`\"`, `\'`, `\<`, `\/` …: a literal in PCRE) becomes
///   its `\xHH` form (in `regex`, `\<` and `\>` are word boundaries);
/// - a `{` that does not start a counted repetition is a literal;
/// - in a character class: a leading `]`, a `[` that does not open a POSIX class, `&`
///   and `~` (class set operators in `regex`), and a `-` that cannot form a range are
///   literals;
/// - every byte above 0x7F is a `\xHH` byte (PCRE's non-UTF mode matches bytes).
fn pcre_to_regex(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 16);
    let hex = |out: &mut String, c: u8| out.push_str(&format!("\\x{c:02X}"));
    let mut i = 0;
    let mut in_class = false;
    // Inside a class: whether the previous item can start a range (a single character).
    let mut prev_single = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            let n = b[i + 1];
            let mut item_single = true;
            match n {
                b'x' => {
                    // \x{H…} or \xH(H)
                    if b.get(i + 2) == Some(&b'{') {
                        if let Some(close) = b[i + 3..].iter().position(|&x| x == b'}') {
                            let digits = &p[i + 3..i + 3 + close];
                            if let Ok(v) = u32::from_str_radix(digits, 16) {
                                if v <= 0xff {
                                    hex(&mut out, v as u8);
                                    i += 3 + close + 1;
                                    prev_single = true;
                                    continue;
                                }
                            }
                        }
                        out.push_str(&p[i..i + 2]);
                        i += 2;
                        continue;
                    }
                    let digits = b[i + 2..]
                        .iter()
                        .take(2)
                        .take_while(|x| x.is_ascii_hexdigit())
                        .count();
                    if digits == 0 {
                        hex(&mut out, 0);
                    } else {
                        let v = u8::from_str_radix(&p[i + 2..i + 2 + digits], 16).unwrap_or(0);
                        hex(&mut out, v);
                    }
                    i += 2 + digits;
                    prev_single = true;
                    continue;
                }
                b'e' => hex(&mut out, 0x1b),
                b'0'..=b'7' if in_class || b[i + 1] == b'0' => {
                    // Octal escape (\0, \012; back-references only outside classes).
                    let digits = b[i + 1..]
                        .iter()
                        .take(3)
                        .take_while(|x| (b'0'..=b'7').contains(x))
                        .count();
                    let v = u32::from_str_radix(&p[i + 1..i + 1 + digits], 8).unwrap_or(0);
                    hex(&mut out, (v & 0xff) as u8);
                    i += 1 + digits;
                    prev_single = true;
                    continue;
                }
                x if x.is_ascii_alphanumeric() => {
                    out.push('\\');
                    out.push(char::from(x));
                    item_single = !matches!(
                        x,
                        b'd' | b'D' | b'w' | b'W' | b's' | b'S' | b'h' | b'H' | b'v' | b'V'
                    );
                }
                x if x.is_ascii() => hex(&mut out, x),
                _ => {
                    // `\` before a non-ASCII byte: the byte itself.
                    hex(&mut out, n);
                }
            }
            i += 2;
            prev_single = item_single;
            continue;
        }
        if c >= 0x80 {
            hex(&mut out, c);
            i += 1;
            prev_single = true;
            continue;
        }
        if in_class {
            match c {
                b']' => {
                    in_class = false;
                    out.push(']');
                }
                b'[' => {
                    if b.get(i + 1) == Some(&b':') {
                        if let Some(end) = p[i..].find(":]") {
                            out.push_str(&p[i..i + end + 2]);
                            i += end + 2;
                            prev_single = false;
                            continue;
                        }
                    }
                    out.push_str("\\[");
                    prev_single = true;
                }
                b'&' | b'~' => {
                    hex(&mut out, c);
                    prev_single = true;
                }
                b'-' => {
                    let next = b.get(i + 1).copied();
                    let can_range = prev_single
                        && next.is_some_and(|x| x != b']')
                        && !(next == Some(b'\\')
                            && b.get(i + 2).is_some_and(|x| {
                                matches!(x, b'd' | b'D' | b'w' | b'W' | b's' | b'S')
                            }));
                    if can_range {
                        out.push('-');
                        // The range's end is consumed as the next item; after it, no range.
                        i += 1;
                        if b.get(i) == Some(&b'\\') || b.get(i).is_some_and(|&x| x >= 0x80) {
                            prev_single = false;
                            continue;
                        }
                        if let Some(&e) = b.get(i) {
                            if e == b'[' || e == b'&' || e == b'~' {
                                hex(&mut out, e);
                            } else {
                                out.push(char::from(e));
                            }
                            i += 1;
                        }
                        prev_single = false;
                        continue;
                    }
                    out.push_str("\\-");
                    prev_single = true;
                }
                _ => {
                    out.push(char::from(c));
                    prev_single = true;
                }
            }
            i += 1;
            continue;
        }
        match c {
            b'[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    out.push_str("\\]");
                    i += 1;
                    prev_single = true;
                } else {
                    prev_single = false;
                }
                continue;
            }
            b'{' => {
                if let Some(len) = counted_repetition(&b[i..]) {
                    out.push_str(&p[i..i + len]);
                    i += len;
                    continue;
                }
                out.push_str("\\{");
            }
            b'}' => out.push_str("\\}"),
            _ => out.push(char::from(c)),
        }
        i += 1;
    }
    out
}

/// The length of a `{n}`, `{n,}` or `{n,m}` at the start of `s` (PCRE takes any other
/// `{` literally).
fn counted_repetition(s: &[u8]) -> Option<usize> {
    let close = s.iter().position(|&c| c == b'}')?;
    let inner = &s[1..close];
    let (a, b) = match inner.iter().position(|&c| c == b',') {
        Some(p) => (&inner[..p], Some(&inner[p + 1..])),
        None => (inner, None),
    };
    let digits = |x: &[u8]| !x.is_empty() && x.iter().all(u8::is_ascii_digit);
    let ok = digits(a) && b.is_none_or(|b| b.is_empty() || digits(b));
    ok.then_some(close + 1)
}

fn rx(re: &Regex, input: &[u8], captures: Option<&mut Captures>) -> bool {
    match captures {
        None => re.is_match(input),
        // Most values do not match: the fast test first, groups only for a match.
        Some(_) if !re.is_match(input) => false,
        Some(c) => match re.captures(input) {
            Some(caps) => {
                for (i, g) in caps.iter().enumerate() {
                    if let Some(g) = g {
                        c.push((i, g.as_bytes().to_vec()));
                    }
                }
                true
            }
            None => false,
        },
    }
}

/// `@pm`'s parameter: phrases separated by spaces; `|41 42|` is bytes in hex; `\` escapes
/// `: ; \ "`; surrounding double quotes are dropped. A malformed escape or hex run makes
/// ModSecurity take the parameter as written, and so do we.
fn pm_phrases(param: &str) -> Vec<Vec<u8>> {
    let parsed = parse_pm_content(param).unwrap_or_else(|| param.as_bytes().to_vec());
    parsed
        .split(|c| c.is_ascii_whitespace())
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn parse_pm_content(param: &str) -> Option<Vec<u8>> {
    let start = param.find(|c| c != ' ' && c != '\t')?;
    let mut s = &param.as_bytes()[start..];
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        s = &s[1..s.len() - 1];
    }
    let mut out = Vec::with_capacity(s.len());
    let (mut bin, mut esc) = (false, false);
    let mut hex = Vec::new();
    for &c in s {
        if c == b'|' {
            bin = !bin;
        } else if !esc && c == b'\\' {
            esc = true;
        } else if bin {
            if !c.is_ascii_hexdigit() {
                return None;
            }
            hex.push(c);
            if hex.len() == 2 {
                let v = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())?;
                out.push(v);
                hex.clear();
            }
        } else if esc {
            if !matches!(c, b':' | b';' | b'\\' | b'"') {
                return None;
            }
            out.push(c);
            esc = false;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn pm(phrases: Vec<Vec<u8>>) -> Result<Kind, String> {
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(&phrases)
        .map_err(|e| format!("phrase list not usable: {e}"))?;
    Ok(Kind::Pm(Box::new(ac), phrases))
}

fn is_comment(line: &str) -> bool {
    match line.find('#') {
        Some(p) => line[..p].bytes().all(|c| c.is_ascii_whitespace()),
        None => line.is_empty(),
    }
}

fn read_data(files: &DataFiles<'_>, name: &str) -> Result<String, String> {
    if name.starts_with("https://") || name.starts_with("http://") {
        return Err(format!(
            "data file `{name}` would be downloaded: Rampart reads data files from disk only"
        ));
    }
    let path = files.dir.join(name);
    files
        .fs
        .read(&path)
        .map_err(|e| format!("cannot read data file {}: {e}", path.display()))
}

/// An address range for `@ipMatch`: host bits past the prefix are ignored (as in
/// ModSecurity), and IPv4-mapped IPv6 forms are the IPv4 addresses they map.
#[derive(Debug, Clone, Copy)]
struct IpNet {
    v6: bool,
    bits: u128,
    prefix: u32,
}

impl IpNet {
    fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = a.trim().parse::<IpAddr>().ok()?;
        let (v6, bits, max) = ip_bits(addr);
        let mut prefix = match p {
            Some(p) => p.trim().parse::<u32>().ok()?,
            None => max,
        };
        if addr.is_ipv6() && !v6 && p.is_some() {
            // `::ffff:a.b.c.d/120`: a prefix over the mapped form.
            prefix = prefix.checked_sub(96)?;
        }
        (prefix <= max).then_some(IpNet { v6, bits, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits, max) = match (self.v6, ip) {
            // An IPv6 range compares IPv6 addresses as written, mapped ones included.
            (true, IpAddr::V6(a)) => (true, u128::from(a), 128),
            _ => ip_bits(ip),
        };
        if v6 != self.v6 {
            return false;
        }
        let shift = max - self.prefix;
        if shift >= 128 {
            return true;
        }
        (bits >> shift) == (self.bits >> shift)
    }
}

/// `(is IPv6, address bits, width)`, with IPv4-mapped IPv6 taken as IPv4.
fn ip_bits(ip: IpAddr) -> (bool, u128, u32) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (false, u128::from(u32::from(v4)), 32),
            None => (true, u128::from(a), 128),
        },
    }
}

fn cidrs<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<IpNet>, String> {
    items
        .filter(|s| !s.is_empty())
        .map(|s| IpNet::parse(s).ok_or_else(|| format!("`{s}` is not an IP address or CIDR range")))
        .collect()
}

fn byte_ranges(p: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|&n| n <= 255)
                .ok_or_else(|| format!("`{part}` is not a byte or byte range (0-255)"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b {
            return Err(format!("empty byte range `{part}`"));
        }
        for x in a..=b {
            allowed[usize::from(x)] = true;
        }
    }
    Ok(allowed)
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || memchr::memmem::find(haystack, needle).is_some()
}

fn contains_word(input: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    if input.is_empty() {
        return false;
    }
    // A word boundary here is anything but an ASCII letter (as in ModSecurity).
    let boundary = |i: Option<usize>| {
        i.and_then(|i| input.get(i))
            .is_none_or(|c| !c.is_ascii_alphabetic())
    };
    let mut from = 0;
    while let Some(off) = input[from..].windows(word.len()).position(|w| w == word) {
        let pos = from + off;
        if boundary(pos.checked_sub(1)) && boundary(Some(pos + word.len())) {
            return true;
        }
        from = pos + 1;
        if from + word.len() > input.len() {
            break;
        }
    }
    false
}

/// C's `atoll`: leading whitespace, a sign, digits; stops at anything else; saturates.
pub(crate) fn atoll(s: &[u8]) -> i64 {
    let s = &s[s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .count()..];
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for &d in digits.iter().take_while(|c| c.is_ascii_digit()) {
        let x = i64::from(d - b'0');
        v = match v.checked_mul(10).and_then(|v| {
            if neg {
                v.checked_sub(x)
            } else {
                v.checked_add(x)
            }
        }) {
            Some(v) => v,
            None => return if neg { i64::MIN } else { i64::MAX },
        };
    }
    v
}

/// C++'s `std::stoi` as `@eq` uses it: like `atoll`, but no digits or a value outside
/// `int` makes it throw, which ModSecurity turns into 0.
fn stoi(s: &[u8]) -> i64 {
    let t = &s[s
        .iter()
        .take_while(|c| c.is_ascii_whitespace() || **c == 0x0b)
        .count()..];
    let digits = t
        .strip_prefix(b"-")
        .or_else(|| t.strip_prefix(b"+"))
        .unwrap_or(t);
    if !digits.first().is_some_and(u8::is_ascii_digit) {
        return 0;
    }
    let v = atoll(s);
    if v < i64::from(i32::MIN) || v > i64::from(i32::MAX) {
        0
    } else {
        v
    }
}

pub(crate) fn valid_url_encoding(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if i + 2 >= input.len()
                || !input[i + 1].is_ascii_hexdigit()
                || !input[i + 2].is_ascii_hexdigit()
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// ModSecurity's UTF-8 check: like the standard, except that lead bytes F0–F4 may encode
/// values above U+10FFFF.
fn valid_utf8(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        let left = input.len() - i;
        let cont = |k: usize| input.get(i + k).is_some_and(|&b| b & 0xc0 == 0x80);
        let (len, d) = if c & 0x80 == 0 {
            (1, 0)
        } else if c & 0xe0 == 0xc0 {
            if left < 2 || !cont(1) {
                return false;
            }
            (
                2,
                (u32::from(c & 0x1f) << 6) | u32::from(input[i + 1] & 0x3f),
            )
        } else if c & 0xf0 == 0xe0 {
            if left < 3 || !cont(1) || !cont(2) {
                return false;
            }
            (
                3,
                (u32::from(c & 0x0f) << 12)
                    | (u32::from(input[i + 1] & 0x3f) << 6)
                    | u32::from(input[i + 2] & 0x3f),
            )
        } else if c & 0xf8 == 0xf0 {
            if c >= 0xf5 || left < 4 || !cont(1) || !cont(2) || !cont(3) {
                return false;
            }
            (
                4,
                (u32::from(c & 0x07) << 18)
                    | (u32::from(input[i + 1] & 0x3f) << 12)
                    | (u32::from(input[i + 2] & 0x3f) << 6)
                    | u32::from(input[i + 3] & 0x3f),
            )
        } else {
            return false;
        };
        if (0xd800..=0xdfff).contains(&d)
            || (len == 4 && d < 0x1_0000)
            || (len == 3 && d < 0x800)
            || (len == 2 && d < 0x80)
        {
            return false;
        }
        i += len;
    }
    true
}

#[cfg(test)]
mod tests;
