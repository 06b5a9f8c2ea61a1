//! Named lists (`$office`, `$eu`, `$hosting`) that expressions test with `in`.
//!
//! A list holds addresses and networks, strings (countries are upper-cased codes), or
//! integers (autonomous system numbers). Its text form is one entry per line; `#` starts
//! a comment; blank lines are skipped:
//!
//! ```text
//! # office egress
//! 198.51.100.0/24
//! 203.0.113.7
//! 192.0.2.10..192.0.2.20
//! ```
//!
//! Parsing reports every bad line with its line and column, not only the first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use rampart_core::net::Cidr;

use crate::set::{IntSet, IpItem, IpSet, StrSet};

pub use rampart_core::config::policy::ListKind;

/// A loaded list.
#[derive(Debug, Clone)]
pub enum List {
    /// Addresses.
    Ip(Arc<IpSet>),
    /// Strings (countries included).
    Str(Arc<StrSet>),
    /// Integers (ASNs).
    Int(Arc<IntSet>),
}

impl List {
    /// What the list holds, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            List::Ip(_) => "addresses",
            List::Str(_) => "strings",
            List::Int(_) => "integers",
        }
    }
}

/// The lists an expression may name.
#[derive(Debug, Clone, Default)]
pub struct Lists(BTreeMap<String, List>);

impl Lists {
    /// No lists.
    pub fn new() -> Self {
        Lists::default()
    }

    /// Adds (or replaces) a list.
    pub fn insert(&mut self, name: impl Into<String>, list: List) {
        self.0.insert(name.into(), list);
    }

    /// The list called `name`.
    pub fn get(&self, name: &str) -> Option<&List> {
        self.0.get(name)
    }

    /// A defined name close to `name`.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        self.0
            .keys()
            .map(|k| (crate::expr::fields::distance(name, k), k.as_str()))
            .filter(|&(d, _)| d <= 2)
            .min()
            .map(|(_, k)| k)
    }
}

/// A bad line of a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}; expected {expected}")]
pub struct ListError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What the line should hold.
    pub expected: &'static str,
}

/// Parses a list's text. Every bad line is reported.
pub fn parse(kind: ListKind, text: &str) -> Result<List, Vec<ListError>> {
    let mut errors = Vec::new();
    let mut ips = Vec::new();
    let mut strs: Vec<Box<[u8]>> = Vec::new();
    let mut ints = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or("");
        let entry = content.trim();
        if entry.is_empty() {
            continue;
        }
        let col = raw[..raw.len() - raw.trim_start().len()].chars().count() + 1;
        let err = |message: String, expected: &'static str| ListError {
            line: n + 1,
            col,
            message,
            expected,
        };
        match kind {
            ListKind::Ip => match ip_entry(entry) {
                Ok(item) => ips.push(item),
                Err(message) => errors.push(err(
                    message,
                    "an address, a network (10.0.0.0/8) or a range (192.0.2.1..192.0.2.9)",
                )),
            },
            ListKind::Country => {
                if entry.len() == 2 && entry.bytes().all(|c| c.is_ascii_alphabetic()) {
                    strs.push(entry.to_ascii_uppercase().into_bytes().into());
                } else {
                    errors.push(err(
                        format!("`{entry}` is not a country code"),
                        "a two-letter ISO 3166-1 code such as DE",
                    ));
                }
            }
            ListKind::Asn => {
                let digits = entry
                    .strip_prefix("AS")
                    .or_else(|| entry.strip_prefix("as"))
                    .unwrap_or(entry);
                match digits.parse::<u32>() {
                    Ok(v) => ints.push((i64::from(v), i64::from(v))),
                    Err(_) => errors.push(err(
                        format!("`{entry}` is not an AS number"),
                        "a number from 0 to 4294967295, optionally written AS64500",
                    )),
                }
            }
            ListKind::Str => strs.push(entry.as_bytes().into()),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(match kind {
        ListKind::Ip => List::Ip(Arc::new(IpSet::new(ips))),
        ListKind::Country | ListKind::Str => List::Str(Arc::new(StrSet::new(strs))),
        ListKind::Asn => List::Int(Arc::new(IntSet::new(ints))),
    })
}

fn ip_entry(entry: &str) -> Result<IpItem, String> {
    if let Some((lo, hi)) = entry.split_once("..") {
        let (lo, hi) = (lo.trim(), hi.trim());
        let parse = |s: &str| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("`{s}` is not an IP address"))
        };
        let (a, b) = (parse(lo)?, parse(hi)?);
        if a.is_ipv4() != b.is_ipv4() || a > b {
            return Err(format!(
                "`{entry}` is not a range (low first, one address family)"
            ));
        }
        return Ok(IpItem::Range(a, b));
    }
    if entry.contains('/') {
        return entry
            .parse::<Cidr>()
            .map(IpItem::Net)
            .map_err(|e| e.to_string());
    }
    entry
        .parse::<IpAddr>()
        .map(IpItem::Addr)
        .map_err(|_| format!("`{entry}` is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_lists_take_addresses_networks_ranges_and_comments() {
        let text = "# office\n198.51.100.0/24\n  203.0.113.7   # gateway\n\n192.0.2.10..192.0.2.20\n2001:db8::/48\n";
        let Ok(List::Ip(set)) = parse(ListKind::Ip, text) else {
            unreachable!("list did not parse");
        };
        for (a, want) in [
            ("198.51.100.200", true),
            ("203.0.113.7", true),
            ("203.0.113.8", false),
            ("192.0.2.15", true),
            ("192.0.2.21", false),
            ("2001:db8:0:1::", true),
            ("2001:db8:1::", false),
        ] {
            let ip: IpAddr = a.parse().unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(set.contains(ip), want, "{a}");
        }
    }

    #[test]
    fn every_bad_line_is_reported_with_its_position() {
        let text = "10.0.0.0/8\n  10.1.2.3/8\nnot-an-ip\n192.0.2.9..192.0.2.1\n";
        let errors = parse(ListKind::Ip, text).err().unwrap_or_default();
        let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.col)).collect();
        assert_eq!(at, vec![(2, 3), (3, 1), (4, 1)]);
        assert!(errors[0].message.contains("host bits"), "{}", errors[0]);
        assert!(errors[1].message.contains("not-an-ip"), "{}", errors[1]);
    }

    #[test]
    fn countries_and_asns() {
        let Ok(List::Str(c)) = parse(ListKind::Country, "de\nAT # Austria\n") else {
            unreachable!("countries");
        };
        assert!(c.contains(b"DE") && c.contains(b"AT") && !c.contains(b"de"));
        let Ok(List::Int(a)) = parse(ListKind::Asn, "AS16509\n14618\n") else {
            unreachable!("asns");
        };
        assert!(a.contains(16509) && a.contains(14618) && !a.contains(1));
        let bad = parse(ListKind::Country, "DEU\n").err().unwrap_or_default();
        assert_eq!((bad.len(), bad[0].line), (1, 1));
        let bad = parse(ListKind::Asn, "ASX\n").err().unwrap_or_default();
        assert_eq!(bad.len(), 1);
    }
}
