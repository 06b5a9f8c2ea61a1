//! libinjection's HTML5 tokenizer: a reduced form of the WHATWG tokenizer's states, enough
//! to find tags, attributes, their values and comments in a fragment, started in text or
//! inside an attribute value. Its quirks are libinjection's and kept on purpose, since
//! `@detectXSS` must answer as the C library does: NUL counts as whitespace between
//! attributes (the C code tests whitespace with `strchr`, which finds the terminator),
//! NULs inside a tag name are skipped, a 0xFF byte where whitespace may be skipped ends
//! the input (a signed `char` equal to the C code's end marker), and `<%…%>` is a comment
//! (old IE and Safari).

use memchr::memchr;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    DataText,
    TagNameOpen,
    TagNameClose,
    TagNameSelfClose,
    TagClose,
    AttrName,
    AttrValue,
    TagComment,
    Doctype,
}

impl Kind {
    /// libinjection's name for the kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DataText => "DATA_TEXT",
            Kind::TagNameOpen => "TAG_NAME_OPEN",
            Kind::TagNameClose => "TAG_NAME_CLOSE",
            Kind::TagNameSelfClose => "TAG_NAME_SELFCLOSE",
            Kind::TagClose => "TAG_CLOSE",
            Kind::AttrName => "ATTR_NAME",
            Kind::AttrValue => "ATTR_VALUE",
            Kind::TagComment => "TAG_COMMENT",
            Kind::Doctype => "DOCTYPE",
        }
    }
}

/// A token: its kind and where it is in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub len: usize,
}

/// Where the fragment is taken to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
    /// Text between tags.
    Data,
    /// An unquoted attribute value (the tokenizer starts before the next attribute).
    NoQuote,
    /// Inside a value quoted with `'`, `"` or a backtick.
    Quoted(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Eof,
    Data,
    TagOpen,
    EndTagOpen,
    TagNameClose,
    TagName,
    BeforeAttrName,
    AttrName,
    AfterAttrName,
    BeforeAttrValue,
    ValueQuoted(u8),
    ValueNoQuote,
    AfterValueQuoted,
    SelfClosingStartTag,
    BogusComment,
    PercentComment,
    MarkupDeclarationOpen,
    Comment,
    Cdata,
    Doctype,
}

/// What one state does: hand out a token, move to another state at once, or end.
enum Step {
    Emit(Token),
    Go(State),
    Stop,
}

/// The tokenizer over one input.
pub(super) struct Html5<'a> {
    s: &'a [u8],
    pos: usize,
    is_close: bool,
    state: State,
}

/// libinjection's whitespace, NUL included.
fn white(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0)
}

impl<'a> Html5<'a> {
    pub(super) fn new(s: &'a [u8], context: Context) -> Html5<'a> {
        let state = match context {
            Context::Data => State::Data,
            Context::NoQuote => State::BeforeAttrName,
            Context::Quoted(q) => State::ValueQuoted(q),
        };
        Html5 {
            s,
            pos: 0,
            is_close: false,
            state,
        }
    }

    /// The next token, or `None` at the end.
    pub(super) fn next_token(&mut self) -> Option<Token> {
        let mut state = self.state;
        loop {
            match self.step(state) {
                Step::Emit(t) => return Some(t),
                Step::Go(next) => state = next,
                Step::Stop => {
                    self.state = State::Eof;
                    return None;
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.s.len()
    }

    /// A token from `start` of `len` bytes; the tokenizer continues in `then`.
    fn emit(&mut self, kind: Kind, start: usize, len: usize, then: State) -> Step {
        self.state = then;
        Step::Emit(Token { kind, start, len })
    }

    /// Skips whitespace (NUL included); the byte it stops at, or `None` at the end. A
    /// 0xFF byte also reads as the end: C returns the byte as a signed `char`, and -1 is
    /// its end-of-input value.
    fn skip_white(&mut self) -> Option<u8> {
        while let Some(&b) = self.s.get(self.pos) {
            if !white(b) {
                return (b != 0xff).then_some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// The offset of the next `b` at or after `from`.
    fn find(&self, b: u8, from: usize) -> Option<usize> {
        memchr(b, self.s.get(from..)?).map(|i| from + i)
    }

    fn step(&mut self, state: State) -> Step {
        let len = self.len();
        let pos = self.pos;
        match state {
            State::Eof => Step::Stop,
            State::Data => match self.find(b'<', pos) {
                None => {
                    if pos >= len {
                        return Step::Stop;
                    }
                    self.emit(Kind::DataText, pos, len - pos, State::Eof)
                }
                Some(lt) => {
                    self.pos = lt + 1;
                    if lt == pos {
                        return Step::Go(State::TagOpen);
                    }
                    self.emit(Kind::DataText, pos, lt - pos, State::TagOpen)
                }
            },
            State::TagOpen => {
                let Some(&b) = self.s.get(pos) else {
                    return Step::Stop;
                };
                match b {
                    b'!' => {
                        self.pos += 1;
                        Step::Go(State::MarkupDeclarationOpen)
                    }
                    b'/' => {
                        self.pos += 1;
                        self.is_close = true;
                        Step::Go(State::EndTagOpen)
                    }
                    b'?' => {
                        self.pos += 1;
                        Step::Go(State::BogusComment)
                    }
                    b'%' => {
                        self.pos += 1;
                        Step::Go(State::PercentComment)
                    }
                    // An IE-ism: NULs are ignored, so a tag may start with one.
                    b if b.is_ascii_alphabetic() || b == 0 => Step::Go(State::TagName),
                    _ if pos == 0 => Step::Go(State::Data),
                    // A '<' that opens nothing is text.
                    _ => self.emit(Kind::DataText, pos - 1, 1, State::Data),
                }
            }
            State::EndTagOpen => {
                let Some(&b) = self.s.get(pos) else {
                    return Step::Stop;
                };
                if b == b'>' {
                    Step::Go(State::Data)
                } else if b.is_ascii_alphabetic() {
                    Step::Go(State::TagName)
                } else {
                    self.is_close = false;
                    Step::Go(State::BogusComment)
                }
            }
            State::TagNameClose => {
                self.is_close = false;
                self.pos += 1;
                let then = if self.pos < len {
                    State::Data
                } else {
                    State::Eof
                };
                self.emit(Kind::TagNameClose, pos, 1, then)
            }
            State::TagName => {
                let mut p = pos;
                while let Some(&b) = self.s.get(p) {
                    if b == 0 {
                        p += 1;
                    } else if white(b) {
                        self.pos = p + 1;
                        return self.emit(Kind::TagNameOpen, pos, p - pos, State::BeforeAttrName);
                    } else if b == b'/' {
                        self.pos = p + 1;
                        return self.emit(
                            Kind::TagNameOpen,
                            pos,
                            p - pos,
                            State::SelfClosingStartTag,
                        );
                    } else if b == b'>' {
                        return if self.is_close {
                            self.pos = p + 1;
                            self.is_close = false;
                            self.emit(Kind::TagClose, pos, p - pos, State::Data)
                        } else {
                            self.pos = p;
                            self.emit(Kind::TagNameOpen, pos, p - pos, State::TagNameClose)
                        };
                    } else {
                        p += 1;
                    }
                }
                self.emit(Kind::TagNameOpen, pos, len - pos, State::Eof)
            }
            State::BeforeAttrName => loop {
                match self.skip_white() {
                    None => return Step::Stop,
                    Some(b'/') => {
                        self.pos += 1;
                        match self.s.get(self.pos) {
                            // "/x": the slash is dropped and attributes go on.
                            Some(&b) if b != b'>' => continue,
                            _ => return Step::Go(State::SelfClosingStartTag),
                        }
                    }
                    Some(b'>') => {
                        let at = self.pos;
                        self.pos += 1;
                        return self.emit(Kind::TagNameClose, at, 1, State::Data);
                    }
                    Some(_) => return Step::Go(State::AttrName),
                }
            },
            State::AttrName => {
                // The first byte belongs to the name whatever it is.
                let mut p = pos + 1;
                while let Some(&b) = self.s.get(p) {
                    let (then, next) = if white(b) {
                        (State::AfterAttrName, p + 1)
                    } else if b == b'/' {
                        (State::SelfClosingStartTag, p + 1)
                    } else if b == b'=' {
                        (State::BeforeAttrValue, p + 1)
                    } else if b == b'>' {
                        (State::TagNameClose, p)
                    } else {
                        p += 1;
                        continue;
                    };
                    self.pos = next;
                    return self.emit(Kind::AttrName, pos, p - pos, then);
                }
                self.pos = len;
                self.emit(Kind::AttrName, pos, len.saturating_sub(pos), State::Eof)
            }
            State::AfterAttrName => match self.skip_white() {
                None => Step::Stop,
                Some(b'/') => {
                    self.pos += 1;
                    Step::Go(State::SelfClosingStartTag)
                }
                Some(b'=') => {
                    self.pos += 1;
                    Step::Go(State::BeforeAttrValue)
                }
                Some(b'>') => Step::Go(State::TagNameClose),
                Some(_) => Step::Go(State::AttrName),
            },
            State::BeforeAttrValue => match self.skip_white() {
                None => Step::Stop,
                Some(q @ (b'"' | b'\'' | b'`')) => Step::Go(State::ValueQuoted(q)),
                Some(_) => Step::Go(State::ValueNoQuote),
            },
            State::ValueQuoted(q) => {
                // Past the opening quote (a fragment that starts inside a value has none).
                let start = if pos > 0 { (pos + 1).min(len) } else { pos };
                match self.find(q, start) {
                    None => {
                        self.pos = start;
                        self.emit(Kind::AttrValue, start, len - start, State::Eof)
                    }
                    Some(end) => {
                        self.pos = end + 1;
                        self.emit(Kind::AttrValue, start, end - start, State::AfterValueQuoted)
                    }
                }
            }
            State::ValueNoQuote => {
                let mut p = pos;
                while let Some(&b) = self.s.get(p) {
                    if white(b) {
                        self.pos = p + 1;
                        return self.emit(Kind::AttrValue, pos, p - pos, State::BeforeAttrName);
                    }
                    if b == b'>' {
                        self.pos = p;
                        return self.emit(Kind::AttrValue, pos, p - pos, State::TagNameClose);
                    }
                    p += 1;
                }
                self.emit(Kind::AttrValue, pos, len - pos, State::Eof)
            }
            State::AfterValueQuoted => {
                let Some(&b) = self.s.get(pos) else {
                    return Step::Stop;
                };
                if white(b) {
                    self.pos += 1;
                    Step::Go(State::BeforeAttrName)
                } else if b == b'/' {
                    self.pos += 1;
                    Step::Go(State::SelfClosingStartTag)
                } else if b == b'>' {
                    self.pos += 1;
                    self.emit(Kind::TagNameClose, pos, 1, State::Data)
                } else {
                    Step::Go(State::BeforeAttrName)
                }
            }
            State::SelfClosingStartTag => match self.s.get(pos) {
                None => Step::Stop,
                Some(b'>') => {
                    self.pos += 1;
                    self.emit(
                        Kind::TagNameSelfClose,
                        pos.saturating_sub(1),
                        2,
                        State::Data,
                    )
                }
                Some(_) => Step::Go(State::BeforeAttrName),
            },
            State::BogusComment => match self.find(b'>', pos) {
                None => {
                    self.pos = len;
                    self.emit(Kind::TagComment, pos, len - pos, State::Eof)
                }
                Some(gt) => {
                    self.pos = gt + 1;
                    self.emit(Kind::TagComment, pos, gt - pos, State::Data)
                }
            },
            State::PercentComment => {
                let mut from = pos;
                loop {
                    match self.find(b'%', from) {
                        Some(pct) if pct + 1 < len => {
                            if self.s[pct + 1] != b'>' {
                                from = pct + 1;
                                continue;
                            }
                            self.pos = pct + 2;
                            return self.emit(Kind::TagComment, pos, pct - pos, State::Data);
                        }
                        _ => {
                            self.pos = len;
                            return self.emit(Kind::TagComment, pos, len - pos, State::Eof);
                        }
                    }
                }
            }
            State::MarkupDeclarationOpen => {
                let rest = &self.s[pos.min(len)..];
                if rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"DOCTYPE") {
                    Step::Go(State::Doctype)
                } else if rest.starts_with(b"[CDATA[") {
                    self.pos += 7;
                    Step::Go(State::Cdata)
                } else if rest.starts_with(b"--") {
                    self.pos += 2;
                    Step::Go(State::Comment)
                } else {
                    Step::Go(State::BogusComment)
                }
            }
            State::Comment => {
                // Ends at "-->" or "--!>", NULs allowed between the dashes and '!'.
                let mut from = pos;
                loop {
                    let dash = match self.find(b'-', from) {
                        Some(d) if d + 3 <= len => d,
                        _ => return self.emit(Kind::TagComment, pos, len - pos, State::Eof),
                    };
                    let mut at = dash + 1;
                    while at < len && self.s[at] == 0 {
                        at += 1;
                    }
                    if at == len {
                        return self.emit(Kind::TagComment, pos, len - pos, State::Eof);
                    }
                    if !matches!(self.s[at], b'-' | b'!') {
                        from = dash + 1;
                        continue;
                    }
                    at += 1;
                    if at == len {
                        return self.emit(Kind::TagComment, pos, len - pos, State::Eof);
                    }
                    if self.s[at] != b'>' {
                        from = dash + 1;
                        continue;
                    }
                    self.pos = at + 1;
                    return self.emit(Kind::TagComment, pos, dash - pos, State::Data);
                }
            }
            State::Cdata => {
                let mut from = pos;
                loop {
                    match self.find(b']', from) {
                        Some(rb) if rb + 3 <= len => {
                            if self.s[rb + 1] == b']' && self.s[rb + 2] == b'>' {
                                self.pos = rb + 3;
                                return self.emit(Kind::DataText, pos, rb - pos, State::Data);
                            }
                            from = rb + 1;
                        }
                        _ => return self.emit(Kind::DataText, pos, len - pos, State::Eof),
                    }
                }
            }
            State::Doctype => match self.find(b'>', pos) {
                None => self.emit(Kind::Doctype, pos, len.saturating_sub(pos), State::Eof),
                Some(gt) => {
                    self.pos = gt + 1;
                    self.emit(Kind::Doctype, pos, gt - pos, State::Data)
                }
            },
        }
    }
}
