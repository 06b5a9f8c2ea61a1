//! Turning what the agents recorded into the figures the issue asks for.

use std::time::Instant;

use crate::agents::Outcome;
use crate::origin::Counts;
use crate::{Defence, Options, Population, Scenario, Stats};

/// The figures of one scenario against one defence.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Scenario letter.
    pub scenario: char,
    /// Scenario name.
    pub attack: &'static str,
    /// Defence name.
    pub defence: &'static str,
    /// Attack requests sent.
    pub attack_requests: u64,
    /// Share of them answered by the origin, over the whole attack.
    pub attack_reached: f64,
    /// Share answered by the origin once mitigation had started (the first attack
    /// request the edge stopped); `None` when nothing was ever stopped.
    pub attack_reached_after_mitigation: Option<f64>,
    /// Seconds from the attack's start to the first attack request the edge stopped.
    pub seconds_to_mitigate: Option<f64>,
    /// Attack requests with no answer (connection refused, reset, timeout).
    pub attack_failed: u64,
    /// Legitimate page views and API calls during the attack and after it.
    pub legit_requests: u64,
    /// Share of them the edge denied or that failed.
    pub legit_denied_or_failed: f64,
    /// Legitimate users (and API clients) active during the attack.
    pub legit_users: u64,
    /// …of whom none of the views in the attack's last half succeeded.
    pub legit_locked_out: u64,
    /// Challenges legitimate users solved.
    pub legit_challenges_solved: u64,
    /// Median and 99th percentile of legitimate requests' latency through the edge (ms).
    pub legit_latency_ms: (f64, f64),
    /// Origin requests a second before the attack, and during it.
    pub origin_rps: (f64, f64),
    /// For (e): the most requests one solving bot got through in a minute.
    pub solver_max_per_minute: Option<u64>,
    /// Challenges the attackers solved.
    pub attack_challenges_solved: u64,
    /// The Chromium sample's summary, when run.
    pub browsers: Option<serde_json::Value>,
    /// The automatic rules at the end (Rampart).
    pub rules: Vec<String>,
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

impl RunReport {
    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario.to_string(),
            "attack": self.attack,
            "defence": self.defence,
            "attack_requests": self.attack_requests,
            "attack_reached": self.attack_reached,
            "attack_reached_after_mitigation": self.attack_reached_after_mitigation,
            "seconds_to_mitigate": self.seconds_to_mitigate,
            "attack_failed": self.attack_failed,
            "legit_requests": self.legit_requests,
            "legit_denied_or_failed": self.legit_denied_or_failed,
            "legit_users": self.legit_users,
            "legit_locked_out": self.legit_locked_out,
            "legit_challenges_solved": self.legit_challenges_solved,
            "legit_latency_ms": [self.legit_latency_ms.0, self.legit_latency_ms.1],
            "origin_rps": [self.origin_rps.0, self.origin_rps.1],
            "solver_max_per_minute": self.solver_max_per_minute,
            "attack_challenges_solved": self.attack_challenges_solved,
            "browsers": self.browsers,
            "rules": self.rules,
        })
    }
}

/// One line for the console.
pub fn line(r: &RunReport) -> String {
    format!(
        "  ({}) {} vs {}: {} attack requests, {} reached the origin ({} after mitigation, {} s to mitigate); legit {} requests, {} denied/failed, {} of {} users locked out; p50/p99 {:.1}/{:.1} ms; origin {:.0} -> {:.0} req/s{}",
        r.scenario,
        r.attack,
        r.defence,
        r.attack_requests,
        pct(r.attack_reached),
        r.attack_reached_after_mitigation.map_or("-".into(), pct),
        r.seconds_to_mitigate
            .map_or("-".into(), |s| format!("{s:.1}")),
        r.legit_requests,
        pct(r.legit_denied_or_failed),
        r.legit_locked_out,
        r.legit_users,
        r.legit_latency_ms.0,
        r.legit_latency_ms.1,
        r.origin_rps.0,
        r.origin_rps.1,
        r.solver_max_per_minute.map_or(String::new(), |m| format!(
            "; most per solving bot and minute {m}"
        )),
    )
}

/// A Markdown table of reports.
pub fn markdown(rs: &[RunReport]) -> String {
    let mut s = String::from(
        "| scenario | defence | attack requests | reached origin (all) | reached after mitigation | time to mitigate | legit requests | legit denied or failed | users locked out | legit p50 / p99 | origin req/s before → during |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rs {
        s.push_str(&format!(
            "| ({}) {} | {} | {} | {} | {} | {} | {} | {} | {} of {} | {:.1} / {:.1} ms | {:.0} → {:.0} |\n",
            r.scenario,
            r.attack,
            r.defence,
            r.attack_requests,
            pct(r.attack_reached),
            r.attack_reached_after_mitigation.map_or("–".into(), pct),
            r.seconds_to_mitigate.map_or("–".into(), |x| format!("{x:.1} s")),
            r.legit_requests,
            pct(r.legit_denied_or_failed),
            r.legit_locked_out,
            r.legit_users,
            r.legit_latency_ms.0,
            r.legit_latency_ms.1,
            r.origin_rps.0,
            r.origin_rps.1,
        ));
    }
    s
}

fn percentile(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    f64::from(v[i]) / 1000.0
}

/// The report of one run from what was recorded.
#[allow(clippy::too_many_arguments)]
pub fn summarise(
    o: &Options,
    s: Scenario,
    d: Defence,
    stats: &Stats,
    counts: &Counts,
    started: Instant,
    browsers: Option<serde_json::Value>,
    flood: Option<serde_json::Value>,
) -> RunReport {
    let _ = started;
    let attack_start = o.warmup.as_millis() as u64;
    let attack_end = attack_start + o.attack.as_millis() as u64;
    let attack = stats
        .attack
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let n = attack.len() as u64;
    let reached = attack
        .iter()
        .filter(|(_, o)| *o == Outcome::Reached)
        .count() as f64;
    let failed = attack.iter().filter(|(_, o)| *o == Outcome::Failed).count() as u64;
    let first_stop = attack
        .iter()
        .filter(|(_, o)| *o == Outcome::Stopped)
        .map(|(t, _)| *t)
        .min();
    let after: Vec<&(u64, Outcome)> = first_stop
        .map(|f| attack.iter().filter(|(t, _)| *t > f).collect())
        .unwrap_or_default();
    let after_reached = after.iter().filter(|(_, o)| *o == Outcome::Reached).count() as f64;
    let legit = stats
        .legit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let during: Vec<&(u64, usize, Outcome)> = legit
        .iter()
        .filter(|(t, _, _)| *t >= attack_start)
        .collect();
    let bad = during
        .iter()
        .filter(|(_, _, o)| *o != Outcome::Reached)
        .count() as f64;
    // Locked out: active during the attack, and nothing succeeded in its second half.
    let half = attack_start + (attack_end - attack_start) / 2;
    let mut users: std::collections::HashMap<usize, (bool, bool)> = Default::default();
    for (t, u, out) in &legit {
        if *t >= attack_start && *t < attack_end {
            let e = users.entry(*u).or_insert((false, false));
            if *t >= half {
                e.0 = true;
                e.1 |= *out == Outcome::Reached;
            }
        }
    }
    let locked = users.values().filter(|(seen, ok)| *seen && !ok).count() as u64;
    let mut lat = stats
        .legit_latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let p50 = percentile(&mut lat, 0.5);
    let p99 = percentile(&mut lat, 0.99);
    let w = o.warmup.as_secs();
    let a = o.attack.as_secs().max(1);
    let before = counts.total_between(w.saturating_sub(10).max(w / 2), w) as f64
        / (w - w.saturating_sub(10).max(w / 2)).max(1) as f64;
    let during_rps = counts.total_between(w, w + a) as f64 / a as f64;
    let _ = counts.between(Population::Attack, w, w + a);
    let solver_max = (s == Scenario::Solvers).then(|| {
        stats
            .solver_passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    });
    let rules = flood
        .as_ref()
        .and_then(|f| f["sites"][0]["rules"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "{} {} (baseline share {}, hits {})",
                r["id"].as_str().unwrap_or("?"),
                r["expression"].as_str().unwrap_or("?"),
                r["baseline_share"],
                r["hits"]
            )
        })
        .collect();
    RunReport {
        scenario: s.letter(),
        attack: s.describe(),
        defence: d.name(),
        attack_requests: n,
        attack_reached: if n == 0 { 0.0 } else { reached / n as f64 },
        attack_reached_after_mitigation: (!after.is_empty())
            .then(|| after_reached / after.len() as f64),
        seconds_to_mitigate: first_stop.map(|f| f.saturating_sub(attack_start) as f64 / 1000.0),
        attack_failed: failed,
        legit_requests: during.len() as u64,
        legit_denied_or_failed: if during.is_empty() {
            0.0
        } else {
            bad / during.len() as f64
        },
        legit_users: users.len() as u64,
        legit_locked_out: locked,
        legit_challenges_solved: stats
            .legit_solved
            .load(std::sync::atomic::Ordering::Relaxed),
        legit_latency_ms: (p50, p99),
        origin_rps: (before, during_rps),
        solver_max_per_minute: solver_max,
        attack_challenges_solved: stats
            .attack_solved
            .load(std::sync::atomic::Ordering::Relaxed),
        browsers,
        rules,
    }
}
