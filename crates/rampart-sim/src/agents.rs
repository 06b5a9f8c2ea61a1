//! The simulated clients: legitimate users, API clients, the Chromium sample, and the
//! five attacks.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::task::JoinHandle;

use crate::net::{Profile, Profiles, Resp, Sender, connect};
use crate::{HOST, Options, Scenario, Stats};

/// What happened to a request (or a page view, challenges included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The origin answered.
    Reached,
    /// The edge refused it (block, limit, or a challenge not solved).
    Stopped,
    /// No answer: connection refused or reset, timeout.
    Failed,
}

/// What the agents share.
pub struct Ctx {
    /// The edge's TLS listener.
    pub edge: SocketAddr,
    /// TLS stacks.
    pub profiles: Arc<Profiles>,
    /// Where results go.
    pub stats: Arc<Stats>,
    /// When the run started.
    pub started: Instant,
}

impl Ctx {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A tiny per-agent random generator.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36 Edg/156.0.0.0",
];
const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";
const WORDS: &[&str] = &[
    "savings",
    "mortgage",
    "card",
    "loan",
    "transfer",
    "fees",
    "branch",
    "iban",
    "deposit",
    "insurance",
];

/// A request as a browser-like client sends it.
fn request(
    h2: bool,
    method: &str,
    path: &str,
    ua: &str,
    browser_headers: bool,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Request<Full<Bytes>> {
    let uri = if h2 {
        format!("https://{HOST}{path}")
    } else {
        path.to_owned()
    };
    let mut b = Request::builder().method(method).uri(uri);
    if !h2 {
        b = b.header(http::header::HOST, HOST);
    }
    b = b.header(http::header::USER_AGENT, ua);
    if browser_headers {
        b = b
            .header(
                http::header::ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .header(http::header::ACCEPT_LANGUAGE, "de-DE,de;q=0.9,en;q=0.8")
            .header(http::header::ACCEPT_ENCODING, "gzip, deflate, br")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-site", "same-origin");
    } else {
        b = b.header(http::header::ACCEPT, "*/*");
    }
    if let Some(c) = cookie {
        b = b.header(http::header::COOKIE, c);
    }
    let body = match body {
        Some(text) => {
            b = b.header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
            Bytes::from(text.to_owned())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(body))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// Builds a request for a connection (HTTP/2 or not) with the client's cookie.
type MakeRequest<'a> = dyn Fn(bool, Option<&str>) -> Request<Full<Bytes>> + Sync + 'a;

/// What a page view asks for.
#[derive(Clone, Copy)]
struct Page<'a> {
    method: &'a str,
    path: &'a str,
    ua: &'a str,
    browser_headers: bool,
    body: Option<&'a str>,
}

/// One client: an address, a stack, a kept connection and its cookie.
struct Client {
    src: Ipv4Addr,
    profile: Profile,
    conn: Option<Sender>,
    cookie: Option<String>,
}

impl Client {
    fn new(src: Ipv4Addr, profile: Profile) -> Client {
        Client {
            src,
            profile,
            conn: None,
            cookie: None,
        }
    }

    /// One exchange, reconnecting once if the kept connection is gone.
    async fn exchange(&mut self, ctx: &Ctx, make: &MakeRequest<'_>) -> anyhow::Result<Resp> {
        for attempt in 0..2 {
            if self.conn.as_ref().is_none_or(|c| !c.is_open()) {
                self.conn = Some(connect(self.src, ctx.edge, HOST, &self.profile).await?);
            }
            let h2 = matches!(self.conn, Some(Sender::H2(_)));
            let req = make(h2, self.cookie.as_deref());
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match conn.send(req).await {
                Ok(r) => {
                    if r.headers
                        .get(http::header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                    {
                        self.conn = None;
                    }
                    return Ok(r);
                }
                Err(e) => {
                    self.conn = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        anyhow::bail!("no connection")
    }

    /// A page view: the request, and when challenged, the proof of work, the answer and
    /// the request again (at most twice). Returns the outcome and how many challenges
    /// were solved.
    async fn view(
        &mut self,
        ctx: &Ctx,
        page: Page<'_>,
        latency: Option<&std::sync::Mutex<Vec<u32>>>,
    ) -> (Outcome, u32) {
        let Page {
            method,
            path,
            ua,
            browser_headers,
            body,
        } = page;
        let mut solved = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let make = |h2: bool, cookie: Option<&str>| {
                request(h2, method, path, ua, browser_headers, cookie, body)
            };
            let r = match self.exchange(ctx, &make).await {
                Ok(r) => r,
                Err(_) => return (Outcome::Failed, solved),
            };
            if let Some(l) = latency {
                l.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            if r.headers.contains_key("x-origin") {
                return (Outcome::Reached, solved);
            }
            if r.status >= 500 {
                return (Outcome::Failed, solved);
            }
            if !r.headers.contains_key("rampart-challenge") {
                return (Outcome::Stopped, solved);
            }
            // The challenge: solve it as the page's script does, answer, and go again.
            let Some((p, bits)) = puzzle(&r.body) else {
                return (Outcome::Stopped, solved);
            };
            // (CPU work: off the runtime's threads, so other agents' timings stay true.)
            let p2 = p.clone();
            let Ok(n) = tokio::task::spawn_blocking(move || solve(&p2, bits)).await else {
                return (Outcome::Failed, solved);
            };
            let verify = format!("/.rampart/challenge/verify?p={p}&n={n}");
            let vmethod = if method == "GET" { "GET" } else { method };
            let make = |h2: bool, cookie: Option<&str>| {
                request(h2, vmethod, &verify, ua, browser_headers, cookie, body)
            };
            let Ok(v) = self.exchange(ctx, &make).await else {
                return (Outcome::Failed, solved);
            };
            let Some(c) = v
                .headers
                .get(http::header::SET_COOKIE)
                .and_then(|c| c.to_str().ok())
                .and_then(|c| c.split(';').next())
            else {
                return (Outcome::Stopped, solved);
            };
            self.cookie = Some(c.to_owned());
            solved += 1;
        }
        (Outcome::Stopped, solved)
    }
}

/// The puzzle and its difficulty from a challenge page.
pub fn puzzle(page: &[u8]) -> Option<(String, u8)> {
    let text = std::str::from_utf8(page).ok()?;
    let key = "id=\"rampart-challenge\">";
    let start = text.find(key)? + key.len();
    let end = start + text[start..].find("</script>")?;
    let v: serde_json::Value = serde_json::from_str(&text[start..end]).ok()?;
    Some((v["p"].as_str()?.to_owned(), v["bits"].as_u64()? as u8))
}

/// The nonce: the first decimal number whose SHA-256 with the puzzle has `bits` leading
/// zero bits — what the page's script computes.
pub fn solve(p: &str, bits: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| rampart_policy::challenge::solves(p, n, bits))
        .unwrap_or_default()
}

async fn think(r: &mut Rng, pace: f64) {
    let s = pace * (1.0 + 3.0 * r.unit());
    tokio::time::sleep(Duration::from_secs_f64(s)).await;
}

/// Legitimate users, the office and API clients, until `end`.
pub fn legit(ctx: &Arc<Ctx>, o: &Options, end: Instant) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let total = o.users + o.office_users;
    for u in 0..total {
        let ctx = ctx.clone();
        let pace = o.pace;
        let src = if u < o.users {
            crate::legit_addr(u)
        } else {
            crate::OFFICE
        };
        let profile = ctx.profiles.browsers[u % ctx.profiles.browsers.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Rng::new(u as u64 + 1);
            // Arrivals spread over the first seconds.
            tokio::time::sleep(Duration::from_millis(r.below(3000))).await;
            let mut c = Client::new(src, profile);
            while Instant::now() < end {
                let (method, path, body) = match r.below(20) {
                    0..=5 => ("GET", "/".to_owned(), None),
                    6..=11 => (
                        "GET",
                        format!("/search?q={}", WORDS[r.below(10) as usize]),
                        None,
                    ),
                    12..=18 => ("GET", format!("/product/{}", r.below(50)), None),
                    _ => (
                        "POST",
                        "/login".to_owned(),
                        Some(format!("user=customer{u}&password=ok")),
                    ),
                };
                let page = Page {
                    method,
                    path: &path,
                    ua: FIREFOX,
                    browser_headers: true,
                    body: body.as_deref(),
                };
                let (out, solved) = c.view(&ctx, page, Some(&ctx.stats.legit_latency)).await;
                ctx.stats
                    .legit_solved
                    .fetch_add(u64::from(solved), Ordering::Relaxed);
                ctx.stats
                    .legit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((ctx.ms(), u, out));
                think(&mut r, pace).await;
            }
        }));
    }
    for k in 0..o.api_clients {
        let ctx = ctx.clone();
        let u = total + k;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(
                Ipv4Addr::new(127, 4, 0, (k % 250 + 1) as u8),
                ctx.profiles.tool.clone(),
            );
            let key = format!("x-api-key-{k}");
            while Instant::now() < end {
                let t = Instant::now();
                let make = |h2: bool, _: Option<&str>| {
                    let mut req = request(
                        h2,
                        "GET",
                        "/api/accounts",
                        "bank-app/3.1",
                        false,
                        None,
                        None,
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&key) {
                        req.headers_mut().insert("x-api-key", v);
                    }
                    req
                };
                let out = match c.exchange(&ctx, &make).await {
                    Ok(r) if r.headers.contains_key("x-origin") => Outcome::Reached,
                    Ok(r) if r.status < 500 => Outcome::Stopped,
                    _ => Outcome::Failed,
                };
                ctx.stats
                    .legit_latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                ctx.stats
                    .legit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((ctx.ms(), u, out));
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        }));
    }
    tasks
}

fn record(ctx: &Ctx, out: Outcome) {
    ctx.stats
        .attack
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((ctx.ms(), out));
}

/// The attack of scenario `s`, until `end`.
pub fn attack(ctx: &Arc<Ctx>, o: &Options, s: Scenario, end: Instant) -> Vec<JoinHandle<()>> {
    let scaled = |n: usize| ((n as f64 * o.scale).round() as usize).max(1);
    let mut tasks = Vec::new();
    match s {
        Scenario::Stuffing => {
            // 2,000 addresses, 0.2–1 request a second each, rotating user agents.
            for i in 0..scaled(2000) {
                let ctx = ctx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut r = Rng::new(1_000_000 + i as u64);
                    let rate = 0.2 + 0.8 * r.unit();
                    let mut c = Client::new(crate::attack_addr(i), ctx.profiles.tool.clone());
                    tokio::time::sleep(Duration::from_secs_f64(r.unit() / rate)).await;
                    while Instant::now() < end {
                        let ua = UAS[r.below(UAS.len() as u64) as usize];
                        let body = format!(
                            "user=victim{}&password=guess{}",
                            r.below(100_000),
                            r.below(1000)
                        );
                        let (out, _) = c
                            .view_no_js(&ctx, "POST", "/login", ua, false, Some(&body))
                            .await;
                        record(&ctx, out);
                        tokio::time::sleep(Duration::from_secs_f64(1.0 / rate)).await;
                    }
                }));
            }
        }
        Scenario::Scraping => {
            // 400 addresses, 2 requests a second each, search and product pages.
            for i in 0..scaled(400) {
                let ctx = ctx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut r = Rng::new(2_000_000 + i as u64);
                    let mut c = Client::new(crate::attack_addr(i), ctx.profiles.tool.clone());
                    tokio::time::sleep(Duration::from_millis(r.below(500))).await;
                    while Instant::now() < end {
                        let ua = UAS[r.below(UAS.len() as u64) as usize];
                        let path = if r.below(2) == 0 {
                            format!("/search?q={}", r.below(1_000_000))
                        } else {
                            format!("/product/{}", r.below(100_000))
                        };
                        let (out, _) = c.view_no_js(&ctx, "GET", &path, ua, true, None).await;
                        record(&ctx, out);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }));
            }
        }
        Scenario::Flood => {
            // 5,000 addresses; 96 workers as fast as they can, each address keeping
            // its connection.
            let addrs = scaled(5000);
            let workers = 96.min(addrs);
            for w in 0..workers {
                let ctx = ctx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut r = Rng::new(3_000_000 + w as u64);
                    let mine: Vec<usize> = (w..addrs).step_by(workers).collect();
                    let mut clients: Vec<Client> = mine
                        .iter()
                        .map(|&i| Client::new(crate::attack_addr(i), ctx.profiles.flood.clone()))
                        .collect();
                    let mut k = 0usize;
                    while Instant::now() < end {
                        let c = &mut clients[k % mine.len()];
                        k += 1;
                        let path = format!("/?r={}", r.below(1_000_000));
                        let (out, _) = c
                            .view_no_js(&ctx, "GET", &path, "Mozilla/5.0", false, None)
                            .await;
                        record(&ctx, out);
                        if out == Outcome::Failed {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }));
            }
        }
        Scenario::LowSlow => {
            // 1,000 addresses, 0.3 requests a second each, full browser headers, one TLS
            // and HTTP/2 stack.
            for i in 0..scaled(1000) {
                let ctx = ctx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut r = Rng::new(4_000_000 + i as u64);
                    let mut c = Client::new(crate::attack_addr(i), ctx.profiles.slow.clone());
                    tokio::time::sleep(Duration::from_secs_f64(3.3 * r.unit())).await;
                    while Instant::now() < end {
                        let path = format!("/search?q={}", WORDS[r.below(10) as usize]);
                        let (out, _) = c.view_no_js(&ctx, "GET", &path, FIREFOX, true, None).await;
                        record(&ctx, out);
                        tokio::time::sleep(Duration::from_secs_f64(3.3)).await;
                    }
                }));
            }
        }
        Scenario::Solvers => {
            // 50 headless browsers that solve the challenge, then search 5 times a
            // second each.
            for i in 0..scaled(50) {
                let ctx = ctx.clone();
                let started = ctx.started;
                tasks.push(tokio::spawn(async move {
                    let mut r = Rng::new(5_000_000 + i as u64);
                    let mut c = Client::new(
                        crate::attack_addr(i * 997),
                        ctx.profiles.browsers[0].clone(),
                    );
                    while Instant::now() < end {
                        let path = format!("/search?q={}", r.below(1_000_000));
                        let page = Page {
                            method: "GET",
                            path: &path,
                            ua: HEADLESS,
                            browser_headers: true,
                            body: None,
                        };
                        let (out, solved) = c.view(&ctx, page, None).await;
                        ctx.stats
                            .attack_solved
                            .fetch_add(u64::from(solved), Ordering::Relaxed);
                        record(&ctx, out);
                        if out == Outcome::Reached {
                            let minute = started.elapsed().as_secs() / 60;
                            *ctx.stats
                                .solver_passed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry((i, minute))
                                .or_default() += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }));
            }
        }
    }
    tasks
}

impl Client {
    /// A request from a client that runs no JavaScript: a challenge stops it.
    async fn view_no_js(
        &mut self,
        ctx: &Ctx,
        method: &str,
        path: &str,
        ua: &str,
        browser_headers: bool,
        body: Option<&str>,
    ) -> (Outcome, u32) {
        let make = |h2: bool, cookie: Option<&str>| {
            request(h2, method, path, ua, browser_headers, cookie, body)
        };
        match self.exchange(ctx, &make).await {
            Ok(r) if r.headers.contains_key("x-origin") => (Outcome::Reached, 0),
            Ok(r) if r.status >= 500 => (Outcome::Failed, 0),
            Ok(_) => (Outcome::Stopped, 0),
            Err(_) => (Outcome::Failed, 0),
        }
    }
}

/// Headless Chromium users (`tools/browser/sim-browsers.mjs`): real browsers running
/// the challenge's script, from the attack's start for `secs`; their JSON summary.
pub fn browsers(
    o: &Options,
    edge: SocketAddr,
    duration: Duration,
    at: Instant,
) -> JoinHandle<Option<serde_json::Value>> {
    let script = o.tools.join("sim-browsers.mjs");
    let n = o.browsers;
    let pace = o.pace;
    tokio::spawn(async move {
        tokio::time::sleep_until(at.into()).await;
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("node")
                .arg(script)
                .arg(format!("https://{HOST}:{}", edge.port()))
                .arg(n.to_string())
                .arg(duration.as_secs().to_string())
                .arg(pace.to_string())
                .output()
        })
        .await
        .ok()?
        .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last()?).ok()
    })
}

/// A GET on the admin endpoint; its JSON.
pub async fn admin_get(admin: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(serde_json::from_str(body.trim())?)
}
