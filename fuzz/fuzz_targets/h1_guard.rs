//! Any bytes, split at any points: the HTTP/1 framing guard never panics, never releases
//! more than it was given, and releases the same bytes however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::h1::{Guard, Limits, Step};

const LIMITS: Limits = Limits { max_uri_bytes: 256, max_head_bytes: 2048, max_headers: 16 };

fn run(data: &[u8], split: usize) -> (usize, bool) {
    let mut g = Guard::new(LIMITS);
    let (mut released, mut received) = (0, 0);
    loop {
        match g.advance(&data[released..received]) {
            Step::Pass(n) => {
                assert!(n > 0 && released + n <= received);
                released += n;
            }
            Step::NeedMore if received == data.len() => return (released, false),
            Step::NeedMore => received = (received + split).min(data.len()),
            Step::Reject(_) => return (released, true),
        }
    }
}

fuzz_target!(|input: (u8, &[u8])| {
    let (split, data) = input;
    let whole = run(data, data.len().max(1));
    let pieces = run(data, usize::from(split).max(1));
    assert_eq!(whole, pieces);
});
