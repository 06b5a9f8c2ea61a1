use super::*;

fn ring(keys: &[(&str, u8)]) -> Keyring {
    let secrets: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|(n, b)| ((*n).to_owned(), vec![*b; 32]))
        .collect();
    let refs: Vec<(&str, &[u8])> = secrets
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    Keyring::new(&refs).unwrap()
}

fn bind(site: &str, ip: &str, fp: &str) -> Binding {
    Binding::new(site, ip.parse().unwrap(), 24, 48, fp)
}

const JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";

fn clearance() -> Clearance {
    Clearance {
        identity: 0x1234_5678_9abc_def0,
        issued: 1_000,
        expires: 4_600,
        noscript: false,
        difficulty: 16,
    }
}

#[test]
fn a_token_verifies_where_it_was_minted_until_it_expires() {
    let r = ring(&[("k1", 1)]);
    let b = bind("shop", "192.0.2.10", JA4);
    let t = clearance().mint(&r, &b);
    assert!(
        t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(Clearance::verify(&r, &t, &b, 1_000), Ok(clearance()));
    // Another address in the same /24: the same binding.
    let same = bind("shop", "192.0.2.200", JA4);
    assert_eq!(Clearance::verify(&r, &t, &same, 4_599), Ok(clearance()));
    assert_eq!(Clearance::verify(&r, &t, &b, 4_600), Err(Rejected::Expired));
}

#[test]
fn replay_on_another_site_prefix_or_fingerprint_is_refused() {
    let r = ring(&[("k1", 1)]);
    let b = bind("shop", "192.0.2.10", JA4);
    let t = clearance().mint(&r, &b);
    let v = |b: Binding| Clearance::verify(&r, &t, &b, 2_000);
    assert_eq!(v(bind("bank", "192.0.2.10", JA4)), Err(Rejected::OtherSite));
    assert_eq!(
        v(bind("shop", "192.0.3.10", JA4)),
        Err(Rejected::OtherPrefix)
    );
    assert_eq!(
        v(bind(
            "shop",
            "192.0.2.10",
            "t13d1517h2_8daaf6152771_e5627efa2ab1"
        )),
        Err(Rejected::OtherFingerprint)
    );
    assert_eq!(
        v(bind("shop", "192.0.2.10", "")),
        Err(Rejected::OtherFingerprint)
    );
    // IPv6: the /48 is the binding; an IPv4-mapped address is its IPv4 address.
    let b6 = bind("shop", "2001:db8:1:2::1", "");
    let t6 = clearance().mint(&r, &b6);
    let v6 = |ip: &str| Clearance::verify(&r, &t6, &bind("shop", ip, ""), 2_000);
    assert!(v6("2001:db8:1:ffff::9").is_ok());
    assert_eq!(v6("2001:db8:2::1"), Err(Rejected::OtherPrefix));
    let t4 = clearance().mint(&r, &bind("shop", "192.0.2.1", ""));
    assert!(Clearance::verify(&r, &t4, &bind("shop", "::ffff:192.0.2.9", ""), 2_000).is_ok());
    // A /32 binding is the address itself.
    let exact = |ip: &str| Binding::new("shop", ip.parse().unwrap(), 32, 128, "");
    let te = clearance().mint(&r, &exact("192.0.2.1"));
    assert_eq!(
        Clearance::verify(&r, &te, &exact("192.0.2.2"), 2_000),
        Err(Rejected::OtherPrefix)
    );
}

#[test]
fn forged_and_altered_tokens_are_refused() {
    let r = ring(&[("k1", 1)]);
    let b = bind("shop", "192.0.2.10", JA4);
    let t = clearance().mint(&r, &b);
    // Every single-character change is refused (never accepted as another token).
    let chars: Vec<char> = t.chars().collect();
    for i in 0..chars.len() {
        for c in ['A', 'z', '0', '-'] {
            if chars[i] == c {
                continue;
            }
            let mut m = chars.clone();
            m[i] = c;
            let m: String = m.into_iter().collect();
            assert!(Clearance::verify(&r, &m, &b, 2_000).is_err(), "{i} {c}");
        }
    }
    // The same payload signed with another secret under the same key name: forged.
    let other = ring(&[("k1", 2)]);
    assert_eq!(
        Clearance::verify(&r, &clearance().mint(&other, &b), &b, 2_000),
        Err(Rejected::Forged)
    );
    // A longer expiry written into a real token's payload: forged.
    let mut raw = b64_decode(&t).unwrap();
    let at = 2 + 8 + 17 + 8 + 8 + 4;
    raw[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        Clearance::verify(&r, &b64_encode(&raw), &b, 2_000),
        Err(Rejected::Forged)
    );
    // Garbage, truncation, a puzzle offered as a token.
    for bad in ["", "x", "!!!!", &t[..t.len() - 4], &t[..20]] {
        assert!(Clearance::verify(&r, bad, &b, 2_000).is_err(), "{bad}");
    }
    let p = puzzle(Work::Hash(4)).seal(&r, &b);
    assert_eq!(
        Clearance::verify(&r, &p, &b, 2_000),
        Err(Rejected::Malformed)
    );
}

#[test]
fn keys_rotate() {
    let old = ring(&[("2026-11", 1)]);
    let b = bind("shop", "192.0.2.10", "");
    let t_old = clearance().mint(&old, &b);
    // New key in front: old tokens still verify, new ones are signed by the new key.
    let both = ring(&[("2026-12", 3), ("2026-11", 1)]);
    assert_eq!(both.signing(), "2026-12");
    assert!(Clearance::verify(&both, &t_old, &b, 2_000).is_ok());
    let t_new = clearance().mint(&both, &b);
    assert!(Clearance::verify(&both, &t_new, &b, 2_000).is_ok());
    assert_eq!(
        Clearance::verify(&old, &t_new, &b, 2_000),
        Err(Rejected::UnknownKey)
    );
    // Old key retired: its tokens are refused.
    let new = ring(&[("2026-12", 3)]);
    assert_eq!(
        Clearance::verify(&new, &t_old, &b, 2_000),
        Err(Rejected::UnknownKey)
    );
    assert!(Clearance::verify(&new, &t_new, &b, 2_000).is_ok());
}

fn puzzle(work: Work) -> Puzzle {
    Puzzle {
        id: [7; 16],
        issued: 1_000_000,
        expires: 1_120_000,
        work,
        resend_body: true,
        target: "/login?next=%2Fhome".into(),
    }
}

#[test]
fn puzzles_open_only_where_issued_in_time() {
    let r = ring(&[("k1", 1)]);
    let b = bind("shop", "192.0.2.10", JA4);
    let p = puzzle(Work::Hash(12)).seal(&r, &b);
    assert_eq!(
        Puzzle::open(&r, &p, &b, 1_000_001),
        Ok(puzzle(Work::Hash(12)))
    );
    assert_eq!(Puzzle::open(&r, &p, &b, 1_120_000), Err(Rejected::Expired));
    assert_eq!(
        Puzzle::open(&r, &p, &bind("shop", "198.51.100.1", JA4), 1_000_001),
        Err(Rejected::OtherPrefix)
    );
    // A wait puzzle opens after its wait.
    let w = puzzle(Work::Wait(5)).seal(&r, &b);
    assert_eq!(Puzzle::open(&r, &w, &b, 1_004_999), Err(Rejected::TooEarly));
    assert_eq!(
        Puzzle::open(&r, &w, &b, 1_005_000),
        Ok(puzzle(Work::Wait(5)))
    );
    // Targets that are not a local path are not carried.
    for t in [
        "https://evil.test/",
        "//evil.test/x",
        "/\\evil.test",
        "",
        &"/a".repeat(2000),
    ] {
        let mut q = puzzle(Work::Hash(1));
        q.target = t.to_string();
        let opened = Puzzle::open(&r, &q.seal(&r, &b), &b, 1_000_001).unwrap();
        assert_eq!(opened.target, "/", "{t}");
    }
}

#[test]
fn proof_of_work() {
    let text = "puzzle-text";
    // Find a nonce for 12 bits, as the page's script does.
    let nonce = (0u64..)
        .map(|n| n.to_string())
        .find(|n| solves(text, n, 12))
        .unwrap();
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{text}:{nonce}").as_bytes());
    assert!(leading_zero_bits(d.as_ref()) >= 12);
    assert!(solves(text, &nonce, 0));
    // The same nonce does not solve another puzzle at that difficulty (with
    // overwhelming probability: checked for this one).
    assert!(!solves("puzzle-texu", &nonce, 12) || !solves("puzzle-texv", &nonce, 12));
    assert!(!solves(text, "", 0));
    assert!(!solves(text, &"1".repeat(33), 0));
    assert_eq!(leading_zero_bits(&[0, 0, 0x10]), 19);
    assert_eq!(leading_zero_bits(&[0xff]), 0);
    assert_eq!(leading_zero_bits(&[0, 0]), 16);
}

#[test]
fn base64_round_trips_and_is_canonical() {
    for n in 0..40 {
        let b: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        let t = b64_encode(&b);
        assert_eq!(b64_decode(&t), Some(b), "{n}");
    }
    assert_eq!(b64_encode(b"\xfb\xff"), "-_8");
    assert_eq!(b64_decode("+/8"), Some(b"\xfb\xff".to_vec()));
    assert_eq!(b64_decode("A"), None);
    assert_eq!(b64_decode("AB"), None, "spare bits set");
    assert_eq!(b64_decode("AA"), Some(vec![0]));
    assert_eq!(b64_decode("A=A"), None);
}

#[test]
fn key_files() {
    let s32 = b64_encode(&[5u8; 32]);
    let text = format!("# rotated monthly\n2026-12 {s32}\n\n  2026-11 {s32}==  # old\n");
    let r = Keyring::parse(&text).unwrap();
    assert_eq!(r.signing(), "2026-12");
    let err = |t: &str| Keyring::parse(t).unwrap_err();
    let e = err(&format!("k1 {s32}\nk2\n"));
    assert_eq!((e.line, e.col), (2, 1));
    let e = err(&format!("k1 {}\n", b64_encode(&[1u8; 16])));
    assert_eq!((e.line, e.col), (1, 4));
    assert!(e.msg.contains("16 bytes"), "{}", e.msg);
    let e = err("  k1 not*base64\n");
    assert_eq!((e.line, e.col), (1, 6));
    let e = err(&format!("k/1 {s32}\n"));
    assert_eq!((e.line, e.col), (1, 1));
    let e = err(&format!("k1 {s32}\nk1 {s32}\n"));
    assert!(e.msg.contains("twice"), "{}", e.msg);
    assert_eq!(e.line, 2);
    assert!(err("# nothing\n").msg.contains("no key"));
    assert!(
        err(&format!("k1 {s32} extra\n"))
            .msg
            .contains("name secret")
    );
}
