//! The prefilter scans *plain* values (letters, digits, space, `.`, `-`, `_`, `@`) with
//! only the rules that can match such a value at all, as decided at load from each rule's
//! expression and transformations. This holds that decision to the rules themselves: the
//! words of every CRS regression-suite request, reduced to plain bytes (`union select`,
//! `etc passwd`, `cmd.exe`, `document.cookie`…), are sent as argument values and names,
//! a header and a JSON body, through the ruleset with the prefilter and without it — the
//! same rules must fire.

use std::path::Path;

/// `bytes` with every run of bytes outside the plain alphabet turned into one space.
fn plain(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &c in bytes {
        if c.is_ascii_alphanumeric() || b" .-_@".contains(&c) {
            out.push(c);
        } else if out.last() != Some(&b' ') {
            out.push(b' ');
        }
    }
    out
}

fn url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &c in bytes {
        if c.is_ascii_alphanumeric() {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Requests carrying `text` (plain) in the places rules read.
fn requests(text: &[u8]) -> Vec<Vec<u8>> {
    let t = String::from_utf8_lossy(text).into_owned();
    let name: String = t.chars().filter(|c| *c != ' ').take(60).collect();
    let q = url_encode(text);
    let json = format!("{{\"{name}\":\"{t}\",\"list\":[\"{t}\"]}}");
    vec![
        format!(
            "GET /?q={q}&{n}=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0\r\n\
             Accept: */*\r\nX-Plain: {t}\r\n\r\n",
            n = url_encode(name.as_bytes())
        )
        .into_bytes(),
        format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        )
        .into_bytes(),
    ]
}

#[test]
fn plain_values_are_decided_alike_with_and_without_the_prefilter() {
    let crs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs");
    let load =
        || rampart_waf::ftw::harness_ruleset(&crs).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let with = load();
    let without = load().without_prefilter();
    let files = rampart_waf::ftw::load_tests(&crs.join("tests/regression/tests"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for file in &files {
        for test in &file.tests {
            for stage in &test.stages {
                let Ok(raw) = &stage.request else { continue };
                // The request line and body: where the payloads are.
                let line_end = raw
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .unwrap_or(raw.len());
                let body = raw
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(&raw[raw.len()..], |p| &raw[p + 4..]);
                for part in [&raw[..line_end], body] {
                    // Percent-decoded first, so that `%20` and `+` become the spaces
                    // between words.
                    let mut decoded = Vec::new();
                    rampart_waf::transform::url_decode(part, &mut decoded);
                    let p = plain(&decoded);
                    let p = p.trim_ascii();
                    if !p.is_empty() && !texts.iter().any(|t| t == p) {
                        texts.push(p.iter().copied().take(400).collect());
                    }
                }
            }
        }
    }
    let (mut sent, mut fired, mut differ) = (0usize, 0usize, Vec::new());
    for text in &texts {
        for raw in requests(text) {
            let a = rampart_waf::ftw::evaluate(&with, &raw);
            let b = rampart_waf::ftw::evaluate(&without, &raw);
            sent += 1;
            fired += b.fired.len();
            if a.fired != b.fired {
                differ.push(format!(
                    "{:?}: with prefilter {:?}, without {:?}",
                    String::from_utf8_lossy(text),
                    a.fired,
                    b.fired
                ));
            }
        }
    }
    println!("{sent} requests with plain values, {fired} rule matches compared");
    assert!(
        sent > 3000 && fired > 3000,
        "{sent} requests, {fired} matches"
    );
    assert!(
        differ.is_empty(),
        "{} requests decided differently:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
