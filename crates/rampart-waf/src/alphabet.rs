//! Which rules can match a value made only of certain bytes.
//!
//! Most benign request values are drawn from a small alphabet — letters, digits, a space
//! and a little punctuation (`john.doe@example.com`, `2026-12-01`, `Main Street 12`) —
//! on which most CRS rules cannot match at all: a command-injection pattern needs a `;`,
//! `|` or a backtick, a cross-site-scripting one a `<` or a `(`. This module decides that
//! at load, conservatively (`true` when unsure), so that the engine can skip such rules
//! for values whose bytes all lie in the alphabet, without running their expressions or
//! even scanning the value for their literals:
//!
//! - [`regex_possible`]: whether an expression matches some string over an alphabet, by a
//!   walk of its syntax tree (assertions such as `\b` and `^` are taken as satisfiable);
//! - [`transform_output`]: a superset of the bytes a transformation can produce from
//!   input over an alphabet (`urlDecode` keeps the alphabet when it holds neither `%` nor
//!   `+`; `base64Decode` can produce any byte).

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::seclang::Transform;

/// A set of bytes as four 64-bit words (bytes 0–63, 64–127, …).
pub(crate) type Bytes = [u64; 4];

/// Every byte.
pub(crate) const ALL: Bytes = [u64::MAX; 4];

/// Whether `c` is in `set`.
pub(crate) fn has(set: &Bytes, c: u8) -> bool {
    set[usize::from(c >> 6)] & (1 << (c & 63)) != 0
}

/// Adds `c` to `set`.
pub(crate) fn add(set: &mut Bytes, c: u8) {
    set[usize::from(c >> 6)] |= 1 << (c & 63);
}

/// The set of the given bytes.
pub(crate) fn of(bytes: &[u8]) -> Bytes {
    crate::transform::ByteSet::of(bytes).words()
}

/// Whether every member of `a` is in `b`.
pub(crate) fn subset(a: &Bytes, b: &Bytes) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

fn union(a: &Bytes, b: &Bytes) -> Bytes {
    [a[0] | b[0], a[1] | b[1], a[2] | b[2], a[3] | b[3]]
}

fn any(set: &Bytes, cs: &[u8]) -> bool {
    cs.iter().any(|&c| has(set, c))
}

/// `set` with both ASCII cases of each letter it holds.
pub(crate) fn case_closed(set: &Bytes) -> Bytes {
    let mut out = *set;
    for c in b'a'..=b'z' {
        if has(set, c) || has(set, c.to_ascii_uppercase()) {
            add(&mut out, c);
            add(&mut out, c.to_ascii_uppercase());
        }
    }
    out
}

/// Whether the expression `pattern` (in the `regex` crate's syntax, parsed with the
/// engine's flags) matches some string made only of bytes in `alphabet`. `true` when
/// the pattern does not parse (unsure).
pub(crate) fn regex_possible(pattern: &str, alphabet: &Bytes) -> bool {
    let parsed = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern);
    match parsed {
        Ok(hir) => possible(&hir, alphabet),
        Err(_) => true,
    }
}

fn possible(h: &Hir, a: &Bytes) -> bool {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(lit) => lit.0.iter().all(|&c| has(a, c)),
        HirKind::Class(Class::Bytes(c)) => c.ranges().iter().any(|r| {
            let (lo, hi) = (r.start(), r.end());
            (lo..=hi).any(|b| has(a, b))
        }),
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().any(|r| {
            let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
            // A character above 0x7F is encoded with bytes above 0x7F.
            let ascii = (lo..=hi.min(0x7f)).any(|b| u8::try_from(b).is_ok_and(|b| has(a, b)));
            ascii || (hi > 0x7f && a[2] | a[3] != 0)
        }),
        HirKind::Repetition(rep) => rep.min == 0 || possible(&rep.sub, a),
        HirKind::Capture(cap) => possible(&cap.sub, a),
        HirKind::Concat(parts) => parts.iter().all(|p| possible(p, a)),
        HirKind::Alternation(alts) => alts.iter().any(|p| possible(p, a)),
    }
}

fn spaces() -> Bytes {
    of(b" \t\n\x0b\x0c\r")
}

/// A superset of the bytes `t` can produce from an input whose bytes all lie in `a`.
pub(crate) fn transform_output(t: Transform, a: &Bytes) -> Bytes {
    let plus_space = |set: &Bytes| {
        let mut s = *set;
        add(&mut s, b' ');
        s
    };
    match t {
        Transform::None => *a,
        Transform::Lowercase | Transform::Uppercase => case_closed(a),
        Transform::UrlDecode | Transform::UrlDecodeUni => {
            if has(a, b'%') {
                ALL
            } else if has(a, b'+') {
                plus_space(a)
            } else {
                *a
            }
        }
        Transform::HtmlEntityDecode => {
            if has(a, b'&') {
                ALL
            } else {
                *a
            }
        }
        Transform::JsDecode | Transform::CssDecode | Transform::EscapeSeqDecode => {
            if has(a, b'\\') { ALL } else { *a }
        }
        // Drop bytes, or turn them into a space (`replaceNulls`: NUL to space;
        // `compressWhitespace`: every space character to ` `; comments to a space).
        Transform::RemoveNulls
        | Transform::RemoveWhitespace
        | Transform::Trim
        | Transform::TrimLeft
        | Transform::TrimRight
        | Transform::RemoveComments
        | Transform::RemoveCommentsChar => *a,
        Transform::ReplaceNulls | Transform::ReplaceComments => plus_space(a),
        Transform::CompressWhitespace => {
            if any(a, &[b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0xa0]) {
                union(a, &spaces())
            } else {
                *a
            }
        }
        // Lower-cases, deletes `\ " ' ^`, turns `,` `;` and space characters into a
        // space.
        Transform::CmdLine => plus_space(&case_closed(a)),
        Transform::NormalisePath => *a,
        Transform::NormalisePathWin => {
            let mut s = *a;
            if has(a, b'\\') {
                add(&mut s, b'/');
            }
            s
        }
        Transform::Utf8ToUnicode => {
            if a[2] | a[3] != 0 {
                union(a, &of(b"%uU0123456789abcdefABCDEF"))
            } else {
                *a
            }
        }
        Transform::ParityZero7bit => {
            // Clears the high bit.
            let mut s = [a[0], a[1], 0, 0];
            s[0] |= a[2];
            s[1] |= a[3];
            s
        }
        Transform::Length => of(b"0123456789"),
        Transform::HexEncode => of(b"0123456789abcdef"),
        Transform::Md5
        | Transform::Sha1
        | Transform::Base64Decode
        | Transform::Base64DecodeExt
        | Transform::Base64Encode
        | Transform::HexDecode
        | Transform::SqlHexDecode
        | Transform::ParityEven7bit
        | Transform::ParityOdd7bit
        | Transform::UrlEncode => ALL,
    }
}

/// A superset of the bytes a chain of transformations (applied in order) can produce
/// from an input over `a`; with `multi_match`, of every step's result and the input.
pub(crate) fn chain_output(steps: &[Transform], a: &Bytes, multi_match: bool) -> Bytes {
    let mut cur = *a;
    let mut seen = *a;
    for &t in steps {
        cur = transform_output(t, &cur);
        seen = union(&seen, &cur);
    }
    if multi_match { seen } else { cur }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alnum() -> Bytes {
        of(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .-_@")
    }

    #[test]
    fn expressions_over_an_alphabet() {
        let a = alnum();
        assert!(regex_possible("union\\s+select", &a));
        assert!(!regex_possible("[;|&]\\s*cat", &a));
        assert!(regex_possible("(?:^|[;|&])\\s*cat\\b", &a));
        assert!(!regex_possible("<script", &a));
        assert!(regex_possible("x*<?", &a));
        assert!(!regex_possible("a(?:<|>)b", &a));
        assert!(regex_possible("(?i)SELECT", &of(b"select")));
        assert!(!regex_possible("(?-i)SELECT", &of(b"select")));
        // A string over the alphabet, not a substring of anything.
        assert!(!regex_possible("\\x00", &a));
    }

    #[test]
    fn transformations_keep_or_widen_the_alphabet() {
        let a = alnum();
        let t = |t, a: &Bytes| transform_output(t, a);
        assert!(subset(&t(Transform::UrlDecodeUni, &a), &a));
        assert_eq!(t(Transform::UrlDecode, &of(b"a%")), ALL);
        assert!(has(&t(Transform::UrlDecode, &of(b"a+")), b' '));
        assert_eq!(t(Transform::Base64Decode, &a), ALL);
        assert!(subset(&t(Transform::CmdLine, &a), &a));
        assert!(has(&t(Transform::Lowercase, &of(b"A")), b'a'));
        let chain = [Transform::UrlDecodeUni, Transform::HtmlEntityDecode];
        assert!(subset(&chain_output(&chain, &a, false), &a));
        assert_eq!(chain_output(&chain, &of(b"&x"), false), ALL);
    }
}
