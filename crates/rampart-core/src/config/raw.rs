//! The configuration file as written: serde types that mirror the TOML one to one.
//!
//! Every table rejects unknown keys. Values that need checking beyond their TOML type
//! keep their [`Spanned`] position so that [`super::compile`] can point at them.

use serde::Deserialize;
use toml::Spanned;

/// A value kept with its position in the file.
pub type Sp<T> = Spanned<T>;

/// A byte size: an integer, or a string with a unit (`"8KiB"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    /// Plain number of bytes.
    Bytes(u64),
    /// Number with unit.
    Text(String),
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Schema version; only `1` exists.
    pub version: Option<Sp<i64>>,
    /// Process-wide settings.
    #[serde(default)]
    pub edge: RawEdge,
    /// HTTP limits applied to every HTTP listener unless a listener overrides them.
    #[serde(default)]
    pub limits: RawLimits,
    /// Tenants of the managed service.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<RawTenant>,
    /// Listening sockets.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    /// TLS certificates served by SNI.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<RawCertificate>,
    /// Origin pools.
    #[serde(default, rename = "pool")]
    pub pools: Vec<RawPool>,
    /// Sites: host names on listeners, routed to pools.
    #[serde(default, rename = "site")]
    pub sites: Vec<RawSite>,
    /// Named lists of addresses, countries, ASNs or strings, for policies.
    #[serde(default, rename = "list")]
    pub lists: Vec<RawList>,
    /// The Redis server that holds counters shared by a cluster of edges.
    pub redis: Option<RawRedis>,
    /// Country and ASN databases (MaxMind format).
    pub geo: Option<RawGeo>,
    /// Keys of the challenge's clearance tokens.
    pub challenge: Option<RawChallengeKeys>,
}

/// `[challenge]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChallengeKeys {
    /// File of signing keys (`name base64-secret` per line; the first signs).
    pub key_file: Option<Sp<String>>,
}

/// `[site.challenge]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteChallenge {
    /// Proof-of-work difficulty in leading zero bits for a first puzzle.
    pub difficulty: Option<Sp<i64>>,
    /// Highest difficulty it rises to for an address prefix that keeps asking.
    pub max_difficulty: Option<Sp<i64>>,
    /// How long a clearance token is valid.
    pub clearance_ttl: Option<Sp<String>>,
    /// Prefix length a token is bound to, IPv4.
    pub ipv4_prefix: Option<Sp<i64>>,
    /// Prefix length a token is bound to, IPv6.
    pub ipv6_prefix: Option<Sp<i64>>,
    /// Bind tokens to the TLS fingerprint.
    pub bind_tls_fingerprint: Option<Sp<bool>>,
    /// The wait of the path without JavaScript.
    pub noscript_wait: Option<Sp<String>>,
}

/// `[geo]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    /// Country databases (MaxMind DB files, GeoLite2-Country or ip-location-db layout),
    /// asked in order until one knows the address.
    #[serde(default)]
    pub country: Vec<Sp<String>>,
    /// ASN databases (GeoLite2-ASN layout), asked in order.
    #[serde(default)]
    pub asn: Vec<Sp<String>>,
}

/// `[redis]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `host:port` of the server.
    pub address: Sp<String>,
    /// How long a check may wait for its answer before the limit's `on_failure` applies.
    pub timeout: Option<Sp<String>>,
    /// Password (`AUTH`), if the server asks for one.
    pub password: Option<Sp<String>>,
    /// Database number (`SELECT`).
    pub database: Option<Sp<i64>>,
    /// Prefix of every key Rampart writes.
    pub key_prefix: Option<Sp<String>>,
}

/// `[edge]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// Admin listener (metrics, health, reload), e.g. `"127.0.0.1:9901"`.
    pub admin: Option<Sp<String>>,
    /// CIDRs whose X-Forwarded-For and X-Request-Id are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Sp<String>>,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Option<Sp<String>>,
    /// `"stdout"`, `"off"`, or a file path.
    pub access_log: Option<Sp<String>>,
    /// Security events (WAF matches): `"stdout"`, `"off"`, or a file path.
    pub security_log: Option<Sp<String>>,
    /// Worker threads; 0 or absent = one per core.
    pub workers: Option<Sp<i64>>,
}

/// `[limits]` (also accepted inside a listener as `[listener.limits]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Longest request target (URI) accepted; longer gets 414.
    pub max_uri_bytes: Option<Sp<RawSize>>,
    /// Total size of all request header lines; larger gets 431.
    pub max_header_bytes: Option<Sp<RawSize>>,
    /// Most header fields in one request; more gets 431.
    pub max_headers: Option<Sp<i64>>,
    /// Largest request body accepted; larger gets 413. Absent = unlimited.
    pub max_body_bytes: Option<Sp<RawSize>>,
    /// Time allowed to receive a whole request head; slower gets 408.
    pub header_timeout: Option<Sp<String>>,
    /// Longest pause allowed between two reads of a request body; slower gets 408.
    pub body_timeout: Option<Sp<String>>,
    /// Keep-alive idle time between requests.
    pub keepalive_timeout: Option<Sp<String>>,
    /// Concurrent connections one client IP may hold on one listener.
    pub max_connections_per_ip: Option<Sp<i64>>,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: Option<Sp<i64>>,
    /// HTTP/2 reset streams a client may cause before the connection is closed
    /// (Rapid Reset, CVE-2023-44487).
    pub h2_max_pending_reset_streams: Option<Sp<i64>>,
}

/// `[[tenant]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    /// Stable id; appears on every log line, event and metric.
    pub id: Sp<String>,
    /// Display name.
    pub name: Option<String>,
}

/// `[[listener]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Unique name; sites refer to it.
    pub name: Sp<String>,
    /// `address:port` to bind.
    pub bind: Sp<String>,
    /// `"http"` (default) or `"tcp"` (pass-through).
    pub mode: Option<Sp<String>>,
    /// Terminate TLS on this listener (certificates by SNI from `[[certificate]]`).
    #[serde(default)]
    pub tls: bool,
    /// Accept PROXY protocol v1/v2 headers from these CIDRs (trusted L4 balancers).
    pub proxy_protocol: Option<Vec<Sp<String>>>,
    /// Per-listener limits overriding `[limits]`.
    pub limits: Option<RawLimits>,
    /// `tcp` mode: tenant that owns this service.
    pub tenant: Option<Sp<String>>,
    /// `tcp` mode: origin pool.
    pub pool: Option<Sp<String>>,
    /// `tcp` mode: new connections per second one client IP may open.
    pub max_connection_rate_per_ip: Option<Sp<f64>>,
}

/// `[[certificate]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// Unique name.
    pub name: Sp<String>,
    /// PEM certificate chain file.
    pub cert: Sp<String>,
    /// PEM private key file.
    pub key: Sp<String>,
    /// SNI names served with this certificate (`"*.example.com"` allowed).
    #[serde(default)]
    pub hosts: Vec<Sp<String>>,
    /// Served when SNI is absent or matches nothing.
    #[serde(default)]
    pub default: bool,
}

/// `[[pool]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Unique id; routes refer to it.
    pub id: Sp<String>,
    /// Tenant that owns the pool.
    pub tenant: Sp<String>,
    /// Servers, `host:port`.
    pub servers: Sp<Vec<Sp<RawServer>>>,
    /// `"round_robin"` (default) or `"least_conn"`.
    pub balance: Option<Sp<String>>,
    /// `"http1"` (default) or `"http2"` (needed for gRPC).
    pub protocol: Option<Sp<String>>,
    /// TLS to the origin.
    pub tls: Option<RawUpstreamTls>,
    /// Time to establish a connection.
    pub connect_timeout: Option<Sp<String>>,
    /// Time to the response head, and longest pause while reading the response body.
    pub read_timeout: Option<Sp<String>>,
    /// How long an idle keep-alive connection to the origin is kept.
    pub idle_timeout: Option<Sp<String>>,
    /// Active health checks.
    pub health_check: Option<RawHealthCheck>,
    /// Passive ejection.
    pub passive: Option<RawPassive>,
}

/// One origin server: `"host:port"` or `{ addr = "host:port", weight = 2 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawServer {
    /// Address only.
    Addr(String),
    /// Address with options.
    Full {
        /// `host:port`.
        addr: String,
        /// Relative share of requests (round robin).
        weight: Option<i64>,
    },
}

/// `[pool.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Server name sent in SNI and verified; defaults to the server's host.
    pub sni: Option<Sp<String>>,
    /// PEM CA bundle to verify the origin with, instead of the system store.
    pub ca_file: Option<Sp<String>>,
    /// Verify the origin's certificate (default true).
    pub verify: Option<bool>,
}

/// `[pool.health_check]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Path requested with GET.
    pub path: Option<Sp<String>>,
    /// Host header sent.
    pub host: Option<String>,
    /// Time between checks.
    pub interval: Option<Sp<String>>,
    /// Time a check may take.
    pub timeout: Option<Sp<String>>,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: Option<Sp<i64>>,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: Option<Sp<i64>>,
    /// Status codes counted as success, e.g. `"200-399"`.
    pub expect_status: Option<Sp<String>>,
}

/// `[pool.passive]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    /// Consecutive connect failures that eject a server.
    pub connect_failures: Option<Sp<i64>>,
    /// Consecutive 5xx responses that eject a server.
    pub consecutive_5xx: Option<Sp<i64>>,
    /// How long an ejected server stays out.
    pub ejection_time: Option<Sp<String>>,
}

/// `[[site]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    /// Unique id.
    pub id: Sp<String>,
    /// Owning tenant.
    pub tenant: Sp<String>,
    /// Host names (`"shop.example.com"`, `"*.example.com"`, or `"*"` for any).
    pub hosts: Sp<Vec<Sp<String>>>,
    /// Listener names; absent = every HTTP listener.
    pub listeners: Option<Vec<Sp<String>>>,
    /// Routes by path prefix.
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    /// WAF policy of every route of the site (a route may override it).
    pub waf: Option<RawWaf>,
    /// Lists, limits and custom rules of every route of the site.
    pub policy: Option<RawPolicy>,
    /// The challenge's settings on this site.
    pub challenge: Option<RawSiteChallenge>,
    /// The bot score's settings on this site.
    pub bot: Option<RawSiteBot>,
    /// Automatic flood mitigation on this site.
    pub flood: Option<RawSiteFlood>,
}

/// `[site.flood]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteFlood {
    /// Off switch (on by default).
    pub enabled: Option<Sp<bool>>,
    /// `enforce` or `monitor`.
    pub mode: Option<Sp<String>>,
    /// What an automatic rule does: `challenge` (default) or `block`.
    pub action: Option<Sp<String>>,
    /// How many times the baseline rate is a flood.
    pub factor: Option<Sp<f64>>,
    /// How many times the baseline rate makes the edge look at the traffic's make-up.
    pub suspect_factor: Option<Sp<f64>>,
    /// The least excess, in requests a second, that is a flood.
    pub min_excess: Option<Sp<f64>>,
    /// Largest share of baseline traffic an automatic rule may match.
    pub bound: Option<Sp<f64>>,
    /// Traffic observed before the baseline is trusted.
    pub learn: Option<Sp<String>>,
    /// Time back under the threshold before an attack is over.
    pub quiet: Option<Sp<String>>,
    /// Time without a match before an automatic rule expires once the attack is over.
    pub cooldown: Option<Sp<String>>,
}

/// `[site.bot]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSiteBot {
    /// Requests per minute per identity above which `high_rate` counts.
    pub rate: Option<Sp<i64>>,
    /// Distinct paths per minute per identity above which `many_paths` counts.
    pub paths: Option<Sp<i64>>,
    /// Path of the login form: its 401/403 answers to POSTs are failed logins.
    pub login_path: Option<Sp<String>>,
    /// Operator-listed good bots.
    #[serde(default)]
    pub verified: Vec<RawVerifiedBot>,
}

/// `[[site.bot.verified]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerifiedBot {
    /// Name, for the reasons and the logs.
    pub name: Sp<String>,
    /// A substring of its `User-Agent`.
    pub user_agent: Sp<String>,
    /// Its networks (CIDRs).
    pub networks: Vec<Sp<String>>,
}

/// `[[site.route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefix, starting with `/`.
    pub path: Sp<String>,
    /// Origin pool id.
    pub pool: Sp<String>,
    /// WAF settings of this route, over the site's.
    pub waf: Option<RawWaf>,
    /// Lists, limits and rules added to the site's for this route.
    pub policy: Option<RawPolicy>,
    /// Who calls this route: `browser` (default) or `api` (never challenged).
    pub clients: Option<Sp<String>>,
}

/// `[site.waf]`, `[site.route.waf]`: the OWASP CRS (or any SecLang ruleset) on a site.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaf {
    /// `false` turns the WAF off (for a route, under a site that has it).
    pub enabled: Option<Sp<bool>>,
    /// A CRS directory (with `rules/` and `crs-setup.conf` or its `.example`), or one
    /// SecLang file.
    pub rules: Option<Sp<String>>,
    /// CRS paranoia level, 1–4.
    pub paranoia_level: Option<Sp<i64>>,
    /// CRS inbound anomaly score threshold.
    pub inbound_threshold: Option<Sp<i64>>,
    /// CRS outbound anomaly score threshold.
    pub outbound_threshold: Option<Sp<i64>>,
    /// `"enforce"` (block) or `"monitor"` (log what would be blocked).
    pub mode: Option<Sp<String>>,
    /// How much of a request body is inspected.
    pub body_limit: Option<Sp<RawSize>>,
    /// How much of a response body is inspected (text/plain, text/html, text/xml).
    pub response_body_limit: Option<Sp<RawSize>>,
    /// SecLang files with the operator's own exclusions (loaded before CRS's rules).
    #[serde(default)]
    pub exclusion_files: Vec<Sp<String>>,
    /// Declarative exclusions.
    #[serde(default)]
    pub exclude: Vec<RawWafExclude>,
}

/// `[[site.waf.exclude]]`: a rule (by id or tag) stops looking at a target, or stops
/// running, optionally only under a path prefix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWafExclude {
    /// Rule id.
    pub rule: Option<Sp<i64>>,
    /// Rule tag (e.g. `"attack-sqli"`).
    pub tag: Option<Sp<String>>,
    /// A SecLang target (`"ARGS:password"`, `"REQUEST_COOKIES:/^session/"`); absent: the
    /// whole rule.
    pub target: Option<Sp<String>>,
    /// Only for request paths starting with this.
    pub path: Option<Sp<String>>,
}

/// `[[list]]`: a named list that policies test with `in $name` and list uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    /// The name expressions use after `$`.
    pub name: Sp<String>,
    /// `ip`, `country`, `asn` or `string`.
    pub kind: Sp<String>,
    /// A file with one entry per line (`#` comments), relative to this file.
    pub file: Option<Sp<String>>,
    /// Entries written here.
    pub entries: Option<Sp<Vec<Sp<String>>>>,
}

/// `[site.policy]`, `[site.route.policy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Onboarding: every verdict of this policy is recorded as `would_*` only.
    pub monitor: Option<Sp<bool>>,
    /// Lists used to allow, deny or bypass inspection.
    #[serde(default, rename = "list")]
    pub lists: Vec<RawListUse>,
    /// Rate limits.
    #[serde(default, rename = "limit")]
    pub limits: Vec<RawLimit>,
    /// Custom rules.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RawRule>,
}

/// `[[site.policy.list]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListUse {
    /// A `[[list]]` name.
    pub list: Sp<String>,
    /// `allow`, `deny` or `bypass`.
    #[serde(rename = "use")]
    pub use_: Sp<String>,
    /// `enforce` (default) or `monitor`.
    pub mode: Option<Sp<String>>,
}

/// `[[site.policy.limit]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// Unique within the policy; rules name it in `limit = "…"`.
    pub name: Sp<String>,
    /// `enforce` (default) or `monitor`.
    pub mode: Option<Sp<String>>,
    /// Which requests count (an expression); absent: all, or those rules feed to it.
    pub filter: Option<Sp<String>>,
    /// Count responses matching this expression instead of requests.
    pub responses: Option<Sp<String>>,
    /// Key parts (expressions of values), e.g. `["cidr(ip.src, 24, 64)"]`.
    pub key: Sp<Vec<Sp<String>>>,
    /// Count distinct values of this expression per key instead of requests.
    pub distinct: Option<Sp<String>>,
    /// `sliding_window` (default) or `gcra`.
    pub algorithm: Option<Sp<String>>,
    /// The window thresholds count over, e.g. `"10s"`.
    pub window: Sp<String>,
    /// Graduated thresholds, ascending.
    #[serde(default, rename = "threshold")]
    pub thresholds: Vec<RawThreshold>,
    /// `local` (default) or `redis`.
    pub backend: Option<Sp<String>>,
    /// `open` (default) or `closed`: what happens when the backend cannot answer.
    pub on_failure: Option<Sp<String>>,
    /// Most keys kept in process.
    pub max_keys: Option<Sp<i64>>,
}

/// `[[site.policy.limit.threshold]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    /// The count above which this level applies.
    pub above: Sp<i64>,
    /// `log`, `challenge` or `block`.
    pub action: Sp<String>,
    /// Status of a block (default 429).
    pub status: Option<Sp<i64>>,
    /// How long a key stays at this level once over it (a ban), e.g. `"10m"`.
    pub hold: Option<Sp<String>>,
}

/// `[[site.policy.rule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique within the policy.
    pub id: Sp<String>,
    /// Lower runs first (default 1000).
    pub priority: Option<Sp<i64>>,
    /// The condition.
    pub expression: Sp<String>,
    /// `allow`, `block`, `challenge`, `log`, `tag`, `rate_limit`, `redirect`,
    /// `set_header` or `remove_header`.
    pub action: Sp<String>,
    /// Status of `block` (default 403) or `redirect` (default 302).
    pub status: Option<Sp<i64>>,
    /// The tag of `tag`.
    pub tag: Option<Sp<String>>,
    /// The limit `rate_limit` feeds.
    pub limit: Option<Sp<String>>,
    /// The `Location` of `redirect`.
    pub location: Option<Sp<String>>,
    /// The header of `set_header` / `remove_header`.
    pub header: Option<Sp<String>>,
    /// The value of `set_header`.
    pub value: Option<Sp<String>>,
    /// `enforce` (default) or `monitor`.
    pub mode: Option<Sp<String>>,
    /// When the rule stops applying (a TOML date-time with offset).
    pub expires: Option<Sp<toml::value::Datetime>>,
    /// What the rule is for.
    pub description: Option<Sp<String>>,
    /// The change ticket it was made under.
    pub ticket: Option<Sp<String>>,
}
