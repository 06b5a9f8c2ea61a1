//! The bot score: how much a request looks like it comes from an automated program, 0
//! (a person with a browser, or a verified good bot) to 100, with the reasons.
//!
//! Signals, each adding points (the sum is capped at 100):
//!
//! | reason | points | when |
//! |---|---|---|
//! | `no_user_agent` | 40 | no `User-Agent` at all |
//! | `automation_user_agent` | 50 | a tool says what it is (`curl`, `python-requests`, `Go-http-client`, `HeadlessChrome`…) |
//! | `fake_good_bot` | 60 | claims a verified bot (`Googlebot`) from outside its networks |
//! | `tls_mismatch` | 40 | claims a browser, but its TLS ClientHello is not that browser's (no TLS 1.3, no `h2` in ALPN, or for Chromium-based browsers another cipher list) |
//! | `http2_mismatch` | 30 | claims a Chromium-based browser over HTTP/2 with other SETTINGS than Chromium's |
//! | `http1_on_tls` | 20 | claims a browser yet speaks HTTP/1.1 over TLS (browsers take `h2` when offered) |
//! | `missing_accept_language` | 15 | claims a browser without `Accept-Language` |
//! | `missing_fetch_metadata` | 15 | claims a Chromium-based browser or Firefox, over TLS, without `Sec-Fetch-Mode` |
//! | `high_rate` / `very_high_rate` | 20 / 40 | the identity's requests per minute above the site's `rate` / 4 × `rate` |
//! | `many_paths` | 20 | more than `paths` distinct paths per minute (scraping) |
//! | `error_ratio` | 20 | at least 20 responses in a minute, more than half of them 4xx |
//! | `login_failures` | 30 | at least 5 failed logins (401/403, or the origin's failure status on the login path) in 10 minutes |
//!
//! and two that lower it: `cleared` (−20: the client solved a proof of work) and
//! `verified_bot` (the score is 0: an operator-listed bot from its own networks).
//!
//! Pure: the counters are the edge's, passed in [`Counts`].

/// What the `User-Agent` claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No `User-Agent`.
    Nothing,
    /// Chrome, Edge, Opera, Brave… (`Chrome/` in the string, no tool marker).
    Chromium,
    /// Firefox.
    Firefox,
    /// Safari (`Safari/` and `Version/` without `Chrome/`).
    Safari,
    /// A tool that names itself.
    Tool,
    /// Anything else.
    Other,
}

/// Substrings (lower case) of tools' and libraries' user agents.
const TOOLS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "undici",
    "scrapy",
    "headlesschrome",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "httpclient",
    "masscan",
    "zgrab",
    "nikto",
    "sqlmap",
    "nuclei",
];

/// Markers of the browsers, after the tools in the automaton's pattern list.
const MARKERS: &[&str] = &[
    "mozilla/5.0",
    "chrome/",
    "crios/",
    "edg/",
    "firefox/",
    "fxios/",
    "safari/",
    "version/",
];

/// One automaton for every tool and marker, matched ignoring case.
fn automaton() -> Option<&'static aho_corasick::AhoCorasick> {
    static AC: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(TOOLS.iter().chain(MARKERS))
            .ok()
    })
    .as_ref()
}

/// Classifies a `User-Agent` (one pass over it).
pub fn claim(ua: &[u8]) -> Claim {
    if ua.is_empty() {
        return Claim::Nothing;
    }
    let Some(ac) = automaton() else {
        return Claim::Other;
    };
    // Bit i: marker i seen.
    let mut markers = 0u32;
    for m in ac.find_overlapping_iter(ua) {
        let i = m.pattern().as_usize();
        if i < TOOLS.len() {
            return Claim::Tool;
        }
        markers |= 1 << (i - TOOLS.len());
    }
    let has = |name: &str| {
        MARKERS
            .iter()
            .position(|m| *m == name)
            .is_some_and(|i| markers & (1 << i) != 0)
    };
    if !has("mozilla/5.0") {
        return Claim::Other;
    }
    if has("chrome/") || has("crios/") || has("edg/") {
        Claim::Chromium
    } else if has("firefox/") || has("fxios/") {
        Claim::Firefox
    } else if has("safari/") && has("version/") {
        Claim::Safari
    } else {
        Claim::Other
    }
}

/// Per-identity counts the edge keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Requests in the last minute (sliding).
    pub per_minute: f64,
    /// Distinct paths in the last minute.
    pub paths_per_minute: f64,
    /// Responses in the last minute.
    pub responses: f64,
    /// 4xx responses in the last minute.
    pub client_errors: f64,
    /// Failed logins in the last 10 minutes.
    pub login_failures: f64,
}

/// The site's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Requests per minute per identity above which `high_rate` counts.
    pub rate: f64,
    /// Distinct paths per minute above which `many_paths` counts.
    pub paths: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            rate: 300.0,
            paths: 100.0,
        }
    }
}

/// What the score is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    /// The `User-Agent`.
    pub user_agent: &'a [u8],
    /// JA4 (empty on plain connections).
    pub tls_fingerprint: &'a str,
    /// The HTTP fingerprint.
    pub http_fingerprint: &'a str,
    /// The request came over TLS.
    pub tls: bool,
    /// The request came over HTTP/2.
    pub http2: bool,
    /// `Accept-Language` present.
    pub accept_language: bool,
    /// `Sec-Fetch-Mode` present.
    pub fetch_metadata: bool,
    /// The client holds a clearance from a proof of work.
    pub cleared: bool,
    /// The `User-Agent` names an operator-listed bot…
    pub claims_verified_bot: bool,
    /// …and the address is in that bot's networks.
    pub verified_bot: bool,
    /// The identity's counts.
    pub counts: Counts,
}

/// A score and its reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// 0–100.
    pub score: u8,
    /// Why, in the order found.
    pub reasons: Vec<&'static str>,
}

/// Chromium's cipher list (the middle part of its JA4), stable since 2020.
pub const CHROMIUM_CIPHERS: &str = "8daaf6152771";
/// The SETTINGS Chromium sends first on HTTP/2.
pub const CHROMIUM_H2_SETTINGS: &str = "1:65536;2:0;4:6291456;6:262144|";

/// The bot score of a request.
pub fn score(s: &Signals<'_>, t: &Thresholds) -> Score {
    let mut points: i32 = 0;
    let mut reasons = Vec::new();
    let mut add = |p: i32, r: &'static str| {
        points += p;
        reasons.push(r);
    };
    if s.verified_bot {
        return Score {
            score: 0,
            reasons: vec!["verified_bot"],
        };
    }
    if s.claims_verified_bot {
        add(60, "fake_good_bot");
    }
    let claim = claim(s.user_agent);
    match claim {
        Claim::Nothing => add(40, "no_user_agent"),
        Claim::Tool => add(50, "automation_user_agent"),
        Claim::Other => {}
        Claim::Chromium | Claim::Firefox | Claim::Safari => {
            if s.tls {
                let fp = s.tls_fingerprint;
                let modern = fp.starts_with("t13") && fp.get(8..10) == Some("h2");
                let chromium_ciphers = fp.get(11..23) == Some(CHROMIUM_CIPHERS);
                if !fp.is_empty() && (!modern || (claim == Claim::Chromium && !chromium_ciphers)) {
                    add(40, "tls_mismatch");
                }
                if !s.http2 {
                    add(20, "http1_on_tls");
                } else if claim == Claim::Chromium
                    && !s.http_fingerprint.starts_with(CHROMIUM_H2_SETTINGS)
                {
                    add(30, "http2_mismatch");
                }
                if !s.fetch_metadata && claim != Claim::Safari {
                    add(15, "missing_fetch_metadata");
                }
            }
            if !s.accept_language {
                add(15, "missing_accept_language");
            }
        }
    }
    let c = s.counts;
    if c.per_minute > 4.0 * t.rate {
        add(40, "very_high_rate");
    } else if c.per_minute > t.rate {
        add(20, "high_rate");
    }
    if c.paths_per_minute > t.paths {
        add(20, "many_paths");
    }
    if c.responses >= 20.0 && c.client_errors * 2.0 > c.responses {
        add(20, "error_ratio");
    }
    if c.login_failures >= 5.0 {
        add(30, "login_failures");
    }
    if s.cleared {
        add(-20, "cleared");
    }
    Score {
        score: points.clamp(0, 100) as u8,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_UA: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    const CHROME_JA4: &str = "t13d1517h2_8daaf6152771_cb7bf5808d99";
    const CHROME_H2: &str = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p";

    fn chrome() -> Signals<'static> {
        Signals {
            user_agent: CHROME_UA,
            tls_fingerprint: CHROME_JA4,
            http_fingerprint: CHROME_H2,
            tls: true,
            http2: true,
            accept_language: true,
            fetch_metadata: true,
            cleared: false,
            claims_verified_bot: false,
            verified_bot: false,
            counts: Counts::default(),
        }
    }

    fn of(s: &Signals<'_>) -> Score {
        score(s, &Thresholds::default())
    }

    #[test]
    fn user_agents() {
        assert_eq!(claim(CHROME_UA), Claim::Chromium);
        assert_eq!(
            claim(b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            Claim::Firefox
        );
        assert_eq!(
            claim(b"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"),
            Claim::Safari
        );
        assert_eq!(claim(b"curl/8.5.0"), Claim::Tool);
        assert_eq!(claim(b"python-requests/2.31"), Claim::Tool);
        assert_eq!(
            claim(b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"),
            Claim::Tool
        );
        assert_eq!(claim(b""), Claim::Nothing);
        assert_eq!(claim(b"MyMonitor/1.0"), Claim::Other);
    }

    #[test]
    fn a_real_browser_scores_zero() {
        assert_eq!(of(&chrome()), Score::default());
        let mut cleared = chrome();
        cleared.cleared = true;
        assert_eq!(of(&cleared).score, 0);
        assert_eq!(of(&cleared).reasons, ["cleared"]);
    }

    #[test]
    fn a_tool_with_a_browser_user_agent_is_found_by_its_fingerprints() {
        // rustls-like: TLS 1.3 and h2, but not Chromium's cipher list; HTTP/1.1.
        let mut s = chrome();
        s.tls_fingerprint = "t13d0912h2_f91f431d341e_a1b2c3d4e5f6";
        s.http2 = false;
        s.fetch_metadata = false;
        let sc = of(&s);
        assert_eq!(
            sc.reasons,
            ["tls_mismatch", "http1_on_tls", "missing_fetch_metadata"]
        );
        assert_eq!(sc.score, 75);
        // Over HTTP/2 with another stack's SETTINGS.
        let mut s = chrome();
        s.http_fingerprint = "4:1048576|3934465|0|m,s,a,p";
        assert_eq!(of(&s).reasons, ["http2_mismatch"]);
        // TLS 1.2 only, no ALPN.
        let mut s = chrome();
        s.tls_fingerprint = "t12d1209h1_aaaaaaaaaaaa_bbbbbbbbbbbb";
        s.http2 = false;
        assert!(of(&s).reasons.contains(&"tls_mismatch"));
        // On plain HTTP only the header signals apply.
        let mut s = chrome();
        s.tls = false;
        s.tls_fingerprint = "";
        s.http2 = false;
        s.http_fingerprint = "h11t07_0123456789ab";
        s.accept_language = false;
        assert_eq!(of(&s).reasons, ["missing_accept_language"]);
    }

    #[test]
    fn behaviour_and_good_bots() {
        let mut s = chrome();
        s.counts = Counts {
            per_minute: 1500.0,
            paths_per_minute: 400.0,
            responses: 100.0,
            client_errors: 80.0,
            login_failures: 9.0,
        };
        let sc = of(&s);
        assert_eq!(
            sc.reasons,
            [
                "very_high_rate",
                "many_paths",
                "error_ratio",
                "login_failures"
            ]
        );
        assert_eq!(sc.score, 100, "capped");
        s.counts.per_minute = 301.0;
        assert!(of(&s).reasons.contains(&"high_rate"));
        // Few responses: no ratio.
        s.counts = Counts {
            responses: 10.0,
            client_errors: 10.0,
            ..Counts::default()
        };
        assert!(of(&s).reasons.is_empty());
        // Good bots: verified from their networks, fake from elsewhere.
        let mut g = chrome();
        g.user_agent = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        g.claims_verified_bot = true;
        g.verified_bot = true;
        g.counts.per_minute = 5000.0;
        assert_eq!(of(&g).reasons, ["verified_bot"]);
        assert_eq!(of(&g).score, 0);
        g.verified_bot = false;
        assert!(of(&g).score >= 60);
        assert_eq!(of(&g).reasons[0], "fake_good_bot");
        let mut none = chrome();
        none.user_agent = b"";
        assert_eq!(of(&none).reasons, ["no_user_agent"]);
        none.user_agent = b"curl/8.5.0";
        assert_eq!(of(&none).score, 50);
    }
}
