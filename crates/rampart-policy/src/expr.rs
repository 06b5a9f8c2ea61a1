//! The rule expression language.
//!
//! Conditions over a request's typed fields, in the style of Cloudflare's and
//! Wireshark's filters:
//!
//! ```text
//! http.request.method == "POST" and http.request.uri.path starts_with "/login"
//!     and not ip.src in $office
//! any(lower(http.request.headers["x-forwarded-for"][*]) contains "unknown")
//! ip.src.asn in {16509 14618} or waf.score >= 10
//! ```
//!
//! # Layout
//!
//! - `lexer`: text → tokens (a word is told apart as a name, a number, an address or a
//!   network after it is read).
//! - `parser`: tokens → untyped tree with spans (`or` < `and` < `not` < comparison).
//! - `check`: tree → typed [`Cond`] tree: every field, function and operator is
//!   resolved and type-checked, sets are built, patterns compiled, lists looked up.
//! - `eval`: the typed tree against a [`Request`].
//! - [`fields`]: the table of fields and functions (also the reference's source).
//!
//! **API Boundary:** [`Expr::compile`] either returns an expression that cannot fail at
//! run time, or an [`ExprError`] with the byte span of the offending token, what was
//! found, what was expected and often a hint. Evaluation allocates only when a function
//! changes a string.

mod check;
mod eval;
pub mod fields;
mod lexer;
mod parser;

#[cfg(test)]
mod tests;

use std::fmt;

pub use fields::{FIELDS, FUNCTIONS, Field, FieldDef, Type};

use crate::list::Lists;
use crate::request::Request;
use eval::Cond;

/// A byte range of an expression's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// From the start of `self` to the end of `other`.
    pub(crate) fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// Why an expression did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Where in the expression's text.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// What would have been accepted there.
    pub expected: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
}

impl ExprError {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> Self {
        ExprError {
            span,
            message: message.into(),
            expected: None,
            hint: None,
        }
    }

    pub(crate) fn expected(mut self, what: impl Into<String>) -> Self {
        self.expected = Some(what.into());
        self
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 1-based line and column (in characters) of the error in `src`.
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        let mut at = self.span.start.min(src.len());
        while !src.is_char_boundary(at) {
            at -= 1;
        }
        let before = &src[..at];
        let line = before.matches('\n').count() + 1;
        let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        (line, col)
    }

    /// The error with its line and column in `src`, the line, and a caret.
    pub fn render(&self, src: &str) -> String {
        let (line, col) = self.line_col(src);
        let text = src.lines().nth(line - 1).unwrap_or("");
        let width = src
            .get(self.span.start..self.span.end)
            .map_or(1, |s| s.lines().next().unwrap_or("").chars().count().max(1));
        let mut out = format!(
            "{line}:{col}: {}\n  | {text}\n  | {}{}",
            self.message,
            " ".repeat(col - 1),
            "^".repeat(width)
        );
        if let Some(e) = &self.expected {
            out.push_str(&format!("\n  = expected: {e}"));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("\n  = hint: {h}"));
        }
        out
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(e) = &self.expected {
            write!(f, "; expected {e}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Expr {
    cond: Cond,
    response: bool,
    reads: u64,
}

impl Expr {
    /// Compiles `src`; `$name` refers to `lists`.
    pub fn compile(src: &str, lists: &Lists) -> Result<Expr, ExprError> {
        let tokens = lexer::tokens(src)?;
        let tree = parser::parse(tokens)?;
        let mut checker = check::Checker::new(lists);
        let cond = checker.condition(&tree)?;
        Ok(Expr {
            cond,
            response: checker.response,
            reads: checker.reads,
        })
    }

    /// Whether the condition holds for `req`.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.cond.eval(req, None)
    }

    /// Whether the expression reads response fields (so it can only run on the
    /// response).
    pub fn reads_response(&self) -> bool {
        self.response
    }
    /// Whether the expression reads `field`.
    pub fn reads(&self, field: Field) -> bool {
        self.reads & (1 << field as u64) != 0
    }
}

/// A compiled value: a rate-limit key part or a counted value (`cidr(ip.src, 24, 64)`,
/// `http.request.headers["x-api-key"]`, `http.request.body.args["username"]`).
#[derive(Debug, Clone)]
pub struct KeyExpr {
    term: eval::KeyTerm,
    response: bool,
}

impl KeyExpr {
    /// Compiles `src`, which must be a value (string, integer, address or array).
    pub fn compile(src: &str, lists: &Lists) -> Result<KeyExpr, ExprError> {
        let tokens = lexer::tokens(src)?;
        let tree = parser::parse(tokens)?;
        let mut checker = check::Checker::new(lists);
        let term = checker.key(&tree)?;
        Ok(KeyExpr {
            term,
            response: checker.response,
        })
    }

    /// Appends the value for `req` to `out` (several values of an array joined by `,`);
    /// `false` when the request has none.
    pub fn write(&self, req: &Request<'_>, out: &mut Vec<u8>) -> bool {
        self.term.write(req, out)
    }

    /// Whether it reads response fields.
    pub fn reads_response(&self) -> bool {
        self.response
    }
}
