//! The policy sections: `[[list]]` and `[site.policy]` / `[site.route.policy]`,
//! validated into [`PolicySpec`]s.
//!
//! Everything that needs no expression engine is checked here: names, kinds, actions and
//! the fields each needs, statuses, durations, thresholds, references from rules to
//! limits and from list uses to lists. Expressions stay text with their position
//! ([`Located`]); `rampart-policy` compiles them when the edge builds a generation and
//! reports their errors at the same file:line:col.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Span;
use super::compile::Ctx;
use super::raw::{self, Sp};
use super::units::parse_duration;
use crate::decision::Mode;

/// A piece of configuration text with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Located {
    /// The text (a TOML string's value).
    pub text: String,
    /// The span of the TOML value, quotes included.
    pub span: Span,
}

impl Located {
    fn of(v: &Sp<String>) -> Self {
        Located {
            text: v.get_ref().clone(),
            span: v.span().into(),
        }
    }
}

/// What a `[[list]]` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Addresses, networks and ranges.
    Ip,
    /// Two-letter country codes.
    Country,
    /// Autonomous system numbers.
    Asn,
    /// Strings.
    Str,
}

impl ListKind {
    /// The name used in configuration (`kind = "ip"`).
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Ip => "ip",
            ListKind::Country => "country",
            ListKind::Asn => "asn",
            ListKind::Str => "string",
        }
    }
}

/// Where a list's entries come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListSource {
    /// A file, as written (relative to the configuration file).
    File(Located),
    /// Entries written in the configuration.
    Entries(Vec<Located>),
}

/// A `[[list]]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListDef {
    /// The name expressions use after `$`.
    pub name: Arc<str>,
    /// What it holds.
    pub kind: ListKind,
    /// Its entries.
    pub source: ListSource,
    /// Where the list is defined.
    pub span: Span,
}

/// How a policy uses a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListUseKind {
    /// Let matching requests through, skipping later stages.
    Allow,
    /// Block them.
    Deny,
    /// Skip inspection for them.
    Bypass,
}

impl ListUseKind {
    /// `allow`, `deny` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListUseKind::Allow => "allow",
            ListUseKind::Deny => "deny",
            ListUseKind::Bypass => "bypass",
        }
    }
}

/// `[[site.policy.list]]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListUseSpec {
    /// Index in [`super::Config::lists`].
    pub list: usize,
    /// Its use.
    pub kind: ListUseKind,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Where it is written.
    pub span: Span,
}

/// A limit's counting algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgorithmSpec {
    /// Sliding window counter.
    SlidingWindow,
    /// GCRA.
    Gcra,
}

/// What a threshold does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LevelAction {
    /// Record.
    Log,
    /// Challenge.
    Challenge,
    /// Block with this status.
    Block(u16),
}

/// `[[site.policy.limit.threshold]]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThresholdSpec {
    /// The count above which it applies.
    pub above: u32,
    /// What it does.
    pub action: LevelAction,
    /// How long a key stays at this level once over it.
    pub hold: Duration,
}

/// `[[site.policy.limit]]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    /// Unique within the policy.
    pub name: Arc<str>,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Which requests count.
    pub filter: Option<Located>,
    /// Count responses matching this instead.
    pub responses: Option<Located>,
    /// Key parts.
    pub key: Vec<Located>,
    /// Distinct values counted per key.
    pub distinct: Option<Located>,
    /// Algorithm.
    pub algorithm: AlgorithmSpec,
    /// Window.
    pub window: Duration,
    /// Thresholds, ascending.
    pub thresholds: Vec<ThresholdSpec>,
    /// Counters shared through Redis.
    pub redis: bool,
    /// Apply the most severe action when the backend cannot answer.
    pub fail_closed: bool,
    /// Most keys kept in process.
    pub max_keys: usize,
    /// Only rules feed it (a rule names it and it has no filter of its own).
    pub fed_only: bool,
    /// Where it is defined: `None` for the site (one count for all its routes), or the
    /// route's path prefix.
    pub scope: Option<String>,
    /// Where it is defined.
    pub span: Span,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleActionSpec {
    /// Let through, skip later stages.
    Allow,
    /// Refuse with this status.
    Block(u16),
    /// Challenge.
    Challenge,
    /// Record.
    Log,
    /// Add a tag.
    Tag(String),
    /// Feed the limit at this index of [`PolicySpec::limits`].
    RateLimit(usize),
    /// Redirect.
    Redirect {
        /// Status.
        status: u16,
        /// Location.
        location: String,
    },
    /// Set a request header toward the origin.
    SetHeader {
        /// Name (lower case).
        name: String,
        /// Value.
        value: String,
    },
    /// Remove a request header toward the origin.
    RemoveHeader(String),
}

/// `[[site.policy.rule]]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    /// Unique within the policy.
    pub id: Arc<str>,
    /// Lower runs first.
    pub priority: i32,
    /// The condition.
    pub expression: Located,
    /// What it does.
    pub action: RuleActionSpec,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Unix time (s) from which it no longer applies.
    pub expires_at: Option<u64>,
    /// What it is for.
    pub description: String,
    /// Its change ticket.
    pub ticket: Option<String>,
}

/// The policy of a route: the site's parts, then the route's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PolicySpec {
    /// Onboarding: everything in monitor mode.
    pub monitor: bool,
    /// List uses.
    pub lists: Vec<ListUseSpec>,
    /// Limits.
    pub limits: Vec<LimitSpec>,
    /// Rules.
    pub rules: Vec<RuleSpec>,
}

const NAME_HINT: &str = "letters, digits, `-` and `_`";

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates `[[list]]`s.
pub(super) fn lists(ctx: &mut Ctx<'_>, raw: &[raw::RawList]) -> Vec<ListDef> {
    let mut out: Vec<ListDef> = Vec::new();
    for l in raw {
        let name = l.name.get_ref();
        if !valid_name(name) {
            ctx.err(
                l.name.span(),
                format!("invalid list name `{name}`"),
                Some(NAME_HINT),
                None,
            );
            continue;
        }
        if out.iter().any(|o| &*o.name == name.as_str()) {
            ctx.err(
                l.name.span(),
                format!("duplicate list `{name}`"),
                Some("each list name once"),
                None,
            );
            continue;
        }
        let kind = match l.kind.get_ref().as_str() {
            "ip" => ListKind::Ip,
            "country" => ListKind::Country,
            "asn" => ListKind::Asn,
            "string" => ListKind::Str,
            other => {
                ctx.err(
                    l.kind.span(),
                    format!("unknown list kind `{other}`"),
                    Some("\"ip\", \"country\", \"asn\" or \"string\""),
                    None,
                );
                continue;
            }
        };
        let source = match (&l.file, &l.entries) {
            (Some(f), None) => ListSource::File(Located::of(f)),
            (None, Some(e)) => ListSource::Entries(e.get_ref().iter().map(Located::of).collect()),
            (Some(f), Some(_)) => {
                ctx.err(
                    f.span(),
                    "a list takes `file` or `entries`, not both",
                    Some("one of them"),
                    None,
                );
                continue;
            }
            (None, None) => {
                ctx.err(
                    l.name.span(),
                    format!("list `{name}` has no entries"),
                    Some("file = \"lists/x.txt\" or entries = [\"…\"]"),
                    None,
                );
                continue;
            }
        };
        out.push(ListDef {
            name: Arc::from(name.as_str()),
            kind,
            source,
            span: l.name.span().into(),
        });
    }
    out
}

fn mode(ctx: &mut Ctx<'_>, v: &Option<Sp<String>>) -> Mode {
    match v.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("enforce", _)) => Mode::Enforce,
        Some(("monitor", _)) => Mode::Monitor,
        Some((other, span)) => {
            ctx.err(
                span,
                format!("unknown mode `{other}`"),
                Some("\"enforce\" or \"monitor\""),
                None,
            );
            Mode::Enforce
        }
    }
}

fn status(
    ctx: &mut Ctx<'_>,
    v: &Option<Sp<i64>>,
    default: u16,
    allowed: &[std::ops::RangeInclusive<u16>],
    expected: &str,
) -> u16 {
    let Some(v) = v else { return default };
    let n = *v.get_ref();
    match u16::try_from(n) {
        Ok(s) if allowed.iter().any(|r| r.contains(&s)) => s,
        _ => {
            ctx.err(
                v.span(),
                format!("status {n} is not allowed here"),
                Some(expected),
                None,
            );
            default
        }
    }
}

/// Validates a route's policy: the site's parts, then the route's (at `route_path`).
pub(super) fn policy(
    ctx: &mut Ctx<'_>,
    lists: &[ListDef],
    site: Option<&raw::RawPolicy>,
    route: Option<&raw::RawPolicy>,
    route_path: Option<&str>,
    have_redis: bool,
) -> Option<Arc<PolicySpec>> {
    if site.is_none() && route.is_none() {
        return None;
    }
    let layers: Vec<&raw::RawPolicy> = site.into_iter().chain(route).collect();
    let mut spec = PolicySpec {
        monitor: layers
            .iter()
            .rev()
            .find_map(|p| p.monitor.as_ref())
            .is_some_and(|m| *m.get_ref()),
        ..PolicySpec::default()
    };
    for p in &layers {
        for u in &p.lists {
            let Some(list) = lists.iter().position(|l| *l.name == **u.list.get_ref()) else {
                ctx.err(
                    u.list.span(),
                    format!("no list named `{}`", u.list.get_ref()),
                    Some("the name of a [[list]]"),
                    None,
                );
                continue;
            };
            let kind = match u.use_.get_ref().as_str() {
                "allow" => ListUseKind::Allow,
                "deny" => ListUseKind::Deny,
                "bypass" => ListUseKind::Bypass,
                other => {
                    ctx.err(
                        u.use_.span(),
                        format!("unknown list use `{other}`"),
                        Some("\"allow\", \"deny\" or \"bypass\""),
                        None,
                    );
                    continue;
                }
            };
            if lists[list].kind == ListKind::Str {
                ctx.err(
                    u.list.span(),
                    format!("list `{}` holds strings", u.list.get_ref()),
                    Some("a list of kind ip, country or asn"),
                    Some("use a string list in a rule: `http.user_agent in $name`"),
                );
                continue;
            }
            let m = mode(ctx, &u.mode);
            spec.lists.push(ListUseSpec {
                list,
                kind,
                mode: m,
                span: u.list.span().into(),
            });
        }
    }
    // Limits first: rules refer to them by name.
    let mut limit_index: HashMap<String, usize> = HashMap::new();
    let route_prefix = route.and(route_path);
    for (layer, p) in layers.iter().enumerate() {
        for l in &p.limits {
            if let Some(mut limit) = limit(ctx, l) {
                if limit.redis && !have_redis {
                    let span = l.backend.as_ref().map_or(l.name.span(), |b| b.span());
                    ctx.err(
                        span,
                        format!(
                            "limit `{}` keeps its counters in Redis, but no [redis] is configured",
                            limit.name
                        ),
                        Some("a [redis] section with address = \"host:port\""),
                        Some("or backend = \"local\" for counters in this edge only"),
                    );
                    continue;
                }
                // The route's own limits are the last layer.
                if route.is_some() && layer == layers.len() - 1 {
                    limit.scope = route_prefix.map(str::to_owned);
                }
                if limit_index
                    .insert(limit.name.to_string(), spec.limits.len())
                    .is_some()
                {
                    ctx.err(
                        l.name.span(),
                        format!("duplicate limit `{}`", limit.name),
                        Some("each limit name once per route (site and route together)"),
                        None,
                    );
                    continue;
                }
                spec.limits.push(limit);
            }
        }
    }
    let mut fed = vec![false; spec.limits.len()];
    let mut ids: HashMap<String, ()> = HashMap::new();
    for p in &layers {
        for r in &p.rules {
            let Some(rule) = rule(ctx, r, &limit_index) else {
                continue;
            };
            if ids.insert(rule.id.to_string(), ()).is_some() {
                ctx.err(
                    r.id.span(),
                    format!("duplicate rule `{}`", rule.id),
                    Some("each rule id once per route (site and route together)"),
                    None,
                );
                continue;
            }
            if let RuleActionSpec::RateLimit(i) = rule.action {
                fed[i] = true;
            }
            spec.rules.push(rule);
        }
    }
    for (l, fed) in spec.limits.iter_mut().zip(fed) {
        l.fed_only = fed && l.filter.is_none();
    }
    Some(Arc::new(spec))
}

fn limit(ctx: &mut Ctx<'_>, l: &raw::RawLimit) -> Option<LimitSpec> {
    let name = l.name.get_ref();
    if !valid_name(name) {
        ctx.err(
            l.name.span(),
            format!("invalid limit name `{name}`"),
            Some(NAME_HINT),
            None,
        );
        return None;
    }
    let mut ok = true;
    if l.key.get_ref().is_empty() {
        ctx.err(l.key.span(), "a limit needs a key", Some("key = [\"ip.src\"] or [\"cidr(ip.src, 24, 64)\"], [\"http.request.headers[\\\"x-api-key\\\"]\"] …"), None);
        ok = false;
    }
    let algorithm = match l
        .algorithm
        .as_ref()
        .map(|a| (a.get_ref().as_str(), a.span()))
    {
        None | Some(("sliding_window", _)) => AlgorithmSpec::SlidingWindow,
        Some(("gcra", _)) => AlgorithmSpec::Gcra,
        Some((other, span)) => {
            ctx.err(
                span,
                format!("unknown algorithm `{other}`"),
                Some("\"sliding_window\" or \"gcra\""),
                None,
            );
            ok = false;
            AlgorithmSpec::SlidingWindow
        }
    };
    if let (AlgorithmSpec::Gcra, Some(d)) = (algorithm, &l.distinct) {
        ctx.err(
            d.span(),
            "distinct counting uses the sliding window",
            Some("algorithm = \"sliding_window\" (or no algorithm)"),
            None,
        );
        ok = false;
    }
    let window = match parse_duration(l.window.get_ref()) {
        Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86_400) => d,
        Ok(_) => {
            ctx.err(
                l.window.span(),
                "the window must be from 1 s to 24 h",
                Some("a duration such as \"10s\", \"1m\", \"1h\""),
                None,
            );
            ok = false;
            Duration::from_secs(1)
        }
        Err(why) => {
            ctx.err(
                l.window.span(),
                format!("invalid window: {why}"),
                Some("a duration such as \"10s\", \"1m\", \"1h\""),
                None,
            );
            ok = false;
            Duration::from_secs(1)
        }
    };
    if l.thresholds.is_empty() || l.thresholds.len() > 4 {
        ctx.err(
            l.name.span(),
            format!("limit `{name}` has {} thresholds", l.thresholds.len()),
            Some("one to four [[site.policy.limit.threshold]]"),
            None,
        );
        ok = false;
    }
    let mut thresholds = Vec::new();
    let mut last = -1i64;
    for t in &l.thresholds {
        let above = *t.above.get_ref();
        if !(0..=i64::from(u32::MAX)).contains(&above) || above <= last {
            ctx.err(
                t.above.span(),
                format!("threshold above = {above} is out of order or range"),
                Some("counts from 0 to 4294967295, each above the one before"),
                None,
            );
            ok = false;
        }
        last = above;
        let action = match t.action.get_ref().as_str() {
            "log" => LevelAction::Log,
            "challenge" => LevelAction::Challenge,
            "block" => LevelAction::Block(status(
                ctx,
                &t.status,
                429,
                &[400..=599],
                "a status from 400 to 599",
            )),
            other => {
                ctx.err(
                    t.action.span(),
                    format!("unknown threshold action `{other}`"),
                    Some("\"log\", \"challenge\" or \"block\""),
                    None,
                );
                ok = false;
                LevelAction::Log
            }
        };
        if t.status.is_some() && !matches!(action, LevelAction::Block(_)) {
            if let Some(s) = &t.status {
                ctx.err(
                    s.span(),
                    "`status` only applies to action = \"block\"",
                    None,
                    None,
                );
                ok = false;
            }
        }
        let hold = match &t.hold {
            None => Duration::ZERO,
            Some(h) => match parse_duration(h.get_ref()) {
                Ok(d) => d,
                Err(why) => {
                    ctx.err(
                        h.span(),
                        format!("invalid hold: {why}"),
                        Some("a duration such as \"10m\""),
                        None,
                    );
                    ok = false;
                    Duration::ZERO
                }
            },
        };
        thresholds.push(ThresholdSpec {
            above: above.clamp(0, i64::from(u32::MAX)) as u32,
            action,
            hold,
        });
    }
    let redis = match l.backend.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
        None | Some(("local", _)) => false,
        Some(("redis", _)) => true,
        Some((other, span)) => {
            ctx.err(
                span,
                format!("unknown backend `{other}`"),
                Some("\"local\" or \"redis\""),
                None,
            );
            ok = false;
            false
        }
    };
    let fail_closed = match l
        .on_failure
        .as_ref()
        .map(|b| (b.get_ref().as_str(), b.span()))
    {
        None | Some(("open", _)) => false,
        Some(("closed", _)) => true,
        Some((other, span)) => {
            ctx.err(
                span,
                format!("unknown on_failure `{other}`"),
                Some("\"open\" or \"closed\""),
                None,
            );
            ok = false;
            false
        }
    };
    let max_keys = ctx
        .int(&l.max_keys, "max_keys", 1_000, 100_000_000)
        .unwrap_or(100_000) as usize;
    let m = mode(ctx, &l.mode);
    ok.then(|| LimitSpec {
        name: Arc::from(name.as_str()),
        mode: m,
        filter: l.filter.as_ref().map(Located::of),
        responses: l.responses.as_ref().map(Located::of),
        key: l.key.get_ref().iter().map(Located::of).collect(),
        distinct: l.distinct.as_ref().map(Located::of),
        algorithm,
        window,
        thresholds,
        redis,
        fail_closed,
        max_keys,
        fed_only: false,
        scope: None,
        span: l.name.span().into(),
    })
}

fn rule(ctx: &mut Ctx<'_>, r: &raw::RawRule, limits: &HashMap<String, usize>) -> Option<RuleSpec> {
    let id = r.id.get_ref();
    if !valid_name(id) {
        ctx.err(
            r.id.span(),
            format!("invalid rule id `{id}`"),
            Some(NAME_HINT),
            None,
        );
        return None;
    }
    let priority = ctx
        .int(&r.priority, "priority", -1_000_000, 1_000_000)
        .unwrap_or(1000) as i32;
    let action_name = r.action.get_ref().as_str();
    // Which optional fields the action takes.
    let takes: &[&str] = match action_name {
        "allow" | "challenge" | "log" => &[],
        "block" => &["status"],
        "tag" => &["tag"],
        "rate_limit" => &["limit"],
        "redirect" => &["status", "location"],
        "set_header" => &["header", "value"],
        "remove_header" => &["header"],
        other => {
            ctx.err(r.action.span(), format!("unknown action `{other}`"), Some("allow, block, challenge, log, tag, rate_limit, redirect, set_header or remove_header"), None);
            return None;
        }
    };
    let mut ok = true;
    let given: [(&str, Option<std::ops::Range<usize>>); 6] = [
        ("status", r.status.as_ref().map(|v| v.span())),
        ("tag", r.tag.as_ref().map(|v| v.span())),
        ("limit", r.limit.as_ref().map(|v| v.span())),
        ("location", r.location.as_ref().map(|v| v.span())),
        ("header", r.header.as_ref().map(|v| v.span())),
        ("value", r.value.as_ref().map(|v| v.span())),
    ];
    for (field, span) in given {
        if let Some(span) = span {
            if !takes.contains(&field) {
                ctx.err(
                    span,
                    format!("`{field}` does not apply to action = \"{action_name}\""),
                    None,
                    Some("remove it, or choose the action it belongs to"),
                );
                ok = false;
            }
        }
    }
    let need = |ctx: &mut Ctx<'_>, v: &Option<Sp<String>>, field: &str| -> Option<String> {
        match v {
            Some(v) if !v.get_ref().is_empty() => Some(v.get_ref().clone()),
            _ => {
                ctx.err(
                    r.action.span(),
                    format!("action = \"{action_name}\" needs `{field}`"),
                    None,
                    None,
                );
                None
            }
        }
    };
    let action = match action_name {
        "allow" => RuleActionSpec::Allow,
        "challenge" => RuleActionSpec::Challenge,
        "log" => RuleActionSpec::Log,
        "block" => RuleActionSpec::Block(status(
            ctx,
            &r.status,
            403,
            &[400..=599],
            "a status from 400 to 599",
        )),
        "tag" => {
            let t = need(ctx, &r.tag, "tag")?;
            if t.len() > 64 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                ctx.err(
                    r.tag.as_ref().map_or(r.id.span(), |t| t.span()),
                    format!("invalid tag `{t}`"),
                    Some("up to 64 printable characters without spaces"),
                    None,
                );
                return None;
            }
            RuleActionSpec::Tag(t)
        }
        "rate_limit" => {
            let name = need(ctx, &r.limit, "limit")?;
            match limits.get(&name) {
                Some(&i) => RuleActionSpec::RateLimit(i),
                None => {
                    ctx.err(
                        r.limit.as_ref().map_or(r.id.span(), |t| t.span()),
                        format!("no limit named `{name}`"),
                        Some("the name of a [[site.policy.limit]] of this site or route"),
                        None,
                    );
                    return None;
                }
            }
        }
        "redirect" => {
            let location = need(ctx, &r.location, "location")?;
            if http::HeaderValue::from_str(&location).is_err() {
                ctx.err(
                    r.location.as_ref().map_or(r.id.span(), |t| t.span()),
                    "the location is not a valid header value",
                    Some("a URL without control characters"),
                    None,
                );
                return None;
            }
            let status = status(
                ctx,
                &r.status,
                302,
                &[301..=303, 307..=308],
                "301, 302, 303, 307 or 308",
            );
            RuleActionSpec::Redirect { status, location }
        }
        "set_header" | "remove_header" => {
            let name = need(ctx, &r.header, "header")?.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                ctx.err(
                    r.header.as_ref().map_or(r.id.span(), |t| t.span()),
                    format!("invalid header name `{name}`"),
                    Some("a token such as \"x-client-tier\""),
                    None,
                );
                return None;
            }
            if ["host", "content-length", "transfer-encoding", "connection"]
                .contains(&name.as_str())
            {
                ctx.err(
                    r.header.as_ref().map_or(r.id.span(), |t| t.span()),
                    format!("`{name}` is managed by the edge"),
                    Some("another header"),
                    Some("these fields frame or route the request and cannot be set by rules"),
                );
                return None;
            }
            if action_name == "remove_header" {
                RuleActionSpec::RemoveHeader(name)
            } else {
                let value = r
                    .value
                    .as_ref()
                    .map_or(String::new(), |v| v.get_ref().clone());
                if http::HeaderValue::from_str(&value).is_err() {
                    ctx.err(
                        r.value.as_ref().map_or(r.id.span(), |t| t.span()),
                        "invalid header value",
                        Some("text without control characters"),
                        None,
                    );
                    return None;
                }
                RuleActionSpec::SetHeader { name, value }
            }
        }
        _ => return None,
    };
    let expires_at = match &r.expires {
        None => None,
        Some(dt) => match unix_seconds(dt.get_ref()) {
            Some(t) => Some(t),
            None => {
                ctx.err(
                    dt.span(),
                    "`expires` needs a date, a time and an offset",
                    Some("a date-time such as 2026-12-31T23:59:59Z"),
                    None,
                );
                ok = false;
                None
            }
        },
    };
    let m = mode(ctx, &r.mode);
    ok.then(|| RuleSpec {
        id: Arc::from(id.as_str()),
        priority,
        expression: Located::of(&r.expression),
        action,
        mode: m,
        expires_at,
        description: r
            .description
            .as_ref()
            .map_or(String::new(), |d| d.get_ref().clone()),
        ticket: r.ticket.as_ref().map(|t| t.get_ref().clone()),
    })
}

/// Seconds since the Unix epoch of a TOML offset date-time.
fn unix_seconds(dt: &toml::value::Datetime) -> Option<u64> {
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let offset_min = match offset {
        toml::value::Offset::Z => 0i64,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0))
        - offset_min * 60;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_of_offset_datetimes() {
        let parse = |s: &str| s.parse::<toml::value::Datetime>().ok();
        let t = |s: &str| parse(s).and_then(|d| unix_seconds(&d));
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(t("2026-12-31T23:59:59Z"), Some(1_798_761_599));
        assert_eq!(t("2026-12-31T23:59:59+01:00"), Some(1_798_757_999));
        assert_eq!(t("2026-12-31T23:59:59"), None, "no offset");
        assert_eq!(t("2026-12-31"), None, "no time");
    }
}
