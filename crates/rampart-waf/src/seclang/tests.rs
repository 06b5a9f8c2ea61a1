use std::path::{Path, PathBuf};

use super::*;

fn crs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs")
}

fn one(text: &str) -> Directive {
    let l = parse_str("t.conf", text);
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    assert_eq!(l.directives.len(), 1, "{:#?}", l.directives);
    l.directives
        .into_iter()
        .next()
        .map(|d| d.directive)
        .unwrap_or(Directive::Marker(String::new()))
}

fn error(text: &str) -> Diagnostic {
    let l = parse_str("bad.conf", text);
    assert_eq!(l.diagnostics.len(), 1, "{:#?}", l.diagnostics);
    l.diagnostics[0].clone()
}

#[test]
fn the_whole_crs_v4_parses_without_a_diagnostic() {
    let dir = crs_dir().join("rules");
    let loaded = load(&OsFs, &dir);
    let errors: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let count =
        |f: fn(&Directive) -> bool| loaded.directives.iter().filter(|d| f(&d.directive)).count();
    // Counted independently with `grep -cE '^\s*SecRule\s' rules/*.conf` and so on.
    assert_eq!(count(|d| matches!(d, Directive::Rule(_))), 695);
    assert_eq!(count(|d| matches!(d, Directive::Action(_))), 7);
    assert_eq!(count(|d| matches!(d, Directive::Marker(_))), 30);
    assert_eq!(loaded.directives.len(), 788);
    assert_eq!(loaded.files.len(), 27);

    // Spot checks of what was read.
    let rule = loaded
        .directives
        .iter()
        .find_map(|d| match &d.directive {
            Directive::Rule(r) if r.actions.contains(&Action::Id(921110)) => Some((r, &d.origin)),
            _ => None,
        })
        .map(|(r, o)| (r.clone(), o.clone()));
    let Some((rule, origin)) = rule else {
        panic!("rule 921110 not found")
    };
    assert!(origin.file.ends_with("REQUEST-921-PROTOCOL-ATTACK.conf"));
    assert_eq!(
        rule.variables.iter().map(|v| v.var).collect::<Vec<_>>(),
        [
            Var::ArgsNames,
            Var::Args,
            Var::RequestBody,
            Var::Xml,
            Var::Xml
        ]
    );
    assert_eq!(rule.variables[3].key, Some(VarKey::Name("/*".into())));
    assert_eq!(rule.variables[4].key, Some(VarKey::Name("//@*".into())));
    assert_eq!(rule.operator.op, Op::Rx);
    assert!(rule.operator.param.starts_with("(?:get|p(?:(?:os|u)t"));
    assert!(
        rule.actions
            .contains(&Action::Transform(Transform::HtmlEntityDecode))
    );
    assert!(rule.actions.contains(&Action::Phase(Phase(2))));
    assert!(
        rule.actions
            .contains(&Action::Msg("HTTP Request Smuggling Attack".into()))
    );
    assert!(
        rule.actions
            .iter()
            .any(|a| matches!(a, Action::SetVar(s) if s.collection == "tx"
        && s.name == "inbound_anomaly_score_pl1"
        && s.op == SetVarOp::Add("%{tx.critical_anomaly_score}".into())))
    );
}

#[test]
fn crs_setup_example_parses() {
    let loaded = load(&OsFs, &crs_dir().join("crs-setup.conf.example"));
    let errors: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(
        loaded.directives.iter().any(
            |d| matches!(&d.directive, Directive::Action(a) if a.contains(&Action::Id(900990)))
        )
    );
}

#[test]
fn quoting_continuations_and_actions() {
    let d = one(
        "SecRule REQUEST_HEADERS:User-Agent|!REQUEST_HEADERS:Referer|&ARGS|ARGS:/^id_[0-9]+$/ \\\n    \"!@rx ^a\\\"b\\\\d\" \\\n    \"id:10,phase:request,  t:none,t:lowercase,msg:'one, two \\'three\\'',setvar:!tx.x,setvar:tx.y,setvar:'tx.z=-%{tx.w}',ctl:ruleRemoveTargetById=942100;ARGS:pass,severity:'CRITICAL',allow:phase\"",
    );
    let Directive::Rule(r) = d else {
        panic!("not a rule: {d:?}")
    };
    assert_eq!(
        r.variables,
        vec![
            VarSel {
                var: Var::RequestHeaders,
                key: Some(VarKey::Name("User-Agent".into())),
                count: false,
                exclude: false
            },
            VarSel {
                var: Var::RequestHeaders,
                key: Some(VarKey::Name("Referer".into())),
                count: false,
                exclude: true
            },
            VarSel {
                var: Var::Args,
                key: None,
                count: true,
                exclude: false
            },
            VarSel {
                var: Var::Args,
                key: Some(VarKey::Regex("^id_[0-9]+$".into())),
                count: false,
                exclude: false
            },
        ]
    );
    // `\"` unescapes; every other backslash stays for the regex engine.
    assert_eq!(
        r.operator,
        OperatorSpec {
            op: Op::Rx,
            negated: true,
            param: "^a\"b\\\\d".into()
        }
    );
    assert_eq!(
        r.actions,
        vec![
            Action::Id(10),
            Action::Phase(Phase(2)),
            Action::Transform(Transform::None),
            Action::Transform(Transform::Lowercase),
            Action::Msg("one, two 'three'".into()),
            Action::SetVar(SetVar {
                collection: "tx".into(),
                name: "x".into(),
                op: SetVarOp::Delete
            }),
            Action::SetVar(SetVar {
                collection: "tx".into(),
                name: "y".into(),
                op: SetVarOp::Set("1".into())
            }),
            Action::SetVar(SetVar {
                collection: "tx".into(),
                name: "z".into(),
                op: SetVarOp::Sub("%{tx.w}".into())
            }),
            Action::Ctl(Ctl::RuleRemoveTargetById(
                IdRange {
                    first: 942100,
                    last: 942100
                },
                vec![VarSel {
                    var: Var::Args,
                    key: Some(VarKey::Name("pass".into())),
                    count: false,
                    exclude: false
                }]
            )),
            Action::Severity(2),
            Action::Disruptive(Disruptive::Allow(Some("phase".into()))),
        ]
    );
}

#[test]
fn operators_and_directives() {
    let op = |t: &str| match one(&format!("SecRule ARGS \"{t}\" \"id:1\"")) {
        Directive::Rule(r) => r.operator,
        d => panic!("{d:?}"),
    };
    assert_eq!(
        op("@eq 0"),
        OperatorSpec {
            op: Op::Eq,
            negated: false,
            param: "0".into()
        }
    );
    assert_eq!(op("@pmf data.txt").op, Op::PmFromFile);
    assert_eq!(
        op("@detectSQLi"),
        OperatorSpec {
            op: Op::DetectSqli,
            negated: false,
            param: String::new()
        }
    );
    assert_eq!(
        op("^bare regex$"),
        OperatorSpec {
            op: Op::Rx,
            negated: false,
            param: "^bare regex$".into()
        }
    );
    assert_eq!(op("@unconditionalMatch").op, Op::UnconditionalMatch);

    assert_eq!(
        one("SecRuleEngine DetectionOnly"),
        Directive::RuleEngine(EngineMode::DetectionOnly)
    );
    assert_eq!(
        one("secrequestbodyaccess on"),
        Directive::RequestBodyAccess(true)
    );
    assert_eq!(
        one("SecRequestBodyLimit 13107200"),
        Directive::RequestBodyLimit(13_107_200)
    );
    assert_eq!(
        one("SecRequestBodyLimitAction ProcessPartial"),
        Directive::RequestBodyLimitAction(LimitAction::ProcessPartial)
    );
    assert_eq!(
        one("SecRuleRemoveById 942100 920000-920999,949110"),
        Directive::RemoveById(vec![
            IdRange {
                first: 942100,
                last: 942100
            },
            IdRange {
                first: 920000,
                last: 920999
            },
            IdRange {
                first: 949110,
                last: 949110
            },
        ])
    );
    assert_eq!(
        one("SecRuleUpdateTargetById 942100 \"!ARGS:password|!REQUEST_COOKIES:/^sess/\""),
        Directive::UpdateTargetById {
            ids: vec![IdRange {
                first: 942100,
                last: 942100
            }],
            targets: vec![
                VarSel {
                    var: Var::Args,
                    key: Some(VarKey::Name("password".into())),
                    count: false,
                    exclude: true
                },
                VarSel {
                    var: Var::RequestCookies,
                    key: Some(VarKey::Regex("^sess".into())),
                    count: false,
                    exclude: true
                },
            ],
            replace: None,
        }
    );
    assert_eq!(
        one("SecRuleUpdateActionById 942100:1 \"t:none\""),
        Directive::UpdateActionById {
            id: 942100,
            chain_offset: 1,
            actions: vec![Action::Transform(Transform::None)]
        }
    );
    assert_eq!(
        one("SecResponseBodyMimeType text/plain text/html"),
        Directive::ResponseBodyMimeType(vec!["text/plain".into(), "text/html".into()])
    );
    assert_eq!(
        one("SecAuditEngine RelevantOnly"),
        Directive::Ignored("SecAuditEngine".into())
    );
    assert_eq!(
        one("SecArgumentSeparator ;"),
        Directive::ArgumentSeparator(b';')
    );
    assert_eq!(
        one("SecCollectionTimeout 600"),
        Directive::CollectionTimeout(600)
    );
}

#[test]
fn comments_blank_lines_and_crlf_are_skipped() {
    let l = parse_str(
        "t.conf",
        "# a comment \\\n# continued\r\n\r\n   \nSecMarker END\r\n  # indented comment\n",
    );
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    assert_eq!(l.directives.len(), 1);
    assert_eq!(l.directives[0].origin.line, 5);
}

#[test]
fn errors_name_file_line_column_and_what_was_expected() {
    // The column points into the continued line where the bad action is.
    let e = error("SecMarker A\nSecRule ARGS \"@rx x\" \\\n    \"id:1,\\\n    phsae:2\"\n");
    assert_eq!((e.file.as_str(), e.line, e.col), ("bad.conf", 4, 5), "{e}");
    assert_eq!(e.message, "unknown action `phsae`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `phase`?"));

    let e = error("SecRule ARGS \"@rxx a\" \"id:1\"");
    assert_eq!((e.line, e.col), (1, 15), "{e}");
    assert_eq!(e.message, "unknown operator `@rxx`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `@rx`?"));

    let e = error("SecRule ARGS|REQUEST_HEADRES:Host \"@rx a\" \"id:1\"");
    assert_eq!((e.line, e.col), (1, 14), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `REQUEST_HEADERS`?"));

    let e = error("SecRule ARGS \"@rx a\" \"id:1,t:lowercas\"");
    assert_eq!(e.message, "unknown transformation `lowercas`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `t:lowercase`?"));

    let e = error("SecRul ARGS \"@rx a\" \"id:1\"");
    assert_eq!((e.line, e.col), (1, 1));
    assert_eq!(e.hint.as_deref(), Some("did you mean `SecRule`?"));

    let e = error("SecRule ARGS \"@rx a\" \"id:1,msg:'open\"");
    assert_eq!(e.message, "value of `msg` is not closed");
    let e = error("SecRule ARGS \"@rx a");
    assert_eq!(e.message, "quoted argument is not closed");
    assert_eq!((e.line, e.col), (1, 14));
    let e = error("SecRule ARGS");
    assert!(
        e.message.starts_with("SecRule takes 2 to 3 arguments"),
        "{e}"
    );
    let e = error("SecRule REQUEST_URI:x \"@rx a\" \"id:1\"");
    assert_eq!(
        e.message,
        "REQUEST_URI is not a collection and takes no `:key`"
    );
    let e = error("SecRule !ARGS \"@rx a\" \"id:1\"");
    assert!(e.message.contains("excludes nothing"), "{e}");
    let e = error("SecRule ARGS \"@rx a\" \"id:0\"");
    assert_eq!(e.message, "`0` is not a rule id");
    let e = error("SecRule ARGS \"@rx a\" \"id:1,phase:6\"");
    assert_eq!(e.message, "`6` is not a phase");
    let e = error("SecRule ARGS \"@rx a\" \"id:1,severity:HIGH\"");
    assert_eq!(e.message, "`HIGH` is not a severity");
    let e = error("SecRule ARGS \"@rx a\" \"id:1,ctl:ruleEngine=Maybe\"");
    assert_eq!(e.message, "`Maybe` is not an engine mode");
    let e = error("SecRule ARGS \"@rx a\" \"id:1,setvar:novalue\"");
    assert!(e.message.contains("setvar:novalue"), "{e}");
    let e = error("SecRuleEngine Sometimes");
    assert_eq!(e.expected.as_deref(), Some("On|Off|DetectionOnly"));
    let e = error("SecRuleRemoveById 10-2");
    assert_eq!(e.message, "empty id range `10-2`");
    let e = error("SecRemoteRules key https://example.com/rules.conf");
    assert!(
        e.hint.as_deref().is_some_and(|h| h.contains("Include")),
        "{e}"
    );
    let e = error("SecRule ARGS \"@eq\" \"id:1\"");
    assert_eq!(e.message, "@eq needs a parameter");
    // The rendering carries the location and the offending line.
    let shown = error("SecRule ARGS \"@rxx a\" \"id:1\"").to_string();
    assert!(
        shown.starts_with("bad.conf:1:15: error: unknown operator `@rxx`"),
        "{shown}"
    );
    assert!(shown.contains("SecRule ARGS \"@rxx a\""), "{shown}");
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let l = parse_str(
        "many.conf",
        "SecRule ARGS \"@nope\" \"id:1\"\nSecMarker OK\nSecFoo bar\nSecRule ARGS \"@rx a\" \"id:2,bogus\"\n",
    );
    assert_eq!(
        l.diagnostics.iter().map(|d| d.line).collect::<Vec<_>>(),
        [1, 3, 4]
    );
    assert_eq!(l.directives.len(), 1, "the valid directive is still read");
}

#[test]
fn includes_follow_globs_relative_paths_and_refuse_cycles() {
    let mut fs = MemFs::new();
    fs.insert(
        "/etc/waf/main.conf",
        "Include rules/*.conf\nInclude extra.conf\nSecMarker MAIN_END\n",
    )
    .insert("/etc/waf/rules/b.conf", "SecMarker B\n")
    .insert("/etc/waf/rules/a.conf", "SecMarker A\n")
    .insert("/etc/waf/rules/a.conf.example", "SecMarker EXAMPLE\n")
    .insert("/etc/waf/rules/.hidden.conf", "SecMarker HIDDEN\n")
    .insert(
        "/etc/waf/extra.conf",
        "SecMarker EXTRA\nInclude main.conf\n",
    );
    let l = load(&fs, Path::new("/etc/waf/main.conf"));
    let markers: Vec<&str> = l
        .directives
        .iter()
        .filter_map(|d| match &d.directive {
            Directive::Marker(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(markers, ["A", "B", "EXTRA", "MAIN_END"]);
    assert_eq!(l.diagnostics.len(), 1, "{:#?}", l.diagnostics);
    let d = &l.diagnostics[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.col),
        ("/etc/waf/extra.conf", 2, 9),
        "{d}"
    );
    assert!(d.message.contains("includes itself"), "{d}");
    assert_eq!(
        l.directives[0].origin.file.as_ref(),
        "/etc/waf/rules/a.conf"
    );

    let l = load(&fs, Path::new("/etc/waf/missing.conf"));
    assert_eq!(l.diagnostics.len(), 1);
    assert!(
        l.diagnostics[0]
            .message
            .starts_with("cannot read rule file")
    );

    let mut fs = MemFs::new();
    fs.insert("/r/main.conf", "Include nothing/*.conf\n");
    let l = load(&fs, Path::new("/r/main.conf"));
    assert!(
        l.diagnostics[0].message.contains("matches no file"),
        "{:#?}",
        l.diagnostics
    );
}

#[test]
fn a_directory_loads_its_conf_files_in_name_order() {
    let mut fs = MemFs::new();
    fs.insert("/crs/rules/REQUEST-920.conf", "SecMarker 920\n")
        .insert("/crs/rules/REQUEST-901.conf", "SecMarker 901\n")
        .insert("/crs/rules/README", "not rules\n");
    let l = load(&fs, Path::new("/crs/rules"));
    assert!(l.diagnostics.is_empty());
    assert_eq!(
        l.directives
            .iter()
            .map(|d| d.directive.clone())
            .collect::<Vec<_>>(),
        [
            Directive::Marker("901".into()),
            Directive::Marker("920".into())
        ]
    );
}

#[test]
fn glob_matching() {
    use super::source::glob_match;
    for (p, n, m) in [
        ("*.conf", "a.conf", true),
        ("*.conf", "a.conf.example", false),
        ("REQUEST-9?1-*.conf", "REQUEST-901-INIT.conf", true),
        ("[ab]*.conf", "b1.conf", true),
        ("[!ab]*.conf", "b1.conf", false),
        ("[a-c]x", "bx", true),
        ("*a*b*", "xxaxxbxx", true),
        ("*a*b", "xxaxxbxxc", false),
        ("[unclosed", "[unclosed", true),
        ("", "", true),
        ("*", "", true),
    ] {
        assert_eq!(glob_match(p.as_bytes(), n.as_bytes()), m, "{p} vs {n}");
    }
}
