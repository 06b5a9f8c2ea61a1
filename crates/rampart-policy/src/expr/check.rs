//! The syntax tree → a typed [`Cond`], or an error that says what was expected.

use std::sync::Arc;

use super::eval::{Addr, Array, Cond, KeyTerm, Num, Ord, Text, TextOp};
use super::fields::{self, Type};
use super::parser::{CmpOp, Index, Item, Kind, Node, SetExpr};
use super::{ExprError, Field, Span};
use crate::list::{List, Lists};
use crate::request::Key;
use crate::set::{IntSet, IpItem, IpSet, StrSet};

/// A checked term.
enum Term {
    Cond(Cond),
    Text(Text),
    Num(Num),
    Addr(Addr),
    Array(Array),
    Map(Field),
}

impl Term {
    fn ty(&self) -> Type {
        match self {
            Term::Cond(_) => Type::Bool,
            Term::Text(_) => Type::Str,
            Term::Num(_) => Type::Int,
            Term::Addr(_) => Type::Ip,
            Term::Array(_) => Type::Array,
            Term::Map(_) => Type::Map,
        }
    }
}

/// Most bytes a compiled `matches` pattern may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) struct Checker<'l> {
    lists: &'l Lists,
    /// Inside `any()`/`all()`: the array its `[*]` names, once seen.
    star: Option<Option<Array>>,
    /// A response field was read.
    pub response: bool,
    /// The fields read, a bit per [`Field`].
    pub reads: u64,
}

impl<'l> Checker<'l> {
    pub(crate) fn new(lists: &'l Lists) -> Self {
        Checker {
            lists,
            star: None,
            response: false,
            reads: 0,
        }
    }

    /// The whole expression, which must be a condition.
    pub(crate) fn condition(&mut self, n: &Node) -> Result<Cond, ExprError> {
        match self.term(n)? {
            Term::Cond(c) => Ok(c),
            other => Err(not_a_condition(n, other.ty())),
        }
    }

    /// A rate-limit key part: a value, not a condition.
    pub(crate) fn key(&mut self, n: &Node) -> Result<KeyTerm, ExprError> {
        match self.term(n)? {
            Term::Text(t) => Ok(KeyTerm::Text(t)),
            Term::Num(x) => Ok(KeyTerm::Num(x)),
            Term::Addr(a) => Ok(KeyTerm::Addr(a)),
            Term::Array(a) => Ok(KeyTerm::Array(a)),
            Term::Map(_) => Err(ExprError::new(n.span, "a map is keyed by one of its names")
                .expected("`field[\"name\"]`, e.g. `http.request.headers[\"x-api-key\"]`")),
            Term::Cond(_) => Err(ExprError::new(n.span, "a condition is not a key")
                .expected("a field or a function of fields, e.g. `cidr(ip.src, 24, 64)`")),
        }
    }

    fn term(&mut self, n: &Node) -> Result<Term, ExprError> {
        Ok(match &n.kind {
            Kind::Str(s) => Term::Text(Text::Lit(s.clone().into())),
            Kind::Int(i) => Term::Num(Num::Lit(*i)),
            Kind::Ip(ip) => Term::Addr(Addr::Lit(*ip)),
            Kind::Name(name) => self.name(name, n.span)?,
            Kind::Index(base, index) => self.index(base, index, n.span)?,
            Kind::Call(name, args) => self.call(name, args, n.span)?,
            Kind::Not(inner) => Term::Cond(Cond::Not(Box::new(self.condition(inner)?))),
            Kind::And(a, b) => {
                let mut parts = Vec::new();
                self.flatten(a, true, &mut parts)?;
                self.flatten(b, true, &mut parts)?;
                Term::Cond(Cond::And(parts.into()))
            }
            Kind::Or(a, b) => {
                let mut parts = Vec::new();
                self.flatten(a, false, &mut parts)?;
                self.flatten(b, false, &mut parts)?;
                Term::Cond(Cond::Or(parts.into()))
            }
            Kind::Cmp(a, op, b) => Term::Cond(self.compare(a, *op, b, n.span)?),
            Kind::In(a, set) => Term::Cond(self.member(a, set)?),
        })
    }

    /// `a and (b and c)` → one list of three.
    fn flatten(&mut self, n: &Node, and: bool, out: &mut Vec<Cond>) -> Result<(), ExprError> {
        match &n.kind {
            Kind::And(a, b) if and => {
                self.flatten(a, and, out)?;
                self.flatten(b, and, out)
            }
            Kind::Or(a, b) if !and => {
                self.flatten(a, and, out)?;
                self.flatten(b, and, out)
            }
            _ => {
                out.push(self.condition(n)?);
                Ok(())
            }
        }
    }

    fn name(&mut self, name: &str, span: Span) -> Result<Term, ExprError> {
        match name {
            "true" => return Ok(Term::Cond(Cond::Const(true))),
            "false" => return Ok(Term::Cond(Cond::Const(false))),
            "lower" | "upper" | "url_decode" | "len" | "any" | "all" | "cidr" => {
                return Err(ExprError::new(span, format!("`{name}` is a function"))
                    .expected(format!("`{name}(…)`")));
            }
            _ => {}
        }
        let Some(def) = fields::lookup(name) else {
            let mut e = ExprError::new(span, format!("unknown field `{name}`"))
                .expected("a field name (see `rampart policy fields`)");
            if let Some(s) = fields::suggest(name) {
                e = e.hint(format!("did you mean `{s}`?"));
            }
            return Err(e);
        };
        self.response |= def.response;
        self.reads |= 1 << def.field as u64;
        Ok(match def.ty {
            Type::Bool => Term::Cond(Cond::Field(def.field)),
            Type::Int => Term::Num(Num::Field(def.field)),
            Type::Str => Term::Text(Text::Field(def.field)),
            Type::Ip => Term::Addr(Addr::Src),
            Type::Array => Term::Array(Array {
                field: def.field,
                key: None,
            }),
            Type::Map => Term::Map(def.field),
        })
    }

    fn index(&mut self, base: &Node, index: &Index, span: Span) -> Result<Term, ExprError> {
        let base_term = self.term(base)?;
        match (base_term, index) {
            (Term::Map(field), Index::Key(k)) => {
                let key = match field {
                    Field::Headers | Field::ResponseHeaders => {
                        match http::header::HeaderName::from_bytes(&k.to_ascii_lowercase()) {
                            Ok(h) => Key::Header(h),
                            Err(_) => {
                                return Err(ExprError::new(
                                    span,
                                    format!(
                                        "`{}` is not a valid header name",
                                        String::from_utf8_lossy(k)
                                    ),
                                )
                                .expected("a header name such as \"x-api-key\""));
                            }
                        }
                    }
                    _ => Key::Name(k.clone().into()),
                };
                Ok(Term::Array(Array {
                    field,
                    key: Some(key),
                }))
            }
            (Term::Map(_), _) => Err(ExprError::new(span, "a map is indexed by a name")
                .expected("a name in quotes, e.g. `http.request.headers[\"x-api-key\"]`")),
            (Term::Array(arr), Index::Pos(i)) => Ok(Term::Text(Text::Index(arr, *i))),
            (Term::Array(arr), Index::Star) => match &mut self.star {
                None => Err(ExprError::new(
                    span,
                    "`[*]` stands for each element, so it only goes inside any() or all()",
                )
                .hint("write `any(… [*] == …)`, or take one element with `[0]`")),
                Some(slot @ None) => {
                    *slot = Some(arr);
                    Ok(Term::Text(Text::Elem))
                }
                Some(Some(seen)) if *seen == arr => Ok(Term::Text(Text::Elem)),
                Some(Some(_)) => Err(ExprError::new(
                    span,
                    "one any()/all() iterates over one array",
                )
                .hint("nest them: `any(a[*] == \"x\" and any(b[*] == \"y\"))`")),
            },
            (Term::Array(_), Index::Key(_)) => {
                Err(ExprError::new(span, "an array is indexed by a position")
                    .expected("`[0]`, `[1]`, … or `[*]` inside any()/all()"))
            }
            (other, _) => Err(ExprError::new(
                span,
                format!("{} cannot be indexed", other.ty().a()),
            )
            .hint("only maps (`http.request.headers[\"name\"]`) and arrays (`[0]`) take brackets")),
        }
    }

    fn call(&mut self, name: &str, args: &[Node], span: Span) -> Result<Term, ExprError> {
        let one = |what: &str| -> Result<&Node, ExprError> {
            match args {
                [a] => Ok(a),
                _ => Err(ExprError::new(
                    span,
                    format!("`{name}` takes one argument, not {}", args.len()),
                )
                .expected(what.to_owned())),
            }
        };
        match name {
            "lower" | "upper" | "url_decode" => {
                let a = one("a string")?;
                let t = self.text(a, name)?;
                Ok(Term::Text(match name {
                    "lower" => Text::Lower(Box::new(t)),
                    "upper" => Text::Upper(Box::new(t)),
                    _ => Text::UrlDecode(Box::new(t)),
                }))
            }
            "cidr" => {
                let (a, v4, v6) = match args {
                    [a, v4] => (a, v4, None),
                    [a, v4, v6] => (a, v4, Some(v6)),
                    _ => {
                        return Err(ExprError::new(
                            span,
                            format!("`cidr` takes two or three arguments, not {}", args.len()),
                        )
                        .expected("`cidr(ip.src, 24)` or `cidr(ip.src, 24, 64)`"));
                    }
                };
                let addr = match self.term(a)? {
                    Term::Addr(x) => x,
                    other => {
                        return Err(ExprError::new(
                            a.span,
                            format!("cidr() of {}", other.ty().a()),
                        )
                        .expected("an address"));
                    }
                };
                let bits = |n: &Node, max: i64| match n.kind {
                    Kind::Int(i) if (0..=max).contains(&i) => Ok(i as u8),
                    _ => Err(ExprError::new(
                        n.span,
                        "a prefix length is a number written in the rule",
                    )
                    .expected(format!("an integer from 0 to {max}"))),
                };
                let v4 = bits(v4, 32)?;
                let v6 = match v6 {
                    Some(n) => bits(n, 128)?,
                    None => 64,
                };
                Ok(Term::Addr(Addr::Cidr(Box::new(addr), v4, v6)))
            }
            "len" => {
                let a = one("a string or an array")?;
                match self.term(a)? {
                    Term::Text(t) => Ok(Term::Num(Num::Len(Box::new(t)))),
                    Term::Array(arr) => Ok(Term::Num(Num::Count(arr))),
                    other => Err(
                        ExprError::new(a.span, format!("len() of {}", other.ty().a()))
                            .expected("a string or an array"),
                    ),
                }
            }
            "any" | "all" => {
                let a = one("a condition over `x[*]`")?;
                let outer = self.star.replace(None);
                let inner = self.condition(a);
                let star = std::mem::replace(&mut self.star, outer);
                let inner = inner?;
                let Some(Some(arr)) = star else {
                    return Err(ExprError::new(
                        span,
                        format!("{name}() needs an array written with `[*]`"),
                    )
                    .expected(format!(
                        "e.g. `{name}(http.request.headers[\"accept\"][*] contains \"json\")`"
                    )));
                };
                Ok(Term::Cond(if name == "any" {
                    Cond::Any(arr, Box::new(inner))
                } else {
                    Cond::All(arr, Box::new(inner))
                }))
            }
            _ => {
                let known = ["lower", "upper", "url_decode", "len", "any", "all", "cidr"];
                let mut e = ExprError::new(span, format!("unknown function `{name}`"))
                    .expected("one of lower, upper, url_decode, len, any, all, cidr");
                if let Some(s) = known.iter().find(|k| fields::distance(name, k) <= 2) {
                    e = e.hint(format!("did you mean `{s}`?"));
                }
                Err(e)
            }
        }
    }

    fn text(&mut self, n: &Node, func: &str) -> Result<Text, ExprError> {
        match self.term(n)? {
            Term::Text(t) => Ok(t),
            Term::Array(_) => Err(ExprError::new(n.span, format!("{func}() of an array"))
                .expected("a string")
                .hint(format!(
                    "take one element (`[0]`) or each: `any({func}(x[*]) == …)`"
                ))),
            other => Err(
                ExprError::new(n.span, format!("{func}() of {}", other.ty().a()))
                    .expected("a string"),
            ),
        }
    }

    fn compare(&mut self, a: &Node, op: CmpOp, b: &Node, span: Span) -> Result<Cond, ExprError> {
        let left = self.term(a)?;
        let right = self.term(b)?;
        let bad_op = |ty: Type, ok: &str| {
            ExprError::new(
                span,
                format!("`{}` does not apply to {}", op.text(), ty.a()),
            )
            .expected(ok.to_owned())
        };
        match (left, right) {
            (Term::Text(l), Term::Text(r)) => {
                let op = match op {
                    CmpOp::Eq => TextOp::Eq,
                    CmpOp::Ne => TextOp::Ne,
                    CmpOp::Contains => TextOp::Contains,
                    CmpOp::StartsWith => TextOp::StartsWith,
                    CmpOp::EndsWith => TextOp::EndsWith,
                    CmpOp::Matches => {
                        let Text::Lit(pattern) = r else {
                            return Err(ExprError::new(
                                b.span,
                                "`matches` takes a pattern written in the rule",
                            )
                            .expected("a string literal, e.g. r\"^/api/v[0-9]+/\""));
                        };
                        return Ok(Cond::Matches(l, Box::new(regex(&pattern, b.span)?)));
                    }
                    _ => {
                        return Err(bad_op(
                            Type::Str,
                            "`==`, `!=`, `contains`, `starts_with`, `ends_with`, `matches` or `in`",
                        )
                        .hint("to compare lengths, use len()"));
                    }
                };
                Ok(Cond::Text(l, op, r))
            }
            (Term::Num(l), Term::Num(r)) => {
                let op = match op {
                    CmpOp::Eq => Ord::Eq,
                    CmpOp::Ne => Ord::Ne,
                    CmpOp::Lt => Ord::Lt,
                    CmpOp::Le => Ord::Le,
                    CmpOp::Gt => Ord::Gt,
                    CmpOp::Ge => Ord::Ge,
                    _ => {
                        return Err(bad_op(
                            Type::Int,
                            "`==`, `!=`, `<`, `<=`, `>`, `>=` or `in`",
                        ));
                    }
                };
                Ok(Cond::Num(l, op, r))
            }
            (Term::Addr(l), Term::Addr(r)) => match op {
                CmpOp::Eq | CmpOp::Ne => Ok(Cond::Ip(l, op == CmpOp::Eq, r)),
                _ => Err(bad_op(Type::Ip, "`==`, `!=` or `in`")
                    .hint("for networks write `ip.src in {10.0.0.0/8}`")),
            },
            (Term::Cond(l), Term::Cond(r)) => match op {
                CmpOp::Eq | CmpOp::Ne => {
                    Ok(Cond::BoolEq(Box::new(l), Box::new(r), op == CmpOp::Eq))
                }
                _ => Err(bad_op(Type::Bool, "`==` or `!=`")),
            },
            (Term::Array(_), _) | (_, Term::Array(_)) => Err(ExprError::new(
                span,
                "an array is compared element by element",
            )
            .expected("one element (`x[0]`) or each with any()/all()")
            .hint(format!("write `any(x[*] {} …)`", op.text()))),
            (Term::Map(_), _) | (_, Term::Map(_)) => {
                Err(ExprError::new(span, "a map is compared by name").expected("`field[\"name\"]`"))
            }
            (l, r) => Err(ExprError::new(
                span,
                format!("cannot compare {} with {}", l.ty().a(), r.ty().a()),
            )
            .expected(format!("{} on the right", l.ty().a()))
            .hint(quote_hint(&r))),
        }
    }

    fn member(&mut self, a: &Node, set: &SetExpr) -> Result<Cond, ExprError> {
        let left = self.term(a)?;
        if let SetExpr::List(name, span) = set {
            let Some(list) = self.lists.get(name) else {
                let mut e = ExprError::new(*span, format!("no list named `${name}`"))
                    .expected("a list defined in the configuration");
                if let Some(s) = self.lists.suggest(name) {
                    e = e.hint(format!("did you mean `${s}`?"));
                }
                return Err(e);
            };
            return match (left, list) {
                (Term::Addr(l), List::Ip(s)) => Ok(Cond::IpIn(l, s.clone())),
                (Term::Text(l), List::Str(s)) => Ok(Cond::TextIn(l, s.clone())),
                (Term::Num(l), List::Int(s)) => Ok(Cond::NumIn(l, s.clone())),
                (l, list) => Err(ExprError::new(
                    *span,
                    format!("`${name}` is a list of {}", list.kind()),
                )
                .expected(format!("a list of the kind of {}", l.ty().a()))),
            };
        }
        let SetExpr::Items(items) = set else {
            return Err(ExprError::new(a.span, "internal: unexpected set form"));
        };
        let wrong = |span: Span, want: &str| {
            ExprError::new(span, "this member does not match the value tested")
                .expected(want.to_owned())
        };
        match left {
            Term::Text(l) => {
                let mut out = Vec::with_capacity(items.len());
                for (item, span) in items {
                    match item {
                        Item::Str(s) => out.push(s.clone().into_boxed_slice()),
                        _ => return Err(wrong(*span, "a string in quotes")),
                    }
                }
                Ok(Cond::TextIn(l, Arc::new(StrSet::new(out))))
            }
            Term::Num(l) => {
                let mut out = Vec::with_capacity(items.len());
                for (item, span) in items {
                    match item {
                        Item::Int(i) => out.push((*i, *i)),
                        Item::IntRange(lo, hi) => out.push((*lo, *hi)),
                        _ => return Err(wrong(*span, "an integer or a range `1..9`")),
                    }
                }
                Ok(Cond::NumIn(l, Arc::new(IntSet::new(out))))
            }
            Term::Addr(l) => {
                let mut out = Vec::with_capacity(items.len());
                for (item, span) in items {
                    out.push(match item {
                        Item::Ip(ip) => IpItem::Addr(*ip),
                        Item::Net(n) => IpItem::Net(*n),
                        Item::IpRange(lo, hi) => IpItem::Range(*lo, *hi),
                        _ => {
                            return Err(wrong(
                                *span,
                                "an address, a network (`10.0.0.0/8`) or a range",
                            ));
                        }
                    });
                }
                Ok(Cond::IpIn(l, Arc::new(IpSet::new(out))))
            }
            Term::Array(_) => Err(
                ExprError::new(a.span, "an array is tested element by element")
                    .hint("write `any(x[*] in { … })`"),
            ),
            other => Err(ExprError::new(
                a.span,
                format!("`in` does not apply to {}", other.ty().a()),
            )
            .expected("a string, an integer or an address on the left")),
        }
    }
}

fn quote_hint(r: &Term) -> String {
    match r {
        Term::Num(_) => "strings are written in quotes: \"404\"".into(),
        Term::Text(_) => "numbers and addresses are written without quotes".into(),
        _ => "both sides of a comparison have one type".into(),
    }
}

fn not_a_condition(n: &Node, ty: Type) -> ExprError {
    ExprError::new(n.span, format!("{} is not a condition", ty.a()))
        .expected("a comparison, e.g. `http.request.method == \"POST\"`")
}

fn regex(pattern: &[u8], span: Span) -> Result<regex::bytes::Regex, ExprError> {
    let Ok(text) = std::str::from_utf8(pattern) else {
        return Err(ExprError::new(span, "the pattern is not UTF-8")
            .hint("write bytes as `\\xHH` inside the pattern"));
    };
    regex::bytes::RegexBuilder::new(text)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or("invalid pattern").trim().to_owned();
            ExprError::new(span, format!("invalid regular expression: {last}"))
                .expected("a pattern in the syntax of Rust's `regex` crate (no look-around, no back-references)")
        })
}
