//! A small Redis client for counters shared by a cluster of edges.
//!
//! - **One connection per worker thread**, made on first use and kept: the worker's
//!   requests queue their checks to it, and the connection task writes every check
//!   waiting at that moment in one write (pipelining), then reads the answers in order.
//!   A check is one `EVALSHA` of [`rampart_policy::ratelimit::REDIS_SCRIPT`] (one atomic
//!   round trip); after a `NOSCRIPT` (a flushed or restarted server) the check is sent
//!   again with the script itself.
//! - **RESP2**, parsed by [`parse`], which tells an incomplete reply (read more) from an
//!   invalid one (drop the connection).
//! - **Failure.** A check not answered within the configured timeout is *unavailable*
//!   and its limit's `on_failure` decides (open or closed). A connection that fails is
//!   closed, its waiting checks fail at once, and the task reconnects with a backoff
//!   (50 ms doubling to 2 s) while new checks fail immediately instead of waiting. Every
//!   change of state is logged, written as a security-log line, and visible in
//!   `rampart_redis_up`; failures count in `rampart_redis_errors_total{kind}`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rampart_core::config::RedisSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::accesslog::AccessLog;
use crate::metrics::{Counter, Gauge, Metrics};

/// A RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nabc` (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*2 …` (`None`: the null array).
    Array(Option<Vec<Resp>>),
}

/// Why bytes are not a RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Redis reply: {0}")]
pub struct Invalid(pub &'static str);

/// Longest reply line or bulk string accepted (answers here are small).
const MAX_ITEM: usize = 1 << 20;

/// Parses one reply from the start of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((reply, used)))`, or an error when the bytes cannot be a reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, Invalid> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Resp, usize)>, Invalid> {
    if depth > 8 {
        return Err(Invalid("arrays nested too deep"));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_ITEM {
            return Err(Invalid("line too long"));
        }
        return Ok(None);
    };
    let line = &buf[1..end];
    let text = || std::str::from_utf8(line).map_err(|_| Invalid("line is not UTF-8"));
    let int = || -> Result<i64, Invalid> {
        text()?
            .parse::<i64>()
            .map_err(|_| Invalid("not an integer"))
    };
    let after = end + 2;
    Ok(Some(match kind {
        b'+' => (Resp::Simple(text()?.to_owned()), after),
        b'-' => (Resp::Error(text()?.to_owned()), after),
        b':' => (Resp::Int(int()?), after),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Resp::Bulk(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| Invalid("bad length"))?;
            if n > MAX_ITEM {
                return Err(Invalid("bulk string too long"));
            }
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            if &buf[after + n..after + n + 2] != b"\r\n" {
                return Err(Invalid("bulk string not terminated"));
            }
            (
                Resp::Bulk(Some(buf[after..after + n].to_vec())),
                after + n + 2,
            )
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Resp::Array(None), after)));
            }
            if n > 1024 {
                return Err(Invalid("array too long"));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut at = after;
            for _ in 0..n {
                match parse_at(&buf[at..], depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            (Resp::Array(Some(items)), at)
        }
        _ => return Err(Invalid("unknown reply type")),
    }))
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The counter's key.
    pub key: Vec<u8>,
    /// The script's arguments; the first is the number of hits to count.
    pub args: Vec<Vec<u8>>,
    /// Checks of one key with equal arguments may be counted by one call (the hits add
    /// up: a sliding window counting requests).
    pub coalesce: bool,
}

/// The answer to a check: the script's reply, and where the check stood among the hits
/// one call counted (`index` of `hits`; 0 of 1 when alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The script's integers.
    pub reply: Vec<i64>,
    /// This check's place among the hits counted together.
    pub index: usize,
    /// How many hits the call counted.
    pub hits: usize,
}

/// One check waiting for its answer.
struct Job {
    check: Check,
    reply: oneshot::Sender<Option<Answer>>,
}

impl Job {
    fn fail(self) {
        let _ = self.reply.send(None);
    }
}

/// Checks sent as one script call: one job, or several coalesced.
struct Group {
    jobs: Vec<Job>,
}

impl Group {
    fn fail(self) {
        self.jobs.into_iter().for_each(Job::fail);
    }

    /// The command: the first job's arguments, with the hits of all of them.
    fn encode(&self, out: &mut Vec<u8>, verb: &[u8], script: &[u8]) {
        let c = &self.jobs[0].check;
        let hits = (self.jobs.len() > 1).then(|| self.jobs.len().to_string().into_bytes());
        let mut args: Vec<&[u8]> = vec![verb, script, b"1", &c.key];
        for (i, a) in c.args.iter().enumerate() {
            args.push(match (&hits, i) {
                (Some(h), 0) => h,
                _ => a,
            });
        }
        encode(out, &args);
    }
}

/// Groups a batch: coalescable checks of one key with equal arguments together.
fn group(batch: Vec<Job>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::with_capacity(batch.len());
    let mut index: HashMap<(Vec<u8>, Vec<Vec<u8>>), usize> = HashMap::new();
    for j in batch {
        if j.check.coalesce {
            let k = (j.check.key.clone(), j.check.args.clone());
            if let Some(&g) = index.get(&k) {
                groups[g].jobs.push(j);
                continue;
            }
            index.insert(k, groups.len());
        }
        groups.push(Group { jobs: vec![j] });
    }
    groups
}

struct Inner {
    settings: RedisSettings,
    id: u64,
    up: AtomicBool,
    /// Set after the first state is known (so the first connection logs as a change).
    known: AtomicBool,
    gauge: Arc<Gauge>,
    errors: HashMap<&'static str, Arc<Counter>>,
    events: AccessLog,
}

/// A Redis server shared by the edge's workers; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("address", &self.inner.settings.address)
            .field("up", &self.is_up())
            .finish()
    }
}

thread_local! {
    /// This worker's connection to each client (by client id).
    static CONNS: RefCell<HashMap<u64, mpsc::UnboundedSender<Job>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Redis {
    /// A client for `settings`; connections are made by the workers that use it.
    /// State changes are written to `events`.
    pub fn new(settings: RedisSettings, metrics: &Metrics, events: AccessLog) -> Redis {
        let errors = ["connect", "timeout", "reply", "io"]
            .into_iter()
            .map(|k| (k, metrics.redis_errors.with(&[k])))
            .collect();
        Redis {
            inner: Arc::new(Inner {
                gauge: metrics.redis_up.with(&[]),
                settings,
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                up: AtomicBool::new(false),
                known: AtomicBool::new(false),
                errors,
                events,
            }),
        }
    }

    /// The settings it was made from.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// Whether the last connection attempt of some worker succeeded and is open.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Runs the checks; `None` for each one not answered in time. Must be called on a
    /// worker's runtime.
    pub async fn check_all(&self, checks: Vec<Check>) -> Vec<Option<Answer>> {
        let tx = self.sender();
        let mut waiting = Vec::with_capacity(checks.len());
        for check in checks {
            let (reply, rx) = oneshot::channel();
            if let Err(e) = tx.send(Job { check, reply }) {
                e.0.fail();
            }
            waiting.push(rx);
        }
        let deadline = tokio::time::Instant::now() + self.inner.settings.timeout;
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(v)) => v,
                Ok(Err(_)) => None,
                Err(_) => {
                    self.inner.count_error("timeout");
                    None
                }
            });
        }
        out
    }

    /// This worker's queue to the server, with its connection task started on first use.
    fn sender(&self) -> mpsc::UnboundedSender<Job> {
        CONNS.with(|c| {
            let mut map = c.borrow_mut();
            if let Some(tx) = map.get(&self.inner.id).filter(|tx| !tx.is_closed()) {
                return tx.clone();
            }
            // Connections of clients dropped since (a reload with other settings).
            map.retain(|_, tx| !tx.is_closed());
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(connection(Arc::downgrade(&self.inner), rx));
            map.insert(self.inner.id, tx.clone());
            tx
        })
    }
}

impl Inner {
    fn count_error(&self, kind: &'static str) {
        if let Some(c) = self.errors.get(kind) {
            c.inc();
        }
    }

    fn set_up(&self, up: bool, why: &str) {
        let was = self.up.swap(up, Ordering::Relaxed);
        let first = !self.known.swap(true, Ordering::Relaxed);
        self.gauge.set(i64::from(up));
        if was == up && !first {
            return;
        }
        if up {
            tracing::info!(address = %self.settings.address, "Redis reachable: shared counters in use");
        } else {
            tracing::warn!(address = %self.settings.address, reason = why, "Redis unreachable: limits kept there fail open or closed as configured");
        }
        if self.events.enabled() && (!up || !first) {
            let line = serde_json::json!({
                "@timestamp": crate::accesslog::rfc3339(std::time::SystemTime::now()),
                "event.dataset": "rampart.security",
                "event.kind": "state",
                "event.module": "ratelimit",
                "event.action": if up { "redis_up" } else { "redis_down" },
                "server.address": self.settings.address,
                "error.message": why,
            });
            self.events.write_line(line.to_string());
        }
    }
}

/// The connection task of one worker: connect, serve, and on failure fail what waits
/// and reconnect with a backoff. Ends when the client is dropped.
async fn connection(client: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(inner) = client.upgrade() else {
            return;
        };
        let why = match connect(&inner).await {
            Ok((stream, sha)) => {
                inner.set_up(true, "");
                backoff = Duration::from_millis(50);
                let timeout = inner.settings.timeout.max(Duration::from_millis(200)) * 4;
                drop(inner);
                match serve(stream, &sha, &mut rx, timeout, &client).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => {
                inner.count_error("connect");
                e
            }
        };
        let Some(inner) = client.upgrade() else {
            return;
        };
        inner.set_up(false, &why);
        drop(inner);
        // While down, checks fail at once rather than wait for their timeout.
        let until = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(j) => j.fail(),
                    None => return,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Connects, authenticates, selects the database and loads the script; returns the
/// stream and the script's SHA-1.
async fn connect(inner: &Inner) -> Result<(TcpStream, String), String> {
    let s = &inner.settings;
    let limit = s.timeout.max(Duration::from_millis(200)) * 5;
    let mut stream = tokio::time::timeout(limit, TcpStream::connect(&s.address))
        .await
        .map_err(|_| format!("connecting to {} timed out", s.address))?
        .map_err(|e| format!("connecting to {}: {e}", s.address))?;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut expect = 0;
    if let Some(p) = &s.password {
        encode(&mut buf, &[b"AUTH", p.as_bytes()]);
        expect += 1;
    }
    if s.database != 0 {
        encode(&mut buf, &[b"SELECT", s.database.to_string().as_bytes()]);
        expect += 1;
    }
    encode(
        &mut buf,
        &[
            b"SCRIPT",
            b"LOAD",
            rampart_policy::ratelimit::REDIS_SCRIPT.as_bytes(),
        ],
    );
    let io = async {
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        let mut r = Vec::new();
        let mut replies = Vec::new();
        while replies.len() < expect + 1 {
            read_reply(&mut stream, &mut r)
                .await
                .map(|x| replies.push(x))?;
        }
        Ok::<_, String>(replies)
    };
    let replies = tokio::time::timeout(limit, io)
        .await
        .map_err(|_| "no answer to the connection's set-up".to_owned())??;
    for r in &replies[..expect] {
        if let Resp::Error(e) = r {
            return Err(format!("set-up refused: {e}"));
        }
    }
    match replies.last() {
        Some(Resp::Bulk(Some(sha))) => Ok((stream, String::from_utf8_lossy(sha).into_owned())),
        Some(Resp::Error(e)) => Err(format!("SCRIPT LOAD refused: {e}")),
        other => Err(format!("unexpected answer to SCRIPT LOAD: {other:?}")),
    }
}

/// Reads one reply, keeping what follows it in `buf`.
async fn read_reply(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Resp, String> {
    loop {
        match parse(buf) {
            Ok(Some((r, used))) => {
                buf.drain(..used);
                return Ok(r);
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Pipelines checks until the connection fails (`Err`) or the client is gone (`Ok`).
async fn serve(
    mut stream: TcpStream,
    sha: &str,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    timeout: Duration,
    client: &Weak<Inner>,
) -> Result<(), String> {
    let mut rbuf = Vec::new();
    let mut wbuf = Vec::new();
    let mut probe = [0u8; 1];
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(j) => j,
                None => return Ok(()),
            },
            // A closed connection is noticed while idle, not by the next check.
            n = stream.peek(&mut probe) => match n {
                Ok(0) | Err(_) => return Err("the server closed the connection".into()),
                Ok(_) => return Err("unexpected data from the server".into()),
            },
        };
        if client.strong_count() == 0 {
            first.fail();
            return Ok(());
        }
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut batch = group(batch);
        wbuf.clear();
        for g in &batch {
            g.encode(&mut wbuf, b"EVALSHA", sha.as_bytes());
        }
        let result = tokio::time::timeout(timeout, async {
            stream.write_all(&wbuf).await.map_err(|e| e.to_string())?;
            let mut again = Vec::new();
            for g in batch.drain(..) {
                match read_reply(&mut stream, &mut rbuf).await? {
                    Resp::Error(e) if e.starts_with("NOSCRIPT") => again.push(g),
                    r => answer(g, r, client),
                }
            }
            // The server lost the script (flushed, restarted): send those with it.
            if !again.is_empty() {
                wbuf.clear();
                for g in &again {
                    g.encode(
                        &mut wbuf,
                        b"EVAL",
                        rampart_policy::ratelimit::REDIS_SCRIPT.as_bytes(),
                    );
                }
                stream.write_all(&wbuf).await.map_err(|e| e.to_string())?;
                for g in again {
                    let r = read_reply(&mut stream, &mut rbuf).await?;
                    answer(g, r, client);
                }
            }
            Ok::<(), String>(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if let Some(i) = client.upgrade() {
                    i.count_error("io");
                }
                batch.into_iter().for_each(Group::fail);
                return Err(e);
            }
            Err(_) => {
                if let Some(i) = client.upgrade() {
                    i.count_error("timeout");
                }
                batch.into_iter().for_each(Group::fail);
                return Err("the server did not answer in time".into());
            }
        }
    }
}

/// Sends each check of a group its answer: the script's integers, or unavailable for
/// anything else.
fn answer(g: Group, r: Resp, client: &Weak<Inner>) {
    let ints = match r {
        Resp::Array(Some(items)) => items
            .into_iter()
            .map(|i| match i {
                Resp::Int(v) => Some(v),
                _ => None,
            })
            .collect::<Option<Vec<i64>>>(),
        _ => None,
    };
    if ints.is_none() {
        if let Some(i) = client.upgrade() {
            i.count_error("reply");
        }
    }
    let hits = g.jobs.len();
    for (index, j) in g.jobs.into_iter().enumerate() {
        let _ = j
            .reply
            .send(ints.clone().map(|reply| Answer { reply, index, hits }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_incomplete_is_not_invalid() {
        let cases: &[(&[u8], Resp, usize)] = &[
            (b"+OK\r\n", Resp::Simple("OK".into()), 5),
            (
                b"-NOSCRIPT No matching script\r\n",
                Resp::Error("NOSCRIPT No matching script".into()),
                30,
            ),
            (b":-12\r\n", Resp::Int(-12), 6),
            (b"$3\r\nabc\r\n+x", Resp::Bulk(Some(b"abc".to_vec())), 9),
            (b"$-1\r\n", Resp::Bulk(None), 5),
            (
                b"*3\r\n:1500\r\n:0\r\n:-1\r\n",
                Resp::Array(Some(vec![Resp::Int(1500), Resp::Int(0), Resp::Int(-1)])),
                20,
            ),
            (b"*-1\r\n", Resp::Array(None), 5),
        ];
        for (bytes, want, used) in cases {
            assert_eq!(
                parse(bytes),
                Ok(Some((want.clone(), *used))),
                "{}",
                String::from_utf8_lossy(bytes)
            );
            // Every strict prefix is incomplete, never invalid.
            for cut in 0..*used {
                assert_eq!(
                    parse(&bytes[..cut]),
                    Ok(None),
                    "prefix {cut} of {}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
        for bad in [
            &b"?x\r\n"[..],
            b":x\r\n",
            b"$3\r\nabcde",
            b"*2000\r\n",
            b"$-x\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"EVALSHA", b"ab", b"1", b"k\r\n"]);
        assert_eq!(
            out,
            b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$3\r\nk\r\n\r\n"
        );
    }
}
