//! `@detectSQLi` and `@detectXSS`: libinjection's SQL-injection fingerprinting and its
//! HTML5-tokenizer XSS check, with the answers ModSecurity gets from the C library.
//!
//! The SQL tokenizer, its token folding and libinjection's keyword and fingerprint table
//! come from the `libinjectionrs` crate (BSD-3-Clause), a machine translation of the C
//! code. The rest is ours, written after libinjection's behaviour and held to the C
//! library by a differential test: which readings of the input are tried, the fingerprint
//! lookup and the false-positive whitelist (the crate's own differ from C: it
//! whitelisted `INTO OUTFILE` shapes such as `vks`), and the whole XSS side — the HTML5
//! tokenizer (`libinjection/html5.rs`; the crate's does not treat NUL as whitespace as C
//! does) and the tag, attribute and URL checks (the crate's compared event names whole,
//! where C takes `onloadx` as `onload`). The name lists are libinjection's
//! (`libinjection/tables.rs`).
//!
//! libinjection changed between 3.10.0 (ModSecurity v3 up to 3.0.13, Debian 12's
//! `libmodsecurity3`) and its current line (main branch, 2025) in one place: an attribute
//! starting with `on` became an XSS only when it starts with a known event name
//! (`onload…`, `onerror…`), no longer for any `on…` name. [`Generation`] selects either;
//! the WAF uses [`Generation::Current`], the behaviour CRS v4's regression suite is
//! written against.
//!
//! `tests/libinjection_differential.rs` holds both to the C library, input by input: in
//! the test command against Debian's ModSecurity (3.10.0), and, given the library built
//! from libinjection's current sources (`RAMPART_LIBINJECTION_CURRENT`), against that.

use html5::{Context, Html5, Kind as Html};
use sqli::Sqli;
use tables::Attr;

mod html5;
mod sqli;
mod tables;

/// Which libinjection release's answers to give. They differ only in XSS: which
/// attribute names starting with `on` are event handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// libinjection 3.10.0 (it still reports itself as 3.9.2), as ModSecurity v3 up to
    /// 3.0.13 and Debian 12's `libmodsecurity3` carry it: any attribute of five or more
    /// characters starting with `on` is an event handler.
    V3_10,
    /// libinjection's current line (main branch, 2025), as CRS v4 is tested with: an
    /// attribute is an event handler when the name after `on` starts with a DOM event
    /// name (`onload…`, `onerror…`), so `one=`, `onion=` are no longer XSS.
    Current,
}

/// libinjection's fingerprint of `input` if it reads as SQL injection, as the C
/// `libinjection_sqli` gives it: the input as is, then (if it holds quotes) as if it
/// followed a single and a double quote, each also with MySQL's comment syntax when the
/// first reading found comments that MySQL parses differently. The fingerprint is what
/// ModSecurity captures into `TX.0`, for example `s&sos`. (Both [`Generation`]s answer
/// alike here.)
pub fn sqli(input: &[u8]) -> Option<Vec<u8>> {
    if input.is_empty() {
        return None;
    }
    // A value of ASCII digits alone — ids, counts, amounts: a good part of every JSON or
    // form body — is one number token whatever its digits (no `0x`/`0b` without a letter,
    // no quotes for the other readings, no comments), so its fingerprint is `1` and the
    // table decides it alone.
    if input.iter().all(u8::is_ascii_digit) && !digits_fingerprint_listed() {
        return None;
    }
    let (none, single, double) = (sqli::QUOTE_NONE, sqli::QUOTE_SINGLE, sqli::QUOTE_DOUBLE);
    let (ansi, mysql) = (sqli::SQL_ANSI, sqli::SQL_MYSQL);
    let reading = |flags| Reading::of(input, flags);

    let first = reading(none | ansi);
    if first.sqli {
        return Some(first.fingerprint.as_bytes().to_vec());
    }
    if first.mysql_comments {
        let r = reading(none | mysql);
        if r.sqli {
            return Some(r.fingerprint.as_bytes().to_vec());
        }
    }
    if input.contains(&b'\'') {
        let r = reading(single | ansi);
        if r.sqli {
            return Some(r.fingerprint.as_bytes().to_vec());
        }
        if r.mysql_comments {
            let r = reading(single | mysql);
            if r.sqli {
                return Some(r.fingerprint.as_bytes().to_vec());
            }
        }
    }
    if input.contains(&b'"') {
        let r = reading(double | mysql);
        if r.sqli {
            return Some(r.fingerprint.as_bytes().to_vec());
        }
    }
    None
}

/// Whether libinjection's table lists `1`, the fingerprint of every value of digits alone
/// (it does not: such values are never SQL injection). Looked up once.
fn digits_fingerprint_listed() -> bool {
    static LISTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LISTED.get_or_init(|| known_fingerprint(b"1"))
}

/// One tokenization of the input under one quote context and SQL dialect.
struct Reading {
    sqli: bool,
    fingerprint: sqli::Fingerprint,
    /// The input has `-- ` without the space MySQL needs, or `#` comments: worth reading
    /// again with MySQL's rules.
    mysql_comments: bool,
}

impl Reading {
    fn of(input: &[u8], flags: u32) -> Reading {
        let mut state = Sqli::new(input, flags);
        let fingerprint = state.fingerprint();
        let fp = fingerprint.as_bytes();
        let sqli = known_fingerprint(fp) && !benign_shape(&state, input, fp);
        Reading {
            sqli,
            fingerprint,
            mysql_comments: state.stats_comment_ddx != 0 || state.stats_comment_hash != 0,
        }
    }
}

/// Whether libinjection's table lists the fingerprint as SQL injection.
fn known_fingerprint(fingerprint: &[u8]) -> bool {
    if fingerprint.is_empty() {
        return false;
    }
    // The table holds fingerprints as "0" and the fingerprint upper-cased.
    let mut key = [0u8; sqli::MAX_TOKENS + 1];
    key[0] = b'0';
    let n = fingerprint.len().min(sqli::MAX_TOKENS);
    key[1..=n].copy_from_slice(&fingerprint[..n]);
    sqli::lookup(&key[..=n]) == sqli::FINGERPRINT
}

/// libinjection's whitelist: short fingerprints that are listed but, in the shapes below,
/// are far more often ordinary text than SQL.
fn benign_shape(state: &Sqli<'_>, input: &[u8], fingerprint: &[u8]) -> bool {
    let n = fingerprint.len();
    let byte = |i: usize| input.get(i).copied().unwrap_or(0);
    let token = |i: usize| state.tokens.get(i);
    let first_val = |i: usize| token(i).map_or(0, |t| t.val[0]);
    let kind = |i: usize| token(i).map(|t| t.kind);

    // A trailing comment with "sp_password" in the input hides statements from SQL
    // Server's log: always an attack.
    if n > 1 && fingerprint[n - 1] == b'c' && contains(input, b"sp_password") {
        return false;
    }
    match n {
        2 => {
            if fingerprint[1] == b'U' {
                // "1 union" with nothing folded away is a word, not a query.
                return state.stats_tokens == 2;
            }
            if first_val(1) == b'#' {
                return true;
            }
            if kind(0) == Some(sqli::BAREWORD) && kind(1) == Some(sqli::COMMENT) {
                // Only a C-style comment after a word reads as SQL.
                return first_val(1) != b'/';
            }
            if kind(0) == Some(sqli::NUMBER) && kind(1) == Some(sqli::COMMENT) {
                if first_val(1) == b'/' || state.stats_tokens > 2 {
                    return false;
                }
                // "1" then a comment right after the number: "1#…", "1--…" are text
                // unless the number is followed by a space or starts a comment. (C compares
                // a signed char: bytes from 0x80 count as "space" too.)
                let len = token(0).map_or(0, |t| t.len);
                let after = byte(len);
                if after <= 32 || after >= 0x80 {
                    return false;
                }
                if (after == b'/' && byte(len + 1) == b'*')
                    || (after == b'-' && byte(len + 1) == b'-')
                {
                    return false;
                }
                return true;
            }
            // "--x" style: a long operator starting with '-' is a dash, not SQL.
            token(1).is_some_and(|t| t.len > 2 && t.val[0] == b'-')
        }
        3 => {
            if fingerprint == b"sos" || fingerprint == b"s&s" {
                // Two strings joined by an operator: SQL only when the input is the
                // inside of a string closed and reopened ("foo' + 'bar").
                let joined = match (token(0), token(2)) {
                    (Some(a), Some(b)) => {
                        a.str_open == 0 && b.str_close == 0 && a.str_close == b.str_open
                    }
                    _ => false,
                };
                return !joined;
            }
            if matches!(fingerprint, b"s&n" | b"n&1" | b"1&1" | b"1&v" | b"1&s") {
                // "sexy and 17": text; with more folded away, SQL.
                return state.stats_tokens == 3;
            }
            if kind(1) == Some(sqli::KEYWORD) {
                // A keyword in the middle is text unless it is INTO OUTFILE / DUMPFILE.
                let t = token(1).map(|t| (t.len, &t.val[..4]));
                return match t {
                    Some((len, head)) => len < 5 || !head.eq_ignore_ascii_case(b"INTO"),
                    None => true,
                };
            }
            false
        }
        _ => false,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Whether `input` holds an XSS vector in any of the HTML contexts libinjection tries
/// (text, and unquoted, single-, double- and back-quoted attribute values), as the C
/// `libinjection_xss` answers.
pub fn xss(input: &[u8]) -> bool {
    xss_as(input, Generation::Current)
}

/// [`xss`] with the answers of a given libinjection release.
pub fn xss_as(input: &[u8], generation: Generation) -> bool {
    // Every verdict needs a tag ('<') or an attribute value ('='); most values have
    // neither, and need no tokenizing (the differential test checks this against C).
    if memchr::memchr2(b'<', b'=', input).is_none() {
        return false;
    }
    [
        Context::Data,
        Context::NoQuote,
        Context::Quoted(b'\''),
        Context::Quoted(b'"'),
        Context::Quoted(b'`'),
    ]
    .into_iter()
    .any(|context| xss_in(input, context, generation))
}

/// One HTML context: a doctype, a dangerous tag, an event handler or dangerous attribute
/// (with a dangerous value where the attribute takes a URL or a name), or a comment that
/// older browsers execute.
fn xss_in(input: &[u8], context: Context, generation: Generation) -> bool {
    let mut html = Html5::new(input, context);
    let mut attr = Attr::None;
    while let Some(t) = html.next_token() {
        // The C code reads past a token in places: `rest` runs to the end of the input
        // (and past it, the comparisons read NUL).
        let rest = &input[t.start.min(input.len())..];
        let token = &rest[..t.len.min(rest.len())];
        if t.kind != Html::AttrValue {
            attr = Attr::None;
        }
        match t.kind {
            Html::Doctype => return true,
            Html::TagNameOpen if dangerous_tag(rest, token.len()) => return true,
            Html::AttrName => attr = attribute_kind(rest, token.len(), generation),
            Html::AttrValue => {
                let hit = match attr {
                    Attr::None => false,
                    Attr::Black | Attr::Style => true,
                    Attr::Url => dangerous_url(token, rest),
                    Attr::Indirect => attribute_kind(rest, token.len(), generation) != Attr::None,
                };
                if hit {
                    return true;
                }
                attr = Attr::None;
            }
            Html::TagComment if dangerous_comment(rest, token) => return true,
            _ => {}
        }
    }
    false
}

/// The SQL tokens of `input` read as is (ANSI): `(type, text)`, the type libinjection's
/// one-letter code and the text as its test driver prints it (strings with their
/// quotes, variables with their `@`s). With `folded`, the tokens after folding, whose
/// types spell the fingerprint. For explaining a verdict and for libinjection's vectors.
pub fn sql_tokens(input: &[u8], folded: bool) -> Vec<(char, Vec<u8>)> {
    let mut state = Sqli::new(input, sqli::QUOTE_NONE | sqli::SQL_ANSI);
    let tokens: Vec<sqli::Token> = if folded {
        let n = state.fold();
        state.tokens[..n].to_vec()
    } else {
        std::iter::from_fn(|| state.tokenize(0).then(|| state.tokens[0])).collect()
    };
    tokens
        .iter()
        .map(|t| {
            let mut text = Vec::new();
            if t.kind == b'v' {
                text.extend(std::iter::repeat_n(b'@', usize::from(t.count.min(2))));
            }
            let quoted = t.kind == b's' || t.kind == b'v';
            if quoted && t.str_open != 0 {
                text.push(t.str_open);
            }
            text.extend_from_slice(t.text());
            if quoted && t.str_close != 0 {
                text.push(t.str_close);
            }
            (char::from(t.kind), text)
        })
        .collect()
}

/// The tokens libinjection's HTML5 tokenizer finds in `input` read as text (its test
/// vectors' view): `(kind, start, length)`, kinds named as in libinjection
/// (`TAG_NAME_OPEN`, `ATTR_VALUE`, …). For explaining a verdict and for those vectors.
pub fn html5_tokens(input: &[u8]) -> Vec<(&'static str, usize, usize)> {
    let mut html = Html5::new(input, Context::Data);
    std::iter::from_fn(|| html.next_token())
        .map(|t| (t.kind.name(), t.start, t.len))
        .collect()
}

/// libinjection's name comparison: the first `n` bytes of `s` (past its end: NUL), NULs
/// skipped and letters upper-cased, spell exactly `name` (upper case).
fn spells(name: &[u8], s: &[u8], n: usize) -> bool {
    let mut want = name.iter();
    for i in 0..n {
        let b = s.get(i).copied().unwrap_or(0);
        if b == 0 {
            continue;
        }
        match want.next() {
            Some(&w) if w == b.to_ascii_uppercase() => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

fn dangerous_tag(rest: &[u8], len: usize) -> bool {
    if len < 3 {
        return false;
    }
    if tables::TAGS.iter().any(|t| spells(t.as_bytes(), rest, len)) {
        return true;
    }
    // Anything SVG or XSL(T).
    let head = [rest[0], rest[1], rest[2]].map(|b| b.to_ascii_lowercase());
    head == *b"svg" || head == *b"xsl"
}

fn attribute_kind(rest: &[u8], len: usize, generation: Generation) -> Attr {
    if len < 2 {
        return Attr::None;
    }
    let on = rest[0].eq_ignore_ascii_case(&b'o') && rest[1].eq_ignore_ascii_case(&b'n');
    match generation {
        Generation::V3_10 if on && len >= 5 => return Attr::Black,
        Generation::Current if on && len >= 5 => {
            // An event handler: the name after "on" starts with a known event.
            let after = &rest[2..];
            if tables::EVENTS
                .iter()
                .any(|e| spells(e.as_bytes(), after, e.len()))
            {
                return Attr::Black;
            }
        }
        _ => {}
    }
    // XMLNS and XLINK can make up arbitrary tags.
    if len >= 5 && (spells(b"XMLNS", rest, 5) || spells(b"XLINK", rest, 5)) {
        return Attr::Black;
    }
    tables::ATTRIBUTES
        .iter()
        .find(|(name, _)| spells(name.as_bytes(), rest, len))
        .map_or(Attr::None, |&(_, kind)| kind)
}

/// Whether an attribute value that is a URL uses a scheme that runs code or embeds data
/// (`javascript:`, `vbscript:`, `data:`, `view-source:`), read through HTML character
/// references and ignoring the whitespace, controls and NULs browsers ignore.
fn dangerous_url(token: &[u8], rest: &[u8]) -> bool {
    let skip = token.iter().take_while(|&&b| b <= 32 || b >= 127).count();
    let (value, rest) = (&token[skip..], &rest[skip..]);
    [&b"DATA"[..], b"VIEW-SOURCE", b"JAVA", b"VBSCRIPT"]
        .iter()
        .any(|scheme| decoded_starts_with(scheme, value.len(), rest))
}

/// Whether the first `n` bytes of `s`, HTML character references decoded, start with
/// `prefix` (upper case): leading whitespace and controls, NULs and line feeds skipped,
/// letters compared upper-cased.
fn decoded_starts_with(prefix: &[u8], mut n: usize, s: &[u8]) -> bool {
    let mut want = prefix.iter().peekable();
    let mut at = 0;
    let mut leading = true;
    while n > 0 {
        let Some(&&w) = want.peek() else {
            return true;
        };
        let (c, used) = decode_char(&s[at.min(s.len())..], n);
        at += used;
        n = n.saturating_sub(used);
        if leading && c <= 32 {
            continue;
        }
        leading = false;
        if c == 0 || c == 10 {
            continue;
        }
        let c = if (i32::from(b'a')..=i32::from(b'z')).contains(&c) {
            c - 0x20
        } else {
            c
        };
        // C compares the decoded value as a char: only its low byte counts
        // (`&#x14A;` reads as `J`).
        if (c & 0xff) as u8 != w {
            return false;
        }
        want.next();
    }
    want.peek().is_none()
}

/// The character at the start of `s` (limit `len`) with a numeric character reference
/// (`&#106;`, `&#x6a;`, the `;` optional) decoded, and the bytes it took. Any other `&`
/// is itself. The C code looks at the two bytes after `&#` even past `len`; so does this
/// (NUL past the input).
fn decode_char(s: &[u8], len: usize) -> (i32, usize) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    if len == 0 {
        return (-1, 0);
    }
    if at(0) != b'&' || len < 2 {
        return (i32::from(at(0)), 1);
    }
    if at(1) != b'#' {
        return (i32::from(b'&'), 1);
    }
    let (radix, first) = if at(2) == b'x' || at(2) == b'X' {
        (16, 3)
    } else {
        (10, 2)
    };
    let digit = |b: u8| char::from(b).to_digit(radix).map(|d| d as i32);
    let Some(mut value) = digit(at(first)) else {
        return (i32::from(b'&'), 1);
    };
    let mut i = first + 1;
    while i < len {
        let b = at(i);
        if b == b';' {
            return (value, i + 1);
        }
        let Some(d) = digit(b) else {
            return (value, i);
        };
        value = value * radix as i32 + d;
        if value > 0x0010_00FF {
            return (i32::from(b'&'), 1);
        }
        i += 1;
    }
    (value, i)
}

/// Comments that legacy browsers act on: backticks (IE), conditional comments `[if`,
/// `<!--xml`, `IMPORT` and `ENTITY` declarations.
fn dangerous_comment(rest: &[u8], token: &[u8]) -> bool {
    if token.contains(&b'`') {
        return true;
    }
    let starts = |p: &[u8]| token.len() >= p.len() && token[..p.len()].eq_ignore_ascii_case(p);
    if token.len() > 3 && (starts(b"[if") || starts(b"xml")) {
        return true;
    }
    token.len() > 5 && (spells(b"IMPORT", rest, 6) || spells(b"ENTITY", rest, 6))
}

#[cfg(test)]
mod tests;
