//! Any bytes as an origin's HTTP/1.1 response head: when the edge keeps its fields as
//! sent (raw, for an HTTP/1.1 client), they are exactly the fields the field map would
//! forward, in CRLF lines, with the same framing; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rampart_edge::upstream::h1::fuzz_response_head(data);
});
