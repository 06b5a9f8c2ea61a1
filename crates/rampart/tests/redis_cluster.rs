//! Two edge processes share rate limits through one real `redis-server` started here:
//! together they enforce a limit within 5 % of its value; when Redis stops, a fail-open
//! limit lets requests through and a fail-closed one refuses them (with the metric and
//! the state event); when Redis comes back, shared counting resumes by itself.
//!
//! `redis-server` comes from Debian's package, which `scripts/test.sh` installs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// This test drives child processes from plain threads: no async runtime to block.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{Proc, free_port, origin, wait_port};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `redis-server` on `port`, without persistence.
fn redis(port: u16, dir: &Path) -> Proc {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}); scripts/test.sh installs Debian's redis-server"
            )
        });
    assert!(
        wait_port(SocketAddr::from(([127, 0, 0, 1], port))),
        "redis-server did not start"
    );
    Proc(child)
}

/// A GET of `path` from the loopback address `src`; the status, or `None`.
fn get_from(src: &str, addr: SocketAddr, path: &str) -> Option<u16> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    sock.bind(&format!("{src}:0").parse::<SocketAddr>().ok()?.into())
        .ok()?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(2))
        .ok()?;
    let mut s: TcpStream = sock.into();
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

fn metrics(admin: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(admin) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn config(origin: SocketAddr, web: u16, admin: u16, redis_port: u16, log: &Path) -> String {
    format!(
        r#"[edge]
admin = "127.0.0.1:{admin}"
access_log = "off"
security_log = "{log}"
workers = 2
[redis]
address = "127.0.0.1:{redis_port}"
timeout = "100ms"
[[tenant]]
id = "t"
[[listener]]
name = "web"
bind = "127.0.0.1:{web}"
[[pool]]
id = "p"
tenant = "t"
servers = ["{origin}"]
[[site]]
id = "s"
tenant = "t"
hosts = ["shop.test"]
route = [{{ path = "/", pool = "p" }}]
[site.policy]
[[site.policy.limit]]
name = "shared"
filter = 'http.request.uri.path == "/shared"'
key = ["cidr(ip.src, 24)"]
window = "60s"
backend = "redis"
threshold = [{{ above = 100, action = "block" }}]
[[site.policy.limit]]
name = "open"
filter = 'http.request.uri.path == "/open"'
key = ["ip.src"]
window = "60s"
backend = "redis"
on_failure = "open"
threshold = [{{ above = 1000, action = "block" }}]
[[site.policy.limit]]
name = "closed"
filter = 'http.request.uri.path == "/closed"'
key = ["ip.src"]
window = "60s"
backend = "redis"
on_failure = "closed"
threshold = [{{ above = 1000, action = "block" }}]
"#,
        log = log.display()
    )
}

struct EdgeProc {
    _p: Proc,
    web: SocketAddr,
    admin: SocketAddr,
}

fn edge(dir: &Path, name: &str, origin: SocketAddr, redis_port: u16) -> EdgeProc {
    let (web, admin) = (free_port(), free_port());
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        config(
            origin,
            web,
            admin,
            redis_port,
            &dir.join(format!("{name}-security.log")),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["serve", "-c"])
        .arg(&cfg)
        .env("RAMPART_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    let web = SocketAddr::from(([127, 0, 0, 1], web));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    assert!(
        wait_port(web) && wait_port(admin),
        "edge {name} did not start"
    );
    EdgeProc { _p: p, web, admin }
}

#[test]
fn two_edges_share_limits_through_redis_and_survive_its_outage() {
    let dir = std::env::temp_dir().join(format!("rampart-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rport = free_port();
    let mut server = Some(redis(rport, &dir));
    let o = origin();
    let a = edge(&dir, "a", o, rport);
    let b = edge(&dir, "b", o, rport);

    // 150 requests from one /24, alternating edges: together they let ~100 through.
    let mut passed = 0;
    for i in 0..150 {
        let e = if i % 2 == 0 { &a } else { &b };
        let src = format!("127.0.20.{}", 1 + i % 50);
        match get_from(&src, e.web, "/shared") {
            Some(200) => passed += 1,
            Some(429) => {}
            other => panic!("request {i}: {other:?}"),
        }
    }
    eprintln!("shared: {passed} passed");
    assert!(
        (95..=105).contains(&passed),
        "{passed} passed, limit 100 shared by two edges"
    );
    // Both edges refuse the prefix now; another prefix is untouched.
    assert_eq!(get_from("127.0.20.77", a.web, "/shared"), Some(429));
    assert_eq!(get_from("127.0.20.78", b.web, "/shared"), Some(429));
    assert_eq!(get_from("127.0.21.1", b.web, "/shared"), Some(200));
    assert!(
        metrics(a.admin).contains("rampart_redis_up 1"),
        "{}",
        metrics(a.admin)
    );

    // Redis stops: fail open lets through, fail closed refuses — quickly, not after a hang.
    drop(server.take());
    std::thread::sleep(Duration::from_millis(300));
    for e in [&a, &b] {
        let start = Instant::now();
        assert_eq!(get_from("127.0.22.1", e.web, "/open"), Some(200));
        assert_eq!(get_from("127.0.22.1", e.web, "/closed"), Some(429));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    let m = metrics(a.admin);
    assert!(m.contains("rampart_redis_up 0"), "{m}");
    assert!(
        m.lines().any(
            |l| l.starts_with("rampart_redis_errors_total{kind=\"connect\"}") && !l.ends_with(" 0")
        ),
        "{m}"
    );
    let log = std::fs::read_to_string(dir.join("a-security.log")).unwrap_or_default();
    assert!(log.contains("\"event.action\":\"redis_down\""), "{log}");

    // Redis is back (empty, as after a restart): the edges reconnect by themselves.
    let _server = redis(rport, &dir);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && get_from("127.0.22.1", a.web, "/closed") != Some(200) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        get_from("127.0.22.1", a.web, "/closed"),
        Some(200),
        "shared counting resumed on a"
    );
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && get_from("127.0.22.2", b.web, "/closed") != Some(200) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        get_from("127.0.22.2", b.web, "/closed"),
        Some(200),
        "and on b"
    );
    // The limit is enforced again, from zero.
    let mut passed = 0;
    for i in 0..120 {
        let e = if i % 2 == 0 { &a } else { &b };
        if get_from("127.0.23.1", e.web, "/shared") == Some(200) {
            passed += 1;
        }
    }
    assert!((95..=105).contains(&passed), "{passed} after the restart");
    assert!(metrics(b.admin).contains("rampart_redis_up 1"));
    let log = std::fs::read_to_string(dir.join("a-security.log")).unwrap_or_default();
    assert!(log.contains("\"event.action\":\"redis_up\""), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
    let _: PathBuf = dir;
}
