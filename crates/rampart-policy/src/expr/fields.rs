//! The fields an expression can read: one table that the checker, the evaluator and the
//! configuration reference (`rampart policy fields`) all use.

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `true` or `false`.
    Bool,
    /// A signed 64-bit integer.
    Int,
    /// Bytes (usually text).
    Str,
    /// An IPv4 or IPv6 address.
    Ip,
    /// Several strings: index it (`[0]`), count it (`len()`) or test each (`any(…[*]…)`).
    Array,
    /// Strings by name: `field["name"]` is an [`Type::Array`].
    Map,
}

impl Type {
    /// The name with its article (`an integer`).
    pub fn a(self) -> String {
        let n = self.name();
        if matches!(self, Type::Int | Type::Ip | Type::Array) {
            format!("an {n}")
        } else {
            format!("a {n}")
        }
    }

    /// How the type reads in messages.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "boolean",
            Type::Int => "integer",
            Type::Str => "string",
            Type::Ip => "IP address",
            Type::Array => "array of strings",
            Type::Map => "map of strings by name",
        }
    }
}

/// A field, as the evaluator asks the request for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // Each is documented in `FIELDS`.
pub enum Field {
    IpSrc,
    Country,
    Asn,
    Method,
    Scheme,
    Version,
    Host,
    Uri,
    Path,
    Query,
    QueryArgs,
    QueryArgNames,
    Headers,
    HeaderNames,
    Cookies,
    CookieNames,
    UserAgent,
    Referer,
    BodyArgs,
    BodyArgNames,
    Port,
    Tls,
    TlsFingerprint,
    HttpFingerprint,
    Identity,
    BotScore,
    BotReasons,
    Tags,
    WafScore,
    ResponseCode,
    ResponseHeaders,
    ResponseHeaderNames,
}

/// One entry of the field table.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// The name written in expressions.
    pub name: &'static str,
    /// The field.
    pub field: Field,
    /// What it holds.
    pub ty: Type,
    /// Known only once the origin answered: a rule reading it runs on the response.
    pub response: bool,
    /// One line for the reference.
    pub doc: &'static str,
}

const fn f(name: &'static str, field: Field, ty: Type, doc: &'static str) -> FieldDef {
    FieldDef {
        name,
        field,
        ty,
        response: false,
        doc,
    }
}

const fn r(name: &'static str, field: Field, ty: Type, doc: &'static str) -> FieldDef {
    FieldDef {
        name,
        field,
        ty,
        response: true,
        doc,
    }
}

/// Every field, in the order the reference lists them.
pub const FIELDS: &[FieldDef] = &[
    f(
        "ip.src",
        Field::IpSrc,
        Type::Ip,
        "The client's address (after trusted proxies' X-Forwarded-For).",
    ),
    f(
        "ip.src.country",
        Field::Country,
        Type::Str,
        "ISO 3166-1 alpha-2 code of the client's country from the geo database; empty when unknown.",
    ),
    f(
        "ip.src.asn",
        Field::Asn,
        Type::Int,
        "Autonomous system number of the client's address; 0 when unknown.",
    ),
    f(
        "http.request.method",
        Field::Method,
        Type::Str,
        "The method as sent (`GET`, `POST`).",
    ),
    f(
        "http.request.scheme",
        Field::Scheme,
        Type::Str,
        "`https` when the request came over TLS, else `http`.",
    ),
    f(
        "http.request.version",
        Field::Version,
        Type::Str,
        "`HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.",
    ),
    f(
        "http.host",
        Field::Host,
        Type::Str,
        "The host the request is for, lower case, without port.",
    ),
    f(
        "http.request.uri",
        Field::Uri,
        Type::Str,
        "Path and query as received (not decoded).",
    ),
    f(
        "http.request.uri.path",
        Field::Path,
        Type::Str,
        "The path as received (not decoded).",
    ),
    f(
        "http.request.uri.query",
        Field::Query,
        Type::Str,
        "The query string without `?`, as received; empty when absent.",
    ),
    f(
        "http.request.uri.args",
        Field::QueryArgs,
        Type::Map,
        "Query arguments by decoded name, values decoded (`+` and `%XX`).",
    ),
    f(
        "http.request.uri.args.names",
        Field::QueryArgNames,
        Type::Array,
        "Decoded names of the query arguments.",
    ),
    f(
        "http.request.headers",
        Field::Headers,
        Type::Map,
        "Request header values by name (names ignore case).",
    ),
    f(
        "http.request.headers.names",
        Field::HeaderNames,
        Type::Array,
        "Request header names, lower case.",
    ),
    f(
        "http.request.cookies",
        Field::Cookies,
        Type::Map,
        "Cookie values by name, from every Cookie header.",
    ),
    f(
        "http.request.cookies.names",
        Field::CookieNames,
        Type::Array,
        "Cookie names.",
    ),
    f(
        "http.user_agent",
        Field::UserAgent,
        Type::Str,
        "The User-Agent header (the first); empty when absent.",
    ),
    f(
        "http.referer",
        Field::Referer,
        Type::Str,
        "The Referer header (the first); empty when absent.",
    ),
    f(
        "http.request.body.args",
        Field::BodyArgs,
        Type::Map,
        "Arguments of a urlencoded or JSON body (JSON flattened as `a.b`), when the body was read.",
    ),
    f(
        "http.request.body.args.names",
        Field::BodyArgNames,
        Type::Array,
        "Names of the body's arguments.",
    ),
    f(
        "listener.port",
        Field::Port,
        Type::Int,
        "The port the client connected to.",
    ),
    f(
        "tls",
        Field::Tls,
        Type::Bool,
        "Whether the request came over TLS.",
    ),
    f(
        "tls.fingerprint",
        Field::TlsFingerprint,
        Type::Str,
        "The JA4 fingerprint of the client's TLS ClientHello; empty on plain connections.",
    ),
    f(
        "http.fingerprint",
        Field::HttpFingerprint,
        Type::Str,
        "The client's HTTP fingerprint: on HTTP/2 the connection's first flight \
         (`1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p`: SETTINGS, WINDOW_UPDATE, \
         PRIORITY frames, pseudo-header order); on HTTP/1 the head's shape \
         (`h11t07_4c1d0e5a7b2f`: version, letter case, field count, hash of the field order).",
    ),
    f(
        "client.identity",
        Field::Identity,
        Type::Str,
        "Who the client is across requests: `c:…` for the holder of a clearance token (its \
         random identity), else `f:…`, a hash of the TLS and HTTP/2 fingerprints (or the \
         User-Agent on plain HTTP) and the /24 or /64. Key limits on it for per-client quotas.",
    ),
    f(
        "bot.score",
        Field::BotScore,
        Type::Int,
        "0 (a person with a browser, or a verified bot) to 100 (certainly a program); see \
         `bot.reasons`.",
    ),
    f(
        "bot.reasons",
        Field::BotReasons,
        Type::Array,
        "Why the bot score is what it is: `tls_mismatch`, `http2_mismatch`, \
         `automation_user_agent`, `high_rate`, `login_failures`, `verified_bot`, `cleared`…",
    ),
    f(
        "tags",
        Field::Tags,
        Type::Array,
        "Tags set by earlier stages and rules.",
    ),
    f(
        "waf.score",
        Field::WafScore,
        Type::Int,
        "The WAF's inbound anomaly score; 0 when the WAF did not run.",
    ),
    r(
        "http.response.code",
        Field::ResponseCode,
        Type::Int,
        "The origin's response status.",
    ),
    r(
        "http.response.headers",
        Field::ResponseHeaders,
        Type::Map,
        "Response header values by name.",
    ),
    r(
        "http.response.headers.names",
        Field::ResponseHeaderNames,
        Type::Array,
        "Response header names, lower case.",
    ),
];

/// The table entry named `name`.
pub fn lookup(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|d| d.name == name)
}

/// One entry of the function table.
#[derive(Debug, Clone, Copy)]
pub struct FunctionDef {
    /// How it is called.
    pub signature: &'static str,
    /// One line for the reference.
    pub doc: &'static str,
}

/// Every function, for the reference.
pub const FUNCTIONS: &[FunctionDef] = &[
    FunctionDef {
        signature: "lower(string) -> string",
        doc: "ASCII lower case.",
    },
    FunctionDef {
        signature: "upper(string) -> string",
        doc: "ASCII upper case.",
    },
    FunctionDef {
        signature: "url_decode(string) -> string",
        doc: "Decodes `%XX` and `+` (invalid escapes stay as they are).",
    },
    FunctionDef {
        signature: "len(string | array) -> integer",
        doc: "Bytes of a string, elements of an array.",
    },
    FunctionDef {
        signature: "cidr(address, v4 bits[, v6 bits]) -> address",
        doc: "The network of an address: `cidr(ip.src, 24, 64)` (IPv6 prefix 64 when not given).",
    },
    FunctionDef {
        signature: "any(condition with x[*]) -> boolean",
        doc: "Whether the condition holds for some element of the array written `x[*]`.",
    },
    FunctionDef {
        signature: "all(condition with x[*]) -> boolean",
        doc: "Whether it holds for every element (true for none).",
    },
];

/// Names close to `name` (for "did you mean"), best first.
pub fn suggest(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|d| (distance(name, d.name), d.name))
        .filter(|&(d, _)| d <= 3)
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance, for short names.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
