//! # rampart-sim
//!
//! Rampart's attack simulator. It starts a sample origin and `rampart serve` in front of
//! it (TLS on a loopback port), then drives traffic through the edge from many source
//! addresses (distinct `127.x.y.z`):
//!
//! - **legitimate users** who behave like browsers: each on its own address (some behind
//!   one office NAT address, some in the country a blunt defence would block), with one
//!   of three browser-like TLS/HTTP-2 stacks, a browser `User-Agent` and headers, keeping
//!   cookies, pausing 1–4 s between page views (search, products, login), and solving the
//!   challenge when they get one — the same SHA-256 proof of work the page's script
//!   computes (a sample of real headless Chromium, `--browsers`, runs the script itself);
//! - **API clients** with keys on the API route;
//! - one of five **attacks**: (a) credential stuffing on `POST /login` from 2,000
//!   addresses at 0.2–1 request a second each, rotating user agents; (b) scraping of
//!   search and product pages; (c) an HTTP flood from 5,000 addresses as fast as the
//!   machine allows; (d) a low-and-slow flood with full browser headers and one TLS
//!   fingerprint; (e) headless-browser bots that solve the challenge.
//!
//! Each scenario runs against three defences: Rampart as configured here
//! ([`Defence::Rampart`]: automatic flood mitigation, bot score, per-client quotas),
//! and two blunt baselines — a per-address rate limit ([`Defence::PerIp`]) and a country
//! block ([`Defence::GeoBlock`]). The report ([`RunReport`]) gives per scenario and
//! defence: the share of attack requests that reached the origin, overall and once
//! mitigation started; the share of legitimate requests denied or failed; legitimate
//! users locked out; time from attack start to mitigation; origin load; and the edge's
//! latency for legitimate requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod agents;
pub mod net;
pub mod origin;
pub mod report;

pub use report::RunReport;

/// Who a client address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Population {
    /// Legitimate users, the office, API clients, the Chromium sample.
    Legit,
    /// The attack of the scenario running.
    Attack,
}

/// Legitimate addresses: `127.1.0.0/16`, the office `127.2.0.1`, API clients
/// `127.4.0.0/24`, users abroad `127.64.1.0/24`, Chromium on `127.0.0.1`; everything
/// else is an attacker's.
pub fn population_of(ip: Ipv4Addr) -> Population {
    let o = ip.octets();
    match (o[1], o[2]) {
        (0 | 1 | 2 | 4, _) | (64, 1) => Population::Legit,
        _ => Population::Attack,
    }
}

/// The address of legitimate user `u`: one in twenty lives in the country a country
/// block would block.
pub fn legit_addr(u: usize) -> Ipv4Addr {
    if u % 20 == 0 {
        Ipv4Addr::new(127, 64, 1, (u / 20 % 250 + 1) as u8)
    } else {
        Ipv4Addr::new(127, 1, (u / 250) as u8, (u % 250 + 1) as u8)
    }
}

/// The office's one NAT address.
pub const OFFICE: Ipv4Addr = Ipv4Addr::new(127, 2, 0, 1);

/// Attacker address `i`: seven in ten in country `AA` (`127.64.0.0/10`), the rest in
/// `DE` (the rest of `127/8`), spread over many /24s.
pub fn attack_addr(i: usize) -> Ipv4Addr {
    let (hi, lo) = ((i / 250 % 240) as u8, (i % 250 + 1) as u8);
    if i % 10 < 7 {
        Ipv4Addr::new(127, 65 + (i / 60_000 % 50) as u8, hi, lo)
    } else {
        Ipv4Addr::new(127, 10 + (i / 60_000 % 50) as u8, hi, lo)
    }
}

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// (a) credential stuffing.
    Stuffing,
    /// (b) scraping.
    Scraping,
    /// (c) HTTP flood.
    Flood,
    /// (d) low-and-slow flood.
    LowSlow,
    /// (e) bots that solve the challenge.
    Solvers,
}

impl Scenario {
    /// `a` … `e`.
    pub fn letter(self) -> char {
        match self {
            Scenario::Stuffing => 'a',
            Scenario::Scraping => 'b',
            Scenario::Flood => 'c',
            Scenario::LowSlow => 'd',
            Scenario::Solvers => 'e',
        }
    }

    /// A short description.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Stuffing => "credential stuffing",
            Scenario::Scraping => "scraping",
            Scenario::Flood => "HTTP flood",
            Scenario::LowSlow => "low-and-slow flood",
            Scenario::Solvers => "challenge-solving bots",
        }
    }

    /// From its letter.
    pub fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "a" => Scenario::Stuffing,
            "b" => Scenario::Scraping,
            "c" => Scenario::Flood,
            "d" => Scenario::LowSlow,
            "e" => Scenario::Solvers,
            _ => return None,
        })
    }
}

/// What stands in front of the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defence {
    /// Rampart: automatic flood mitigation, bot score, per-client quotas.
    Rampart,
    /// Rampart's automatic flood mitigation alone (no policy: no bot-score rule, no
    /// quotas), to measure it by itself.
    FloodOnly,
    /// Baseline: 100 requests a minute per address, nothing else.
    PerIp,
    /// Baseline: country `AA` blocked, nothing else.
    GeoBlock,
}

impl Defence {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Defence::Rampart => "rampart",
            Defence::FloodOnly => "rampart-flood-only",
            Defence::PerIp => "per-ip-limit",
            Defence::GeoBlock => "country-block",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Defence> {
        Some(match s {
            "rampart" => Defence::Rampart,
            "flood-only" | "rampart-flood-only" => Defence::FloodOnly,
            "per-ip" | "per-ip-limit" => Defence::PerIp,
            "geo" | "country-block" => Defence::GeoBlock,
            _ => return None,
        })
    }
}

/// How a run is sized.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `rampart` binary.
    pub rampart: PathBuf,
    /// Scenarios, each run against every defence.
    pub scenarios: Vec<Scenario>,
    /// Defences.
    pub defences: Vec<Defence>,
    /// Legitimate traffic alone before the attack (the baseline is learned then).
    pub warmup: Duration,
    /// The attack.
    pub attack: Duration,
    /// Legitimate traffic after the attack.
    pub cooldown: Duration,
    /// Legitimate users on their own addresses.
    pub users: usize,
    /// Legitimate users behind the office's one address.
    pub office_users: usize,
    /// API clients.
    pub api_clients: usize,
    /// Attack size: 1.0 is the issue's (2,000 stuffing addresses, 5,000 flood addresses…).
    pub scale: f64,
    /// Headless Chromium users (real browsers running the challenge script), 0 for none.
    pub browsers: usize,
    /// Where `tools/browser` is (for `--browsers`).
    pub tools: PathBuf,
    /// Think time between a user's page views is drawn from `[pace, 4 pace]` seconds.
    pub pace: f64,
}

/// Where the edge listens, and the directory of its files.
pub struct EdgeRun {
    /// The TLS listener.
    pub addr: SocketAddr,
    /// The admin endpoint.
    pub admin: SocketAddr,
    /// Its files.
    pub dir: PathBuf,
    child: std::process::Child,
}

impl Drop for EdgeRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host name of the sample site.
pub const HOST: &str = "bank.test";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The edge's configuration for `d`.
pub fn config(
    d: Defence,
    port: u16,
    admin: u16,
    origin: SocketAddr,
    dir: &std::path::Path,
    learn: Duration,
) -> String {
    let dir = dir.display();
    let common = format!(
        r#"[edge]
admin = "127.0.0.1:{admin}"
access_log = "off"
security_log = "{dir}/security.log"

[[tenant]]
id = "bank"

[[listener]]
name = "web"
bind = "127.0.0.1:{port}"
tls = true
[listener.limits]
max_connections_per_ip = 10000
keepalive_timeout = "120s"

[[certificate]]
name = "bank"
cert = "{dir}/bank.crt"
key = "{dir}/bank.key"
default = true

[[pool]]
id = "app"
tenant = "bank"
servers = ["{origin}"]

[geo]
country = ["{dir}/country.mmdb"]

[[list]]
name = "blocked_countries"
kind = "country"
entries = ["AA"]

[[site]]
id = "bank"
tenant = "bank"
hosts = ["{HOST}"]
[[site.route]]
path = "/"
pool = "app"
[[site.route]]
path = "/api/"
pool = "app"
clients = "api"
"#
    );
    let learn = learn.as_secs().max(1);
    let defence = match d {
        Defence::Rampart => format!(
            r#"
[site.flood]
learn = "{learn}s"

[site.bot]
login_path = "/login"

[site.policy]
[[site.policy.rule]]
id = "likely-bots"
expression = 'bot.score >= 50'
action = "challenge"
[[site.policy.rule]]
id = "cleared-quota"
priority = 5
expression = 'client.identity starts_with "c:"'
action = "rate_limit"
limit = "per-client"
[[site.policy.limit]]
name = "per-client"
key = ["client.identity"]
window = "1m"
threshold = [{{ above = 120, action = "block", status = 429 }}]
[[site.policy.limit]]
name = "per-api-key"
filter = 'http.request.uri.path starts_with "/api/"'
key = ['http.request.headers["x-api-key"][0]']
window = "1m"
threshold = [{{ above = 600, action = "block", status = 429 }}]
"#
        ),
        Defence::FloodOnly => format!(
            r#"
[site.flood]
learn = "{learn}s"
"#
        ),
        Defence::PerIp => r#"
[site.flood]
enabled = false

[site.policy]
[[site.policy.limit]]
name = "per-ip"
key = ["ip.src"]
window = "1m"
threshold = [{ above = 100, action = "block", status = 429 }]
"#
        .to_owned(),
        Defence::GeoBlock => r#"
[site.flood]
enabled = false

[site.policy]
[[site.policy.list]]
list = "blocked_countries"
use = "deny"
"#
        .to_owned(),
    };
    common + &defence
}

/// Starts `rampart serve` for defence `d` in front of `origin`; the certificate's DER.
pub async fn start_edge(
    o: &Options,
    d: Defence,
    origin: SocketAddr,
    dir: PathBuf,
) -> anyhow::Result<(EdgeRun, Vec<u8>)> {
    std::fs::create_dir_all(&dir)?;
    let ck = rcgen::generate_simple_self_signed(vec![HOST.to_owned()])?;
    std::fs::write(dir.join("bank.crt"), ck.cert.pem())?;
    std::fs::write(dir.join("bank.key"), ck.key_pair.serialize_pem())?;
    // Country `AA` is 127.64.0.0/10; `DE` the rest of 127/8.
    let mut w = rampart_policy::geo::Writer::new("Sim-Country");
    let net = |s: &str| s.parse::<std::net::IpAddr>();
    w.insert(
        net("127.0.0.0")?,
        10,
        rampart_policy::geo::country_record("DE"),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.0))?;
    w.insert(
        net("127.64.0.0")?,
        10,
        rampart_policy::geo::country_record("AA"),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.0))?;
    w.insert(
        net("127.128.0.0")?,
        9,
        rampart_policy::geo::country_record("DE"),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.0))?;
    std::fs::write(dir.join("country.mmdb"), w.finish())?;
    let (port, admin) = (free_port()?, free_port()?);
    let learn = o
        .warmup
        .saturating_sub(Duration::from_secs(10))
        .max(Duration::from_secs(5));
    let cfg = dir.join("rampart.toml");
    std::fs::write(&cfg, config(d, port, admin, origin, &dir, learn))?;
    let child = std::process::Command::new(&o.rampart)
        .args(["serve", "-c"])
        .arg(&cfg)
        .env("RAMPART_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", o.rampart.display()))?;
    let run = EdgeRun {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        dir,
        child,
    };
    let end = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(run.addr).await.is_err() {
        if Instant::now() > end {
            anyhow::bail!("the edge did not start listening on {}", run.addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((run, ck.cert.der().to_vec()))
}

/// What every agent records into.
#[derive(Default)]
pub struct Stats {
    /// Legitimate page views: (ms since the run started, user, outcome).
    pub legit: Mutex<Vec<(u64, usize, agents::Outcome)>>,
    /// Latency of legitimate requests (µs), each exchange with the edge.
    pub legit_latency: Mutex<Vec<u32>>,
    /// Challenges legitimate users solved.
    pub legit_solved: AtomicU64,
    /// Attack requests: (ms since the run started, outcome).
    pub attack: Mutex<Vec<(u64, agents::Outcome)>>,
    /// Requests each challenge-solving bot got through, per minute of the attack:
    /// (bot, minute) → count.
    pub solver_passed: Mutex<std::collections::HashMap<(usize, u64), u64>>,
    /// Challenges the attackers solved.
    pub attack_solved: AtomicU64,
}

/// Runs every scenario against every defence.
pub async fn run(o: &Options) -> anyhow::Result<Vec<RunReport>> {
    let mut out = Vec::new();
    for &s in &o.scenarios {
        for &d in &o.defences {
            eprintln!(
                "rampart-sim: scenario ({}) {} against {}",
                s.letter(),
                s.describe(),
                d.name()
            );
            let r = run_one(o, s, d).await?;
            eprintln!("{}", report::line(&r));
            out.push(r);
        }
    }
    Ok(out)
}

/// One scenario against one defence.
pub async fn run_one(o: &Options, s: Scenario, d: Defence) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let (origin, counts) = origin::start(started).await?;
    let dir = std::env::temp_dir().join(format!(
        "rampart-sim-{}-{}-{}",
        std::process::id(),
        s.letter(),
        d.name()
    ));
    let (edge, ca) = start_edge(o, d, origin, dir).await?;
    let profiles = Arc::new(net::Profiles::new(&ca)?);
    let stats = Arc::new(Stats::default());
    let ctx = Arc::new(agents::Ctx {
        edge: edge.addr,
        profiles,
        stats: stats.clone(),
        started,
    });
    let attack_at = started + o.warmup;
    let attack_end = attack_at + o.attack;
    let end = attack_end + o.cooldown;
    let mut tasks = agents::legit(&ctx, o, end);
    let browser = if o.browsers > 0 {
        Some(agents::browsers(
            o,
            edge.addr,
            o.attack + o.cooldown,
            attack_at,
        ))
    } else {
        None
    };
    tokio::time::sleep_until(attack_at.into()).await;
    tasks.extend(agents::attack(&ctx, o, s, attack_end));
    tokio::time::sleep_until(end.into()).await;
    for t in &tasks {
        t.abort();
    }
    let browser = match browser {
        Some(h) => h.await.ok().flatten(),
        None => None,
    };
    let flood_state = agents::admin_get(edge.admin, "/-/flood").await.ok();
    drop(edge);
    Ok(report::summarise(
        o,
        s,
        d,
        &stats,
        &counts,
        started,
        browser,
        flood_state,
    ))
}
