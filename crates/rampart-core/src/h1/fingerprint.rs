//! The HTTP/1 header fingerprint: the shape of a request head as a client's HTTP stack
//! writes it — which fields, in which order, in which letter case — independent of the
//! values a script sets per request.
//!
//! `h11t09_4c1d0e5a7b2f` reads: HTTP/1.`1`; names in `t`itle case (`l` all lower case,
//! `m` mixed); `09` fields counted; then the first 48 bits of the FNV-1a hash of the
//! counted names, lower-cased, in order. Fields whose presence changes from request to
//! request of one client (cookies, referrer, body framing and type, credentials,
//! conditional and range requests, proxy-added fields; see [`volatile`]) are neither
//! counted nor hashed, so one client stack gives few fingerprints: browsers differ
//! between page loads, subresources and `fetch` calls, but not between two page loads.
//!
//! Computed while the edge builds the request from its head: no allocation, a few
//! nanoseconds per field.

/// FNV-1a 64-bit offset basis and prime.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Length of the text form.
pub const LEN: usize = 19;

/// Whether a field (lower-case name) is left out of the fingerprint because its presence
/// varies between one client's requests.
pub fn volatile(lower: &[u8]) -> bool {
    matches!(
        lower,
        b"cookie"
            | b"referer"
            | b"content-length"
            | b"content-type"
            | b"transfer-encoding"
            | b"expect"
            | b"authorization"
            | b"proxy-authorization"
            | b"origin"
            | b"cache-control"
            | b"pragma"
            | b"if-none-match"
            | b"if-modified-since"
            | b"if-match"
            | b"if-unmodified-since"
            | b"if-range"
            | b"range"
            | b"x-forwarded-for"
            | b"x-forwarded-proto"
            | b"x-forwarded-host"
            | b"x-real-ip"
            | b"forwarded"
            | b"via"
    )
}

/// Builds the fingerprint field by field.
#[derive(Debug, Clone, Copy)]
pub struct Builder {
    hash: u64,
    count: u8,
    /// Every name so far was all lower case / in title case.
    lower: bool,
    title: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            hash: FNV_OFFSET,
            count: 0,
            lower: true,
            title: true,
        }
    }
}

impl Builder {
    /// Adds the next field's name, as the client wrote it.
    pub fn name(&mut self, raw: &[u8]) {
        let mut lower_buf = [0u8; 32];
        let mut is_lower = true;
        let mut is_title = true;
        let mut word_start = true;
        for (i, &c) in raw.iter().enumerate() {
            if c.is_ascii_uppercase() {
                is_lower = false;
                is_title &= word_start;
            } else if c.is_ascii_lowercase() {
                is_title &= !word_start;
            }
            word_start = c == b'-';
            if let Some(slot) = lower_buf.get_mut(i) {
                *slot = c.to_ascii_lowercase();
            }
        }
        self.lower &= is_lower;
        self.title &= is_title;
        // Names longer than the buffer are never volatile ones.
        if raw.len() <= lower_buf.len() && volatile(&lower_buf[..raw.len()]) {
            return;
        }
        self.count = self.count.saturating_add(1);
        for &c in raw {
            self.hash = (self.hash ^ u64::from(c.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
        }
        self.hash = (self.hash ^ u64::from(b',')).wrapping_mul(FNV_PRIME);
    }

    /// The fingerprint of a head of HTTP/1.`minor`.
    pub fn finish(self, minor: u8) -> H1Fingerprint {
        let case = if self.lower {
            b'l'
        } else if self.title {
            b't'
        } else {
            b'm'
        };
        let count = self.count.min(99);
        let mut t = [0u8; LEN];
        t[..2].copy_from_slice(b"h1");
        t[2] = b'0' + minor.min(9);
        t[3] = case;
        t[4] = b'0' + count / 10;
        t[5] = b'0' + count % 10;
        t[6] = b'_';
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let top = self.hash >> 16;
        for (i, slot) in t[7..].iter_mut().enumerate() {
            *slot = HEX[((top >> (44 - 4 * i)) & 0xf) as usize];
        }
        H1Fingerprint(t)
    }
}

/// An HTTP/1 header fingerprint (see the module docs); `Copy`, no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct H1Fingerprint([u8; LEN]);

impl H1Fingerprint {
    /// The text form.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for H1Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for H1Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fingerprint of a list of field names.
pub fn of<'a>(minor: u8, names: impl IntoIterator<Item = &'a [u8]>) -> H1Fingerprint {
    let mut b = Builder::default();
    for n in names {
        b.name(n);
    }
    b.finish(minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(minor: u8, names: &[&str]) -> String {
        of(minor, names.iter().map(|n| n.as_bytes())).to_string()
    }

    #[test]
    fn layout_and_case() {
        let chrome = [
            "Host",
            "Connection",
            "Upgrade-Insecure-Requests",
            "User-Agent",
            "Accept",
            "Accept-Encoding",
            "Accept-Language",
        ];
        let f = fp(1, &chrome);
        assert_eq!(f.len(), LEN);
        assert!(f.starts_with("h11t07_"), "{f}");
        assert!(f[7..].bytes().all(|c| c.is_ascii_hexdigit()), "{f}");
        let lower: Vec<String> = chrome.iter().map(|n| n.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        let l = fp(1, &lower);
        assert!(l.starts_with("h11l07_"), "{l}");
        assert_eq!(f[7..], l[7..], "the order hash ignores letter case");
        let mut mixed = chrome;
        mixed[1] = "connection";
        assert!(fp(1, &mixed).starts_with("h11m07_"));
        assert!(fp(0, &chrome).starts_with("h10t07_"));
        assert_eq!(fp(1, &[]), "h11l00_".to_string() + &fp(1, &[])[7..]);
        // Title case is per word: "X-Api-Key" yes, "X-API-Key" and "XApi" no.
        assert!(fp(1, &["X-Api-Key"]).starts_with("h11t"));
        assert!(fp(1, &["X-API-Key"]).starts_with("h11m"));
        assert!(fp(1, &["Dnt", "TE"]).starts_with("h11m"));
    }

    #[test]
    fn order_matters_volatile_fields_do_not() {
        let a = fp(1, &["Host", "User-Agent", "Accept"]);
        let b = fp(1, &["Host", "Accept", "User-Agent"]);
        assert_ne!(a[7..], b[7..]);
        let with = fp(
            1,
            &[
                "Host",
                "Cookie",
                "User-Agent",
                "Content-Length",
                "Referer",
                "Accept",
                "X-Forwarded-For",
            ],
        );
        assert_eq!(a, with, "cookies, referrer and framing are left out");
        // A field set differs: another fingerprint.
        assert_ne!(
            a,
            fp(1, &["Host", "User-Agent", "Accept", "Accept-Language"])
        );
        // Long names are hashed whole.
        let long = "X-".to_string() + &"a".repeat(100);
        let l1 = fp(1, &["Host", &long]);
        let l2 = fp(1, &["Host", &(long.clone() + "b")]);
        assert_ne!(l1, l2);
    }

    #[test]
    fn counts_saturate() {
        let names: Vec<String> = (0..300).map(|i| format!("x-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(fp(1, &names).starts_with("h11l99_"));
    }
}
