//! Sets that `in` tests against: strings, integer ranges and address ranges.
//!
//! Each is built once (from a literal set in an expression or from a list file) into a
//! sorted, merged form and answered by binary search, so a list of a million networks
//! costs a lookup of ~20 comparisons and no allocation.

use std::net::IpAddr;

use rampart_core::net::{Cidr, canonical};

/// Strings, sorted for binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrSet(Vec<Box<[u8]>>);

impl StrSet {
    /// A set of the given strings (duplicates are kept once).
    pub fn new(mut items: Vec<Box<[u8]>>) -> Self {
        items.sort_unstable();
        items.dedup();
        StrSet(items)
    }

    /// Whether `s` is a member.
    pub fn contains(&self, s: &[u8]) -> bool {
        self.0.binary_search_by(|m| (**m).cmp(s)).is_ok()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Integers as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntSet(Vec<(i64, i64)>);

impl IntSet {
    /// A set of the given inclusive ranges (single values are `(v, v)`).
    pub fn new(ranges: Vec<(i64, i64)>) -> Self {
        IntSet(merge(ranges, |hi| hi.checked_add(1)))
    }

    /// Whether `v` is a member.
    pub fn contains(&self, v: i64) -> bool {
        find(&self.0, v)
    }

    /// Number of ranges after merging.
    pub fn ranges(&self) -> usize {
        self.0.len()
    }
}

/// IP addresses as sorted, disjoint ranges per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// One member of an [`IpSet`] being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpItem {
    /// One address.
    Addr(IpAddr),
    /// A network.
    Net(Cidr),
    /// An inclusive range of one family.
    Range(IpAddr, IpAddr),
}

impl IpSet {
    /// A set of the given members; a range mixing families is left out (the parsers
    /// refuse those before they get here).
    pub fn new(items: impl IntoIterator<Item = IpItem>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut push = |a: IpAddr, b: IpAddr| match (canonical(a), canonical(b)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => v4.push((u32::from(a), u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => v6.push((u128::from(a), u128::from(b))),
            _ => {}
        };
        for item in items {
            match item {
                IpItem::Addr(a) => push(a, a),
                IpItem::Range(a, b) => push(a, b),
                IpItem::Net(n) => {
                    let (a, b) = net_range(n);
                    push(a, b);
                }
            }
        }
        IpSet {
            v4: merge(v4, |hi| hi.checked_add(1)),
            v6: merge(v6, |hi| hi.checked_add(1)),
        }
    }

    /// Whether `ip` is a member (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Number of ranges after merging.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// First and last address of a network.
fn net_range(n: Cidr) -> (IpAddr, IpAddr) {
    match n.addr() {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
            let a = u32::from(a);
            (IpAddr::V4(a.into()), IpAddr::V4((a | host).into()))
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(n.prefix())).unwrap_or(0);
            let a = u128::from(a);
            (IpAddr::V6(a.into()), IpAddr::V6((a | host).into()))
        }
    }
}

/// Sorts ranges and joins overlapping or adjacent ones (`succ`: the next value, if any).
fn merge<T: Ord + Copy>(mut v: Vec<(T, T)>, succ: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    v.retain(|(a, b)| a <= b);
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        if let Some(last) = out.last_mut() {
            if succ(last.1).is_none_or(|next| a <= next) {
                last.1 = last.1.max(b);
                continue;
            }
        }
        out.push((a, b));
    }
    out.shrink_to_fit();
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], v: T) -> bool {
    let i = ranges.partition_point(|&(a, _)| a <= v);
    i > 0 && v <= ranges[i - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    fn net(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    #[test]
    fn ip_set_answers_networks_ranges_and_addresses() {
        let set = IpSet::new([
            IpItem::Net(net("10.0.0.0/8")),
            IpItem::Net(net("11.0.0.0/8")),
            IpItem::Addr(ip("192.168.1.7")),
            IpItem::Range(ip("172.16.0.10"), ip("172.16.0.20")),
            IpItem::Net(net("2001:db8::/32")),
            IpItem::Net(net("0.0.0.0/0")),
        ]);
        // 0.0.0.0/0 swallows every IPv4 range.
        assert_eq!(set.ranges(), 2);
        assert!(set.contains(ip("8.8.8.8")));
        assert!(set.contains(ip("::ffff:8.8.8.8")));
        assert!(set.contains(ip("2001:db8:1::1")));
        assert!(!set.contains(ip("2001:db9::1")));

        let set = IpSet::new([
            IpItem::Net(net("10.0.0.0/8")),
            IpItem::Net(net("11.0.0.0/8")),
            IpItem::Addr(ip("192.168.1.7")),
            IpItem::Range(ip("172.16.0.10"), ip("172.16.0.20")),
            IpItem::Net(net("::/0")),
        ]);
        // 10/8 and 11/8 are adjacent: one range.
        assert_eq!(set.ranges(), 4);
        for (a, want) in [
            ("10.0.0.0", true),
            ("11.255.255.255", true),
            ("12.0.0.0", false),
            ("9.255.255.255", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("172.16.0.9", false),
            ("172.16.0.10", true),
            ("172.16.0.20", true),
            ("172.16.0.21", false),
            ("::1", true),
            ("::ffff:10.1.2.3", true),
        ] {
            assert_eq!(set.contains(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn int_set_merges_and_keeps_edges() {
        let set = IntSet::new(vec![(5, 9), (1, 3), (4, 4), (20, 20), (i64::MAX, i64::MAX)]);
        assert_eq!(set.ranges(), 3);
        for (v, want) in [
            (0, false),
            (1, true),
            (9, true),
            (10, false),
            (20, true),
            (21, false),
            (i64::MAX, true),
        ] {
            assert_eq!(set.contains(v), want, "{v}");
        }
    }

    #[test]
    fn str_set_is_exact() {
        let set = StrSet::new(vec![
            b"GET".to_vec().into(),
            b"HEAD".to_vec().into(),
            b"GET".to_vec().into(),
        ]);
        assert_eq!(set.len(), 2);
        assert!(set.contains(b"GET"));
        assert!(!set.contains(b"get"));
        assert!(!set.contains(b"GE"));
    }
}
