//! In-process cost of one transaction through the full OWASP CRS v4 (all phases), at
//! paranoia levels 1 and 2: a benign GET with 12 header fields, a 2 KiB urlencoded form,
//! a 2 KiB JSON body, and an attack GET. CRS is read from ../shared/crs. The engine
//! allocates with mimalloc, as it does inside the `rampart` binary.
#![allow(missing_docs, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_waf::engine::{RequestInfo, Ruleset, Transaction};
use rampart_waf::seclang::{self, OsFs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn crs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs")
}

fn ruleset(paranoia: u8) -> Ruleset {
    let crs = crs_dir().canonicalize().expect("CRS at ../shared/crs");
    let conf = format!(
        "SecRuleEngine On\nSecRequestBodyAccess On\nSecResponseBodyAccess On\n\
         SecResponseBodyMimeType text/plain text/html application/json\n\
         SecRule REQUEST_HEADERS:Content-Type \"^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
         Include {crs}/crs-setup.conf.example\n\
         SecAction \"id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level={paranoia}\"\n\
         Include {crs}/rules/*.conf\n",
        crs = crs.display()
    );
    let path = std::env::temp_dir().join(format!(
        "rampart-bench-crs-pl{paranoia}-{}.conf",
        std::process::id()
    ));
    std::fs::write(&path, conf).unwrap();
    let loaded = seclang::load(&OsFs, &path);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let rs = Ruleset::compile(&loaded, &OsFs);
    assert!(rs.errors.is_empty(), "{:?}", rs.errors);
    let _ = std::fs::remove_file(path);
    rs
}

struct Req {
    method: &'static str,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = [
        ("Host", "shop.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-GB,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Referer", "https://shop.example.com/catalog?page=2"),
        ("Cookie", "session=3f9a1c2b7d; theme=dark; cart=17"),
        ("Connection", "keep-alive"),
        ("Upgrade-Insecure-Requests", "1"),
        ("Sec-Fetch-Dest", "document"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Cache-Control", "max-age=0"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    for (a, b) in extra {
        h.push(((*a).to_owned(), (*b).to_owned()));
    }
    h
}

fn cases() -> Vec<(&'static str, Req)> {
    let form: String = {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < 2048 {
            s.push_str(&format!("field{i:02}=alpha+bravo+charlie+{i}&"));
            i += 1;
        }
        s.truncate(2048);
        s
    };
    let json: String = {
        let mut s = String::from("{\"items\":[");
        let mut i = 0;
        while s.len() < 2030 {
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"item number {i}\",\"qty\":2}},"
            ));
            i += 1;
        }
        s.pop();
        s.push_str("]}");
        s
    };
    let mut form_headers = headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
    form_headers.retain(|(k, _)| k != "Upgrade-Insecure-Requests");
    vec![
        ("benign_get_12_headers", Req { method: "GET", uri: "/catalog/item.html?id=1234&color=blue".into(), headers: headers(&[]), body: Vec::new() }),
        ("form_2k", Req { method: "POST", uri: "/checkout".into(), headers: form_headers, body: form.into_bytes() }),
        ("json_2k", Req { method: "POST", uri: "/api/cart".into(), headers: headers(&[("Content-Type", "application/json")]), body: json.into_bytes() }),
        (
            "attack_get",
            Req {
                method: "GET",
                uri: "/search?q=%27%20UNION%20SELECT%20password%20FROM%20users--&x=%3Cscript%3Ealert(1)%3C/script%3E".into(),
                headers: headers(&[]),
                body: Vec::new(),
            },
        ),
    ]
}

fn run(rs: &Ruleset, r: &Req) -> usize {
    let mut tx = Transaction::new(
        rs,
        RequestInfo {
            remote_addr: "198.51.100.7".into(),
            remote_port: 50000,
            server_addr: "10.0.0.1".into(),
            server_port: 443,
            unique_id: "bench".into(),
        },
    );
    tx.set_request_line(r.method.as_bytes(), r.uri.as_bytes(), "1.1");
    for (k, v) in &r.headers {
        tx.add_request_header(k.as_bytes(), v.as_bytes());
    }
    let len = r.body.len().to_string();
    if !r.body.is_empty() {
        tx.add_request_header(b"Content-Length", len.as_bytes());
    }
    tx.process_request_headers();
    tx.process_request_body(&r.body);
    tx.process_response_headers(
        200,
        "HTTP/1.1",
        &[(b"Content-Type".to_vec(), b"text/html".to_vec())],
    );
    tx.process_response_body(b"<html><body>ok</body></html>");
    tx.process_logging();
    tx.matched_rules().len()
}

fn bench(c: &mut Criterion) {
    for pl in [1u8, 2] {
        let rs = ruleset(pl);
        let mut g = c.benchmark_group(format!("crs_pl{pl}"));
        for (name, req) in cases() {
            let fired = run(&rs, &req);
            if name == "attack_get" {
                assert!(fired > 0, "the attack must be detected");
            }
            g.bench_function(name, |b| b.iter(|| black_box(run(&rs, black_box(&req)))));
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
