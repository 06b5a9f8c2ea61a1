//! Writing MaxMind DB (MMDB) files: for tests that need exact answers, and for
//! `rampart geo asn-mmdb`, which turns the free ASN tables published as CSV
//! (`start,end,asn,organisation`, as the `@ip-location-db/asn` package ships them) into
//! the MaxMind format the edge reads with the `maxminddb` crate.
//!
//! The file: a binary search tree over the address bits (IPv6; IPv4 networks live under
//! `::/96`, where readers look for IPv4 addresses), 32-bit records, 16 zero bytes, the
//! data section (maps in MaxMind's data format), then the metadata marker and map —
//! version 2.0 of the format.

use std::collections::HashMap;
use std::net::IpAddr;

/// A value of MaxMind's data format (the subset these databases use).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// UTF-8 string.
    Str(String),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Map with string keys, in the order given.
    Map(Vec<(String, Value)>),
    /// Array.
    Array(Vec<Value>),
}

/// The record of a country database: `{"country": {"iso_code": code}}`, as GeoLite2
/// Country has it.
pub fn country_record(iso_code: &str) -> Value {
    Value::Map(vec![(
        "country".into(),
        Value::Map(vec![("iso_code".into(), Value::Str(iso_code.into()))]),
    )])
}

/// The record of an ASN database: `{"autonomous_system_number": n,
/// "autonomous_system_organization": org}`, as GeoLite2 ASN has it.
pub fn asn_record(asn: u32, org: &str) -> Value {
    Value::Map(vec![
        ("autonomous_system_number".into(), Value::U32(asn)),
        (
            "autonomous_system_organization".into(),
            Value::Str(org.into()),
        ),
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Empty,
    Node(u32),
    Data(u32),
}

/// Builds an MMDB file in memory.
#[derive(Debug)]
pub struct Writer {
    database_type: String,
    nodes: Vec<[Record; 2]>,
    values: Vec<Value>,
    index: HashMap<Value, u32>,
    networks: Vec<(u128, u8, u32)>,
}

/// Why a network cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WriteError(pub String);

impl Writer {
    /// An empty database of `database_type` (e.g. `GeoLite2-ASN`).
    pub fn new(database_type: &str) -> Self {
        Writer {
            database_type: database_type.into(),
            nodes: Vec::new(),
            values: Vec::new(),
            index: HashMap::new(),
            networks: Vec::new(),
        }
    }

    /// Adds `addr/prefix` with `value`. More specific networks win over the ones that
    /// contain them, whatever the order they are added in.
    pub fn insert(&mut self, addr: IpAddr, prefix: u8, value: Value) -> Result<(), WriteError> {
        let (bits, len) = match addr {
            IpAddr::V4(a) if prefix <= 32 => (u128::from(u32::from(a)), 96 + prefix),
            IpAddr::V6(a) if prefix <= 128 => (u128::from(a), prefix),
            _ => {
                return Err(WriteError(format!(
                    "prefix /{prefix} is too long for {addr}"
                )));
            }
        };
        let id = match self.index.get(&value) {
            Some(&i) => i,
            None => {
                let i = self.values.len() as u32;
                self.index.insert(value.clone(), i);
                self.values.push(value);
                i
            }
        };
        self.networks.push((bits, len, id));
        Ok(())
    }

    /// Adds every network of the inclusive range `first..=last` (one family).
    pub fn insert_range(
        &mut self,
        first: IpAddr,
        last: IpAddr,
        value: Value,
    ) -> Result<(), WriteError> {
        let (a, b, v4) = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(b)), true)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), false),
            _ => {
                return Err(WriteError(format!(
                    "{first}..{last} mixes address families"
                )));
            }
        };
        if a > b {
            return Err(WriteError(format!("{first}..{last} is empty")));
        }
        let width: u32 = if v4 { 32 } else { 128 };
        let mut at = a;
        loop {
            // The largest aligned block that starts at `at` and ends within the range.
            let align = if at == 0 {
                width
            } else {
                at.trailing_zeros().min(width)
            };
            let mut size = align;
            let span = |size: u32| 1u128.checked_shl(size).map_or(u128::MAX, |s| s - 1);
            while size > 0 && at.checked_add(span(size)).is_none_or(|end| end > b) {
                size -= 1;
            }
            let prefix = (width - size) as u8;
            let addr = if v4 {
                IpAddr::V4((at as u32).into())
            } else {
                IpAddr::V6(at.into())
            };
            self.insert(addr, prefix, value.clone())?;
            let next = at
                .checked_add(span(size))
                .and_then(|end| end.checked_add(1));
            match next {
                Some(n) if n <= b => at = n,
                _ => return Ok(()),
            }
        }
    }

    fn node(&mut self) -> u32 {
        self.nodes.push([Record::Empty; 2]);
        (self.nodes.len() - 1) as u32
    }

    /// The file's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        // General networks first, so that more specific ones split them.
        let mut nets = std::mem::take(&mut self.networks);
        nets.sort_by_key(|n| n.1);
        self.nodes.clear();
        self.node();
        for (bits, len, id) in nets {
            if len == 0 {
                continue;
            }
            let mut n = 0u32;
            for depth in 0..len {
                let bit = ((bits >> (127 - depth)) & 1) as usize;
                if depth + 1 == len {
                    self.nodes[n as usize][bit] = Record::Data(id);
                    break;
                }
                n = match self.nodes[n as usize][bit] {
                    Record::Node(c) => c,
                    other => {
                        // Empty, or a shorter network's data: split it below.
                        let c = self.node();
                        self.nodes[c as usize] = [other; 2];
                        self.nodes[n as usize][bit] = Record::Node(c);
                        c
                    }
                };
            }
        }
        // Data section: each value once.
        let mut data = Vec::new();
        let mut offsets = Vec::with_capacity(self.values.len());
        for v in &self.values {
            offsets.push(data.len() as u32);
            encode(&mut data, v);
        }
        let count = self.nodes.len() as u32;
        let mut out = Vec::with_capacity(self.nodes.len() * 8 + data.len() + 256);
        for node in &self.nodes {
            for r in node {
                let v = match *r {
                    Record::Empty => count,
                    Record::Node(c) => c,
                    Record::Data(i) => count + 16 + offsets[i as usize],
                };
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let meta = Value::Map(vec![
            ("binary_format_major_version".into(), Value::U16(2)),
            ("binary_format_minor_version".into(), Value::U16(0)),
            ("build_epoch".into(), Value::U64(0)),
            (
                "database_type".into(),
                Value::Str(self.database_type.clone()),
            ),
            (
                "description".into(),
                Value::Map(vec![("en".into(), Value::Str("written by Rampart".into()))]),
            ),
            ("ip_version".into(), Value::U16(6)),
            (
                "languages".into(),
                Value::Array(vec![Value::Str("en".into())]),
            ),
            ("node_count".into(), Value::U32(count)),
            ("record_size".into(), Value::U16(32)),
        ]);
        encode(&mut out, &meta);
        out
    }
}

/// Control byte(s) of a field: `kind` 1–7 in the byte, 8–15 as an extended type.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, Vec::new()),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push(kind << 5 | size_bits);
    } else {
        out.push(size_bits);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => uint(out, 5, u64::from(*n)),
        Value::U32(n) => uint(out, 6, u64::from(*n)),
        Value::U64(n) => uint(out, 9, *n),
        Value::Map(m) => {
            control(out, 7, m.len());
            for (k, v) in m {
                encode(out, &Value::Str(k.clone()));
                encode(out, v);
            }
        }
        Value::Array(a) => {
            control(out, 11, a.len());
            for v in a {
                encode(out, v);
            }
        }
    }
}

/// A bad line of an ASN table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Adds the rows of an ASN table (`first,last,asn,organisation`; the organisation may
/// be quoted with `"`; addresses or, for IPv4, integers) to `w`. Returns the rows read.
pub fn add_asn_csv(w: &mut Writer, text: &str) -> Result<usize, CsvError> {
    let mut rows = 0;
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| CsvError {
            line: n + 1,
            message: m,
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(4, ',');
        let (Some(a), Some(b), Some(asn)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err("expected first,last,asn,organisation".into()));
        };
        let org = parts.next().unwrap_or("").trim();
        let org = org
            .strip_prefix('"')
            .and_then(|o| o.strip_suffix('"'))
            .map_or(org.to_owned(), |o| o.replace("\"\"", "\""));
        let addr = |s: &str| -> Result<IpAddr, CsvError> {
            s.parse::<IpAddr>()
                .or_else(|_| s.parse::<u32>().map(|v| IpAddr::V4(v.into())))
                .map_err(|_| err(format!("`{s}` is not an address")))
        };
        let asn: u32 = asn
            .trim()
            .parse()
            .map_err(|_| err(format!("`{asn}` is not an AS number")))?;
        w.insert_range(addr(a.trim())?, addr(b.trim())?, asn_record(asn, &org))
            .map_err(|e| err(e.0))?;
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_into_aligned_networks() {
        let mut w = Writer::new("t");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(
            w.insert_range(ip("10.0.0.1"), ip("10.0.0.6"), Value::U32(1))
                .is_ok()
        );
        let got: Vec<(u128, u8)> = w.networks.iter().map(|n| (n.0 & 0xff, n.1 - 96)).collect();
        assert_eq!(got, [(1, 32), (2, 31), (4, 31), (6, 32)]);
        w.networks.clear();
        assert!(
            w.insert_range(ip("0.0.0.0"), ip("255.255.255.255"), Value::U32(1))
                .is_ok()
        );
        assert_eq!(w.networks.iter().map(|n| n.1).collect::<Vec<_>>(), [96]);
        assert!(
            w.insert_range(ip("10.0.0.9"), ip("10.0.0.1"), Value::U32(1))
                .is_err()
        );
        assert!(
            w.insert_range(ip("10.0.0.1"), ip("::1"), Value::U32(1))
                .is_err()
        );
    }

    #[test]
    fn csv_rows_with_quotes_and_integers() {
        let mut w = Writer::new("t");
        let rows = add_asn_csv(
            &mut w,
            "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n16778240,16779263,38803,Gtelecom\n2001:db8::,2001:db8::ffff,64500,Doc\n",
        );
        assert_eq!(rows, Ok(3));
        assert!(w.values.contains(&asn_record(13335, "Cloudflare, Inc.")));
        let bad = add_asn_csv(&mut w, "1.0.0.0,1.0.0.255,x,Org\n");
        assert_eq!(bad.map_err(|e| e.line), Err(1));
    }
}
