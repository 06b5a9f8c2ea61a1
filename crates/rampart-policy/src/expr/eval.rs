//! The compiled form of an expression and its evaluation.
//!
//! Every node is typed by the checker, so evaluation never meets a type error: a
//! condition is a [`Cond`], a string-valued term an [`Text`], an integer a [`Num`].
//! Fields are read through [`Request`] on demand; nothing is allocated unless a
//! function changes a string (`lower` of a string already lower case borrows it).
//!
//! A *missing* value — `x[3]` of an array with fewer elements — is not equal to
//! anything: `==`, ordering, `contains`, `matches` and `in` are false for it, `!=` true,
//! and `len()` of it is 0.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use super::Field;
use crate::request::{Key, Request, form_decode};
use crate::set::{IntSet, IpSet, StrSet};

/// A condition.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Const(bool),
    Field(Field),
    Not(Box<Cond>),
    And(Box<[Cond]>),
    Or(Box<[Cond]>),
    BoolEq(Box<Cond>, Box<Cond>, bool),
    Text(Text, TextOp, Text),
    TextIn(Text, Arc<StrSet>),
    Matches(Text, Box<regex::bytes::Regex>),
    Num(Num, Ord, Num),
    NumIn(Num, Arc<IntSet>),
    Ip(Addr, bool, Addr),
    IpIn(Addr, Arc<IpSet>),
    Any(Array, Box<Cond>),
    All(Array, Box<Cond>),
}

/// A string comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

/// An integer comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ord {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A string-valued term.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Lit(Box<[u8]>),
    Field(Field),
    Index(Array, usize),
    /// The element `x[*]` stands for inside `any()`/`all()`.
    Elem,
    Lower(Box<Text>),
    Upper(Box<Text>),
    UrlDecode(Box<Text>),
}

/// An integer-valued term.
#[derive(Debug, Clone)]
pub(crate) enum Num {
    Lit(i64),
    Field(Field),
    Len(Box<Text>),
    Count(Array),
}

/// An address-valued term.
#[derive(Debug, Clone)]
pub(crate) enum Addr {
    Lit(IpAddr),
    Src,
    /// The network of the address at an IPv4 and an IPv6 prefix length.
    Cidr(Box<Addr>, u8, u8),
}

/// An array: a field, or a map field at one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Array {
    pub field: Field,
    pub key: Option<Key>,
}

impl Cond {
    /// Evaluates the condition; `elem` is the current element of the innermost
    /// `any()`/`all()`.
    pub(crate) fn eval<'s>(&'s self, req: &'s Request<'_>, elem: Option<&'s [u8]>) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::Field(f) => *f == Field::Tls && req.tls,
            Cond::Not(c) => !c.eval(req, elem),
            Cond::And(cs) => cs.iter().all(|c| c.eval(req, elem)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(req, elem)),
            Cond::BoolEq(a, b, eq) => (a.eval(req, elem) == b.eval(req, elem)) == *eq,
            Cond::Text(a, op, b) => {
                let (Some(a), Some(b)) = (a.eval(req, elem), b.eval(req, elem)) else {
                    return *op == TextOp::Ne;
                };
                match op {
                    TextOp::Eq => a == b,
                    TextOp::Ne => a != b,
                    TextOp::Contains => contains(&a, &b),
                    TextOp::StartsWith => a.starts_with(&b),
                    TextOp::EndsWith => a.ends_with(&b),
                }
            }
            Cond::TextIn(t, set) => t.eval(req, elem).is_some_and(|v| set.contains(&v)),
            Cond::Matches(t, re) => t.eval(req, elem).is_some_and(|v| re.is_match(&v)),
            Cond::Num(a, op, b) => {
                let (a, b) = (a.eval(req, elem), b.eval(req, elem));
                match op {
                    Ord::Eq => a == b,
                    Ord::Ne => a != b,
                    Ord::Lt => a < b,
                    Ord::Le => a <= b,
                    Ord::Gt => a > b,
                    Ord::Ge => a >= b,
                }
            }
            Cond::NumIn(n, set) => set.contains(n.eval(req, elem)),
            Cond::Ip(a, eq, b) => {
                let (a, b) = (a.eval(req), b.eval(req));
                (rampart_core::net::canonical(a) == rampart_core::net::canonical(b)) == *eq
            }
            Cond::IpIn(a, set) => set.contains(a.eval(req)),
            Cond::Any(arr, c) => {
                req.each(arr.field, arr.key.as_ref(), &mut |v| c.eval(req, Some(v)))
            }
            Cond::All(arr, c) => {
                !req.each(arr.field, arr.key.as_ref(), &mut |v| !c.eval(req, Some(v)))
            }
        }
    }
}

impl Text {
    pub(crate) fn eval<'s>(
        &'s self,
        req: &'s Request<'_>,
        elem: Option<&'s [u8]>,
    ) -> Option<Cow<'s, [u8]>> {
        Some(match self {
            Text::Lit(b) => Cow::Borrowed(&**b),
            Text::Field(f) => Cow::Borrowed(req.str_field(*f)),
            Text::Index(arr, n) => Cow::Borrowed(req.nth(arr.field, arr.key.as_ref(), *n)?),
            Text::Elem => Cow::Borrowed(elem?),
            Text::Lower(t) => {
                let v = t.eval(req, elem)?;
                if v.iter().any(u8::is_ascii_uppercase) {
                    Cow::Owned(v.to_ascii_lowercase())
                } else {
                    v
                }
            }
            Text::Upper(t) => {
                let v = t.eval(req, elem)?;
                if v.iter().any(u8::is_ascii_lowercase) {
                    Cow::Owned(v.to_ascii_uppercase())
                } else {
                    v
                }
            }
            Text::UrlDecode(t) => match t.eval(req, elem)? {
                Cow::Borrowed(b) => form_decode(b),
                Cow::Owned(o) => Cow::Owned(form_decode(&o).into_owned()),
            },
        })
    }
}

impl Num {
    pub(crate) fn eval(&self, req: &Request<'_>, elem: Option<&[u8]>) -> i64 {
        match self {
            Num::Lit(i) => *i,
            Num::Field(f) => req.int_field(*f),
            Num::Len(t) => t.eval(req, elem).map_or(0, |v| v.len() as i64),
            Num::Count(arr) => {
                let mut n = 0i64;
                req.each(arr.field, arr.key.as_ref(), &mut |_| {
                    n += 1;
                    false
                });
                n
            }
        }
    }
}

impl Addr {
    pub(crate) fn eval(&self, req: &Request<'_>) -> IpAddr {
        match self {
            Addr::Lit(ip) => *ip,
            Addr::Src => req.client_ip,
            Addr::Cidr(a, v4, v6) => match rampart_core::net::canonical(a.eval(req)) {
                IpAddr::V4(ip) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*v4)).unwrap_or(0);
                    IpAddr::V4((u32::from(ip) & mask).into())
                }
                IpAddr::V6(ip) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*v6)).unwrap_or(0);
                    IpAddr::V6((u128::from(ip) & mask).into())
                }
            },
        }
    }
}

/// A term that names a rate-limit key part or a counted value.
#[derive(Debug, Clone)]
pub(crate) enum KeyTerm {
    Text(Text),
    Num(Num),
    Addr(Addr),
    Array(Array),
}

impl KeyTerm {
    /// Appends the term's value to `out`; `false` when it has none (an absent header, an
    /// array with no element, an empty string).
    pub(crate) fn write(&self, req: &Request<'_>, out: &mut Vec<u8>) -> bool {
        use std::io::Write;
        match self {
            // An empty value (no User-Agent, no TLS fingerprint on a plain connection)
            // is no value: such requests are not all counted under one empty key.
            KeyTerm::Text(t) => match t.eval(req, None) {
                Some(v) if !v.is_empty() => {
                    out.extend_from_slice(&v);
                    true
                }
                _ => false,
            },
            KeyTerm::Num(n) => write!(out, "{}", n.eval(req, None)).is_ok(),
            KeyTerm::Addr(a) => write!(out, "{}", a.eval(req)).is_ok(),
            KeyTerm::Array(arr) => {
                let mut any = false;
                req.each(arr.field, arr.key.as_ref(), &mut |v| {
                    if any {
                        out.push(b',');
                    }
                    out.extend_from_slice(v);
                    any = true;
                    false
                });
                any
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}
