use super::*;

const GOOD: &str = r#"
version = 1

[edge]
admin = "127.0.0.1:9901"
trusted_proxies = ["10.0.0.0/8", "::1"]
drain_timeout = "5s"
access_log = "off"

[limits]
max_headers = 50
header_timeout = "3s"

[[tenant]]
id = "acme"

[[tenant]]
id = "globex"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"

[[listener]]
name = "websecure"
bind = "127.0.0.1:8443"
tls = true
limits = { max_connections_per_ip = 10 }

[[listener]]
name = "db"
bind = "127.0.0.1:15432"
mode = "tcp"
tenant = "acme"
pool = "pg"
max_connection_rate_per_ip = 2.5

[[certificate]]
name = "main"
cert = "a.pem"
key = "a.key"
hosts = ["shop.example.com", "*.Example.com"]
default = true

[[pool]]
id = "web"
tenant = "acme"
servers = ["127.0.0.1:9000", { addr = "localhost:9001", weight = 3 }]
balance = "least_conn"
health_check = { path = "/healthz", interval = "1s", expect_status = "200-204" }
passive = { consecutive_5xx = 5, ejection_time = "3s" }

[[pool]]
id = "api"
tenant = "acme"
servers = ["[::1]:9002"]
protocol = "http2"
tls = { sni = "api.internal", verify = false }

[[pool]]
id = "pg"
tenant = "acme"
servers = ["127.0.0.1:5432"]

[[pool]]
id = "g"
tenant = "globex"
servers = ["127.0.0.1:9100"]

[[site]]
id = "shop"
tenant = "acme"
hosts = ["shop.example.com", "*.shop.example.com"]
[[site.route]]
path = "/"
pool = "web"
[[site.route]]
path = "/api"
pool = "api"

[[site]]
id = "globex"
tenant = "globex"
hosts = ["*"]
listeners = ["web"]
[[site.route]]
path = "/"
pool = "g"
"#;

fn load(text: &str) -> Result<Config, Diagnostics> {
    load_str(&SourceFile::new("test.toml", text))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(_) => unreachable!("config unexpectedly valid"),
        Err(d) => d.0,
    }
}

#[test]
fn good_config_compiles() {
    let cfg = load(GOOD).unwrap_or_else(|d| unreachable!("{d}"));
    assert_eq!(cfg.listeners.len(), 3);
    assert!(cfg.listeners[1].is_tls());
    assert_eq!(cfg.listeners[1].limits.max_connections_per_ip, 10);
    assert_eq!(
        cfg.listeners[1].limits.max_headers, 50,
        "listener limits inherit [limits]"
    );
    assert_eq!(
        cfg.listeners[0].limits.header_timeout,
        std::time::Duration::from_secs(3)
    );
    assert!(
        matches!(cfg.listeners[2].kind, ListenerKind::Tcp { pool: 2, max_connection_rate_per_ip: Some(r), .. } if r == 2.5)
    );
    assert_eq!(cfg.pools[0].servers[1].weight, 3);
    assert_eq!(cfg.pools[0].balance, Balance::LeastConn);
    assert_eq!(cfg.pools[1].servers[0].authority(), "[::1]:9002");
    assert_eq!(
        cfg.pools[0].health_check.as_ref().map(|h| h.expect_status),
        Some((200, 204))
    );
    assert_eq!(cfg.certificates[0].hosts[1], "*.example.com");
    assert_eq!(cfg.edge.access_log, AccessLogTarget::Off);

    // routing: exact, wildcard, any; listener-specific
    let web = &cfg.routing[0];
    assert_eq!(web.lookup("shop.example.com"), Some(0));
    assert_eq!(web.lookup("SHOP.example.com.:8080"), Some(0));
    assert_eq!(web.lookup("a.shop.example.com"), Some(0));
    assert_eq!(web.lookup("other.example"), Some(1));
    let secure = &cfg.routing[1];
    assert_eq!(
        secure.lookup("other.example"),
        None,
        "site globex is only on `web`"
    );
    assert_eq!(secure.lookup("shop.example.com"), Some(0));
    // routes: longest prefix first, segment-aware
    let shop = &cfg.sites[0];
    assert_eq!(shop.routes[0].prefix, "/api");
    assert_eq!(
        shop.route_for("/api/v1").map(|r| shop.routes[r].pool),
        Some(1)
    );
    assert_eq!(shop.route_for("/api").map(|r| shop.routes[r].pool), Some(1));
    assert_eq!(
        shop.route_for("/apix").map(|r| shop.routes[r].pool),
        Some(0)
    );
}

#[test]
fn syntax_error_has_position() {
    let e = errors("[edge]\nadmin = \"127.0.0.1:1\"\nworkers = \n");
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].file.as_str()), (3, "test.toml"));
}

#[test]
fn unknown_key_names_the_expected_ones() {
    let e = errors("[edge]\nadmn = \"x\"\n");
    assert_eq!((e[0].line, e[0].col), (2, 1));
    assert!(e[0].message.contains("admn"), "{}", e[0].message);
    assert!(
        e[0].expected
            .as_deref()
            .is_some_and(|x| x.contains("admin")),
        "{:?}",
        e[0].expected
    );
}

#[test]
fn wrong_type_is_located() {
    let e = errors("[[tenant]]\nid = 5\n");
    assert_eq!(e[0].line, 2);
}

#[test]
fn every_semantic_error_is_reported_with_position() {
    let text = r#"
[edge]
admin = "localhost:9901"
drain_timeout = "5 parsecs"
trusted_proxies = ["10.1.2.3/8"]

[[tenant]]
id = "acme"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
limits = { max_headers = 0, max_uri_bytes = "8kb" }

[[listener]]
name = "web2"
bind = "127.0.0.1:8080"
mode = "udp"

[[pool]]
id = "p"
tenant = "nobody"
servers = ["no-port", "127.0.0.1:0"]
balance = "random"

[[site]]
id = "s"
tenant = "acme"
hosts = ["bad host"]
[[site.route]]
path = "api"
pool = "missing"
"#;
    let e = errors(text);
    let at = |line: usize| e.iter().filter(|d| d.line == line).count();
    // admin (3), drain (4), cidr (5), max_headers & max_uri (13), duplicate bind (17), mode (18),
    // tenant (22), two servers (23), balance (24), host (29), path (31), pool (32)
    for line in [3, 4, 5, 17, 18, 22, 24, 29, 31, 32] {
        assert_eq!(at(line), 1, "line {line}: {e:#?}");
    }
    assert_eq!(at(13), 2, "{e:#?}");
    assert_eq!(at(23), 2, "{e:#?}");
    assert!(
        e.windows(2)
            .all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col)),
        "sorted"
    );
    let cidr = e
        .iter()
        .find(|d| d.line == 5)
        .map(|d| d.message.clone())
        .unwrap_or_default();
    assert!(cidr.contains("10.0.0.0/8"), "suggests the network: {cidr}");
    let pool = e.iter().find(|d| d.line == 32).cloned();
    assert!(pool.is_some_and(
        |d| d.message.contains("missing") && d.expected.is_some_and(|x| x.contains('p'))
    ));
}

#[test]
fn cross_tenant_pool_is_refused() {
    let text = r#"
[[tenant]]
id = "a"
[[tenant]]
id = "b"
[[listener]]
name = "l"
bind = "127.0.0.1:1"
[[pool]]
id = "pb"
tenant = "b"
servers = ["127.0.0.1:2"]
[[site]]
id = "s"
tenant = "a"
hosts = ["x.test"]
[[site.route]]
path = "/"
pool = "pb"
"#;
    let e = errors(text);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message.contains("belongs to tenant `b`"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].line, 19);
}

#[test]
fn duplicate_host_on_listener_and_tls_without_cert() {
    let text = r#"
[[tenant]]
id = "a"
[[listener]]
name = "l"
bind = "127.0.0.1:1"
tls = true
[[pool]]
id = "p"
tenant = "a"
servers = ["127.0.0.1:2"]
[[site]]
id = "s1"
tenant = "a"
hosts = ["x.test"]
route = [{ path = "/", pool = "p" }]
[[site]]
id = "s2"
tenant = "a"
hosts = ["X.test"]
route = [{ path = "/", pool = "p" }]
"#;
    let e = errors(text);
    assert!(
        e.iter()
            .any(|d| d.line == 5 && d.message.contains("no [[certificate]]")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|d| d.line == 20 && d.message.contains("already served by site `s1`")),
        "{e:#?}"
    );
}

#[test]
fn rendering_shows_line_and_caret() {
    let e = errors("[edge]\nadmin = \"nope\"\n");
    let text = e[0].to_string();
    assert!(
        text.starts_with("test.toml:2:9: error: invalid admin address `nope`"),
        "{text}"
    );
    assert!(text.contains("2 | admin = \"nope\""), "{text}");
    assert!(text.contains("expected: an IP address and port"), "{text}");
    assert!(text.contains("hint:"), "{text}");
}

#[test]
fn empty_config_is_valid() {
    let cfg = load("").unwrap_or_else(|d| unreachable!("{d}"));
    assert!(cfg.listeners.is_empty());
    assert_eq!(cfg.edge.access_log, AccessLogTarget::Stdout);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "\u{0}",
        "[[",
        "x = [1, \"a\"]",
        "[site]\nid=1",
        "[[site]]\nhosts=[]\n",
        "[[pool]]\nservers = 5",
        "[limits]\nmax_uri_bytes = -1",
        "\u{feff}[edge]",
        "[[listener]]\nname=\"é\"\nbind=\"1.2.3.4:5\"",
    ] {
        let _ = load(text);
    }
}

/// A site whose WAF settings are `site_waf` (and, for its `/api` route, `route_waf`).
fn waf_site(site_waf: &str, route_waf: &str) -> String {
    format!(
        "[[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\
         [[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"127.0.0.1:9000\"]\n\
         [[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"*\"]\n\
         [[site.route]]\npath = \"/\"\npool = \"p\"\n\
         [[site.route]]\npath = \"/api\"\npool = \"p\"\n{route_waf}\n{site_waf}\n"
    )
}

#[test]
fn waf_settings_merge_from_site_to_route() {
    let cfg = load(&waf_site(
        "[site.waf]\nrules = \"crs\"\nparanoia_level = 2\n[[site.waf.exclude]]\nrule = 942100\n",
        "waf = { mode = \"monitor\", inbound_threshold = 10, exclude = [{ tag = \"attack-xss\", target = \"ARGS:q\", path = \"/api/search\" }] }",
    ))
    .unwrap_or_else(|d| panic!("{d}"));
    let routes = &cfg.sites[0].routes;
    let api = routes.iter().find(|r| r.prefix == "/api").unwrap();
    let root = routes.iter().find(|r| r.prefix == "/").unwrap();
    let (a, r) = (api.waf.as_ref().unwrap(), root.waf.as_ref().unwrap());
    assert_eq!(r.rules.0, "crs");
    assert_eq!(
        (r.paranoia_level, r.inbound_threshold, r.mode),
        (2, 5, WafMode::Enforce)
    );
    assert_eq!(
        (a.paranoia_level, a.inbound_threshold, a.mode),
        (2, 10, WafMode::Monitor)
    );
    assert_eq!(r.body_limit, 128 * 1024);
    assert_eq!(r.exclude.len(), 1);
    assert_eq!(
        a.exclude.len(),
        2,
        "a route adds its exclusions to the site's"
    );
    assert_eq!(a.exclude[1].rules, WafRuleSel::Tag("attack-xss".into()));
    assert_eq!(a.exclude[1].path.as_deref(), Some("/api/search"));

    // A route can turn it off; a site without one has none.
    let cfg = load(&waf_site(
        "[site.waf]\nrules = \"crs\"\n",
        "waf = { enabled = false }",
    ))
    .unwrap();
    let api = cfg.sites[0]
        .routes
        .iter()
        .find(|r| r.prefix == "/api")
        .unwrap();
    assert!(api.waf.is_none());
    let cfg = load(&waf_site("", "")).unwrap();
    assert!(cfg.sites[0].routes.iter().all(|r| r.waf.is_none()));
}

#[test]
fn bad_waf_settings_are_located_with_what_was_expected() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[site.waf]\nmode = \"enforce\"\n",
            "a WAF without rules",
            "rules = ",
        ),
        (
            "[site.waf]\nrules = \"crs\"\nparanoia_level = 5\n",
            "paranoia_level 5 is out of range",
            "1–4",
        ),
        (
            "[site.waf]\nrules = \"crs\"\nmode = \"block\"\n",
            "unknown WAF mode `block`",
            "\"enforce\" or \"monitor\"",
        ),
        (
            "[site.waf]\nrules = \"crs\"\nbody_limit = \"64MiB\"\n",
            "body_limit 67108864 is too large",
            "at most 16 MiB",
        ),
        (
            "[site.waf]\nrules = \"crs\"\ninbound_threshold = 0\n",
            "inbound_threshold 0 is out of range",
            "1–10000",
        ),
        (
            "[site.waf]\nrules = \"crs\"\n[[site.waf.exclude]]\nrule = 1\ntag = \"x\"\n",
            "either `rule` or `tag`",
            "rule = 942100",
        ),
        (
            "[site.waf]\nrules = \"crs\"\n[[site.waf.exclude]]\nrule = 942100\npath = \"search\"\n",
            "invalid path `search`",
            "starting with '/'",
        ),
        (
            "[site.waf]\nrules = \"crs\"\n[[site.waf.exclude]]\nrule = 942100\ntarget = \"ARGS|ARGS_NAMES\"\n",
            "invalid target",
            "one SecLang target",
        ),
        (
            "[site.waf]\nrules = \"crs\"\nparanoia = 2\n",
            "unknown key `paranoia`",
            "paranoia_level",
        ),
    ];
    for (waf, message, expected) in cases {
        let text = waf_site(waf, "");
        let errs = errors(&text);
        let e = errs
            .iter()
            .find(|e| e.message.contains(message))
            .unwrap_or_else(|| panic!("{waf}: no error `{message}` in {errs:?}"));
        let shown = e.to_string();
        assert!(shown.contains(expected), "{waf}: {shown}");
        assert!(e.line > 15, "{waf}: located in the waf table: {shown}");
    }
}

#[test]
fn ports_are_stripped_from_hosts_like_before() {
    // The definition this function replaced, as the oracle.
    fn reference(host: &str) -> &str {
        if host.starts_with('[') {
            return host.find(']').map_or(host, |i| &host[..=i]);
        }
        match host.rfind(':') {
            Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    }
    for h in [
        "",
        "a",
        "80",
        ":",
        ":80",
        "a:",
        "a:80",
        "a:b:80",
        "a:8b0",
        "a:b",
        "shop.test:8443",
        "[::1]",
        "[::1]:8443",
        "[::1",
        "1.2.3.4:0",
        "x:y:",
        "::",
        "a::80",
    ] {
        assert_eq!(strip_port(h), reference(h), "{h:?}");
    }
    // and every short string over a small alphabet
    let alphabet = ['a', '1', ':', '[', ']', '.'];
    let mut stack = vec![String::new()];
    while let Some(s) = stack.pop() {
        assert_eq!(strip_port(&s), reference(&s), "{s:?}");
        if s.len() < 5 {
            for c in alphabet {
                stack.push(format!("{s}{c}"));
            }
        }
    }
}

/// A site with lists, and policy sections `site_policy` (and, after its `/api` route,
/// `route_policy`).
fn policy_site(site_policy: &str, route_policy: &str) -> String {
    format!(
        "[[list]]\nname = \"office\"\nkind = \"ip\"\nentries = [\"198.51.100.0/24\"]\n\
         [[list]]\nname = \"eu\"\nkind = \"country\"\nfile = \"lists/eu.txt\"\n\
         [[list]]\nname = \"agents\"\nkind = \"string\"\nentries = [\"curl\"]\n\
         [[tenant]]\nid = \"t\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\
         [[pool]]\nid = \"p\"\ntenant = \"t\"\nservers = [\"127.0.0.1:9000\"]\n\
         [[site]]\nid = \"s\"\ntenant = \"t\"\nhosts = [\"*\"]\n\
         [[site.route]]\npath = \"/\"\npool = \"p\"\n\
         [[site.route]]\npath = \"/api\"\npool = \"p\"\n{route_policy}\n{site_policy}\n"
    )
}

const SITE_POLICY: &str = r#"
[site.policy]
monitor = true
[[site.policy.list]]
list = "office"
use = "allow"
[[site.policy.limit]]
name = "login"
filter = 'http.request.method == "POST" and http.request.uri.path == "/login"'
key = ["cidr(ip.src, 24, 64)"]
window = "10s"
[[site.policy.limit.threshold]]
above = 10
action = "log"
[[site.policy.limit.threshold]]
above = 50
action = "block"
status = 429
hold = "10m"
[[site.policy.limit]]
name = "per-key"
key = ['http.request.headers["x-api-key"]']
window = "1m"
algorithm = "gcra"
backend = "redis"
on_failure = "closed"
threshold = [{ above = 100, action = "block" }]
[[site.policy.rule]]
id = "no-admin"
priority = 10
expression = 'http.request.uri.path starts_with "/admin"'
action = "block"
expires = 2026-12-31T23:59:59Z
ticket = "CHG-1"
[[site.policy.rule]]
id = "feed"
expression = 'http.request.uri.path starts_with "/api/"'
action = "rate_limit"
limit = "per-key"
"#;

#[test]
fn policies_compile_and_routes_add_to_the_site() {
    let route = "[site.route.policy]\nmonitor = false\n[[site.route.policy.rule]]\nid = \"hdr\"\nexpression = \"true\"\naction = \"set_header\"\nheader = \"X-Tier\"\nvalue = \"gold\"\n";
    let text = format!(
        "[redis]\naddress = \"127.0.0.1:6379\"\ntimeout = \"20ms\"\n{}",
        policy_site(SITE_POLICY, route)
    );
    let cfg = load(&text).unwrap_or_else(|d| unreachable!("{d}"));
    let redis = cfg.redis.clone().unwrap_or_else(|| unreachable!("[redis]"));
    assert_eq!(
        (
            redis.address.as_str(),
            redis.timeout.as_millis(),
            redis.key_prefix.as_str()
        ),
        ("127.0.0.1:6379", 20, "rampart")
    );
    assert_eq!(cfg.lists.len(), 3);
    assert!(
        matches!(&cfg.lists[1].source, policy::ListSource::File(f) if f.text == "lists/eu.txt")
    );
    let routes = &cfg.sites[0].routes;
    let api = routes
        .iter()
        .find(|r| r.prefix == "/api")
        .and_then(|r| r.policy.clone());
    let root = routes
        .iter()
        .find(|r| r.prefix == "/")
        .and_then(|r| r.policy.clone());
    let (Some(api), Some(root)) = (api, root) else {
        unreachable!("policies missing")
    };
    assert!(
        root.monitor && !api.monitor,
        "the route's monitor switch wins"
    );
    assert_eq!(root.rules.len(), 2);
    assert_eq!(api.rules.len(), 3);
    assert_eq!(
        api.rules[2].action,
        policy::RuleActionSpec::SetHeader {
            name: "x-tier".into(),
            value: "gold".into()
        }
    );
    let login = &root.limits[0];
    assert_eq!(
        (
            login.window.as_secs(),
            login.thresholds.len(),
            login.fed_only
        ),
        (10, 2, false)
    );
    assert_eq!(login.thresholds[1].action, policy::LevelAction::Block(429));
    assert_eq!(login.thresholds[1].hold.as_secs(), 600);
    let per_key = &root.limits[1];
    assert!(per_key.redis && per_key.fail_closed && per_key.fed_only);
    assert_eq!(per_key.algorithm, policy::AlgorithmSpec::Gcra);
    assert_eq!(root.rules[0].expires_at, Some(1_798_761_599));
    assert_eq!(root.rules[1].action, policy::RuleActionSpec::RateLimit(1));
    assert_eq!(root.rules[0].priority, 10);
    assert_eq!(root.rules[1].priority, 1000);
    // The expression is kept with where it was written.
    let e = &root.rules[0].expression;
    assert_eq!(
        &text[e.span.start..e.span.end],
        "'http.request.uri.path starts_with \"/admin\"'"
    );
    // Without [redis], a Redis limit is refused where its backend is named.
    let errs = errors(&policy_site(SITE_POLICY, route));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("no [redis] is configured") && e.col == 11),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "[redis]\naddress = \"redis\"\nkey_prefix = \"a b\"\n{}",
        policy_site("", "")
    ));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("invalid Redis address")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.message.contains("invalid key prefix")),
        "{errs:?}"
    );
    // Without any policy section, no route has one.
    let cfg = load(&policy_site("", "")).unwrap_or_else(|d| unreachable!("{d}"));
    assert!(cfg.sites[0].routes.iter().all(|r| r.policy.is_none()));
}

#[test]
fn bad_policies_are_located_with_what_was_expected() {
    let rule = |extra: &str| {
        format!("[site.policy]\n[[site.policy.rule]]\nid = \"r\"\nexpression = \"true\"\n{extra}\n")
    };
    let limit = |extra: &str| {
        format!("[site.policy]\n[[site.policy.limit]]\nname = \"l\"\nkey = [\"ip.src\"]\n{extra}\n")
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (rule("action = \"explode\""), "unknown action `explode`", "rate_limit"),
        (rule("action = \"tag\""), "needs `tag`", ""),
        (rule("action = \"block\"\ntag = \"x\""), "`tag` does not apply", ""),
        (rule("action = \"block\"\nstatus = 200"), "status 200 is not allowed", "400 to 599"),
        (rule("action = \"redirect\"\nlocation = \"/x\"\nstatus = 304"), "status 304", "301, 302"),
        (rule("action = \"rate_limit\"\nlimit = \"nope\""), "no limit named `nope`", ""),
        (rule("action = \"set_header\"\nheader = \"bad header\""), "invalid header name", ""),
        (rule("action = \"set_header\"\nheader = \"host\"\nvalue = \"x\""), "managed by the edge", ""),
        (rule("action = \"log\"\nexpires = 2026-12-31"), "needs a date, a time and an offset", ""),
        (rule("action = \"log\"\nmode = \"loud\""), "unknown mode `loud`", "monitor"),
        (rule("action = \"log\"\npriority = 99999999"), "priority = 99999999 is out of range", ""),
        (format!("{}[[site.policy.rule]]\nid = \"r\"\nexpression = \"true\"\naction = \"log\"\n", rule("action = \"log\"")), "duplicate rule `r`", ""),
        (limit("window = \"10s\""), "has 0 thresholds", "one to four"),
        (limit("window = \"10x\"\nthreshold = [{ above = 1, action = \"log\" }]"), "invalid window", ""),
        (limit("window = \"0s\"\nthreshold = [{ above = 1, action = \"log\" }]"), "from 1 s to 24 h", ""),
        (limit("window = \"10s\"\nthreshold = [{ above = 5, action = \"log\" }, { above = 5, action = \"block\" }]"), "out of order", ""),
        (limit("window = \"10s\"\nthreshold = [{ above = 5, action = \"ban\" }]"), "unknown threshold action", ""),
        (limit("window = \"10s\"\nthreshold = [{ above = 5, action = \"log\", status = 403 }]"), "`status` only applies", ""),
        (limit("window = \"10s\"\nalgorithm = \"gcra\"\ndistinct = \"ip.src\"\nthreshold = [{ above = 5, action = \"log\" }]"), "distinct counting uses the sliding window", ""),
        (limit("window = \"10s\"\nbackend = \"memcached\"\nthreshold = [{ above = 5, action = \"log\" }]"), "unknown backend", ""),
        ("[site.policy]\n[[site.policy.limit]]\nname = \"l\"\nkey = []\nwindow = \"1s\"\nthreshold = [{ above = 5, action = \"log\" }]\n".into(), "a limit needs a key", ""),
        ("[site.policy]\n[[site.policy.list]]\nlist = \"nope\"\nuse = \"allow\"\n".into(), "no list named `nope`", ""),
        ("[site.policy]\n[[site.policy.list]]\nlist = \"office\"\nuse = \"permit\"\n".into(), "unknown list use", ""),
        ("[site.policy]\n[[site.policy.list]]\nlist = \"agents\"\nuse = \"deny\"\n".into(), "holds strings", ""),
    ];
    for (section, message, expected) in cases {
        let text = policy_site(&section, "");
        let errs = errors(&text);
        let e = errs
            .iter()
            .find(|e| e.message.contains(message))
            .unwrap_or_else(|| unreachable!("{section}\n=> {errs:?}"));
        assert!(
            e.expected.as_deref().unwrap_or("").contains(expected),
            "{e:?}"
        );
        assert!(e.line > 15, "{e:?} points into the policy section");
    }
    let bad_lists = "[[list]]\nname = \"x y\"\nkind = \"ip\"\nentries = []\n[[list]]\nname = \"k\"\nkind = \"color\"\nentries = []\n[[list]]\nname = \"n\"\nkind = \"ip\"\n";
    let errs = errors(&format!("{bad_lists}{}", policy_site("", "")));
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("invalid list name `x y`")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("unknown list kind `color`")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("list `n` has no entries")),
        "{messages:?}"
    );
}

#[test]
fn challenge_settings_and_api_routes() {
    let ok = load(&policy_site(
        "[site.challenge]\ndifficulty = 12\nmax_difficulty = 14\nclearance_ttl = \"30m\"\n\
         ipv4_prefix = 32\nipv6_prefix = 64\nbind_tls_fingerprint = false\nnoscript_wait = \"3s\"\n\
         [challenge]\nkey_file = \"keys/challenge.keys\"\n",
        "clients = \"api\"\n",
    ))
    .unwrap_or_else(|d| unreachable!("{d}"));
    let c = &ok.sites[0].challenge;
    assert_eq!((c.difficulty, c.max_difficulty), (12, 14));
    assert_eq!(c.clearance_ttl, std::time::Duration::from_secs(1800));
    assert_eq!((c.ipv4_prefix, c.ipv6_prefix), (32, 64));
    assert!(!c.bind_tls_fingerprint);
    assert_eq!(c.noscript_wait, std::time::Duration::from_secs(3));
    assert_eq!(
        ok.challenge.key_file.as_ref().map(|k| k.text.as_str()),
        Some("keys/challenge.keys")
    );
    // Routes are sorted longest prefix first: /api is the API route.
    let api = ok.sites[0]
        .routes
        .iter()
        .find(|r| r.prefix == "/api")
        .unwrap();
    assert_eq!(api.clients, Clients::Api);
    let web = ok.sites[0].routes.iter().find(|r| r.prefix == "/").unwrap();
    assert_eq!(web.clients, Clients::Browser);
    let defaults = load(&policy_site("", "")).unwrap_or_else(|d| unreachable!("{d}"));
    assert_eq!(defaults.sites[0].challenge, SiteChallenge::default());
    assert_eq!(defaults.sites[0].challenge.difficulty, 16);

    // Bad values: each located, with what was expected.
    let cases = [
        (
            "[site.challenge]\ndifficulty = 40\n",
            "",
            "difficulty = 40 is out of range",
        ),
        (
            "[site.challenge]\ndifficulty = 0\n",
            "",
            "difficulty = 0 is out of range",
        ),
        (
            "[site.challenge]\ndifficulty = 18\nmax_difficulty = 12\n",
            "",
            "max_difficulty 12 is below difficulty 18",
        ),
        (
            "[site.challenge]\nipv4_prefix = 33\n",
            "",
            "ipv4_prefix = 33 is out of range",
        ),
        (
            "[site.challenge]\nclearance_ttl = \"soon\"\n",
            "",
            "invalid clearance_ttl",
        ),
        (
            "[site.challenge]\nnoscript_wait = \"0s\"\n",
            "",
            "noscript_wait must be greater than zero",
        ),
        ("[site.challenge]\npuzzle = 1\n", "", "unknown key `puzzle`"),
        ("", "clients = \"robots\"\n", "unknown clients `robots`"),
    ];
    for (site, route, want) in cases {
        let text = policy_site(site, route);
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.message.contains(want)),
            "{want}: {errs:?}"
        );
        assert!(errs.iter().all(|e| e.line > 1), "{errs:?}");
    }
}

#[test]
fn bot_settings() {
    let ok = load(&policy_site(
        "[site.bot]\nrate = 120\npaths = 40\nlogin_path = \"/login\"\n\
         [[site.bot.verified]]\nname = \"googlebot\"\nuser_agent = \"Googlebot\"\nnetworks = [\"66.249.64.0/19\"]\n",
        "",
    ))
    .unwrap_or_else(|d| unreachable!("{d}"));
    let b = &ok.sites[0].bot;
    assert_eq!((b.rate, b.paths), (120, 40));
    assert_eq!(b.login_path.as_deref(), Some("/login"));
    assert_eq!(
        b.verified[0].user_agent, "googlebot",
        "compared ignoring case"
    );
    assert!(
        b.verified[0]
            .networks
            .contains("66.249.70.1".parse().unwrap())
    );
    let cases = [
        ("[site.bot]\nrate = 0\n", "rate = 0 is out of range"),
        (
            "[site.bot]\nlogin_path = \"login\"\n",
            "does not start with `/`",
        ),
        (
            "[site.bot]\n[[site.bot.verified]]\nname = \"g\"\nuser_agent = \"G\"\nnetworks = []\n",
            "verified bot `g` has no networks",
        ),
        (
            "[site.bot]\n[[site.bot.verified]]\nname = \"g\"\nuser_agent = \" \"\nnetworks = [\"10.0.0.0/8\"]\n",
            "empty user_agent",
        ),
        (
            "[site.bot]\n[[site.bot.verified]]\nname = \"g\"\nuser_agent = \"G\"\nnetworks = [\"10.0.0.0/33\"]\n",
            "invalid network",
        ),
    ];
    for (site, want) in cases {
        let errs = errors(&policy_site(site, ""));
        assert!(
            errs.iter().any(|e| e.message.contains(want)),
            "{want}: {errs:?}"
        );
        assert!(errs.iter().all(|e| e.line > 1), "{errs:?}");
    }
}

#[test]
fn flood_settings() {
    let ok = load(&policy_site(
        "[site.flood]\nmode = \"monitor\"\naction = \"block\"\nfactor = 4.5\nmin_excess = 100.0\n\
         bound = 0.0005\nlearn = \"2m\"\nquiet = \"1m\"\ncooldown = \"90s\"\n",
        "",
    ))
    .unwrap_or_else(|d| unreachable!("{d}"));
    let f = &ok.sites[0].flood;
    assert!(f.enabled && f.monitor && f.block);
    assert_eq!((f.factor, f.min_excess, f.bound), (4.5, 100.0, 0.0005));
    assert_eq!(f.learn, std::time::Duration::from_secs(120));
    assert_eq!(f.cooldown, std::time::Duration::from_secs(90));
    // On by default, enforcing; an onboarding site's automatic rules only record.
    let d = load(&policy_site("", "")).unwrap_or_else(|d| unreachable!("{d}"));
    assert_eq!(d.sites[0].flood, SiteFlood::default());
    let onboarding = load(&policy_site("[site.policy]\nmonitor = true\n", ""))
        .unwrap_or_else(|d| unreachable!("{d}"));
    assert!(onboarding.sites[0].flood.monitor);
    let off = load(&policy_site("[site.flood]\nenabled = false\n", ""))
        .unwrap_or_else(|d| unreachable!("{d}"));
    assert!(!off.sites[0].flood.enabled);
    let cases = [
        (
            "[site.flood]\nmode = \"observe\"\n",
            "unknown mode `observe`",
        ),
        (
            "[site.flood]\naction = \"tarpit\"\n",
            "unknown action `tarpit`",
        ),
        ("[site.flood]\nfactor = 1.0\n", "factor = 1 is out of range"),
        ("[site.flood]\nbound = 0.9\n", "bound = 0.9 is out of range"),
        ("[site.flood]\nquiet = \"never\"\n", "invalid quiet"),
        ("[site.flood]\nthreshold = 3\n", "unknown key `threshold`"),
    ];
    for (site, want) in cases {
        let errs = errors(&policy_site(site, ""));
        assert!(
            errs.iter().any(|e| e.message.contains(want)),
            "{want}: {errs:?}"
        );
        assert!(errs.iter().all(|e| e.line > 1), "{errs:?}");
    }
}
