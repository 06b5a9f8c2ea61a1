//! Any bytes, split at any points: the edge's HTTP/1.1 server parser (request heads and
//! body decoding, message after message) never panics, and finds the same messages
//! however the input is split. A head the framing guard releases builds the same request
//! from the guard's layout as from parsing it again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let (split, data) = input;
    let whole = rampart_edge::server::fuzz_stream(data, data.len().max(1));
    let pieces = rampart_edge::server::fuzz_stream(data, usize::from(split).max(1));
    assert_eq!(whole, pieces);
    rampart_edge::server::fuzz_layout(data);
});
