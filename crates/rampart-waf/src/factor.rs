//! Required literals ("factors") of a regular expression: a set of byte strings such that
//! every match contains at least one of them. The engine feeds the factors of all rules
//! into one Aho-Corasick automaton, so a rule whose factors do not occur in a value is
//! skipped without running its expression — most rules, on benign input.
//!
//! The analysis walks the expression's syntax tree and keeps, per node, four sets:
//! `exact` (a finite superset of the strings it matches, when there is one), `prefix`
//! (every match starts with one of them), `suffix` (ends with one) and `required` (contains
//! one). A set holding the empty string says nothing. Concatenation crosses suffixes with
//! prefixes, alternation unions, and the best `required` set (the rarest shortest literal,
//! then the fewest literals) wins. Sets are lower-cased: the automaton matches ASCII
//! case-insensitively, so a case-sensitive rule may be a candidate more often than
//! needed — never less.

use regex_syntax::hir::{Class, Hir, HirKind};

/// A set of literals, sorted and without duplicates. `[b""]` means "nothing known".
type Set = Vec<Vec<u8>>;

/// Cross products larger than this are not built (the shorter sets are used instead).
const CROSS_CAP: usize = 64;
/// Alternations with more literals than this say nothing.
const UNION_CAP: usize = 4096;
/// Classes with more (case-folded) members than this say nothing.
const CLASS_CAP: usize = 10;
/// A factor set weaker than this is not worth a prefilter (see [`score`]): a single
/// letter, digit or space would be found in nearly every value.
const MIN_SCORE: u32 = 3;

#[derive(Debug, Clone)]
struct Info {
    exact: Option<Set>,
    prefix: Set,
    suffix: Set,
    required: Set,
    /// The required set with the fewest literals (what an alternation of many branches
    /// falls back to when the union of their best sets is too large).
    compact: Set,
}

fn unknown() -> Set {
    vec![Vec::new()]
}

impl Info {
    fn exact(set: Set) -> Info {
        Info {
            exact: Some(set.clone()),
            prefix: set.clone(),
            suffix: set.clone(),
            required: set.clone(),
            compact: set,
        }
    }

    fn opaque() -> Info {
        Info {
            exact: None,
            prefix: unknown(),
            suffix: unknown(),
            required: unknown(),
            compact: unknown(),
        }
    }

    /// Another set every match holds a literal of.
    fn offer(&mut self, set: Set) {
        if smaller(&set, &self.compact) {
            self.compact = set.clone();
        }
        self.required = better(std::mem::take(&mut self.required), set);
    }
}

/// Whether `a` is a more compact usable set than `b`.
fn smaller(a: &Set, b: &Set) -> bool {
    let (ua, ub) = (score(a) >= MIN_SCORE, score(b) >= MIN_SCORE);
    if ua != ub {
        return ua;
    }
    a.len() < b.len() || (a.len() == b.len() && score(a) > score(b))
}

/// The required literals of a pattern already in the `regex` crate's syntax, parsed with
/// the flags the engine uses (bytes, no Unicode, `.` matches newline, multi-line), or
/// `None` when no useful set exists (the rule then always runs its expression).
pub(crate) fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let (first, _) = groups(pattern)?;
    (score(&first) >= MIN_SCORE).then_some(first)
}

/// Sets of bytes such that every match holds a byte of *each* set (both ASCII cases
/// included): the groups of [`groups`] made only of one-byte literals, found even where
/// none is selective enough to gate the rule. Checking them costs one pass over a value,
/// far less than running the expression.
pub(crate) fn required_bytes(pattern: &str) -> Vec<[u64; 4]> {
    let Some((first, extra)) = groups(pattern) else {
        return Vec::new();
    };
    std::iter::once(first)
        .chain(extra)
        .filter(|set| !set.is_empty() && set.iter().all(|l| l.len() == 1))
        .map(|set| {
            let mut bits = [0u64; 4];
            for l in &set {
                for c in [l[0].to_ascii_lowercase(), l[0].to_ascii_uppercase()] {
                    bits[usize::from(c >> 6)] |= 1 << (c & 63);
                }
            }
            bits
        })
        .collect()
}

/// Extra groups beyond the first, at most.
const EXTRA_GROUPS: usize = 3;
/// An extra group with more literals than this is not kept.
const GROUP_CAP: usize = 64;

/// Groups of literals such that every match holds a literal of *each* group: first the
/// whole pattern's required set (however weak; [`required_literals`] when selective
/// enough), then up to three more: the required sets of the parts of a top-level
/// concatenation, each a further condition — `on[a-z]+\s*=` needs `on` *and* `=`.
fn groups(pattern: &str) -> Option<(Set, Vec<Set>)> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    let info = analyse(&hir);
    let mut top = &hir;
    while let HirKind::Capture(c) = top.kind() {
        top = &c.sub;
    }
    let mut extra: Vec<Set> = Vec::new();
    if let HirKind::Concat(children) = top.kind() {
        for child in children {
            let set = analyse(child).required;
            if !set.is_empty()
                && !set.iter().any(Vec::is_empty)
                && set.len() <= GROUP_CAP
                && set != info.required
                && !extra.contains(&set)
            {
                extra.push(set);
            }
        }
    }
    // The fewest literals first: the strongest conditions. A group every literal of an
    // earlier group already contains (`o` after `on`) adds nothing.
    extra.sort_by_key(Vec::len);
    let mut kept: Vec<Set> = Vec::new();
    for set in extra {
        if kept.len() == EXTRA_GROUPS {
            break;
        }
        if !implied(&set, &info.required) && !kept.iter().any(|g| implied(&set, g)) {
            kept.push(set);
        }
    }
    Some((info.required, kept))
}

/// Whether holding a literal of `by` means holding one of `set`.
fn implied(set: &Set, by: &Set) -> bool {
    by.iter().all(|b| {
        set.iter().any(|l| {
            l.is_empty() || (l.len() <= b.len() && b.windows(l.len()).any(|w| w == l.as_slice()))
        })
    })
}

/// How selective a set is: the weakest literal's [`weight`]. A set holding the empty
/// string scores 0; the empty set (nothing can match) scores highest.
fn score(set: &Set) -> u32 {
    set.iter()
        .map(|lit| lit.iter().map(|&c| weight(c)).sum::<u32>())
        .min()
        .unwrap_or(u32::MAX)
}

/// Letters, digits and space are the commonest bytes of benign values (weight 2), then
/// the punctuation of URLs, forms, dates and user agents (3); quotes, angle brackets,
/// `$`, `|`, `` ` ``, braces, backslash and control bytes are rare (4).
fn weight(c: u8) -> u32 {
    if c.is_ascii_alphanumeric() || c == b' ' {
        2
    } else if b".,-_/:;=&?+%()".contains(&c) {
        3
    } else {
        4
    }
}

fn better(a: Set, b: Set) -> Set {
    let (sa, sb) = (score(&a), score(&b));
    if sa > sb || (sa == sb && a.len() <= b.len()) {
        a
    } else {
        b
    }
}

fn normalise(mut set: Set) -> Set {
    set.sort_unstable();
    set.dedup();
    set
}

fn cross(a: &Set, b: &Set) -> Option<Set> {
    if a.len().saturating_mul(b.len()) > CROSS_CAP {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(normalise(out))
}

fn union(sets: impl Iterator<Item = Set>) -> Set {
    let mut out = Vec::new();
    for s in sets {
        if s.iter().any(Vec::is_empty) {
            return unknown();
        }
        out.extend(s);
        if out.len() > UNION_CAP {
            return unknown();
        }
    }
    normalise(out)
}

fn analyse(h: &Hir) -> Info {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::exact(unknown()),
        HirKind::Literal(lit) => Info::exact(vec![lit.0.to_ascii_lowercase()]),
        HirKind::Class(class) => match class_members(class) {
            Some(set) => Info::exact(set),
            None => Info::opaque(),
        },
        HirKind::Capture(c) => analyse(&c.sub),
        HirKind::Repetition(rep) => {
            let sub = analyse(&rep.sub);
            if rep.min == 0 {
                // `x?` is exactly x or nothing; other optional repetitions say nothing.
                let exact = match (rep.max, &sub.exact) {
                    (Some(1), Some(e)) => {
                        let mut e = e.clone();
                        e.push(Vec::new());
                        Some(normalise(e))
                    }
                    _ => None,
                };
                return Info {
                    exact,
                    ..Info::opaque()
                };
            }
            let exact = if rep.max == Some(1) {
                sub.exact.clone()
            } else {
                None
            };
            let span = (rep.min >= 2)
                .then(|| cross(&sub.suffix, &sub.prefix))
                .flatten();
            let mut info = Info { exact, ..sub };
            if let Some(span) = span {
                info.offer(span);
            }
            info
        }
        HirKind::Concat(children) => {
            let infos: Vec<Info> = children.iter().map(analyse).collect();
            let mut acc = Info::exact(unknown());
            for info in &infos {
                acc = concat(acc, info.clone());
            }
            // Relaxed: optional pieces with no finite form (`[\"']*` between the letters
            // of an evaded word) assumed empty; a match where one is not holds one of
            // its non-empty literals instead.
            let mut escape: Set = Vec::new();
            let mut relaxed = Info::exact(unknown());
            let mut dropped = false;
            for (child, info) in children.iter().zip(infos) {
                if info.exact.is_none() && nullable(child) {
                    escape.extend(nonempty_required(child));
                    dropped = true;
                } else {
                    relaxed = concat(relaxed, info);
                }
            }
            if dropped && !escape.iter().any(Vec::is_empty) {
                for base in [relaxed.required, relaxed.compact] {
                    let mut candidate = base;
                    candidate.extend(escape.iter().cloned());
                    if candidate.len() <= UNION_CAP {
                        acc.offer(normalise(candidate));
                    }
                }
            }
            acc
        }
        HirKind::Alternation(children) => {
            let infos: Vec<Info> = children.iter().map(analyse).collect();
            let exact = if infos.iter().all(|i| i.exact.is_some()) {
                let mut all = Vec::new();
                for i in &infos {
                    all.extend(i.exact.clone().unwrap_or_default());
                }
                (all.len() <= UNION_CAP).then(|| normalise(all))
            } else {
                None
            };
            let best = union(infos.iter().map(|i| i.required.clone()));
            let compact = union(infos.iter().map(|i| i.compact.clone()));
            let mut info = Info {
                exact,
                prefix: union(infos.iter().map(|i| i.prefix.clone())),
                suffix: union(infos.iter().map(|i| i.suffix.clone())),
                required: best.clone(),
                compact: best,
            };
            info.offer(compact);
            info
        }
    }
}

fn nullable(h: &Hir) -> bool {
    h.properties().minimum_len() == Some(0)
}

/// Literals of which every *non-empty* match holds one (`[]`: there is no non-empty
/// match; `[b""]`: nothing known).
fn nonempty_required(h: &Hir) -> Set {
    if !nullable(h) {
        return analyse(h).required;
    }
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(_) | HirKind::Class(_) => analyse(h).required,
        HirKind::Capture(c) => nonempty_required(&c.sub),
        HirKind::Repetition(r) => nonempty_required(&r.sub),
        // A non-empty match of a nullable concatenation or alternation is a non-empty
        // match of one of its parts.
        HirKind::Concat(children) | HirKind::Alternation(children) => {
            let mut out = Vec::new();
            for c in children {
                let part = nonempty_required(c);
                if part.iter().any(Vec::is_empty) {
                    return unknown();
                }
                out.extend(part);
                if out.len() > UNION_CAP {
                    return unknown();
                }
            }
            normalise(out)
        }
    }
}

fn concat(a: Info, b: Info) -> Info {
    let exact = match (&a.exact, &b.exact) {
        (Some(x), Some(y)) => cross(x, y),
        _ => None,
    };
    let prefix = match &a.exact {
        Some(x) => cross(x, &b.prefix).unwrap_or_else(|| better(x.clone(), a.prefix.clone())),
        None => a.prefix.clone(),
    };
    let suffix = match &b.exact {
        Some(y) => cross(&a.suffix, y).unwrap_or_else(|| better(y.clone(), b.suffix.clone())),
        None => b.suffix.clone(),
    };
    let span = cross(&a.suffix, &b.prefix);
    let mut info = Info {
        exact: exact.clone(),
        prefix,
        suffix,
        required: a.required,
        compact: a.compact,
    };
    info.offer(b.required);
    info.offer(b.compact);
    if let Some(span) = span {
        info.offer(span);
    }
    if let Some(e) = exact {
        info.offer(e);
    }
    info
}

/// A class's members as one-byte literals, case-folded, when there are few.
fn class_members(class: &Class) -> Option<Set> {
    let mut bytes = Vec::new();
    match class {
        Class::Bytes(c) => {
            for r in c.ranges() {
                if usize::from(r.end() - r.start()) >= 2 * CLASS_CAP {
                    return None;
                }
                bytes.extend((r.start()..=r.end()).map(|b| b.to_ascii_lowercase()));
            }
        }
        Class::Unicode(c) => {
            for r in c.ranges() {
                let (s, e) = (u32::from(r.start()), u32::from(r.end()));
                if e > 0x7f || e - s >= 2 * CLASS_CAP as u32 {
                    return None;
                }
                bytes.extend(
                    (s..=e)
                        .filter_map(|b| u8::try_from(b).ok())
                        .map(|b| b.to_ascii_lowercase()),
                );
            }
        }
    }
    bytes.sort_unstable();
    bytes.dedup();
    (bytes.len() <= CLASS_CAP).then(|| bytes.into_iter().map(|b| vec![b]).collect())
}

#[cfg(test)]
mod tests {
    use super::{groups as all_groups, required_bytes, required_literals};

    /// The groups when the first is selective enough to gate a rule.
    fn required_groups(p: &str) -> Option<Vec<Vec<Vec<u8>>>> {
        let lits = required_literals(p)?;
        let (_, extra) = all_groups(p)?;
        Some(std::iter::once(lits).chain(extra).collect())
    }

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|v| {
            v.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn literals_and_alternations() {
        assert_eq!(lits("union"), Some(vec!["union".into()]));
        assert_eq!(lits("(?i)UNION"), Some(vec!["union".into()]));
        assert_eq!(
            lits("(?i)(?:union|select).+"),
            Some(vec!["select".into(), "union".into()])
        );
        // The better literal of a concatenation wins.
        assert_eq!(lits("a.+script"), Some(vec!["script".into()]));
        // Optional pieces are crossed into exact alternatives.
        assert_eq!(lits("colou?r"), Some(vec!["color".into(), "colour".into()]));
    }

    #[test]
    fn unselective_patterns_have_no_factors() {
        // Anything, optional things, a large class, a single letter.
        for p in [
            "",
            ".*",
            "x?",
            "[a-z]+",
            "a",
            "^$",
            "(?:abc|\\d)",
            "(?:abc)*",
        ] {
            assert_eq!(lits(p), None, "{p}");
        }
    }

    #[test]
    fn spans_across_a_concatenation() {
        // `<` alone scores 2; the cross `<s`/`<i` is better and still required.
        assert_eq!(lits("<[si]\\w*"), Some(vec!["<i".into(), "<s".into()]));
        assert_eq!(lits("on\\w+\\s*="), Some(vec!["on".into()]));
    }

    #[test]
    fn evasion_gaps_add_their_own_literals() {
        // Either the word is whole, or a gap holds a quote, a backslash or `$`.
        assert_eq!(
            lits(r#"(?i)c["'\x5c]*(?:\$[a-z]*)?a["'\x5c]*(?:\$[a-z]*)?t"#),
            Some(vec![
                "\"".into(),
                "$".into(),
                "'".into(),
                "\\".into(),
                "cat".into()
            ])
        );
    }

    /// Every match of the pattern contains one of its factors — checked on the matches
    /// the regex engine itself finds in sample texts.
    #[test]
    fn every_match_contains_a_factor() {
        let samples: &[&[u8]] = &[
            b"1 UNION SELECT password FROM users--",
            b"<script>alert(1)</script> <img src=x onerror=alert(1)>",
            b"../../etc/passwd; cat /etc/shadow | nc 10.0.0.1",
            b"${jndi:ldap://x}{{7*7}} ' or 1=1 -- ",
            b"c'a't /etc/passwd; c$@at x; c\\at y; cat z",
        ];
        let patterns = [
            r"(?i)union\s+(?:all\s+)?select",
            r"(?i)<script[^>]*>",
            r"(?i)\bon[a-z]+\s*=",
            r"(?:\.\./)+etc/(?:passwd|shadow)",
            r"(?i)(?:cat|nc|wget)\s",
            r"\$\{jndi:",
            r"\{\{.*\}\}",
            r"'\s*or\s+\d+=\d+",
            // Evasion gaps between letters, as CRS writes command names.
            r#"(?i)c["'\x5c]*(?:\$[a-z]*)?a["'\x5c]*(?:\$[a-z]*)?t\b"#,
        ];
        for p in patterns {
            let groups = required_groups(p).expect(p);
            assert_eq!(required_literals(p).as_ref(), groups.first(), "{p}");
            let bytes = required_bytes(p);
            let re = regex::bytes::RegexBuilder::new(p)
                .unicode(false)
                .build()
                .expect(p);
            for s in samples {
                for m in re.find_iter(s) {
                    for set in &bytes {
                        assert!(
                            m.as_bytes()
                                .iter()
                                .any(|&c| set[usize::from(c >> 6)] & (1 << (c & 63)) != 0),
                            "{p}: match {:?} lacks a required byte",
                            String::from_utf8_lossy(m.as_bytes())
                        );
                    }
                }
            }
            for factors in groups {
                let factors = &factors;
                let re = regex::bytes::RegexBuilder::new(p)
                    .unicode(false)
                    .build()
                    .expect(p);
                let mut matched = 0;
                for s in samples {
                    for m in re.find_iter(s) {
                        matched += 1;
                        let text = m.as_bytes().to_ascii_lowercase();
                        assert!(
                            factors
                                .iter()
                                .any(|f| text.windows(f.len()).any(|w| w == f.as_slice())),
                            "{p}: match {:?} holds none of {factors:?}",
                            String::from_utf8_lossy(&text)
                        );
                    }
                }
                assert!(matched > 0, "{p} matched no sample");
            }
        }
    }

    #[test]
    fn concatenations_add_conditions() {
        let groups = |p: &str| {
            required_groups(p).map(|g| {
                g.iter()
                    .map(|s| {
                        s.iter()
                            .map(|l| String::from_utf8_lossy(l).into_owned())
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            })
        };
        // CRS 941120's shape: `on` gates, `=` is a further condition.
        assert_eq!(
            groups(r"(?i)[\s\x22'`;/0-9=]on[a-zA-Z]{3,50}[\s;,(+]*?=[^=]"),
            Some(vec![vec!["on".to_owned()], vec!["=".to_owned()]])
        );
        // No concatenation at the top: one group.
        assert_eq!(
            groups(r"(?i)union|select"),
            Some(vec![vec!["select".to_owned(), "union".to_owned()]])
        );
        assert_eq!(groups(r"^.*$"), None);
        // One-byte groups, both cases, even without a selective literal.
        let bytes = required_bytes(r"(?i)[a-z]+\s*=\s*[a-z]+\(");
        let has = |set: &[u64; 4], c: u8| set[usize::from(c >> 6)] & (1 << (c & 63)) != 0;
        assert_eq!(bytes.len(), 2, "= and (");
        assert!(bytes.iter().any(|s| has(s, b'=') && !has(s, b'(')));
        assert!(bytes.iter().any(|s| has(s, b'(') && !has(s, b'=')));
        let bytes = required_bytes(r"[^z]+[ab]");
        assert!(
            bytes
                .iter()
                .any(|s| has(s, b'a') && has(s, b'A') && has(s, b'b'))
        );
    }
}
