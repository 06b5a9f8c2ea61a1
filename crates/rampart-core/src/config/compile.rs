//! Validation: [`raw::RawConfig`] → [`Config`], collecting every problem.
//!
//! Checks run in one pass per section and never stop at the first problem: an operator
//! fixing a file wants the whole list. References between sections (site → tenant,
//! route → pool, …) are resolved by id to indexes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{self, RawLimits, RawSiteChallenge, RawSize, Sp};
use super::units::{parse_duration, parse_size};
use super::*;
use crate::net::{Cidr, CidrSet};

pub(super) struct Ctx<'a> {
    src: &'a SourceFile,
    diags: Diagnostics,
}

impl Ctx<'_> {
    pub(super) fn err(
        &mut self,
        span: impl Into<Span>,
        message: impl Into<String>,
        expected: Option<&str>,
        hint: Option<&str>,
    ) {
        let d = self.src.diagnostic(
            span.into(),
            message,
            expected.map(str::to_owned),
            hint.map(str::to_owned),
        );
        self.diags.push(d);
    }

    fn duration(&mut self, v: &Option<Sp<String>>, what: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.err(
                    v.span(),
                    format!("{what} must be greater than zero"),
                    Some("a duration such as \"500ms\", \"30s\", \"5m\""),
                    None,
                );
                default
            }
            Ok(d) => d,
            Err(why) => {
                self.err(
                    v.span(),
                    format!("invalid {what}: {why}"),
                    Some("a duration such as \"500ms\", \"30s\", \"5m\", \"1h\""),
                    None,
                );
                default
            }
        }
    }

    fn size(&mut self, v: &Option<Sp<RawSize>>, what: &str) -> Option<u64> {
        let v = v.as_ref()?;
        let r = match v.get_ref() {
            RawSize::Bytes(n) => Ok(*n),
            RawSize::Text(s) => parse_size(s),
        };
        match r {
            Ok(0) => {
                self.err(
                    v.span(),
                    format!("{what} must be greater than zero"),
                    Some("a size such as 8192 or \"8KiB\""),
                    None,
                );
                None
            }
            Ok(n) => Some(n),
            Err(why) => {
                self.err(
                    v.span(),
                    format!("invalid {what}: {why}"),
                    Some("a size such as 8192, \"8KiB\" or \"1MiB\""),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn int(
        &mut self,
        v: &Option<Sp<i64>>,
        what: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(
                v.span(),
                format!("{what} = {n} is out of range"),
                Some(&format!("an integer from {min} to {max}")),
                None,
            );
            return None;
        }
        Some(n)
    }

    fn cidrs(&mut self, list: &[Sp<String>]) -> CidrSet {
        let mut out = Vec::new();
        for item in list {
            match item.get_ref().parse::<Cidr>() {
                Ok(c) => out.push(c),
                Err(e) => self.err(
                    item.span(),
                    format!("invalid network: {e}"),
                    Some("an IP address or CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\""),
                    None,
                ),
            }
        }
        CidrSet::new(out)
    }

    fn socket_addr(&mut self, v: &Sp<String>, what: &str) -> Option<SocketAddr> {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span(),
                    format!("invalid {what} `{}`", v.get_ref()),
                    Some("an IP address and port, e.g. \"0.0.0.0:8080\" or \"[::]:8443\""),
                    Some("host names are not allowed here; bind to an address"),
                );
                None
            }
        }
    }

    fn id(&mut self, v: &Sp<String>, what: &str) -> bool {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok {
            self.err(
                v.span(),
                format!("invalid {what} `{s}`"),
                Some("1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'"),
                Some("ids appear in metric labels and log lines, so they are kept simple"),
            );
        }
        ok
    }
}

fn limits(ctx: &mut Ctx<'_>, raw: &RawLimits, base: &HttpLimits) -> HttpLimits {
    let mut l = base.clone();
    if let Some(n) = ctx.size(&raw.max_uri_bytes, "max_uri_bytes") {
        l.max_uri_bytes = n.min(65_534) as usize;
        if n > 65_534 {
            ctx.err(
                raw.max_uri_bytes
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or_default(),
                "max_uri_bytes is larger than the HTTP parser supports",
                Some("at most 65534"),
                None,
            );
        }
    }
    if let Some(n) = ctx.size(&raw.max_header_bytes, "max_header_bytes") {
        if n > 1 << 20 {
            ctx.err(
                raw.max_header_bytes
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or_default(),
                "max_header_bytes is larger than 1MiB",
                Some("at most \"1MiB\""),
                Some("large header limits are a memory-exhaustion risk"),
            );
        }
        l.max_header_bytes = n.min(1 << 20) as usize;
    }
    if let Some(n) = ctx.int(&raw.max_headers, "max_headers", 1, 1000) {
        l.max_headers = n as usize;
    }
    if let Some(n) = ctx.size(&raw.max_body_bytes, "max_body_bytes") {
        l.max_body_bytes = Some(n);
    }
    l.header_timeout = ctx.duration(&raw.header_timeout, "header_timeout", l.header_timeout);
    l.body_timeout = ctx.duration(&raw.body_timeout, "body_timeout", l.body_timeout);
    l.keepalive_timeout = ctx.duration(
        &raw.keepalive_timeout,
        "keepalive_timeout",
        l.keepalive_timeout,
    );
    if let Some(n) = ctx.int(
        &raw.max_connections_per_ip,
        "max_connections_per_ip",
        1,
        1_000_000,
    ) {
        l.max_connections_per_ip = n as u32;
    }
    if let Some(n) = ctx.int(
        &raw.h2_max_concurrent_streams,
        "h2_max_concurrent_streams",
        1,
        10_000,
    ) {
        l.h2_max_concurrent_streams = n as u32;
    }
    if let Some(n) = ctx.int(
        &raw.h2_max_pending_reset_streams,
        "h2_max_pending_reset_streams",
        1,
        10_000,
    ) {
        l.h2_max_pending_reset_streams = n as usize;
    }
    l
}

fn lookup(
    ctx: &mut Ctx<'_>,
    map: &HashMap<String, usize>,
    v: &Sp<String>,
    what: &str,
    section: &str,
) -> Option<usize> {
    match map.get(v.get_ref()) {
        Some(&i) => Some(i),
        None => {
            let mut known: Vec<&str> = map.keys().map(String::as_str).collect();
            known.sort_unstable();
            let expected = if known.is_empty() {
                format!("the id of a [[{section}]] (none is defined)")
            } else {
                format!("one of {}", known.join(", "))
            };
            ctx.err(
                v.span(),
                format!("unknown {what} `{}`", v.get_ref()),
                Some(&expected),
                Some(&format!("define it in a [[{section}]] table")),
            );
            None
        }
    }
}

/// Default CRS settings: paranoia level 1, inbound threshold 5 (one critical match),
/// outbound threshold 4, 128 KiB of request body and 64 KiB of response body inspected.
const WAF_DEFAULT_PARANOIA: u8 = 1;
const WAF_DEFAULT_INBOUND: u32 = 5;
const WAF_DEFAULT_OUTBOUND: u32 = 4;
const WAF_DEFAULT_BODY_LIMIT: u64 = 128 * 1024;
const WAF_MAX_BODY_LIMIT: u64 = 16 * 1024 * 1024;
const WAF_DEFAULT_RESPONSE_BODY_LIMIT: u64 = 64 * 1024;

/// The effective WAF policy of a route: the route's settings over the site's. `None`:
/// no WAF (neither says so, or the route turns it off).
fn waf_policy(
    ctx: &mut Ctx<'_>,
    site: Option<&raw::RawWaf>,
    route: Option<&raw::RawWaf>,
) -> Option<Arc<WafPolicy>> {
    let layers: Vec<&raw::RawWaf> = site.into_iter().chain(route).collect();
    let last = |f: &dyn Fn(&raw::RawWaf) -> bool| layers.iter().rev().find(|w| f(w)).copied();
    let enabled = last(&|w| w.enabled.is_some())
        .and_then(|w| w.enabled.as_ref())
        .is_none_or(|e| *e.get_ref());
    if layers.is_empty() || !enabled {
        return None;
    }
    let Some(rules) = last(&|w| w.rules.is_some()).and_then(|w| w.rules.as_ref()) else {
        let at = layers
            .iter()
            .rev()
            .find_map(|w| {
                w.mode
                    .as_ref()
                    .map(|m| m.span())
                    .or(w.enabled.as_ref().map(|e| e.span()))
            })
            .unwrap_or_default();
        ctx.err(
            at,
            "a WAF without rules",
            Some("rules = \"/path/to/coreruleset\" in [site.waf] or the route's waf"),
            Some("Debian's modsecurity-crs installs CRS at /usr/share/modsecurity-crs"),
        );
        return None;
    };
    if rules.get_ref().trim().is_empty() {
        ctx.err(
            rules.span(),
            "empty rules path",
            Some("a CRS directory or a SecLang file"),
            None,
        );
    }
    let int = |ctx: &mut Ctx<'_>,
               v: Option<&Sp<i64>>,
               what: &str,
               range: std::ops::RangeInclusive<i64>,
               default: i64|
     -> i64 {
        match v {
            None => default,
            Some(n) if range.contains(n.get_ref()) => *n.get_ref(),
            Some(n) => {
                ctx.err(
                    n.span(),
                    format!("{what} {} is out of range", n.get_ref()),
                    Some(&format!("{}–{}", range.start(), range.end())),
                    None,
                );
                default
            }
        }
    };
    let pick = |f: fn(&raw::RawWaf) -> Option<&Sp<i64>>| layers.iter().rev().find_map(|w| f(w));
    let paranoia_level = int(
        ctx,
        pick(|w| w.paranoia_level.as_ref()),
        "paranoia_level",
        1..=4,
        WAF_DEFAULT_PARANOIA.into(),
    );
    let inbound = int(
        ctx,
        pick(|w| w.inbound_threshold.as_ref()),
        "inbound_threshold",
        1..=10_000,
        WAF_DEFAULT_INBOUND.into(),
    );
    let outbound = int(
        ctx,
        pick(|w| w.outbound_threshold.as_ref()),
        "outbound_threshold",
        1..=10_000,
        WAF_DEFAULT_OUTBOUND.into(),
    );
    let mode = match layers.iter().rev().find_map(|w| w.mode.as_ref()) {
        None => WafMode::Enforce,
        Some(m) => match m.get_ref().as_str() {
            "enforce" => WafMode::Enforce,
            "monitor" => WafMode::Monitor,
            other => {
                ctx.err(
                    m.span(),
                    format!("unknown WAF mode `{other}`"),
                    Some("\"enforce\" or \"monitor\""),
                    Some("monitor logs what would be blocked and blocks nothing"),
                );
                WafMode::Enforce
            }
        },
    };
    let limit = |ctx: &mut Ctx<'_>, v: Option<&Sp<raw::RawSize>>, what: &str, default: u64| {
        let Some(b) = v else { return default };
        let n = ctx.size(&Some(b.clone()), what).unwrap_or(default);
        if n > WAF_MAX_BODY_LIMIT {
            ctx.err(
                b.span(),
                format!("{what} {n} is too large"),
                Some("at most 16 MiB"),
                Some("the inspected prefix is held in memory for every request"),
            );
        }
        n.min(WAF_MAX_BODY_LIMIT)
    };
    let body_limit = limit(
        ctx,
        layers.iter().rev().find_map(|w| w.body_limit.as_ref()),
        "body_limit",
        WAF_DEFAULT_BODY_LIMIT,
    );
    let response_body_limit = limit(
        ctx,
        layers
            .iter()
            .rev()
            .find_map(|w| w.response_body_limit.as_ref()),
        "response_body_limit",
        WAF_DEFAULT_RESPONSE_BODY_LIMIT,
    );
    let mut exclusion_files = Vec::new();
    let mut exclude = Vec::new();
    for w in &layers {
        for f in &w.exclusion_files {
            exclusion_files.push((f.get_ref().clone(), f.span().into()));
        }
        for x in &w.exclude {
            if let Some(e) = waf_exclude(ctx, x) {
                exclude.push(e);
            }
        }
    }
    Some(Arc::new(WafPolicy {
        rules: (rules.get_ref().clone(), rules.span().into()),
        paranoia_level: u8::try_from(paranoia_level).unwrap_or(WAF_DEFAULT_PARANOIA),
        inbound_threshold: u32::try_from(inbound).unwrap_or(WAF_DEFAULT_INBOUND),
        outbound_threshold: u32::try_from(outbound).unwrap_or(WAF_DEFAULT_OUTBOUND),
        mode,
        body_limit,
        response_body_limit,
        exclusion_files,
        exclude,
    }))
}

fn waf_exclude(ctx: &mut Ctx<'_>, x: &raw::RawWafExclude) -> Option<WafExclude> {
    let span = x
        .rule
        .as_ref()
        .map(|r| r.span())
        .or(x.tag.as_ref().map(|t| t.span()))
        .or(x.target.as_ref().map(|t| t.span()))
        .or(x.path.as_ref().map(|p| p.span()))
        .unwrap_or_default();
    let rules = match (&x.rule, &x.tag) {
        (Some(r), None) if *r.get_ref() > 0 => {
            WafRuleSel::Id(u64::try_from(*r.get_ref()).unwrap_or(0))
        }
        (Some(r), None) => {
            ctx.err(
                r.span(),
                format!("rule id {} is not valid", r.get_ref()),
                Some("a positive rule id"),
                None,
            );
            return None;
        }
        (None, Some(t)) if !t.get_ref().trim().is_empty() => WafRuleSel::Tag(t.get_ref().clone()),
        (None, Some(t)) => {
            ctx.err(
                t.span(),
                "empty tag",
                Some("a rule tag such as \"attack-sqli\""),
                None,
            );
            return None;
        }
        _ => {
            ctx.err(
                span,
                "an exclusion names either `rule` or `tag`",
                Some("rule = 942100, or tag = \"attack-sqli\""),
                None,
            );
            return None;
        }
    };
    if let Some(p) = &x.path {
        if !p.get_ref().starts_with('/')
            || p.get_ref()
                .bytes()
                .any(|b| b <= b' ' || b == b'"' || b >= 0x7f)
        {
            ctx.err(
                p.span(),
                format!("invalid path `{}`", p.get_ref()),
                Some("a path prefix starting with '/'"),
                None,
            );
            return None;
        }
    }
    if let Some(t) = &x.target {
        if t.get_ref().trim().is_empty()
            || t.get_ref()
                .bytes()
                .any(|b| b == b'"' || b == b',' || b == b'|' || b < b' ')
        {
            ctx.err(
                t.span(),
                format!("invalid target `{}`", t.get_ref()),
                Some("one SecLang target, e.g. ARGS:password or REQUEST_COOKIES:/^session/"),
                None,
            );
            return None;
        }
    }
    Some(WafExclude {
        rules,
        target: x.target.as_ref().map(|t| t.get_ref().clone()),
        path: x.path.as_ref().map(|p| p.get_ref().clone()),
        span: span.into(),
    })
}

/// Validates `raw` (parsed from `src`) into a runtime [`Config`].
pub fn compile(src: &SourceFile, raw: raw::RawConfig) -> Result<Config, Diagnostics> {
    let mut ctx = Ctx {
        src,
        diags: Diagnostics::default(),
    };

    if let Some(v) = &raw.version {
        if *v.get_ref() != 1 {
            ctx.err(
                v.span(),
                format!("unsupported config version {}", v.get_ref()),
                Some("version = 1"),
                None,
            );
        }
    }

    // [edge]
    let admin = raw
        .edge
        .admin
        .as_ref()
        .and_then(|a| ctx.socket_addr(a, "admin address"));
    let trusted_proxies = ctx.cidrs(&raw.edge.trusted_proxies);
    let drain_timeout = ctx.duration(
        &raw.edge.drain_timeout,
        "drain_timeout",
        Duration::from_secs(30),
    );
    let log_target = |ctx: &mut Ctx<'_>, v: &Option<Sp<String>>, what: &str| match v
        .as_ref()
        .map(|s| s.get_ref().as_str())
    {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some("") => {
            let span = v.as_ref().map(|s| s.span()).unwrap_or_default();
            ctx.err(
                span,
                format!("{what} is empty"),
                Some("\"stdout\", \"off\" or a file path"),
                None,
            );
            AccessLogTarget::Off
        }
        Some(path) => AccessLogTarget::File(path.to_owned()),
    };
    let access_log = log_target(&mut ctx, &raw.edge.access_log, "access_log");
    let security_log = log_target(&mut ctx, &raw.edge.security_log, "security_log");
    let workers = ctx.int(&raw.edge.workers, "workers", 0, 1024).unwrap_or(0) as usize;
    let base_limits = limits(&mut ctx, &raw.limits, &HttpLimits::default());

    // [[tenant]]
    let mut tenant_ids = HashMap::new();
    let mut tenants = Vec::new();
    for t in &raw.tenants {
        if !ctx.id(&t.id, "tenant id") {
            continue;
        }
        if tenant_ids
            .insert(t.id.get_ref().clone(), tenants.len())
            .is_some()
        {
            ctx.err(
                t.id.span(),
                format!("duplicate tenant id `{}`", t.id.get_ref()),
                Some("a unique id"),
                None,
            );
            continue;
        }
        tenants.push(Tenant {
            id: Arc::from(t.id.get_ref().as_str()),
            name: t.name.clone(),
        });
    }

    // [[pool]]
    let mut pool_ids = HashMap::new();
    let mut pools = Vec::new();
    for p in &raw.pools {
        ctx.id(&p.id, "pool id");
        let tenant = lookup(&mut ctx, &tenant_ids, &p.tenant, "tenant", "tenant");
        let mut servers = Vec::new();
        if p.servers.get_ref().is_empty() {
            ctx.err(
                p.servers.span(),
                "a pool needs at least one server",
                Some("servers = [\"10.0.0.5:8080\"]"),
                None,
            );
        }
        for s in p.servers.get_ref() {
            let (addr, weight) = match s.get_ref() {
                raw::RawServer::Addr(a) => (a, None),
                raw::RawServer::Full { addr, weight } => (addr, *weight),
            };
            let weight = match weight {
                Some(w) if !(1..=1000).contains(&w) => {
                    ctx.err(
                        s.span(),
                        format!("weight = {w} is out of range"),
                        Some("an integer from 1 to 1000"),
                        None,
                    );
                    1
                }
                Some(w) => w as u32,
                None => 1,
            };
            match parse_host_port(addr) {
                Ok((host, port)) => servers.push(Server { host, port, weight, span: s.span().into() }),
                Err(why) => ctx.err(s.span(), format!("invalid server address `{addr}`: {why}"), Some("host:port, e.g. \"10.0.0.5:8080\", \"origin.internal:443\" or \"[2001:db8::5]:80\""), None),
            }
        }
        let balance = match p.balance.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_conn") => Balance::LeastConn,
            Some(other) => {
                let span = p.balance.as_ref().map(|b| b.span()).unwrap_or_default();
                ctx.err(
                    span,
                    format!("unknown balance `{other}`"),
                    Some("\"round_robin\" or \"least_conn\""),
                    None,
                );
                Balance::RoundRobin
            }
        };
        let protocol = match p.protocol.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("http2") => UpstreamProtocol::Http2,
            Some(other) => {
                let span = p.protocol.as_ref().map(|b| b.span()).unwrap_or_default();
                ctx.err(
                    span,
                    format!("unknown protocol `{other}`"),
                    Some("\"http1\" or \"http2\""),
                    Some("gRPC origins need \"http2\""),
                );
                UpstreamProtocol::Http1
            }
        };
        let tls = p.tls.as_ref().map(|t| UpstreamTls {
            sni: t.sni.as_ref().map(|s| s.get_ref().clone()),
            ca_file: t
                .ca_file
                .as_ref()
                .map(|s| (s.get_ref().clone(), Span::from(s.span()))),
            verify: t.verify.unwrap_or(true),
        });
        let health_check = p.health_check.as_ref().map(|h| {
            let path = h
                .path
                .as_ref()
                .map_or_else(|| "/".to_owned(), |p| p.get_ref().clone());
            if !path.starts_with('/') {
                let span = h.path.as_ref().map(|p| p.span()).unwrap_or_default();
                ctx.err(
                    span,
                    format!("health-check path `{path}` does not start with '/'"),
                    Some("a path such as \"/healthz\""),
                    None,
                );
            }
            let interval = ctx.duration(&h.interval, "interval", Duration::from_secs(5));
            let timeout = ctx.duration(&h.timeout, "timeout", Duration::from_secs(2));
            let expect_status = match &h.expect_status {
                None => (200, 399),
                Some(s) => parse_status_range(s.get_ref()).unwrap_or_else(|| {
                    ctx.err(
                        s.span(),
                        format!("invalid status range `{}`", s.get_ref()),
                        Some("a status (\"204\") or range (\"200-399\") between 100 and 599"),
                        None,
                    );
                    (200, 399)
                }),
            };
            HealthCheck {
                path,
                host: h.host.clone(),
                interval,
                timeout,
                healthy_threshold: ctx
                    .int(&h.healthy_threshold, "healthy_threshold", 1, 100)
                    .unwrap_or(2) as u32,
                unhealthy_threshold: ctx
                    .int(&h.unhealthy_threshold, "unhealthy_threshold", 1, 100)
                    .unwrap_or(3) as u32,
                expect_status,
            }
        });
        let passive = match &p.passive {
            None => Passive::default(),
            Some(pv) => {
                let d = Passive::default();
                Passive {
                    connect_failures: ctx
                        .int(&pv.connect_failures, "connect_failures", 0, 1000)
                        .map_or(d.connect_failures, |n| n as u32),
                    consecutive_5xx: ctx
                        .int(&pv.consecutive_5xx, "consecutive_5xx", 0, 10_000)
                        .map_or(d.consecutive_5xx, |n| n as u32),
                    ejection_time: ctx.duration(
                        &pv.ejection_time,
                        "ejection_time",
                        d.ejection_time,
                    ),
                }
            }
        };
        let pool = Pool {
            id: Arc::from(p.id.get_ref().as_str()),
            tenant: tenant.unwrap_or(0),
            servers,
            balance,
            protocol,
            tls,
            connect_timeout: ctx.duration(
                &p.connect_timeout,
                "connect_timeout",
                Duration::from_secs(5),
            ),
            read_timeout: ctx.duration(&p.read_timeout, "read_timeout", Duration::from_secs(60)),
            idle_timeout: ctx.duration(&p.idle_timeout, "idle_timeout", Duration::from_secs(90)),
            health_check,
            passive,
        };
        if pool_ids
            .insert(p.id.get_ref().clone(), pools.len())
            .is_some()
        {
            ctx.err(
                p.id.span(),
                format!("duplicate pool id `{}`", p.id.get_ref()),
                Some("a unique id"),
                None,
            );
        }
        pools.push(pool);
    }

    // [[listener]]
    let mut listener_names = HashMap::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    let mut listeners = Vec::new();
    for l in &raw.listeners {
        ctx.id(&l.name, "listener name");
        let bind = ctx.socket_addr(&l.bind, "bind address");
        if let Some(b) = bind.filter(|b| b.port() != 0) {
            if let Some(other) = binds.insert(b, l.name.get_ref().clone()) {
                ctx.err(
                    l.bind.span(),
                    format!("address {b} is already bound by listener `{other}`"),
                    Some("a distinct address:port per listener"),
                    Some("one listener serves any number of sites; list the sites on it instead"),
                );
            }
        }
        let lim = match &l.limits {
            Some(r) => limits(&mut ctx, r, &base_limits),
            None => base_limits.clone(),
        };
        let mode = l
            .mode
            .as_ref()
            .map(|m| m.get_ref().as_str())
            .unwrap_or("http");
        let kind = match mode {
            "http" => {
                for (field, span) in [
                    ("tenant", l.tenant.as_ref().map(|v| v.span())),
                    ("pool", l.pool.as_ref().map(|v| v.span())),
                ] {
                    if let Some(span) = span {
                        ctx.err(
                            span,
                            format!("`{field}` is only valid on a listener with mode = \"tcp\""),
                            None,
                            Some("HTTP listeners reach pools through [[site]] routes"),
                        );
                    }
                }
                ListenerKind::Http { tls: l.tls }
            }
            "tcp" => {
                if l.tls {
                    ctx.err(
                        l.name.span(),
                        "a tcp listener cannot terminate TLS",
                        Some("tls = false"),
                        Some("tcp mode passes bytes through untouched; TLS ends at the origin"),
                    );
                }
                let tenant = match &l.tenant {
                    Some(t) => lookup(&mut ctx, &tenant_ids, t, "tenant", "tenant"),
                    None => {
                        ctx.err(
                            l.name.span(),
                            "a tcp listener needs a `tenant`",
                            Some("tenant = \"<tenant id>\""),
                            None,
                        );
                        None
                    }
                };
                let pool = match &l.pool {
                    Some(p) => lookup(&mut ctx, &pool_ids, p, "pool", "pool"),
                    None => {
                        ctx.err(
                            l.name.span(),
                            "a tcp listener needs a `pool`",
                            Some("pool = \"<pool id>\""),
                            None,
                        );
                        None
                    }
                };
                if let (Some(t), Some(p)) = (tenant, pool) {
                    if pools[p].tenant != t {
                        let span = l.pool.as_ref().map(|v| v.span()).unwrap_or_default();
                        ctx.err(
                            span,
                            format!("pool `{}` belongs to another tenant", pools[p].id),
                            Some(&format!("a pool of tenant `{}`", tenants[t].id)),
                            None,
                        );
                    }
                }
                let rate = l.max_connection_rate_per_ip.as_ref().and_then(|r| {
                    let v = *r.get_ref();
                    if !(v.is_finite() && v > 0.0) {
                        ctx.err(
                            r.span(),
                            format!("max_connection_rate_per_ip = {v} must be a positive number"),
                            Some("connections per second, e.g. 5 or 0.5"),
                            None,
                        );
                        None
                    } else {
                        Some(v)
                    }
                });
                ListenerKind::Tcp {
                    tenant: tenant.unwrap_or(0),
                    pool: pool.unwrap_or(0),
                    max_connection_rate_per_ip: rate,
                }
            }
            other => {
                let span = l.mode.as_ref().map(|m| m.span()).unwrap_or_default();
                ctx.err(
                    span,
                    format!("unknown listener mode `{other}`"),
                    Some("\"http\" or \"tcp\""),
                    None,
                );
                ListenerKind::Http { tls: l.tls }
            }
        };
        if let Some(r) = &l.max_connection_rate_per_ip {
            if mode != "tcp" {
                ctx.err(
                    r.span(),
                    "`max_connection_rate_per_ip` is only valid on a listener with mode = \"tcp\"",
                    None,
                    None,
                );
            }
        }
        let proxy_protocol = l.proxy_protocol.as_ref().map(|list| {
            if list.is_empty() {
                ctx.err(
                    l.name.span(),
                    "proxy_protocol lists no trusted balancer",
                    Some("proxy_protocol = [\"10.0.0.0/8\"]"),
                    Some("PROXY headers are accepted only from these peers"),
                );
            }
            ctx.cidrs(list)
        });
        if listener_names
            .insert(l.name.get_ref().clone(), listeners.len())
            .is_some()
        {
            ctx.err(
                l.name.span(),
                format!("duplicate listener name `{}`", l.name.get_ref()),
                Some("a unique name"),
                None,
            );
        }
        listeners.push(Listener {
            name: Arc::from(l.name.get_ref().as_str()),
            bind: bind.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            kind,
            proxy_protocol,
            limits: lim,
        });
    }

    // [[certificate]]
    let mut certificates = Vec::new();
    let mut cert_names = HashSet::new();
    let mut default_certs = 0;
    for c in &raw.certificates {
        ctx.id(&c.name, "certificate name");
        if !cert_names.insert(c.name.get_ref().clone()) {
            ctx.err(
                c.name.span(),
                format!("duplicate certificate name `{}`", c.name.get_ref()),
                Some("a unique name"),
                None,
            );
        }
        let mut hosts = Vec::new();
        for h in &c.hosts {
            let host = h.get_ref().to_ascii_lowercase();
            if !valid_host_pattern(&host, false) {
                ctx.err(
                    h.span(),
                    format!("invalid certificate host `{}`", h.get_ref()),
                    Some("a DNS name such as \"shop.example.com\" or \"*.example.com\""),
                    None,
                );
            }
            hosts.push(host);
        }
        if hosts.is_empty() && !c.default {
            ctx.err(
                c.name.span(),
                format!(
                    "certificate `{}` has no hosts and is not the default",
                    c.name.get_ref()
                ),
                Some("hosts = [\"example.com\"] or default = true"),
                None,
            );
        }
        if c.default {
            default_certs += 1;
            if default_certs > 1 {
                ctx.err(
                    c.name.span(),
                    "more than one certificate has default = true",
                    Some("exactly one default certificate"),
                    None,
                );
            }
        }
        certificates.push(Certificate {
            name: Arc::from(c.name.get_ref().as_str()),
            cert: (c.cert.get_ref().clone(), c.cert.span().into()),
            key: (c.key.get_ref().clone(), c.key.span().into()),
            hosts,
            default: c.default,
        });
    }
    if listeners.iter().any(Listener::is_tls) && certificates.is_empty() {
        let span = raw
            .listeners
            .iter()
            .find(|l| l.tls)
            .map(|l| l.name.span())
            .unwrap_or_default();
        ctx.err(
            span,
            "a TLS listener is configured but no [[certificate]] is defined",
            Some("at least one [[certificate]] with cert and key files"),
            None,
        );
    }

    // [[site]]
    let lists = super::policy::lists(&mut ctx, &raw.lists);
    let geo = raw.geo.as_ref().map(|g| {
        let located = |v: &Vec<Sp<String>>| {
            v.iter()
                .map(|p| super::policy::Located {
                    text: p.get_ref().clone(),
                    span: p.span().into(),
                })
                .collect()
        };
        GeoSettings {
            country: located(&g.country),
            asn: located(&g.asn),
        }
    });
    let redis = raw.redis.as_ref().map(|r| {
        if let Err(why) = parse_host_port(r.address.get_ref()) {
            ctx.err(
                r.address.span(),
                format!("invalid Redis address: {why}"),
                Some("host:port, e.g. \"127.0.0.1:6379\""),
                None,
            );
        }
        let prefix = r
            .key_prefix
            .as_ref()
            .map_or("rampart".to_owned(), |p| p.get_ref().clone());
        if prefix.is_empty() || prefix.len() > 64 || prefix.bytes().any(|b| !b.is_ascii_graphic()) {
            if let Some(p) = &r.key_prefix {
                ctx.err(
                    p.span(),
                    "invalid key prefix",
                    Some("1 to 64 printable characters without spaces"),
                    None,
                );
            }
        }
        RedisSettings {
            address: r.address.get_ref().clone(),
            timeout: ctx.duration(&r.timeout, "Redis timeout", Duration::from_millis(50)),
            password: r.password.as_ref().map(|p| p.get_ref().clone()),
            database: ctx.int(&r.database, "database", 0, 1023).unwrap_or(0) as u32,
            key_prefix: prefix,
        }
    });
    let mut sites = Vec::new();
    let mut site_ids = HashSet::new();
    let mut routing = vec![HostTable::default(); listeners.len()];
    let mut claimed: HashMap<(usize, String), String> = HashMap::new();
    for s in &raw.sites {
        ctx.id(&s.id, "site id");
        if !site_ids.insert(s.id.get_ref().clone()) {
            ctx.err(
                s.id.span(),
                format!("duplicate site id `{}`", s.id.get_ref()),
                Some("a unique id"),
                None,
            );
        }
        let tenant = lookup(&mut ctx, &tenant_ids, &s.tenant, "tenant", "tenant");
        let site_idx = sites.len();
        let on: Vec<usize> = match &s.listeners {
            None => listeners
                .iter()
                .enumerate()
                .filter(|(_, l)| matches!(l.kind, ListenerKind::Http { .. }))
                .map(|(i, _)| i)
                .collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| {
                    let i = lookup(&mut ctx, &listener_names, n, "listener", "listener")?;
                    if !matches!(listeners[i].kind, ListenerKind::Http { .. }) {
                        ctx.err(
                            n.span(),
                            format!("listener `{}` is a tcp listener", n.get_ref()),
                            Some("an HTTP listener"),
                            Some("tcp listeners forward to their own pool and carry no sites"),
                        );
                        return None;
                    }
                    Some(i)
                })
                .collect(),
        };
        if s.hosts.get_ref().is_empty() {
            ctx.err(
                s.hosts.span(),
                "a site needs at least one host",
                Some("hosts = [\"shop.example.com\"] (or [\"*\"] for any host)"),
                None,
            );
        }
        let mut hosts = Vec::new();
        for h in s.hosts.get_ref() {
            let host = h.get_ref().to_ascii_lowercase();
            if !valid_host_pattern(&host, true) {
                ctx.err(h.span(), format!("invalid host `{}`", h.get_ref()), Some("a host name (\"shop.example.com\"), a wildcard (\"*.example.com\"), an IP address, or \"*\""), Some("ports are not part of the host; list the listeners instead"));
                continue;
            }
            for &li in &on {
                if let Some(other) = claimed.insert((li, host.clone()), s.id.get_ref().clone()) {
                    ctx.err(
                        h.span(),
                        format!(
                            "host `{host}` on listener `{}` is already served by site `{other}`",
                            listeners[li].name
                        ),
                        Some("each host once per listener"),
                        None,
                    );
                    continue;
                }
                let table = &mut routing[li];
                if host == "*" {
                    table.any = Some(site_idx);
                } else if let Some(suffix) = host.strip_prefix('*') {
                    table.wildcard.push((suffix.to_owned(), site_idx));
                } else {
                    table.exact.insert(host.clone(), site_idx);
                }
            }
            hosts.push(host);
        }
        let mut routes = Vec::new();
        let mut prefixes = HashSet::new();
        let site_waf = s.waf.as_ref();
        if s.routes.is_empty() {
            ctx.err(
                s.id.span(),
                format!("site `{}` has no route", s.id.get_ref()),
                Some("at least one [[site.route]] with path and pool"),
                Some("path = \"/\" routes everything"),
            );
        }
        for r in &s.routes {
            let prefix = r.path.get_ref();
            if !prefix.starts_with('/')
                || prefix
                    .bytes()
                    .any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f)
            {
                ctx.err(
                    r.path.span(),
                    format!("invalid route path `{prefix}`"),
                    Some("a path prefix starting with '/', without query or spaces"),
                    None,
                );
            }
            if !prefixes.insert(prefix.clone()) {
                ctx.err(
                    r.path.span(),
                    format!("duplicate route path `{prefix}`"),
                    Some("each prefix once per site"),
                    None,
                );
            }
            if let Some(p) = lookup(&mut ctx, &pool_ids, &r.pool, "pool", "pool") {
                if let Some(t) = tenant {
                    if pools[p].tenant != t {
                        ctx.err(
                            r.pool.span(),
                            format!(
                                "pool `{}` belongs to tenant `{}`, not `{}`",
                                pools[p].id, tenants[pools[p].tenant].id, tenants[t].id
                            ),
                            Some("a pool of the site's own tenant"),
                            Some("tenants never share origin pools"),
                        );
                    }
                }
                let waf = waf_policy(&mut ctx, site_waf, r.waf.as_ref());
                let policy = super::policy::policy(
                    &mut ctx,
                    &lists,
                    s.policy.as_ref(),
                    r.policy.as_ref(),
                    Some(prefix.as_str()),
                    redis.is_some(),
                );
                let clients = match r.clients.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
                    None | Some(("browser", _)) => Clients::Browser,
                    Some(("api", _)) => Clients::Api,
                    Some((other, span)) => {
                        ctx.err(
                            span,
                            format!("unknown clients `{other}`"),
                            Some("\"browser\" or \"api\""),
                            Some("API routes are never challenged"),
                        );
                        Clients::Browser
                    }
                };
                routes.push(Route {
                    prefix: prefix.clone(),
                    pool: p,
                    waf,
                    policy,
                    clients,
                });
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let challenge = site_challenge(&mut ctx, s.challenge.as_ref());
        let bot = site_bot(&mut ctx, s.bot.as_ref());
        let onboarding = s
            .policy
            .as_ref()
            .and_then(|p| p.monitor.as_ref())
            .is_some_and(|m| *m.get_ref());
        let flood = site_flood(&mut ctx, s.flood.as_ref(), onboarding);
        sites.push(Site {
            id: Arc::from(s.id.get_ref().as_str()),
            tenant: tenant.unwrap_or(0),
            hosts,
            routes,
            challenge,
            bot,
            flood,
        });
    }
    for table in &mut routing {
        table.wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
    }

    if ctx.diags.is_empty() {
        Ok(Config {
            edge: EdgeSettings {
                admin,
                trusted_proxies,
                drain_timeout,
                access_log,
                security_log,
                workers,
            },
            tenants,
            listeners,
            certificates,
            pools,
            sites,
            routing,
            lists,
            redis,
            geo,
            challenge: ChallengeKeys {
                key_file: raw
                    .challenge
                    .as_ref()
                    .and_then(|c| c.key_file.as_ref())
                    .map(|p| super::policy::Located {
                        text: p.get_ref().clone(),
                        span: p.span().into(),
                    }),
            },
        })
    } else {
        ctx.diags.sort();
        Err(ctx.diags)
    }
}

fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or("IPv6 addresses need brackets and a port")?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
        (h.to_owned(), p)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or("no port")?;
        if h.contains(':') {
            return Err("IPv6 addresses need brackets".into());
        }
        if h.is_empty() || !valid_host_pattern(&h.to_ascii_lowercase(), false) || h.starts_with('*')
        {
            return Err(format!("`{h}` is not a host name or IP address"));
        }
        (h.to_owned(), p)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    if port == 0 {
        return Err("port 0 is not a destination".into());
    }
    Ok((host, port))
}

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

/// Host names, `*.suffix` wildcards, IP literals, and (for sites) `*`.
fn valid_host_pattern(h: &str, allow_any: bool) -> bool {
    if h == "*" {
        return allow_any;
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[site.challenge]`, checked, with defaults.
fn site_challenge(ctx: &mut Ctx<'_>, raw: Option<&RawSiteChallenge>) -> SiteChallenge {
    let d = SiteChallenge::default();
    let Some(c) = raw else { return d };
    let bits = |ctx: &mut Ctx<'_>, v: &Option<Sp<i64>>, what: &str, default: u8| {
        ctx.int(v, what, 1, 26).map_or(default, |n| n as u8)
    };
    let difficulty = bits(ctx, &c.difficulty, "difficulty", d.difficulty);
    let max_difficulty = bits(
        ctx,
        &c.max_difficulty,
        "max_difficulty",
        d.max_difficulty.max(difficulty),
    );
    if max_difficulty < difficulty {
        if let Some(m) = &c.max_difficulty {
            ctx.err(
                m.span(),
                format!("max_difficulty {max_difficulty} is below difficulty {difficulty}"),
                Some("a ceiling at least the starting difficulty"),
                None,
            );
        }
    }
    SiteChallenge {
        difficulty,
        max_difficulty: max_difficulty.max(difficulty),
        clearance_ttl: ctx.duration(&c.clearance_ttl, "clearance_ttl", d.clearance_ttl),
        ipv4_prefix: ctx
            .int(&c.ipv4_prefix, "ipv4_prefix", 8, 32)
            .map_or(d.ipv4_prefix, |n| n as u8),
        ipv6_prefix: ctx
            .int(&c.ipv6_prefix, "ipv6_prefix", 16, 128)
            .map_or(d.ipv6_prefix, |n| n as u8),
        bind_tls_fingerprint: c
            .bind_tls_fingerprint
            .as_ref()
            .map_or(d.bind_tls_fingerprint, |b| *b.get_ref()),
        noscript_wait: ctx.duration(&c.noscript_wait, "noscript_wait", d.noscript_wait),
    }
}

/// `[site.bot]`, checked, with defaults.
fn site_bot(ctx: &mut Ctx<'_>, raw: Option<&raw::RawSiteBot>) -> SiteBot {
    let d = SiteBot::default();
    let Some(b) = raw else { return d };
    let login_path = b.login_path.as_ref().map(|p| {
        if !p.get_ref().starts_with('/') {
            ctx.err(
                p.span(),
                format!("login_path `{}` does not start with `/`", p.get_ref()),
                Some("a path such as \"/login\""),
                None,
            );
        }
        p.get_ref().clone()
    });
    let mut verified = Vec::new();
    for v in &b.verified {
        if v.user_agent.get_ref().trim().is_empty() {
            ctx.err(
                v.user_agent.span(),
                "empty user_agent",
                Some("a substring of the bot's User-Agent, such as \"Googlebot\""),
                None,
            );
        }
        if v.networks.is_empty() {
            ctx.err(
                v.name.span(),
                format!("verified bot `{}` has no networks", v.name.get_ref()),
                Some("the networks it crawls from, e.g. [\"66.249.64.0/19\"]"),
                Some("a User-Agent alone proves nothing: anyone can send it"),
            );
        }
        verified.push(VerifiedBot {
            name: v.name.get_ref().clone(),
            user_agent: v.user_agent.get_ref().to_ascii_lowercase(),
            networks: ctx.cidrs(&v.networks),
        });
    }
    SiteBot {
        rate: ctx
            .int(&b.rate, "rate", 1, 1_000_000)
            .map_or(d.rate, |n| n as u32),
        paths: ctx
            .int(&b.paths, "paths", 1, 1_000_000)
            .map_or(d.paths, |n| n as u32),
        login_path,
        verified,
    }
}

/// `[site.flood]`, checked, with defaults; an onboarding site's automatic rules only
/// record.
fn site_flood(ctx: &mut Ctx<'_>, raw: Option<&raw::RawSiteFlood>, onboarding: bool) -> SiteFlood {
    let d = SiteFlood {
        monitor: onboarding,
        ..SiteFlood::default()
    };
    let Some(f) = raw else { return d };
    let word = |ctx: &mut Ctx<'_>, v: &Option<Sp<String>>, what: &str, choices: [&str; 2]| {
        let v = v.as_ref()?;
        let i = choices.iter().position(|c| c == v.get_ref());
        if i.is_none() {
            ctx.err(
                v.span(),
                format!("unknown {what} `{}`", v.get_ref()),
                Some(&format!("\"{}\" or \"{}\"", choices[0], choices[1])),
                None,
            );
        }
        i
    };
    let mode = word(ctx, &f.mode, "mode", ["enforce", "monitor"]);
    let action = word(ctx, &f.action, "action", ["challenge", "block"]);
    let real =
        |ctx: &mut Ctx<'_>, v: &Option<Sp<f64>>, what: &str, min: f64, max: f64, default: f64| {
            let Some(v) = v else { return default };
            let n = *v.get_ref();
            if !(min..=max).contains(&n) {
                ctx.err(
                    v.span(),
                    format!("{what} = {n} is out of range"),
                    Some(&format!("a number from {min} to {max}")),
                    None,
                );
                return default;
            }
            n
        };
    SiteFlood {
        enabled: f.enabled.as_ref().map_or(d.enabled, |b| *b.get_ref()),
        monitor: onboarding || mode == Some(1),
        block: action == Some(1),
        factor: real(ctx, &f.factor, "factor", 1.1, 1000.0, d.factor),
        suspect_factor: real(
            ctx,
            &f.suspect_factor,
            "suspect_factor",
            1.1,
            1000.0,
            d.suspect_factor,
        ),
        min_excess: real(ctx, &f.min_excess, "min_excess", 0.0, 1e9, d.min_excess),
        bound: real(ctx, &f.bound, "bound", 0.0, 0.5, d.bound),
        learn: ctx.duration(&f.learn, "learn", d.learn),
        quiet: ctx.duration(&f.quiet, "quiet", d.quiet),
        cooldown: ctx.duration(&f.cooldown, "cooldown", d.cooldown),
    }
}
