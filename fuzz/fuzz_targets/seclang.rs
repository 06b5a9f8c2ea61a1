//! Any text as a rule file: `parse_str` returns directives and located diagnostics,
//! never panics, and every diagnostic points at a line of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let loaded = rampart_waf::seclang::parse_str("fuzz.conf", text);
    let lines = text.split('\n').count().max(1);
    for d in &loaded.diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}", d.line);
        let _ = d.to_string();
    }
    for d in &loaded.directives {
        assert!(d.origin.line >= 1 && d.origin.line as usize <= lines);
    }
});
