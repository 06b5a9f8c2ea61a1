//! A configuration *generation*: one validated configuration plus everything built from
//! it (TLS, pools, pipeline, metric handles), swapped in atomically as a whole.
//!
//! **Architecture Invariant:** a generation is immutable once built. Requests load the
//! current generation once and use it to the end, so a reload never changes a request
//! half way. Building one does all I/O (certificate files, CA bundles, log files) up
//! front: if any of it fails, the build fails with located [`Diagnostics`] and the
//! running generation stays in force.

use std::collections::HashMap;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use rampart_core::config::{AccessLogTarget, Config, Diagnostics, ListenerKind, SourceFile, Span};
use rampart_core::pipeline::{Pipeline, Stage};

use crate::accesslog::AccessLog;
use crate::metrics::{Histogram, Metrics, SiteMetrics};
use crate::upstream::PoolRuntime;

/// Makes the stages that run after the standard ones (site/route resolution and client
/// identity), once per generation. Later components (WAF, policies, bot defence) plug in
/// here.
pub type StageFactory = Arc<dyn Fn() -> Vec<Box<dyn Stage>> + Send + Sync>;

/// No extra stages.
pub fn no_stages() -> StageFactory {
    Arc::new(Vec::new)
}

/// See the module docs.
pub struct Generation {
    /// Sequence number (1 = the configuration loaded at start).
    pub id: u64,
    /// The file it came from.
    pub source: SourceFile,
    /// The validated configuration.
    pub config: Config,
    /// Pool runtimes, by pool index.
    pub pools: Vec<Arc<PoolRuntime>>,
    /// TLS server configuration (if any listener terminates TLS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The request pipeline.
    pub pipeline: Pipeline,
    /// Metric handles per site, by site index.
    pub site_metrics: Vec<SiteMetrics>,
    /// Histogram per pipeline stage, by stage index.
    pub stage_hist: Vec<Arc<Histogram>>,
    /// Listener name → index.
    pub listener_index: HashMap<Arc<str>, usize>,
    /// HTTP server settings per listener index (`None` for tcp listeners).
    pub http: Vec<Option<auto::Builder<TokioExecutor>>>,
    /// The access log.
    pub access_log: AccessLog,
    /// The security-event log (WAF matches).
    pub security_log: AccessLog,
    /// The WAF rulesets of the routes.
    pub waf: Arc<crate::waf::WafSet>,
    /// The policies (lists, limits, rules) of the routes, with their counters.
    pub policies: Arc<crate::policy::PolicySet>,
    /// The Redis server of shared counters.
    pub redis: Option<crate::redis::Redis>,
    /// The challenge (keys, answered puzzles, page).
    pub challenges: Arc<crate::challenge::ChallengeSet>,
    /// Client identities and bot scores (per-identity counters).
    pub bots: Arc<crate::bot::BotSet>,
    /// Automatic flood mitigation (baselines, automatic rules), for the edge's lifetime.
    pub flood: Arc<crate::flood::FloodState>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("id", &self.id)
            .field("listeners", &self.config.listeners.len())
            .finish()
    }
}

impl Generation {
    /// Validates `source` and builds a generation, reusing unchanged pools (and the access
    /// log, if its target did not change) from `previous`.
    pub fn build(
        id: u64,
        source: SourceFile,
        previous: Option<&Generation>,
        metrics: &Arc<Metrics>,
        extra_stages: &StageFactory,
        workers: usize,
    ) -> Result<Self, Diagnostics> {
        let config = rampart_core::config::load_str(&source)?;
        let tls = crate::tls::server_config(&source, &config)?;
        let mut pools = Vec::with_capacity(config.pools.len());
        let mut diags = Diagnostics::default();
        for (i, p) in config.pools.iter().enumerate() {
            if let Some(old) = previous.and_then(|g| {
                g.pools
                    .iter()
                    .find(|old| old.spec.id == p.id && old.same_as(&config, p))
            }) {
                pools.push(old.clone());
                continue;
            }
            match PoolRuntime::build(&source, &config, i, metrics, workers) {
                Ok(rt) => pools.push(Arc::new(rt)),
                Err(d) => diags.0.extend(d.0),
            }
        }
        if !diags.is_empty() {
            diags.sort();
            return Err(diags);
        }
        let access_log = match previous {
            Some(g) if g.config.edge.access_log == config.edge.access_log => g.access_log.clone(),
            _ => open_access_log(&source, &config.edge.access_log, metrics, "access_log")?,
        };
        let security_log = match previous {
            Some(g) if g.config.edge.security_log == config.edge.security_log => {
                g.security_log.clone()
            }
            _ => open_access_log(&source, &config.edge.security_log, metrics, "security_log")?,
        };
        let waf = Arc::new(crate::waf::WafSet::build(&source, &config)?);
        // The Redis client is kept across reloads while its settings do not change.
        let redis = config.redis.as_ref().map(|settings| {
            previous
                .and_then(|g| g.redis.clone())
                .filter(|r| r.settings() == settings)
                .unwrap_or_else(|| {
                    crate::redis::Redis::new(settings.clone(), metrics, security_log.clone())
                })
        });
        let geo = match &config.geo {
            Some(g) => Some(Arc::new(crate::geo::Geo::load(&source, g)?)),
            None => None,
        };
        let flood_geo = geo.clone();
        let policies = Arc::new(crate::policy::PolicySet::build(
            &source,
            &config,
            previous.map(|g| &*g.policies),
            redis.clone(),
            geo,
        )?);
        let challenges = Arc::new(crate::challenge::ChallengeSet::build(
            &source,
            &config,
            metrics,
            previous.map(|g| &*g.challenges),
        )?);
        let bots = Arc::new(crate::bot::BotSet::build(
            &config,
            previous.map(|g| &*g.bots),
        ));
        let flood = previous.map_or_else(crate::flood::FloodState::new, |g| g.flood.clone());
        let flood_sites = flood.sync(&config, metrics, security_log.clone());
        let any_flood = flood_sites.iter().any(Option::is_some);
        let mut stages = Pipeline::standard(crate::runtime::new_request_id).into_stages();
        let policy_metrics = crate::policy::PolicyMetrics::new(metrics, &config);
        // Challenges come from policy verdicts and automatic flood rules: the answer
        // endpoint and the clearance cookie matter wherever either runs.
        if !policies.is_empty() || any_flood {
            stages.push(Box::new(crate::challenge::ChallengeStage::new(
                challenges.clone(),
            )));
        }
        if any_flood {
            stages.push(Box::new(crate::flood::FloodStage::new(
                flood.clone(),
                flood_sites,
                flood_geo,
                security_log.clone(),
            )));
        }
        if !policies.is_empty() {
            stages.push(Box::new(crate::bot::BotStage::new(bots.clone())));
            stages.push(Box::new(crate::policy::PolicyStage::new(
                policies.clone(),
                security_log.clone(),
                policy_metrics.clone(),
                challenges.clone(),
            )));
        }
        if !waf.is_empty() {
            stages.push(Box::new(crate::waf::WafStage::new(
                waf.clone(),
                security_log.clone(),
            )));
        }
        if !policies.is_empty() {
            stages.push(Box::new(crate::policy::PolicyBodyStage::new(
                policies.clone(),
                security_log.clone(),
                policy_metrics,
                challenges.clone(),
            )));
        }
        stages.extend(extra_stages());
        let pipeline = Pipeline::new(stages);
        let stage_hist = pipeline
            .stages()
            .iter()
            .map(|s| metrics.stage_duration.with(&[s.name()]))
            .collect();
        let site_metrics = config
            .sites
            .iter()
            .map(|s| {
                SiteMetrics::new(
                    metrics,
                    config.tenants.get(s.tenant).map_or("-", |t| &t.id),
                    &s.id,
                )
            })
            .collect();
        let listener_index = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        let http = config
            .listeners
            .iter()
            .map(|l| match l.kind {
                ListenerKind::Tcp { .. } => None,
                ListenerKind::Http { .. } => {
                    let lim = &l.limits;
                    let mut b = auto::Builder::new(TokioExecutor::new());
                    b.http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(None)
                        .keep_alive(true)
                        .max_headers(lim.max_headers)
                        .max_buf_size(lim.max_header_bytes.max(8192) + 1024)
                        .half_close(false);
                    b.http2()
                        .timer(TokioTimer::new())
                        .max_concurrent_streams(lim.h2_max_concurrent_streams)
                        .max_pending_accept_reset_streams(lim.h2_max_pending_reset_streams)
                        .max_local_error_reset_streams(lim.h2_max_pending_reset_streams)
                        .max_header_list_size(lim.max_header_bytes as u32)
                        .keep_alive_interval(Some(lim.keepalive_timeout))
                        .keep_alive_timeout(lim.header_timeout)
                        .enable_connect_protocol();
                    Some(b)
                }
            })
            .collect();
        Ok(Generation {
            id,
            source,
            config,
            pools,
            tls,
            pipeline,
            site_metrics,
            stage_hist,
            listener_index,
            http,
            access_log,
            security_log,
            waf,
            policies,
            redis,
            challenges,
            bots,
            flood,
            metrics: metrics.clone(),
        })
    }

    /// The listener called `name`, with its index.
    pub fn listener(&self, name: &str) -> Option<(usize, &rampart_core::config::Listener)> {
        let i = *self.listener_index.get(name)?;
        Some((i, &self.config.listeners[i]))
    }
}

fn open_access_log(
    src: &SourceFile,
    target: &AccessLogTarget,
    metrics: &Metrics,
    key: &str,
) -> Result<AccessLog, Diagnostics> {
    let dropped = metrics.access_log_dropped.with(&[]);
    let sink: Box<dyn std::io::Write + Send> = match target {
        AccessLogTarget::Off => return Ok(AccessLog::off()),
        AccessLogTarget::Stdout => Box::new(std::io::stdout()),
        AccessLogTarget::File(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(crate::tls::resolve(src, path))
        {
            Ok(f) => Box::new(f),
            Err(e) => {
                let span = src
                    .text()
                    .find(key)
                    .map(|i| Span {
                        start: i,
                        end: i + key.len(),
                    })
                    .unwrap_or_default();
                return Err(Diagnostics::one(src.diagnostic(
                    span,
                    format!("cannot open {key} `{path}`: {e}"),
                    Some("a writable file path, \"stdout\" or \"off\"".into()),
                    None,
                )));
            }
        },
    };
    AccessLog::to_writer(sink, dropped).map_err(|e| {
        Diagnostics::one(src.diagnostic(
            Span::default(),
            format!("cannot start the {key} writer: {e}"),
            None,
            None,
        ))
    })
}
