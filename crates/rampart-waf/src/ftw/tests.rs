use super::*;

fn yaml(text: &str) -> Yaml {
    YamlLoader::load_from_str(text)
        .map(|mut d| d.remove(0))
        .unwrap_or(Yaml::BadValue)
}

fn request(input: &str) -> String {
    String::from_utf8_lossy(&build_request(&yaml(input)).unwrap_or_default()).into_owned()
}

#[test]
fn requests_are_built_as_go_ftw_builds_them() {
    assert_eq!(
        request("method: GET\nuri: /a?b=c\nheaders:\n  Host: localhost\n  User-Agent: x"),
        "GET /a?b=c HTTP/1.1\r\nHost: localhost\r\nUser-Agent: x\r\nConnection: close\r\n\r\n"
    );
    // Form data: content type added, key and value escaped, length counted.
    assert_eq!(
        request("method: POST\nheaders:\n  Host: h\ndata: \"a b=c/d&e\""),
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\nContent-Length: 11\r\n\r\na+b=c%2Fd&e"
    );
    // Already encoded data is sent as it is; PUT gets a length even without data.
    assert!(request("method: POST\ndata: \"a=%41\"").ends_with("\r\n\r\na=%41"));
    assert!(request("method: PUT").contains("Content-Length: 0\r\n"));
    // Without autocompletion nothing is added.
    assert_eq!(
        request("method: POST\nautocomplete_headers: false\nversion: HTTP/1.0\ndata: x"),
        "POST / HTTP/1.0\r\n\r\nx"
    );
    // The repeat template and multipart line ends.
    assert!(
        request("data: '{{ \"ab\" | repeat 3 }}'\nheaders:\n  Content-Type: text/plain")
            .ends_with("ababab")
    );
    assert!(
        request("data: \"--b\\nx\\n\"\nheaders:\n  Content-Type: multipart/form-data; boundary=b")
            .ends_with("--b\r\nx\r\n")
    );
    // encoded_request is decoded and sent verbatim.
    assert_eq!(
        request("encoded_request: R0VUIC8gSFRUUC8xLjENCg0K"),
        "GET / HTTP/1.1\r\n\r\n"
    );
    assert!(build_request(&yaml("save_cookie: true")).is_err());
    assert!(build_request(&yaml("data: '{{ .Unknown }}'")).is_err());
}

#[test]
fn stages_read_every_expectation_form() {
    let s = stage(&yaml(
        "input: {uri: /}\noutput:\n  status: [200, 403]\n  log:\n    expect_ids: [1, 2]\n    no_expect_ids: 3\n    match_regex: 'id \"1\"'\n  isolated: true",
    ));
    assert_eq!(
        (s.expect_ids, s.no_expect_ids, s.status),
        (vec![1, 2], vec![3], vec![200, 403])
    );
    assert_eq!(s.match_regex.as_deref(), Some("id \"1\""));
    assert!(s.isolated && !s.expect_error);
}

#[test]
fn checks_compare_ids_status_and_log() {
    let s = stage(&yaml(
        "output:\n  status: 200\n  log:\n    expect_ids: [10]\n    no_expect_ids: [11]\n    match_regex: 'msg \"hit\"'",
    ));
    let ok = StageResult {
        status: Some(200),
        fired: vec![10],
        log: vec!["[id \"10\"] [msg \"hit\"]".into()],
    };
    assert!(check(&s, &ok).is_empty());
    let bad = StageResult {
        status: Some(400),
        fired: vec![11],
        log: vec![],
    };
    let reasons = check(&s, &bad);
    assert_eq!(reasons.len(), 4, "{reasons:?}");
}

#[test]
fn the_backend_reflects_what_it_is_asked() {
    let (status, headers, body) = backend(
        "POST",
        "/reflect?x=1",
        br#"{"status": 404, "headers": {"X-A": "b", "Content-Length": "999"}, "body": "<h1>oops</h1>"}"#,
    );
    assert_eq!(status, 404);
    assert_eq!(body, b"<h1>oops</h1>");
    assert!(headers.contains(&(b"X-A".to_vec(), b"b".to_vec())));
    assert!(
        headers.contains(&(b"Content-Length".to_vec(), b"13".to_vec())),
        "{headers:?}"
    );
    assert!(headers.contains(&(b"Content-Type".to_vec(), b"text/plain".to_vec())));
    let (s, _, b) = backend("GET", "/anything", b"");
    assert_eq!((s, b.len()), (200, 0));
    let (_, _, b) = backend("POST", "/reflect", br#"{"encodedBody": "aGk="}"#);
    assert_eq!(b, b"hi");
}

#[test]
fn requests_the_edge_refuses_never_reach_the_rules() {
    let rs = Ruleset::compile(
        &seclang::parse_str(
            "t.conf",
            "SecRule REQUEST_METHOD \"@rx .\" \"id:1,phase:1,pass,log\"",
        ),
        &MemFs::new(),
    );
    let r = evaluate(&rs, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.fired), (Some(200), vec![1]));
    let r = evaluate(
        &rs,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!((r.status, r.fired.len()), (Some(400), 0));
    let r = evaluate(&rs, b"GET /\x01 HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, Some(400));
}

#[test]
fn exclusions_need_a_test_name_and_a_reason() {
    let ok = parse_exclusions("# comment\n\"920100-4\" = \"the edge answers 400 first\"\n")
        .unwrap_or_default();
    assert_eq!(
        ok.get("920100-4").map(String::as_str),
        Some("the edge answers 400 first")
    );
    assert!(parse_exclusions("\"920100-4\" = \"\"").is_err());
    assert!(parse_exclusions("\"920100\" = \"x\"").is_err());
    assert!(
        parse_exclusions("\"1-2\" = \"x\"\n\"1-2\" = \"y\"").is_err_and(|e| e.contains("twice"))
    );
}

#[test]
fn log_fields_are_escaped_onto_one_line() {
    assert_eq!(
        log_escape("a\r\nb \"q\" \\ é"),
        "a\\x0d\\x0ab \\\"q\\\" \\\\ \\xc3\\xa9"
    );
}
