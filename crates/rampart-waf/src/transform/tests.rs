use super::*;
use crate::xorshift::Xorshift;

fn t(name: &str, input: &[u8]) -> Vec<u8> {
    let Some(tf) = Transform::from_name(name) else {
        panic!("no transformation {name}")
    };
    let mut out = vec![b'!'; 3]; // apply must clear what was there
    apply(tf, input, &mut out);
    out
}

fn check(name: &str, cases: &[(&[u8], &[u8])]) {
    for (input, want) in cases {
        assert_eq!(
            t(name, input),
            want.to_vec(),
            "{name}({:?}) = {:?}, want {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&t(name, input)),
            String::from_utf8_lossy(want)
        );
    }
}

#[test]
fn url_decoding() {
    check(
        "urlDecode",
        &[
            (b"a%20b+c", b"a b c"),
            (b"%41%4a%4A", b"AJJ"),
            (b"%", b"%"),
            (b"%4", b"%4"),
            (b"%zz%4g", b"%zz%4g"),
            (b"%00x", b"\0x"),
            (b"%u0041", b"%u0041"),
        ],
    );
    check(
        "urlDecodeUni",
        &[
            (b"%u0041%U0042", b"AB"),
            (b"%uff01%uFF5e", b"!~"),
            (b"%uff00%uff5f", b"\0\x5f"),
            (b"%u1234", b"\x34"),
            (b"%u12", b"%u12"),
            (b"%u12zz", b"%u12zz"),
            (b"%%u0020", b"% "),
            (b"a+b%2", b"a b%2"),
        ],
    );
    check(
        "urlEncode",
        &[(b"a b*c", b"a+b*c"), (b"<\xff/", b"%3c%ff%2f")],
    );
}

#[test]
fn html_entities() {
    check(
        "htmlEntityDecode",
        &[
            (b"&lt;script&GT;", b"<script>"),
            (b"&quot&amp;&nbsp;", b"\"&\xa0"),
            (b"&#60;&#x3c;&#X3C", b"<<<"),
            (b"&#x;&#;&;&", b"&#x;&#;&;&"),
            (b"&copy;x", b"&copy;x"),
            (b"&#", b"&#"),
            (b"&#x", b"&#x"),
            // Numbers are cut to a byte; too large saturates (LONG_MAX's low byte).
            (b"&#321;&#x141", b"AA"),
            (b"&#99999999999999999999999;", b"\xff"),
        ],
    );
}

#[test]
fn javascript_and_css_escapes() {
    check(
        "jsDecode",
        &[
            (b"\\x41\\u0042\\uff01", b"AB!"),
            (b"\\101\\7\\477", b"A\x07'7"),
            (b"\\n\\t\\q\\'", b"\n\tq'"),
            (b"\\x4", b"x4"),
            (b"end\\", b"end\\"),
            (b"\\U0041", b"U0041"),
        ],
    );
    check(
        "cssDecode",
        &[
            (b"\\41 x", b"Ax"),
            (b"\\4142", b"B"),
            (b"\\ff01\\00ff41", b"!a"),
            (b"\\0000ff41", b"\xff41"),
            (b"\\12345x", b"\x45x"),
            (b"\\g", b"g"),
            (b"a\\\nb", b"ab"),
            (b"end\\", b"end"),
            (b"\\a", b"\x0a"),
        ],
    );
    check(
        "escapeSeqDecode",
        &[
            (b"\\n\\r\\t\\\\\\?", b"\n\r\t\\?"),
            (b"\\x41\\X42", b"AB"),
            (b"\\101\\777", b"A\xff"),
            (b"\\xzz\\q", b"xzzq"),
            (b"\\", b"\\"),
        ],
    );
}

#[test]
fn whitespace_comments_and_nulls() {
    check(
        "compressWhitespace",
        &[
            (b"a \t\r\n b\x0b\x0cc  ", b"a b c "),
            (b"\xa0\xa0", b"\xa0\xa0"),
        ],
    );
    check("removeWhitespace", &[(b" a\tb\xa0c\xc2d\n", b"abcd")]);
    check("removeNulls", &[(b"\0a\0b\0", b"ab")]);
    check("replaceNulls", &[(b"\0a\0", b" a ")]);
    check("trim", &[(b" \t a b \n", b"a b"), (b"   ", b"")]);
    check("trimLeft", &[(b"  a ", b"a ")]);
    check("trimRight", &[(b"  a ", b"  a")]);
    check(
        "replaceComments",
        &[
            (b"a/*x*/b", b"a b"),
            (b"a/*unclosed", b"a "),
            (b"a*/b", b"a*/b"),
        ],
    );
    check(
        "removeCommentsChar",
        &[(b"a/*b*/c<!--d-->e--f#g", b"abcdefg")],
    );
    check(
        "removeComments",
        &[
            (b"a/*x*/bc", b"abc"),
            (b"a<!--x-->bc", b"abc"),
            (b"ab--cd", b"ab"),
            (b"ab#cd", b"ab"),
            (b"a/*open", b"a "),
            // the byte after a closing */ is copied unexamined: at the end, the NUL
            (b"a/*x*/", b"a\0"),
        ],
    );
}

#[test]
fn command_lines() {
    check(
        "cmdLine",
        &[
            (b"C^:\\Win\"dows\\'sys", b"c:windowssys"),
            (b"cat  ,; /etc/passwd", b"cat/etc/passwd"),
            (b"echo \"x\" (y)", b"echo x(y)"),
            (b"A\t\nB", b"a b"),
        ],
    );
}

#[test]
fn paths() {
    check(
        "normalisePath",
        &[
            (b"/a/b/../c", b"/a/c"),
            (b"/a/./b//c/", b"/a/b/c/"),
            (b"/../../etc/passwd", b"/etc/passwd"),
            (b"a/../../b", b"../b"),
            (b"./a", b"a"),
            (b"/..", b""),
            (b"x/..", b""),
            (b"//", b"/"),
            (b"a\\b", b"a\\b"),
        ],
    );
    check(
        "normalisePathWin",
        &[(b"c:\\a\\..\\b", b"c:/b"), (b"\\a\\.\\b\\", b"/a/b/")],
    );
}

#[test]
fn unicode() {
    check(
        "utf8toUnicode",
        &[
            ("aé€😀".as_bytes(), b"a%u00e9%u20ac%u1f600"),
            // overlong 'A' (C1 81): the code point, then the raw lead byte
            (b"\xc1\x81", b"%u0041\xc1"),
            // a stray continuation byte stays; a lead byte without its continuation goes
            (b"\x80x\xc3", b"\x80x"),
            (b"\xe2\x82", b"\x82"),
            // NUL before the end dropped, at the end kept
            (b"a\0b\0", b"ab\0"),
            // surrogate code point encoded in UTF-8 (ED A0 80)
            (b"\xed\xa0\x80", b"%ud800\xed"),
        ],
    );
}

#[test]
fn hex_base64_and_digests() {
    check("hexEncode", &[(b"\x00A\xff", b"0041ff")]);
    check("hexDecode", &[(b"414a", b"AJ"), (b"41a", b"A"), (b"", b"")]);
    check(
        "sqlHexDecode",
        &[
            (b"0x414243 x 0X4a", b"ABC x J"),
            (b"0x4", b"0x4"),
            (b"0xzz", b"0xzz"),
        ],
    );
    check(
        "base64Encode",
        &[
            (b"", b""),
            (b"a", b"YQ=="),
            (b"ab", b"YWI="),
            (b"abc", b"YWJj"),
        ],
    );
    check(
        "base64Decode",
        &[
            (b"YWJj", b"abc"),
            (b"YWI=", b"ab"),
            (b"YWI", b"ab"),
            (b"YQ", b"a"),
            (b"Y", b""),
            (b"YW Jj", b""),
            (b"YWJj\r\nZA==", b"abcd"),
            (b"YWJj  \nZA==", b"abcd"),
            (b"YW=j", b""),
            (b"YWJj\0ZA==", b"abc"),
            (b"Y!Jj", b""),
        ],
    );
    check(
        "base64DecodeExt",
        &[
            (b"YWJj", b"abc"),
            (b"Y!W.J j", b"abc"),
            (b"YQ", b"a"),
            (b"Y=", b""),
            (b"YWJjZ9", b"abcg"),
        ],
    );
    check("length", &[(b"", b"0"), (b"hello", b"5")]);
    assert_eq!(t("md5", b"abc").len(), 16);
    assert_eq!(t("sha1", b"abc")[..4], [0xa9, 0x99, 0x3e, 0x36]);
}

#[test]
fn case_and_parity() {
    check("lowercase", &[(b"AbC\xc4", b"abc\xc4")]);
    check("uppercase", &[(b"aBc\xe4", b"ABC\xe4")]);
    // 'A' = 0x41 has two bits set: even already; 'C' = 0x43 has three.
    check("parityEven7bit", &[(b"AC", b"A\xc3")]);
    check("parityOdd7bit", &[(b"AC", b"\xc1C")]);
    check("parityZero7bit", &[(b"\xc1C", b"AC")]);
    check("none", &[(b"As Is", b"As Is")]);
}

/// `unchanged` never claims a transformation leaves a value alone (up to ASCII case)
/// when it does not — over many values built from the bytes transformations react to.
#[test]
fn unchanged_is_never_wrong() {
    let alphabet: &[u8] = b"aZ09 ./\\%+&#;-*'\"^,()\t\n\r\x0b\x0c\x00\xa0\xc2\xffxuX=<>";
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d_u64);
    let mut claimed = 0usize;
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let value = rng.value(alphabet, 12);
        let has = ByteSet::of(&value);
        for &(_, t) in Transform::ALL {
            if unchanged(t, &value, &has) {
                claimed += 1;
                apply(t, &value, &mut out);
                assert!(
                    out.eq_ignore_ascii_case(&value),
                    "{t}: {:?} -> {:?}",
                    String::from_utf8_lossy(&value),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
    // The claim is made often enough to matter (plain values under decoding chains).
    assert!(claimed > 100_000, "{claimed}");
}

/// `unchanged_exactly` never claims a transformation leaves a value exactly alone when it
/// does not (case included).
#[test]
fn unchanged_exactly_is_never_wrong() {
    let alphabet: &[u8] = b"aZ09 ./\\%+&#;-*'\"^,()\t\n\r\x0b\x0c\x00\xa0\xc2\xffxuX=<>@[`{";
    let mut rng = Xorshift(0x1234_5678_9abc_def1_u64);
    let (mut claimed, mut out) = (0usize, Vec::new());
    for _ in 0..20_000 {
        let value = rng.value(alphabet, 12);
        let has = ByteSet::of(&value);
        for &(_, t) in Transform::ALL {
            if unchanged_exactly(t, &value, &has) {
                claimed += 1;
                apply(t, &value, &mut out);
                assert_eq!(out, value, "{t}: {:?}", String::from_utf8_lossy(&value));
            }
        }
    }
    assert!(claimed > 80_000, "{claimed}");
    // Case-changing transformations are judged by case.
    let has = ByteSet::of(b"aA");
    assert!(!unchanged_exactly(Transform::Lowercase, b"aA", &has));
    assert!(!unchanged_exactly(Transform::Uppercase, b"aA", &has));
    let has = ByteSet::of(b"a@[`{");
    assert!(unchanged_exactly(Transform::Lowercase, b"a@[`{", &has));
}

/// The transformations `reads_case` leaves out really are blind to case: on two values
/// that differ only in ASCII case, their results differ only in case too.
#[test]
fn case_blind_decoders() {
    let alphabet: &[u8] = b"aAbBcCxXuUnN09fF%&#;\\/*-'\" <>+lLtTgGqQmMpP";
    let mut rng = Xorshift(0x0bad_5eed_1234_5678_u64);
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    for _ in 0..30_000 {
        let a = rng.value(alphabet, 14);
        // The same letters, each in a random case.
        let b: Vec<u8> = a
            .iter()
            .map(|&c| {
                if rng.next() % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        for &(_, t) in Transform::ALL {
            if reads_case(t) {
                continue;
            }
            apply(t, &a, &mut a_out);
            apply(t, &b, &mut b_out);
            assert!(
                a_out.eq_ignore_ascii_case(&b_out),
                "{t}: {:?} -> {:?} but {:?} -> {:?}",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&a_out),
                String::from_utf8_lossy(&b),
                String::from_utf8_lossy(&b_out)
            );
        }
    }
}
