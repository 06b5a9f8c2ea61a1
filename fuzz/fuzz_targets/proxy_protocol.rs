//! Any bytes: the PROXY protocol parser never panics; a complete header never claims
//! more bytes than it was given; and a valid header stays valid with more bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::proxy_protocol::{Error, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(h) => {
            assert!(h.len <= data.len());
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(parse(&longer), Ok(h));
        }
        Err(Error::Incomplete) => {
            // a prefix of a valid header: any shorter prefix is incomplete too
            for n in 1..data.len().min(64) {
                assert_ne!(parse(&data[..n]).err().map(|e| matches!(e, Error::Invalid(_))), Some(true), "prefix {n} invalid but longer input incomplete");
            }
        }
        Err(Error::Invalid(_)) => {}
    }
});
