//! The list loaders on any text: `ip`, `country`, `asn` and `string` lists, and the ASN
//! CSV tables `rampart geo asn-mmdb` reads, never panic; every error points at a line of
//! the text; a loaded IP list answers any address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_policy::list::{List, ListKind, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    for kind in [ListKind::Ip, ListKind::Country, ListKind::Asn, ListKind::Str] {
        match parse(kind, text) {
            Ok(List::Ip(set)) => {
                let _ = set.contains([10, 0, 0, 1].into());
                let _ = set.contains("2001:db8::1".parse().unwrap_or([0u8; 16].into()));
            }
            Ok(_) => {}
            Err(errors) => assert!(errors.iter().all(|e| e.line >= 1 && e.line <= lines)),
        }
    }
    let mut w = rampart_policy::geo::Writer::new("fuzz");
    if let Err(e) = rampart_policy::geo::add_asn_csv(&mut w, text) {
        assert!(e.line >= 1 && e.line <= lines);
    }
});
