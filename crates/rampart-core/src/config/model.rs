//! The validated runtime configuration: what the edge runs from.
//!
//! Built only by [`super::compile`]; every value here has been checked, every reference
//! resolved to an index, and every unit converted. Positions ([`Span`]s) are kept where the
//! edge will still do I/O with a value (files, host names) so that its errors can point at
//! the key too.

use super::policy::{ListDef, PolicySpec};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::Span;
use crate::net::CidrSet;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process-wide settings.
    pub edge: EdgeSettings,
    /// Tenants, in file order.
    pub tenants: Vec<Tenant>,
    /// Listeners, in file order.
    pub listeners: Vec<Listener>,
    /// Certificates, in file order.
    pub certificates: Vec<Certificate>,
    /// Origin pools, in file order.
    pub pools: Vec<Pool>,
    /// Sites, in file order.
    pub sites: Vec<Site>,
    /// Host → site lookup per listener (index into `listeners`).
    pub routing: Vec<HostTable>,
    /// Named lists (`[[list]]`), in file order.
    pub lists: Vec<ListDef>,
    /// The Redis server for shared counters, if configured.
    pub redis: Option<RedisSettings>,
    /// Country and ASN databases (paths as written, with where), if configured.
    pub geo: Option<GeoSettings>,
    /// Challenge keys (`[challenge]`).
    pub challenge: ChallengeKeys,
}

/// `[geo]`: MaxMind-format databases the edge reads at load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoSettings {
    /// Country databases, asked in order.
    pub country: Vec<super::policy::Located>,
    /// ASN databases, asked in order.
    pub asn: Vec<super::policy::Located>,
}

/// `[redis]`: where counters shared by a cluster of edges live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port` as written.
    pub address: String,
    /// Longest wait for an answer.
    pub timeout: Duration,
    /// `AUTH` password.
    pub password: Option<String>,
    /// `SELECT` database.
    pub database: u32,
    /// Key prefix.
    pub key_prefix: String,
}

/// Index of a tenant in [`Config::tenants`].
pub type TenantIdx = usize;
/// Index of a pool in [`Config::pools`].
pub type PoolIdx = usize;
/// Index of a site in [`Config::sites`].
pub type SiteIdx = usize;

/// Process-wide settings (`[edge]`).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSettings {
    /// Admin listener address.
    pub admin: Option<SocketAddr>,
    /// Peers whose X-Forwarded-For and X-Request-Id are believed.
    pub trusted_proxies: CidrSet,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Where access-log lines go.
    pub access_log: AccessLogTarget,
    /// Where security events go (same choices as the access log).
    pub security_log: AccessLogTarget,
    /// Worker threads (0 = one per core).
    pub workers: usize,
}

/// Where the JSON access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// No access log.
    Off,
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(String),
}

/// HTTP limits of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request target accepted (414 beyond).
    pub max_uri_bytes: usize,
    /// Total size of header lines (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Largest request body (413 beyond); `None` = unlimited.
    pub max_body_bytes: Option<u64>,
    /// Time to receive a whole request head (408 beyond).
    pub header_timeout: Duration,
    /// Longest pause between request body reads (408 beyond).
    pub body_timeout: Duration,
    /// Keep-alive idle time between requests.
    pub keepalive_timeout: Duration,
    /// Concurrent connections per client IP.
    pub max_connections_per_ip: u32,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 pending reset streams before GOAWAY (Rapid Reset defence).
    pub h2_max_pending_reset_streams: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_body_bytes: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            max_connections_per_ip: 256,
            h2_max_concurrent_streams: 100,
            h2_max_pending_reset_streams: 20,
        }
    }
}

/// A tenant of the managed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Stable id (on every log line, event and metric series).
    pub id: Arc<str>,
    /// Display name.
    pub name: Option<String>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Unique name.
    pub name: Arc<str>,
    /// Address bound.
    pub bind: SocketAddr,
    /// What the listener speaks.
    pub kind: ListenerKind,
    /// PROXY protocol accepted from these peers (`None` = PROXY protocol off).
    pub proxy_protocol: Option<CidrSet>,
    /// Limits on this listener.
    pub limits: HttpLimits,
}

/// What a listener speaks.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerKind {
    /// HTTP/1.1 and HTTP/2, optionally over TLS.
    Http {
        /// TLS terminated here.
        tls: bool,
    },
    /// Raw TCP pass-through to a pool.
    Tcp {
        /// Owning tenant.
        tenant: TenantIdx,
        /// Destination pool.
        pool: PoolIdx,
        /// New connections per second per client IP (`None` = unlimited).
        max_connection_rate_per_ip: Option<f64>,
    },
}

impl Listener {
    /// Whether TLS is terminated on this listener.
    pub fn is_tls(&self) -> bool {
        matches!(self.kind, ListenerKind::Http { tls: true })
    }
}

/// A certificate served by SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Unique name.
    pub name: Arc<str>,
    /// PEM chain path and where it was named.
    pub cert: (String, Span),
    /// PEM key path and where it was named.
    pub key: (String, Span),
    /// Lower-case SNI names (`*.example.com` allowed).
    pub hosts: Vec<String>,
    /// Served when SNI matches nothing.
    pub default: bool,
}

/// How a pool spreads requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Weighted round robin.
    RoundRobin,
    /// Fewest requests in flight.
    LeastConn,
}

/// Protocol spoken to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge on plain TCP, ALPN h2 on TLS).
    Http2,
}

/// An origin pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Unique id.
    pub id: Arc<str>,
    /// Owning tenant.
    pub tenant: TenantIdx,
    /// Servers.
    pub servers: Vec<Server>,
    /// Balancing.
    pub balance: Balance,
    /// Protocol to the origin.
    pub protocol: UpstreamProtocol,
    /// TLS to the origin.
    pub tls: Option<UpstreamTls>,
    /// Connection establishment limit.
    pub connect_timeout: Duration,
    /// Time to response head and between body reads.
    pub read_timeout: Duration,
    /// Idle keep-alive connection lifetime.
    pub idle_timeout: Duration,
    /// Active checks.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub passive: Passive,
}

/// One origin server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Host (name or IP literal).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Round-robin weight (≥ 1).
    pub weight: u32,
    /// Where the address was written.
    pub span: Span,
}

impl Server {
    /// `host:port`, with IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// TLS to the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// SNI and verified name (`None` = the server's host).
    pub sni: Option<String>,
    /// CA bundle (`None` = system store).
    pub ca_file: Option<(String, Span)>,
    /// Verify the certificate.
    pub verify: bool,
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested.
    pub path: String,
    /// Host header (`None` = server authority).
    pub host: Option<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Inclusive status range counted as success.
    pub expect_status: (u16, u16),
}

/// Passive ejection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passive {
    /// Consecutive connect failures that eject (0 = never).
    pub connect_failures: u32,
    /// Consecutive 5xx that eject (0 = never).
    pub consecutive_5xx: u32,
    /// Ejection duration.
    pub ejection_time: Duration,
}

impl Default for Passive {
    fn default() -> Self {
        Passive {
            connect_failures: 3,
            consecutive_5xx: 0,
            ejection_time: Duration::from_secs(10),
        }
    }
}

/// A site: host names on listeners, with routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Unique id.
    pub id: Arc<str>,
    /// Owning tenant.
    pub tenant: TenantIdx,
    /// Host patterns as written (lower case).
    pub hosts: Vec<String>,
    /// Routes, longest prefix first.
    pub routes: Vec<Route>,
    /// The challenge's settings on this site.
    pub challenge: SiteChallenge,
    /// The bot score's settings on this site.
    pub bot: SiteBot,
    /// Automatic flood mitigation on this site.
    pub flood: SiteFlood,
}

/// `[site.flood]`: automatic flood mitigation on one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteFlood {
    /// On (default) or off.
    pub enabled: bool,
    /// Automatic rules only record (`would_challenge`) when true; also true on an
    /// onboarding site (a policy with `monitor = true`).
    pub monitor: bool,
    /// Automatic rules block instead of challenging first.
    pub block: bool,
    /// How many times the baseline rate is a flood.
    pub factor: f64,
    /// How many times the baseline rate makes the edge look at the traffic's make-up: a
    /// flood when clients absent from the baseline explain the excess.
    pub suspect_factor: f64,
    /// The least excess (requests a second) that is a flood.
    pub min_excess: f64,
    /// Largest share of the baseline an automatic rule may match.
    pub bound: f64,
    /// Traffic observed before the baseline is trusted.
    pub learn: Duration,
    /// Time back under the threshold before an attack is over.
    pub quiet: Duration,
    /// Time without a match before an automatic rule expires, once the attack is over.
    pub cooldown: Duration,
}

impl Default for SiteFlood {
    fn default() -> Self {
        SiteFlood {
            enabled: true,
            monitor: false,
            block: false,
            factor: 3.0,
            suspect_factor: 1.5,
            min_excess: 20.0,
            bound: 0.001,
            learn: Duration::from_secs(30),
            quiet: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// `[site.bot]`: the bot score's settings on one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteBot {
    /// Requests per minute per identity above which `high_rate` counts (`very_high_rate`
    /// above four times this).
    pub rate: u32,
    /// Distinct paths per minute per identity above which `many_paths` counts.
    pub paths: u32,
    /// The login form's path: 401/403 answers to POSTs there are failed logins.
    pub login_path: Option<String>,
    /// Operator-listed good bots.
    pub verified: Vec<VerifiedBot>,
}

impl Default for SiteBot {
    fn default() -> Self {
        SiteBot {
            rate: 300,
            paths: 100,
            login_path: None,
            verified: Vec::new(),
        }
    }
}

/// A good bot the operator lists: its `User-Agent` and its networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBot {
    /// Name.
    pub name: String,
    /// A substring of its `User-Agent` (compared ignoring case).
    pub user_agent: String,
    /// Its networks.
    pub networks: crate::net::CidrSet,
}

/// `[challenge]`: where the clearance tokens' keys come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChallengeKeys {
    /// Key file, as written and where; `None`: a random key made when the edge starts
    /// (tokens then do not survive a restart, nor work on another edge).
    pub key_file: Option<super::policy::Located>,
}

/// `[site.challenge]`: the interstitial's settings on one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteChallenge {
    /// Leading zero bits of a first puzzle.
    pub difficulty: u8,
    /// Ceiling of the adaptive difficulty.
    pub max_difficulty: u8,
    /// Clearance token lifetime.
    pub clearance_ttl: Duration,
    /// Address prefix a token is bound to (IPv4, IPv6).
    pub ipv4_prefix: u8,
    /// See `ipv4_prefix`.
    pub ipv6_prefix: u8,
    /// Tokens are bound to the TLS fingerprint.
    pub bind_tls_fingerprint: bool,
    /// Wait of the path without JavaScript.
    pub noscript_wait: Duration,
}

impl Default for SiteChallenge {
    fn default() -> Self {
        SiteChallenge {
            difficulty: 16,
            max_difficulty: 18,
            clearance_ttl: Duration::from_secs(3600),
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            bind_tls_fingerprint: true,
            noscript_wait: Duration::from_secs(5),
        }
    }
}

/// Who calls a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clients {
    /// People with browsers: may be challenged.
    #[default]
    Browser,
    /// Programs: never challenged (a challenge verdict is recorded, not enforced).
    Api,
}

/// A route: path prefix → pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Prefix, starting with `/`.
    pub prefix: String,
    /// Pool.
    pub pool: PoolIdx,
    /// The WAF policy in force on this route (the site's, with the route's overrides), or
    /// `None` without a WAF.
    pub waf: Option<Arc<WafPolicy>>,
    /// Lists, limits and custom rules in force on this route (the site's, then the
    /// route's), or `None` without any.
    pub policy: Option<Arc<PolicySpec>>,
    /// Who calls the route.
    pub clients: Clients,
}

/// What the WAF does with a request whose anomaly score reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WafMode {
    /// Block it (403 with the block page).
    Enforce,
    /// Let it through; the event says it would have been blocked.
    Monitor,
}

/// A WAF policy: a SecLang ruleset (normally the OWASP CRS) and its tuning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WafPolicy {
    /// CRS directory or SecLang file, as written, and where.
    pub rules: (String, Span),
    /// CRS paranoia level, 1–4.
    pub paranoia_level: u8,
    /// CRS inbound anomaly score threshold.
    pub inbound_threshold: u32,
    /// CRS outbound anomaly score threshold.
    pub outbound_threshold: u32,
    /// Enforce or monitor.
    pub mode: WafMode,
    /// How many request body bytes are inspected.
    pub body_limit: u64,
    /// How many response body bytes are inspected (0: none).
    pub response_body_limit: u64,
    /// The operator's SecLang exclusion files, as written, and where.
    pub exclusion_files: Vec<(String, Span)>,
    /// Declarative exclusions.
    pub exclude: Vec<WafExclude>,
}

/// Which rules an exclusion concerns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WafRuleSel {
    /// One rule id.
    Id(u64),
    /// Every rule with this tag.
    Tag(String),
}

/// A declarative exclusion: rules × target × path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WafExclude {
    /// The rules.
    pub rules: WafRuleSel,
    /// The SecLang target they stop inspecting (`None`: they do not run).
    pub target: Option<String>,
    /// Only under this path prefix.
    pub path: Option<String>,
    /// Where it is written.
    pub span: Span,
}

/// Host → site for one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostTable {
    /// Exact host names.
    pub exact: HashMap<String, SiteIdx>,
    /// `*.suffix` patterns as `(".suffix", site)`, longest suffix first.
    pub wildcard: Vec<(String, SiteIdx)>,
    /// The `"*"` site.
    pub any: Option<SiteIdx>,
}

impl HostTable {
    /// Finds the site for a `Host` value (port and trailing dot ignored, case-insensitive).
    pub fn lookup(&self, host: &str) -> Option<SiteIdx> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let mut buf = [0u8; 256];
        let lower: &str = if host.len() <= buf.len() && host.bytes().any(|b| b.is_ascii_uppercase())
        {
            let dst = &mut buf[..host.len()];
            dst.copy_from_slice(host.as_bytes());
            dst.make_ascii_lowercase();
            std::str::from_utf8(dst).unwrap_or(host)
        } else {
            host
        };
        if let Some(&site) = self.exact.get(lower) {
            return Some(site);
        }
        for (suffix, site) in &self.wildcard {
            if lower.len() > suffix.len() && lower.ends_with(suffix.as_str()) {
                return Some(*site);
            }
        }
        self.any
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub fn strip_port(host: &str) -> &str {
    let b = host.as_bytes();
    if b.first() == Some(&b'[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    // The port is the digits after the last ':' (read backwards: no search set-up).
    let mut i = b.len();
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i > 0 && b[i - 1] == b':' {
        &host[..i - 1]
    } else {
        host
    }
}

impl Site {
    /// The route whose prefix matches `path` (longest first), if any.
    /// The asterisk-form target of `OPTIONS *` is routed like `/`.
    pub fn route_for(&self, path: &str) -> Option<usize> {
        let path = if path == "*" { "/" } else { path };
        self.routes
            .iter()
            .position(|r| path_has_prefix(path, &r.prefix))
    }
}

/// Whether `path` lies under `prefix`: `/api` matches `/api`, `/api/x` and `/api?…` but not `/apix`;
/// a prefix ending in `/` matches by plain prefix.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}
