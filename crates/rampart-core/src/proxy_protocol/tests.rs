use super::*;

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | cmd);
    out.push(fam);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn v1_tcp4() {
    let buf = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
    let h = parse(buf).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(h.len, 45);
    assert_eq!(
        h.addresses,
        Some((
            "192.0.2.1:56324".parse().unwrap_or_else(|_| unreachable!()),
            "198.51.100.2:443"
                .parse()
                .unwrap_or_else(|_| unreachable!())
        ))
    );
}

#[test]
fn v1_tcp6_and_unknown() {
    let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(matches!(h.addresses, Some((s, _)) if s.to_string() == "[2001:db8::1]:1"));
    let h = parse(b"PROXY UNKNOWN\r\n").unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        h,
        Header {
            len: 15,
            addresses: None
        }
    );
    let h = parse(b"PROXY UNKNOWN ff ff 1 2\r\n").unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(h.addresses, None);
}

#[test]
fn v1_incomplete_prefixes() {
    let full = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    for n in 1..full.len() {
        assert_eq!(
            parse(&full[..n]),
            Err(Error::Incomplete),
            "prefix of {n} bytes"
        );
    }
}

#[test]
fn v1_invalid() {
    for bad in [
        &b"PROXZ TCP4"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"GET / HTTP/1.1\r\n",
        // found by fuzzing: LF first, CR later (was reported incomplete)
        b"PROXY \x1d\n\r",
    ] {
        assert!(
            matches!(parse(bad), Err(Error::Invalid(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
    assert!(matches!(parse(&long), Err(Error::Invalid(_))));
}

#[test]
fn v2_tcp4_with_tlv_and_payload() {
    let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0x1f, 0x90, 0x01, 0xbb];
    body.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]); // a NOOP TLV
    let mut buf = v2(1, 0x11, &body);
    let header_len = buf.len();
    buf.extend_from_slice(b"payload");
    let h = parse(&buf).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(h.len, header_len);
    assert_eq!(
        h.addresses.map(|(s, d)| (s.to_string(), d.to_string())),
        Some(("192.0.2.1:8080".into(), "198.51.100.2:443".into()))
    );
    for n in 1..header_len {
        assert_eq!(parse(&buf[..n]), Err(Error::Incomplete), "prefix of {n}");
    }
}

#[test]
fn v2_tcp6_local_unspec() {
    let mut body = [0u8; 36];
    body[15] = 1;
    body[31] = 2;
    body[33] = 80;
    let h = parse(&v2(1, 0x21, &body)).unwrap_or_else(|e| unreachable!("{e}"));
    assert!(matches!(h.addresses, Some((s, _)) if s.to_string() == "[::1]:80"));
    assert_eq!(parse(&v2(0, 0x00, &[])).map(|h| h.addresses), Ok(None));
    assert_eq!(parse(&v2(1, 0x00, &[])).map(|h| h.addresses), Ok(None));
}

#[test]
fn v2_invalid() {
    assert!(matches!(
        parse(&v2(1, 0x11, &[1, 2, 3])),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        parse(&v2(1, 0x21, &[0; 12])),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        parse(&v2(2, 0x11, &[0; 12])),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        parse(&v2(1, 0x41, &[0; 12])),
        Err(Error::Invalid(_))
    ));
    let mut wrong_version = v2(1, 0x11, &[0; 12]);
    wrong_version[12] = 0x11;
    assert!(matches!(parse(&wrong_version), Err(Error::Invalid(_))));
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert!(matches!(parse(&huge), Err(Error::Invalid(_))));
    assert!(matches!(parse(b"\r\n\r\nX"), Err(Error::Invalid(_))));
}

#[test]
fn never_panics_on_any_short_input() {
    // exhaustive over all 1- and 2-byte inputs, plus signature-prefixed 3-byte tails
    for a in 0..=255u8 {
        let _ = parse(&[a]);
        for b in 0..=255u8 {
            let _ = parse(&[a, b]);
        }
    }
    for t in 0..=255u8 {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend_from_slice(&[t, t, 0, 0]);
        let _ = parse(&buf);
    }
}
