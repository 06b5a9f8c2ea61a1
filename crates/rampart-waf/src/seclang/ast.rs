//! The typed form of SecLang directives, as read from rule files.
//!
//! Names are resolved here (a misspelt variable, operator, transformation or action is a
//! load error, not a rule that silently never matches); values that need the engine —
//! regular expressions, macros such as `%{TX.0}`, data files — stay text until the
//! compiler takes them.

use std::sync::Arc;

/// Where a directive came from, for messages at compile time (a regex that does not
/// compile is reported with its rule id and this position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The rule file, as named (after include resolution).
    pub file: Arc<str>,
    /// 1-based line of the directive's first character.
    pub line: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The directive.
    pub directive: Directive,
    /// Where it was written.
    pub origin: Origin,
}

/// A SecLang directive.
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// `SecRule VARIABLES OPERATOR [ACTIONS]`.
    Rule(Rule),
    /// `SecAction ACTIONS`: a rule that always matches.
    Action(Vec<Action>),
    /// `SecMarker NAME`: a target for `skipAfter`.
    Marker(String),
    /// `SecDefaultAction ACTIONS`: defaults for the rules of one phase that follow.
    DefaultAction(Vec<Action>),
    /// `SecRuleEngine On|Off|DetectionOnly`.
    RuleEngine(EngineMode),
    /// `SecRequestBodyAccess On|Off`.
    RequestBodyAccess(bool),
    /// `SecResponseBodyAccess On|Off`.
    ResponseBodyAccess(bool),
    /// `SecRequestBodyLimit BYTES`.
    RequestBodyLimit(u64),
    /// `SecRequestBodyNoFilesLimit BYTES`.
    RequestBodyNoFilesLimit(u64),
    /// `SecRequestBodyInMemoryLimit BYTES` (accepted; the edge never spools to disk).
    RequestBodyInMemoryLimit(u64),
    /// `SecRequestBodyLimitAction Reject|ProcessPartial`.
    RequestBodyLimitAction(LimitAction),
    /// `SecResponseBodyLimit BYTES`.
    ResponseBodyLimit(u64),
    /// `SecResponseBodyLimitAction Reject|ProcessPartial`.
    ResponseBodyLimitAction(LimitAction),
    /// `SecResponseBodyMimeType TYPE...`: response bodies of these types are inspected.
    ResponseBodyMimeType(Vec<String>),
    /// `SecResponseBodyMimeTypesClear`.
    ResponseBodyMimeTypesClear,
    /// `SecArgumentsLimit N`.
    ArgumentsLimit(u64),
    /// `SecRequestBodyJsonDepthLimit N`.
    RequestBodyJsonDepthLimit(u64),
    /// `SecArgumentSeparator C`.
    ArgumentSeparator(u8),
    /// `SecRuleRemoveById ID|RANGE...`.
    RemoveById(Vec<IdRange>),
    /// `SecRuleRemoveByTag REGEX`.
    RemoveByTag(String),
    /// `SecRuleRemoveByMsg REGEX`.
    RemoveByMsg(String),
    /// `SecRuleUpdateTargetById ID TARGETS [REPLACED]`.
    UpdateTargetById {
        /// Rules to change.
        ids: Vec<IdRange>,
        /// Targets to add (or, with `!`, to exclude).
        targets: Vec<VarSel>,
        /// A target the first of `targets` replaces.
        replace: Option<Vec<VarSel>>,
    },
    /// `SecRuleUpdateTargetByTag REGEX TARGETS [REPLACED]`.
    UpdateTargetByTag {
        /// Tag pattern.
        tag: String,
        /// Targets to add or exclude.
        targets: Vec<VarSel>,
        /// A target the first of `targets` replaces.
        replace: Option<Vec<VarSel>>,
    },
    /// `SecRuleUpdateTargetByMsg REGEX TARGETS [REPLACED]`.
    UpdateTargetByMsg {
        /// Message pattern.
        msg: String,
        /// Targets to add or exclude.
        targets: Vec<VarSel>,
        /// A target the first of `targets` replaces.
        replace: Option<Vec<VarSel>>,
    },
    /// `SecRuleUpdateActionById ID[:CHAIN_OFFSET] ACTIONS`.
    UpdateActionById {
        /// The rule.
        id: u64,
        /// Which rule of its chain (0 = the chain's start).
        chain_offset: u32,
        /// Actions that replace those of the same kind.
        actions: Vec<Action>,
    },
    /// `SecComponentSignature TEXT`.
    ComponentSignature(String),
    /// `SecCollectionTimeout SECONDS`.
    CollectionTimeout(u64),
    /// `SecPcreMatchLimit N` / `SecPcreMatchLimitRecursion N` (accepted: the engine's
    /// regexes run in linear time and need no backtracking limit).
    PcreMatchLimit(u64),
    /// A directive about ModSecurity's own logs, files or integration (audit log, debug
    /// log, temporary directories, …). Rampart has its own event log and never writes
    /// these files, so the directive is accepted and has no effect.
    Ignored(String),
}

/// `SecRuleEngine` and `ctl:ruleEngine` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    /// Rules run and disruptive actions are applied.
    On,
    /// Rules are not run.
    Off,
    /// Rules run; disruptive actions are recorded, not applied.
    DetectionOnly,
}

/// What to do with a body over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAction {
    /// Refuse the request (413) or response.
    Reject,
    /// Inspect the part within the limit, pass the rest.
    ProcessPartial,
}

/// A rule id or an inclusive range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id.
    pub first: u64,
    /// Last id (equal to `first` for a single id).
    pub last: u64,
}

impl IdRange {
    /// Whether `id` is in the range.
    pub fn contains(&self, id: u64) -> bool {
        (self.first..=self.last).contains(&id)
    }
}

/// A `SecRule`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What to inspect.
    pub variables: Vec<VarSel>,
    /// How to test it.
    pub operator: OperatorSpec,
    /// What to do on a match (and rule metadata).
    pub actions: Vec<Action>,
}

/// One target of a rule: `[!|&]VARIABLE[:KEY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarSel {
    /// The variable or collection.
    pub var: Var,
    /// For collections: which members.
    pub key: Option<VarKey>,
    /// `&`: the number of members instead of their values.
    pub count: bool,
    /// `!`: members excluded from the rule's other targets.
    pub exclude: bool,
}

/// The member selector of a collection target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarKey {
    /// A member by name (case-insensitive for most collections), or an XPath for `XML`.
    Name(String),
    /// Members whose names match a regular expression (`/…/`).
    Regex(String),
}

/// The operator of a rule: `[!]@name param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSpec {
    /// Which operator.
    pub op: Op,
    /// `!`: the rule matches when the operator does not.
    pub negated: bool,
    /// The operator's parameter, as written (macros unexpanded).
    pub param: String,
}

/// Defines a name table: an enum, its SecLang spelling(s) and a lookup.
macro_rules! names {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = [$s:literal $(, $alias:literal)*]),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* #[doc = concat!("`", $s, "`")] $v),+ }
        impl $name {
            /// Every spelling accepted in rule files, with its value (the canonical one
            /// first).
            pub const ALL: &'static [(&'static str, $name)] =
                &[$(($s, $name::$v) $(, ($alias, $name::$v))*),+];
            /// Looks a name up, case-insensitively (as ModSecurity does).
            pub fn from_name(s: &str) -> Option<$name> {
                Self::ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|&(_, v)| v)
            }
            /// The canonical spelling.
            pub fn name(self) -> &'static str {
                Self::ALL.iter().find(|(_, v)| *v == self).map_or("?", |(n, _)| n)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

names! {
    /// A SecLang variable or collection.
    Var {
        /// Request arguments from the query string and the body.
        Args = ["ARGS"], ArgsGet = ["ARGS_GET"], ArgsPost = ["ARGS_POST"],
        ArgsNames = ["ARGS_NAMES"], ArgsGetNames = ["ARGS_GET_NAMES"],
        ArgsPostNames = ["ARGS_POST_NAMES"], ArgsCombinedSize = ["ARGS_COMBINED_SIZE"],
        AuthType = ["AUTH_TYPE"], Duration = ["DURATION"], Env = ["ENV"],
        Files = ["FILES"], FilesCombinedSize = ["FILES_COMBINED_SIZE"],
        FilesNames = ["FILES_NAMES"], FilesSizes = ["FILES_SIZES"],
        FilesTmpNames = ["FILES_TMPNAMES"], FilesTmpContent = ["FILES_TMP_CONTENT"],
        FullRequest = ["FULL_REQUEST"], FullRequestLength = ["FULL_REQUEST_LENGTH"],
        Geo = ["GEO"], Global = ["GLOBAL"], HighestSeverity = ["HIGHEST_SEVERITY"],
        InboundDataError = ["INBOUND_DATA_ERROR"], Ip = ["IP"],
        MatchedVar = ["MATCHED_VAR"], MatchedVarName = ["MATCHED_VAR_NAME"],
        MatchedVars = ["MATCHED_VARS"], MatchedVarsNames = ["MATCHED_VARS_NAMES"],
        ModsecBuild = ["MODSEC_BUILD"], PcreLimitsExceeded = ["MSC_PCRE_LIMITS_EXCEEDED"],
        MultipartBoundaryQuoted = ["MULTIPART_BOUNDARY_QUOTED"],
        MultipartBoundaryWhitespace = ["MULTIPART_BOUNDARY_WHITESPACE"],
        MultipartCrlfLfLines = ["MULTIPART_CRLF_LF_LINES"],
        MultipartDataAfter = ["MULTIPART_DATA_AFTER"],
        MultipartDataBefore = ["MULTIPART_DATA_BEFORE"],
        MultipartFileLimitExceeded = ["MULTIPART_FILE_LIMIT_EXCEEDED"],
        MultipartFilename = ["MULTIPART_FILENAME"],
        MultipartHeaderFolding = ["MULTIPART_HEADER_FOLDING"],
        MultipartInvalidHeaderFolding = ["MULTIPART_INVALID_HEADER_FOLDING"],
        MultipartInvalidPart = ["MULTIPART_INVALID_PART"],
        MultipartInvalidQuoting = ["MULTIPART_INVALID_QUOTING"],
        MultipartLfLine = ["MULTIPART_LF_LINE"],
        MultipartMissingSemicolon = ["MULTIPART_MISSING_SEMICOLON", "MULTIPART_SEMICOLON_MISSING"],
        MultipartName = ["MULTIPART_NAME"],
        MultipartPartHeaders = ["MULTIPART_PART_HEADERS"],
        MultipartStrictError = ["MULTIPART_STRICT_ERROR"],
        MultipartUnmatchedBoundary = ["MULTIPART_UNMATCHED_BOUNDARY"],
        OutboundDataError = ["OUTBOUND_DATA_ERROR"], PathInfo = ["PATH_INFO"],
        QueryString = ["QUERY_STRING"], RemoteAddr = ["REMOTE_ADDR"],
        RemoteHost = ["REMOTE_HOST"], RemotePort = ["REMOTE_PORT"],
        RemoteUser = ["REMOTE_USER"], ReqbodyError = ["REQBODY_ERROR"],
        ReqbodyErrorMsg = ["REQBODY_ERROR_MSG"], ReqbodyProcessor = ["REQBODY_PROCESSOR"],
        ReqbodyProcessorError = ["REQBODY_PROCESSOR_ERROR"],
        ReqbodyProcessorErrorMsg = ["REQBODY_PROCESSOR_ERROR_MSG"],
        RequestBasename = ["REQUEST_BASENAME"], RequestBody = ["REQUEST_BODY"],
        RequestBodyLength = ["REQUEST_BODY_LENGTH"], RequestCookies = ["REQUEST_COOKIES"],
        RequestCookiesNames = ["REQUEST_COOKIES_NAMES"], RequestFilename = ["REQUEST_FILENAME"],
        RequestHeaders = ["REQUEST_HEADERS"], RequestHeadersNames = ["REQUEST_HEADERS_NAMES"],
        RequestLine = ["REQUEST_LINE"], RequestMethod = ["REQUEST_METHOD"],
        RequestProtocol = ["REQUEST_PROTOCOL"], RequestUri = ["REQUEST_URI"],
        RequestUriRaw = ["REQUEST_URI_RAW"], Resource = ["RESOURCE"],
        ResponseBody = ["RESPONSE_BODY"], ResponseContentLength = ["RESPONSE_CONTENT_LENGTH"],
        ResponseContentType = ["RESPONSE_CONTENT_TYPE"], ResponseHeaders = ["RESPONSE_HEADERS"],
        ResponseHeadersNames = ["RESPONSE_HEADERS_NAMES"], ResponseProtocol = ["RESPONSE_PROTOCOL"],
        ResponseStatus = ["RESPONSE_STATUS"], Rule = ["RULE"], ServerAddr = ["SERVER_ADDR"],
        ServerName = ["SERVER_NAME"], ServerPort = ["SERVER_PORT"], Session = ["SESSION"],
        SessionId = ["SESSIONID"], Status = ["STATUS"], StatusLine = ["STATUS_LINE"],
        Time = ["TIME"], TimeDay = ["TIME_DAY"], TimeEpoch = ["TIME_EPOCH"],
        TimeHour = ["TIME_HOUR"], TimeMin = ["TIME_MIN"], TimeMon = ["TIME_MON"],
        TimeSec = ["TIME_SEC"], TimeWday = ["TIME_WDAY"], TimeYear = ["TIME_YEAR"],
        Tx = ["TX"], UniqueId = ["UNIQUE_ID"], UrlencodedError = ["URLENCODED_ERROR"],
        User = ["USER"], UserId = ["USERID"], UseragentIp = ["USERAGENT_IP"],
        WebappId = ["WEBAPPID"], WebserverErrorLog = ["WEBSERVER_ERROR_LOG"], Xml = ["XML"],
    }
}

impl Var {
    /// Whether the variable is a collection (takes a `:key`).
    pub fn is_collection(self) -> bool {
        use Var::*;
        matches!(
            self,
            Args | ArgsGet
                | ArgsPost
                | ArgsNames
                | ArgsGetNames
                | ArgsPostNames
                | Env
                | Files
                | FilesNames
                | FilesSizes
                | FilesTmpNames
                | FilesTmpContent
                | Geo
                | Global
                | Ip
                | MatchedVars
                | MatchedVarsNames
                | MultipartPartHeaders
                | RequestCookies
                | RequestCookiesNames
                | RequestHeaders
                | RequestHeadersNames
                | Resource
                | ResponseHeaders
                | ResponseHeadersNames
                | Var::Rule
                | Session
                | Tx
                | User
                | Xml
        )
    }
}

names! {
    /// A SecLang operator.
    Op {
        /// Regular expression.
        Rx = ["rx"], Pm = ["pm"], PmFromFile = ["pmFromFile", "pmf"],
        DetectSqli = ["detectSQLi"], DetectXss = ["detectXSS"], Within = ["within"],
        ValidateByteRange = ["validateByteRange"],
        ValidateUrlEncoding = ["validateUrlEncoding"],
        ValidateUtf8Encoding = ["validateUtf8Encoding"],
        Eq = ["eq"], Ge = ["ge"], Gt = ["gt"], Le = ["le"], Lt = ["lt"],
        StrEq = ["streq"], StrMatch = ["strmatch"], BeginsWith = ["beginsWith"],
        EndsWith = ["endsWith"], Contains = ["contains"], ContainsWord = ["containsWord"],
        IpMatch = ["ipMatch"], IpMatchFromFile = ["ipMatchFromFile", "ipMatchF"],
        UnconditionalMatch = ["unconditionalMatch"], NoMatch = ["noMatch"],
        VerifyCc = ["verifyCC"], VerifyCpf = ["verifyCPF"], VerifySsn = ["verifySSN"],
        ValidateDtd = ["validateDTD"], ValidateSchema = ["validateSchema"],
        ValidateHash = ["validateHash"], Rbl = ["rbl"], GeoLookup = ["geoLookup"],
        InspectFile = ["inspectFile"], FuzzyHash = ["fuzzyHash"], GsbLookup = ["gsbLookup"],
        Rsub = ["rsub"],
    }
}

names! {
    /// A transformation (`t:`).
    Transform {
        /// Clears the transformations inherited so far.
        None = ["none"],
        Base64Decode = ["base64Decode"], Base64DecodeExt = ["base64DecodeExt"],
        Base64Encode = ["base64Encode"], CmdLine = ["cmdLine"],
        CompressWhitespace = ["compressWhitespace"], CssDecode = ["cssDecode"],
        EscapeSeqDecode = ["escapeSeqDecode"], HexDecode = ["hexDecode"],
        HexEncode = ["hexEncode"], HtmlEntityDecode = ["htmlEntityDecode"],
        JsDecode = ["jsDecode"], Length = ["length"], Lowercase = ["lowercase"],
        Md5 = ["md5"], NormalisePath = ["normalisePath", "normalizePath"],
        NormalisePathWin = ["normalisePathWin", "normalizePathWin"],
        ParityEven7bit = ["parityEven7bit"], ParityOdd7bit = ["parityOdd7bit"],
        ParityZero7bit = ["parityZero7bit"], RemoveComments = ["removeComments"],
        RemoveCommentsChar = ["removeCommentsChar"], RemoveNulls = ["removeNulls"],
        RemoveWhitespace = ["removeWhitespace"], ReplaceComments = ["replaceComments"],
        ReplaceNulls = ["replaceNulls"], Sha1 = ["sha1"], SqlHexDecode = ["sqlHexDecode"],
        Trim = ["trim"], TrimLeft = ["trimLeft"], TrimRight = ["trimRight"],
        Uppercase = ["uppercase"], UrlDecode = ["urlDecode"], UrlDecodeUni = ["urlDecodeUni"],
        UrlEncode = ["urlEncode"], Utf8ToUnicode = ["utf8toUnicode"],
    }
}

/// A rule's phase (`phase:1`…`phase:5`, or `request` = 2, `response` = 4, `logging` = 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Phase(pub u8);

/// A disruptive action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disruptive {
    /// `pass`: continue with the next rule.
    Pass,
    /// `block`: whatever `SecDefaultAction` of the phase says.
    Block,
    /// `deny`: stop and refuse.
    Deny,
    /// `drop`: stop and close the connection.
    Drop,
    /// `allow[:phase|request]`: stop inspecting (the phase, the request, or all).
    Allow(Option<String>),
    /// `redirect:URL`.
    Redirect(String),
    /// `proxy:URL` (refused by the compiler: Rampart routes by its own config).
    Proxy(String),
    /// `pause:MS` (refused by the compiler).
    Pause(String),
}

/// `setvar:[!]COLLECTION.NAME[=[+|-]VALUE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVar {
    /// The collection (`tx`, `ip`, `session`, …), lower-cased.
    pub collection: String,
    /// The member's name (may contain macros).
    pub name: String,
    /// What to do.
    pub op: SetVarOp,
}

/// What a `setvar` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetVarOp {
    /// `=VALUE` (or no `=`: the value `1`).
    Set(String),
    /// `=+VALUE`.
    Add(String),
    /// `=-VALUE`.
    Sub(String),
    /// `!NAME`: remove the member.
    Delete,
}

/// A `ctl:` action: changes the engine's settings for the current transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Ctl {
    /// `ctl:ruleEngine=On|Off|DetectionOnly`.
    RuleEngine(EngineMode),
    /// `ctl:ruleRemoveById=ID|RANGE`.
    RuleRemoveById(IdRange),
    /// `ctl:ruleRemoveByTag=REGEX`.
    RuleRemoveByTag(String),
    /// `ctl:ruleRemoveTargetById=ID;TARGETS`.
    RuleRemoveTargetById(IdRange, Vec<VarSel>),
    /// `ctl:ruleRemoveTargetByTag=REGEX;TARGETS`.
    RuleRemoveTargetByTag(String, Vec<VarSel>),
    /// `ctl:ruleRemoveTargetByMsg=REGEX;TARGETS`.
    RuleRemoveTargetByMsg(String, Vec<VarSel>),
    /// `ctl:requestBodyProcessor=URLENCODED|MULTIPART|XML|JSON`.
    RequestBodyProcessor(BodyProcessor),
    /// `ctl:forceRequestBodyVariable=On|Off`.
    ForceRequestBodyVariable(bool),
    /// `ctl:requestBodyAccess=On|Off`.
    RequestBodyAccess(bool),
    /// `ctl:responseBodyAccess=On|Off`.
    ResponseBodyAccess(bool),
    /// `ctl:requestBodyLimit=N`.
    RequestBodyLimit(u64),
    /// `ctl:auditEngine`, `ctl:auditLogParts`, `ctl:debugLogLevel`, …: about
    /// ModSecurity's own logs; accepted without effect.
    Ignored(String),
}

/// A request body processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart,
    /// XML.
    Xml,
    /// JSON.
    Json,
}

/// An action of a rule, `SecAction` or `SecDefaultAction`.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `id:N`.
    Id(u64),
    /// `phase:N`.
    Phase(Phase),
    /// `chain`: the next rule is part of this one.
    Chain,
    /// `msg:TEXT` (may contain macros).
    Msg(String),
    /// `logdata:TEXT` (may contain macros).
    LogData(String),
    /// `tag:TEXT`.
    Tag(String),
    /// `severity:0-7` or its name.
    Severity(u8),
    /// `ver:TEXT`.
    Ver(String),
    /// `rev:TEXT`.
    Rev(String),
    /// `maturity:N`.
    Maturity(u8),
    /// `accuracy:N`.
    Accuracy(u8),
    /// `t:NAME`.
    Transform(Transform),
    /// `setvar:…`.
    SetVar(SetVar),
    /// `capture`: regex groups into `TX.0`…`TX.9`.
    Capture,
    /// `multiMatch`: test the value after every transformation.
    MultiMatch,
    /// `skipAfter:MARKER`.
    SkipAfter(String),
    /// `skip:N`.
    Skip(u32),
    /// `ctl:…`.
    Ctl(Ctl),
    /// `pass`, `block`, `deny`, `drop`, `allow`, `redirect`, …
    Disruptive(Disruptive),
    /// `status:N`.
    Status(u16),
    /// `log`.
    Log,
    /// `nolog`.
    NoLog,
    /// `auditlog`.
    AuditLog,
    /// `noauditlog`.
    NoAuditLog,
    /// `initcol:COLLECTION=KEY`.
    InitCol(String, String),
    /// `setenv:NAME=VALUE`.
    SetEnv(String),
    /// `expirevar:…`, `deprecatevar:…`, `setuid`, `setsid`, `setrsc`, `sanitise*`,
    /// `xmlns`, `exec`, `append`, `prepend`: recognised; the compiler decides what each
    /// means for Rampart (some are refused there with a reason).
    Other(String, Option<String>),
}
