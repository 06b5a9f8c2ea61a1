//! A policy: list uses (allow, deny, bypass), rate limits and custom rules, evaluated
//! into the request's [`Decision`].
//!
//! Evaluation runs in the pipeline's order, each part a function the edge calls at its
//! place:
//!
//! 1. [`Policy::acl`] — the lists: `deny` blocks, `allow` lets the request through and
//!    skips everything after, `bypass` skips inspection (WAF, bot checks) but not the
//!    limits and rules.
//! 2. [`Policy::limit_checks`] → the edge counts (in process, or one batched round trip
//!    to Redis) → [`Policy::apply_limits`]. A limit counts the requests its filter
//!    matches — or that a rule with a `rate_limit` action matches: such a rule feeds its
//!    limit in this phase, before the other rules, whatever its priority among them.
//! 3. [`Policy::rules`] at [`RulePhase::BeforeWaf`]: the rules that read neither the WAF
//!    score, the body nor the response, by priority.
//! 4. After the WAF, on the body: the rules that read `waf.score` or body arguments.
//! 5. On the response: the rules that read response fields, and limits that count
//!    responses.
//!
//! An enforced `allow`, `redirect`, `challenge` or `block` ends the evaluation (later
//! rules and stages do not run); `log`, `tag` and header changes do not. A rule or limit
//! in monitor mode — or any, on a site in onboarding (`monitor_all`) — records what it
//! would have done and changes nothing.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rampart_core::decision::{Action, Decision, Mode, Source, Verdict};

use crate::expr::{Expr, Field, KeyExpr};
use crate::ratelimit::{Counting, LocalStore, Outcome};
use crate::request::Request;

/// What a custom rule does when it matches.
#[derive(Debug, Clone)]
pub enum RuleAction {
    /// Let the request through; later rules and inspection stages do not run.
    Allow,
    /// Refuse with `status` and a body template.
    Block {
        /// 4xx or 5xx.
        status: u16,
        /// Named page, or the default block page.
        page: Option<Arc<str>>,
    },
    /// Challenge (a block of its own event type until the bot defence exists).
    Challenge,
    /// Record only.
    Log,
    /// Add a tag later rules, stages and the event see.
    Tag(Arc<str>),
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// `Location`.
        location: String,
    },
    /// Set a header on the request toward the origin.
    SetHeader(HeaderName, HeaderValue),
    /// Remove a header from the request toward the origin.
    RemoveHeader(HeaderName),
    /// Feed the limit at this index of [`Policy::limits`].
    RateLimit(usize),
}

/// A custom rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique within the policy.
    pub id: Arc<str>,
    /// Lower runs first; equal priorities keep the configuration's order.
    pub priority: i32,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Unix time (s) from which the rule no longer applies (temporary rules).
    pub expires_at: Option<u64>,
    /// What the rule is for.
    pub description: String,
    /// Change ticket it was made under.
    pub ticket: Option<String>,
    /// The condition's text, for the trace.
    pub source: Arc<str>,
    /// The condition.
    pub expr: Expr,
    /// What it does.
    pub action: RuleAction,
}

pub use rampart_core::config::policy::ListUseKind as ListUse;

/// A list used for allow, deny or bypass.
#[derive(Debug, Clone)]
pub struct Acl {
    /// The list's name.
    pub list: Arc<str>,
    /// What the list is tested against, as text (`ip.src in $office`).
    pub source: Arc<str>,
    /// The test.
    pub test: Expr,
    /// Its use.
    pub action: ListUse,
    /// Enforce or monitor.
    pub mode: Mode,
}

/// What a limit does when its backend cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Let the request through (and say so in the event).
    #[default]
    Open,
    /// Apply the limit's most severe action.
    Closed,
}

/// Where a limit's counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every edge.
    Redis,
}

/// A rate limit.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Unique within the policy.
    pub name: Arc<str>,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Which requests count: `None` with `standalone` = all; a limit only fed by rules
    /// is not standalone.
    pub filter: Option<Expr>,
    /// Checked for every request (it has its own filter, or none), not only when a rule
    /// feeds it.
    pub standalone: bool,
    /// Count responses that match this instead of requests (`http.response.code ==
    /// 401`); requests are then checked against the count without adding to it.
    pub responses: Option<Expr>,
    /// The key parts; a request lacking one is not counted by this limit.
    pub key: Vec<KeyExpr>,
    /// Count distinct values of this per key instead of requests.
    pub distinct: Option<KeyExpr>,
    /// Algorithm, window, thresholds and holds.
    pub counting: Counting,
    /// The action of each threshold.
    pub actions: Vec<Action>,
    /// Where the counters live.
    pub backend: Backend,
    /// What happens when the backend cannot answer.
    pub fail: FailMode,
    /// Most keys kept in process (older, less used keys are evicted).
    pub max_keys: usize,
}

/// When rules run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePhase {
    /// On the request, before the WAF.
    BeforeWaf,
    /// On the request body, after the WAF (rules that read `waf.score` or the body's
    /// arguments).
    AfterWaf,
    /// On the response (rules that read response fields).
    Response,
}

/// One count a request asks of a limit's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Index in [`Policy::limits`].
    pub limit: usize,
    /// The key: the limit's parts joined by `|`.
    pub key: Vec<u8>,
    /// The counted value, for distinct counting.
    pub value: Vec<u8>,
    /// Add to the count (`false`: only read it, for limits that count responses).
    pub count: bool,
}

/// What a backend answered for a [`Check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitResult {
    /// The count and level.
    Counted(Outcome),
    /// The backend could not answer in time.
    Unavailable,
}

/// What rules changed besides the decision.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Headers to set on the request toward the origin.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers to remove from it.
    pub remove_headers: Vec<HeaderName>,
    /// Skip the inspection stages (a `bypass` list matched).
    pub bypass_inspection: bool,
}

/// A compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// List uses, in order.
    pub acls: Vec<Acl>,
    /// Rate limits.
    pub limits: Vec<Limit>,
    /// Rules, sorted by priority (stable).
    rules: Vec<Rule>,
    /// Every verdict in monitor mode (a site in onboarding).
    pub monitor_all: bool,
}

impl Policy {
    /// A policy of these parts; rules are ordered by priority, then as given.
    pub fn new(
        acls: Vec<Acl>,
        mut limits: Vec<Limit>,
        mut rules: Vec<Rule>,
        monitor_all: bool,
    ) -> Self {
        rules.sort_by_key(|r| r.priority);
        for l in &mut limits {
            // One source of truth: a limit counts distinct values when it names one.
            l.counting.distinct = l.distinct.is_some();
        }
        Policy {
            acls,
            limits,
            rules,
            monitor_all,
        }
    }

    /// The rules in evaluation order.
    pub fn rules_in_order(&self) -> &[Rule] {
        &self.rules
    }

    fn mode(&self, m: Mode) -> Mode {
        if self.monitor_all { Mode::Monitor } else { m }
    }

    /// The phase a rule runs in.
    pub fn phase_of(rule: &Rule) -> RulePhase {
        if rule.expr.reads_response() {
            RulePhase::Response
        } else if rule.expr.reads(Field::WafScore)
            || rule.expr.reads(Field::BodyArgs)
            || rule.expr.reads(Field::BodyArgNames)
        {
            RulePhase::AfterWaf
        } else {
            RulePhase::BeforeWaf
        }
    }

    /// Step 1: the lists.
    pub fn acl(&self, req: &Request<'_>, d: &mut Decision, fx: &mut Effects) {
        for acl in &self.acls {
            if d.is_settled() {
                return;
            }
            if !acl.test.matches(req) {
                continue;
            }
            let mode = self.mode(acl.mode);
            let action = match acl.action {
                ListUse::Allow => Action::Allow,
                ListUse::Deny => Action::Block {
                    status: 403,
                    page: None,
                },
                ListUse::Bypass => Action::Note,
            };
            if acl.action == ListUse::Bypass && mode == Mode::Enforce {
                fx.bypass_inspection = true;
            }
            d.push(Verdict {
                source: Source::List,
                id: Cow::Owned(acl.list.to_string()),
                action,
                mode,
                reason: format!("{} ({})", acl.source, acl.action.as_str()),
            });
        }
    }

    /// Step 2a: the counts this request asks for — on the request (`response` false)
    /// or on its response.
    /// `now`: Unix time in seconds (rules feeding a limit may expire).
    pub fn limit_checks(&self, req: &Request<'_>, response: bool, now: u64, out: &mut Vec<Check>) {
        let mut fed = 0u64;
        if !response {
            for r in &self.rules {
                if let RuleAction::RateLimit(i) = r.action {
                    let live = r.expires_at.is_none_or(|t| t > now);
                    if live && i < 64 && r.expr.matches(req) {
                        fed |= 1 << i;
                    }
                }
            }
        }
        for (i, limit) in self.limits.iter().enumerate() {
            let applies = if limit.standalone {
                limit.filter.as_ref().is_none_or(|f| f.matches(req))
            } else {
                i < 64 && fed & (1 << i) != 0
            };
            if !applies {
                continue;
            }
            let count = match (&limit.responses, response) {
                (None, false) => true,
                (None, true) => continue,
                (Some(_), false) => false,
                (Some(r), true) => {
                    if !r.matches(req) {
                        continue;
                    }
                    true
                }
            };
            let mut key = Vec::with_capacity(32);
            let mut complete = true;
            for (n, part) in limit.key.iter().enumerate() {
                if n > 0 {
                    key.push(b'|');
                }
                complete &= part.write(req, &mut key);
            }
            if !complete {
                continue;
            }
            let mut value = Vec::new();
            if let Some(d) = &limit.distinct {
                if !d.write(req, &mut value) {
                    continue;
                }
            }
            out.push(Check {
                limit: i,
                key,
                value,
                count,
            });
        }
    }

    /// Step 2b: verdicts from what the backends answered (`results[i]` for
    /// `checks[i]`).
    pub fn apply_limits(&self, checks: &[Check], results: &[LimitResult], d: &mut Decision) {
        for (check, result) in checks.iter().zip(results) {
            let Some(limit) = self.limits.get(check.limit) else {
                continue;
            };
            let mode = self.mode(limit.mode);
            let c = &limit.counting;
            let (action, reason) = match *result {
                LimitResult::Counted(o) => {
                    let Some(level) = o.level else { continue };
                    let Some(action) = limit.actions.get(level) else {
                        continue;
                    };
                    let what = if c.distinct {
                        "distinct values"
                    } else if limit.responses.is_some() {
                        "responses"
                    } else {
                        "requests"
                    };
                    let mut reason = format!(
                        "{} {what} in {} s for key {} (threshold {})",
                        trim_count(o.count),
                        c.window_ms as f64 / 1000.0,
                        String::from_utf8_lossy(&check.key),
                        c.thresholds.get(level).copied().unwrap_or(0),
                    );
                    if let Some(ms) = o.held_for {
                        reason.push_str(&format!("; held {} s more", ms.div_ceil(1000)));
                    }
                    (action.clone(), reason)
                }
                LimitResult::Unavailable => match limit.fail {
                    // The outage has its own metric and event; requests are not events.
                    FailMode::Open => (
                        Action::Note,
                        "counter backend unavailable: failing open".to_owned(),
                    ),
                    FailMode::Closed => {
                        let worst = limit
                            .actions
                            .iter()
                            .max_by_key(|a| a.severity())
                            .cloned()
                            .unwrap_or(Action::Block {
                                status: 429,
                                page: None,
                            });
                        (
                            worst,
                            "counter backend unavailable: failing closed".to_owned(),
                        )
                    }
                },
            };
            d.push(Verdict {
                source: Source::Limit,
                id: Cow::Owned(limit.name.to_string()),
                action,
                mode,
                reason,
            });
            if d.is_settled() {
                return;
            }
        }
    }

    /// Steps 3–5: the rules of `phase`, by priority, until one ends the evaluation.
    /// `now` is Unix time in seconds (for expiry).
    pub fn rules(
        &self,
        phase: RulePhase,
        req: &mut Request<'_>,
        now: u64,
        d: &mut Decision,
        fx: &mut Effects,
    ) {
        for r in &self.rules {
            if d.is_settled() {
                return;
            }
            if matches!(r.action, RuleAction::RateLimit(_)) || Policy::phase_of(r) != phase {
                continue;
            }
            if r.expires_at.is_some_and(|t| t <= now) {
                continue;
            }
            if !r.expr.matches(req) {
                continue;
            }
            let mode = self.mode(r.mode);
            let enforce = mode == Mode::Enforce;
            let mut reason = if r.description.is_empty() {
                r.source.to_string()
            } else {
                r.description.clone()
            };
            let action = match &r.action {
                RuleAction::Allow => Action::Allow,
                RuleAction::Block { status, page } => Action::Block {
                    status: *status,
                    page: page.clone(),
                },
                RuleAction::Challenge => Action::Challenge,
                RuleAction::Log => Action::Log,
                RuleAction::Redirect { status, location } => Action::Redirect {
                    status: *status,
                    location: location.clone(),
                },
                RuleAction::Tag(t) => {
                    if enforce {
                        req.add_tag(t.clone());
                    }
                    reason = format!("tag {t}: {reason}");
                    Action::Note
                }
                RuleAction::SetHeader(n, v) => {
                    if enforce {
                        fx.set_headers.push((n.clone(), v.clone()));
                    }
                    reason = format!("set header {n}: {reason}");
                    Action::Note
                }
                RuleAction::RemoveHeader(n) => {
                    if enforce {
                        fx.remove_headers.push(n.clone());
                    }
                    reason = format!("remove header {n}: {reason}");
                    Action::Note
                }
                RuleAction::RateLimit(_) => continue,
            };
            if let Some(t) = &r.ticket {
                reason.push_str(&format!(" [{t}]"));
            }
            d.push(Verdict {
                source: Source::Rule,
                id: Cow::Owned(r.id.to_string()),
                action,
                mode,
                reason,
            });
        }
    }
}

/// The in-process backend: one [`LocalStore`] per limit of a policy.
#[derive(Debug)]
pub struct LocalCounters {
    stores: Vec<Arc<LocalStore>>,
}

impl LocalCounters {
    /// Stores for every limit of `policy` (those kept in Redis get one too, unused).
    pub fn new(policy: &Policy) -> Self {
        LocalCounters {
            stores: policy
                .limits
                .iter()
                .map(|l| Arc::new(LocalStore::new(l.counting.clone(), l.max_keys)))
                .collect(),
        }
    }

    /// Counters over given stores (`stores[i]` for limit `i`), e.g. kept from the
    /// previous configuration so that counts and holds survive a reload.
    pub fn with_stores(stores: Vec<Arc<LocalStore>>) -> Self {
        LocalCounters { stores }
    }

    /// Answers `checks` at `now` (ms, monotonic) into `out`.
    pub fn run(&self, checks: &[Check], now: u64, out: &mut Vec<LimitResult>) {
        out.clear();
        for c in checks {
            out.push(match self.stores.get(c.limit) {
                Some(s) if c.count => LimitResult::Counted(s.hit(&c.key, &c.value, now)),
                Some(s) => LimitResult::Counted(s.peek(&c.key, now)),
                None => LimitResult::Unavailable,
            });
        }
    }

    /// The store of limit `i`.
    pub fn store(&self, i: usize) -> Option<&Arc<LocalStore>> {
        self.stores.get(i)
    }
}

fn trim_count(c: f64) -> String {
    if c.fract() == 0.0 {
        format!("{c:.0}")
    } else {
        format!("{c:.1}")
    }
}

#[cfg(test)]
mod tests;
