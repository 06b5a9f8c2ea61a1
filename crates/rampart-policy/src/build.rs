//! From the validated configuration (`rampart_core::config::PolicySpec`, `ListDef`) to
//! runtime [`Policy`] and [`Lists`].
//!
//! Expression errors are reported where they were written: an expression's offset is
//! mapped into the configuration file through its TOML string (exactly for literal
//! strings `'…'`/`'''…'''` and for basic strings without escapes; at the string's start,
//! with the position inside the expression in the message, otherwise). List files are
//! read through a function the caller gives (the edge reads files; this crate does no
//! I/O), and their errors name the list file's own line and column.

use std::sync::Arc;

use rampart_core::config::policy::{
    AlgorithmSpec, LevelAction, ListKind, ListSource, Located, RuleActionSpec,
};
use rampart_core::config::{Diagnostic, ListDef, PolicySpec, SourceFile, Span};
use rampart_core::decision::Action;

use crate::expr::{Expr, ExprError, KeyExpr};
use crate::list::{self, Lists};
use crate::policy::{Acl, Backend, FailMode, Limit, Policy, Rule, RuleAction};
use crate::ratelimit::{Algorithm, Counting};

/// Loads every list; `read` returns a list file's text (the path as written) or why it
/// could not. Every problem is reported.
pub fn lists(
    defs: &[ListDef],
    read: &mut dyn FnMut(&str) -> Result<String, String>,
    src: &SourceFile,
) -> Result<Lists, Vec<Diagnostic>> {
    let mut out = Lists::new();
    let mut diags = Vec::new();
    for def in defs {
        match &def.source {
            ListSource::File(path) => match read(&path.text) {
                Err(why) => diags.push(src.diagnostic(
                    path.span,
                    format!(
                        "cannot read list `{}` from `{}`: {why}",
                        def.name, path.text
                    ),
                    Some("a readable file, one entry per line".into()),
                    Some("a relative path is relative to the configuration file".into()),
                )),
                Ok(text) => match list::parse(def.kind, &text) {
                    Ok(l) => out.insert(&*def.name, l),
                    Err(errors) => {
                        let file = SourceFile::new(path.text.clone(), text.clone());
                        for e in errors {
                            let at = offset_of(&text, e.line, e.col);
                            diags.push(file.diagnostic(
                                Span { start: at, end: at },
                                format!("list `{}` ({}): {}", def.name, def.kind.name(), e.message),
                                Some(e.expected.into()),
                                None,
                            ));
                        }
                    }
                },
            },
            ListSource::Entries(entries) => {
                let text: String = entries
                    .iter()
                    .map(|e| format!("{}\n", e.text.replace('\n', " ")))
                    .collect();
                match list::parse(def.kind, &text) {
                    Ok(l) => out.insert(&*def.name, l),
                    Err(errors) => {
                        for e in errors {
                            let span = entries.get(e.line - 1).map_or(def.span, |x| x.span);
                            diags.push(src.diagnostic(
                                span,
                                format!("list `{}` ({}): {}", def.name, def.kind.name(), e.message),
                                Some(e.expected.into()),
                                None,
                            ));
                        }
                    }
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Byte offset of a 1-based line and character column.
fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(col - 1)
            .map_or(rest.len(), |(i, _)| i)
}

/// Compiles a route's policy.
pub fn policy(
    spec: &PolicySpec,
    defs: &[ListDef],
    lists: &Lists,
    src: &SourceFile,
) -> Result<Policy, Vec<Diagnostic>> {
    let mut b = Builder {
        src,
        lists,
        diags: Vec::new(),
    };
    let mut acls = Vec::new();
    for u in &spec.lists {
        let Some(def) = defs.get(u.list) else {
            continue;
        };
        let field = match def.kind {
            ListKind::Ip => "ip.src",
            ListKind::Country => "ip.src.country",
            ListKind::Asn => "ip.src.asn",
            ListKind::Str => continue,
        };
        let source = format!("{field} in ${}", def.name);
        // A list that failed to load was reported already.
        if let Ok(test) = Expr::compile(&source, lists) {
            acls.push(Acl {
                list: def.name.clone(),
                source: source.into(),
                test,
                action: u.kind,
                mode: u.mode,
            });
        }
    }
    let mut limits = Vec::new();
    for l in &spec.limits {
        let filter = l
            .filter
            .as_ref()
            .and_then(|f| b.request_expr(f, "a limit's filter"));
        let responses = l.responses.as_ref().and_then(|r| b.expr(r));
        let key: Vec<KeyExpr> = l.key.iter().filter_map(|k| b.key(k)).collect();
        let distinct = l.distinct.as_ref().and_then(|d| b.key(d));
        let counting = Counting {
            algorithm: match l.algorithm {
                AlgorithmSpec::SlidingWindow => Algorithm::SlidingWindow,
                AlgorithmSpec::Gcra => Algorithm::Gcra,
            },
            window_ms: l.window.as_millis().min(u128::from(u64::MAX)) as u64,
            thresholds: l.thresholds.iter().map(|t| t.above).collect(),
            hold_ms: l
                .thresholds
                .iter()
                .map(|t| t.hold.as_millis().min(u128::from(u64::MAX)) as u64)
                .collect(),
            distinct: l.distinct.is_some(),
        };
        let actions = l
            .thresholds
            .iter()
            .map(|t| match t.action {
                LevelAction::Log => Action::Log,
                LevelAction::Challenge => Action::Challenge,
                LevelAction::Block(status) => Action::Block { status, page: None },
            })
            .collect();
        limits.push(Limit {
            name: l.name.clone(),
            mode: l.mode,
            filter,
            standalone: !l.fed_only,
            responses,
            key,
            distinct,
            counting,
            actions,
            backend: if l.redis {
                Backend::Redis
            } else {
                Backend::Local
            },
            fail: if l.fail_closed {
                FailMode::Closed
            } else {
                FailMode::Open
            },
            max_keys: l.max_keys,
        });
    }
    let mut rules = Vec::new();
    for r in &spec.rules {
        let what =
            matches!(r.action, RuleActionSpec::RateLimit(_)).then_some("a rule that feeds a limit");
        let expr = match what {
            Some(what) => b.request_expr(&r.expression, what),
            None => b.expr(&r.expression),
        };
        let Some(expr) = expr else { continue };
        let action = match &r.action {
            RuleActionSpec::Allow => RuleAction::Allow,
            RuleActionSpec::Block(status) => RuleAction::Block {
                status: *status,
                page: None,
            },
            RuleActionSpec::Challenge => RuleAction::Challenge,
            RuleActionSpec::Log => RuleAction::Log,
            RuleActionSpec::Tag(t) => RuleAction::Tag(Arc::from(t.as_str())),
            RuleActionSpec::RateLimit(i) => RuleAction::RateLimit(*i),
            RuleActionSpec::Redirect { status, location } => RuleAction::Redirect {
                status: *status,
                location: location.clone(),
            },
            RuleActionSpec::SetHeader { name, value } => {
                match (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                ) {
                    (Ok(n), Ok(v)) => RuleAction::SetHeader(n, v),
                    _ => continue,
                }
            }
            RuleActionSpec::RemoveHeader(name) => {
                match http::HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) => RuleAction::RemoveHeader(n),
                    Err(_) => continue,
                }
            }
        };
        rules.push(Rule {
            id: r.id.clone(),
            priority: r.priority,
            mode: r.mode,
            expires_at: r.expires_at,
            description: r.description.clone(),
            ticket: r.ticket.clone(),
            source: Arc::from(r.expression.text.as_str()),
            expr,
            action,
        });
    }
    if b.diags.is_empty() {
        Ok(Policy::new(acls, limits, rules, spec.monitor))
    } else {
        Err(b.diags)
    }
}

struct Builder<'a> {
    src: &'a SourceFile,
    lists: &'a Lists,
    diags: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn expr(&mut self, at: &Located) -> Option<Expr> {
        match Expr::compile(&at.text, self.lists) {
            Ok(e) => Some(e),
            Err(e) => {
                self.report(at, &e);
                None
            }
        }
    }

    /// An expression evaluated on the request: it may not read the response.
    fn request_expr(&mut self, at: &Located, what: &str) -> Option<Expr> {
        let e = self.expr(at)?;
        if e.reads_response() {
            self.diags.push(self.src.diagnostic(
                at.span,
                format!("{what} is evaluated on the request: it cannot read response fields"),
                Some("request fields only".into()),
                Some("to count responses, give the limit `responses = \"http.response.code == 401\"`".into()),
            ));
            return None;
        }
        Some(e)
    }

    fn key(&mut self, at: &Located) -> Option<KeyExpr> {
        match KeyExpr::compile(&at.text, self.lists) {
            Ok(k) if k.reads_response() => {
                self.diags.push(self.src.diagnostic(
                    at.span,
                    "a key is taken from the request: it cannot read response fields",
                    Some("request fields only".into()),
                    None,
                ));
                None
            }
            Ok(k) => Some(k),
            Err(e) => {
                self.report(at, &e);
                None
            }
        }
    }

    fn report(&mut self, at: &Located, e: &ExprError) {
        let (span, exact) = map_span(self.src.text(), at, e);
        let mut message = e.message.clone();
        if !exact {
            let (line, col) = e.line_col(&at.text);
            message = format!("{message} (at {line}:{col} of the expression)");
        }
        self.diags.push(
            self.src
                .diagnostic(span, message, e.expected.clone(), e.hint.clone()),
        );
    }
}

/// The file span of an error inside a TOML string; whether it is exact.
fn map_span(file: &str, at: &Located, e: &ExprError) -> (Span, bool) {
    let raw = file.get(at.span.start..at.span.end).unwrap_or("");
    let (delim, literal) = if raw.starts_with("'''") {
        (3, true)
    } else if raw.starts_with("\"\"\"") {
        (3, false)
    } else if raw.starts_with('\'') {
        (1, true)
    } else if raw.starts_with('"') {
        (1, false)
    } else {
        return (at.span, false);
    };
    let mut start = at.span.start + delim;
    if delim == 3 {
        // A newline right after the opening delimiter is not part of the string.
        if file[start..].starts_with("\r\n") {
            start += 2;
        } else if file[start..].starts_with('\n') {
            start += 1;
        }
    }
    let body = &raw[start - at.span.start..];
    let exact = literal || !body.contains('\\');
    if !exact {
        return (at.span, false);
    }
    let s = (start + e.span.start).min(at.span.end);
    let end = (start + e.span.end).min(at.span.end).max(s);
    (Span { start: s, end }, true)
}

#[cfg(test)]
mod tests;
