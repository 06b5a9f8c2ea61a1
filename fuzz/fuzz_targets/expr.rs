//! The rule expression compiler on any text: never panics; an error's span lies inside
//! the text and renders; a compiled expression evaluates against a request without
//! panicking (as a condition, and as a rate-limit key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_policy::list::{ListKind, Lists, parse};
use rampart_policy::{Expr, Request};
use rampart_policy::expr::KeyExpr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lists = Lists::new();
    if let Ok(l) = parse(ListKind::Ip, "10.0.0.0/8\n") {
        lists.insert("office", l);
    }
    let mut h = http::HeaderMap::new();
    h.insert("cookie", http::HeaderValue::from_static("a=1; b"));
    h.insert("user-agent", http::HeaderValue::from_static("Mozilla/5.0"));
    let req = Request::new([10, 1, 2, 3].into(), "POST", "h", "/p?x=%41&y", &h);
    match Expr::compile(text, &lists) {
        Ok(e) => {
            let _ = e.matches(&req);
        }
        Err(e) => {
            assert!(e.span.start <= text.len() && e.span.end <= text.len() && e.span.start <= e.span.end);
            let _ = e.render(text);
        }
    }
    if let Ok(k) = KeyExpr::compile(text, &lists) {
        let mut out = Vec::new();
        let _ = k.write(&req, &mut out);
    }
});
