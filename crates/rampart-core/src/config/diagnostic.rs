//! Located, explained configuration errors.
//!
//! A [`Diagnostic`] says *where* (file:line:col), *what* went wrong, what was *expected*
//! and a *hint* how to fix it. It renders like a compiler error, with the offending line
//! and a caret under the column.

use std::fmt;
use std::sync::Arc;

/// A byte range in a source file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl From<std::ops::Range<usize>> for Span {
    fn from(r: std::ops::Range<usize>) -> Self {
        Span {
            start: r.start,
            end: r.end,
        }
    }
}

/// A configuration file held in memory, with its name for messages.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: Arc<str>,
    text: Arc<str>,
}

impl SourceFile {
    /// Wraps `text`, which was read from the file called `name`.
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<Arc<str>>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The file's name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Builds a diagnostic located at `span` of this file.
    pub fn diagnostic(
        &self,
        span: Span,
        message: impl Into<String>,
        expected: Option<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        let (line, col) = self.line_col(span.start);
        let snippet = self.text.lines().nth(line - 1).map(str::to_owned);
        Diagnostic {
            file: self.name.to_string(),
            line,
            col,
            message: message.into(),
            expected,
            hint,
            snippet,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to [`SourceFile::new`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What would have been accepted.
    pub expected: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
    /// The offending line, for display.
    pub snippet: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )?;
        if let Some(snippet) = &self.snippet {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:>col$}",
                "",
                self.line,
                snippet,
                "",
                "^",
                col = self.col
            )?;
        }
        if let Some(expected) = &self.expected {
            write!(f, "\n  expected: {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All problems found in one configuration, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// A list of exactly one diagnostic.
    pub fn one(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Sorts by position, so errors read top to bottom.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.line, d.col));
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        write!(
            f,
            "{} error{} found",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Diagnostics {}

/// Splits a toml/serde error message into what / expected / hint.
pub(crate) fn explain_toml_error(message: &str) -> (String, Option<String>, Option<String>) {
    let message = message.trim();
    // serde: "unknown field `x`, expected one of `a`, `b`"
    if let Some(rest) = message.strip_prefix("unknown field ") {
        if let Some((field, expected)) = rest.split_once(", expected ") {
            return (
                format!("unknown key {field}"),
                Some(expected.to_owned()),
                Some("check the spelling; the configuration reference (docs/config.md) lists every key".into()),
            );
        }
    }
    if message.contains("untagged enum RawServer") {
        return (
            "invalid server entry".into(),
            Some("\"host:port\" or { addr = \"host:port\", weight = N }".into()),
            None,
        );
    }
    if message.contains("untagged enum RawSize") {
        return (
            "invalid size".into(),
            Some("a number of bytes (8192) or a string with a unit (\"8KiB\")".into()),
            None,
        );
    }
    if let Some((what, expected)) = message.split_once(", expected ") {
        return (what.to_owned(), Some(expected.to_owned()), None);
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return (
            format!("missing required key {field}"),
            Some(format!("a key {field} in this table")),
            None,
        );
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        return (
            message.to_owned(),
            None,
            Some("see docs/config.md for the type of each key".into()),
        );
    }
    (
        message.to_owned(),
        None,
        Some("this is a TOML syntax error; see https://toml.io".into()),
    )
}
