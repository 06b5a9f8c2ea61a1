//! The request body processors on any bytes: JSON, XML and multipart never panic, and
//! what they return stays within the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_waf::body::{json_args, multipart, xml_values};

fuzz_target!(|data: &[u8]| {
    let j = json_args(data, 64);
    assert!(j.args.iter().all(|(_, v)| v.len() <= data.len()));
    let _ = xml_values(data);
    // The first line is the Content-Type, the rest the body.
    let (ct, body) = match data.iter().position(|&c| c == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &b""[..]),
    };
    let m = multipart(ct, body);
    assert!(m.args.iter().all(|(_, v)| v.len() <= body.len()));
    assert!(m.files.iter().all(|f| f.2 <= body.len()));
});
