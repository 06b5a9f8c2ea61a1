//! Every transformation on any bytes: never panics, and the decoders never grow their
//! input (each escape they decode is at least as long as what it becomes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_waf::seclang::Transform;
use rampart_waf::transform::apply;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for &(_, t) in Transform::ALL {
        apply(t, data, &mut out);
        let grows = matches!(
            t,
            Transform::Base64Encode
                | Transform::HexEncode
                | Transform::UrlEncode
                | Transform::Utf8ToUnicode
                | Transform::Length
                | Transform::Md5
                | Transform::Sha1
                | Transform::RemoveComments
                | Transform::ReplaceComments
        );
        if !grows {
            assert!(out.len() <= data.len(), "{t:?} grew {} -> {}", data.len(), out.len());
        }
    }
});
