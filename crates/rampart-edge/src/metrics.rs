//! Metrics: every series Rampart exports, defined in this one module, rendered in the
//! Prometheus text format on the admin listener's `/metrics`.
//!
//! Label values come only from configuration (tenant, site, pool, server, listener,
//! stage) or small fixed sets (status class, outcome), never from requests, so the
//! number of series is bounded. Handles for per-request series are looked up when a
//! configuration generation is built, so the request path only touches atomics.
//!
//! Counters and histograms are sharded by thread ([`SHARDS`] cache-line-aligned cells,
//! summed when rendered): every worker thread adds to its own cache line, so two workers
//! counting the same series never bounce a line between cores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Cells per counter and histogram; threads beyond this share cells (still correct).
pub const SHARDS: usize = 8;
/// `AtomicU64`s per cache line.
const LINE: usize = 8;

/// This thread's shard, assigned round-robin when the thread first counts something.
#[inline]
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell(AtomicU64);

/// One cache line of cells.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Line([AtomicU64; LINE]);

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter([Cell; SHARDS]);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0[shard()].0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bucket bounds (seconds) for request latencies.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets (seconds) of the challenge solve time: page load, script, answer.
pub const SOLVE_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Bucket bounds (seconds) for pipeline stage durations.
pub const STAGE_BUCKETS: &[f64] = &[
    0.000_000_5,
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_5,
    0.001,
    0.01,
];

/// A histogram with fixed buckets.
///
/// Cells are laid out per shard: `[bucket 0 ..= bucket n (+Inf), sum_ns, count]`, each
/// shard padded to whole cache lines and the whole block aligned to one.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Bounds in nanoseconds, for a comparison without float math on the hot path.
    bounds_ns: Vec<u64>,
    /// Cells per shard (a multiple of [`LINE`]).
    stride: usize,
    cells: Box<[Line]>,
}

impl Histogram {
    /// A histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        // buckets + (+Inf) + sum + count, in cache lines of LINE cells
        let stride = (bounds.len() + 3).div_ceil(LINE) * LINE;
        Histogram {
            bounds,
            bounds_ns: bounds.iter().map(|b| (b * 1e9) as u64).collect(),
            stride,
            cells: (0..stride * SHARDS / LINE)
                .map(|_| Line::default())
                .collect(),
        }
    }

    #[inline]
    fn cell(&self, shard: usize, i: usize) -> &AtomicU64 {
        let flat = shard * self.stride + i;
        &self.cells[flat / LINE].0[flat % LINE]
    }

    /// Records one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = self
            .bounds_ns
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(self.bounds_ns.len());
        let s = shard();
        let n = self.bounds.len();
        self.cell(s, i).fetch_add(1, Ordering::Relaxed);
        self.cell(s, n + 1).fetch_add(ns, Ordering::Relaxed);
        self.cell(s, n + 2).fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self, i: usize) -> u64 {
        (0..SHARDS)
            .map(|s| self.cell(s, i).load(Ordering::Relaxed))
            .sum()
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.total(self.bounds.len() + 2)
    }
}

/// Labelled instances of one metric kind, created on first use and kept for the life of
/// the process (so counters survive reloads).
#[derive(Debug)]
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    make: fn() -> M,
    series: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M> Family<M> {
    const fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &'static [&'static str],
        make: fn() -> M,
    ) -> Self {
        Family {
            name,
            help,
            kind,
            labels,
            make,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The series for these label values (in the family's label order).
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new((self.make)()))
            .clone()
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Arc<M>)> {
        let map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            self.name, self.help, self.name, self.kind
        );
    }

    fn label_str(&self, values: &[String], extra: Option<(&str, &str)>) -> String {
        let mut s = String::new();
        let pairs = self
            .labels
            .iter()
            .zip(values.iter())
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra);
        for (i, (k, v)) in pairs.enumerate() {
            s.push_str(if i == 0 { "{" } else { "," });
            let _ = write!(s, "{k}=\"{}\"", escape(v));
        }
        if !s.is_empty() {
            s.push('}');
        }
        s
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

trait Render {
    fn render(&self, out: &mut String);
}

impl Render for Family<Counter> {
    fn render(&self, out: &mut String) {
        self.header(out);
        for (labels, c) in self.snapshot() {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                self.label_str(&labels, None),
                c.get()
            );
        }
    }
}

impl Render for Family<Gauge> {
    fn render(&self, out: &mut String) {
        self.header(out);
        for (labels, g) in self.snapshot() {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                self.label_str(&labels, None),
                g.get()
            );
        }
    }
}

impl Render for Family<Histogram> {
    fn render(&self, out: &mut String) {
        self.header(out);
        for (labels, h) in self.snapshot() {
            let mut cumulative = 0;
            for (i, bound) in h.bounds.iter().enumerate() {
                cumulative += h.total(i);
                let le = format!("{bound}");
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    self.label_str(&labels, Some(("le", &le)))
                );
            }
            cumulative += h.total(h.bounds.len());
            let _ = writeln!(
                out,
                "{}_bucket{} {cumulative}",
                self.name,
                self.label_str(&labels, Some(("le", "+Inf")))
            );
            let sum = h.total(h.bounds.len() + 1) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{}_sum{} {sum}",
                self.name,
                self.label_str(&labels, None)
            );
            let _ = writeln!(
                out,
                "{}_count{} {}",
                self.name,
                self.label_str(&labels, None),
                h.count()
            );
        }
    }
}

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}
fn stage() -> Histogram {
    Histogram::new(STAGE_BUCKETS)
}

/// Every metric of the edge.
#[derive(Debug)]
pub struct Metrics {
    /// `rampart_http_requests_total{tenant,site,code}`: requests answered, by status class.
    pub requests: Family<Counter>,
    /// `rampart_http_request_duration_seconds{tenant,site}`: time from request head to the
    /// end of the response.
    pub request_duration: Family<Histogram>,
    /// `rampart_http_edge_responses_total{tenant,site,code,reason}`: responses the edge
    /// generated itself (errors, rejections).
    pub edge_responses: Family<Counter>,
    /// `rampart_http_rejected_total{listener,code}`: requests refused by the HTTP/1 framing
    /// guard or the parser before any site was known.
    pub rejected: Family<Counter>,
    /// `rampart_pipeline_stage_duration_seconds{stage}`.
    pub stage_duration: Family<Histogram>,
    /// `rampart_upstream_requests_total{tenant,pool,server,outcome}`.
    pub upstream_requests: Family<Counter>,
    /// `rampart_upstream_server_up{tenant,pool,server}`: 1 when a server takes traffic.
    pub upstream_up: Family<Gauge>,
    /// `rampart_upstream_health_checks_total{tenant,pool,server,result}`.
    pub health_checks: Family<Counter>,
    /// `rampart_upstream_ejections_total{tenant,pool,server,cause}`.
    pub ejections: Family<Counter>,
    /// `rampart_connections_open{listener}`.
    pub connections_open: Family<Gauge>,
    /// `rampart_connections_total{listener}`.
    pub connections: Family<Counter>,
    /// `rampart_connections_refused_total{listener,reason}`.
    pub connections_refused: Family<Counter>,
    /// `rampart_tls_handshakes_total{listener,result}`.
    pub tls_handshakes: Family<Counter>,
    /// `rampart_tcp_bytes_total{listener,direction}`.
    pub tcp_bytes: Family<Counter>,
    /// `rampart_config_reloads_total{result}`.
    pub reloads: Family<Counter>,
    /// `rampart_config_generation`: sequence number of the configuration in force.
    pub generation: Family<Gauge>,
    /// `rampart_access_log_dropped_total`: lines dropped because the writer fell behind.
    pub access_log_dropped: Family<Counter>,
    /// `rampart_policy_verdicts_total{tenant,site,source,outcome}`: verdicts of lists,
    /// limits and custom rules (`outcome`: `block`, `would_block`, `challenge`, …).
    pub policy_verdicts: Family<Counter>,
    /// `rampart_challenges_total{tenant,site,outcome}`: challenge pages `issued`,
    /// answers `solved` and `failed`, challenge verdicts `passed` with a clearance.
    pub challenges: Family<Counter>,
    /// `rampart_challenge_failures_total{tenant,site,reason}`: refused answers by reason.
    pub challenge_failures: Family<Counter>,
    /// `rampart_challenge_solve_seconds{tenant,site}`: from a puzzle's issue to its
    /// answer.
    pub challenge_solve: Family<Histogram>,
    /// `rampart_flood_under_attack{tenant,site}`: 1 while a flood is detected.
    pub flood_under_attack: Family<Gauge>,
    /// `rampart_flood_rules_active{tenant,site}`: automatic rules in force.
    pub flood_rules_active: Family<Gauge>,
    /// `rampart_flood_baseline_rps{tenant,site}`: the learned request rate.
    pub flood_baseline_rps: Family<Gauge>,
    /// `rampart_flood_rate_rps{tenant,site}`: the request rate over the last 3 s.
    pub flood_rate_rps: Family<Gauge>,
    /// `rampart_flood_time_to_mitigate_ms{tenant,site}`: from detection to the last rule
    /// deployed.
    pub flood_time_to_mitigate: Family<Gauge>,
    /// `rampart_flood_detections_total{tenant,site}`.
    pub flood_detections: Family<Counter>,
    /// `rampart_flood_rules_deployed_total{tenant,site}`.
    pub flood_rules_deployed: Family<Counter>,
    /// `rampart_flood_requests_total{tenant,site,outcome}`: requests automatic rules
    /// matched (`challenge`, `block`, `passed`, `would_challenge`).
    pub flood_requests: Family<Counter>,
    /// `rampart_redis_up`: 1 while the shared-counter Redis answers, else 0.
    pub redis_up: Family<Gauge>,
    /// `rampart_redis_errors_total{kind}`: failed Redis checks and connections
    /// (`connect`, `timeout`, `reply`, `io`).
    pub redis_errors: Family<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The full set, empty.
    pub fn new() -> Self {
        Metrics {
            requests: Family::new(
                "rampart_http_requests_total",
                "HTTP requests answered, by status class.",
                "counter",
                &["tenant", "site", "code"],
                Counter::default,
            ),
            request_duration: Family::new(
                "rampart_http_request_duration_seconds",
                "Time from request head to end of response.",
                "histogram",
                &["tenant", "site"],
                latency,
            ),
            edge_responses: Family::new(
                "rampart_http_edge_responses_total",
                "Responses generated by the edge itself (errors, refusals).",
                "counter",
                &["tenant", "site", "code", "reason"],
                Counter::default,
            ),
            rejected: Family::new(
                "rampart_http_rejected_total",
                "Requests refused before routing (framing guard, limits, timeouts).",
                "counter",
                &["listener", "code"],
                Counter::default,
            ),
            stage_duration: Family::new(
                "rampart_pipeline_stage_duration_seconds",
                "Time spent in each request pipeline stage.",
                "histogram",
                &["stage"],
                stage,
            ),
            upstream_requests: Family::new(
                "rampart_upstream_requests_total",
                "Requests sent to origin servers, by outcome.",
                "counter",
                &["tenant", "pool", "server", "outcome"],
                Counter::default,
            ),
            upstream_up: Family::new(
                "rampart_upstream_server_up",
                "1 if the origin server receives traffic (healthy, not ejected).",
                "gauge",
                &["tenant", "pool", "server"],
                Gauge::default,
            ),
            health_checks: Family::new(
                "rampart_upstream_health_checks_total",
                "Active health checks, by result.",
                "counter",
                &["tenant", "pool", "server", "result"],
                Counter::default,
            ),
            ejections: Family::new(
                "rampart_upstream_ejections_total",
                "Passive ejections of origin servers.",
                "counter",
                &["tenant", "pool", "server", "cause"],
                Counter::default,
            ),
            connections_open: Family::new(
                "rampart_connections_open",
                "Client connections currently open.",
                "gauge",
                &["listener"],
                Gauge::default,
            ),
            connections: Family::new(
                "rampart_connections_total",
                "Client connections accepted.",
                "counter",
                &["listener"],
                Counter::default,
            ),
            connections_refused: Family::new(
                "rampart_connections_refused_total",
                "Client connections refused, by reason.",
                "counter",
                &["listener", "reason"],
                Counter::default,
            ),
            tls_handshakes: Family::new(
                "rampart_tls_handshakes_total",
                "TLS handshakes, by result.",
                "counter",
                &["listener", "result"],
                Counter::default,
            ),
            tcp_bytes: Family::new(
                "rampart_tcp_bytes_total",
                "Bytes relayed by tcp pass-through listeners.",
                "counter",
                &["listener", "direction"],
                Counter::default,
            ),
            reloads: Family::new(
                "rampart_config_reloads_total",
                "Configuration reloads, by result.",
                "counter",
                &["result"],
                Counter::default,
            ),
            generation: Family::new(
                "rampart_config_generation",
                "Sequence number of the configuration in force.",
                "gauge",
                &[],
                Gauge::default,
            ),
            redis_up: Family::new(
                "rampart_redis_up",
                "Whether the Redis server of shared counters answers (1) or not (0).",
                "gauge",
                &[],
                Gauge::default,
            ),
            redis_errors: Family::new(
                "rampart_redis_errors_total",
                "Failed Redis checks and connections, by kind.",
                "counter",
                &["kind"],
                Counter::default,
            ),
            flood_under_attack: Family::new(
                "rampart_flood_under_attack",
                "1 while a flood is detected on the site.",
                "gauge",
                &["tenant", "site"],
                Gauge::default,
            ),
            flood_rules_active: Family::new(
                "rampart_flood_rules_active",
                "Automatic flood rules in force.",
                "gauge",
                &["tenant", "site"],
                Gauge::default,
            ),
            flood_baseline_rps: Family::new(
                "rampart_flood_baseline_rps",
                "The learned request rate (requests a second).",
                "gauge",
                &["tenant", "site"],
                Gauge::default,
            ),
            flood_rate_rps: Family::new(
                "rampart_flood_rate_rps",
                "The request rate over the last three seconds.",
                "gauge",
                &["tenant", "site"],
                Gauge::default,
            ),
            flood_time_to_mitigate: Family::new(
                "rampart_flood_time_to_mitigate_ms",
                "Milliseconds from flood detection to the last automatic rule deployed.",
                "gauge",
                &["tenant", "site"],
                Gauge::default,
            ),
            flood_detections: Family::new(
                "rampart_flood_detections_total",
                "Floods detected.",
                "counter",
                &["tenant", "site"],
                Counter::default,
            ),
            flood_rules_deployed: Family::new(
                "rampart_flood_rules_deployed_total",
                "Automatic flood rules deployed.",
                "counter",
                &["tenant", "site"],
                Counter::default,
            ),
            flood_requests: Family::new(
                "rampart_flood_requests_total",
                "Requests automatic flood rules matched, by outcome.",
                "counter",
                &["tenant", "site", "outcome"],
                Counter::default,
            ),
            challenges: Family::new(
                "rampart_challenges_total",
                "Challenge pages issued, answers solved and failed, verdicts passed with a clearance.",
                "counter",
                &["tenant", "site", "outcome"],
                Counter::default,
            ),
            challenge_failures: Family::new(
                "rampart_challenge_failures_total",
                "Refused challenge answers, by reason.",
                "counter",
                &["tenant", "site", "reason"],
                Counter::default,
            ),
            challenge_solve: Family::new(
                "rampart_challenge_solve_seconds",
                "Time from a challenge puzzle's issue to its answer.",
                "histogram",
                &["tenant", "site"],
                || Histogram::new(SOLVE_BUCKETS),
            ),
            policy_verdicts: Family::new(
                "rampart_policy_verdicts_total",
                "Verdicts of lists, rate limits and custom rules, by outcome.",
                "counter",
                &["tenant", "site", "source", "outcome"],
                Counter::default,
            ),
            access_log_dropped: Family::new(
                "rampart_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind.",
                "counter",
                &[],
                Counter::default,
            ),
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.requests.render(&mut out);
        self.request_duration.render(&mut out);
        self.edge_responses.render(&mut out);
        self.rejected.render(&mut out);
        self.stage_duration.render(&mut out);
        self.upstream_requests.render(&mut out);
        self.upstream_up.render(&mut out);
        self.health_checks.render(&mut out);
        self.ejections.render(&mut out);
        self.connections_open.render(&mut out);
        self.connections.render(&mut out);
        self.connections_refused.render(&mut out);
        self.tls_handshakes.render(&mut out);
        self.tcp_bytes.render(&mut out);
        self.reloads.render(&mut out);
        self.generation.render(&mut out);
        self.access_log_dropped.render(&mut out);
        self.policy_verdicts.render(&mut out);
        self.challenges.render(&mut out);
        self.flood_under_attack.render(&mut out);
        self.flood_rules_active.render(&mut out);
        self.flood_baseline_rps.render(&mut out);
        self.flood_rate_rps.render(&mut out);
        self.flood_time_to_mitigate.render(&mut out);
        self.flood_detections.render(&mut out);
        self.flood_rules_deployed.render(&mut out);
        self.flood_requests.render(&mut out);
        self.challenge_failures.render(&mut out);
        self.challenge_solve.render(&mut out);
        self.redis_up.render(&mut out);
        self.redis_errors.render(&mut out);
        out
    }
}

/// Per-site handles, fetched once per configuration generation.
#[derive(Debug, Clone)]
pub struct SiteMetrics {
    /// Requests by status class 1xx..5xx (index 1..=5; 0 = other).
    pub by_class: [Arc<Counter>; 6],
    /// Request duration.
    pub duration: Arc<Histogram>,
}

impl SiteMetrics {
    /// Handles for one site.
    pub fn new(m: &Metrics, tenant: &str, site: &str) -> Self {
        let class = |c: &str| m.requests.with(&[tenant, site, c]);
        SiteMetrics {
            by_class: [
                class("other"),
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: m.request_duration.with(&[tenant, site]),
        }
    }

    /// Counts one answered request.
    #[inline]
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100);
        self.by_class[if (1..=5).contains(&class) { class } else { 0 }].inc();
        self.duration.observe(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::new();
        m.requests.with(&["t", "s", "2xx"]).add(3);
        m.request_duration
            .with(&["t", "s"])
            .observe(Duration::from_millis(3));
        m.generation.with(&[]).set(7);
        m.connections_open.with(&["we\"b"]).inc();
        let text = m.render();
        assert!(text.contains("# TYPE rampart_http_requests_total counter\nrampart_http_requests_total{tenant=\"t\",site=\"s\",code=\"2xx\"} 3\n"), "{text}");
        assert!(text.contains("rampart_http_request_duration_seconds_bucket{tenant=\"t\",site=\"s\",le=\"0.0025\"} 0\n"), "{text}");
        assert!(text.contains("rampart_http_request_duration_seconds_bucket{tenant=\"t\",site=\"s\",le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("rampart_http_request_duration_seconds_bucket{tenant=\"t\",site=\"s\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "rampart_http_request_duration_seconds_count{tenant=\"t\",site=\"s\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("rampart_config_generation 7\n"), "{text}");
        assert!(text.contains("listener=\"we\\\"b\""), "{text}");
    }

    #[test]
    fn series_persist() {
        let m = Metrics::new();
        let a = m.requests.with(&["t", "s", "2xx"]);
        a.inc();
        let b = m.requests.with(&["t", "s", "2xx"]);
        b.inc();
        assert_eq!(a.get(), 2);
    }
}
