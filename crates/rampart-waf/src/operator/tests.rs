use std::path::Path;

use super::*;
use crate::macros::MacroRef;
use crate::seclang::{MemFs, Var};

struct Tx;
impl Resolve for Tx {
    fn resolve(&self, r: &MacroRef, out: &mut Vec<u8>) {
        if let MacroRef::Var(Var::Tx, Some(k)) = r {
            match k.as_str() {
                "methods" => out.extend_from_slice(b"GET HEAD POST"),
                "limit" => out.extend_from_slice(b"10"),
                "word" => out.extend_from_slice(b"^ab+c$"),
                _ => {}
            }
        }
    }
}

fn op(spec: &str) -> Operator {
    let mut fs = MemFs::new();
    fs.insert(
        "/r/words.data",
        "# comment\n  # indented comment\nevil\nBad Word\n\n",
    )
    .insert("/r/ips.data", "10.0.0.0/8\n# x\n192.168.1.1\n");
    let spec = crate::seclang::parse_str("t.conf", &format!("SecRule ARGS \"{spec}\" \"id:1\""));
    let Some(crate::seclang::Directive::Rule(rule)) =
        spec.directives.first().map(|d| d.directive.clone())
    else {
        panic!("{:?}", spec.diagnostics)
    };
    match Operator::compile(
        &rule.operator,
        &DataFiles {
            fs: &fs,
            dir: Path::new("/r"),
        },
    ) {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    }
}

fn yes(spec: &str, input: &[u8]) -> bool {
    op(spec).matches(input, &Tx, None)
}

#[test]
fn regular_expressions_follow_modsecurity_flags() {
    assert!(yes("@rx ^b", b"a\nb"), "multi-line ^");
    assert!(yes("@rx a.b", b"a\nb"), "dot matches newline");
    assert!(yes("@rx (?i)SELECT", b"select"));
    assert!(!yes("@rx \\w", "é".as_bytes()), "\\w is ASCII");
    assert!(yes("@rx \\x{ff}", b"\xff"), "\\x{{ff}} is a byte");
    assert!(yes("@rx [\\x{7f}-\\x{ff}]", b"\x80"));
    assert!(
        yes("@rx \\\\x\\{41\\}", b"\\x{41}"),
        "escaped backslash keeps x{{41}} literal"
    );
    assert!(yes("!@rx ^GET$", b"POST"));
    assert!(!yes("!@rx ^GET$", b"GET"));
    assert!(yes("@rx %{tx.word}", b"abbbc"), "pattern from a macro");
    let mut caps = Captures::new();
    assert!(op("@rx (a+)(x)?(b)").matches(b"zaab", &Tx, Some(&mut caps)));
    assert_eq!(
        caps,
        vec![
            (0, b"aab".to_vec()),
            (1, b"aa".to_vec()),
            (3, b"b".to_vec())
        ]
    );
    let err = Operator::compile(
        &OperatorSpec {
            op: Op::Rx,
            negated: false,
            param: "(?<=a)b".into(),
        },
        &DataFiles {
            fs: &MemFs::new(),
            dir: Path::new("/"),
        },
    );
    assert!(err.is_err_and(|e| e.starts_with("regular expression not supported")));
}

#[test]
fn phrase_matching() {
    assert!(yes("@pm foo bar", b"xxBARxx"), "case-insensitive");
    assert!(!yes("@pm foo bar", b"fo ba"));
    assert!(yes("@pm |4142|c", b"ABC"), "hex bytes");
    assert!(
        yes("@pm |41 42|c", b"x|41"),
        "a space in a hex run: the parameter is taken as written"
    );
    assert!(yes("@pm a\\:b", b"a:b"), "escaped colon");
    let mut caps = Captures::new();
    assert!(op("@pm evil bad").matches(b"a BAD thing", &Tx, Some(&mut caps)));
    assert_eq!(caps, vec![(0, b"bad".to_vec())]);
    assert!(yes("@pmFromFile words.data", b"some evil"));
    assert!(
        yes("@pmFromFile words.data", b"bad word!"),
        "a line is one phrase, spaces included"
    );
    assert!(
        !yes("@pmFromFile words.data", b"comment"),
        "comment lines are not phrases"
    );
}

#[test]
fn string_comparisons() {
    assert!(yes("@within %{tx.methods}", b"HEAD"));
    assert!(!yes("@within %{tx.methods}", b"PUT"));
    assert!(
        yes("@within %{tx.methods}", b""),
        "empty input is within anything"
    );
    assert!(yes("@contains ell", b"hello"));
    assert!(yes("@beginsWith he", b"hello") && !yes("@beginsWith lo", b"hello"));
    assert!(yes("@endsWith lo", b"hello") && !yes("@endsWith he", b"hello"));
    assert!(yes("@streq hello", b"hello") && !yes("@streq hello", b"hello "));
    assert!(yes("@containsWord select", b"1 select 2"));
    assert!(yes("@containsWord select", b"select,1"));
    assert!(yes("@containsWord select", b"x=1;select"));
    assert!(!yes("@containsWord select", b"selection"));
    assert!(
        yes("@containsWord select", b"1select"),
        "digits are boundaries"
    );
}

#[test]
fn numbers_as_c_reads_them() {
    assert!(yes("@eq 0", b"abc"), "no digits: 0");
    assert!(yes("@eq 5", b" 5xyz"));
    assert!(
        yes("@eq 0", b"99999999999"),
        "out of int range: stoi throws, 0"
    );
    assert!(yes("@lt %{tx.limit}", b"9") && !yes("@lt %{tx.limit}", b"10"));
    assert!(yes("@ge 10", b"10") && yes("@gt -1", b"") && yes("@le 0", b"-3"));
    assert!(yes("@gt 1", b"99999999999999999999999"), "atoll saturates");
}

#[test]
fn addresses_bytes_and_encodings() {
    assert!(yes("@ipMatch 127.0.0.1,10.0.0.0/8,::1", b"10.2.3.4"));
    assert!(yes("@ipMatch 127.0.0.1,10.0.0.0/8,::1", b"::1"));
    assert!(!yes("@ipMatch 127.0.0.1", b"127.0.0.2"));
    assert!(
        yes("@ipMatch ::ffff:192.168.1.1", b"192.168.1.1"),
        "mapped range, plain address"
    );
    assert!(
        yes("@ipMatch 192.168.1.0/24", b"::ffff:192.168.1.9"),
        "plain range, mapped address"
    );
    assert!(
        yes("@ipMatch ::ffff:10.0.0.0/104", b"10.1.1.1"),
        "mapped prefix"
    );
    assert!(
        yes("@ipMatch ::/80", b"::ffff:255.255.255.255"),
        "IPv6 range compares mapped addresses as IPv6"
    );
    assert!(
        yes("@ipMatch 10.10.10.0/21", b"10.10.8.1"),
        "host bits past the prefix ignored"
    );
    assert!(!yes("@ipMatch 127.0.0.1", b"not an ip"));
    assert!(
        yes("@ipMatchFromFile ips.data", b"192.168.1.1")
            && yes("@ipMatchFromFile ips.data", b"10.9.9.9")
    );
    assert!(yes("@validateByteRange 32-126", b"abc\x01"));
    assert!(!yes("@validateByteRange 32-126, 9", b"a\tb"));
    assert!(yes("@validateUrlEncoding", b"a%2") && yes("@validateUrlEncoding", b"%zz"));
    assert!(!yes("@validateUrlEncoding", b"a%20b") && !yes("@validateUrlEncoding", b""));
    assert!(!yes("@validateUtf8Encoding", "héllo €".as_bytes()));
    assert!(yes("@validateUtf8Encoding", b"\xc0\xaf"), "overlong");
    assert!(yes("@validateUtf8Encoding", b"\xed\xa0\x80"), "surrogate");
    assert!(yes("@validateUtf8Encoding", b"abc\xe2\x82"), "truncated");
    assert!(
        !yes("@validateUtf8Encoding", b"\xf4\x90\x80\x80"),
        "above U+10FFFF passes, as in ModSecurity"
    );
    assert!(yes("@unconditionalMatch", b"") && !yes("@noMatch", b"x"));
}

#[test]
fn compile_errors_say_why() {
    let files = DataFiles {
        fs: &MemFs::new(),
        dir: Path::new("/r"),
    };
    let e = |op, param: &str| {
        Operator::compile(
            &OperatorSpec {
                op,
                negated: false,
                param: param.into(),
            },
            &files,
        )
        .err()
        .unwrap_or_default()
    };
    assert!(e(Op::PmFromFile, "missing.data").starts_with("cannot read data file /r/missing.data"));
    assert!(e(Op::PmFromFile, "https://example.com/x").contains("disk only"));
    assert_eq!(
        e(Op::IpMatch, "10.0.0.300"),
        "`10.0.0.300` is not an IP address or CIDR range"
    );
    assert_eq!(
        e(Op::IpMatch, "10.0.0.0/33"),
        "`10.0.0.0/33` is not an IP address or CIDR range"
    );
    assert_eq!(
        e(Op::ValidateByteRange, "10-300"),
        "`10-300` is not a byte or byte range (0-255)"
    );
    assert_eq!(
        e(Op::ValidateByteRange, "20-10"),
        "empty byte range `20-10`"
    );
    assert_eq!(e(Op::Rbl, "x"), "@rbl is not supported yet");
}

#[test]
fn pcre_spellings_translate_with_their_meaning() {
    let t = |p: &str| super::pcre_to_regex(p);
    assert_eq!(t(r"\x{ff}\xA\e"), r"\xFF\x0A\x1B");
    assert_eq!(
        t(r#"\"\'\<\/"#),
        r"\x22\x27\x3C\x2F",
        "escaped punctuation is a literal byte"
    );
    assert_eq!(
        t(r"a{2}b{1,}c{1,3}"),
        r"a{2}b{1,}c{1,3}",
        "counted repetitions stay"
    );
    assert_eq!(
        t(r"^\(\s*\)\s+{"),
        r"^\x28\s*\x29\s+\{",
        "a lone brace is a literal"
    );
    assert_eq!(t(r"{{.*?}}"), r"\{\{.*?\}\}");
    assert_eq!(t(r"[]a]"), r"[\]a]", "a leading ] is a member");
    assert_eq!(t(r"[^]a]"), r"[^\]a]");
    assert_eq!(t(r"[a[b]"), r"[a\[b]", "[ inside a class is a member");
    assert_eq!(t(r"[[:alpha:]x]"), r"[[:alpha:]x]", "POSIX classes stay");
    assert_eq!(t(r"[&&~~]"), r"[\x26\x26\x7E\x7E]", "not set operators");
    assert_eq!(
        t(r"[a-z\w-.]"),
        r"[a-z\w\-.]",
        "a dash after a class escape is a member"
    );
    assert_eq!(t(r"[a-]"), r"[a\-]");
    assert_eq!(
        t("[’]"),
        r"[\xE2\x80\x99]",
        "non-UTF mode: each byte is a member"
    );
    assert_eq!(t(r"[\0\012]"), r"[\x00\x0A]");
    // And they compile, and match what PCRE would.
    let m = |p: &str, input: &[u8]| {
        super::regex(p)
            .map(|re| re.is_match(input))
            .unwrap_or(false)
    };
    assert!(m(r"^\(\s*\)\s+{", b"() {"));
    assert!(m(r"[\w-.]+@", b"a-b.c@"));
    assert!(m("[’]", b"\x80"));
    assert!(m(r#"[\"\']x"#, b"'x"));
    assert!(!m(r"\<", b"a b"), "not a word boundary");
    assert!(m(r"\<", b"<"));
}
