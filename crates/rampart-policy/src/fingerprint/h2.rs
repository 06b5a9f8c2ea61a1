//! The HTTP/2 client fingerprint: what a client's HTTP/2 stack sends before its first
//! request, which differs between browsers, libraries and bot tools and is not set by
//! anything a script controls.
//!
//! [`h2_fingerprint`] reads a connection from its first byte (the client preface) up to
//! the end of the first HEADERS block and returns four parts separated by `|` — the
//! layout of the passive HTTP/2 fingerprint described by Shuster, Shulman and Hornstein
//! (Akamai, Black Hat EU 2017), so published values for browsers compare directly:
//!
//! 1. the SETTINGS the client sent, `id:value` in its order, joined by `;`;
//! 2. the connection-level WINDOW_UPDATE increment sent before the first request (`0`
//!    when none);
//! 3. PRIORITY frames sent before the first request, `stream:exclusive:dependency:weight`
//!    (weight as 1–256) joined by `,` (`0` when none);
//! 4. the order of the first request's pseudo-header fields: `m` `:method`, `a`
//!    `:authority`, `s` `:scheme`, `p` `:path`, `r` `:protocol`, joined by `,`.
//!
//! For example Chromium's: `1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p`.
//!
//! Only as much HPACK is decoded as the pseudo-header names need (the static table, and
//! names the same block added to the dynamic table); a pseudo-header name sent as a
//! Huffman-coded literal (not seen from real clients) reads as `x` and ends the list.
//! Each list keeps at most [`MAX_ITEMS`] entries.
//! Like [`super::client_hello`], the parser tells *incomplete* (more bytes needed) from
//! *invalid* (never a fingerprint), and looks at no more than [`MAX_PREFIX`] bytes.

use std::fmt::Write;

use super::HelloError as Error;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes read at most, from the start of the connection, to find the first request.
pub const MAX_PREFIX: usize = 64 * 1024;

/// Entries kept per list (settings, priority frames, pseudo-header fields).
pub const MAX_ITEMS: usize = 32;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const SETTINGS: u8 = 4;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;
const ACK: u8 = 0x1;

/// The fingerprint of an HTTP/2 connection from its first bytes (preface included).
pub fn h2_fingerprint(bytes: &[u8]) -> Result<String, Error> {
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] != PREFACE[..n] {
        return Err(Error::Invalid("not the HTTP/2 client preface"));
    }
    if n < PREFACE.len() {
        return Err(Error::Incomplete(PREFACE.len()));
    }
    let mut at = PREFACE.len();
    let mut settings: Vec<(u16, u32)> = Vec::new();
    let mut window: Option<u32> = None;
    let mut priorities: Vec<(u32, bool, u32, u16)> = Vec::new();
    // The first request's header block, while it spans CONTINUATION frames.
    let mut block: Option<(u32, Vec<u8>)> = None;
    loop {
        let Some(h) = bytes.get(at..at + 9) else {
            return Err(incomplete(at + 9));
        };
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (ty, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let end = at + 9 + len;
        if end > MAX_PREFIX {
            return Err(Error::Invalid(
                "no complete request within the first 64 KiB",
            ));
        }
        let Some(payload) = bytes.get(at + 9..end) else {
            return Err(Error::Incomplete(end));
        };
        at = end;
        if let Some((id, mut fragment)) = block.take() {
            // Only CONTINUATION frames of the same stream may follow a header block.
            if ty != CONTINUATION || stream != id {
                return Err(Error::Invalid("header block not continued"));
            }
            fragment.extend_from_slice(payload);
            if flags & END_HEADERS != 0 {
                return Ok(render(&settings, window, &priorities, &fragment));
            }
            block = Some((id, fragment));
            continue;
        }
        match ty {
            SETTINGS => {
                if stream != 0 || len % 6 != 0 {
                    return Err(Error::Invalid("malformed SETTINGS frame"));
                }
                if flags & ACK == 0 {
                    for s in payload.chunks_exact(6) {
                        if settings.len() < MAX_ITEMS {
                            let id = u16::from_be_bytes([s[0], s[1]]);
                            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                            settings.push((id, v));
                        }
                    }
                }
            }
            WINDOW_UPDATE => {
                let [a, b, c, d] = payload else {
                    return Err(Error::Invalid("malformed WINDOW_UPDATE frame"));
                };
                if stream == 0 && window.is_none() {
                    window = Some(u32::from_be_bytes([*a, *b, *c, *d]) & 0x7fff_ffff);
                }
            }
            PRIORITY => {
                let [a, b, c, d, w] = payload else {
                    return Err(Error::Invalid("malformed PRIORITY frame"));
                };
                if priorities.len() < MAX_ITEMS {
                    let dep = u32::from_be_bytes([*a, *b, *c, *d]);
                    let exclusive = dep & 0x8000_0000 != 0;
                    priorities.push((stream, exclusive, dep & 0x7fff_ffff, u16::from(*w) + 1));
                }
            }
            HEADERS => {
                if stream == 0 {
                    return Err(Error::Invalid("HEADERS on stream 0"));
                }
                let mut p = payload;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    let Some((&n, rest)) = p.split_first() else {
                        return Err(Error::Invalid("malformed padded HEADERS frame"));
                    };
                    pad = usize::from(n);
                    p = rest;
                }
                if flags & PRIORITY_FLAG != 0 {
                    p = p
                        .get(5..)
                        .ok_or(Error::Invalid("malformed HEADERS priority"))?;
                }
                if pad > p.len() {
                    return Err(Error::Invalid("HEADERS padding longer than its frame"));
                }
                let fragment = &p[..p.len() - pad];
                if flags & END_HEADERS != 0 {
                    return Ok(render(&settings, window, &priorities, fragment));
                }
                block = Some((stream, fragment.to_vec()));
            }
            CONTINUATION => return Err(Error::Invalid("CONTINUATION without HEADERS")),
            DATA => return Err(Error::Invalid("DATA before any request")),
            // PING, GOAWAY, RST_STREAM, extension frames: not part of the fingerprint.
            _ => {}
        }
    }
}

/// An incomplete prefix, unless the bytes needed exceed what is read at most.
fn incomplete(need: usize) -> Error {
    if need > MAX_PREFIX {
        Error::Invalid("no complete request within the first 64 KiB")
    } else {
        Error::Incomplete(need)
    }
}

fn render(
    settings: &[(u16, u32)],
    window: Option<u32>,
    priorities: &[(u32, bool, u32, u16)],
    block: &[u8],
) -> String {
    let mut s = String::with_capacity(64);
    if settings.is_empty() {
        s.push('0');
    }
    for (i, (id, v)) in settings.iter().enumerate() {
        let sep = if i > 0 { ";" } else { "" };
        let _ = write!(s, "{sep}{id}:{v}");
    }
    let _ = write!(s, "|{}|", window.unwrap_or(0));
    if priorities.is_empty() {
        s.push('0');
    }
    for (i, (stream, excl, dep, weight)) in priorities.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(s, "{sep}{stream}:{}:{dep}:{weight}", u8::from(*excl));
    }
    s.push('|');
    for (i, c) in pseudo_order(block).iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push(*c);
    }
    s
}

/// What a header field's name is, as far as the fingerprint cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    Pseudo(char),
    /// A regular field: the pseudo-header section is over.
    Regular,
    /// A name the decoder cannot read (Huffman-coded, or a bad reference).
    Unknown,
}

fn pseudo_name(name: &[u8]) -> Name {
    match name {
        b":method" => Name::Pseudo('m'),
        b":authority" => Name::Pseudo('a'),
        b":scheme" => Name::Pseudo('s'),
        b":path" => Name::Pseudo('p'),
        b":protocol" => Name::Pseudo('r'),
        [b':', ..] => Name::Unknown,
        _ => Name::Regular,
    }
}

/// The HPACK static table's names (RFC 7541 appendix A), as the fingerprint sees them:
/// 1 `:authority`, 2–3 `:method`, 4–5 `:path`, 6–7 `:scheme`, 8–14 `:status` (never in a
/// request), 15–61 regular fields.
fn static_name(index: u64) -> Name {
    match index {
        1 => Name::Pseudo('a'),
        2 | 3 => Name::Pseudo('m'),
        4 | 5 => Name::Pseudo('p'),
        6 | 7 => Name::Pseudo('s'),
        8..=14 => Name::Unknown,
        15..=61 => Name::Regular,
        _ => Name::Unknown,
    }
}

/// The pseudo-header fields at the start of a header block, in order.
fn pseudo_order(block: &[u8]) -> Vec<char> {
    let mut out = Vec::new();
    // Names this block added to the dynamic table, newest first (index 62 onwards).
    let mut dynamic: Vec<Name> = Vec::new();
    let mut r = Hpack { b: block };
    while out.len() < MAX_ITEMS {
        let Some(&first) = r.b.first() else { break };
        let name = if first & 0x80 != 0 {
            // indexed field
            let Some(i) = r.int(7) else { break };
            lookup(i, &dynamic)
        } else if first & 0xe0 == 0x20 {
            // dynamic table size update
            if r.int(5).is_none() {
                break;
            }
            continue;
        } else {
            // a literal: with incremental indexing (6-bit prefix), or without / never
            // indexed (4-bit prefix)
            let indexing = first & 0xc0 == 0x40;
            let Some(i) = r.int(if indexing { 6 } else { 4 }) else {
                break;
            };
            let name = if i == 0 {
                match r.string() {
                    Some((false, s)) => pseudo_name(s),
                    // Huffman-coded: in RFC 7541's code ':' is the 7 bits 1011100, so a
                    // name starting otherwise is a regular field.
                    Some((true, h)) if h.first().is_some_and(|b| b >> 1 == 0x5c) => Name::Unknown,
                    Some((true, _)) => Name::Regular,
                    None => break,
                }
            } else {
                lookup(i, &dynamic)
            };
            if r.string().is_none() {
                break;
            }
            if indexing {
                dynamic.insert(0, name);
            }
            name
        };
        match name {
            Name::Pseudo(c) => out.push(c),
            Name::Regular => break,
            Name::Unknown => {
                out.push('x');
                break;
            }
        }
    }
    out
}

fn lookup(index: u64, dynamic: &[Name]) -> Name {
    if index <= 61 {
        return static_name(index);
    }
    usize::try_from(index - 62)
        .ok()
        .and_then(|i| dynamic.get(i).copied())
        .unwrap_or(Name::Unknown)
}

/// A reader of HPACK primitives (RFC 7541 §5).
struct Hpack<'a> {
    b: &'a [u8],
}

impl<'a> Hpack<'a> {
    /// An integer with an `n`-bit prefix in the first byte.
    fn int(&mut self, n: u32) -> Option<u64> {
        let (&first, mut rest) = self.b.split_first()?;
        let max = (1u64 << n) - 1;
        let mut v = u64::from(first) & max;
        if v == max {
            let mut shift = 0;
            loop {
                let (&b, more) = rest.split_first()?;
                rest = more;
                v += u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
                if shift > 28 {
                    return None;
                }
            }
        }
        self.b = rest;
        Some(v)
    }

    /// A string literal: (Huffman-coded, bytes).
    fn string(&mut self) -> Option<(bool, &'a [u8])> {
        let huffman = self.b.first()? & 0x80 != 0;
        let len = usize::try_from(self.int(7)?).ok()?;
        if self.b.len() < len {
            return None;
        }
        let (s, rest) = self.b.split_at(len);
        self.b = rest;
        Some((huffman, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([ty, flags]);
        f.extend(stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn settings(list: &[(u16, u32)]) -> Vec<u8> {
        let p: Vec<u8> = list
            .iter()
            .flat_map(|(i, v)| i.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect();
        frame(SETTINGS, 0, 0, &p)
    }

    /// Chromium's first flight: SETTINGS, WINDOW_UPDATE, then HEADERS with a priority
    /// and the pseudo-header fields indexed (`:method GET`, `:authority` literal with
    /// indexing, `:scheme https`, `:path /`), then a regular field.
    fn chromium() -> Vec<u8> {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[
            (1, 65536),
            (2, 0),
            (4, 6_291_456),
            (6, 262_144),
        ]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &15_663_105u32.to_be_bytes()));
        let mut block = vec![0x82, 0x41, 11];
        block.extend(b"example.com");
        block.extend([0x87, 0x84]);
        block.extend([0x40 | 58, 3]); // user-agent (static 58), literal value
        block.extend(b"bot");
        let mut p = vec![0x80, 0, 0, 0, 255]; // exclusive, on stream 0, weight 256
        p.extend(block);
        c.extend(frame(HEADERS, END_HEADERS | PRIORITY_FLAG | ACK, 1, &p));
        c
    }

    #[test]
    fn chromium_first_flight() {
        assert_eq!(
            h2_fingerprint(&chromium()).as_deref(),
            Ok("1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p")
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_asks_for_more() {
        let c = chromium();
        for n in 0..c.len() {
            match h2_fingerprint(&c[..n]) {
                Err(Error::Incomplete(need)) => assert!(need > n && need <= c.len(), "{n}"),
                other => panic!("{n}: {other:?}"),
            }
        }
        // Bytes after the first request change nothing.
        let mut more = c.clone();
        more.extend(frame(DATA, 0, 1, b"body"));
        assert_eq!(h2_fingerprint(&more), h2_fingerprint(&c));
    }

    #[test]
    fn priority_frames_continuation_padding_and_literal_names() {
        let mut c = PREFACE.to_vec();
        c.extend(settings(&[(1, 65536), (4, 131_072), (5, 16384)]));
        c.extend(frame(SETTINGS, ACK, 0, &[]));
        c.extend(frame(WINDOW_UPDATE, 0, 0, &12_517_377u32.to_be_bytes()));
        c.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 200]));
        c.extend(frame(PRIORITY, 0, 5, &[0x80, 0, 0, 3, 100]));
        c.extend(frame(0x6, 0, 0, &[0; 8])); // PING: ignored
        // :method (literal name, not indexed), :path indexed, then split into a
        // CONTINUATION: :authority literal without indexing, :scheme
        let mut first = vec![0x00, 7];
        first.extend(b":method");
        first.extend([4]);
        first.extend(b"POST");
        first.push(0x84);
        let mut second = vec![0x01, 3];
        second.extend(b"a.b");
        second.extend([0x87, 0x90]); // :scheme https, then accept-encoding (regular)
        let mut padded = vec![3];
        padded.extend(first);
        padded.extend([0, 0, 0]);
        c.extend(frame(HEADERS, PADDED, 5, &padded));
        c.extend(frame(CONTINUATION, END_HEADERS, 5, &second));
        assert_eq!(
            h2_fingerprint(&c).as_deref(),
            Ok("1:65536;4:131072;5:16384|12517377|3:0:0:201,5:1:3:101|m,p,a,s")
        );
    }

    #[test]
    fn names_the_decoder_cannot_read() {
        let head = |block: &[u8]| {
            let mut c = PREFACE.to_vec();
            c.extend(frame(HEADERS, END_HEADERS, 1, block));
            h2_fingerprint(&c)
        };
        // no settings, no window, no priority; a Huffman-coded literal name that
        // starts with ':' (0b1011100), and one that does not (a regular field)
        assert_eq!(
            head(&[0x82, 0x00, 0x83, 0x21, 2, 3, 0, 0x84]).as_deref(),
            Ok("0|0|0|m")
        );
        assert_eq!(
            head(&[0x82, 0x00, 0x83, 0xb9, 2, 3, 0]).as_deref(),
            Ok("0|0|0|m,x")
        );
        // a dynamic-table reference to what this block added
        assert_eq!(
            head(&[0x41, 1, b'h', 0xbe]).as_deref(),
            Ok("0|0|0|a,a"),
            "index 62 is the :authority just added"
        );
        assert_eq!(
            head(&[0xbf]).as_deref(),
            Ok("0|0|0|x"),
            "index 63: nothing there"
        );
        assert_eq!(
            head(&[0x88]).as_deref(),
            Ok("0|0|0|x"),
            ":status in a request"
        );
        // a size update is skipped; a truncated integer ends the list
        assert_eq!(head(&[0x20, 0x82, 0xff]).as_deref(), Ok("0|0|0|m"));
        assert_eq!(head(&[]).as_deref(), Ok("0|0|0|"));
    }

    #[test]
    fn invalid_connections() {
        let with = |frames: &[Vec<u8>]| {
            let mut c = PREFACE.to_vec();
            for f in frames {
                c.extend(f);
            }
            h2_fingerprint(&c)
        };
        let bad = |r: Result<String, Error>| matches!(r, Err(Error::Invalid(_)));
        assert!(bad(h2_fingerprint(b"GET / HTTP/1.1\r\n")));
        assert!(bad(h2_fingerprint(b"PRI * HTTP/1.1")));
        assert!(bad(with(&[frame(SETTINGS, 0, 0, &[0; 5])])));
        assert!(bad(with(&[frame(SETTINGS, 0, 1, &[])])));
        assert!(bad(with(&[frame(WINDOW_UPDATE, 0, 0, &[0; 3])])));
        assert!(bad(with(&[frame(PRIORITY, 0, 1, &[0; 4])])));
        assert!(bad(with(&[frame(HEADERS, END_HEADERS, 0, &[0x82])])));
        assert!(bad(with(&[frame(
            HEADERS,
            END_HEADERS | PADDED,
            1,
            &[5, 0x82]
        )])));
        assert!(bad(with(&[frame(
            HEADERS,
            END_HEADERS | PRIORITY_FLAG,
            1,
            &[0; 4]
        )])));
        assert!(bad(with(&[frame(CONTINUATION, END_HEADERS, 1, &[0x82])])));
        assert!(bad(with(&[frame(DATA, 0, 1, b"x")])));
        assert!(bad(with(&[
            frame(HEADERS, 0, 1, &[0x82]),
            frame(HEADERS, END_HEADERS, 1, &[0x82])
        ])));
        assert!(bad(with(&[
            frame(HEADERS, 0, 1, &[0x82]),
            frame(CONTINUATION, END_HEADERS, 3, &[0x82])
        ])));
        // A frame, or a run of frames, going past 64 KiB without a request.
        let mut big = vec![0u8; 0xffff];
        big.truncate(0xfffe);
        assert!(bad(with(&[frame(0x20, 0, 0, &big)])));
        let pings: Vec<Vec<u8>> = (0..4000).map(|_| frame(0x6, 0, 0, &[0; 8])).collect();
        assert!(bad(with(&pings)));
        let c = {
            let mut c = PREFACE.to_vec();
            c.extend(frame(0x6, 0, 0, &[0; 8]).repeat(3800));
            c
        };
        assert_eq!(h2_fingerprint(&c), Err(Error::Incomplete(c.len() + 9)));
    }

    #[test]
    fn lists_are_bounded() {
        let many: Vec<(u16, u32)> = (0..500).map(|i| (i, u32::from(i))).collect();
        let mut c = PREFACE.to_vec();
        c.extend(settings(&many));
        c.extend(frame(HEADERS, END_HEADERS, 1, &[0x82; 100]));
        let fp = h2_fingerprint(&c).unwrap_or_default();
        let parts: Vec<&str> = fp.split('|').collect();
        assert_eq!(parts[0].split(';').count(), MAX_ITEMS);
        assert_eq!(parts[3].split(',').count(), MAX_ITEMS);
    }
}
