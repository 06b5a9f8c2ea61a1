//! libinjection's own test vectors (`tests/test-*.txt` of its source tree: SQL tokens,
//! folding and fingerprints, HTML5 tokens) run against our implementation.
//!
//! The vectors are not part of this repository and the test machines cannot download
//! them, so the test runs when `RAMPART_LIBINJECTION_SOURCE` names a libinjection
//! checkout (`scripts/libinjection-current.sh` sets it).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)] // test support code

use std::path::{Path, PathBuf};

/// One vector: `(file name, input, expected output)`, both trimmed at the end as
/// libinjection's driver does.
fn vectors(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|path| {
            // Bytes, not text: some inputs hold Latin-1 bytes.
            let text = std::fs::read(path).expect("vector file");
            let find = |needle: &[u8]| text.windows(needle.len()).position(|w| w == needle);
            let input_at = find(b"--INPUT--\n")? + "--INPUT--\n".len();
            let expected_at = find(b"--EXPECTED--\n")?;
            let input = text[input_at..expected_at].trim_ascii_end().to_vec();
            let expected = String::from_utf8_lossy(
                text[expected_at + "--EXPECTED--\n".len()..].trim_ascii_end(),
            )
            .into_owned();
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((name, input, expected))
        })
        .collect()
}

#[test]
#[ignore = "needs RAMPART_LIBINJECTION_SOURCE: a libinjection checkout, which the test machines cannot download; scripts/libinjection-current.sh runs it"]
fn libinjection_test_vectors() {
    let root = PathBuf::from(
        std::env::var_os("RAMPART_LIBINJECTION_SOURCE")
            .expect("RAMPART_LIBINJECTION_SOURCE names a libinjection checkout"),
    );
    let dir = root.join("tests");
    let mut failures = Vec::new();
    let mut counts = Vec::new();

    // Detection (ours): the fingerprint, or nothing.
    let sqli = vectors(&dir, "test-sqli-");
    for (name, input, expected) in &sqli {
        let got = rampart_waf::libinjection::sqli(input)
            .map(|f| String::from_utf8_lossy(&f).into_owned())
            .unwrap_or_default();
        if &got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    counts.push(("test-sqli", sqli.len()));

    // The HTML5 tokenizer (ours); token text printed as C's %s does, up to a NUL.
    let html = vectors(&dir, "test-html5-");
    for (name, input, expected) in &html {
        let got: Vec<String> = rampart_waf::libinjection::html5_tokens(input)
            .into_iter()
            .map(|(kind, start, len)| {
                let text = &input[start..start + len];
                let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(len)];
                format!("{kind},{len},{}", String::from_utf8_lossy(text))
            })
            .collect();
        let got = got.join("\n");
        if got.trim_end() != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    counts.push(("test-html5", html.len()));

    // The SQL tokenizer, and its folding.
    for (prefix, folded) in [("test-tokens-", true), ("test-folding-", true)] {
        let folded = folded && prefix == "test-folding-";
        let set = vectors(&dir, prefix);
        for (name, input, expected) in &set {
            let got: Vec<String> = rampart_waf::libinjection::sql_tokens(input, folded)
                .into_iter()
                .map(|(kind, text)| format!("{kind} {}", String::from_utf8_lossy(&text)))
                .collect();
            let got = got.join("\n");
            if got.trim_end() != expected {
                failures.push(format!(
                    "{name}:\n  expected {expected:?}\n  got      {got:?}"
                ));
            }
        }
        counts.push((prefix, set.len()));
    }
    println!("vectors: {counts:?}, {} failures", failures.len());
    assert!(
        counts.iter().all(|&(_, n)| n > 0),
        "vectors missing: {counts:?}"
    );
    assert!(
        failures.is_empty(),
        "{} vectors fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
