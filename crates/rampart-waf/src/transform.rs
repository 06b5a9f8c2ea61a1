//! Transformations (`t:`) with ModSecurity v3's exact semantics.
//!
//! CRS rules are written against what ModSecurity's transformations produce, quirks
//! included (a `%u` escape that is not full-width ASCII becomes `x`; `htmlEntityDecode`
//! knows five named entities; a number too large for an entity saturates before it is
//! cut to a byte; `utf8toUnicode` drops a NUL that is not the last byte). Each function
//! here reproduces that behaviour on bytes — values are not assumed to be UTF-8 — and its
//! tests pin the corner cases.
//!
//! [`apply`] writes into a caller's buffer so a chain of transformations reuses two
//! buffers instead of allocating per step.

use crate::seclang::Transform;

/// Applies `t` to `input`, replacing the contents of `out` with the result.
/// `Transform::None` copies (the compiler removes it from chains; it only resets them).
pub fn apply(t: Transform, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match t {
        Transform::None => out.extend_from_slice(input),
        Transform::Base64Decode => base64_decode(input, out),
        Transform::Base64DecodeExt => base64_decode_forgiving(input, out),
        Transform::Base64Encode => base64_encode(input, out),
        Transform::CmdLine => cmd_line(input, out),
        Transform::CompressWhitespace => compress_whitespace(input, out),
        Transform::CssDecode => css_decode(input, out),
        Transform::EscapeSeqDecode => escape_seq_decode(input, out),
        Transform::HexDecode => hex_decode(input, out),
        Transform::HexEncode => hex_encode(input, out),
        Transform::HtmlEntityDecode => html_entity_decode(input, out),
        Transform::JsDecode => js_decode(input, out),
        Transform::Length => out.extend_from_slice(input.len().to_string().as_bytes()),
        Transform::Lowercase => out.extend(input.iter().map(u8::to_ascii_lowercase)),
        Transform::Uppercase => out.extend(input.iter().map(u8::to_ascii_uppercase)),
        Transform::Md5 => out.extend_from_slice(&crate::digest::md5(input)),
        Transform::Sha1 => out.extend_from_slice(&crate::digest::sha1(input)),
        Transform::NormalisePath => normalise_path(input, false, out),
        Transform::NormalisePathWin => normalise_path(input, true, out),
        Transform::ParityEven7bit => out.extend(input.iter().map(|&c| parity(c, true))),
        Transform::ParityOdd7bit => out.extend(input.iter().map(|&c| parity(c, false))),
        Transform::ParityZero7bit => out.extend(input.iter().map(|&c| c & 0x7f)),
        Transform::RemoveComments => remove_comments(input, out),
        Transform::RemoveCommentsChar => remove_comments_char(input, out),
        Transform::RemoveNulls => out.extend(input.iter().copied().filter(|&c| c != 0)),
        Transform::RemoveWhitespace => out.extend(
            input
                .iter()
                .copied()
                .filter(|&c| !is_space(c) && c != 0xa0 && c != 0xc2),
        ),
        Transform::ReplaceComments => replace_comments(input, out),
        Transform::ReplaceNulls => out.extend(input.iter().map(|&c| if c == 0 { b' ' } else { c })),
        Transform::SqlHexDecode => sql_hex_decode(input, out),
        Transform::Trim => out.extend_from_slice(trim_end(trim_start(input))),
        Transform::TrimLeft => out.extend_from_slice(trim_start(input)),
        Transform::TrimRight => out.extend_from_slice(trim_end(input)),
        Transform::UrlDecode => url_decode(input, out),
        Transform::UrlDecodeUni => url_decode_uni(input, out),
        Transform::UrlEncode => url_encode(input, out),
        Transform::Utf8ToUnicode => utf8_to_unicode(input, out),
    }
}

/// The bytes a value holds, for [`unchanged`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    pub(crate) fn of(value: &[u8]) -> ByteSet {
        let mut s = [0u64; 4];
        for &c in value {
            s[usize::from(c >> 6)] |= 1 << (c & 63);
        }
        ByteSet(s)
    }

    /// The set as four 64-bit words (bytes 0–63, 64–127, …).
    pub(crate) fn words(&self) -> [u64; 4] {
        self.0
    }

    pub(crate) fn has(&self, c: u8) -> bool {
        self.0[usize::from(c >> 6)] & (1 << (c & 63)) != 0
    }

    fn any(&self, cs: &[u8]) -> bool {
        cs.iter().any(|&c| self.has(c))
    }

    fn non_ascii(&self) -> bool {
        self.0[2] | self.0[3] != 0
    }
}

/// Whether `value` holds the two-byte sequence `pair` (`has`: its byte set, which
/// answers most calls without a scan).
fn holds(value: &[u8], has: &ByteSet, pair: &[u8; 2]) -> bool {
    has.has(pair[0]) && has.has(pair[1]) && value.windows(2).any(|w| w == pair)
}

/// Whether `t` leaves `value` unchanged up to ASCII case, judged from the bytes it holds
/// (`has` = [`ByteSet::of`]`(value)`). Conservative: `false` when unsure. Every test is
/// blind to ASCII letter case, so a chain whose every step says `true` maps the value to
/// itself up to case — what the engine's case-insensitive prefilter needs to scan the
/// value once for all such chains.
pub(crate) fn unchanged(t: Transform, value: &[u8], has: &ByteSet) -> bool {
    match t {
        Transform::None | Transform::Lowercase | Transform::Uppercase => true,
        Transform::UrlDecode | Transform::UrlDecodeUni => !has.any(b"%+"),
        Transform::HtmlEntityDecode => !has.has(b'&'),
        Transform::JsDecode | Transform::CssDecode | Transform::EscapeSeqDecode => !has.has(b'\\'),
        Transform::RemoveNulls | Transform::ReplaceNulls => !has.has(0),
        Transform::Utf8ToUnicode => !has.non_ascii() && !has.has(0),
        Transform::RemoveWhitespace => !has.any(b" \t\n\x0b\x0c\r\xa0\xc2"),
        Transform::CompressWhitespace => !has.any(b"\t\n\x0b\x0c\r") && !holds(value, has, b"  "),
        Transform::CmdLine => {
            !has.any(b"\"'\\^,;\t\r\n")
                && !holds(value, has, b"  ")
                && !holds(value, has, b" /")
                && !holds(value, has, b" (")
        }
        Transform::NormalisePath => !has.has(b'/') && value.last() != Some(&b'.'),
        Transform::NormalisePathWin => !has.any(b"/\\") && value.last() != Some(&b'.'),
        Transform::ReplaceComments => !holds(value, has, b"/*"),
        Transform::RemoveComments => {
            !has.has(b'#') && !holds(value, has, b"/*") && !holds(value, has, b"--")
        }
        Transform::RemoveCommentsChar => {
            !has.has(b'#')
                && !holds(value, has, b"/*")
                && !holds(value, has, b"*/")
                && !holds(value, has, b"--")
        }
        Transform::SqlHexDecode => !holds(value, has, b"0x") && !holds(value, has, b"0X"),
        Transform::Trim | Transform::TrimLeft | Transform::TrimRight => {
            value.first().is_none_or(|&c| !is_space(c))
                && value.last().is_none_or(|&c| !is_space(c))
        }
        Transform::ParityZero7bit => !has.non_ascii(),
        Transform::Base64Decode
        | Transform::Base64DecodeExt
        | Transform::Base64Encode
        | Transform::HexDecode
        | Transform::HexEncode
        | Transform::Length
        | Transform::Md5
        | Transform::Sha1
        | Transform::ParityEven7bit
        | Transform::ParityOdd7bit
        | Transform::UrlEncode => false,
    }
}

/// Whether `t`'s results for two inputs that differ only in ASCII case may differ
/// otherwise than in case: decoding base64, hashing, hex-encoding, parity bits, and the
/// decoders with case-sensitive escapes (`jsDecode` takes `\u`/`\x` but not `\U`/`\X`,
/// `escapeSeqDecode` `\n` but not `\N`). The other decoders read hex digits, entity
/// names, `%u`/`%U` and `0x`/`0X` in either case (`case_blind_decoders` in the tests
/// checks this).
pub(crate) fn reads_case(t: Transform) -> bool {
    matches!(
        t,
        Transform::Base64Decode
            | Transform::Base64DecodeExt
            | Transform::Base64Encode
            | Transform::Md5
            | Transform::Sha1
            | Transform::HexEncode
            | Transform::ParityEven7bit
            | Transform::ParityOdd7bit
            | Transform::JsDecode
            | Transform::EscapeSeqDecode
    )
}

/// Whether a chain must be judged exactly rather than up to case: a step that changes
/// case (`lowercase`, `uppercase`, `cmdLine`) comes before one that [`reads_case`].
pub(crate) fn chain_reads_case(chain: &[Transform]) -> bool {
    chain.iter().enumerate().any(|(i, t)| {
        matches!(
            t,
            Transform::Lowercase | Transform::Uppercase | Transform::CmdLine
        ) && chain[i + 1..].iter().any(|&u| reads_case(u))
    })
}

/// Whether `t` leaves `value` exactly as it is (case included), judged from its bytes:
/// [`unchanged`], and for the transformations that change case, no letter of that case.
pub(crate) fn unchanged_exactly(t: Transform, value: &[u8], has: &ByteSet) -> bool {
    let no_upper = || has.0[1] & 0x07ff_fffe == 0; // bytes 'A'..='Z' are 65..=90
    let no_lower = || has.0[1] & (0x07ff_fffe << 32) == 0; // 'a'..='z' are 97..=122
    match t {
        Transform::Lowercase => no_upper(),
        Transform::Uppercase => no_lower(),
        Transform::CmdLine => no_upper() && unchanged(t, value, has),
        _ => unchanged(t, value, has),
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn is_octal(c: u8) -> bool {
    (b'0'..=b'7').contains(&c)
}

/// How many octal digits (at most three) start `s`, which starts with one.
fn octal_run(s: &[u8]) -> usize {
    s.iter().take(3).take_while(|&&c| is_octal(c)).count()
}

/// ModSecurity's value of one hex digit — also for bytes that are not hex digits, whose
/// arithmetic `hexDecode` reproduces.
fn hex_value(c: u8) -> u8 {
    if c >= b'A' {
        ((c & 0xdf).wrapping_sub(b'A')).wrapping_add(10)
    } else {
        c.wrapping_sub(b'0')
    }
}

fn x2c(hi: u8, lo: u8) -> u8 {
    hex_value(hi).wrapping_mul(16).wrapping_add(hex_value(lo))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| is_space(c)).count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&c| is_space(c)).count();
    &s[..s.len() - n]
}

fn parity(c: u8, even: bool) -> u8 {
    let low = c & 0x7f;
    let odd_bits = low.count_ones() % 2 == 1;
    // Set the high bit so that the byte's parity is even (or odd).
    if odd_bits == even { low | 0x80 } else { low }
}

/// `%XX` decoding; `+` is a space; an invalid or truncated escape stays as it is.
pub fn url_decode(input: &[u8], out: &mut Vec<u8>) {
    percent_decode(input, true, out);
}

/// `%XX` decoding (with `plus_is_space`, `+` becomes a space as in forms; without, as
/// ModSecurity's URI decoding, it stays); invalid or truncated escapes stay as they are.
pub(crate) fn percent_decode(input: &[u8], plus_is_space: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'%' && i + 2 < input.len() && is_hex(input[i + 1]) && is_hex(input[i + 2]) {
            out.push(x2c(input[i + 1], input[i + 2]));
            i += 3;
        } else {
            out.push(if plus_is_space && c == b'+' { b' ' } else { c });
            i += 1;
        }
    }
}

/// [`url_decode`] plus IIS's `%uHHHH`, of which the low byte is kept; full-width ASCII
/// (`%uFF01`–`%uFF5E`) becomes its ASCII character (ModSecurity v3 without a Unicode map
/// file).
fn url_decode_uni(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        let c = input[i];
        if c != b'%' {
            out.push(if c == b'+' { b' ' } else { c });
            i += 1;
            continue;
        }
        if i + 1 < n && (input[i + 1] == b'u' || input[i + 1] == b'U') {
            if i + 5 < n && input[i + 2..i + 6].iter().all(|&h| is_hex(h)) {
                let low = x2c(input[i + 4], input[i + 5]);
                let ff = input[i + 2..i + 4].iter().all(|&h| h == b'f' || h == b'F');
                out.push(if low > 0 && low < 0x5f && ff {
                    low + 0x20
                } else {
                    low
                });
                i += 6;
            } else {
                out.extend_from_slice(&input[i..i + 2]);
                i += 2;
            }
        } else if i + 2 < n && is_hex(input[i + 1]) && is_hex(input[i + 2]) {
            out.push(x2c(input[i + 1], input[i + 2]));
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
}

fn url_encode(input: &[u8], out: &mut Vec<u8>) {
    for &c in input {
        if c == b' ' {
            out.push(b'+');
        } else if c == b'*' || c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push(b'%');
            hex_byte(c, out);
        }
    }
}

fn hex_byte(c: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(HEX[usize::from(c >> 4)]);
    out.push(HEX[usize::from(c & 0xf)]);
}

fn hex_encode(input: &[u8], out: &mut Vec<u8>) {
    for &c in input {
        hex_byte(c, out);
    }
}

/// Pairs of characters to bytes (ModSecurity does not check that they are hex digits);
/// a last odd character is dropped.
fn hex_decode(input: &[u8], out: &mut Vec<u8>) {
    for pair in input.chunks_exact(2) {
        out.push(x2c(pair[0], pair[1]));
    }
}

/// `0xHH…` runs to bytes, anywhere in the value.
fn sql_hex_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if i + 3 < n
            && input[i] == b'0'
            && input[i + 1].eq_ignore_ascii_case(&b'x')
            && is_hex(input[i + 2])
            && is_hex(input[i + 3])
        {
            i += 2;
            loop {
                out.push(x2c(input[i], input[i + 1]));
                i += 2;
                if !(i + 1 < n && is_hex(input[i]) && is_hex(input[i + 1])) {
                    break;
                }
            }
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
}

fn cmd_line(input: &[u8], out: &mut Vec<u8>) {
    let mut space = false;
    for &c in input {
        match c {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(c);
            }
            _ => {
                out.push(c.to_ascii_lowercase());
                space = false;
            }
        }
    }
}

fn compress_whitespace(input: &[u8], out: &mut Vec<u8>) {
    let mut in_space = false;
    for &c in input {
        if is_space(c) {
            if !in_space {
                in_space = true;
                out.push(b' ');
            }
        } else {
            in_space = false;
            out.push(c);
        }
    }
}

/// `strtol`'s result for a run of digits, saturating like it does, cut to a byte.
fn strtol_byte(digits: &[u8], radix: u32) -> u8 {
    let mut v: i64 = 0;
    for &d in digits {
        let x = i64::from(hex_value(d));
        v = match v
            .checked_mul(i64::from(radix))
            .and_then(|v| v.checked_add(x))
        {
            Some(v) => v,
            None => return 0xff, // LONG_MAX's low byte
        };
    }
    v as u8
}

fn html_entity_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n && out.len() < n {
        let mut copy = 1;
        'entity: {
            if !(input[i] == b'&' && i + 1 < n) {
                break 'entity;
            }
            let mut j = i + 1;
            if input[j] == b'#' {
                copy += 1;
                if j + 1 >= n {
                    break 'entity;
                }
                j += 1;
                let hex = input[j] == b'x' || input[j] == b'X';
                if hex {
                    copy += 1;
                    if j + 1 >= n {
                        break 'entity;
                    }
                    j += 1;
                }
                let k = j;
                while j < n
                    && (if hex {
                        is_hex(input[j])
                    } else {
                        input[j].is_ascii_digit()
                    })
                {
                    j += 1;
                }
                if j == k {
                    break 'entity;
                }
                out.push(strtol_byte(&input[k..j], if hex { 16 } else { 10 }));
            } else {
                let k = j;
                while j < n && input[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                if j == k {
                    break 'entity;
                }
                let name = &input[k..j];
                let decoded = [
                    (&b"quot"[..], b'"'),
                    (b"amp", b'&'),
                    (b"lt", b'<'),
                    (b"gt", b'>'),
                    (b"nbsp", 0xa0),
                ]
                .iter()
                .find(|(e, _)| e.eq_ignore_ascii_case(name))
                .map(|&(_, c)| c);
                match decoded {
                    Some(c) => out.push(c),
                    None => {
                        // Unknown entity: the ampersand and the name stay as written.
                        copy = j - k + 1;
                        break 'entity;
                    }
                }
            }
            i = if j < n && input[j] == b';' { j + 1 } else { j };
            copy = 0;
        }
        for _ in 0..copy {
            if i >= n || out.len() >= n {
                break;
            }
            out.push(input[i]);
            i += 1;
        }
    }
}

fn js_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 5 < n && input[i + 1] == b'u' && input[i + 2..i + 6].iter().all(|&h| is_hex(h)) {
            // \uHHHH: the low byte; full-width ASCII moved down to ASCII.
            let mut c = x2c(input[i + 4], input[i + 5]);
            let ff = input[i + 2..i + 4].iter().all(|&h| h == b'f' || h == b'F');
            if c > 0 && c < 0x5f && ff {
                c += 0x20;
            }
            out.push(c);
            i += 6;
        } else if i + 3 < n && input[i + 1] == b'x' && is_hex(input[i + 2]) && is_hex(input[i + 3])
        {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if i + 1 < n && is_octal(input[i + 1]) {
            // \OOO: up to three digits, but only two if three would exceed a byte.
            let mut j = octal_run(&input[i + 1..]);
            if j == 3 && input[i + 1] > b'3' {
                j = 2;
            }
            out.push(strtol_byte(&input[i + 1..i + 1 + j], 8));
            i += 1 + j;
        } else if i + 1 < n {
            out.push(match input[i + 1] {
                b'a' => 0x07,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'v' => 0x0b,
                c => c,
            });
            i += 2;
        } else {
            out.extend_from_slice(&input[i..]);
            i = n;
        }
    }
}

fn css_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 1 >= n {
            // A backslash at the end continues to nothing.
            i += 1;
            continue;
        }
        i += 1;
        let mut j = 0;
        while j < 6 && i + j < n && is_hex(input[i + j]) {
            j += 1;
        }
        if j == 0 {
            if input[i] == b'\n' {
                i += 1; // an escaped newline is a line continuation
            } else {
                out.push(input[i]);
                i += 1;
            }
            continue;
        }
        // Only the last two digits count; four (or more, when led by zeros) get the
        // full-width check.
        let (c, fullcheck) = match j {
            1 => (hex_value(input[i]), false),
            2 | 3 => (x2c(input[i + j - 2], input[i + j - 1]), false),
            4 => (x2c(input[i + 2], input[i + 3]), true),
            5 => (x2c(input[i + 3], input[i + 4]), input[i] == b'0'),
            _ => (
                x2c(input[i + 4], input[i + 5]),
                input[i] == b'0' && input[i + 1] == b'0',
            ),
        };
        let mut c = c;
        if fullcheck
            && c > 0
            && c < 0x5f
            && matches!(input[i + j - 3], b'f' | b'F')
            && matches!(input[i + j - 4], b'f' | b'F')
        {
            c += 0x20;
        }
        out.push(c);
        // One whitespace after a hex escape belongs to the escape.
        if i + j < n && is_space(input[i + j]) {
            j += 1;
        }
        i += j;
    }
}

fn escape_seq_decode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    while i < n {
        if !(input[i] == b'\\' && i + 1 < n) {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let simple = match input[i + 1] {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'?' => Some(b'?'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let next = input[i + 1];
        if (next == b'x' || next == b'X')
            && i + 3 < n
            && is_hex(input[i + 2])
            && is_hex(input[i + 3])
        {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if is_octal(next) {
            let j = octal_run(&input[i + 1..]);
            // Up to \777: ModSecurity keeps the low byte.
            let v = input[i + 1..i + 1 + j]
                .iter()
                .fold(0u32, |v, &d| v * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 1 + j;
        } else {
            // Not an escape it knows: the backslash goes, the character stays.
            out.push(next);
            i += 2;
        }
    }
}

fn replace_comments(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut i = 0;
    let mut in_comment = false;
    while i < n {
        if !in_comment {
            if input[i] == b'/' && i + 1 < n && input[i + 1] == b'*' {
                in_comment = true;
                i += 2;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i] == b'*' && i + 1 < n && input[i + 1] == b'/' {
            in_comment = false;
            i += 2;
            out.push(b' ');
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
}

fn remove_comments_char(input: &[u8], out: &mut Vec<u8>) {
    let mut s = input;
    while let Some(&c) = s.first() {
        let skip = if s.starts_with(b"/*") || s.starts_with(b"*/") {
            2
        } else if s.starts_with(b"<!--") {
            4
        } else if s.starts_with(b"-->") {
            3
        } else if s.starts_with(b"--") {
            2
        } else if c == b'#' {
            1
        } else {
            out.push(c);
            1
        };
        s = &s[skip..];
    }
}

/// `removeComments`: C and HTML comments go; `--` or `#` ends the value. Like
/// ModSecurity, the byte after a closing `*/` or `-->` is copied without being looked
/// at (at the very end that is the string's terminating NUL).
fn remove_comments(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let at = |k: usize| input.get(k).copied().unwrap_or(0);
    let mut i = 0;
    let mut in_comment = false;
    while i < n {
        if !in_comment {
            if input[i] == b'/' && at(i + 1) == b'*' && i + 1 < n {
                in_comment = true;
                i += 2;
            } else if input[i..].starts_with(b"<!--") {
                in_comment = true;
                i += 4;
            } else if input[i..].starts_with(b"--") || input[i] == b'#' {
                break;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i..].starts_with(b"*/") {
            in_comment = false;
            i += 2;
            out.push(at(i));
            i += 1;
        } else if input[i..].starts_with(b"-->") {
            in_comment = false;
            i += 3;
            out.push(at(i));
            i += 1;
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
}

/// Path normalisation (`normalisePath`, and with `win` also backslashes as separators):
/// removes `./` and `x/../` segments and repeated slashes, never going above the root,
/// keeping a trailing slash only if there was one. A port of ModSecurity's algorithm,
/// whose behaviour on odd inputs (`/..` becomes empty) CRS's tests rely on.
fn normalise_path(input: &[u8], win: bool, out: &mut Vec<u8>) {
    if input.is_empty() {
        return;
    }
    let mut buf = input.to_vec();
    let sep = |c: u8| c == b'/' || (win && c == b'\\');
    let end = buf.len() - 1;
    let relative = !sep(buf[0]);
    let trailing = sep(buf[end]);
    let (mut src, mut dst): (usize, isize) = (0, 0);
    let mut hitroot = false;
    let mut done = false;
    while !done && src <= end && dst <= end as isize {
        if win {
            if buf[src] == b'\\' {
                buf[src] = b'/';
            }
            if src < end && buf[src + 1] == b'\\' {
                buf[src + 1] = b'/';
            }
        }
        let mut skip_copy = false;
        'normalise: {
            if src == end {
                done = true;
            } else if buf[src + 1] != b'/' {
                break 'normalise; // not the end of a segment
            }
            if src != end && buf[src] == b'/' {
                break 'normalise; // empty segment: the copy below collapses it
            }
            if buf[src] == b'.' {
                let prev = |d: isize| if d > 0 { buf[(d - 1) as usize] } else { 0 };
                if dst > 0 && prev(dst) == b'.' {
                    // A back-reference.
                    if relative && (hitroot || dst - 2 <= 0) {
                        hitroot = true;
                        break 'normalise;
                    }
                    dst -= 3;
                    while dst > 0 && buf[dst as usize] != b'/' {
                        dst -= 1;
                    }
                    if dst <= 0 {
                        hitroot = true;
                        dst = 0;
                        if !relative && src == end {
                            dst += 1;
                        }
                    }
                    if done {
                        skip_copy = true;
                        break 'normalise;
                    }
                    src += 1;
                } else if dst == 0 {
                    // A self-reference at the start of a relative path.
                    if done {
                        skip_copy = true;
                        break 'normalise;
                    }
                    src += 1;
                } else if prev(dst) == b'/' {
                    // A self-reference.
                    if done {
                        skip_copy = true;
                        break 'normalise;
                    }
                    dst -= 1;
                    src += 1;
                }
            } else if dst > 0 {
                hitroot = false; // a regular segment
            }
        }
        if skip_copy {
            continue;
        }
        if src > end {
            break;
        }
        if buf[src] == b'/' {
            while src < end && sep(buf[src + 1]) {
                src += 1;
            }
            if relative && dst == 0 {
                src += 1;
                continue;
            }
        }
        buf[dst as usize] = buf[src];
        dst += 1;
        src += 1;
    }
    let mut len = dst.max(0) as usize;
    if !trailing && len > 0 && buf[len - 1] == b'/' {
        len -= 1;
    }
    out.extend_from_slice(&buf[..len]);
}

/// UTF-8 sequences to `%uHHHH` (lower-case hex, at least four digits); ASCII unchanged;
/// invalid lead bytes of multi-byte sequences dropped, stray continuation bytes kept;
/// overlong forms and surrogates additionally followed by their raw lead byte.
fn utf8_to_unicode(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    // Past the end ModSecurity reads the string's terminating NUL.
    let at = |k: usize| input.get(k).copied().unwrap_or(0);
    let mut i = 0;
    while i < n {
        let c = input[i];
        let mut seq_len = 0usize;
        let mut d: u32 = 0;
        let cont = |k: usize| at(i + k) & 0xc0 == 0x80;
        if c & 0x80 == 0 {
            // A NUL before the last byte is dropped (written, then overwritten).
            if c != 0 || i + 1 >= n {
                out.push(c);
            }
        } else if c & 0xe0 == 0xc0 {
            if cont(1) {
                seq_len = 2;
                d = (u32::from(c & 0x1f) << 6) | u32::from(at(i + 1) & 0x3f);
            }
        } else if c & 0xf0 == 0xe0 {
            if cont(1) && cont(2) {
                seq_len = 3;
                d = (u32::from(c & 0x0f) << 12)
                    | (u32::from(at(i + 1) & 0x3f) << 6)
                    | u32::from(at(i + 2) & 0x3f);
            }
        } else if c & 0xf8 == 0xf0 {
            if c >= 0xf5 {
                out.push(c);
            }
            if cont(1) && cont(2) && cont(3) {
                seq_len = 4;
                d = (u32::from(c & 0x07) << 18)
                    | (u32::from(at(i + 1) & 0x3f) << 12)
                    | (u32::from(at(i + 2) & 0x3f) << 6)
                    | u32::from(at(i + 3) & 0x3f);
            }
        } else {
            out.push(c);
        }
        if seq_len > 0 {
            out.extend_from_slice(b"%u");
            let hex = format!("{d:x}");
            for _ in hex.len()..4 {
                out.push(b'0');
            }
            out.extend_from_slice(hex.as_bytes());
        }
        if (0xd800..=0xdfff).contains(&d) {
            out.push(c);
        }
        if (seq_len == 4 && d < 0x1_0000)
            || (seq_len == 3 && d < 0x800)
            || (seq_len == 2 && d < 0x80)
        {
            out.push(c);
        }
        i += seq_len.max(1);
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn base64_encode(input: &[u8], out: &mut Vec<u8>) {
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((v >> (18 - 6 * k)) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// Strict decoding as mbed TLS does it for ModSecurity: the value up to its first NUL;
/// line breaks and spaces at line ends allowed; any other invalid character, a space
/// inside a line, a digit after padding or a lone last digit makes the result empty.
fn base64_decode(input: &[u8], out: &mut Vec<u8>) {
    let input = match input.iter().position(|&c| c == 0) {
        Some(p) => &input[..p],
        None => input,
    };
    let n = input.len();
    let mut digits = 0usize;
    let mut equals = 0usize;
    let mut i = 0;
    while i < n {
        let mut spaces = false;
        while i < n && input[i] == b' ' {
            i += 1;
            spaces = true;
        }
        if i == n {
            break;
        }
        if input[i..].starts_with(b"\r\n") {
            i += 1; // the \n is skipped on the next round
            i += 1;
            continue;
        }
        if input[i] == b'\n' {
            i += 1;
            continue;
        }
        if spaces {
            return;
        }
        if input[i] == b'=' {
            equals += 1;
            if equals > 2 {
                return;
            }
        } else if equals != 0 || b64_value(input[i]).is_none() {
            return;
        }
        digits += 1;
        i += 1;
    }
    if (digits - equals) % 4 == 1 || (equals != 0 && digits % 4 != 0) {
        return;
    }
    let mut acc: u32 = 0;
    let mut k = 0;
    for &c in input {
        let Some(v) = b64_value(c) else { continue };
        acc = (acc << 6) | u32::from(v);
        k += 1;
        if k == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            k = 0;
        }
    }
    match k {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

/// `base64DecodeExt`: skips what is not a base64 digit; a `=` in the wrong place (or a
/// lone last digit before padding) makes the result empty.
fn base64_decode_forgiving(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0usize; // digits seen
    // ModSecurity compares the last character's *decoded value* with '=' (61) after the
    // loop, so a final `9` (digit value 61) counts as padding there.
    let mut last_pad = false;
    let mut cur: u8 = 0;
    for (pos, &c) in input.iter().enumerate() {
        if c == b'=' {
            last_pad = true;
            if input.get(pos + 1) != Some(&b'=') && i % 4 == 1 {
                out.clear();
                return;
            }
            continue;
        }
        let Some(v) = b64_value(c) else {
            last_pad = false;
            continue;
        };
        last_pad = v == b'=';
        match i % 4 {
            0 => cur = v << 2,
            1 => {
                out.push(cur | (v >> 4));
                cur = (v & 0x0f) << 4;
            }
            2 => {
                out.push(cur | (v >> 2));
                cur = (v & 0x03) << 6;
            }
            _ => out.push(cur | v),
        }
        i += 1;
    }
    if last_pad && i % 4 == 1 {
        out.clear();
    }
}

#[cfg(test)]
mod tests;
