//! The onboarding report: from a security log, how many requests each rule, limit and
//! list blocked or challenged — or would have, in monitor mode — per day, with examples.
//!
//! A new tenant's site runs in monitor mode for a while; this report is what the
//! operator reads before switching it to enforce. Lines without a verdict (WAF matches
//! below the threshold, state events) or not JSON are counted and passed over, never fatal.

use std::collections::BTreeMap;
use std::io::BufRead;

/// Examples kept per row.
const EXAMPLES: usize = 3;

/// One row: a day, a site, a verdict's source and id, an outcome.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Site id.
    pub site: String,
    /// `rule`, `limit`, `list` or `waf`.
    pub source: String,
    /// Rule id, limit or list name, WAF rule id.
    pub id: String,
    /// `block`, `would_block`, `challenge`, `would_challenge`, …
    pub outcome: String,
}

/// A row's count and examples (request id, method and path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// Requests.
    pub count: u64,
    /// Up to three examples.
    pub examples: Vec<String>,
}

/// The report.
#[derive(Debug, Default)]
pub struct Report {
    /// Rows in order of day, site, source, id, outcome.
    pub rows: BTreeMap<Key, Row>,
    /// Lines read.
    pub lines: u64,
    /// Lines without a verdict (WAF matches below the threshold, state events), or not
    /// JSON.
    pub skipped: u64,
}

/// Outcomes the report counts: what changed (or would have changed) a request's fate.
fn counted(outcome: &str) -> bool {
    matches!(
        outcome,
        "block" | "challenge" | "redirect" | "would_block" | "would_challenge" | "would_redirect"
    )
}

/// Reads a security log.
pub fn read(input: impl BufRead) -> std::io::Result<Report> {
    let mut r = Report::default();
    for line in input.lines() {
        let line = line?;
        r.lines += 1;
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
            r.skipped += 1;
            continue;
        };
        let Some(decision) = ev["rampart.decision"].as_array() else {
            r.skipped += 1;
            continue;
        };
        let day = ev["@timestamp"]
            .as_str()
            .and_then(|t| t.get(..10))
            .unwrap_or("unknown")
            .to_owned();
        let site = ev["rampart.site"].as_str().unwrap_or("-").to_owned();
        let example = format!(
            "{} {} {}",
            ev["http.request.id"].as_str().unwrap_or("-"),
            ev["http.request.method"].as_str().unwrap_or("-"),
            ev["url.path"].as_str().unwrap_or("-")
        );
        for v in decision {
            let outcome = v["outcome"].as_str().unwrap_or("");
            if !counted(outcome) {
                continue;
            }
            let key = Key {
                day: day.clone(),
                site: site.clone(),
                source: v["source"].as_str().unwrap_or("-").to_owned(),
                id: v["id"].as_str().unwrap_or("-").to_owned(),
                outcome: outcome.to_owned(),
            };
            let row = r.rows.entry(key).or_default();
            row.count += 1;
            if row.examples.len() < EXAMPLES {
                row.examples.push(example.clone());
            }
        }
    }
    Ok(r)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<10}  {:<12}  {:<6}  {:<24}  {:<16}  {:>8}  examples",
            "day", "site", "source", "id", "outcome", "requests"
        )?;
        for (k, row) in &self.rows {
            writeln!(
                f,
                "{:<10}  {:<12}  {:<6}  {:<24}  {:<16}  {:>8}  {}",
                k.day,
                k.site,
                k.source,
                k.id,
                k.outcome,
                row.count,
                row.examples.join("; ")
            )?;
        }
        write!(
            f,
            "{} lines read; {} without a verdict (WAF matches below the threshold, state events, other lines)",
            self.lines, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_day_rule_and_outcome_with_examples() {
        let ev = |day: &str, id: &str, outcome: &str, rid: &str| {
            format!(
                r#"{{"@timestamp":"{day}T10:00:00.000Z","rampart.site":"shop","http.request.id":"{rid}","http.request.method":"GET","url.path":"/x","rampart.decision":[{{"source":"rule","id":"tag","outcome":"note"}},{{"source":"rule","id":"{id}","outcome":"{outcome}"}}]}}"#
            )
        };
        let log = [
            ev("2026-12-01", "no-admin", "would_block", "a"),
            ev("2026-12-01", "no-admin", "would_block", "b"),
            ev("2026-12-01", "no-admin", "would_block", "c"),
            ev("2026-12-01", "no-admin", "would_block", "d"),
            ev("2026-12-02", "no-admin", "would_block", "e"),
            ev("2026-12-02", "geo", "block", "f"),
            "not json".into(),
            r#"{"event.kind":"state","event.action":"redis_down"}"#.into(),
        ]
        .join("\n");
        let r = read(log.as_bytes()).unwrap_or_default();
        assert_eq!((r.lines, r.skipped), (8, 2));
        let rows: Vec<(String, String, u64, usize)> = r
            .rows
            .iter()
            .map(|(k, v)| {
                (
                    k.day.clone(),
                    format!("{}:{}", k.id, k.outcome),
                    v.count,
                    v.examples.len(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-12-01".into(), "no-admin:would_block".into(), 4, 3),
                ("2026-12-02".into(), "geo:block".into(), 1, 1),
                ("2026-12-02".into(), "no-admin:would_block".into(), 1, 1),
            ]
        );
        let text = r.to_string();
        assert!(text.contains("a GET /x; b GET /x; c GET /x"), "{text}");
    }
}
