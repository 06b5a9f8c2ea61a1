//! Macro expansion: `%{TX.anomaly_score}`, `%{MATCHED_VAR}`, `%{rule.id}` in messages,
//! `setvar` values and operator parameters.
//!
//! Text is split once, at compile time, into literal runs and variable references, so
//! expanding costs one pass and no parsing on the request path.

use crate::seclang::Var;

/// A reference inside `%{…}`: a variable and, for collections, a member name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacroRef {
    /// A SecLang variable (`%{MATCHED_VAR}`, `%{TX.0}`, `%{REQUEST_HEADERS.host}`).
    Var(Var, Option<String>),
    /// Rule metadata: `%{rule.id}`, `%{rule.msg}`, … (member name lower-cased).
    Rule(String),
    /// `%{TX.name}` with the name numbered at load (see [`MacroText::bind_tx`]).
    TxId(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Ref(MacroRef),
}

/// Text with macros, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MacroText {
    parts: Vec<Part>,
}

/// What expansion asks of the transaction.
pub trait Resolve {
    /// Appends the value of `r` to `out` (nothing if it is not set).
    fn resolve(&self, r: &MacroRef, out: &mut Vec<u8>);
}

impl MacroText {
    /// Parses `text`. `%{` without a closing `}`, or naming no known variable, stays
    /// literal text (as in ModSecurity).
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let inner = &after[..end];
            match parse_ref(inner) {
                Some(r) => {
                    lit.extend_from_slice(&rest.as_bytes()[..start]);
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Ref(r));
                }
                None => lit.extend_from_slice(&rest.as_bytes()[..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        MacroText { parts }
    }

    /// Whether there is any macro to expand.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text when [`is_static`](Self::is_static).
    pub fn static_text(&self) -> Option<Vec<u8>> {
        if !self.is_static() {
            return None;
        }
        let mut out = Vec::new();
        for p in &self.parts {
            if let Part::Text(t) = p {
                out.extend_from_slice(t);
            }
        }
        Some(out)
    }

    /// Expands into `out` (cleared first).
    pub fn expand_into(&self, r: &dyn Resolve, out: &mut Vec<u8>) {
        out.clear();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Ref(m) => r.resolve(m, out),
            }
        }
    }

    /// Expands into a new buffer.
    pub fn expand(&self, r: &dyn Resolve) -> Vec<u8> {
        let mut out = Vec::new();
        self.expand_into(r, &mut out);
        out
    }

    /// Numbers the `TX` members the text names (`%{tx.score}` becomes
    /// [`MacroRef::TxId`]), with `id` giving the number of a lower-case name.
    pub fn bind_tx(&mut self, id: &mut dyn FnMut(&str) -> u32) {
        for p in &mut self.parts {
            if let Part::Ref(MacroRef::Var(Var::Tx, Some(k))) = p {
                *p = Part::Ref(MacroRef::TxId(id(&k.to_ascii_lowercase())));
            }
        }
    }

    /// The variable references, for compile-time checks.
    pub fn refs(&self) -> impl Iterator<Item = &MacroRef> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }
}

fn parse_ref(inner: &str) -> Option<MacroRef> {
    let (name, key) = match inner.split_once(['.', ':']) {
        Some((n, k)) => (n.trim(), Some(k.trim())),
        None => (inner.trim(), None),
    };
    if name.eq_ignore_ascii_case("rule") {
        return key.map(|k| MacroRef::Rule(k.to_ascii_lowercase()));
    }
    let var = Var::from_name(name)?;
    Some(MacroRef::Var(var, key.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Resolve for Fake {
        fn resolve(&self, r: &MacroRef, out: &mut Vec<u8>) {
            match r {
                MacroRef::Var(Var::Tx, Some(k)) if k == "score" => out.extend_from_slice(b"5"),
                MacroRef::Var(Var::MatchedVar, None) => out.extend_from_slice(b"<x>"),
                MacroRef::Rule(k) if k == "id" => out.extend_from_slice(b"942100"),
                _ => {}
            }
        }
    }

    #[test]
    fn expands_variables_rule_fields_and_keeps_the_rest() {
        let m = MacroText::parse("id %{rule.id}: %{MATCHED_VAR} score=%{tx.score}%{TX.unset}!");
        assert!(!m.is_static());
        assert_eq!(m.expand(&Fake), b"id 942100: <x> score=5!");
        let lit = MacroText::parse("100% of %{nothing} and %{unclosed");
        assert!(lit.is_static());
        assert_eq!(
            lit.static_text().as_deref(),
            Some(&b"100% of %{nothing} and %{unclosed"[..])
        );
        assert_eq!(MacroText::parse("").expand(&Fake), b"");
        assert_eq!(
            MacroText::parse("%{REQUEST_HEADERS:Host}")
                .refs()
                .collect::<Vec<_>>(),
            [&MacroRef::Var(Var::RequestHeaders, Some("Host".into()))]
        );
    }
}
