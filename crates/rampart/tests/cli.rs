//! The `rampart` binary as a user runs it: `check`, `serve` with signals, `reload`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// This test drives a child process from plain threads: no async runtime to block.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Proc, free_port, origin, wait_port};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rampart"))
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rampart-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `rampart check -c CFG`.
fn rampart_check(cfg: impl AsRef<std::ffi::OsStr>) -> std::process::Output {
    Command::new(bin())
        .args(["check", "-c"])
        .arg(cfg)
        .output()
        .unwrap()
}

/// `rampart check` compiles the WAF rules too: a broken exclusion file is reported at its
/// own file:line:col, a missing rules path at the configuration's.
#[test]
fn check_reports_waf_rule_errors_where_they_are() {
    let dir = temp("waf-check");
    let crs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs");
    std::fs::write(
        dir.join("mine.conf"),
        "# my exclusions\nSecRuleRemoveById 942100\nSecRule ARGS \"@rx a\" \"id:10,phase:2,pass,t:lowercas\"\n",
    )
    .unwrap();
    let base = format!(
        "[[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n[[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"127.0.0.1:9\"]\n[[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"*\"]\nroute = [{{ path = \"/\", pool = \"p\" }}]\n[site.waf]\nrules = \"{}\"\n",
        crs.display()
    );
    let cfg = dir.join("rampart.toml");
    std::fs::write(&cfg, format!("{base}exclusion_files = [\"mine.conf\"]\n")).unwrap();
    let out = rampart_check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("mine.conf:3:"), "{err}");
    assert!(err.contains("lowercase"), "a did-you-mean hint: {err}");

    std::fs::write(
        &cfg,
        base.replace(&crs.display().to_string(), "missing-crs"),
    )
    .unwrap();
    let out = rampart_check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rampart.toml:") && err.contains("missing-crs"),
        "{err}"
    );

    std::fs::write(&cfg, base).unwrap();
    let out = rampart_check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_accepts_the_shipped_example() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/rampart.toml");
    let dir = temp("example");
    // the example names certificate files under examples/; generate throwaway ones there
    let text = std::fs::read_to_string(&example).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_string()]).unwrap();
    std::fs::write(dir.join("shop.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("shop.key"), ck.key_pair.serialize_pem()).unwrap();
    let text = text
        .replace("/etc/rampart/certs/", &format!("{}/", dir.display()))
        .replace(
            "/var/log/rampart/access.log",
            &dir.join("access.log").display().to_string(),
        )
        .replace(
            "/var/log/rampart/security.log",
            &dir.join("security.log").display().to_string(),
        );
    let cfg = dir.join("rampart.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = rampart_check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK ("));
}

#[test]
fn check_accepts_the_demo_config() {
    // scripts/demo.sh copies this file next to a certs/ directory it fills; do the same
    let demo =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/rampart-demo.toml");
    let dir = temp("demo");
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("certs/localhost.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("certs/localhost.key"), ck.key_pair.serialize_pem()).unwrap();
    let cfg = dir.join("rampart.toml");
    std::fs::copy(&demo, &cfg).unwrap();
    let out = rampart_check(&cfg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_file_line_col_and_fails() {
    let dir = temp("bad");
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[edge]\nadmin = \"nowhere\"\n\n[[tenant]]\nid = \"t\"\n\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:99999\"\n\n[[certificate]]\nname = \"c\"\ncert = \"/missing.pem\"\nkey = \"/missing.key\"\ndefault = true\n",
    )
    .unwrap();
    let out = rampart_check(&cfg);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = cfg.display().to_string();
    assert!(
        err.contains(&format!(
            "{name}:2:9: error: invalid admin address `nowhere`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:9:8: error: invalid bind address")),
        "{err}"
    );
    assert!(err.contains("expected:") && err.contains("hint:"), "{err}");
    // syntax errors are located too
    std::fs::write(&cfg, "[edge\n").unwrap();
    let out = rampart_check(&cfg);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{name}:1:")));
    // a certificate file that does not exist, once the syntax is right
    std::fs::write(&cfg, "[[certificate]]\nname = \"c\"\ncert = \"/missing.pem\"\nkey = \"/missing.key\"\ndefault = true\n").unwrap();
    let out = rampart_check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{name}:3:8: error: cannot read certificate file `/missing.pem`"
        )),
        "{err}"
    );
    // a file that does not exist
    let out = Command::new(bin())
        .args(["check", "-c", "/nonexistent/rampart.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/rampart.toml"));
}

fn http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.get(9..12)?.parse().ok()
}

fn config(o: SocketAddr, web: u16, admin: u16, extra_listener: Option<u16>) -> String {
    let extra = extra_listener
        .map(|p| format!("[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:{p}\"\n"))
        .unwrap_or_default();
    format!(
        "[edge]\nadmin = \"127.0.0.1:{admin}\"\naccess_log = \"off\"\ndrain_timeout = \"5s\"\n[[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{web}\"\n{extra}[[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"{o}\"]\n[[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"shop.test\"]\nroute = [{{ path = \"/\", pool = \"p\" }}]\n"
    )
}

#[test]
fn serve_reloads_on_sighup_and_reload_command_and_drains_on_sigterm() {
    let o = origin();
    let dir = temp("serve");
    let cfg = dir.join("rampart.toml");
    let (web, admin, extra) = (free_port(), free_port(), free_port());
    std::fs::write(&cfg, config(o, web, admin, None)).unwrap();
    let child = Command::new(bin())
        .args(["serve", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let web_addr: SocketAddr = format!("127.0.0.1:{web}").parse().unwrap();
    let extra_addr: SocketAddr = format!("127.0.0.1:{extra}").parse().unwrap();
    assert!(wait_port(web_addr), "edge did not come up");
    assert_eq!(http_get(web_addr, "/"), Some(200));

    // `rampart flood`: the site's flood state through the admin endpoint; acting on a
    // rule that does not exist fails with the reason.
    let out = Command::new(bin())
        .args(["flood", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("site s (t): normal"), "{text}");
    assert!(text.contains("(still learning)"), "{text}");
    let out = Command::new(bin())
        .args(["flood", "-c"])
        .arg(&cfg)
        .args(["cancel", "s", "auto-s-9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no automatic rule `auto-s-9` on site `s`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGHUP: a new listener appears
    std::fs::write(&cfg, config(o, web, admin, Some(extra))).unwrap();
    Command::new("kill")
        .args(["-HUP", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_port(extra_addr), "listener added by SIGHUP");
    assert_eq!(http_get(extra_addr, "/"), Some(200));

    // `rampart reload` with an invalid file: refused with diagnostics, still serving
    std::fs::write(
        &cfg,
        config(o, web, admin, Some(extra)).replace("pool = \"p\" }", "pool = \"x\" }"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["reload", "-c"])
        .arg(dir.join("good-admin.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "reload of a missing file fails");
    std::fs::write(dir.join("good-admin.toml"), config(o, web, admin, None)).unwrap();
    let out = Command::new(bin())
        .args(["reload", "-c"])
        .arg(dir.join("good-admin.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown pool `x`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(web_addr, "/"), Some(200));

    // `rampart reload` with a valid file: the extra listener goes away
    std::fs::write(&cfg, config(o, web, admin, None)).unwrap();
    let out = Command::new(bin())
        .args(["reload", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded: generation"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(extra_addr).is_err());

    // SIGTERM with a request in flight: it completes, then the process exits 0
    let slow = std::thread::spawn(move || http_get(web_addr, "/slow"));
    std::thread::sleep(Duration::from_millis(200));
    Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(slow.join().unwrap(), Some(200), "in-flight request drained");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let mut err = String::new();
    proc.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("configuration reloaded") && err.contains("drained"),
        "{err}"
    );
}

#[test]
fn waf_check_reports_rule_errors_with_location_and_fails() {
    let dir = temp("waf-check");
    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "SecRule ARGS \"@rx evil\" \"id:1,phase:2,deny,log\"\nSecRule REMOTE_ADDR \"@rbl bl.example\" \"id:2,phase:2,deny\"\nSecRule ARGS \"@detectXSS\" \"id:3,phase:2,deny\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["waf", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 rule(s) compiled, 1 disabled"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rule 2 does not run: @rbl") && !stderr.contains("rule 3"),
        "{stderr}"
    );

    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "SecMarker OK\nSecRule ARGS \"@rxx evil\" \"id:1,phase:2\"\nSecRule ARGS \"@rx a\" \"id:3,phsae:2\"\n").unwrap();
    let out = Command::new(bin())
        .args(["waf", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{shown}:2:15: error: unknown operator `@rxx`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{shown}:3:28: error: unknown action `phsae`")),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `phase`?"), "{stderr}");
}

#[test]
fn waf_test_runs_a_filtered_part_of_the_crs_suite() {
    let crs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs");
    let out = Command::new(bin())
        .args(["waf", "test", "--crs"])
        .arg(&crs)
        .args(["--filter", "^911100-"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 "),
        "{stdout}"
    );
}
