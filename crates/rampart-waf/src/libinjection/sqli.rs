//! libinjection's SQL tokenizer and token folding: an input becomes at most five tokens
//! (keywords, strings, numbers, operators, …), folded the way a SQL parser would group
//! them, and the token types spell the fingerprint looked up in libinjection's table.
//!
//! Written after the C library's behaviour, quirks included, since `@detectSQLi` must
//! answer as it does: token text is kept to 31 bytes, NUL stops every span the C code
//! measures with `strchr` (it finds the string terminator), 0xA0 is whitespace (Latin-1
//! no-break space, which MySQL skips), and a leading quote context makes the input start
//! inside a string. The keyword and fingerprint table is libinjection's, from the
//! `libinjectionrs` crate (`sqli_data::SQL_KEYWORDS`, sorted by bytes; checked in tests).

use libinjectionrs::sqli::sqli_data::SQL_KEYWORDS;

/// The most tokens a fingerprint has.
pub(super) const MAX_TOKENS: usize = 5;
/// Token text is kept to this size less one (the C code's NUL-terminated buffer).
const TOKEN_SIZE: usize = 32;

pub(super) const QUOTE_NONE: u32 = 1;
pub(super) const QUOTE_SINGLE: u32 = 2;
pub(super) const QUOTE_DOUBLE: u32 = 4;
pub(super) const SQL_ANSI: u32 = 8;
pub(super) const SQL_MYSQL: u32 = 16;

// Token types: libinjection's one-letter codes, which spell the fingerprint.
const NONE: u8 = 0;
pub(super) const KEYWORD: u8 = b'k';
const UNION: u8 = b'U';
const GROUP: u8 = b'B';
const EXPRESSION: u8 = b'E';
const SQLTYPE: u8 = b't';
const FUNCTION: u8 = b'f';
pub(super) const BAREWORD: u8 = b'n';
pub(super) const NUMBER: u8 = b'1';
const VARIABLE: u8 = b'v';
const STRING: u8 = b's';
const OPERATOR: u8 = b'o';
const LOGIC_OPERATOR: u8 = b'&';
pub(super) const COMMENT: u8 = b'c';
const COLLATE: u8 = b'A';
const LEFTPARENS: u8 = b'(';
const RIGHTPARENS: u8 = b')';
const LEFTBRACE: u8 = b'{';
const RIGHTBRACE: u8 = b'}';
const DOT: u8 = b'.';
const COMMA: u8 = b',';
const SEMICOLON: u8 = b';';
const TSQL: u8 = b'T';
const UNKNOWN: u8 = b'?';
const EVIL: u8 = b'X';
pub(super) const FINGERPRINT: u8 = b'F';
const BACKSLASH: u8 = b'\\';

/// A fingerprint: up to five token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    kinds: [u8; MAX_TOKENS],
    len: usize,
}

impl Fingerprint {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.kinds[..self.len]
    }
}

/// One token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: u8,
    pub pos: usize,
    /// The length of `val` (at most 31).
    pub len: usize,
    /// The token's text, NUL-padded.
    pub val: [u8; TOKEN_SIZE],
    /// The quote a string opened / closed with (0: none).
    pub str_open: u8,
    pub str_close: u8,
    /// The number of `@`s of a variable.
    pub count: u8,
}

const EMPTY: Token = Token {
    kind: NONE,
    pos: 0,
    len: 0,
    val: [0; TOKEN_SIZE],
    str_open: 0,
    str_close: 0,
    count: 0,
};

impl Token {
    fn assign(&mut self, kind: u8, pos: usize, text: &[u8]) {
        let len = text.len().min(TOKEN_SIZE - 1);
        self.kind = kind;
        self.pos = pos;
        self.len = len;
        self.val = [0; TOKEN_SIZE];
        self.val[..len].copy_from_slice(&text[..len]);
    }

    fn assign_char(&mut self, kind: u8, pos: usize, ch: u8) {
        self.kind = kind;
        self.pos = pos;
        self.len = 1;
        self.val = [0; TOKEN_SIZE];
        self.val[0] = ch;
    }

    /// The text up to its first NUL, as the C code's string functions see it.
    pub(super) fn text(&self) -> &[u8] {
        let end = self.val.iter().position(|&b| b == 0).unwrap_or(TOKEN_SIZE);
        &self.val[..end]
    }

    /// `cstrcasecmp(word, val, len) == 0`: the first `len` bytes of the text, upper-cased,
    /// are exactly `word`.
    fn is(&self, word: &[u8]) -> bool {
        equals_upper(word, &self.val[..self.len])
    }

    fn is_arithmetic_op(&self) -> bool {
        self.kind == OPERATOR
            && self.len == 1
            && matches!(self.val[0], b'*' | b'/' | b'-' | b'+' | b'%')
    }

    fn is_unary_op(&self) -> bool {
        if self.kind != OPERATOR {
            return false;
        }
        match self.len {
            1 => matches!(self.val[0], b'+' | b'-' | b'!' | b'~'),
            2 => self.val[0] == b'!' && self.val[1] == b'!',
            3 => self.is(b"NOT"),
            _ => false,
        }
    }
}

/// `word` (upper case, no NUL) equals `key` upper-cased; a NUL in `key` never matches.
fn equals_upper(word: &[u8], key: &[u8]) -> bool {
    word.len() == key.len()
        && word
            .iter()
            .zip(key)
            .all(|(&w, &k)| k != 0 && w == k.to_ascii_uppercase())
}

/// The type libinjection's table gives `key` (compared upper-cased), or `NONE`.
pub(super) fn lookup(key: &[u8]) -> u8 {
    let table = Table::get();
    // Most words are told absent by their length and first or last byte alone (no entry
    // of ten bytes starts with `J` and ends with `S`, as `json.items` would). Words
    // longer than the longest entry, or with a NUL, are not in the table.
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else {
        return NONE;
    };
    let len = 1u64 << (key.len() & 63);
    if key.len() > TOKEN_SIZE
        || table.starting[usize::from(first.to_ascii_uppercase())] & len == 0
        || table.ending[usize::from(last.to_ascii_uppercase())] & len == 0
        || key.contains(&0)
    {
        return NONE;
    }
    let mut upper = [0u8; TOKEN_SIZE];
    for (u, k) in upper.iter_mut().zip(key) {
        *u = k.to_ascii_uppercase();
    }
    table.find(&upper[..key.len()])
}

/// libinjection's table in an open-addressing hash table (built on first use): a lookup
/// is one hash and, mostly, one comparison — the tokenizer looks up every word, and most
/// are not in the table. Before the hash, two bit masks per byte (the lengths of the
/// entries starting, and ending, with it) turn most absent words away.
struct Table {
    /// Per slot: 1 + the index into `SQL_KEYWORDS` (0: empty).
    slots: Vec<u16>,
    mask: usize,
    /// Per first byte (upper case): the lengths of the entries that start with it, as
    /// bits (`1 << len`; no entry is longer than [`TOKEN_SIZE`]); and per last byte, of
    /// the entries that end with it.
    starting: [u64; 256],
    ending: [u64; 256],
}

impl Table {
    fn get() -> &'static Table {
        static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let size = (SQL_KEYWORDS.len() * 4).next_power_of_two();
            let mut t = Table {
                slots: vec![0; size],
                mask: size - 1,
                starting: [0; 256],
                ending: [0; 256],
            };
            for (i, k) in SQL_KEYWORDS.iter().enumerate() {
                let w = k.word.as_bytes();
                if let (Some(&first), Some(&last), true) =
                    (w.first(), w.last(), w.len() <= TOKEN_SIZE)
                {
                    t.starting[usize::from(first)] |= 1 << w.len();
                    t.ending[usize::from(last)] |= 1 << w.len();
                }
                let mut at = hash(k.word.as_bytes()) & t.mask;
                while t.slots[at] != 0 {
                    at = (at + 1) & t.mask;
                }
                t.slots[at] = u16::try_from(i + 1).unwrap_or(0);
            }
            t
        })
    }

    fn find(&self, upper: &[u8]) -> u8 {
        let mut at = hash(upper) & self.mask;
        loop {
            let slot = usize::from(self.slots[at]);
            if slot == 0 {
                return NONE;
            }
            let k = &SQL_KEYWORDS[slot - 1];
            if k.word.as_bytes() == upper {
                return k.token_type;
            }
            at = (at + 1) & self.mask;
        }
    }
}

/// FNV-1a.
fn hash(bytes: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high bits in: the table is indexed by the low ones.
    (h ^ (h >> 32)) as usize
}

/// libinjection's SQL whitespace (NUL and 0xA0 included).
fn white(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0 | 0)
}

/// A set of bytes, as a table.
type Set = [bool; 256];

const fn set(bytes: &[u8]) -> Set {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// What ends a word.
const WORD_END: Set = set(b" []{}<>:\\?=@!#~+-*/&|^%(),';\t\n\x0b\x0c\r\"\xa0");
/// What ends a variable's name.
const VAR_END: Set = set(b" <>:\\?=@!#~+-*/&|^%(),';\t\n\x0b\x0c\r'`\"");
const MONEY: Set = set(b"0123456789.,");
const LETTERS: Set = set(b"abcdefghjiklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
const BINARY: Set = set(b"01");
const HEX: Set = set(b"0123456789ABCDEFabcdef");

/// The length of the run of bytes from `set` (C `strspn` over a length; NUL always
/// counts as in the set, as `strchr` finds the terminator).
fn span(s: &[u8], set: &Set) -> usize {
    s.iter()
        .position(|&b| b != 0 && !set[usize::from(b)])
        .unwrap_or(s.len())
}

/// The length of the run of bytes not in `set` (C `strcspn` over a length; NUL always
/// ends it).
fn span_not(s: &[u8], set: &Set) -> usize {
    s.iter()
        .position(|&b| b == 0 || set[usize::from(b)])
        .unwrap_or(s.len())
}

/// The offset of the first `a` immediately followed by `b`.
fn find_pair(s: &[u8], a: u8, b: u8) -> Option<usize> {
    s.windows(2).position(|w| w[0] == a && w[1] == b)
}

/// The tokenizer and folder over one input, in one quote context and SQL dialect.
pub(super) struct Sqli<'a> {
    s: &'a [u8],
    flags: u32,
    pos: usize,
    /// The folded tokens (the first `n` of them, `n` from [`Sqli::fold`]).
    pub tokens: [Token; MAX_TOKENS + 3],
    pub stats_comment_ddx: u32,
    pub stats_comment_hash: u32,
    pub stats_tokens: u32,
    pub stats_folds: u32,
}

impl<'a> Sqli<'a> {
    pub(super) fn new(s: &'a [u8], flags: u32) -> Sqli<'a> {
        let flags = if flags == 0 {
            QUOTE_NONE | SQL_ANSI
        } else {
            flags
        };
        Sqli {
            s,
            flags,
            pos: 0,
            tokens: [EMPTY; MAX_TOKENS + 3],
            stats_comment_ddx: 0,
            stats_comment_hash: 0,
            stats_tokens: 0,
            stats_folds: 0,
        }
    }

    /// The fingerprint: the folded tokens' types (`X` alone if any is evil).
    pub(super) fn fingerprint(&mut self) -> Fingerprint {
        let n = self.fold();
        // A trailing empty, unclosed backtick word reads as a comment.
        if n > 2 {
            let last = &mut self.tokens[n - 1];
            if last.kind == BAREWORD
                && last.str_open == b'`'
                && last.len == 0
                && last.str_close == 0
            {
                last.kind = COMMENT;
            }
        }
        let mut fp = Fingerprint {
            kinds: [0; MAX_TOKENS],
            len: 0,
        };
        // The C code stops the fingerprint at a NUL type (never expected).
        for t in self.tokens[..n].iter().take_while(|t| t.kind != 0) {
            fp.kinds[fp.len] = t.kind;
            fp.len += 1;
        }
        if fp.as_bytes().contains(&EVIL) {
            self.tokens[0] = EMPTY;
            self.tokens[0].kind = EVIL;
            self.tokens[0].val[0] = EVIL;
            self.tokens[1].kind = NONE;
            fp.kinds[0] = EVIL;
            fp.len = 1;
        }
        fp
    }

    /// Reads the next token into `tokens[cur]`; false at the end of the input.
    pub(super) fn tokenize(&mut self, cur: usize) -> bool {
        let slen = self.s.len();
        if slen == 0 {
            return false;
        }
        self.tokens[cur] = EMPTY;
        // In a quote context the input starts inside a string.
        if self.pos == 0 && self.flags & (QUOTE_SINGLE | QUOTE_DOUBLE) != 0 {
            let delim = if self.flags & QUOTE_SINGLE != 0 {
                b'\''
            } else if self.flags & QUOTE_DOUBLE != 0 {
                b'"'
            } else {
                0
            };
            self.pos = self.string_core(cur, 0, delim, 0);
            self.stats_tokens += 1;
            return true;
        }
        while self.pos < slen {
            self.pos = self.parse(cur);
            if self.tokens[cur].kind != NONE {
                self.stats_tokens += 1;
                return true;
            }
        }
        false
    }

    /// Parses one token (or skips whitespace) at `self.pos`; the position after it.
    fn parse(&mut self, cur: usize) -> usize {
        let pos = self.pos;
        let ch = self.s[pos];
        match ch {
            0..=32 | 127 | 0xa0 => pos + 1,
            b'!' | b'&' | b'*' | b':' | b'<' | b'=' | b'>' | b'|' => self.operator2(cur),
            b'"' | b'\'' => self.string(cur),
            b'#' => self.hash(cur),
            b'$' => self.money(cur),
            b'%' | b'+' | b'^' | b'~' => self.operator1(cur),
            b'(' | b')' | b',' | b';' | b'{' | b'}' => {
                self.tokens[cur].assign_char(ch, pos, ch);
                pos + 1
            }
            b'-' => self.dash(cur),
            b'.' | b'0'..=b'9' => self.number(cur),
            b'/' => self.slash(cur),
            b'?' | b']' => {
                self.tokens[cur].assign_char(UNKNOWN, pos, ch);
                pos + 1
            }
            b'@' => self.var(cur),
            b'B' | b'b' => self.bstring(cur),
            b'E' | b'e' => self.estring(cur),
            b'N' | b'n' => self.nqstring(cur),
            b'Q' | b'q' => self.qstring_core(cur, 0),
            b'U' | b'u' => self.ustring(cur),
            b'X' | b'x' => self.xstring(cur),
            b'[' => self.bword(cur),
            b'\\' => self.backslash(cur),
            b'`' => self.tick(cur),
            _ => self.word(cur),
        }
    }

    fn operator1(&mut self, cur: usize) -> usize {
        let pos = self.pos;
        self.tokens[cur].assign_char(OPERATOR, pos, self.s[pos]);
        pos + 1
    }

    fn eol_comment(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        match memchr::memchr(b'\n', &s[pos..]) {
            None => {
                self.tokens[cur].assign(COMMENT, pos, &s[pos..]);
                s.len()
            }
            Some(i) => {
                self.tokens[cur].assign(COMMENT, pos, &s[pos..pos + i]);
                pos + i + 1
            }
        }
    }

    fn hash(&mut self, cur: usize) -> usize {
        self.stats_comment_hash += 1;
        if self.flags & SQL_MYSQL != 0 {
            self.stats_comment_hash += 1;
            self.eol_comment(cur)
        } else {
            self.tokens[cur].assign_char(OPERATOR, self.pos, b'#');
            self.pos + 1
        }
    }

    fn dash(&mut self, cur: usize) -> usize {
        let (s, pos, slen) = (self.s, self.pos, self.s.len());
        let dd = pos + 1 < slen && s[pos + 1] == b'-';
        if dd && (pos + 2 == slen || (pos + 2 < slen && white(s[pos + 2]))) {
            self.eol_comment(cur)
        } else if dd && self.flags & SQL_ANSI != 0 {
            // "--x": a comment in ANSI SQL, not in MySQL (which needs the space).
            self.stats_comment_ddx += 1;
            self.eol_comment(cur)
        } else {
            self.tokens[cur].assign_char(OPERATOR, pos, b'-');
            pos + 1
        }
    }

    fn slash(&mut self, cur: usize) -> usize {
        let (s, pos, slen) = (self.s, self.pos, self.s.len());
        if pos + 1 == slen || s[pos + 1] != b'*' {
            return self.operator1(cur);
        }
        let body = &s[pos + 2..];
        let end = find_pair(body, b'*', b'/').map(|i| pos + 2 + i);
        let clen = match end {
            None => slen - pos,
            Some(star) => star + 2 - pos,
        };
        // A nested "/*" (up to the closing '*') or MySQL's "/*!" executable comment.
        let nested = end.is_some_and(|star| {
            let region = &s[pos + 2..(star + 1).min(slen)];
            find_pair(region, b'/', b'*').is_some()
        });
        let mysql = pos + 2 < slen && s[pos + 2] == b'!';
        let kind = if nested || mysql { EVIL } else { COMMENT };
        self.tokens[cur].assign(kind, pos, &s[pos..pos + clen]);
        pos + clen
    }

    fn backslash(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 1 < s.len() && s[pos + 1] == b'N' {
            // MySQL's \N is NULL.
            self.tokens[cur].assign(NUMBER, pos, &s[pos..pos + 2]);
            pos + 2
        } else {
            self.tokens[cur].assign_char(BACKSLASH, pos, s[pos]);
            pos + 1
        }
    }

    fn operator2(&mut self, cur: usize) -> usize {
        let (s, pos, slen) = (self.s, self.pos, self.s.len());
        if pos + 1 >= slen {
            return self.operator1(cur);
        }
        if pos + 2 < slen && &s[pos..pos + 3] == b"<=>" {
            self.tokens[cur].assign(OPERATOR, pos, &s[pos..pos + 3]);
            return pos + 3;
        }
        let kind = lookup(&s[pos..pos + 2]);
        if kind != NONE {
            self.tokens[cur].assign(kind, pos, &s[pos..pos + 2]);
            return pos + 2;
        }
        if s[pos] == b':' {
            self.tokens[cur].assign(b':', pos, &s[pos..pos + 1]);
            pos + 1
        } else {
            self.operator1(cur)
        }
    }

    /// A string from `pos + offset` to the next unescaped `delim` (backslash-escaped or
    /// doubled delimiters do not end it); `offset` 1 skips an opening quote.
    fn string_core(&mut self, cur: usize, pos: usize, delim: u8, offset: usize) -> usize {
        let s = self.s;
        let len = s.len();
        let start = pos + offset;
        let token = &mut self.tokens[cur];
        token.str_open = if offset > 0 { delim } else { 0 };
        let mut q = memchr::memchr(delim, &s[start.min(len)..]).map(|i| start + i);
        loop {
            match q {
                None => {
                    token.assign(STRING, start, &s[start.min(len)..]);
                    token.str_close = 0;
                    return len;
                }
                Some(at) if backslash_escaped(s, at, start) => {
                    q = memchr::memchr(delim, &s[at + 1..]).map(|i| at + 1 + i);
                }
                Some(at) if at + 1 < len && s[at + 1] == s[at] => {
                    q = memchr::memchr(delim, &s[(at + 2).min(len)..]).map(|i| at + 2 + i);
                }
                Some(at) => {
                    token.assign(STRING, start, &s[start..at]);
                    token.str_close = delim;
                    return at + 1;
                }
            }
        }
    }

    fn string(&mut self, cur: usize) -> usize {
        let pos = self.pos;
        self.string_core(cur, pos, self.s[pos], 1)
    }

    /// `E'…'`: a string with backslash escapes (PostgreSQL).
    fn estring(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 >= s.len() || s[pos + 1] != b'\'' {
            return self.word(cur);
        }
        self.string_core(cur, pos, b'\'', 2)
    }

    /// `U&'…'`: a Unicode-escaped string.
    fn ustring(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 < s.len() && s[pos + 1] == b'&' && s[pos + 2] == b'\'' {
            self.pos += 2;
            let end = self.string(cur);
            let token = &mut self.tokens[cur];
            token.str_open = b'u';
            if token.str_close == b'\'' {
                token.str_close = b'u';
            }
            end
        } else {
            self.word(cur)
        }
    }

    /// `q'[…]'` and `nq'…'`: Oracle's quoted strings with a chosen delimiter.
    fn qstring_core(&mut self, cur: usize, offset: usize) -> usize {
        let s = self.s;
        let slen = s.len();
        let pos = self.pos + offset;
        if pos >= slen || !matches!(s[pos], b'q' | b'Q') || pos + 2 >= slen || s[pos + 1] != b'\'' {
            return self.word(cur);
        }
        let ch = s[pos + 2];
        // C compares a signed char: bytes from 0x80 are "below 33" too.
        if !(33..0x80).contains(&ch) {
            return self.word(cur);
        }
        let close = match ch {
            b'(' => b')',
            b'[' => b']',
            b'{' => b'}',
            b'<' => b'>',
            other => other,
        };
        let body = pos + 3;
        let end = find_pair(&s[body..], close, b'\'').map(|i| body + i);
        self.quoted(cur, body, end, b'q', 2)
    }

    /// A string token from `body` to `end`, the closing delimiter's offset (`None`: to the
    /// end of the input, unclosed), opened and closed with `quote`; the position after
    /// the delimiter (`close_len` bytes).
    fn quoted(
        &mut self,
        cur: usize,
        body: usize,
        end: Option<usize>,
        quote: u8,
        close_len: usize,
    ) -> usize {
        let s = self.s;
        let token = &mut self.tokens[cur];
        token.str_open = quote;
        match end {
            None => {
                token.assign(STRING, body, &s[body..]);
                token.str_close = 0;
                s.len()
            }
            Some(e) => {
                token.assign(STRING, body, &s[body..e]);
                token.str_close = quote;
                e + close_len
            }
        }
    }

    fn nqstring(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 < s.len() && s[pos + 1] == b'\'' {
            return self.estring(cur);
        }
        self.qstring_core(cur, 1)
    }

    /// `b'0101'` and `x'4142'`: bit and hex string literals, numbers.
    fn digit_string(&mut self, cur: usize, digits: &Set) -> usize {
        let (s, pos, slen) = (self.s, self.pos, self.s.len());
        if pos + 2 >= slen || s[pos + 1] != b'\'' {
            return self.word(cur);
        }
        let n = span(&s[pos + 2..], digits);
        if pos + 2 + n >= slen || s[pos + 2 + n] != b'\'' {
            return self.word(cur);
        }
        self.tokens[cur].assign(NUMBER, pos, &s[pos..pos + n + 3]);
        pos + n + 3
    }

    fn bstring(&mut self, cur: usize) -> usize {
        self.digit_string(cur, &BINARY)
    }

    fn xstring(&mut self, cur: usize) -> usize {
        self.digit_string(cur, &HEX)
    }

    /// `[name]`: SQL Server's bracketed identifier.
    fn bword(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        match memchr::memchr(b']', &s[pos..]) {
            None => {
                self.tokens[cur].assign(BAREWORD, pos, &s[pos..]);
                s.len()
            }
            Some(i) => {
                self.tokens[cur].assign(BAREWORD, pos, &s[pos..=pos + i]);
                pos + i + 1
            }
        }
    }

    fn word(&mut self, cur: usize) -> usize {
        let (s, pos) = (self.s, self.pos);
        let wlen = span_not(&s[pos..], &WORD_END);
        let token = &mut self.tokens[cur];
        token.assign(BAREWORD, pos, &s[pos..pos + wlen]);
        // "table.column" or "db`…": if the part before a '.' or '`' is a keyword, it is
        // the token.
        for i in 0..token.len {
            if matches!(token.val[i], b'.' | b'`') {
                let kind = lookup(&token.val[..i]);
                if kind != NONE && kind != BAREWORD {
                    *token = EMPTY;
                    token.assign(kind, pos, &s[pos..pos + i]);
                    return pos + i;
                }
            }
        }
        if wlen < TOKEN_SIZE {
            let kind = lookup(&token.val[..wlen]);
            token.kind = if kind == NONE { BAREWORD } else { kind };
        }
        pos + wlen
    }

    /// `` `name` ``: a MySQL quoted identifier (a function if the table says so).
    fn tick(&mut self, cur: usize) -> usize {
        let pos = self.pos;
        let end = self.string_core(cur, pos, b'`', 1);
        let token = &mut self.tokens[cur];
        let kind = lookup(&token.val[..token.len]);
        token.kind = if kind == FUNCTION { FUNCTION } else { BAREWORD };
        end
    }

    /// `@name`, `@@name`, and `@'…'`, `` @`…` ``.
    fn var(&mut self, cur: usize) -> usize {
        let (s, slen) = (self.s, self.s.len());
        let mut pos = self.pos + 1;
        if pos < slen && s[pos] == b'@' {
            pos += 1;
            self.tokens[cur].count = 2;
        } else {
            self.tokens[cur].count = 1;
        }
        if pos < slen {
            if s[pos] == b'`' {
                self.pos = pos;
                let end = self.tick(cur);
                self.tokens[cur].kind = VARIABLE;
                return end;
            }
            if s[pos] == b'\'' || s[pos] == b'"' {
                self.pos = pos;
                let end = self.string(cur);
                self.tokens[cur].kind = VARIABLE;
                return end;
            }
        }
        let n = span_not(&s[pos..], &VAR_END);
        self.tokens[cur].assign(VARIABLE, pos, &s[pos..pos + n]);
        pos + n
    }

    /// `$1.5` money, `$$…$$` and `$tag$…$tag$` PostgreSQL strings, else a `$` word.
    fn money(&mut self, cur: usize) -> usize {
        let (s, pos, slen) = (self.s, self.pos, self.s.len());
        if pos + 1 == slen {
            self.tokens[cur].assign_char(BAREWORD, pos, b'$');
            return slen;
        }
        let n = span(&s[pos + 1..], &MONEY);
        if n == 1 && s[pos + 1] == b'.' {
            return self.word(cur);
        }
        if n > 0 {
            self.tokens[cur].assign(NUMBER, pos, &s[pos..pos + 1 + n]);
            return pos + 1 + n;
        }
        if s[pos + 1] == b'$' {
            let body = pos + 2;
            let end = find_pair(&s[body..], b'$', b'$').map(|i| body + i);
            return self.quoted(cur, body, end, b'$', 2);
        }
        let tag = span(&s[pos + 1..], &LETTERS);
        if tag == 0 || pos + tag + 1 == slen || s[pos + tag + 1] != b'$' {
            self.tokens[cur].assign_char(BAREWORD, pos, b'$');
            return pos + 1;
        }
        // "$tag$ … $tag$": the closing delimiter is the opening one.
        let open = &s[pos..pos + tag + 2];
        let body = pos + tag + 2;
        let end = memchr::memmem::find(&s[body..], open).map(|i| body + i);
        self.quoted(cur, body, end, b'$', tag + 2)
    }

    fn number(&mut self, cur: usize) -> usize {
        let (s, slen) = (self.s, self.s.len());
        let mut pos = self.pos;
        if s[pos] == b'0' && pos + 1 < slen {
            let digits: Option<&Set> = match s[pos + 1] {
                b'X' | b'x' => Some(&HEX),
                b'B' | b'b' => Some(&BINARY),
                _ => None,
            };
            if let Some(digits) = digits {
                let n = span(&s[pos + 2..], digits);
                let kind = if n == 0 { BAREWORD } else { NUMBER };
                self.tokens[cur].assign(kind, pos, &s[pos..pos + 2 + n]);
                return pos + 2 + n;
            }
        }
        let start = pos;
        while pos < slen && s[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos < slen && s[pos] == b'.' {
            pos += 1;
            while pos < slen && s[pos].is_ascii_digit() {
                pos += 1;
            }
            if pos - start == 1 {
                // A lone '.'.
                self.tokens[cur].assign_char(DOT, start, b'.');
                return pos;
            }
        }
        let (mut have_e, mut have_exp) = (false, false);
        if pos < slen && matches!(s[pos], b'E' | b'e') {
            have_e = true;
            pos += 1;
            if pos < slen && matches!(s[pos], b'+' | b'-') {
                pos += 1;
            }
            while pos < slen && s[pos].is_ascii_digit() {
                have_exp = true;
                pos += 1;
            }
        }
        // Oracle's 1.5d / 1.5f suffixes.
        let suffix_ends =
            |at: usize| at == slen || white(s[at]) || matches!(s[at], b';' | b'u' | b'U');
        if pos < slen && matches!(s[pos], b'd' | b'D' | b'f' | b'F') && suffix_ends(pos + 1) {
            pos += 1;
        }
        let kind = if have_e && !have_exp {
            BAREWORD
        } else {
            NUMBER
        };
        self.tokens[cur].assign(kind, start, &s[start..pos]);
        pos
    }

    /// Two adjacent words that the table knows as one (`UNION ALL`, `NOT IN`, `IS NOT
    /// DISTINCT`): merged into `tokens[a]`.
    fn merge_words(&mut self, a: usize, b: usize) -> bool {
        let first = [
            KEYWORD, BAREWORD, OPERATOR, UNION, FUNCTION, EXPRESSION, TSQL, SQLTYPE,
        ];
        let (ta, tb) = (self.tokens[a], self.tokens[b]);
        if !first.contains(&ta.kind) || !(first.contains(&tb.kind) || tb.kind == LOGIC_OPERATOR) {
            return false;
        }
        let merged_len = ta.len + tb.len + 1;
        if merged_len >= TOKEN_SIZE {
            return false;
        }
        let mut text = [0u8; TOKEN_SIZE];
        text[..ta.len].copy_from_slice(&ta.val[..ta.len]);
        text[ta.len] = b' ';
        text[ta.len + 1..merged_len].copy_from_slice(&tb.val[..tb.len]);
        let kind = lookup(&text[..merged_len]);
        if kind == NONE {
            return false;
        }
        self.tokens[a].assign(kind, ta.pos, &text[..merged_len]);
        true
    }

    /// Reads tokens (skipping comments, remembering the last) into `tokens[pos..]` until
    /// `pos - left` reaches `want` or the input ends.
    fn fill(
        &mut self,
        pos: &mut usize,
        left: usize,
        want: usize,
        more: &mut bool,
        last_comment: &mut Token,
    ) {
        while *more && *pos <= MAX_TOKENS && *pos - left < want {
            *more = self.tokenize(*pos);
            if *more {
                if self.tokens[*pos].kind == COMMENT {
                    *last_comment = self.tokens[*pos];
                } else {
                    last_comment.kind = NONE;
                    *pos += 1;
                }
            }
        }
    }

    /// Tokenizes and folds the input; the number of tokens of the fingerprint.
    pub(super) fn fold(&mut self) -> usize {
        let mut last_comment = EMPTY;
        let mut pos = 0usize;
        let mut left = 0usize;
        let mut more = true;

        // Leading comments, '(', SQL types and unary operators say nothing.
        while more {
            more = self.tokenize(0);
            let t = &self.tokens[0];
            if !(t.kind == COMMENT || t.kind == LEFTPARENS || t.kind == SQLTYPE || t.is_unary_op())
            {
                break;
            }
        }
        if !more {
            return 0;
        }
        pos += 1;

        loop {
            if pos >= MAX_TOKENS && self.is_function_list() {
                // "1,(2)…", "a+(b)…": a list of values; keep folding from the start.
                if pos > MAX_TOKENS {
                    self.tokens[1] = self.tokens[MAX_TOKENS];
                    pos = 2;
                } else {
                    pos = 1;
                }
                left = 0;
            }
            if !more || left >= MAX_TOKENS {
                left = pos;
                break;
            }

            // Two-token folds.
            self.fill(&mut pos, left, 2, &mut more, &mut last_comment);
            if pos - left < 2 {
                left = pos;
                continue;
            }
            let (a, b) = (self.tokens[left], self.tokens[left + 1]);
            if (a.kind == STRING && b.kind == STRING)
                || (a.kind == SEMICOLON && b.kind == SEMICOLON)
            {
                pos -= 1;
                self.stats_folds += 1;
                continue;
            } else if (a.kind == OPERATOR || a.kind == LOGIC_OPERATOR)
                && (b.is_unary_op() || b.kind == SQLTYPE)
            {
                pos -= 1;
                self.stats_folds += 1;
                left = 0;
                continue;
            } else if (a.kind == LEFTPARENS && b.is_unary_op()) || self.merge_words(left, left + 1)
            {
                pos -= 1;
                self.stats_folds += 1;
                left = left.saturating_sub(1);
                continue;
            } else if a.kind == SEMICOLON
                && b.kind == FUNCTION
                && b.val[0].eq_ignore_ascii_case(&b'I')
                && b.val[1].eq_ignore_ascii_case(&b'F')
            {
                // "; IF": T-SQL's IF statement.
                self.tokens[left + 1].kind = TSQL;
                continue;
            } else if (a.kind == BAREWORD || a.kind == VARIABLE)
                && b.kind == LEFTPARENS
                && [
                    &b"USER_ID"[..],
                    b"USER_NAME",
                    b"DATABASE",
                    b"PASSWORD",
                    b"USER",
                    b"CURRENT_USER",
                    b"CURRENT_DATE",
                    b"CURRENT_TIME",
                    b"CURRENT_TIMESTAMP",
                    b"LOCALTIME",
                    b"LOCALTIMESTAMP",
                ]
                .iter()
                .any(|w| a.is(w))
            {
                // Names that are functions when called (and columns otherwise).
                self.tokens[left].kind = FUNCTION;
                continue;
            } else if a.kind == KEYWORD && (a.is(b"IN") || a.is(b"NOT IN")) {
                self.tokens[left].kind = if b.kind == LEFTPARENS {
                    OPERATOR
                } else {
                    BAREWORD
                };
                continue;
            } else if a.kind == OPERATOR && (a.is(b"LIKE") || a.is(b"NOT LIKE")) {
                if b.kind == LEFTPARENS {
                    // "LIKE(…)": MySQL's function form.
                    self.tokens[left].kind = FUNCTION;
                }
            } else if a.kind == SQLTYPE
                && matches!(
                    b.kind,
                    BAREWORD | NUMBER | SQLTYPE | LEFTPARENS | FUNCTION | VARIABLE | STRING
                )
            {
                self.tokens[left] = b;
                pos -= 1;
                self.stats_folds += 1;
                left = 0;
                continue;
            } else if a.kind == COLLATE && b.kind == BAREWORD {
                if b.text().contains(&b'_') {
                    self.tokens[left + 1].kind = SQLTYPE;
                    left = 0;
                }
            } else if a.kind == BACKSLASH {
                if b.is_arithmetic_op() {
                    self.tokens[left].kind = NUMBER;
                } else {
                    self.tokens[left] = b;
                    pos -= 1;
                    self.stats_folds += 1;
                }
                left = 0;
                continue;
            } else if (a.kind == LEFTPARENS && b.kind == LEFTPARENS)
                || (a.kind == RIGHTPARENS && b.kind == RIGHTPARENS)
            {
                pos -= 1;
                left = 0;
                self.stats_folds += 1;
                continue;
            } else if a.kind == LEFTBRACE && b.kind == BAREWORD {
                // ODBC "{ fn … }": an empty word inside is evil.
                if b.len == 0 {
                    self.tokens[left + 1].kind = EVIL;
                    return left + 2;
                }
                left = 0;
                pos -= 2;
                self.stats_folds += 2;
                continue;
            } else if b.kind == RIGHTBRACE {
                pos -= 1;
                left = 0;
                self.stats_folds += 1;
                continue;
            }

            // Three-token folds.
            self.fill(&mut pos, left, 3, &mut more, &mut last_comment);
            if pos - left < 3 {
                left = pos;
                continue;
            }
            let (a, b, c) = (
                self.tokens[left],
                self.tokens[left + 1],
                self.tokens[left + 2],
            );
            let value = |k: u8| matches!(k, NUMBER | BAREWORD | STRING | VARIABLE);
            // "1+1", "+x-", "and x or", "@a=1", "a*b": one value.
            let operation = (a.kind == NUMBER && b.kind == OPERATOR && c.kind == NUMBER)
                || (a.kind == OPERATOR && b.kind != LEFTPARENS && c.kind == OPERATOR)
                || (a.kind == LOGIC_OPERATOR && c.kind == LOGIC_OPERATOR)
                || (a.kind == VARIABLE
                    && b.kind == OPERATOR
                    && matches!(c.kind, VARIABLE | NUMBER | BAREWORD))
                || (matches!(a.kind, BAREWORD | NUMBER)
                    && b.kind == OPERATOR
                    && matches!(c.kind, NUMBER | BAREWORD));
            if operation {
                pos -= 2;
                left = 0;
                continue;
            } else if value(a.kind) && b.kind == OPERATOR && b.text() == b"::" && c.kind == SQLTYPE
            {
                // PostgreSQL's cast "x::int".
                pos -= 2;
                left = 0;
                self.stats_folds += 2;
                continue;
            } else if value(a.kind) && b.kind == COMMA && value(c.kind) {
                pos -= 2;
                left = 0;
                continue;
            } else if b.is_unary_op()
                && ((matches!(a.kind, EXPRESSION | GROUP | COMMA) && c.kind == LEFTPARENS)
                    || (matches!(a.kind, KEYWORD | EXPRESSION | GROUP)
                        && (value(c.kind) || c.kind == FUNCTION)))
            {
                // A unary operator after a keyword or before a group says nothing.
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if a.kind == COMMA && b.is_unary_op() && value(c.kind) {
                self.tokens[left + 1] = c;
                left = 0;
                pos = pos.saturating_sub(3);
                continue;
            } else if a.kind == COMMA && b.is_unary_op() && c.kind == FUNCTION {
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if a.kind == BAREWORD && b.kind == DOT && c.kind == BAREWORD {
                // "schema.table".
                pos -= 2;
                left = 0;
                continue;
            } else if a.kind == EXPRESSION && b.kind == DOT && c.kind == BAREWORD {
                self.tokens[left + 1] = c;
                pos -= 1;
                left = 0;
                continue;
            } else if a.kind == FUNCTION && b.kind == LEFTPARENS && c.kind != RIGHTPARENS {
                // "USER(x)" is a column "user" then a group, not MySQL's USER().
                if a.is(b"USER") {
                    self.tokens[left].kind = BAREWORD;
                }
            }
            left += 1;
        }

        if left < MAX_TOKENS && last_comment.kind == COMMENT {
            self.tokens[left] = last_comment;
            left += 1;
        }
        left.min(MAX_TOKENS)
    }

    /// The shapes after five tokens that read as a list of values, folded further.
    fn is_function_list(&self) -> bool {
        let k = |i: usize| self.tokens[i].kind;
        (k(0) == NUMBER
            && (k(1) == OPERATOR || k(1) == COMMA)
            && k(2) == LEFTPARENS
            && k(3) == NUMBER
            && k(4) == RIGHTPARENS)
            || (k(0) == BAREWORD
                && k(1) == OPERATOR
                && k(2) == LEFTPARENS
                && (k(3) == BAREWORD || k(3) == NUMBER)
                && k(4) == RIGHTPARENS)
            || (k(0) == NUMBER
                && k(1) == RIGHTPARENS
                && k(2) == COMMA
                && k(3) == LEFTPARENS
                && k(4) == NUMBER)
            || (k(0) == BAREWORD
                && k(1) == RIGHTPARENS
                && k(2) == OPERATOR
                && k(3) == LEFTPARENS
                && k(4) == BAREWORD)
    }
}

/// Whether the quote at `at` is escaped by an odd run of backslashes before it (not
/// looking before `start`).
fn backslash_escaped(s: &[u8], at: usize, start: usize) -> bool {
    let run = s[start..at]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    run % 2 == 1
}
