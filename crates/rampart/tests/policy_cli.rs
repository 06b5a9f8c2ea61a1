//! The policy commands of the `rampart` binary: `explain` (the decision trace of a raw
//! request without a running edge), `report` (the onboarding report), `policy fields`,
//! and `geo asn-mmdb` (an ASN database from CSV, then used by `explain`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rampart"))
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rampart-policy-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

const CONFIG: &str = r#"
[geo]
asn = ["asn.mmdb"]
[[tenant]]
id = "t"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
[[pool]]
id = "p"
tenant = "t"
servers = ["127.0.0.1:9"]
[[site]]
id = "shop"
tenant = "t"
hosts = ["shop.test"]
route = [{ path = "/", pool = "p" }]
[site.policy]
monitor = true
[[site.policy.rule]]
id = "tag-curl"
expression = 'lower(http.user_agent) contains "curl"'
action = "tag"
tag = "tool"
[[site.policy.rule]]
id = "cloud-login"
expression = 'ip.src.asn == 13335 and http.request.uri.path == "/login"'
action = "block"
description = "no logins from that cloud"
[[site.policy.rule]]
id = "role"
expression = 'http.request.body.args["role"][0] == "admin"'
action = "challenge"
"#;

#[test]
fn geo_asn_mmdb_then_explain_traces_the_decision() {
    let dir = temp("explain");
    std::fs::write(
        dir.join("asn.csv"),
        "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n2001:db8::,2001:db8::ffff,64500,Doc\n",
    )
    .unwrap();
    let out = run(
        &[
            "geo",
            "asn-mmdb",
            "--csv",
            dir.join("asn.csv").to_str().unwrap(),
            "-o",
            dir.join("asn.mmdb").to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 rows"));
    let cfg = dir.join("rampart.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let cfg = cfg.to_str().unwrap();

    // Read from standard input, with bare LF line ends.
    let req = b"POST /login HTTP/1.1\nHost: shop.test\nUser-Agent: curl/8.5\nContent-Type: application/x-www-form-urlencoded\nContent-Length: 10\n\nrole=admin";
    let out = run(&["explain", "-c", cfg, "--client-ip", "1.0.0.7"], req);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("site: shop, route: /"), "{text}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("tag-curl") && lines[0].contains("would_note"),
        "{text}"
    );
    assert!(
        lines[1].contains("cloud-login")
            && lines[1].contains("would_block")
            && lines[1].contains("no logins from that cloud"),
        "{text}"
    );
    assert!(
        lines[2].contains("role") && lines[2].contains("would_challenge"),
        "{text}"
    );
    assert!(
        text.contains("final: pass; would block (by rule cloud-login)"),
        "{text}"
    );

    // Another address: not that network.
    let out = run(&["explain", "-c", cfg, "--client-ip", "2001:db8::1"], req);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("cloud-login"), "{text}");

    // A request file, and requests that cannot be explained.
    std::fs::write(
        dir.join("req.http"),
        "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n",
    )
    .unwrap();
    let out = run(
        &["explain", "-c", cfg, dir.join("req.http").to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no site serves host `other.test`"));
    let out = run(
        &["explain", "-c", cfg],
        b"GET / HTTP/1.1\r\nHost: shop.test\r\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("incomplete"));
    let out = run(&["explain", "-c", cfg], b"\x01\x02 nonsense\r\n\r\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not parse"));
    // A configuration error is reported as `check` reports it.
    std::fs::write(
        dir.join("bad.toml"),
        CONFIG.replace("ip.src.asn == 13335", "ip.src.asm == 13335"),
    )
    .unwrap();
    let out = run(
        &["explain", "-c", dir.join("bad.toml").to_str().unwrap()],
        req,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `ip.src.asn`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn report_and_fields() {
    let log = r#"{"@timestamp":"2026-12-01T10:00:00.000Z","rampart.site":"shop","http.request.id":"r1","http.request.method":"POST","url.path":"/login","rampart.decision":[{"source":"limit","id":"login","outcome":"would_block"}]}
{"@timestamp":"2026-12-01T11:00:00.000Z","rampart.site":"shop","http.request.id":"r2","http.request.method":"POST","url.path":"/login","rampart.decision":[{"source":"limit","id":"login","outcome":"would_block"}]}
"#;
    let out = run(&["report"], log.as_bytes());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.lines().any(|l| l.starts_with("2026-12-01")
            && l.contains("login")
            && l.contains("would_block")
            && l.contains(" 2 ")
            && l.contains("r1 POST /login; r2 POST /login")),
        "{text}"
    );
    assert!(text.contains("2 lines read; 0 without a verdict"), "{text}");
    let out = run(&["report", "/nonexistent/security.log"], b"");
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["policy", "fields"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    for f in [
        "ip.src.asn",
        "http.request.headers",
        "waf.score",
        "http.response.code",
        "cidr(address",
    ] {
        assert!(text.contains(f), "{f}: {text}");
    }
}
