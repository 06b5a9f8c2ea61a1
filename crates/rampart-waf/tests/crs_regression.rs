//! The CRS v4 regression suite, in-process, as a ratchet: the number of passing tests
//! may not fall below the floor recorded in `crs-floor.txt` (raise it when it rises).
//! Excluded tests, each with its reason, are in `crs-exclusions.toml`.

use std::path::Path;

#[test]
fn crs_regression_suite_does_not_fall_below_the_floor() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crs = here.join("../../../shared/crs");
    assert!(
        crs.join("tests/regression/tests").is_dir(),
        "CRS v4 with its regression tests is expected at {} (../shared/crs beside the repository)",
        crs.display()
    );
    let floor: usize = std::fs::read_to_string(here.join("crs-floor.txt"))
        .expect("crs-floor.txt")
        .trim()
        .parse()
        .expect("crs-floor.txt holds one number");
    let excluded = rampart_waf::ftw::load_exclusions(&here.join("crs-exclusions.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rs = rampart_waf::ftw::harness_ruleset(&crs).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let files = rampart_waf::ftw::load_tests(&crs.join("tests/regression/tests"))
        .unwrap_or_else(|e| panic!("{e}"));
    let report = rampart_waf::ftw::run(&rs, &files, &excluded, None);
    let failed = report.failed_count();
    for (file, fails) in &report.failed {
        for (test, reasons) in fails {
            eprintln!("{file} {test}: {}", reasons.join("; "));
        }
    }
    let total = report.passed + failed;
    println!(
        "CRS regression: {} passed, {failed} failed, {} excluded ({:.2} % of run tests pass); floor {floor}",
        report.passed,
        report.skipped.len(),
        100.0 * report.passed as f64 / total.max(1) as f64
    );
    for d in &rs.disabled {
        println!("rule {} does not run: {}", d.id, d.reason);
    }
    assert!(
        report.passed >= floor,
        "{} tests pass, fewer than the floor of {floor}: a change broke CRS compatibility",
        report.passed
    );
    if report.passed > floor {
        println!(
            "the pass count rose above the floor: raise crs-floor.txt to {}",
            report.passed
        );
    }
}
