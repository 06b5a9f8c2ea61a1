//! Any text as an `@rx` pattern: the PCRE-to-regex translation and compilation return a
//! regex or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pattern) = std::str::from_utf8(data) else { return };
    if let Ok(re) = rampart_waf::operator::regex(pattern) {
        let _ = re.is_match(data);
    }
});
