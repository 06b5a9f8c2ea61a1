//! The challenge's cryptography: puzzles the edge hands out, and the clearance tokens it
//! mints once a puzzle is solved. Pure: times and random bytes are arguments.
//!
//! Both are signed blobs, URL-safe base64 without padding (so they travel in a cookie or
//! a query string as they are): a payload, the signing key's id, and the first 16 bytes
//! of HMAC-SHA-256 over both. The payload binds the blob to
//!
//! - the site (a hash of its id): a token from one site is refused on another;
//! - the client's address prefix (`/24` for IPv4, `/48` for IPv6 by default): a token
//!   lifted from one network does not work from another, while a user whose address
//!   changes within the prefix keeps it;
//! - the TLS fingerprint (a hash of the JA4; zero on plain connections): a token copied
//!   from a browser into a bot tool is refused;
//! - an expiry.
//!
//! A [`Keyring`] holds the keys: the first signs, all verify, so keys rotate by adding a
//! new one at the front, and dropping the old one once its tokens have expired.
//!
//! A puzzle ([`Puzzle`]) is solved by a nonce such that SHA-256 of `puzzle ":" nonce`
//! starts with `difficulty` zero bits ([`solves`]): about `2^difficulty` hashes on
//! average. A *wait* puzzle (the path for browsers without JavaScript) is solved by time
//! instead: it opens `wait` seconds after it was issued.

use std::net::IpAddr;

use ring::hmac;

use crate::ratelimit::stable_hash;

/// Bytes of MAC kept.
const MAC_LEN: usize = 16;
/// Format version of both blobs.
const VERSION: u8 = 1;
const KIND_CLEARANCE: u8 = b'C';
const KIND_PUZZLE: u8 = b'P';
/// Longest target a puzzle carries (a longer one returns to `/`).
pub const MAX_TARGET: usize = 2048;
/// Smallest secret accepted.
pub const MIN_SECRET: usize = 32;

/// Why a blob is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not base64, too short, unknown version or kind, bad lengths.
    #[error("malformed")]
    Malformed,
    /// Signed by a key the ring does not hold (retired, or never ours).
    #[error("signed by an unknown key")]
    UnknownKey,
    /// The MAC does not match: altered or forged.
    #[error("bad signature")]
    Forged,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Minted for another site.
    #[error("minted for another site")]
    OtherSite,
    /// Minted for another address prefix.
    #[error("minted for another address prefix")]
    OtherPrefix,
    /// Minted for another TLS fingerprint.
    #[error("minted for another TLS fingerprint")]
    OtherFingerprint,
    /// A wait puzzle before its time.
    #[error("answered too early")]
    TooEarly,
}

impl Rejected {
    /// A short label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::UnknownKey => "unknown_key",
            Rejected::Forged => "forged",
            Rejected::Expired => "expired",
            Rejected::OtherSite => "other_site",
            Rejected::OtherPrefix => "other_prefix",
            Rejected::OtherFingerprint => "other_fingerprint",
            Rejected::TooEarly => "too_early",
        }
    }
}

/// One signing key.
struct Key {
    id: u32,
    name: String,
    key: hmac::Key,
}

/// The keys that sign and verify (the first signs).
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("Keyring").field("keys", &names).finish()
    }
}

/// An error in a key file, at `line` (1-based) and `col`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {msg}")]
pub struct KeyFileError {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
    /// What is wrong.
    pub msg: String,
}

fn key_id(name: &str) -> u32 {
    // Folded to 32 bits: stable across processes and versions.
    let h = stable_hash(name.as_bytes());
    (h ^ (h >> 32)) as u32
}

impl Keyring {
    /// A ring of `(name, secret)` pairs, the first signing.
    pub fn new(keys: &[(&str, &[u8])]) -> Result<Keyring, String> {
        let mut out: Vec<Key> = Vec::new();
        for (name, secret) in keys {
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "key `{name}` has {} bytes; at least {MIN_SECRET} are needed",
                    secret.len()
                ));
            }
            let id = key_id(name);
            if let Some(k) = out.iter().find(|k| k.id == id) {
                return Err(if k.name == *name {
                    format!("key `{name}` is listed twice")
                } else {
                    format!(
                        "keys `{}` and `{name}` have the same id; rename one",
                        k.name
                    )
                });
            }
            out.push(Key {
                id,
                name: (*name).to_owned(),
                key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            });
        }
        if out.is_empty() {
            return Err("no key".into());
        }
        Ok(Keyring { keys: out })
    }

    /// Parses a key file: one key per line, `name secret`, the secret in base64
    /// (standard or URL-safe, padding optional) of at least 32 bytes; `#` starts a
    /// comment. The first key signs.
    pub fn parse(text: &str) -> Result<Keyring, KeyFileError> {
        let mut pairs: Vec<(String, Vec<u8>, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            // (Every word is a slice of `raw`: its offset is its column.)
            let at = |s: &str| s.as_ptr() as usize - raw.as_ptr() as usize + 1;
            let err = |col: usize, msg: String| KeyFileError {
                line: i + 1,
                col,
                msg,
            };
            let mut words = trimmed.split_whitespace();
            let (Some(name), Some(secret), None) = (words.next(), words.next(), words.next())
            else {
                return Err(err(at(trimmed), "expected `name secret`".into()));
            };
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(err(
                    at(name),
                    format!("key name `{name}`: use letters, digits, `-`, `_`, `.`"),
                ));
            }
            let Some(bytes) = b64_decode(secret.trim_end_matches('=')) else {
                return Err(err(at(secret), "the secret is not base64".into()));
            };
            if bytes.len() < MIN_SECRET {
                return Err(err(
                    at(secret),
                    format!(
                        "the secret has {} bytes; at least {MIN_SECRET} are needed (`openssl rand -base64 32`)",
                        bytes.len()
                    ),
                ));
            }
            pairs.push((name.to_owned(), bytes, i + 1));
        }
        let refs: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(n, s, _)| (n.as_str(), s.as_slice()))
            .collect();
        Keyring::new(&refs).map_err(|msg| KeyFileError {
            line: pairs.last().map_or(1, |p| p.2),
            col: 1,
            msg,
        })
    }

    /// The name of the signing key.
    pub fn signing(&self) -> &str {
        self.keys.first().map_or("", |k| k.name.as_str())
    }

    fn seal(&self, mut payload: Vec<u8>) -> String {
        let Some(k) = self.keys.first() else {
            return String::new();
        };
        payload.extend_from_slice(&k.id.to_be_bytes());
        let tag = hmac::sign(&k.key, &payload);
        payload.extend_from_slice(&tag.as_ref()[..MAC_LEN]);
        b64_encode(&payload)
    }

    /// The payload of a blob of `kind` whose signature verifies.
    fn open(&self, text: &str, kind: u8) -> Result<Vec<u8>, Rejected> {
        let raw = b64_decode(text).ok_or(Rejected::Malformed)?;
        if raw.len() < 2 + 4 + MAC_LEN || raw[0] != VERSION || raw[1] != kind {
            return Err(Rejected::Malformed);
        }
        let (signed, mac) = raw.split_at(raw.len() - MAC_LEN);
        let id_at = signed.len() - 4;
        let id = u32::from_be_bytes([
            signed[id_at],
            signed[id_at + 1],
            signed[id_at + 2],
            signed[id_at + 3],
        ]);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(Rejected::UnknownKey)?;
        let tag = hmac::sign(&key.key, signed);
        // Constant time: the comparison must not tell how many bytes matched.
        if !constant_eq(&tag.as_ref()[..MAC_LEN], mac) {
            return Err(Rejected::Forged);
        }
        Ok(signed[2..id_at].to_vec())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a blob is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    site: u64,
    /// The address masked to its prefix, as IPv6 (IPv4 mapped), and the prefix length.
    prefix: [u8; 17],
    fingerprint: u64,
}

impl Binding {
    /// The binding of a request to `site` from `ip` (masked to `v4_len` / `v6_len`
    /// bits) with TLS fingerprint `tls` (empty on plain connections, or when the token
    /// is not to be bound to it).
    pub fn new(site: &str, ip: IpAddr, v4_len: u8, v6_len: u8, tls: &str) -> Binding {
        let (bytes, len) = match rampart_core::net::canonical(ip) {
            IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), 96 + v4_len.min(32)),
            IpAddr::V6(a) => (a.octets(), v6_len.min(128)),
        };
        let mut prefix = [0u8; 17];
        for (i, b) in bytes.iter().enumerate() {
            let keep = usize::from(len).saturating_sub(i * 8).min(8);
            let mask = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
            prefix[i] = b & mask;
        }
        prefix[16] = len;
        Binding {
            site: stable_hash(site.as_bytes()),
            prefix,
            fingerprint: if tls.is_empty() {
                0
            } else {
                stable_hash(tls.as_bytes())
            },
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.site.to_be_bytes());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.fingerprint.to_be_bytes());
    }

    /// Compares with the binding read from a blob.
    fn check(&self, r: &mut Reader<'_>) -> Result<(), Rejected> {
        let site = r.u64()?;
        let prefix = r.take(17)?;
        let fingerprint = r.u64()?;
        if site != self.site {
            return Err(Rejected::OtherSite);
        }
        if prefix != self.prefix {
            return Err(Rejected::OtherPrefix);
        }
        if fingerprint != self.fingerprint {
            return Err(Rejected::OtherFingerprint);
        }
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Rejected> {
        if self.b.len() < n {
            return Err(Rejected::Malformed);
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Rejected> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Rejected> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Rejected> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// A valid clearance token's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clearance {
    /// The client identity the token stands for (random, chosen at minting).
    pub identity: u64,
    /// When it was minted (Unix seconds).
    pub issued: u32,
    /// When it expires (Unix seconds).
    pub expires: u32,
    /// Minted through the path without JavaScript (a wait, not a proof of work).
    pub noscript: bool,
    /// The difficulty solved.
    pub difficulty: u8,
}

impl Clearance {
    /// The token for this clearance, bound to `binding`, signed by the ring's first key.
    pub fn mint(&self, ring: &Keyring, binding: &Binding) -> String {
        let mut p = vec![VERSION, KIND_CLEARANCE];
        binding.write(&mut p);
        p.extend_from_slice(&self.identity.to_be_bytes());
        p.extend_from_slice(&self.issued.to_be_bytes());
        p.extend_from_slice(&self.expires.to_be_bytes());
        p.push(u8::from(self.noscript));
        p.push(self.difficulty);
        ring.seal(p)
    }

    /// Verifies a token presented with a request bound to `binding`, at `now`.
    pub fn verify(
        ring: &Keyring,
        token: &str,
        binding: &Binding,
        now: u64,
    ) -> Result<Clearance, Rejected> {
        let payload = ring.open(token, KIND_CLEARANCE)?;
        let mut r = Reader { b: &payload };
        binding.check(&mut r)?;
        let c = Clearance {
            identity: r.u64()?,
            issued: r.u32()?,
            expires: r.u32()?,
            noscript: r.u8()? != 0,
            difficulty: r.u8()?,
        };
        if !r.b.is_empty() {
            return Err(Rejected::Malformed);
        }
        if now >= u64::from(c.expires) {
            return Err(Rejected::Expired);
        }
        Ok(c)
    }
}

/// How a puzzle is solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A proof of work of this many leading zero bits.
    Hash(u8),
    /// Waiting this many seconds after issue (no JavaScript).
    Wait(u16),
}

/// A puzzle handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Puzzle {
    /// Random, so each puzzle is answered once.
    pub id: [u8; 16],
    /// Issued at (Unix milliseconds).
    pub issued: u64,
    /// Must be answered before (Unix milliseconds).
    pub expires: u64,
    /// What solves it.
    pub work: Work,
    /// The original request's method was not GET or HEAD (its body is re-sent after the
    /// answer: a 307 rather than a 303).
    pub resend_body: bool,
    /// Where to go once answered: the original request's target (path and query).
    pub target: String,
}

impl Puzzle {
    /// The puzzle as a signed blob bound to `binding`.
    pub fn seal(&self, ring: &Keyring, binding: &Binding) -> String {
        let mut p = vec![VERSION, KIND_PUZZLE];
        binding.write(&mut p);
        p.extend_from_slice(&self.id);
        p.extend_from_slice(&self.issued.to_be_bytes());
        p.extend_from_slice(&self.expires.to_be_bytes());
        match self.work {
            Work::Hash(bits) => p.extend_from_slice(&[0, bits, 0]),
            Work::Wait(s) => {
                p.push(1);
                p.extend_from_slice(&s.to_be_bytes());
            }
        }
        p.push(u8::from(self.resend_body));
        let target = if self.target.len() <= MAX_TARGET && local_target(&self.target) {
            self.target.as_bytes()
        } else {
            b"/"
        };
        p.extend_from_slice(target);
        ring.seal(p)
    }

    /// Opens a puzzle answered by a request bound to `binding`, at `now_ms`: signature,
    /// binding, expiry, and for a wait puzzle that its time has come.
    pub fn open(
        ring: &Keyring,
        text: &str,
        binding: &Binding,
        now_ms: u64,
    ) -> Result<Puzzle, Rejected> {
        let payload = ring.open(text, KIND_PUZZLE)?;
        let mut r = Reader { b: &payload };
        binding.check(&mut r)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(r.take(16)?);
        let issued = r.u64()?;
        let expires = r.u64()?;
        let work = match r.u8()? {
            0 => {
                let bits = r.u8()?;
                r.u8()?;
                Work::Hash(bits)
            }
            1 => {
                let b = r.take(2)?;
                Work::Wait(u16::from_be_bytes([b[0], b[1]]))
            }
            _ => return Err(Rejected::Malformed),
        };
        let resend_body = r.u8()? != 0;
        let target = std::str::from_utf8(r.b)
            .map_err(|_| Rejected::Malformed)?
            .to_owned();
        if !local_target(&target) {
            return Err(Rejected::Malformed);
        }
        if now_ms >= expires {
            return Err(Rejected::Expired);
        }
        if let Work::Wait(s) = work {
            if now_ms < issued.saturating_add(u64::from(s) * 1000) {
                return Err(Rejected::TooEarly);
            }
        }
        Ok(Puzzle {
            id,
            issued,
            expires,
            work,
            resend_body,
            target,
        })
    }
}

/// Whether a target is a path on this site: `/…`, never `//host` nor `/\\host` (which
/// browsers read as another host).
fn local_target(t: &str) -> bool {
    t.starts_with('/') && !t.starts_with("//") && !t.starts_with("/\\")
}

/// Whether `nonce` solves the sealed puzzle `text` at `bits` leading zero bits.
pub fn solves(text: &str, nonce: &str, bits: u8) -> bool {
    if nonce.is_empty() || nonce.len() > 32 {
        return false;
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(text.as_bytes());
    ctx.update(b":");
    ctx.update(nonce.as_bytes());
    leading_zero_bits(ctx.finish().as_ref()) >= u32::from(bits)
}

/// Leading zero bits of a digest.
pub fn leading_zero_bits(d: &[u8]) -> u32 {
    let mut n = 0;
    for &b in d {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// URL-safe base64 without padding.
pub fn b64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..=chunk.len() {
            out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64, standard or URL-safe alphabet, without padding.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut v = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            v |= val(c)? << (18 - 6 * i);
        }
        let bytes = v.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
        // Bits below the last whole byte must be zero (one text per byte string).
        let used = chunk.len() * 6;
        let spare = used % 8;
        if spare != 0 && (v >> (24 - used)) & ((1 << spare) - 1) != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
