use super::*;
use crate::seclang::{MemFs, parse_str};

fn ruleset(rules: &str) -> Ruleset {
    let loaded = parse_str("t.conf", rules);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let rs = Ruleset::compile(&loaded, &MemFs::new());
    assert!(rs.errors.is_empty(), "{:?}", rs.errors);
    rs
}

fn info() -> RequestInfo {
    RequestInfo {
        remote_addr: "10.0.0.1".into(),
        remote_port: 5555,
        server_addr: "10.0.0.2".into(),
        server_port: 8080,
        unique_id: "abc".into(),
    }
}

/// Runs a GET (query in `uri`) with headers and an optional urlencoded body.
fn run<'r>(rs: &'r Ruleset, uri: &str, headers: &[(&str, &str)], body: &str) -> Transaction<'r> {
    let mut tx = Transaction::new(rs, info());
    tx.set_request_line(
        if body.is_empty() { b"GET" } else { b"POST" },
        uri.as_bytes(),
        "1.1",
    );
    for (k, v) in headers {
        tx.add_request_header(k.as_bytes(), v.as_bytes());
    }
    if !body.is_empty() {
        tx.add_request_header(b"Content-Type", b"application/x-www-form-urlencoded");
    }
    tx.process_request_headers();
    tx.process_request_body(body.as_bytes());
    tx.process_response_headers(200, "HTTP/1.1", &[]);
    tx.process_response_body(b"");
    tx.process_logging();
    tx
}

fn fired(tx: &Transaction<'_>) -> Vec<u64> {
    tx.matched_rules().iter().map(|m| m.id).collect()
}

/// A GET fires `want` with the prefilter (`rs`) and without it (`plain`).
fn fires_alike(rs: &Ruleset, plain: &Ruleset, uri: &str, want: &[u64]) {
    assert_eq!(fired(&run(rs, uri, &[], "")), want, "{uri}");
    assert_eq!(
        fired(&run(plain, uri, &[], "")),
        want,
        "{uri} without prefilter"
    );
}

#[test]
fn targets_transformations_and_logging() {
    let rs = ruleset(
        "SecRequestBodyAccess On\n\
         SecRule ARGS \"@rx <script>\" \"id:1,phase:2,t:none,t:urlDecodeUni,t:lowercase,log,msg:'xss in %{MATCHED_VAR_NAME}',logdata:'%{MATCHED_VAR}'\"\n\
         SecRule REQUEST_HEADERS:User-Agent \"@pm nikto sqlmap\" \"id:2,phase:1,log\"\n\
         SecRule &ARGS \"@eq 2\" \"id:3,phase:2,log\"\n\
         SecRule ARGS_NAMES \"@streq q\" \"id:4,phase:2,nolog\"\n\
         SecRule REQUEST_COOKIES:sid \"@rx ^x\" \"id:5,phase:1\"",
    );
    let tx = run(
        &rs,
        "/s?q=%3CScRiPt%3E",
        &[
            ("User-Agent", "Mozilla sqlmap/1.0"),
            ("Cookie", "a=1; sid=xyz"),
        ],
        "p=1",
    );
    assert_eq!(fired(&tx), vec![2, 5, 1, 3], "4 matched but is nolog");
    let m = &tx.matched_rules()[2];
    assert_eq!(
        (m.msg.as_str(), m.logdata.as_str()),
        ("xss in ARGS:q", "<script>")
    );
    assert_eq!(m.matched_vars, vec!["ARGS:q".to_string()]);
    assert!(fired(&run(&rs, "/s?q=ok", &[], "")).is_empty());
}

#[test]
fn chains_setvar_capture_and_anomaly_scoring() {
    let rs = ruleset(
        "SecAction \"id:10,phase:1,pass,nolog,setvar:tx.score=0,setvar:tx.limit=5\"\n\
         SecRule ARGS \"@rx (a+)(b)\" \"id:11,phase:1,pass,capture,chain,log\"\n\
         SecRule TX:1 \"@streq aa\" \"setvar:'tx.score=+%{tx.limit}',setvar:tx.seen=%{TX.2}\"\n\
         SecRule TX:score \"@ge 5\" \"id:12,phase:1,pass,log,msg:'score %{tx.score} seen %{tx.seen}'\"\n\
         SecRule ARGS \"@rx zzz\" \"id:13,phase:1,pass,chain,log\"\n\
         SecRule ARGS \"@rx never\" \"setvar:tx.score=+100\"\n\
         SecRule ARGS \"@rx aab\" \"id:14,phase:1,pass,nolog,setvar:tx.hits=+1\"",
    );
    let tx = run(&rs, "/?x=caab&y=zzz", &[], "");
    assert_eq!(fired(&tx), vec![11, 12], "13's chain did not complete");
    assert_eq!(tx.matched_rules()[1].msg, "score 5 seen b");
    assert_eq!(tx.tx_var("score"), Some(&b"5"[..]));
    // The link's single value (TX:1) matched once: +5, however many arguments matched.
    let tx = run(&rs, "/?x=aab&y=aab", &[], "");
    assert_eq!(tx.tx_var("score"), Some(&b"5"[..]));
    // A rule's setvars run once per matching value.
    assert_eq!(tx.tx_var("hits"), Some(&b"2"[..]));
}

#[test]
fn markers_skips_and_defaults() {
    let rs = ruleset(
        "SecDefaultAction \"phase:1,log,pass,t:lowercase\"\n\
         SecRule REQUEST_URI \"@rx ^/admin\" \"id:20,phase:1,skipAfter:END\"\n\
         SecRule REQUEST_URI \"@rx .\" \"id:21,phase:1\"\n\
         SecMarker END\n\
         SecRule REQUEST_URI \"@rx ^/admin\" \"id:22,phase:1\"\n\
         SecRule REQUEST_URI \"@rx ^/ADMIN\" \"id:23,phase:1,t:none\"",
    );
    assert_eq!(
        fired(&run(&rs, "/ADMIN", &[], "")),
        vec![20, 22, 23],
        "defaults lower-case, t:none clears"
    );
    assert_eq!(fired(&run(&rs, "/other", &[], "")), vec![21]);
}

#[test]
fn exclusions_ctl_and_updates() {
    let rs = ruleset(
        "SecRule REQUEST_URI \"@beginsWith /api\" \"id:30,phase:1,pass,nolog,ctl:ruleRemoveTargetById=31;ARGS:token,ctl:ruleRemoveById=33\"\n\
         SecRule ARGS \"@rx evil\" \"id:31,phase:2,log\"\n\
         SecRule ARGS|!ARGS:/^safe_/ \"@rx evil\" \"id:32,phase:2,log\"\n\
         SecRule ARGS \"@rx evil\" \"id:33,phase:2,log\"\n\
         SecRule ARGS \"@rx evil\" \"id:34,phase:2,log\"\n\
         SecRuleUpdateTargetById 34 \"!ARGS:note\"\n\
         SecRuleRemoveById 35\n\
         SecRule ARGS \"@rx evil\" \"id:35,phase:2,log\"",
    );
    assert_eq!(
        fired(&run(&rs, "/api?token=evil", &[], "")),
        vec![32, 34],
        "token removed from 31; 33 removed"
    );
    assert_eq!(
        fired(&run(&rs, "/api?safe_x=evil", &[], "")),
        vec![31, 34],
        "safe_ arguments excluded from 32"
    );
    assert_eq!(
        fired(&run(&rs, "/web?token=evil", &[], "")),
        vec![31, 32, 33, 34]
    );
    assert_eq!(
        fired(&run(&rs, "/web?note=evil", &[], "")),
        vec![31, 32, 33]
    );
}

#[test]
fn engine_modes_decide_interventions() {
    let rules = "SecRule ARGS \"@rx attack\" \"id:40,phase:2,deny,status:403,log\"\nSecRule ARGS \"@rx .\" \"id:41,phase:2,log\"";
    let on = ruleset(&format!("SecRuleEngine On\n{rules}"));
    let tx = run(&on, "/?a=attack", &[], "");
    assert_eq!(
        tx.intervention().map(|i| (i.status, i.rule_id)),
        Some((403, 40))
    );
    assert_eq!(
        fired(&tx),
        vec![40],
        "evaluation stops at the disruptive action"
    );
    let detect = ruleset(&format!("SecRuleEngine DetectionOnly\n{rules}"));
    let tx = run(&detect, "/?a=attack", &[], "");
    assert_eq!((tx.intervention(), fired(&tx)), (None, vec![40, 41]));
    let off = ruleset(&format!("SecRuleEngine Off\n{rules}"));
    assert!(fired(&run(&off, "/?a=attack", &[], "")).is_empty());
}

#[test]
fn request_variables_follow_modsecurity() {
    let rs = ruleset(
        "SecRequestBodyAccess On\n\
         SecRule REQUEST_FILENAME \"@streq /a b/c.php\" \"id:50,phase:1,log\"\n\
         SecRule REQUEST_BASENAME \"@streq c.php\" \"id:51,phase:1,log\"\n\
         SecRule QUERY_STRING \"@streq x=%41+b\" \"id:52,phase:1,log\"\n\
         SecRule ARGS_GET:x \"@streq A b\" \"id:53,phase:1,log\"\n\
         SecRule REQUEST_URI \"@streq /a b/c.php?x=A+b\" \"id:54,phase:1,log\"\n\
         SecRule REQUEST_LINE \"@streq POST /a%20b/c.php?x=%41+b HTTP/1.1\" \"id:55,phase:1,log\"\n\
         SecRule ARGS_POST:p \"@streq 1\" \"id:56,phase:2,log\"\n\
         SecRule REQUEST_BODY \"@streq p=1&&q\" \"id:57,phase:2,log\"\n\
         SecRule ARGS_NAMES \"@streq q\" \"id:58,phase:2,log\"\n\
         SecRule REMOTE_ADDR \"@ipMatch 10.0.0.0/8\" \"id:59,phase:1,log\"",
    );
    assert_eq!(
        fired(&run(&rs, "/a%20b/c.php?x=%41+b", &[], "p=1&&q")),
        vec![50, 51, 52, 53, 54, 55, 59, 56, 57, 58]
    );
}

#[test]
fn json_and_xml_bodies() {
    let rs = ruleset(
        "SecRequestBodyAccess On\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx json\" \"id:60,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx xml\" \"id:61,phase:1,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
         SecRule ARGS:json.user.name \"@streq bob\" \"id:62,phase:2,log\"\n\
         SecRule XML:/* \"@rx secret\" \"id:63,phase:2,log\"\n\
         SecRule XML://@* \"@streq x\" \"id:64,phase:2,log\"\n\
         SecRule REQBODY_ERROR \"!@eq 0\" \"id:65,phase:2,log,msg:'%{REQBODY_ERROR_MSG}'\"",
    );
    let post = |ct: &str, body: &str| {
        let mut tx = Transaction::new(&rs, info());
        tx.set_request_line(b"POST", b"/", "1.1");
        tx.add_request_header(b"Content-Type", ct.as_bytes());
        tx.process_request_headers();
        tx.process_request_body(body.as_bytes());
        fired(&tx)
    };
    assert_eq!(
        post("application/json", r#"{"user":{"name":"bob"}}"#),
        vec![62]
    );
    assert_eq!(
        post("text/xml", "<a k=\"x\"><b>top secret</b></a>"),
        vec![63, 64]
    );
    assert_eq!(post("application/json", "{broken"), vec![65]);
}

#[test]
fn scalars_always_have_a_value_and_xml_hides_the_raw_body() {
    let rs = ruleset(
        "SecRequestBodyAccess On\n\
         SecRule REQUEST_BASENAME \"!@endsWith .pdf\" \"id:70,phase:1,log\"\n\
         SecRule &QUERY_STRING \"@eq 1\" \"id:71,phase:1,log\"\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx xml\" \"id:72,phase:1,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
         SecRule REQUEST_HEADERS:Content-Type \"@rx json\" \"id:73,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
         SecRule REQUEST_HEADERS:X-Force \"@streq 1\" \"id:74,phase:1,pass,nolog,ctl:forceRequestBodyVariable=On\"\n\
         SecRule REQUEST_BODY \"@rx secret\" \"id:75,phase:2,log\"",
    );
    // `/` has no basename: the empty value does not end with .pdf; no query: one empty value.
    assert_eq!(fired(&run(&rs, "/", &[], "")), vec![70, 71]);
    let post = |ct: &str, force: bool| {
        let mut tx = Transaction::new(&rs, info());
        tx.set_request_line(b"POST", b"/doc.pdf", "1.1");
        tx.add_request_header(b"Content-Type", ct.as_bytes());
        if force {
            tx.add_request_header(b"X-Force", b"1");
        }
        tx.process_request_headers();
        tx.process_request_body(b"<secret a=\"1\">x</secret>");
        fired(&tx).contains(&75)
    };
    assert!(!post("text/xml", false), "XML bodies are not REQUEST_BODY");
    assert!(post("text/xml", true), "unless forced");
    assert!(post("application/json", false), "JSON bodies are");
    assert!(
        post("text/plain", false),
        "and so are bodies no processor takes"
    );
}

#[test]
fn response_bodies_are_inspected_for_listed_types_only() {
    let rs = ruleset(
        "SecResponseBodyAccess On\n\
         SecResponseBodyMimeType text/html application/json\n\
         SecResponseBodyLimit 16\n\
         SecRule RESPONSE_BODY \"@rx leak\" \"id:80,phase:4,log\"\n\
         SecRule RESPONSE_BODY \"@rx tail\" \"id:81,phase:4,log\"\n\
         SecRule RESPONSE_STATUS \"@streq 500\" \"id:82,phase:3,log\"",
    );
    let respond = |ct: Option<&str>, status: u16, body: &str| {
        let mut tx = Transaction::new(&rs, info());
        tx.set_request_line(b"GET", b"/", "1.1");
        tx.process_request_headers();
        tx.process_request_body(b"");
        let headers: Vec<(Vec<u8>, Vec<u8>)> = ct
            .map(|c| (b"Content-Type".to_vec(), c.as_bytes().to_vec()))
            .into_iter()
            .collect();
        tx.process_response_headers(status, "HTTP/1.1", &headers);
        tx.process_response_body(body.as_bytes());
        fired(&tx)
    };
    assert_eq!(
        respond(Some("text/html; charset=utf-8"), 200, "a leak here"),
        vec![80]
    );
    assert_eq!(
        respond(Some("image/png"), 500, "a leak here"),
        vec![82],
        "not a listed type"
    );
    assert_eq!(
        respond(None, 200, "a leak here"),
        Vec::<u64>::new(),
        "no Content-Type"
    );
    assert_eq!(
        respond(Some("Application/JSON"), 200, "0123456789abcdef tail"),
        Vec::<u64>::new(),
        "past the limit"
    );
}

#[test]
fn ctl_target_removal_by_key_regex() {
    let rs = ruleset(
        "SecRule REQUEST_URI \"@beginsWith /api\" \"id:90,phase:1,pass,nolog,ctl:ruleRemoveTargetById=91;ARGS:/^TOK/\"\n\
         SecRule ARGS \"@rx evil\" \"id:91,phase:2,log\"",
    );
    assert!(
        fired(&run(&rs, "/api?token=evil&tokx=evil", &[], "")).is_empty(),
        "key regexes match names case-insensitively"
    );
    assert_eq!(fired(&run(&rs, "/api?other=evil", &[], "")), vec![91]);
    assert_eq!(fired(&run(&rs, "/web?token=evil", &[], "")), vec![91]);
}

/// Monitor mode: the first disruptive action is kept, and every later rule and phase
/// still runs (as with DetectionOnly); without it the transaction stops at the deny.
#[test]
fn monitor_mode_notes_the_block_and_goes_on() {
    let rs = ruleset(
        "SecRuleEngine On\n\
         SecRule ARGS:q \"@contains attack\" \"id:1,phase:1,deny,status:403,log\"\n\
         SecRule ARGS:q \"@contains attack\" \"id:2,phase:2,pass,log\"\n\
         SecRule RESPONSE_STATUS \"@eq 200\" \"id:3,phase:3,pass,log\"\n",
    );
    let ids = |tx: &Transaction<'_>| tx.matched_rules().iter().map(|m| m.id).collect::<Vec<_>>();
    let mut tx = Transaction::new(&rs, info());
    tx.set_monitor(true);
    tx.set_request_line(b"GET", b"/?q=attack", "1.1");
    tx.process_request_headers();
    tx.process_request_body(b"");
    tx.process_response_headers(200, "HTTP/1.1", &[]);
    assert_eq!(ids(&tx), vec![1, 2, 3]);
    assert!(tx.intervention().is_none());
    assert_eq!(
        tx.would_intervene().map(|i| (i.rule_id, i.status)),
        Some((1, 403))
    );

    let tx = run(&rs, "/?q=attack", &[], "");
    assert_eq!(ids(&tx), vec![1], "without monitor mode the deny ends it");
    assert_eq!(tx.intervention().map(|i| i.rule_id), Some(1));
}

/// A rule decided by `TX` values alone is learnt at load and reused — but only while the
/// values are the ones it was learnt with.
#[test]
fn outcomes_learnt_at_load_follow_the_values() {
    let rs = ruleset(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
         SecRule ARGS:level \"@rx ^\\d$\" \"id:2,phase:1,pass,nolog,capture,setvar:tx.level=%{tx.0}\"\n\
         SecRule TX:LEVEL \"@lt 2\" \"id:3,phase:1,pass,nolog,skipAfter:END\"\n\
         SecRule REQUEST_URI \"@contains /\" \"id:4,phase:1,pass,log\"\n\
         SecMarker END\n\
         SecRule MATCHED_VAR \"@streq 1\" \"id:5,phase:1,pass,log\"\n",
    );
    // Rule 3 reads only TX and changes nothing: learnt (level 1: it skips rule 4).
    assert_eq!(rs.learnt_count(), 1);
    // As learnt: rule 4 skipped, MATCHED_VAR replayed from the learnt match.
    assert_eq!(fired(&run(&rs, "/", &[], "")), vec![5]);
    // A request that changes tx.level gets rule 3 evaluated: level 7 does not skip.
    assert_eq!(fired(&run(&rs, "/?level=7", &[], "")), vec![4]);
    // The same without the learnt outcomes.
    let plain = ruleset(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
         SecRule ARGS:level \"@rx ^\\d$\" \"id:2,phase:1,pass,nolog,capture,setvar:tx.level=%{tx.0}\"\n\
         SecRule TX:LEVEL \"@lt 2\" \"id:3,phase:1,pass,nolog,skipAfter:END\"\n\
         SecRule REQUEST_URI \"@contains /\" \"id:4,phase:1,pass,log\"\n\
         SecMarker END\n\
         SecRule MATCHED_VAR \"@streq 1\" \"id:5,phase:1,pass,log\"\n",
    )
    .without_prefilter();
    assert_eq!(plain.learnt_count(), 0);
    assert_eq!(fired(&run(&plain, "/", &[], "")), vec![5]);
    assert_eq!(fired(&run(&plain, "/?level=7", &[], "")), vec![4]);
}

/// A chain's head that reads only `TX` is learnt when it does not match (CRS's optional
/// limits, `&TX:MAX_NUM_ARGS "@eq 1"` with the limit unset): the chain fails without being
/// evaluated while the value is the same. A request that sets the value gets the chain
/// evaluated; a head that matched at load is never learnt.
#[test]
fn chain_heads_reading_only_tx_are_learnt_when_they_do_not_match() {
    let rules = "SecRule ARGS:limit \"@rx ^\\d+$\" \"id:1,phase:1,pass,nolog,capture,setvar:tx.max_args=%{tx.0}\"\n\
                 SecRule &TX:MAX_ARGS \"@eq 1\" \"id:2,phase:2,block,log,msg:'too many',chain\"\n\
                 SecRule &ARGS \"@gt %{tx.max_args}\" \"setvar:tx.score=+5\"\n\
                 SecAction \"id:3,phase:1,pass,nolog,setvar:tx.on=1\"\n\
                 SecRule TX:ON \"@eq 1\" \"id:4,phase:2,pass,log,chain\"\n\
                 SecRule ARGS:x \"@streq y\" \"t:none\"\n";
    let rs = ruleset(rules);
    let index = |id: u64| rs.rules.iter().position(|r| r.id == id).unwrap();
    assert_eq!(rs.memo.outcome(index(2)), Some(false), "head 2 learnt");
    assert_eq!(rs.memo.outcome(index(4)), None, "head 4 matched at load");
    let plain = ruleset(rules).without_prefilter();
    for (uri, want) in [
        ("/?a=1&b=2&c=3", vec![]),
        ("/?limit=2&b=2&c=3", vec![2]),
        ("/?limit=9&b=2&c=3", vec![]),
        ("/?x=y", vec![4]),
        ("/?x=z", vec![]),
    ] {
        fires_alike(&rs, &plain, uri, &want);
    }
}

/// A gated rule lists only the collections its literals were found in; values found
/// elsewhere, and every value of the others, are decided as without the prefilter.
#[test]
fn gated_rules_list_only_collections_their_literals_were_found_in() {
    let rules = "SecRule REQUEST_HEADERS|ARGS_NAMES|ARGS|REQUEST_COOKIES \"@rx evil\\d\" \"id:1,phase:2,pass,log,t:none,t:lowercase\"\n\
                 SecRule ARGS|REQUEST_HEADERS \"@rx ^ok$\" \"id:2,phase:2,pass,log,chain\"\n\
                 SecRule ARGS_NAMES \"@contains bad\" \"t:none\"\n";
    let rs = ruleset(rules);
    let plain = ruleset(rules).without_prefilter();
    /// A query, its headers and the rules that must fire.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u64]);
    let cases: [Case<'_>; 7] = [
        ("/?a=fine", &[("X-A", "EVIL1")], &[1]),
        ("/?a=evil2", &[("X-A", "fine")], &[1]),
        ("/?evil3=1", &[], &[1]),
        ("/?a=evil", &[("Cookie", "c=evil4")], &[1]),
        ("/?a=evil&b=fine", &[("X-A", "evil")], &[]),
        ("/?bad=ok", &[], &[2]),
        ("/?bad=no", &[("X-Ok", "ok")], &[2]),
    ];
    for (uri, headers, want) in cases {
        assert_eq!(
            fired(&run(&rs, uri, headers, "")),
            want,
            "{uri} {headers:?}"
        );
        assert_eq!(fired(&run(&plain, uri, headers, "")), want, "{uri} without");
    }
}

/// `multiMatch`: the operator sees the value and every step's result that changed it; a
/// value no step changes is tested once, as it is.
#[test]
fn multi_match_tests_the_value_and_each_changed_step() {
    let rs = ruleset(
        "SecRule ARGS \"@rx ^a%41$\" \"id:1,phase:2,pass,log,multiMatch,t:urlDecodeUni,t:lowercase\"\n\
         SecRule ARGS \"@rx ^aa$\" \"id:2,phase:2,pass,log,multiMatch,t:urlDecodeUni,t:lowercase\"\n\
         SecRule ARGS \"@rx ^aA$\" \"id:3,phase:2,pass,log,multiMatch,t:urlDecodeUni,t:lowercase\"\n\
         SecRule ARGS \"@rx ^plain$\" \"id:4,phase:2,pass,log,multiMatch,capture,t:urlDecodeUni,setvar:tx.seen=%{tx.0}\"\n\
         SecRule TX:seen \"@streq plain\" \"id:5,phase:2,pass,log\"\n\
         SecRule ARGS \"@rx ^b%41$\" \"id:6,phase:2,pass,log,t:urlDecodeUni,t:lowercase\"\n",
    );
    // ARGS are decoded once: x is "a%41". Tested: the value (1), the decoded "aA" (3)
    // and the lower-cased "aa" (2).
    assert_eq!(fired(&run(&rs, "/?x=a%2541", &[], "")), vec![1, 2, 3]);
    // x is "aA": urlDecodeUni leaves it, lowercase changes it.
    assert_eq!(fired(&run(&rs, "/?x=a%41", &[], "")), vec![2, 3]);
    // A value no step changes: tested once, in place, with its capture and setvar.
    assert_eq!(fired(&run(&rs, "/?x=plain", &[], "")), vec![4, 5]);
    // Without multiMatch only the end of the chain is tested: "ba", not "b%41".
    assert_eq!(fired(&run(&rs, "/?x=b%2541", &[], "")), Vec::<u64>::new());
}

/// The prefilter skips steps that leave a value alone up to case — but not before a step
/// that reads case (`hexEncode` of `A` and of `a` differ): there it judges exactly.
#[test]
fn prefilter_keeps_case_for_case_sensitive_steps() {
    let rules = "SecRule ARGS \"@contains 61\" \"id:1,phase:2,pass,log,t:lowercase,t:hexEncode\"\n\
                 SecRule ARGS \"@contains 41\" \"id:2,phase:2,pass,log,t:lowercase,t:hexEncode\"\n";
    let rs = ruleset(rules);
    assert!(rs.prefilter_stats().0 >= 2, "the rules are gated");
    assert_eq!(fired(&run(&rs, "/?x=A", &[], "")), vec![1]);
    let plain = ruleset(rules).without_prefilter();
    assert_eq!(fired(&run(&plain, "/?x=A", &[], "")), vec![1]);
}

/// `jsDecode` decodes `\u0041` but not `\U0041`: after `lowercase` the prefilter must not
/// scan the value as if `lowercase` had not run.
#[test]
fn prefilter_keeps_case_before_case_sensitive_decoders() {
    let rules = "SecRule ARGS \"@contains abc\" \"id:1,phase:2,pass,log,t:lowercase,t:jsDecode\"\n";
    let rs = ruleset(rules);
    // \U0041bc: lower-cased to \u0041bc, decoded to "Abc".
    assert_eq!(
        fired(&run(&rs, "/?x=%5CU0041bc", &[], "")),
        Vec::<u64>::new()
    );
    let rs = ruleset(
        "SecRule ARGS \"@contains Abc\" \"id:1,phase:2,pass,log,t:lowercase,t:jsDecode\"\n",
    );
    assert_eq!(fired(&run(&rs, "/?x=%5CU0041bc", &[], "")), vec![1]);
}

/// `TX` members are numbered at load; members named at run time (macros in the name)
/// live beside them. Both must behave as one collection: the same values, listing in
/// name order, deletion, and a rule whose own `setvar` changes a member it has yet to
/// test still tests the value collected before the match.
#[test]
fn tx_members_numbered_or_named_at_run_time_are_one_collection() {
    let rs = ruleset(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.b=1,setvar:tx.a=1,setvar:tx.gone=x,setvar:tx.big=9223372036854775807,setvar:tx.made_static=1\"\n\
         SecRule ARGS:n \"@rx ^(\\w+)$\" \"id:2,phase:1,pass,nolog,capture,setvar:'tx.made_%{tx.1}=%{tx.a}',setvar:tx.big=+5\"\n\
         SecRule TX:A|TX:B \"@streq 1\" \"id:3,phase:1,pass,log,setvar:tx.b=2,setvar:tx.hits=+1\"\n\
         SecRule TX:/^made_/ \"@streq 1\" \"id:4,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}'\"\n\
         SecRule TX \"@rx .\" \"id:5,phase:1,pass,nolog,setvar:tx.list=%{tx.list}%{MATCHED_VAR_NAME};\"\n\
         SecAction \"id:6,phase:1,pass,nolog,setvar:!tx.gone,setvar:'!tx.made_%{tx.1}'\"\n\
         SecRule &TX:gone \"@eq 0\" \"id:7,phase:1,pass,log\"\n\
         SecRule TX:/^made_/ \"@rx .\" \"id:8,phase:1,pass,log,msg:'%{MATCHED_VAR_NAME}'\"",
    );
    let tx = run(&rs, "/?n=zed", &[], "");
    // Rule 3 tested TX:B as collected (1), though its own setvar made it 2 after TX:A.
    assert_eq!(tx.tx_var("hits"), Some(&b"2"[..]));
    assert_eq!(tx.tx_var("b"), Some(&b"2"[..]));
    // The run-time name is found by a key regex and named in MATCHED_VAR_NAME.
    assert_eq!(fired(&tx), vec![3, 4, 7, 8]);
    // Rule 4 matched both `made_` names, in name order: the last is the run-time one.
    assert_eq!(tx.matched_rules()[1].msg, "TX:made_zed");
    // After the run-time name is deleted, the numbered one is left.
    assert_eq!(tx.matched_rules()[3].msg, "TX:made_static");
    assert_eq!(tx.tx_var("made_zed"), None, "deleted by rule 6");
    // Numeric overflow saturates instead of wrapping (or panicking).
    assert_eq!(tx.tx_var("big"), Some(&b"9223372036854775807"[..]));
    // The collection listed in name order, numbered and run-time names interleaved
    // (each match appends the name; `list` itself appears once it exists).
    assert_eq!(
        String::from_utf8_lossy(tx.tx_var("list").unwrap_or_default()),
        "TX:0;TX:1;TX:a;TX:b;TX:big;TX:gone;TX:hits;TX:made_static;TX:made_zed;"
    );
}

/// A learnt rule with `setvar`s (CRS's defaults: `&TX:x "@eq 0"` → `setvar:tx.x=…`) or a
/// parameter read from `TX` still runs its `setvar`s when its learnt match is reused,
/// and is evaluated when a request changes what it reads.
#[test]
fn learnt_outcomes_run_their_setvars_and_read_tx_parameters() {
    let rules = "SecRule ARGS:limit \"@rx ^(\\d+)$\" \"id:1,phase:1,pass,nolog,capture,setvar:tx.limit=%{tx.1}\"\n\
         SecRule &TX:limit \"@eq 0\" \"id:2,phase:1,pass,nolog,setvar:tx.limit=5,setvar:tx.defaulted=+1,setvar:'tx.from=%{MATCHED_VAR_NAME}'\"\n\
         SecAction \"id:3,phase:1,pass,nolog,setvar:tx.score=7\"\n\
         SecRule TX:SCORE \"@ge %{tx.limit}\" \"id:4,phase:1,pass,nolog,setvar:tx.over=1\"\n\
         SecRule TX:OVER \"@eq 1\" \"id:5,phase:1,pass,log\"\n";
    let rs = ruleset(rules);
    let plain = ruleset(rules).without_prefilter();
    // Rules 2 and 4 read only TX; rule 5 logs.
    assert_eq!(rs.learnt_count(), 2);
    for (uri, fires, defaulted, from) in [
        ("/", vec![5], Some(&b"1"[..]), Some(&b"&TX"[..])),
        ("/?limit=9", vec![], None, None),
        ("/?limit=3", vec![5], None, None),
    ] {
        for r in [&rs, &plain] {
            let tx = run(r, uri, &[], "");
            assert_eq!(fired(&tx), fires, "{uri}");
            assert_eq!(tx.tx_var("defaulted"), defaulted, "{uri}");
            assert_eq!(tx.tx_var("from"), from, "{uri}");
        }
    }
}

/// With `multiMatch`, the prefilter skips the leading steps that leave a value alone and
/// scans what each later step makes: a literal that appears only after the second or
/// third step still lets the rule run, with and without the prefilter alike.
#[test]
fn prefilter_scans_each_changed_step_of_multi_match_chains() {
    let rules = "SecRule ARGS \"@rx admin\" \"id:1,phase:2,pass,log,multiMatch,t:lowercase,t:urlDecodeUni,t:removeWhitespace\"\n\
                 SecRule ARGS \"@rx ^a dmin$\" \"id:2,phase:2,pass,log,multiMatch,t:lowercase,t:urlDecodeUni,t:removeWhitespace\"\n\
                 SecRule ARGS \"@rx select\" \"id:3,phase:2,pass,log,multiMatch,t:lowercase,t:urlDecodeUni,t:removeWhitespace\"\n";
    let rs = ruleset(rules);
    assert!(rs.prefilter_stats().0 >= 3, "the rules are gated");
    let plain = ruleset(rules).without_prefilter();
    // "a d%6din": lowercase leaves it; urlDecodeUni makes "a dmin" (2); removeWhitespace
    // makes "admin" (1).
    for (uri, want) in [
        ("/?x=a+d%256din", vec![1, 2]),
        ("/?x=SEL+ECT", vec![3]),
        // No space before decoding: removeWhitespace must still run after urlDecodeUni.
        ("/?x=ad%2520min", vec![1]),
        ("/?x=A+DMIN", vec![1, 2]),
        ("/?x=plain", vec![]),
    ] {
        fires_alike(&rs, &plain, uri, &want);
    }
}

/// Checks that fail only on certain bytes are gated by those bytes, and a chain's later
/// link is gated by its literals: the same decisions as without the prefilter.
#[test]
fn byte_checks_and_chain_links_are_gated_soundly() {
    let rules = "SecRule ARGS \"@validateByteRange 32-126\" \"id:1,phase:2,pass,log,t:urlDecodeUni\"\n\
                 SecRule ARGS \"@validateUtf8Encoding\" \"id:2,phase:2,pass,log,t:none\"\n\
                 SecRule ARGS \"@validateUrlEncoding\" \"id:3,phase:2,pass,log,t:none\"\n\
                 SecRule ARGS \"@detectXSS\" \"id:4,phase:2,pass,log,t:none\"\n\
                 SecRule REQUEST_METHOD \"@streq GET\" \"id:5,phase:2,pass,log,chain\"\n\
                 SecRule ARGS \"@rx att?ack\" \"t:none,t:lowercase\"\n";
    let rs = ruleset(rules);
    assert_eq!(
        rs.prefilter_stats().0,
        6,
        "four checks, a head and its link"
    );
    let plain = ruleset(rules).without_prefilter();
    for (uri, want) in [
        ("/?x=plain+text", vec![]),
        ("/?x=a%01b", vec![1]),
        ("/?x=%C3%28", vec![1, 2]),
        ("/?x=%C3%A9", vec![1]),
        ("/?x=100%25zz", vec![3]),
        ("/?x=%3Cscript%3Ealert(1)%3C/script%3E", vec![4]),
        ("/?x=ok&y=ATTACK", vec![5]),
    ] {
        fires_alike(&rs, &plain, uri, &want);
    }
}

/// Bytes every match needs (`=` in `on[a-z]+\s*=`) keep a value that holds the rule's
/// literal (`on`) but not the byte from marking the rule; decisions stay the same.
#[test]
fn required_bytes_narrow_what_marks_a_rule() {
    let rules = "SecRule ARGS_NAMES|ARGS \"@rx (?i)on[a-z]+\\s*=\" \"id:1,phase:2,pass,log,t:none,t:urlDecodeUni\"\n";
    let rs = ruleset(rules);
    assert_eq!(rs.prefilter_stats().0, 1);
    let plain = ruleset(rules).without_prefilter();
    for (uri, want) in [
        ("/?json.online=1", vec![]),
        ("/?x=onload%3Dalert(1)", vec![1]),
        ("/?x=onload%253Dalert(1)", vec![1]),
        ("/?x=ONCLICK+=1", vec![1]),
    ] {
        fires_alike(&rs, &plain, uri, &want);
    }
}

/// A transaction's buffers go to the next one on the thread: nothing it set may show
/// through — `TX` values, the prefilter's marks — whether the next one runs the same
/// ruleset or one with other rules (and another number of gated rules).
#[test]
fn reused_buffers_carry_nothing_over() {
    let rs = ruleset(
        r#"SecRuleEngine On
SecRule ARGS:a "@rx ^set$" "id:1,phase:1,pass,setvar:tx.flag=1,setvar:tx.score=+5"
SecRule TX:FLAG "@eq 1" "id:2,phase:1,pass"
SecRule TX:SCORE "@ge 5" "id:3,phase:1,pass"
SecRule ARGS "@rx union\s+select" "id:4,phase:1,pass"
"#,
    );
    let other = ruleset(
        r#"SecRuleEngine On
SecRule ARGS "@rx alpha" "id:10,phase:1,pass"
SecRule ARGS "@rx bravo" "id:11,phase:1,pass"
SecRule ARGS "@rx charlie" "id:12,phase:1,pass"
SecRule ARGS "@rx delta" "id:13,phase:1,pass"
"#,
    );
    // Several rounds: every transaction after the first takes the previous one's
    // buffers (they are dropped at the end of each statement).
    for _ in 0..3 {
        assert_eq!(fired(&run(&rs, "/?a=set", &[], "")), [1, 2, 3]);
        assert_eq!(fired(&run(&rs, "/?a=x", &[], "")), Vec::<u64>::new());
        assert_eq!(fired(&run(&rs, "/?q=1+union+select+2", &[], "")), [4]);
        assert_eq!(fired(&run(&other, "/?q=charlie", &[], "")), [12]);
        assert_eq!(fired(&run(&rs, "/?q=nothing", &[], "")), Vec::<u64>::new());
        assert_eq!(fired(&run(&other, "/?q=alpha+delta", &[], "")), [10, 13]);
    }
    // Two alive at once on one thread (as on an edge worker): each has its own.
    let a = run(&rs, "/?a=set", &[], "");
    let b = run(&rs, "/?a=x", &[], "");
    assert_eq!(fired(&a), [1, 2, 3]);
    assert_eq!(fired(&b), Vec::<u64>::new());
}

/// Rules the configuration skips (as CRS skips the rules above its paranoia level) are
/// left out of the prefilter; a request that changes the configuration's value reaches
/// them, and they run ungated and decide as before.
#[test]
fn rules_the_configuration_skips_are_not_gated_and_still_run_when_reached() {
    let rules = "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.level=1\"\n\
                 SecRule ARGS:raise \"@streq 1\" \"id:2,phase:1,pass,nolog,setvar:tx.level=2\"\n\
                 SecRule TX:LEVEL \"@lt 2\" \"id:3,phase:1,pass,nolog,skipAfter:END-LEVEL-2\"\n\
                 SecRule ARGS \"@contains evil\" \"id:4,phase:1,pass,log,t:none\"\n\
                 SecMarker END-LEVEL-2\n\
                 SecRule ARGS \"@contains worse\" \"id:5,phase:1,pass,log,t:none\"\n";
    let rs = ruleset(rules);
    let index = |id: u64| rs.rules.iter().position(|r| r.id == id).unwrap();
    assert!(rs.prefilter.gate(index(5)).is_some(), "reachable: gated");
    assert!(
        rs.prefilter.gate(index(4)).is_none(),
        "skipped by the configuration: not gated"
    );
    let plain = ruleset(rules).without_prefilter();
    for (uri, want) in [
        ("/?x=evil", vec![]),
        ("/?x=worse", vec![5]),
        ("/?raise=1&x=evil", vec![4]),
        ("/?raise=1&x=evil+worse", vec![4, 5]),
        ("/?raise=1&x=fine", vec![]),
    ] {
        fires_alike(&rs, &plain, uri, &want);
    }
}
