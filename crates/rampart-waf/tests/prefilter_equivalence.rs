//! The literal prefilter and the outcomes learnt at load only save work: over every
//! request of the CRS v4 regression suite (mostly attacks, crafted to hit rules' edge
//! cases), the ruleset with them and the same ruleset without them fire exactly the same
//! rules, in the same order, with the same log lines.
#![allow(clippy::panic)]

use std::path::Path;

#[test]
fn prefilter_never_changes_a_decision() {
    compare_at(4, 200, 10_000);
}

/// At paranoia level 1 the rules of levels 2–4 are skipped by configuration and left out
/// of the prefilter (see `expected_reach` in the engine): decisions stay the same.
#[test]
fn prefilter_never_changes_a_decision_at_paranoia_level_1() {
    compare_at(1, 150, 2_000);
}

fn compare_at(paranoia: u8, min_gated: usize, min_fired: usize) {
    let crs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs");
    let with = rampart_waf::ftw::harness_ruleset_at(&crs, paranoia)
        .unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let (gated, literals) = with.prefilter_stats();
    assert!(
        gated > min_gated,
        "only {gated} rules are gated by the prefilter"
    );
    println!("paranoia level {paranoia}: prefilter: {gated} rules gated over {literals} literals");
    let learnt = with.learnt_count();
    assert!(
        learnt > 50,
        "only {learnt} rules have outcomes learnt at load"
    );
    println!("{learnt} rule outcomes learnt at load");
    let without = rampart_waf::ftw::harness_ruleset_at(&crs, paranoia)
        .unwrap_or_else(|e| panic!("{}", e.join("\n")))
        .without_prefilter();
    let files = rampart_waf::ftw::load_tests(&crs.join("tests/regression/tests"))
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut requests, mut fired, mut differ) = (0usize, 0usize, Vec::new());
    for file in &files {
        for test in &file.tests {
            for (i, stage) in test.stages.iter().enumerate() {
                let Ok(raw) = &stage.request else { continue };
                let a = rampart_waf::ftw::evaluate(&with, raw);
                let b = rampart_waf::ftw::evaluate(&without, raw);
                requests += 1;
                fired += a.fired.len();
                if a.fired != b.fired || a.log != b.log || a.status != b.status {
                    differ.push(format!(
                        "{} stage {i}: with prefilter {:?}, without {:?}",
                        test.name(),
                        a.fired,
                        b.fired
                    ));
                }
            }
        }
    }
    println!("{requests} requests, {fired} rule matches compared");
    assert!(
        requests > 4000 && fired > min_fired,
        "{requests} requests, {fired} matches"
    );
    assert!(
        differ.is_empty(),
        "{} requests decided differently:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
