//! One decision model for every stage: each adds [`Verdict`]s to the request's
//! [`Decision`]; the final action is the most severe *enforced* verdict, and verdicts in
//! monitor mode are kept as `would_block` / `would_challenge`.
//!
//! The decision is also the explanation: the security event lists every verdict in the
//! order it was reached (rule, limit or list, with its mode and reason), and
//! `rampart explain` prints it.

use std::borrow::Cow;
use std::fmt;

/// Whether a verdict takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// It takes effect.
    #[default]
    Enforce,
    /// It is recorded as what would have happened.
    Monitor,
    /// A challenge the client had already passed: it holds a valid clearance token.
    Passed,
    /// A challenge not put to the client: the route serves programs (`clients = "api"`).
    Waived,
}

impl Mode {
    /// `enforce` or `monitor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
            Mode::Passed => "passed",
            Mode::Waived => "waived",
        }
    }
}

/// What a verdict asks for, from least to most severe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A remark in the trace — a tag or header a rule set, a counter backend failing
    /// open — that is not, by itself, a reason for a security event.
    Note,
    /// Record only.
    Log,
    /// Let the request through and skip the inspection stages after this one.
    Allow,
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The `Location`.
        location: String,
    },
    /// Ask the client to prove it is a browser (until the bot defence exists this
    /// blocks, as its own event type).
    Challenge,
    /// Refuse the request.
    Block {
        /// Status of the answer (403, 429 …).
        status: u16,
        /// The body template to answer with (a named page; the default block page
        /// when absent).
        page: Option<std::sync::Arc<str>>,
    },
}

impl Action {
    /// Rank for "most severe": block > challenge > redirect > allow > log.
    pub fn severity(&self) -> u8 {
        match self {
            Action::Note | Action::Log => 0,
            Action::Allow => 1,
            Action::Redirect { .. } => 2,
            Action::Challenge => 3,
            Action::Block { .. } => 4,
        }
    }

    /// Whether the action ends the request's evaluation (everything but `log`).
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Action::Log | Action::Note)
    }

    /// Whether a verdict with this action is worth a security event by itself: not a
    /// [`Action::Note`], and not [`Action::Allow`] (allowed traffic is counted in
    /// metrics, not logged request by request).
    pub fn is_notable(&self) -> bool {
        !matches!(self, Action::Note | Action::Allow)
    }

    /// Short name: `note`, `log`, `allow`, `redirect`, `challenge`, `block`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Note => "note",
            Action::Log => "log",
            Action::Allow => "allow",
            Action::Redirect { .. } => "redirect",
            Action::Challenge => "challenge",
            Action::Block { .. } => "block",
        }
    }

    /// The name of this action taken in monitor mode (`would_block`).
    pub fn would(&self) -> &'static str {
        match self {
            Action::Note => "would_note",
            Action::Log => "log",
            Action::Allow => "would_allow",
            Action::Redirect { .. } => "would_redirect",
            Action::Challenge => "would_challenge",
            Action::Block { .. } => "would_block",
        }
    }
}

/// What kind of thing produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A named list used for allow, deny or bypass.
    List,
    /// A custom rule.
    Rule,
    /// A rate limit.
    Limit,
    /// The WAF.
    Waf,
    /// The bot defence.
    Bot,
}

impl Source {
    /// `list`, `rule`, `limit`, `waf`, `bot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::List => "list",
            Source::Rule => "rule",
            Source::Limit => "limit",
            Source::Waf => "waf",
            Source::Bot => "bot",
        }
    }
}

/// One step of a decision: something matched and asked for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What produced it.
    pub source: Source,
    /// Its id (rule id, limit name, list name).
    pub id: Cow<'static, str>,
    /// What it asks for.
    pub action: Action,
    /// Whether it takes effect.
    pub mode: Mode,
    /// Why, in words (`"12 requests in 10 s (limit 10)"`).
    pub reason: String,
}

impl Verdict {
    /// What happened, as logged: the action, or its `would_` form in monitor mode.
    pub fn outcome(&self) -> &'static str {
        match self.mode {
            Mode::Enforce => self.action.name(),
            Mode::Monitor => self.action.would(),
            Mode::Passed => "passed",
            Mode::Waived => "waived",
        }
    }
}

/// Every verdict reached for one request, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    verdicts: Vec<Verdict>,
}

impl Decision {
    /// An empty decision (nothing matched yet).
    pub fn new() -> Self {
        Decision::default()
    }

    /// Records a verdict.
    pub fn push(&mut self, v: Verdict) {
        self.verdicts.push(v);
    }

    /// The verdicts in the order they were reached.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }

    /// Whether some verdict is worth a security event ([`Action::is_notable`]; a
    /// challenge the client had passed is not).
    pub fn is_notable(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| v.action.is_notable() && v.mode != Mode::Passed)
    }

    /// Settles the enforced challenges from `from` on: passed when the client holds a
    /// clearance (`cleared`), else waived when `waive` (an API route). Returns whether
    /// an enforced challenge remains.
    pub fn settle_challenges(&mut self, from: usize, cleared: bool, waive: bool) -> bool {
        let mut open = false;
        for v in self.verdicts.iter_mut().skip(from) {
            if v.mode == Mode::Enforce && v.action == Action::Challenge {
                if cleared {
                    v.mode = Mode::Passed;
                } else if waive {
                    v.mode = Mode::Waived;
                } else {
                    open = true;
                }
            }
        }
        open
    }

    /// The most severe enforced verdict (the first of equal severity), if any.
    pub fn final_verdict(&self) -> Option<&Verdict> {
        let mut best: Option<&Verdict> = None;
        for v in self.verdicts.iter().filter(|v| v.mode == Mode::Enforce) {
            if best.is_none_or(|b| v.action.severity() > b.action.severity()) {
                best = Some(v);
            }
        }
        best
    }

    /// The most severe monitor-mode verdict more severe than the final one: what would
    /// have happened if monitor mode were off.
    pub fn would(&self) -> Option<&Verdict> {
        let floor = self.final_verdict().map_or(0, |v| v.action.severity());
        let mut best: Option<&Verdict> = None;
        for v in self.verdicts.iter().filter(|v| v.mode == Mode::Monitor) {
            let s = v.action.severity();
            if s > floor && s >= 2 && best.is_none_or(|b| s > b.action.severity()) {
                best = Some(v);
            }
        }
        best
    }

    /// Whether an enforced verdict ended evaluation (allow, redirect, challenge, block):
    /// later stages and rules do not run.
    pub fn is_settled(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| v.mode == Mode::Enforce && v.action.is_terminal())
    }
}

impl fmt::Display for Decision {
    /// The trace, one verdict a line, then the outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.verdicts.iter().enumerate() {
            writeln!(
                f,
                "{:>2}. {:<5} {:<24} {:<16} [{}] {}",
                i + 1,
                v.source.as_str(),
                v.id,
                v.outcome(),
                v.mode.as_str(),
                v.reason
            )?;
        }
        match self.final_verdict() {
            Some(v) => write!(
                f,
                "final: {} (by {} {})",
                v.action.name(),
                v.source.as_str(),
                v.id
            )?,
            None => write!(f, "final: pass")?,
        }
        if let Some(w) = self.would() {
            write!(
                f,
                "; would {} (by {} {})",
                w.action.name(),
                w.source.as_str(),
                w.id
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &'static str, action: Action, mode: Mode) -> Verdict {
        Verdict {
            source: Source::Rule,
            id: Cow::Borrowed(id),
            action,
            mode,
            reason: String::new(),
        }
    }

    #[test]
    fn final_is_the_most_severe_enforced_and_monitor_is_would() {
        let mut d = Decision::new();
        assert_eq!(d.final_verdict(), None);
        d.push(v("a", Action::Log, Mode::Enforce));
        d.push(v(
            "b",
            Action::Block {
                status: 403,
                page: None,
            },
            Mode::Monitor,
        ));
        d.push(v("c", Action::Challenge, Mode::Enforce));
        d.push(v("d", Action::Challenge, Mode::Enforce));
        assert_eq!(d.final_verdict().map(|v| &*v.id), Some("c"));
        assert_eq!(d.would().map(|v| &*v.id), Some("b"));
        assert_eq!(d.verdicts()[1].outcome(), "would_block");
        assert!(d.is_settled());
        let text = d.to_string();
        assert!(
            text.ends_with("final: challenge (by rule c); would block (by rule b)"),
            "{text}"
        );

        let mut d = Decision::new();
        d.push(v("m", Action::Challenge, Mode::Monitor));
        d.push(v(
            "e",
            Action::Block {
                status: 429,
                page: None,
            },
            Mode::Enforce,
        ));
        // Nothing in monitor mode was more severe than what happened.
        assert_eq!(d.would(), None);
        assert_eq!(
            d.final_verdict().map(|v| v.action.clone()),
            Some(Action::Block {
                status: 429,
                page: None
            })
        );

        let mut d = Decision::new();
        d.push(v("l", Action::Log, Mode::Enforce));
        assert!(!d.is_settled());
        assert!(d.to_string().ends_with("final: log (by rule l)"));
    }
}
