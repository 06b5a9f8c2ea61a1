//! Any text: `load_str` returns a config or located diagnostics, never panics, and every
//! diagnostic points inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::config::{SourceFile, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let src = SourceFile::new("fuzz.toml", text);
    if let Err(diags) = load_str(&src) {
        let lines = text.lines().count().max(1);
        for d in &diags.0 {
            assert!(d.line >= 1 && d.line <= lines + 1, "line {} of {lines}", d.line);
            let _ = d.to_string();
        }
    }
});
