//! CRS 3.3 as Debian packages it (`apt-get install modsecurity-crs`, installed by the test
//! command) loads: no error, and every rule that does not run is one of the known kinds.

use std::path::Path;

use rampart_waf::engine::Ruleset;
use rampart_waf::seclang::{self, OsFs};

#[test]
fn debian_crs_3_3_loads_and_names_what_does_not_run() {
    let dir = Path::new("/usr/share/modsecurity-crs/rules");
    assert!(
        dir.is_dir(),
        "Debian's modsecurity-crs is expected at {} (scripts/test.sh installs it)",
        dir.display()
    );
    let loaded = seclang::load(&OsFs, dir);
    let errors: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let rs = Ruleset::compile(&loaded, &OsFs);
    assert!(rs.errors.is_empty(), "{:?}", rs.errors);
    assert!(rs.rule_count() > 700, "{} rules", rs.rule_count());
    for d in &rs.disabled {
        let known = d.reason.contains("@rbl")
            || d.reason.contains("@geoLookup")
            || d.reason.contains("look-around");
        assert!(known, "rule {} at {}: {}", d.id, d.origin, d.reason);
    }
    println!(
        "CRS 3.3: {} rules compiled, {} do not run",
        rs.rule_count(),
        rs.disabled.len()
    );
}
