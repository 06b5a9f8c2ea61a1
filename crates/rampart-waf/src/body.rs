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

/// What [`json_args`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JsonArgs {
    /// (name, value) in document order.
    pub args: Vec<(Vec<u8>, Vec<u8>)>,
    /// Why the document is not valid JSON (arguments before the error are kept).
    pub error: Option<String>,
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
        let mut path = Vec::new();
        for c in &self.stack {
            match c {
                Container::Map { name } => {
                    path.extend_from_slice(name);
                    path.push(b'.');
                }
                Container::Array { name, counter } => {
                    path.extend_from_slice(name);
                    path.extend_from_slice(format!(".array_{counter}").as_bytes());
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
        let name = self.current_key();
        self.stack.push(if array {
            Container::Array { name, counter: 0 }
        } else {
            Container::Map { name }
        });
        if self.stack.len() > self.max_depth {
            return Err(format!("JSON depth limit ({}) exceeded", self.max_depth));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
