//! The Redis check script against a real `redis-server`: the same answers as the
//! in-process arithmetic (`rampart_policy::ratelimit`) for sliding windows, GCRA bursts,
//! graduated levels, holds, reads without counting and distinct values; a flushed
//! script is sent again; a long key and a binary key are fine.
//!
//! `redis-server` comes from Debian's package, which `scripts/test.sh` installs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_core::config::RedisSettings;
use rampart_edge::accesslog::AccessLog;
use rampart_edge::metrics::Metrics;
use rampart_edge::redis::{Check, Redis};
use rampart_policy::ratelimit::{
    Algorithm, Counting, LocalStore, Outcome, redis_outcome, stable_hash,
};

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Waits for the child's port before the test's runtime does anything.
#[allow(clippy::disallowed_methods)]
fn server() -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
        .arg(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}); scripts/test.sh installs Debian's redis-server"
            )
        });
    let mut server = Server(child);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        assert!(Instant::now() < end, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The port answering must be this server's (not another test's that took it).
    assert!(
        matches!(server.0.try_wait(), Ok(None)),
        "redis-server exited (port {port} taken?)"
    );
    (server, port)
}

fn client(port: u16) -> Redis {
    Redis::new(
        RedisSettings {
            address: format!("127.0.0.1:{port}"),
            timeout: Duration::from_secs(2),
            password: None,
            database: 0,
            key_prefix: "t".into(),
        },
        &Metrics::new(),
        AccessLog::off(),
    )
}

fn counting(
    algorithm: Algorithm,
    window_ms: u64,
    thresholds: &[u32],
    hold_ms: &[u64],
    distinct: bool,
) -> Counting {
    Counting {
        algorithm,
        window_ms,
        thresholds: thresholds.to_vec(),
        hold_ms: hold_ms.to_vec(),
        distinct,
    }
}

/// Runs the hits (`(count, value)`) one after the other through Redis.
async fn through_redis(r: &Redis, key: &[u8], c: &Counting, hits: &[(bool, &str)]) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (count, value) in hits {
        let args = c.redis_args(*count, Some(stable_hash(value.as_bytes())));
        let check = Check {
            key: key.to_vec(),
            args,
            coalesce: false,
        };
        let reply = r.check_all(vec![check]).await;
        let answer = reply[0].clone().unwrap_or_else(|| panic!("no answer"));
        out.push(redis_outcome(&answer.reply).unwrap());
    }
    out
}

/// The same hits in process, at one instant.
fn in_process(c: &Counting, hits: &[(bool, &str)]) -> Vec<Outcome> {
    let store = LocalStore::new(c.clone(), 1000);
    hits.iter()
        .map(|(count, value)| {
            if *count {
                store.hit(b"k", value.as_bytes(), 5)
            } else {
                store.peek(b"k", 5)
            }
        })
        .collect()
}

fn levels(o: &[Outcome]) -> Vec<Option<usize>> {
    o.iter().map(|o| o.level).collect()
}

/// A name, a limit's arithmetic and its hits.
type Case = (&'static str, Counting, Vec<(bool, &'static str)>);

#[tokio::test(flavor = "current_thread")]
async fn the_script_answers_like_the_in_process_arithmetic() {
    let (_server, port) = server();
    let r = client(port);
    let req = (true, "");
    let peek = (false, "");
    let cases: Vec<Case> = vec![
        (
            "sliding",
            counting(Algorithm::SlidingWindow, 3_600_000, &[3, 5], &[0, 0], false),
            vec![req; 8],
        ),
        (
            "sliding-peek",
            counting(Algorithm::SlidingWindow, 3_600_000, &[2], &[0], false),
            vec![req, peek, req, peek, req, peek],
        ),
        (
            "gcra",
            counting(Algorithm::Gcra, 3_600_000, &[4], &[0], false),
            vec![req; 7],
        ),
        (
            "gcra-two",
            counting(Algorithm::Gcra, 3_600_000, &[2, 4], &[0, 0], false),
            vec![req; 6],
        ),
        (
            "held",
            counting(
                Algorithm::SlidingWindow,
                3_600_000,
                &[2, 4],
                &[0, 600_000],
                false,
            ),
            vec![req, req, req, req, req, peek],
        ),
        (
            "distinct",
            counting(Algorithm::SlidingWindow, 3_600_000, &[3], &[0], true),
            vec![
                (true, "alice"),
                (true, "bob"),
                (true, "alice"),
                (true, "carol"),
                (true, "dave"),
                (true, "erin"),
                (false, ""),
            ],
        ),
    ];
    for (name, c, hits) in cases {
        let remote = through_redis(&r, format!("case:{name}").as_bytes(), &c, &hits).await;
        let local = in_process(&c, &hits);
        assert_eq!(levels(&remote), levels(&local), "{name}: levels");
        for (i, (a, b)) in remote.iter().zip(&local).enumerate() {
            // Requests within a millisecond or two: counts agree to a small fraction.
            assert!(
                (a.count - b.count).abs() < 0.05,
                "{name} #{i}: count {} vs {}",
                a.count,
                b.count
            );
            assert_eq!(
                a.held_for.is_some(),
                b.held_for.is_some(),
                "{name} #{i}: held"
            );
        }
        if name == "held" {
            let held = remote.last().and_then(|o| o.held_for).unwrap();
            assert!((590_000..=600_000).contains(&held), "{held}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_flushed_script_is_sent_again_and_keys_may_be_anything() {
    let (_server, port) = server();
    let r = client(port);
    let c = counting(Algorithm::SlidingWindow, 60_000, &[1], &[0], false);
    let check = |key: &[u8]| Check {
        key: key.to_vec(),
        args: c.redis_args(true, None),
        coalesce: true,
    };
    let reply = |a: &Option<rampart_edge::redis::Answer>| a.as_ref().map(|a| a.reply.clone());
    let key = b"bin\x00\xff\r\nkey".to_vec();
    let first = r.check_all(vec![check(&key)]).await;
    assert_eq!(reply(&first[0]), Some(vec![1000, -1, -1, -1]));
    // SCRIPT FLUSH from another connection: the next check is sent with the script.
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"*2\r\n$6\r\nSCRIPT\r\n$5\r\nFLUSH\r\n")
        .unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    let second = r.check_all(vec![check(&key)]).await;
    assert_eq!(reply(&second[0]), Some(vec![2000, 0, -1, -1]));
    // Many checks of one request go in one round trip, answered in order.
    let many: Vec<_> = (0..50).map(|i| check(format!("k{i}").as_bytes())).collect();
    let answers = r.check_all(many).await;
    assert!(
        answers
            .iter()
            .all(|a| reply(a) == Some(vec![1000, -1, -1, -1])),
        "{answers:?}"
    );
}

/// Hits of one key queued together are counted by one call, and each learns the count
/// it would have seen alone: the levels match counting them one by one in process.
#[tokio::test(flavor = "current_thread")]
async fn coalesced_hits_answer_as_if_counted_one_by_one() {
    let (_server, port) = server();
    let r = client(port);
    let c = counting(
        Algorithm::SlidingWindow,
        3_600_000,
        &[3, 6],
        &[0, 600_000],
        false,
    );
    let check = || Check {
        key: b"coalesced".to_vec(),
        args: c.redis_args(true, None),
        coalesce: true,
    };
    let answers = r.check_all((0..9).map(|_| check()).collect()).await;
    let got: Vec<Outcome> = answers
        .iter()
        .map(|a| {
            let a = a.clone().unwrap_or_else(|| panic!("no answer"));
            c.redis_outcomes(&a.reply, a.hits).unwrap()[a.index]
        })
        .collect();
    let want = in_process(&c, &[(true, ""); 9]);
    assert_eq!(levels(&got), levels(&want));
    for (a, b) in got.iter().zip(&want) {
        assert!(
            (a.count - b.count).abs() < 0.05,
            "{} vs {}",
            a.count,
            b.count
        );
        assert_eq!(a.held_for.is_some(), b.held_for.is_some());
    }
    // They were counted by fewer calls than checks (all nine queued at once).
    assert!(
        answers
            .iter()
            .any(|a| a.as_ref().is_some_and(|a| a.hits > 1)),
        "{answers:?}"
    );
    // After the hold, one more check alone is still held.
    let one = r.check_all(vec![check()]).await;
    let o = redis_outcome(&one[0].clone().unwrap().reply).unwrap();
    assert_eq!(o.level, Some(1));
    assert!(o.held_for.is_some());
}
