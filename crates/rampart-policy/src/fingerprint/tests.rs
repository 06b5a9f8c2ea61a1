use super::*;

/// A ClientHello as bytes on the wire (one record, or `split` records).
struct Hello {
    version: u16,
    ciphers: Vec<u16>,
    /// (type, data) in order.
    extensions: Vec<(u16, Vec<u8>)>,
    no_extensions: bool,
}

fn u16s(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn with_len16(b: Vec<u8>) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend(b);
    out
}

fn sni(name: &str) -> (u16, Vec<u8>) {
    let mut entry = vec![0u8];
    entry.extend(with_len16(name.as_bytes().to_vec()));
    (0x0000, with_len16(entry))
}

fn alpn(protos: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for p in protos {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    (0x0010, with_len16(list))
}

fn versions(v: &[u16]) -> (u16, Vec<u8>) {
    let b = u16s(v);
    let mut out = vec![b.len() as u8];
    out.extend(b);
    (0x002b, out)
}

fn sigalgs(v: &[u16]) -> (u16, Vec<u8>) {
    (0x000d, with_len16(u16s(v)))
}

impl Hello {
    fn body(&self) -> Vec<u8> {
        let mut b = self.version.to_be_bytes().to_vec();
        b.extend([7u8; 32]);
        b.push(32);
        b.extend([9u8; 32]);
        b.extend(with_len16(u16s(&self.ciphers)));
        b.extend([1, 0]);
        if !self.no_extensions {
            let mut exts = Vec::new();
            for (t, d) in &self.extensions {
                exts.extend(t.to_be_bytes());
                exts.extend(with_len16(d.clone()));
            }
            b.extend(with_len16(exts));
        }
        b
    }

    fn bytes(&self, records: usize) -> Vec<u8> {
        let body = self.body();
        let mut hs = vec![1u8];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut out = Vec::new();
        let per = hs.len().div_ceil(records.max(1));
        for chunk in hs.chunks(per) {
            out.extend([22, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }
}

/// The example of FoxIO's JA4 specification (technical_details/JA4.md): its cipher,
/// extension and signature-algorithm lists, with GREASE values added, which JA4 ignores.
fn spec_example() -> Hello {
    let mut ciphers = vec![0x0a0a];
    ciphers.extend([
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ]);
    let order = [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
        0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
    ];
    let mut extensions = vec![(0x3a3a, Vec::new())];
    for t in order {
        extensions.push(match t {
            0x0000 => sni("example.com"),
            0x0010 => alpn(&[b"h2", b"http/1.1"]),
            0x002b => versions(&[0x7a7a, 0x0304, 0x0303]),
            0x000d => sigalgs(&[
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ]),
            other => (other, Vec::new()),
        });
    }
    extensions.push((0xfafa, vec![0]));
    Hello {
        version: 0x0303,
        ciphers,
        extensions,
        no_extensions: false,
    }
}

#[test]
fn the_specification_example() {
    let ch = client_hello(&spec_example().bytes(1)).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(ch.sni.as_deref(), Some(&b"example.com"[..]));
    assert_eq!(ch.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(
        ja4(&ch, Transport::Tcp),
        "t13d1516h2_8daaf6152771_e5627efa2ab1"
    );
    assert_eq!(
        ja4(&ch, Transport::Quic),
        "q13d1516h2_8daaf6152771_e5627efa2ab1"
    );
    // The specification's hashes of its lists, one by one (the last: without the
    // signature algorithms, the sorted extensions alone).
    assert_eq!(
        hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
        "8daaf6152771"
    );
    assert_eq!(
        hash12(
            "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        ),
        "e5627efa2ab1"
    );
    assert_eq!(
        hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"),
        "6d807ffa2a79"
    );
    // A hello without signature algorithms hashes its extensions alone.
    let mut h = spec_example();
    h.extensions.retain(|(t, _)| *t != 0x000d);
    let ch = client_hello(&h.bytes(1)).unwrap_or_else(|e| unreachable!("{e}"));
    let want = hash12("0005,000a,000b,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01");
    assert_eq!(
        ja4(&ch, Transport::Tcp),
        format!("t13d1515h2_8daaf6152771_{want}")
    );
}

#[test]
fn a_hello_split_over_records_reads_the_same() {
    let one = client_hello(&spec_example().bytes(1));
    for n in [2, 3, 7] {
        assert_eq!(client_hello(&spec_example().bytes(n)), one, "{n} records");
    }
}

#[test]
fn every_prefix_is_incomplete_never_invalid() {
    for records in [1, 3] {
        let bytes = spec_example().bytes(records);
        for cut in 0..bytes.len() {
            match client_hello(&bytes[..cut]) {
                Err(HelloError::Incomplete(n)) => {
                    assert!(n > cut && n <= bytes.len(), "cut {cut}: needs {n}")
                }
                other => unreachable!("cut {cut} of {}: {other:?}", bytes.len()),
            }
        }
        assert!(client_hello(&bytes).is_ok());
    }
}

#[test]
fn the_a_part_follows_the_rules() {
    let base = || Hello {
        version: 0x0303,
        ciphers: vec![0x002f],
        extensions: Vec::new(),
        no_extensions: false,
    };
    let a = |h: Hello| {
        let ch = client_hello(&h.bytes(1)).unwrap_or_else(|e| unreachable!("{e}"));
        ja4(&ch, Transport::Tcp)[..10].to_owned()
    };
    // TLS 1.2 without supported_versions, no SNI, no ALPN.
    let mut h = base();
    h.extensions.push((0x0017, Vec::new()));
    assert_eq!(a(h), "t12i010100");
    // ALPN http/1.1 -> h1; a one-character value counts twice.
    let mut h = base();
    h.extensions.push(alpn(&[b"http/1.1", b"h2"]));
    assert_eq!(a(h), "t12i0101h1");
    let mut h = base();
    h.extensions.push(alpn(&[b"x"]));
    assert_eq!(a(h), "t12i0101xx");
    // Non-alphanumeric first or last byte: from the hex form (the spec's examples).
    for (value, want) in [
        (&[0xab][..], "ab"),
        (&[0x20], "20"),
        (&[0xab, 0xcd], "ad"),
        (&[0x20, 0x61], "21"),
        (&[0x30, 0xab], "3b"),
        (&[0x61, 0x20], "60"),
        (&[0x30, 0x31, 0xab, 0xcd], "3d"),
        (&[0x30, 0xab, 0xcd, 0x31], "01"),
    ] {
        let mut h = base();
        h.extensions.push(alpn(&[value]));
        assert_eq!(&a(h)[8..], want, "{value:02x?}");
    }
    // An empty first ALPN value, and none at all.
    let mut h = base();
    h.extensions.push(alpn(&[b"", b"h2"]));
    assert_eq!(&a(h)[8..], "00");
    // More than 99 ciphers print 99; GREASE does not count.
    let mut h = base();
    h.ciphers = (1..=150).collect();
    h.ciphers.push(0x2a2a);
    assert_eq!(&a(h)[4..6], "99");
    // Versions: the highest non-GREASE of supported_versions wins over the legacy one.
    let mut h = base();
    h.extensions.push(versions(&[0x0a0a, 0x0302, 0x0304]));
    assert_eq!(&a(h)[1..3], "13");
    let mut h = base();
    h.version = 0x0300;
    assert_eq!(&a(h)[1..3], "s3");
}

#[test]
fn empty_lists_hash_to_zeros() {
    let h = Hello {
        version: 0x0303,
        ciphers: Vec::new(),
        extensions: Vec::new(),
        no_extensions: true,
    };
    let ch = client_hello(&h.bytes(1)).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        ja4(&ch, Transport::Tcp),
        "t12i000000_000000000000_000000000000"
    );
    // Only SNI and ALPN: nothing left to hash for the third part.
    let h = Hello {
        version: 0x0303,
        ciphers: vec![0x1301],
        extensions: vec![sni("a"), alpn(&[b"h2"])],
        no_extensions: false,
    };
    let ch = client_hello(&h.bytes(1)).unwrap_or_else(|e| unreachable!("{e}"));
    assert!(ja4(&ch, Transport::Tcp).ends_with("_000000000000"));
}

#[test]
fn malformed_hellos_are_invalid() {
    let good = spec_example().bytes(1);
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut v = good.clone();
    v[0] = 23;
    cases.push((v, "not a handshake record"));
    let mut v = good.clone();
    v[5] = 2;
    cases.push((v, "not a ClientHello"));
    let mut v = good.clone();
    v[1] = 4;
    cases.push((v, "record version"));
    cases.push((b"GET / HTTP/1.1\r\n\r\n".to_vec(), "not a handshake record"));
    // A cipher list of odd length inside a complete message.
    let mut h = spec_example();
    h.ciphers = vec![];
    let mut v = h.bytes(1);
    let at = 5 + 4 + 2 + 32 + 1 + 32; // record, handshake header, version, random, session id
    v[at + 1] = 1;
    cases.push((v, "length"));
    for (bytes, words) in cases {
        match client_hello(&bytes) {
            Err(HelloError::Invalid(why)) => {
                assert!(why.contains(words) || words == "length", "{why} / {words}")
            }
            other => unreachable!("{words}: {other:?}"),
        }
    }
}

/// A real ClientHello, from rustls: read whole, and fingerprinted as TLS 1.3 with SNI.
#[test]
fn a_rustls_client_hello() {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let suites = provider.cipher_suites.len();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| unreachable!("{e}"))
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("shop.example")
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mut wire = Vec::new();
    while conn.wants_write() {
        if conn.write_tls(&mut wire).is_err() {
            break;
        }
    }
    let ch = client_hello(&wire).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(ch.sni.as_deref(), Some(&b"shop.example"[..]));
    assert_eq!(ch.alpn[0], b"h2");
    assert!(ch.versions.contains(&0x0304));
    let fp = ja4(&ch, Transport::Tcp);
    // rustls offers its suites plus the renegotiation SCSV (0x00ff).
    let count = ch.ciphers.iter().filter(|c| !is_grease(**c)).count();
    assert!(
        count == suites || count == suites + 1,
        "{count} vs {suites}"
    );
    assert!(fp.starts_with(&format!("t13d{count:02}")), "{fp}");
    assert_eq!(&fp[8..10], "h2");
    assert_eq!(fp.len(), 36, "{fp}");
}
