//! The HTTP/2 fingerprint parser on any bytes after the client preface: never panics;
//! an incomplete answer asks for more bytes than it was given (and no more than the
//! parser reads at most); a fingerprint has its four parts and stays the same with any
//! bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_policy::fingerprint::HelloError;
use rampart_policy::fingerprint::h2::{MAX_PREFIX, PREFACE, h2_fingerprint};

fuzz_target!(|data: &[u8]| {
    let mut conn = PREFACE.to_vec();
    conn.extend_from_slice(data);
    match h2_fingerprint(&conn) {
        Ok(fp) => {
            assert_eq!(fp.split('|').count(), 4, "{fp}");
            conn.extend_from_slice(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00PINGPING");
            assert_eq!(h2_fingerprint(&conn), Ok(fp));
        }
        Err(HelloError::Incomplete(n)) => assert!(n > conn.len() && n <= MAX_PREFIX),
        Err(HelloError::Invalid(_)) => {}
    }
});
