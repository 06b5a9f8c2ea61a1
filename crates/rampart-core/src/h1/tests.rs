use super::*;

const LIMITS: Limits = Limits {
    max_uri_bytes: 100,
    max_head_bytes: 1024,
    max_headers: 10,
};

/// Feeds `input` in pieces of `chunk` bytes; returns (bytes released, final rejection).
fn run(input: &[u8], chunk: usize) -> (usize, Option<Rejection>) {
    let mut g = Guard::new(LIMITS);
    let mut released = 0;
    let mut received = 0;
    loop {
        match g.advance(&input[released..received]) {
            Step::Pass(n) => {
                assert!(n > 0 && released + n <= received);
                released += n;
            }
            Step::NeedMore => {
                if received == input.len() {
                    return (released, None);
                }
                received = (received + chunk).min(input.len());
            }
            Step::Reject(r) => return (released, Some(r)),
        }
    }
}

fn all_chunkings(input: &[u8]) -> (usize, Option<Rejection>) {
    let whole = run(input, input.len().max(1));
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(
            run(input, chunk),
            whole,
            "chunking {chunk} disagrees for {:?}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

fn accepted(input: &[u8]) {
    let (n, r) = all_chunkings(input);
    assert_eq!(
        (n, r),
        (input.len(), None),
        "{:?}",
        String::from_utf8_lossy(input)
    );
}

fn rejected(input: &[u8], status: u16) -> usize {
    let (n, r) = all_chunkings(input);
    assert_eq!(
        r.as_ref().map(|r| r.status.as_u16()),
        Some(status),
        "{:?}",
        String::from_utf8_lossy(input)
    );
    n
}

#[test]
fn plain_requests_and_bodies_pass() {
    accepted(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    accepted(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    accepted(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    accepted(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
    accepted(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    accepted(b"\r\nGET / HTTP/1.0\r\n\r\n");
}

#[test]
fn body_bytes_that_look_like_requests_are_not_heads() {
    // A body containing a request line is data, not a second request.
    let mut g = Guard::new(LIMITS);
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 38\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\nxxxxxx";
    let mut off = 0;
    while off < input.len() {
        match g.advance(&input[off..]) {
            Step::Pass(n) => off += n,
            other => unreachable!("{other:?}"),
        }
    }
    assert_eq!(g.requests(), 1);
    assert_eq!(g.phase(), Phase::Head);
}

#[test]
fn cl_te_combinations_are_rejected() {
    // CL.TE and TE.CL
    rejected(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400);
    rejected(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400);
    // duplicate / malformed CL
    rejected(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
        400,
    );
    rejected(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        400,
    );
}

#[test]
fn te_obfuscations_are_rejected() {
    for te in [
        &b"Transfer-Encoding: xchunked"[..],
        b"Transfer-Encoding: chunked, identity",
        b"Transfer-Encoding: gzip, chunked",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        b"Transfer-Encoding: chunked\r\nTransfer-encoding: x",
        b"Transfer-Encoding : chunked",
        b"Transfer-Encoding:\tchunked\t,",
        b"Transfer-Encoding: \"chunked\"",
        b"Transfer-Encoding\r\n : chunked",
        b"Transfer-Encoding: chunked\r\n folded",
        b"X: y\r\nTransfer-Encoding: identity",
    ] {
        let mut req = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
        req.extend_from_slice(te);
        req.extend_from_slice(b"\r\n\r\n0\r\n\r\n");
        assert_eq!(
            rejected(&req, 400),
            0,
            "{:?}",
            String::from_utf8_lossy(&req)
        );
    }
    rejected(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn invalid_chunks_are_rejected() {
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for body in [
        &b"g\r\n"[..],
        b"-1\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut req = head.clone();
        req.extend_from_slice(body);
        let released = rejected(&req, 400);
        assert!(
            released >= head.len(),
            "head was valid: {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn syntax_the_parser_refuses_is_rejected() {
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400); // obs-fold
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400); // NUL
    rejected(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400); // bare CR
    rejected(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400);
    rejected(b"GET / HTTP/1.1\r\n: a\r\n\r\n", 400);
    rejected(b"GET /\r\n\r\n", 400); // HTTP/0.9
    rejected(b"GET / HTTP/2.0\r\n\r\n", 400);
    rejected(b"\x16\x03\x01\x00\xa5\x01\x00", 400); // TLS to a plain port
}

#[test]
fn limits() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(150));
    rejected(long.as_bytes(), 414);
    let long_partial = format!("GET /{}", "a".repeat(150));
    assert_eq!(
        run(long_partial.as_bytes(), 10)
            .1
            .map(|r| r.status.as_u16()),
        Some(414)
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(1100)
    );
    rejected(big.as_bytes(), 431);
    let big_partial = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "v".repeat(1100));
    assert_eq!(
        run(big_partial.as_bytes(), 100)
            .1
            .map(|r| r.status.as_u16()),
        Some(431)
    );
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..11 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    rejected(&many, 431);
}

#[test]
fn upgrade_and_h2_preface_switch_to_tunnel() {
    let mut g = Guard::new(LIMITS);
    let up = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(g.advance(up), Step::Pass(up.len()));
    assert_eq!(g.phase(), Phase::Tunnel);
    assert_eq!(g.advance(b"\x81\x85 raw frame"), Step::Pass(12));

    let mut g = Guard::new(LIMITS);
    assert_eq!(g.advance(b"PRI * HTTP/2.0\r\n"), Step::NeedMore);
    assert_eq!(
        g.advance(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"),
        Step::Pass(26)
    );
    assert_eq!(g.phase(), Phase::Tunnel);
    assert!(g.is_h2());
    assert!(Guard::h2(LIMITS).is_h2());

    // the preface is not accepted after a request
    let mut g = Guard::new(LIMITS);
    let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(g.advance(get), Step::Pass(get.len()));
    assert!(matches!(
        g.advance(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Step::Reject(_)
    ));
}

#[test]
fn rejection_is_sticky() {
    let mut g = Guard::new(LIMITS);
    assert!(matches!(g.advance(b"BAD\x00"), Step::Reject(_)));
    assert!(matches!(
        g.advance(b"GET / HTTP/1.1\r\n\r\n"),
        Step::Reject(_)
    ));
    assert_eq!(g.phase(), Phase::Rejected);
}

#[test]
fn never_panics_on_short_inputs() {
    for a in 0..=255u8 {
        for b in [b'\r', b'\n', b'0', b' ', b'G', 0, 0xff] {
            let mut g = Guard::new(LIMITS);
            let _ = g.advance(&[a, b]);
            let mut g = Guard::new(LIMITS);
            let mut buf = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            buf.extend_from_slice(&[a, b, b'\r', b'\n']);
            let mut off = 0;
            while let Step::Pass(n) = g.advance(&buf[off..]) {
                off += n;
            }
        }
    }
}

#[test]
fn control_characters_in_values_are_found_wherever_they_are() {
    for bad in (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]) {
        for len in [1, 15, 16, 17, 31, 32, 33, 100] {
            for at in [0, len / 2, len - 1] {
                let mut v = vec![b'a'; len];
                v[at] = bad;
                assert!(has_control(&v), "byte {bad:#x} at {at} of {len}");
            }
        }
    }
    let fine: Vec<u8> = (0x20u8..0x7f).chain(0x80..=0xff).chain([b'\t']).collect();
    assert!(!has_control(&fine));
    assert!(!has_control(b""));
    // Every request with such a byte in a value is refused before release.
    for bad in [0u8, b'\r', 0x1f, 0x7f] {
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX: ab".to_vec();
        req.push(bad);
        req.extend_from_slice(b"cd\r\n\r\n");
        rejected(&req, 400);
    }
}
