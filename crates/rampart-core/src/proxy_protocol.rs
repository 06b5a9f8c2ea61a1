//! The PROXY protocol (HAProxy, versions 1 and 2): the header an L4 load balancer puts
//! in front of a TCP stream to say who the real client is.
//!
//! [`parse`] looks at the bytes received so far and answers one of three things: the
//! header is complete (with how many bytes it used), more bytes are needed
//! ([`Error::Incomplete`]), or the bytes can never be a valid header
//! ([`Error::Invalid`]). The edge accepts a header only from the configured trusted
//! balancers and bounds how long and how much it reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (spec: 107 bytes).
pub const V1_MAX_LEN: usize = 107;
/// The longest v2 header this parser accepts (16-byte fixed part + addresses + TLVs).
pub const V2_MAX_LEN: usize = 16 + 1024;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header occupied; the stream's payload starts after them.
    pub len: usize,
    /// The original client and the address it connected to; `None` for
    /// `UNKNOWN`/`LOCAL` (health checks of the balancer itself, or unsupported families):
    /// then the TCP peer is the client.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Why bytes are not (yet) a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A valid prefix: read more bytes.
    #[error("incomplete PROXY protocol header")]
    Incomplete,
    /// Not a valid header, whatever follows.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(&'static str),
}

/// Parses a v1 or v2 header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Header, Error> {
    if buf.is_empty() {
        return Err(Error::Incomplete);
    }
    if buf[0] == b'\r' {
        parse_v2(buf)
    } else if buf[0] == b'P' {
        parse_v1(buf)
    } else {
        Err(Error::Invalid("neither a v1 nor a v2 signature"))
    }
}

fn parse_v1(buf: &[u8]) -> Result<Header, Error> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(Error::Invalid("v1 header does not start with \"PROXY \""));
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    // A line feed before the first carriage return can never become a valid line.
    if let Some(lf) = window.iter().position(|&b| b == b'\n') {
        if !window[..lf].contains(&b'\r') {
            return Err(Error::Invalid("v1 line ends without CR"));
        }
    }
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.contains(&b'\n') {
            return Err(Error::Invalid("v1 line ends without CR"));
        }
        return if buf.len() >= V1_MAX_LEN {
            Err(Error::Invalid("v1 header longer than 107 bytes"))
        } else {
            Err(Error::Incomplete)
        };
    };
    match window.get(cr + 1) {
        None => return Err(Error::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(Error::Invalid("v1 CR not followed by LF")),
    }
    let line = std::str::from_utf8(&buf[PREFIX.len()..cr])
        .map_err(|_| Error::Invalid("v1 header is not ASCII"))?;
    let len = cr + 2;
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    if proto == "UNKNOWN" {
        return Ok(Header {
            len,
            addresses: None,
        });
    }
    let rest: Vec<&str> = parts.collect();
    if rest.len() != 4 {
        return Err(Error::Invalid(
            "v1 header needs protocol, two addresses and two ports",
        ));
    }
    let (src, dst) = match proto {
        "TCP4" => (
            IpAddr::V4(
                rest[0]
                    .parse::<Ipv4Addr>()
                    .map_err(|_| Error::Invalid("v1 bad IPv4 source"))?,
            ),
            IpAddr::V4(
                rest[1]
                    .parse::<Ipv4Addr>()
                    .map_err(|_| Error::Invalid("v1 bad IPv4 destination"))?,
            ),
        ),
        "TCP6" => (
            IpAddr::V6(
                rest[0]
                    .parse::<Ipv6Addr>()
                    .map_err(|_| Error::Invalid("v1 bad IPv6 source"))?,
            ),
            IpAddr::V6(
                rest[1]
                    .parse::<Ipv6Addr>()
                    .map_err(|_| Error::Invalid("v1 bad IPv6 destination"))?,
            ),
        ),
        _ => return Err(Error::Invalid("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let port = |s: &str| -> Result<u16, Error> {
        if s.is_empty()
            || s.len() > 5
            || !s.bytes().all(|b| b.is_ascii_digit())
            || (s.len() > 1 && s.starts_with('0'))
        {
            return Err(Error::Invalid("v1 bad port"));
        }
        s.parse().map_err(|_| Error::Invalid("v1 bad port"))
    };
    let (sp, dp) = (port(rest[2])?, port(rest[3])?);
    Ok(Header {
        len,
        addresses: Some((SocketAddr::new(src, sp), SocketAddr::new(dst, dp))),
    })
}

fn parse_v2(buf: &[u8]) -> Result<Header, Error> {
    let n = buf.len().min(12);
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(Error::Invalid("v2 signature mismatch"));
    }
    if buf.len() < 16 {
        return Err(Error::Incomplete);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(Error::Invalid("v2 version is not 2"));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(Error::Invalid("v2 command is neither LOCAL nor PROXY"));
    }
    let fam = buf[13];
    let addr_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + addr_len;
    if len > V2_MAX_LEN {
        return Err(Error::Invalid("v2 header longer than 1040 bytes"));
    }
    if buf.len() < len {
        return Err(Error::Incomplete);
    }
    let body = &buf[16..len];
    if command == 0 {
        // LOCAL: the balancer talking for itself; addresses are ignored.
        return Ok(Header {
            len,
            addresses: None,
        });
    }
    let addresses = match fam {
        0x11 | 0x12 => {
            if body.len() < 12 {
                return Err(Error::Invalid("v2 IPv4 address block too short"));
            }
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let sp = u16::from_be_bytes([body[8], body[9]]);
            let dp = u16::from_be_bytes([body[10], body[11]]);
            Some((
                SocketAddr::new(src.into(), sp),
                SocketAddr::new(dst.into(), dp),
            ))
        }
        0x21 | 0x22 => {
            if body.len() < 36 {
                return Err(Error::Invalid("v2 IPv6 address block too short"));
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            let sp = u16::from_be_bytes([body[32], body[33]]);
            let dp = u16::from_be_bytes([body[34], body[35]]);
            Some((
                SocketAddr::new(Ipv6Addr::from(s).into(), sp),
                SocketAddr::new(Ipv6Addr::from(d).into(), dp),
            ))
        }
        // AF_UNSPEC, AF_UNIX: no usable address; the peer stands in.
        0x00 | 0x31 | 0x32 => None,
        _ => return Err(Error::Invalid("v2 unknown address family or transport")),
    };
    Ok(Header { len, addresses })
}

#[cfg(test)]
mod tests;
