//! TLS client fingerprints: the ClientHello parsed from the first bytes of a connection,
//! and its JA4 fingerprint (FoxIO's JA4 for TLS clients, BSD-3-Clause; the other JA4+
//! variants are under another licence and are not implemented here).
//!
//! [`client_hello`] reads TLS records from the start of a connection — a ClientHello may
//! span several handshake records — and tells *incomplete* (read more bytes: how many at
//! least) from *invalid* (never a ClientHello). [`ja4`] computes
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, highest offered version, SNI or
//! not, counts of ciphers and extensions, the first ALPN value's first and last
//! characters; then truncated SHA-256 hashes of the sorted cipher list, and of the sorted
//! extension list (less SNI and ALPN) with the signature algorithms in their order.
//! GREASE values (RFC 8701) are ignored everywhere.

use std::fmt::Write;

pub mod h2;

pub use h2::h2_fingerprint;

/// What carries the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP (`t`).
    Tcp,
    /// QUIC (`q`).
    Quic,
    /// DTLS (`d`).
    Dtls,
}

/// Why bytes are not (yet) a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// More bytes are needed: at least this many in all.
    #[error("incomplete ClientHello: at least {0} bytes needed")]
    Incomplete(usize),
    /// The bytes can never be a ClientHello.
    #[error("not a TLS ClientHello: {0}")]
    Invalid(&'static str),
}

/// The parts of a ClientHello that fingerprints read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` of the hello.
    pub legacy_version: u16,
    /// Cipher suites, in order (GREASE included).
    pub ciphers: Vec<u16>,
    /// Extension types, in order (GREASE included).
    pub extensions: Vec<u16>,
    /// The server name asked for (SNI), if any.
    pub sni: Option<Vec<u8>>,
    /// ALPN protocol names, in order.
    pub alpn: Vec<Vec<u8>>,
    /// `supported_versions`, in order.
    pub versions: Vec<u16>,
    /// `signature_algorithms`, in order.
    pub signature_algorithms: Vec<u16>,
}

/// Largest ClientHello accepted (post-quantum key shares make them a few KiB).
const MAX_HELLO: usize = 64 * 1024;

/// A GREASE value (0x0a0a, 0x1a1a, … 0xfafa).
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Reads a ClientHello from the first bytes of a TLS connection.
pub fn client_hello(bytes: &[u8]) -> Result<ClientHello, HelloError> {
    // Gather the handshake bytes from consecutive handshake records.
    let mut hs: Vec<u8> = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = bytes.get(at..at + 5) else {
            return Err(HelloError::Incomplete(at + 5));
        };
        if header[0] != 22 {
            return Err(HelloError::Invalid("not a handshake record"));
        }
        if header[1] != 3 {
            return Err(HelloError::Invalid("not a TLS record version"));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16_384 + 256 {
            return Err(HelloError::Invalid("record length out of range"));
        }
        let Some(body) = bytes.get(at + 5..at + 5 + len) else {
            return Err(HelloError::Incomplete(at + 5 + len));
        };
        hs.extend_from_slice(body);
        at += 5 + len;
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return Err(HelloError::Invalid(
                    "the first handshake message is not a ClientHello",
                ));
            }
            let need =
                4 + (usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3]));
            if need > MAX_HELLO {
                return Err(HelloError::Invalid("ClientHello too long"));
            }
            if hs.len() >= need {
                return parse_body(&hs[4..need]);
            }
            // More records follow; at least the rest of this message and a header.
            if bytes.len() <= at {
                return Err(HelloError::Incomplete(at + 5 + (need - hs.len())));
            }
        }
    }
}

/// A reader over a complete message: running out is invalid, not incomplete.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.b.len() < n {
            return Err(HelloError::Invalid("a length runs past its message"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    fn u16s(b: &[u8]) -> Result<Vec<u16>, HelloError> {
        if b.len() % 2 != 0 {
            return Err(HelloError::Invalid(
                "a list of 16-bit values has an odd length",
            ));
        }
        Ok(b.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect())
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut c = Cursor { b: body };
    let mut ch = ClientHello {
        legacy_version: c.u16()?,
        ..ClientHello::default()
    };
    c.take(32)?; // random
    if c.vec8()?.len() > 32 {
        return Err(HelloError::Invalid("session id longer than 32 bytes"));
    }
    ch.ciphers = Cursor::u16s(c.vec16()?)?;
    if c.vec8()?.is_empty() {
        return Err(HelloError::Invalid("no compression method"));
    }
    if c.b.is_empty() {
        return Ok(ch); // no extensions (TLS 1.2 and older may omit them)
    }
    let mut exts = Cursor { b: c.vec16()? };
    if !c.b.is_empty() {
        return Err(HelloError::Invalid("bytes after the extensions"));
    }
    while !exts.b.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        ch.extensions.push(ty);
        let mut d = Cursor { b: data };
        match ty {
            0x0000 => {
                let mut list = Cursor { b: d.vec16()? };
                while !list.b.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && ch.sni.is_none() {
                        ch.sni = Some(name.to_vec());
                    }
                }
            }
            0x0010 => {
                let mut list = Cursor { b: d.vec16()? };
                while !list.b.is_empty() {
                    ch.alpn.push(list.vec8()?.to_vec());
                }
            }
            0x002b => ch.versions = Cursor::u16s(d.vec8()?)?,
            0x000d => ch.signature_algorithms = Cursor::u16s(d.vec16()?)?,
            _ => {}
        }
    }
    Ok(ch)
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The first and last characters of the first ALPN value (`h2`, `h1` for `http/1.1`),
/// from its hex form when either is not ASCII alphanumeric, `00` without one.
fn alpn_code(alpn: &[Vec<u8>]) -> String {
    let Some(first) = alpn.first().filter(|a| !a.is_empty()) else {
        return "00".into();
    };
    let (a, z) = (first[0], first[first.len() - 1]);
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        return format!("{}{}", a as char, z as char);
    }
    let hex = format!("{a:02x}{z:02x}");
    let b = hex.as_bytes();
    format!("{}{}", b[0] as char, b[3] as char)
}

/// The first 12 hex digits of SHA-256 of `text`, or `000000000000` for an empty list.
fn hash12(text: &str) -> String {
    if text.is_empty() {
        return "000000000000".into();
    }
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref()[..6]
        .iter()
        .fold(String::with_capacity(12), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn hex_list(values: impl Iterator<Item = u16>) -> String {
    let mut s = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

/// The JA4 fingerprint of a ClientHello.
pub fn ja4(ch: &ClientHello, transport: Transport) -> String {
    let t = match transport {
        Transport::Tcp => 't',
        Transport::Quic => 'q',
        Transport::Dtls => 'd',
    };
    let offered = ch.versions.iter().copied().filter(|v| !is_grease(*v)).max();
    let version = version_code(offered.unwrap_or(ch.legacy_version));
    let sni = if ch.extensions.contains(&0x0000) {
        'd'
    } else {
        'i'
    };
    let mut ciphers: Vec<u16> = ch
        .ciphers
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .collect();
    let exts: Vec<u16> = ch
        .extensions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .collect();
    let a = format!(
        "{t}{version}{sni}{:02}{:02}{}",
        ciphers.len().min(99),
        exts.len().min(99),
        alpn_code(&ch.alpn)
    );
    ciphers.sort_unstable();
    let b = hash12(&hex_list(ciphers.into_iter()));
    let mut sorted: Vec<u16> = exts
        .into_iter()
        .filter(|&e| e != 0x0000 && e != 0x0010)
        .collect();
    sorted.sort_unstable();
    let c = if sorted.is_empty() {
        "000000000000".into()
    } else {
        let mut text = hex_list(sorted.into_iter());
        let algs: Vec<u16> = ch
            .signature_algorithms
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .collect();
        if !algs.is_empty() {
            text.push('_');
            text.push_str(&hex_list(algs.into_iter()));
        }
        hash12(&text)
    };
    format!("{a}_{b}_{c}")
}

#[cfg(test)]
mod tests;
