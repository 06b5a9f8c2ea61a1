//! The challenge page in a real browser: `rampart serve` on TLS, a small HTML origin,
//! and headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `tools/browser/challenge.mjs`). Chromium runs the page's script, gets its clearance
//! and continues to the origin by itself — for a navigation, and for a form post whose
//! fields must reach the origin after the check. The security events record Chromium's
//! real JA4 and HTTP/2 fingerprints.
//!
//! `scripts/test.sh` installs `chromium` (apt) and playwright-core (npm, in
//! `tools/browser`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Plain threads drive the child processes: no async runtime to block.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Proc, free_port, wait_port};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTML origin: `/form` is a login form posting to `/login`; `/login` shows the body
/// it received (`#posted`); anything else is a page with `#origin`. Bodies it received
/// are kept in `posted`.
fn html_origin(posted: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let posted = posted.clone();
            std::thread::spawn(move || {
                let mut acc = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => acc.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&acc[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while acc.len() < end + 4 + len {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => acc.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&acc[end + 4..end + 4 + len]).to_string();
                    acc.drain(..end + 4 + len);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let page = if path == "/form" {
                        "<html><body><form method=\"post\" action=\"/login\">\
                         <input name=\"user\" value=\"ann\"><input name=\"password\" value=\"p&amp;ss word\">\
                         <button id=\"go\" type=\"submit\">Go</button></form></body></html>"
                            .to_owned()
                    } else if path == "/login" {
                        posted.lock().unwrap().push(body.clone());
                        format!("<html><body><p id=\"posted\">{body}</p></body></html>")
                    } else {
                        format!("<html><body><p id=\"origin\">origin page {path}</p></body></html>")
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
                        page.len()
                    );
                    if s.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn chromium_solves_the_challenge_and_continues_with_its_request() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tools = root.join("tools/browser");
    assert!(
        tools.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: scripts/test.sh installs it (npm ci in tools/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test.sh installs Debian's chromium"
    );
    let dir = std::env::temp_dir().join(format!("rampart-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["shop.test".to_string()]).unwrap();
    std::fs::write(dir.join("shop.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("shop.key"), ck.key_pair.serialize_pem()).unwrap();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let origin = html_origin(posted.clone());
    let port = free_port();
    let events = dir.join("security.log");
    let cfg = format!(
        r#"
[edge]
access_log = "off"
security_log = "{events}"
[[tenant]]
id = "acme"
[[listener]]
name = "tls"
bind = "127.0.0.1:{port}"
tls = true
[[certificate]]
name = "shop"
cert = "{dir}/shop.crt"
key = "{dir}/shop.key"
default = true
[[pool]]
id = "web"
tenant = "acme"
servers = ["{origin}"]
[[site]]
id = "shop"
tenant = "acme"
hosts = ["shop.test"]
route = [{{ path = "/", pool = "web" }}]
[site.policy]
[[site.policy.rule]]
id = "check"
expression = 'http.request.uri.path starts_with "/account" or http.request.uri.path == "/login"'
action = "challenge"
"#,
        events = events.display(),
        dir = dir.display(),
    );
    let cfg_path = dir.join("rampart.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _edge = Proc(
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["serve", "-c"])
            .arg(&cfg_path)
            .env("RAMPART_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_port(SocketAddr::from(([127, 0, 0, 1], port))));

    let out = Command::new("node")
        .arg(tools.join("challenge.mjs"))
        .arg(format!("https://shop.test:{port}"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(v["error"].is_null(), "{v}");
    eprintln!("browser: {v}");
    // The navigation ended on the origin's page; the clearance cookie is HttpOnly and
    // Secure (TLS); a second visit is not challenged.
    assert_eq!(v["get_text"], "origin page /account");
    let cookie = v["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rampart_clearance")
        .unwrap_or_else(|| panic!("no clearance cookie: {v}"));
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    assert_eq!(v["again_status"], 200);
    // The form post: challenged, answered by the script, sent again by 307, and the
    // origin got the same fields once.
    assert_eq!(v["post_text"], "user=ann&password=p%26ss+word");
    assert_eq!(*posted.lock().unwrap(), ["user=ann&password=p%26ss+word"]);
    let statuses: Vec<(String, String, u64)> = v["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_owned(),
                s[1].as_str().unwrap().to_owned(),
                s[2].as_u64().unwrap(),
            )
        })
        .collect();
    let has =
        |m: &str, p: &str, st: u64| statuses.iter().any(|s| s.0 == m && s.1 == p && s.2 == st);
    assert!(has("GET", "/account", 403), "{statuses:?}");
    assert!(
        has("GET", "/.rampart/challenge/verify", 303),
        "{statuses:?}"
    );
    assert!(has("POST", "/login", 403), "{statuses:?}");
    assert!(
        has("POST", "/.rampart/challenge/verify", 307),
        "{statuses:?}"
    );
    assert!(has("POST", "/login", 200), "{statuses:?}");

    // The events of the challenged requests carry Chromium's own fingerprints.
    let text = std::fs::read_to_string(&events).unwrap_or_default();
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap();
    let ja4 = first["tls.client.ja4"].as_str().unwrap_or("");
    let h2 = first["http.request.fingerprint"].as_str().unwrap_or("");
    eprintln!("chromium: ja4 {ja4}, http/2 {h2}");
    assert!(ja4.starts_with("t13d") && ja4.contains("h2_"), "{first}");
    assert!(
        h2.ends_with("|m,a,s,p"),
        "Chromium's pseudo-header order: {first}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::thread::sleep(Duration::from_millis(10));
}
