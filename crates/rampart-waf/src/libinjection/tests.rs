use super::*;

#[test]
fn sql_injections_have_libinjections_fingerprints() {
    assert_eq!(sqli(b"1' or '1'='1").as_deref(), Some(&b"s&sos"[..]));
    assert_eq!(
        sqli(b"1 UNION SELECT password FROM users").as_deref(),
        Some(&b"1UEnk"[..])
    );
    assert!(sqli(b"admin'--").is_some());
}

#[test]
fn ordinary_text_is_not_sql() {
    for text in [
        &b""[..],
        b"hello world",
        b"O'Reilly",
        b"sexy and 17",
        b"1 union",
        b"3-4",
    ] {
        assert_eq!(sqli(text), None, "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn into_outfile_is_not_whitelisted_as_a_keyword_in_the_middle() {
    // The three-token shape "v k s" is text unless the keyword is INTO OUTFILE/DUMPFILE.
    assert_eq!(
        sqli(b"localtimestamp into outfile 'a'").as_deref(),
        Some(&b"vks"[..])
    );
}

#[test]
fn generations_differ_only_where_libinjection_changed() {
    // "onloadx" starts with an event name: XSS in both; "onabcde" only in 3.10, which
    // took any attribute of five characters or more starting with "on".
    assert!(xss_as(b"<a onloadx=alert(1)>", Generation::Current));
    assert!(xss_as(b"<a onloadx=alert(1)>", Generation::V3_10));
    assert!(!xss_as(b"<a onabcde=1>", Generation::Current));
    assert!(xss_as(b"<a onabcde=1>", Generation::V3_10));
    assert!(!xss_as(b"<a onab=1>", Generation::V3_10));
}

#[test]
fn xss_vectors_in_every_context() {
    for v in [
        &b"<script>alert(1)</script>"[..],
        b"<img src=x onerror=alert(1)>",
        b"\" onmouseover=\"alert(1)",
        b"<a href=\"&#106;avascript:alert(1)\">",
        b"<a href=\"&#x14A;avascript:alert(1)\">",
        b"<!DOCTYPE html>",
        b"<!--[if IE]><script>x</script><![endif]-->",
        b"<svg/onload=alert(1)>",
        b"<div style=\"x\">",
    ] {
        assert!(xss(v), "{:?}", String::from_utf8_lossy(v));
    }
    for v in [
        &b"hello <b>world</b>"[..],
        b"a < b > c",
        b"<a href=\"/home\">",
        b"x=1&y=2",
    ] {
        assert!(!xss(v), "{:?}", String::from_utf8_lossy(v));
    }
}

#[test]
fn character_references_decode_like_c() {
    assert_eq!(decode_char(b"&#106;x", 7), (106, 6));
    assert_eq!(decode_char(b"&#x6A", 5), (0x6a, 5));
    assert_eq!(decode_char(b"&amp;", 5), (i32::from(b'&'), 1));
    assert_eq!(decode_char(b"&#", 2), (i32::from(b'&'), 1));
    assert_eq!(decode_char(b"&#99999999;", 11), (i32::from(b'&'), 1));
}

#[test]
fn the_keyword_table_is_sorted_for_binary_search() {
    let table = libinjectionrs::sqli::sqli_data::SQL_KEYWORDS;
    assert!(
        table
            .windows(2)
            .all(|w| w[0].word.as_bytes() < w[1].word.as_bytes())
    );
    assert_eq!(sqli::lookup(b"union"), b'U');
    assert_eq!(sqli::lookup(b"0S&SOS"), sqli::FINGERPRINT);
    assert_eq!(sqli::lookup(b"no-such-word"), 0);
    // Every entry is found through the hash table, in any case.
    for k in table {
        assert_eq!(sqli::lookup(k.word.as_bytes()), k.token_type, "{}", k.word);
        let lower = k.word.to_ascii_lowercase();
        assert_eq!(sqli::lookup(lower.as_bytes()), k.token_type, "{}", k.word);
    }
    assert!(table.len() < usize::from(u16::MAX));
}

#[test]
fn latin1_no_break_space_separates_words_as_in_mysql() {
    assert_eq!(
        sqli(b"1\xa0UNION\xa0SELECT\xa02--").as_deref(),
        Some(&b"1UE1c"[..])
    );
}

#[test]
fn values_of_digits_alone_read_as_one_number_whatever_their_digits() {
    // The premise of `sqli`'s shortcut for digits: the full reading gives fingerprint `1`,
    // no MySQL-comment rereading, and `1` is not in the table.
    assert!(!digits_fingerprint_listed());
    let mut values: Vec<Vec<u8>> = ["0", "00", "0123", "7", "42", "1000000", "0000"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    for len in 1..80 {
        values.push(
            (0..len)
                .map(|i| b'0' + ((i * 7 + len) % 10) as u8)
                .collect(),
        );
    }
    for v in &values {
        let r = Reading::of(v, sqli::QUOTE_NONE | sqli::SQL_ANSI);
        assert_eq!(
            r.fingerprint.as_bytes(),
            b"1",
            "{:?}",
            String::from_utf8_lossy(v)
        );
        assert!(!r.sqli && !r.mysql_comments);
        assert_eq!(sqli(v), None);
    }
    // A letter, a dot or a sign is not digits alone: those take the full reading.
    assert_eq!(sqli(b"1 UNION SELECT 1").as_deref(), Some(&b"1UE1"[..]));
}
