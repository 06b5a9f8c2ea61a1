//! The ClientHello parser on any bytes: never panics; an incomplete answer asks for more
//! bytes than it was given; a hello that parses gives a well-formed JA4 (36 characters)
//! and parses the same with any bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_policy::fingerprint::{HelloError, Transport, client_hello, ja4};

fuzz_target!(|data: &[u8]| {
    match client_hello(data) {
        Ok(ch) => {
            let fp = ja4(&ch, Transport::Tcp);
            assert_eq!(fp.len(), 36, "{fp}");
            let mut more = data.to_vec();
            more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
            assert_eq!(client_hello(&more), Ok(ch));
        }
        Err(HelloError::Incomplete(n)) => assert!(n > data.len()),
        Err(HelloError::Invalid(_)) => {}
    }
});
