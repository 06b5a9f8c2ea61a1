//! Tokens of the expression language.
//!
//! A run of letters, digits, `_`, `.`, `:` and `/` is read as one word and then told
//! apart: digits alone are a number, an address with `/` a network, an address an
//! address, dotted letters a name (field, function or keyword). `..` always ends a word,
//! so `1..5` and `10.0.0.1..10.0.0.9` are ranges. `#` starts a comment to the end of the
//! line, so a rule may be written over several lines with notes.

use std::net::IpAddr;

use rampart_core::net::Cidr;

use super::{ExprError, Span};

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A field, function or keyword name (`http.request.uri.path`, `lower`, `and`).
    Name(String),
    /// A string literal, escapes decoded.
    Str(Vec<u8>),
    /// An integer.
    Int(i64),
    /// An IP address.
    Ip(IpAddr),
    /// A network (`10.0.0.0/8`).
    Net(Cidr),
    /// A named list (`$office`).
    List(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    DotDot,
    Star,
    Minus,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Tilde,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Name(n) => format!("`{n}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(i) => format!("the number {i}"),
            Tok::Ip(ip) => format!("the address {ip}"),
            Tok::Net(n) => format!("the network {n}"),
            Tok::List(l) => format!("the list ${l}"),
            Tok::Eof => "the end of the expression".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::DotDot => "..",
            Tok::Star => "*",
            Tok::Minus => "-",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
            Tok::Tilde => "~",
            _ => "?",
        }
    }
}

/// Splits `src` into tokens, each with its byte span; the last is [`Tok::Eof`].
pub(crate) fn tokens(src: &str) -> Result<Vec<(Tok, Span)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |t: Tok| (t, Span::new(start, start + 2));
        let one = |t: Tok| (t, Span::new(start, start + 1));
        let next = b.get(i + 1).copied();
        let tok = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => one(Tok::LParen),
            b')' => one(Tok::RParen),
            b'{' => one(Tok::LBrace),
            b'}' => one(Tok::RBrace),
            b'[' => one(Tok::LBracket),
            b']' => one(Tok::RBracket),
            b',' => one(Tok::Comma),
            b'*' => one(Tok::Star),
            b'-' => one(Tok::Minus),
            b'~' => one(Tok::Tilde),
            b'.' if next == Some(b'.') => two(Tok::DotDot),
            b'=' if next == Some(b'=') => two(Tok::EqEq),
            b'=' => {
                return Err(ExprError::new(
                    Span::new(start, start + 1),
                    "`=` on its own is not an operator",
                )
                .expected("`==` to compare"));
            }
            b'!' if next == Some(b'=') => two(Tok::Ne),
            b'!' => one(Tok::Bang),
            b'<' if next == Some(b'=') => two(Tok::Le),
            b'<' => one(Tok::Lt),
            b'>' if next == Some(b'=') => two(Tok::Ge),
            b'>' => one(Tok::Gt),
            b'&' if next == Some(b'&') => two(Tok::AndAnd),
            b'|' if next == Some(b'|') => two(Tok::OrOr),
            b'&' | b'|' => {
                return Err(ExprError::new(
                    Span::new(start, start + 1),
                    format!("`{}` on its own is not an operator", c as char),
                )
                .expected(if c == b'&' {
                    "`&&` or `and`"
                } else {
                    "`||` or `or`"
                }));
            }
            b'"' => {
                let (s, end) = string(src, start + 1, start)?;
                i = end;
                out.push((Tok::Str(s), Span::new(start, end)));
                continue;
            }
            b'r' if matches!(next, Some(b'"' | b'#')) && raw_string_start(b, i + 1) => {
                let (s, end) = raw_string(src, start)?;
                i = end;
                out.push((Tok::Str(s), Span::new(start, end)));
                continue;
            }
            b'$' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-')) {
                    j += 1;
                }
                if j == i + 1 {
                    return Err(ExprError::new(
                        Span::new(start, start + 1),
                        "`$` must be followed by a list name",
                    )
                    .expected("a list name such as `$office`"));
                }
                i = j;
                out.push((Tok::List(src[start + 1..j].to_owned()), Span::new(start, j)));
                continue;
            }
            c if is_word(c) => {
                let mut j = i;
                while j < b.len() && is_word(b[j]) && !(b[j] == b'.' && b.get(j + 1) == Some(&b'.'))
                {
                    j += 1;
                }
                let span = Span::new(start, j);
                i = j;
                out.push((word(&src[start..j], span)?, span));
                continue;
            }
            _ => {
                let ch = src[start..].chars().next().unwrap_or('?');
                return Err(ExprError::new(
                    Span::new(start, start + ch.len_utf8()),
                    format!("unexpected character `{}`", ch.escape_default()),
                )
                .expected("a field, a value, an operator or a parenthesis"));
            }
        };
        i += tok.1.end - tok.1.start;
        out.push(tok);
    }
    out.push((Tok::Eof, Span::new(b.len(), b.len())));
    Ok(out)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'/')
}

/// Tells a word's kind.
fn word(w: &str, span: Span) -> Result<Tok, ExprError> {
    let first = w.as_bytes()[0];
    if first.is_ascii_digit() && w.bytes().all(|c| c.is_ascii_digit()) {
        return w.parse::<i64>().map(Tok::Int).map_err(|_| {
            ExprError::new(span, format!("the number {w} is too large"))
                .expected("an integer from -9223372036854775808 to 9223372036854775807")
        });
    }
    if w.contains('/') {
        return w.parse::<Cidr>().map(Tok::Net).map_err(|e| {
            ExprError::new(span, format!("`{w}` is not a network: {e}"))
                .expected("a network such as 10.0.0.0/8 or 2001:db8::/32")
        });
    }
    if let Ok(ip) = w.parse::<IpAddr>() {
        return Ok(Tok::Ip(ip));
    }
    let name_like = (first.is_ascii_alphabetic() || first == b'_')
        && w.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        });
    if name_like {
        return Ok(Tok::Name(w.to_owned()));
    }
    Err(ExprError::new(
        span,
        format!("`{w}` is not a field, a number or an address"),
    )
    .expected("a field name (`http.request.uri.path`), an integer or an IP address"))
}

fn raw_string_start(b: &[u8], mut i: usize) -> bool {
    while b.get(i) == Some(&b'#') {
        i += 1;
    }
    b.get(i) == Some(&b'"')
}

/// A string after its opening quote at `from`; returns the bytes and the offset after
/// the closing quote.
fn string(src: &str, from: usize, start: usize) -> Result<(Vec<u8>, usize), ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(
                ExprError::new(Span::new(start, b.len()), "this string is not closed")
                    .expected("a closing `\"`"),
            );
        };
        match c {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let e = b.get(i + 1).copied();
                let esc = Span::new(i, (i + 2).min(b.len()));
                match e {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'0') => out.push(0),
                    Some(b'x') => {
                        let hex = src
                            .get(i + 2..i + 4)
                            .and_then(|h| u8::from_str_radix(h, 16).ok());
                        let Some(v) = hex else {
                            return Err(ExprError::new(
                                Span::new(i, (i + 4).min(b.len())),
                                "`\\x` must be followed by two hex digits",
                            )
                            .expected("an escape such as `\\x2f`"));
                        };
                        out.push(v);
                        i += 4;
                        continue;
                    }
                    _ => {
                        return Err(ExprError::new(esc, "unknown escape in a string")
                            .expected("one of \\\" \\\\ \\n \\r \\t \\0 \\xHH")
                            .hint("for regular expressions, a raw string r\"...\" keeps backslashes as they are"));
                    }
                }
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// `r"..."` or `r#"..."#` (any number of `#`): no escapes.
fn raw_string(src: &str, start: usize) -> Result<(Vec<u8>, usize), ExprError> {
    let b = src.as_bytes();
    let mut i = start + 1;
    let mut hashes = 0;
    while b.get(i) == Some(&b'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // the quote
    let body = i;
    while i < b.len() {
        if b[i] == b'"'
            && b[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == b'#')
                .count()
                == hashes
        {
            return Ok((b[body..i].to_vec(), i + 1 + hashes));
        }
        i += 1;
    }
    Err(
        ExprError::new(Span::new(start, b.len()), "this raw string is not closed")
            .expected(format!("a closing `\"{}`", "#".repeat(hashes))),
    )
}
