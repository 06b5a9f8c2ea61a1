//! Request body processors that turn a body into arguments.
//!
//! - [`json_args`]: JSON flattened into `ARGS` the way ModSecurity v3 names them:
//!   `json.a.b` for object members, `json.list.array_0` for array elements (the root
//!   scalar is `json`), numbers as written, `true`/`false`, and `null` as an empty
//!   value; an empty member name is `empty-key`. Parsed with a small event parser of
//!   our own so numbers keep their text and duplicate keys all count, as with yajl.
//! - [`xml_values`]: what `XML:/*` (the text content of the document element, all text
//!   below it concatenated, as libxml2's node content) and `XML://@*` (every attribute
//!   value) select. External entities are never fetched.
//! - [`multipart`]: `multipart/form-data` split into form fields (`ARGS`), files
//!   (`FILES`, `FILES_NAMES`, `FILES_SIZES`), the raw header lines of every part
//!   (`MULTIPART_PART_HEADERS`) and the `MULTIPART_*` anomaly flags CRS and ModSecurity's
//!   recommended rules check; a body that cannot be parsed is a `REQBODY_ERROR` with
//!   ModSecurity's message.

/// What [`json_args`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JsonArgs {
    /// (name, value) in document order.
    pub args: Vec<(Vec<u8>, Vec<u8>)>,
    /// Why the document is not valid JSON (arguments before the error are kept).
    pub error: Option<String>,
}

/// Appends `n` in decimal (what `format!` would write, without a string per call).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

enum Container {
    Map { name: Vec<u8> },
    Array { name: Vec<u8>, counter: usize },
}

struct Flatten {
    stack: Vec<Container>,
    key: Option<Vec<u8>>,
    out: Vec<(Vec<u8>, Vec<u8>)>,
    max_depth: usize,
}

impl Flatten {
    /// ModSecurity's `getCurrentKey`: the pending member name, `json` at the root, ``
    /// inside an array, `empty-key` for an empty member name.
    fn current_key(&mut self) -> Vec<u8> {
        if self.stack.is_empty() {
            return b"json".to_vec();
        }
        match self.key.take() {
            Some(k) if !k.is_empty() => k,
            _ => {
                if matches!(self.stack.last(), Some(Container::Array { .. })) {
                    Vec::new()
                } else {
                    b"empty-key".to_vec()
                }
            }
        }
    }

    fn value(&mut self, v: Vec<u8>) {
        let mut path = Vec::with_capacity(32);
        for c in &self.stack {
            match c {
                Container::Map { name } => {
                    path.extend_from_slice(name);
                    path.push(b'.');
                }
                Container::Array { name, counter } => {
                    path.extend_from_slice(name);
                    path.extend_from_slice(b".array_");
                    push_decimal(&mut path, *counter);
                }
            }
        }
        match self.stack.last_mut() {
            Some(Container::Array { counter, .. }) => *counter += 1,
            _ => {
                let k = self.current_key();
                path.extend_from_slice(&k);
            }
        }
        self.out.push((path, v));
    }

    fn open(&mut self, array: bool) -> Result<(), String> {
        if self.stack.len() >= self.max_depth {
            // The name is not needed: the document is refused.
            return Err(format!("JSON depth limit ({}) exceeded", self.max_depth));
        }
        let name = self.current_key();
        self.stack.push(if array {
            Container::Array { name, counter: 0 }
        } else {
            Container::Map { name }
        });
        Ok(())
    }

    fn close(&mut self) {
        self.stack.pop();
        if let Some(Container::Array { counter, .. }) = self.stack.last_mut() {
            *counter += 1;
        }
    }
}

/// Flattens a JSON document into arguments (at most `max_depth` levels of nesting).
pub fn json_args(body: &[u8], max_depth: usize) -> JsonArgs {
    let mut f = Flatten {
        stack: Vec::new(),
        key: None,
        out: Vec::new(),
        max_depth,
    };
    let mut p = Parser { s: body, i: 0 };
    let error = match p.document(&mut f) {
        Ok(()) => None,
        Err(e) => Some(format!("JSON parsing error: {e}")),
    };
    JsonArgs { args: f.out, error }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn document(&mut self, f: &mut Flatten) -> Result<(), String> {
        self.ws();
        if self.i >= self.s.len() {
            return Err("empty document".into());
        }
        self.value(f)?;
        self.ws();
        if self.i < self.s.len() {
            return Err(format!("trailing garbage at byte {}", self.i));
        }
        Ok(())
    }

    fn value(&mut self, f: &mut Flatten) -> Result<(), String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                f.open(false)?;
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    f.close();
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(format!("expected a member name at byte {}", self.i));
                    }
                    let k = self.string()?;
                    f.key = Some(k);
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return Err(format!("expected ':' at byte {}", self.i));
                    }
                    self.i += 1;
                    self.value(f)?;
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            f.close();
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                f.open(true)?;
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    f.close();
                    return Ok(());
                }
                loop {
                    self.value(f)?;
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            f.close();
                            return Ok(());
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                let v = self.string()?;
                f.value(v);
                Ok(())
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                f.value(b"true".to_vec());
                Ok(())
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                f.value(b"false".to_vec());
                Ok(())
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                f.value(Vec::new());
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                if self.s[self.i] == b'-' {
                    self.i += 1;
                }
                let digits = |p: &mut Self| {
                    let s = p.i;
                    while p.i < p.s.len() && p.s[p.i].is_ascii_digit() {
                        p.i += 1;
                    }
                    p.i > s
                };
                if !digits(self) {
                    return Err(format!("invalid number at byte {start}"));
                }
                if self.s.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    if !digits(self) {
                        return Err(format!("invalid number at byte {start}"));
                    }
                }
                if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
                    self.i += 1;
                    if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                    if !digits(self) {
                        return Err(format!("invalid number at byte {start}"));
                    }
                }
                f.value(self.s[start..self.i].to_vec());
                Ok(())
            }
            Some(_) => Err(format!("unexpected character at byte {}", self.i)),
            None => Err("premature end of document".into()),
        }
    }

    /// A string literal; escapes decoded, `\u` to UTF-8 (a lone surrogate becomes `?`).
    fn string(&mut self) -> Result<Vec<u8>, String> {
        let start = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            // A run of bytes that stand for themselves, copied at once.
            let rest = self.s.get(self.i..).unwrap_or_default();
            let run = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(rest.len());
            out.extend_from_slice(&rest[..run]);
            self.i += run;
            let Some(&c) = self.s.get(self.i) else {
                return Err(format!("unterminated string starting at byte {start}"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(format!("unterminated string starting at byte {start}"));
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    self.i = save;
                                }
                            }
                            match char::from_u32(cp) {
                                Some(ch) => {
                                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes())
                                }
                                None => out.push(b'?'),
                            }
                        }
                        _ => return Err(format!("invalid escape at byte {}", self.i - 1)),
                    }
                }
                0x00..=0x1f => {
                    return Err(format!(
                        "control character in string at byte {}",
                        self.i - 1
                    ));
                }
                _ => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or("truncated \\u escape")?;
        let t = std::str::from_utf8(h).map_err(|_| "invalid \\u escape")?;
        let v = u32::from_str_radix(t, 16)
            .map_err(|_| format!("invalid \\u escape at byte {}", self.i))?;
        self.i += 4;
        Ok(v)
    }
}

/// The values an XML body offers to rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct XmlValues {
    /// `XML:/*`: the document element's text content.
    pub text: Option<Vec<u8>>,
    /// `XML://@*`: attribute values in document order.
    pub attributes: Vec<Vec<u8>>,
    /// Why the body is not well-formed XML.
    pub error: Option<String>,
}

/// Parses an XML body.
pub fn xml_values(body: &[u8]) -> XmlValues {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return XmlValues {
                error: Some(format!(
                    "XML parsing error: not UTF-8 at byte {}",
                    e.valid_up_to()
                )),
                ..XmlValues::default()
            };
        }
    };
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    match roxmltree::Document::parse_with_options(text, opts) {
        Ok(doc) => {
            let root = doc.root_element();
            let mut content = Vec::new();
            for n in root.descendants() {
                if n.is_text() {
                    content.extend_from_slice(n.text().unwrap_or("").as_bytes());
                }
            }
            let attributes = root
                .descendants()
                .filter(roxmltree::Node::is_element)
                .flat_map(|n| {
                    n.attributes()
                        .map(|a| a.value().as_bytes().to_vec())
                        .collect::<Vec<_>>()
                })
                .collect();
            XmlValues {
                text: Some(content),
                attributes,
                error: None,
            }
        }
        Err(e) => XmlValues {
            error: Some(format!("XML parsing error: {e}")),
            ..XmlValues::default()
        },
    }
}

/// The anomalies a multipart body showed (each a `MULTIPART_*` variable).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MultipartFlags {
    /// The boundary was quoted in Content-Type.
    pub boundary_quoted: bool,
    /// Whitespace around the boundary parameter.
    pub boundary_whitespace: bool,
    /// Content before the first boundary.
    pub data_before: bool,
    /// Content after the last boundary.
    pub data_after: bool,
    /// A part header was folded.
    pub header_folding: bool,
    /// Folding with something other than space or tab.
    pub invalid_header_folding: bool,
    /// Some line ended in LF only.
    pub lf_line: bool,
    /// Some line ended in CRLF.
    pub crlf_line: bool,
    /// A Content-Disposition value used single quotes or held a quote.
    pub invalid_quoting: bool,
    /// A part could not be understood.
    pub invalid_part: bool,
    /// Content-Disposition parameters without a separating semicolon.
    pub missing_semicolon: bool,
    /// A line looked like a boundary but was not this body's.
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// `MULTIPART_STRICT_ERROR`: any of the flags ModSecurity counts as strict errors.
    pub fn strict_error(&self) -> bool {
        self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
    }
}

/// What a multipart body offers to rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MultipartData {
    /// Form fields: (name, value).
    pub args: Vec<(Vec<u8>, Vec<u8>)>,
    /// Files: (field name, file name, size).
    pub files: Vec<(Vec<u8>, Vec<u8>, usize)>,
    /// Raw header lines per part: (part name, line).
    pub part_headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every `name` parameter seen (`MULTIPART_NAME`).
    pub names: Vec<Vec<u8>>,
    /// Every `filename` parameter seen (`MULTIPART_FILENAME`).
    pub filenames: Vec<Vec<u8>>,
    /// Anomalies.
    pub flags: MultipartFlags,
    /// Why the body could not be parsed (`REQBODY_ERROR_MSG`).
    pub error: Option<String>,
}

/// The boundary of a multipart Content-Type, with the flags its spelling raises.
fn boundary(content_type: &[u8], flags: &mut MultipartFlags) -> Result<Vec<u8>, String> {
    let lower = content_type.to_ascii_lowercase();
    let Some(pos) = lower.windows(8).position(|w| w == b"boundary") else {
        return Err("Multipart: Boundary not found in C-T.".into());
    };
    let mut rest = &content_type[pos + 8..];
    let before_eq = rest
        .iter()
        .take_while(|c| **c == b' ' || **c == b'\t')
        .count();
    if before_eq > 0 {
        flags.boundary_whitespace = true;
        rest = &rest[before_eq..];
    }
    let Some(rest) = rest.strip_prefix(b"=") else {
        return Err("Multipart: Boundary not found in C-T.".into());
    };
    let after_eq = rest
        .iter()
        .take_while(|c| **c == b' ' || **c == b'\t')
        .count();
    if after_eq > 0 {
        flags.boundary_whitespace = true;
    }
    let mut b = &rest[after_eq..];
    if let Some(q) = b.strip_prefix(b"\"") {
        flags.boundary_quoted = true;
        let end = q
            .iter()
            .position(|&c| c == b'"')
            .ok_or("Multipart: Invalid boundary in C-T (quote).")?;
        b = &q[..end];
    } else {
        let end = b
            .iter()
            .position(|&c| c == b';' || c == b',')
            .unwrap_or(b.len());
        b = &b[..end];
        let trimmed = b
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_whitespace())
            .count();
        if trimmed > 0 {
            flags.boundary_whitespace = true;
            b = &b[..b.len() - trimmed];
        }
    }
    if b.is_empty() || b.len() > 70 {
        return Err("Multipart: Invalid boundary in C-T (length).".into());
    }
    if b.iter().any(|&c| !(0x20..=0x7e).contains(&c) || c == b'"') {
        return Err("Multipart: Invalid boundary in C-T (characters).".into());
    }
    Ok(b.to_vec())
}

/// Parses a `multipart/form-data` body.
pub fn multipart(content_type: &[u8], body: &[u8]) -> MultipartData {
    let mut d = MultipartData::default();
    let b = match boundary(content_type, &mut d.flags) {
        Ok(b) => b,
        Err(e) => {
            d.error = Some(e);
            return d;
        }
    };
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&b);

    // Lines with their terminators noted.
    let mut lines: Vec<(&[u8], bool)> = Vec::new(); // (content, crlf)
    let mut rest = body;
    while !rest.is_empty() {
        match rest.iter().position(|&c| c == b'\n') {
            Some(p) => {
                let line = &rest[..p];
                let (content, crlf) = match line.strip_suffix(b"\r") {
                    Some(c) => (c, true),
                    None => (line, false),
                };
                lines.push((content, crlf));
                rest = &rest[p + 1..];
            }
            None => {
                lines.push((rest, false));
                rest = &[];
            }
        }
    }

    #[derive(PartialEq)]
    enum State {
        Preamble,
        Headers,
        Data,
        Done,
    }
    let mut state = State::Preamble;
    let mut part: Option<Part> = None;
    let mut seen_final = false;
    for (i, (line, crlf)) in lines.iter().enumerate() {
        let terminated = i + 1 < lines.len() || body.ends_with(b"\n");
        if terminated && state != State::Done {
            if *crlf {
                d.flags.crlf_line = true;
            } else {
                d.flags.lf_line = true;
            }
        }
        let is_delim = line.starts_with(&delim);
        let tail = if is_delim {
            &line[delim.len()..]
        } else {
            &b""[..]
        };
        let final_delim = is_delim
            && tail.starts_with(b"--")
            && tail[2..].iter().all(|c| c.is_ascii_whitespace());
        let next_delim = is_delim && tail.iter().all(|c| c.is_ascii_whitespace());
        if state != State::Done && (final_delim || next_delim) {
            if let Some(p) = part.take() {
                if state == State::Headers {
                    d.error = Some("Multipart: Part header not finished.".into());
                    return d;
                }
                p.finish(&mut d);
            }
            if final_delim {
                seen_final = true;
                state = State::Done;
            } else {
                state = State::Headers;
                part = Some(Part::default());
            }
            continue;
        }
        if state != State::Done && line.starts_with(b"--") && !is_delim && line.len() > 2 {
            // Something that looks like a boundary but is not this body's.
            let l = &line[2..];
            if l.len() >= b.len().min(8)
                && b.windows(8.min(b.len()))
                    .next()
                    .is_some_and(|w| l.starts_with(w))
            {
                d.flags.unmatched_boundary = true;
            }
        }
        match state {
            State::Preamble => {
                if !line.is_empty() {
                    d.flags.data_before = true;
                }
            }
            State::Done => {
                if line.iter().any(|c| !c.is_ascii_whitespace()) {
                    d.flags.data_after = true;
                }
            }
            State::Headers => {
                let Some(p) = part.as_mut() else { continue };
                if line.is_empty() {
                    if let Err(e) = p.end_headers(&mut d) {
                        d.error = Some(e);
                        return d;
                    }
                    state = State::Data;
                } else if let Err(e) = p.header_line(line, &mut d.flags) {
                    d.error = Some(e);
                    return d;
                }
            }
            State::Data => {
                let Some(p) = part.as_mut() else { continue };
                if p.started {
                    // The terminator before this line belongs to the data.
                    p.data
                        .extend_from_slice(if p.last_crlf { b"\r\n" } else { b"\n" });
                }
                p.data.extend_from_slice(line);
                p.started = true;
                p.last_crlf = *crlf;
            }
        }
    }
    if !seen_final {
        d.error = Some("Multipart: Final boundary missing.".into());
    }
    d
}

#[derive(Default)]
struct Part {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    lines: Vec<Vec<u8>>,
    last_header: Option<usize>,
    name: Option<Vec<u8>>,
    filename: Option<Vec<u8>>,
    data: Vec<u8>,
    started: bool,
    last_crlf: bool,
}

impl Part {
    fn header_line(&mut self, line: &[u8], flags: &mut MultipartFlags) -> Result<(), String> {
        if line[0].is_ascii_whitespace() {
            flags.header_folding = true;
            if line
                .iter()
                .take_while(|c| c.is_ascii_whitespace())
                .any(|&c| c != b' ' && c != b'\t')
            {
                flags.invalid_header_folding = true;
            }
            let Some(h) = self.last_header else {
                return Err("Multipart: Invalid part header (folding error).".into());
            };
            let more = line.trim_ascii();
            let (name, value) = &mut self.headers[h];
            value.push(b' ');
            value.extend_from_slice(more);
            let mut joined = name.clone();
            joined.extend_from_slice(b": ");
            joined.extend_from_slice(value);
            if let Some(last) = self.lines.last_mut() {
                *last = joined;
            }
            return Ok(());
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(format!(
                "Multipart: Invalid part header (colon missing): {}",
                String::from_utf8_lossy(line)
            ));
        };
        if colon == 0 {
            return Err("Multipart: Invalid part header (header name missing).".into());
        }
        let name = &line[..colon];
        if name.iter().any(|&c| !(33..=126).contains(&c)) {
            return Err("Multipart: Invalid part header (contains invalid character).".into());
        }
        if self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "Multipart: Duplicate part header: {}.",
                String::from_utf8_lossy(name)
            ));
        }
        let value = line[colon + 1..]
            .iter()
            .skip_while(|c| **c == b' ' || **c == b'\t')
            .copied()
            .collect();
        self.headers.push((name.to_vec(), value));
        self.last_header = Some(self.headers.len() - 1);
        self.lines.push(line.to_vec());
        Ok(())
    }

    fn end_headers(&mut self, d: &mut MultipartData) -> Result<(), String> {
        let Some((_, cd)) = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-disposition"))
        else {
            return Err("Multipart: Part missing Content-Disposition header.".into());
        };
        let cd = cd.clone();
        self.content_disposition(&cd, d).map_err(|rc| {
            format!(
                "Multipart: Invalid Content-Disposition header ({rc}): {}",
                String::from_utf8_lossy(&cd)
            )
        })?;
        if self.name.as_ref().is_none_or(Vec::is_empty) {
            return Err("Multipart: Content-Disposition header missing name field.".into());
        }
        Ok(())
    }

    /// ModSecurity's Content-Disposition reading (its negative codes on failure).
    fn content_disposition(&mut self, v: &[u8], d: &mut MultipartData) -> Result<(), i32> {
        let Some(mut p) = v.strip_prefix(b"form-data") else {
            return Err(-1);
        };
        let ws = |s: &[u8]| s.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
        p = &p[ws(p)..];
        if p.is_empty() {
            return Ok(());
        }
        let Some(mut p) = p.strip_prefix(b";") else {
            return Err(-2);
        };
        while !p.is_empty() {
            p = &p[ws(p)..];
            if p.is_empty() {
                return Err(-3);
            }
            let n = p
                .iter()
                .take_while(|c| !matches!(c, b'=' | b'\t' | b' '))
                .count();
            if n == p.len() {
                return Err(-4);
            }
            let name = &p[..n];
            p = &p[n..];
            p = &p[ws(p)..];
            if p.is_empty() {
                return Err(-5);
            }
            let Some(q) = p.strip_prefix(b"=") else {
                return Err(-13);
            };
            p = &q[ws(q)..];
            if p.is_empty() {
                return Err(-6);
            }
            let mut value = Vec::new();
            let quote = p[0];
            if quote == b'"' || quote == b'\'' {
                if quote == b'\'' {
                    d.flags.invalid_quoting = true;
                }
                p = &p[1..];
                if p.is_empty() {
                    return Err(-7);
                }
                let mut i = 0;
                while i < p.len() {
                    if p[i] == b'\\' {
                        if i + 1 >= p.len() {
                            return Err(-8);
                        }
                        if p[i + 1] == quote || p[i + 1] == b'\\' {
                            i += 1;
                        }
                    } else if p[i] == quote {
                        break;
                    }
                    value.push(p[i]);
                    i += 1;
                }
                p = p.get(i + 1..).unwrap_or(&[]);
            } else {
                let n = p.iter().take_while(|&&c| is_token_char(c)).count();
                value.extend_from_slice(&p[..n]);
                p = &p[n..];
            }
            if value.contains(&b'\'') || value.contains(&b'"') {
                d.flags.invalid_quoting = true;
            }
            match name {
                b"name" => {
                    d.names.push(value.clone());
                    if self.name.is_some() {
                        return Err(-14);
                    }
                    self.name = Some(value);
                }
                b"filename" | b"filename*" => {
                    d.filenames.push(value.clone());
                    if self.filename.is_some() && name == b"filename" {
                        return Err(-15);
                    }
                    self.filename = Some(value);
                }
                _ => return Err(-11),
            }
            p = &p[ws(p)..];
            if p.is_empty() {
                break;
            }
            if p[0] != b';' {
                d.flags.missing_semicolon = true;
                continue;
            }
            p = &p[1..];
        }
        Ok(())
    }

    fn finish(self, d: &mut MultipartData) {
        let name = self.name.unwrap_or_default();
        for line in self.lines {
            d.part_headers.push((name.clone(), line));
        }
        match self.filename {
            Some(f) => d.files.push((name, f, self.data.len())),
            None => d.args.push((name, self.data)),
        }
    }
}

/// RFC 2045 token characters.
fn is_token_char(c: u8) -> bool {
    c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_files_and_headers() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst\r\nline\r\n--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XyZ--\r\n";
        let m = multipart(b"multipart/form-data; boundary=XyZ", body);
        assert_eq!(m.error, None);
        assert_eq!(m.args, vec![(b"a".to_vec(), b"first\r\nline".to_vec())]);
        assert_eq!(m.files, vec![(b"up".to_vec(), b"x.php".to_vec(), 5)]);
        assert_eq!(
            m.part_headers,
            vec![
                (
                    b"a".to_vec(),
                    b"Content-Disposition: form-data; name=\"a\"".to_vec()
                ),
                (
                    b"up".to_vec(),
                    b"Content-Disposition: form-data; name=\"up\"; filename=\"x.php\"".to_vec()
                ),
                (b"up".to_vec(), b"Content-Type: text/plain".to_vec()),
            ]
        );
        assert!(!m.flags.strict_error(), "{:?}", m.flags);
    }

    #[test]
    fn multipart_anomalies_and_errors() {
        let m = multipart(
            b"multipart/form-data; boundary=\"b\"",
            b"junk\n--b\nContent-Disposition: form-data; name='n'\n\nv\n--b--\nafter",
        );
        assert!(
            m.flags.boundary_quoted
                && m.flags.data_before
                && m.flags.data_after
                && m.flags.lf_line
                && m.flags.invalid_quoting
        );
        assert!(m.flags.strict_error());
        assert_eq!(m.args, vec![(b"n".to_vec(), b"v".to_vec())]);
        let e = |ct: &[u8], body: &[u8]| multipart(ct, body).error.unwrap_or_default();
        assert_eq!(
            e(b"multipart/form-data", b""),
            "Multipart: Boundary not found in C-T."
        );
        assert_eq!(
            e(
                b"multipart/form-data; boundary=b",
                b"--b\r\nContent-Type: x\r\n\r\nv\r\n--b--\r\n"
            ),
            "Multipart: Part missing Content-Disposition header."
        );
        assert_eq!(
            e(
                b"multipart/form-data; boundary=b",
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n"
            ),
            "Multipart: Final boundary missing."
        );
        assert!(e(b"multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX\x01Y: 1\r\n\r\nv\r\n--b--\r\n").contains("contains invalid character"));
        assert!(
            e(
                b"multipart/form-data; boundary=b",
                b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n--b--\r\n"
            )
            .starts_with("Multipart: Invalid Content-Disposition header (-1)")
        );
        let folded = multipart(
            b"multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nv\r\n--b--\r\n",
        );
        assert_eq!(folded.error, None);
        assert!(folded.flags.header_folding);
        assert_eq!(
            folded.part_headers[0].1,
            b"Content-Disposition: form-data; name=\"a\"".to_vec()
        );
    }

    #[test]
    fn xml_text_and_attributes() {
        let x = xml_values(br#"<?xml version="1.0"?><a x="1"><b y="two">hello <![CDATA[<raw>]]></b> world<!-- c --></a>"#);
        assert_eq!(x.error, None);
        assert_eq!(x.text.as_deref(), Some(&b"hello <raw> world"[..]));
        assert_eq!(x.attributes, vec![b"1".to_vec(), b"two".to_vec()]);
        let bad = xml_values(b"<a><b></a>");
        assert!(
            bad.error
                .is_some_and(|e| e.starts_with("XML parsing error"))
        );
        assert_eq!(bad.text, None);
        let ent = xml_values(br#"<!DOCTYPE a [<!ENTITY e "expanded">]><a>&e;&amp;</a>"#);
        assert_eq!(ent.text.as_deref(), Some(&b"expanded&"[..]));
    }

    fn names(body: &str) -> Vec<(String, String)> {
        let r = json_args(body.as_bytes(), 512);
        assert_eq!(r.error, None, "{body}");
        r.args
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn flattens_like_modsecurity() {
        assert_eq!(
            names(r#"{"a":1.50,"b":{"c":"x\u00e9"},"l":[true,null,{"d":-2e3}],"":"e","a":"dup"}"#),
            pairs(&[
                ("json.a", "1.50"),
                ("json.b.c", "xé"),
                ("json.l.array_0", "true"),
                ("json.l.array_1", ""),
                ("json.l.array_2.d", "-2e3"),
                ("json.empty-key", "e"),
                ("json.a", "dup"),
            ])
        );
        assert_eq!(
            names(r#""just a string""#),
            pairs(&[("json", "just a string")])
        );
        assert_eq!(
            names(r#"[1,[2,3]]"#),
            pairs(&[
                ("json.array_0", "1"),
                ("json.array_1.array_0", "2"),
                ("json.array_1.array_1", "3")
            ])
        );
        assert_eq!(
            names(r#"{"e":"\ud83d\ude00 \ud800"}"#),
            pairs(&[("json.e", "😀 ?")])
        );
    }

    #[test]
    fn errors_keep_what_came_before() {
        let r = json_args(br#"{"a":"x", "b": tru}"#, 512);
        assert_eq!(r.args, vec![(b"json.a".to_vec(), b"x".to_vec())]);
        assert!(
            r.error
                .is_some_and(|e| e.starts_with("JSON parsing error: unexpected character"))
        );
        assert!(json_args(b"", 512).error.is_some());
        assert!(json_args(b"{} x", 512).error.is_some());
        assert!(
            json_args(b"[[[1]]]", 2)
                .error
                .is_some_and(|e| e.contains("depth limit"))
        );
        assert!(json_args(b"\"a\nb\"", 512).error.is_some());
    }
}
