//! From a logical line to a typed [`Directive`].
//!
//! Quoting follows Apache's configuration syntax, which ModSecurity inherits: an argument
//! is a run of non-space characters or a quoted string (`"…"` or `'…'`, in which a
//! backslash before the quote character escapes it and every other backslash stays, so
//! regular expressions pass through untouched). Inside an action list, a value may be
//! single-quoted to hold commas.

use super::ast::*;

/// A problem found in one logical line, at a byte offset of that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    pub at: usize,
    pub message: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
}

impl LineError {
    fn new(at: usize, message: impl Into<String>) -> Self {
        LineError {
            at,
            message: message.into(),
            expected: None,
            hint: None,
        }
    }

    fn expected(mut self, e: impl Into<String>) -> Self {
        self.expected = Some(e.into());
        self
    }

    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

type Result<T> = std::result::Result<T, LineError>;

/// One argument of a directive, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arg {
    pub text: String,
    /// Byte offset of the argument's first character (inside its quotes) in the line.
    pub at: usize,
}

/// Splits a logical line into arguments.
pub(crate) fn split_args(line: &str) -> Result<Vec<Arg>> {
    let b = line.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Ok(args);
        }
        if b[i] == b'"' || b[i] == b'\'' {
            let quote = b[i];
            let open = i;
            i += 1;
            let at = i;
            let mut text = Vec::new();
            loop {
                match b.get(i) {
                    None => {
                        return Err(LineError::new(open, "quoted argument is not closed")
                            .expected(format!("a closing {}", quote as char))
                            .hint("a line that ends in a backslash continues on the next one; check the continuation lines"));
                    }
                    Some(&c) if c == quote => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if b.get(i + 1) == Some(&quote) => {
                        text.push(quote);
                        i += 2;
                    }
                    Some(&c) => {
                        text.push(c);
                        i += 1;
                    }
                }
            }
            if i < b.len() && !b[i].is_ascii_whitespace() {
                return Err(LineError::new(i, "text right after a closing quote")
                    .expected("a space between arguments"));
            }
            args.push(Arg {
                text: String::from_utf8_lossy(&text).into_owned(),
                at,
            });
        } else {
            let at = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            args.push(Arg {
                text: line[at..i].to_owned(),
                at,
            });
        }
    }
}

/// What a directive line turned into.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    Directive(Directive),
    /// `Include PATTERN`: the loader expands it.
    Include(Arg),
}

/// Parses one logical line.
pub(crate) fn parse_line(line: &str) -> Result<Parsed> {
    let args = split_args(line)?;
    let Some((name, rest)) = args.split_first() else {
        return Err(LineError::new(0, "empty directive"));
    };
    let lname = name.text.to_ascii_lowercase();
    let count = |min: usize, max: usize, usage: &str| -> Result<()> {
        if rest.len() < min || rest.len() > max {
            let at = rest.get(max).map_or(line.len(), |a| a.at);
            return Err(LineError::new(
                at,
                format!(
                    "{} takes {}, found {}",
                    name.text,
                    if min == max {
                        format!("{min} argument(s)")
                    } else {
                        format!("{min} to {max} arguments")
                    },
                    rest.len()
                ),
            )
            .expected(format!("{} {usage}", name.text)));
        }
        Ok(())
    };
    let d = match lname.as_str() {
        "include" | "includeoptional" => {
            count(1, 1, "PATH")?;
            return Ok(Parsed::Include(rest[0].clone()));
        }
        "secrule" => {
            count(2, 3, "VARIABLES \"OPERATOR\" \"ACTIONS\"")?;
            let variables = parse_vars(&rest[0].text, rest[0].at)?;
            let operator = parse_operator(&rest[1].text, rest[1].at)?;
            let actions = match rest.get(2) {
                Some(a) => parse_actions(&a.text, a.at)?,
                None => Vec::new(),
            };
            Directive::Rule(Rule {
                variables,
                operator,
                actions,
            })
        }
        "secaction" => {
            count(1, 1, "\"ACTIONS\"")?;
            Directive::Action(parse_actions(&rest[0].text, rest[0].at)?)
        }
        "secdefaultaction" => {
            count(1, 1, "\"ACTIONS\"")?;
            Directive::DefaultAction(parse_actions(&rest[0].text, rest[0].at)?)
        }
        "secmarker" => {
            count(1, 1, "NAME")?;
            Directive::Marker(rest[0].text.clone())
        }
        "secruleengine" => {
            count(1, 1, "On|Off|DetectionOnly")?;
            Directive::RuleEngine(engine_mode(&rest[0])?)
        }
        "secrequestbodyaccess" => {
            count(1, 1, "On|Off")?;
            Directive::RequestBodyAccess(on_off(&rest[0])?)
        }
        "secresponsebodyaccess" => {
            count(1, 1, "On|Off")?;
            Directive::ResponseBodyAccess(on_off(&rest[0])?)
        }
        "secrequestbodylimit" => {
            count(1, 1, "BYTES")?;
            Directive::RequestBodyLimit(number(&rest[0])?)
        }
        "secrequestbodynofileslimit" => {
            count(1, 1, "BYTES")?;
            Directive::RequestBodyNoFilesLimit(number(&rest[0])?)
        }
        "secrequestbodyinmemorylimit" => {
            count(1, 1, "BYTES")?;
            Directive::RequestBodyInMemoryLimit(number(&rest[0])?)
        }
        "secrequestbodylimitaction" => {
            count(1, 1, "Reject|ProcessPartial")?;
            Directive::RequestBodyLimitAction(limit_action(&rest[0])?)
        }
        "secresponsebodylimit" => {
            count(1, 1, "BYTES")?;
            Directive::ResponseBodyLimit(number(&rest[0])?)
        }
        "secresponsebodylimitaction" => {
            count(1, 1, "Reject|ProcessPartial")?;
            Directive::ResponseBodyLimitAction(limit_action(&rest[0])?)
        }
        "secresponsebodymimetype" => {
            count(1, usize::MAX, "TYPE...")?;
            Directive::ResponseBodyMimeType(
                rest.iter()
                    .flat_map(|a| a.text.split_ascii_whitespace())
                    .map(str::to_ascii_lowercase)
                    .collect(),
            )
        }
        "secresponsebodymimetypesclear" => {
            count(0, 0, "")?;
            Directive::ResponseBodyMimeTypesClear
        }
        "secargumentslimit" => {
            count(1, 1, "N")?;
            Directive::ArgumentsLimit(number(&rest[0])?)
        }
        "secrequestbodyjsondepthlimit" => {
            count(1, 1, "N")?;
            Directive::RequestBodyJsonDepthLimit(number(&rest[0])?)
        }
        "secargumentseparator" => {
            count(1, 1, "CHARACTER")?;
            match rest[0].text.as_bytes() {
                [c] => Directive::ArgumentSeparator(*c),
                _ => {
                    return Err(LineError::new(
                        rest[0].at,
                        "argument separator must be one character",
                    )
                    .expected("a single character such as & or ;"));
                }
            }
        }
        "secruleremovebyid" => {
            count(1, usize::MAX, "ID|FIRST-LAST ...")?;
            let mut ids = Vec::new();
            for a in rest {
                for part in a.text.split([',', ' ']).filter(|p| !p.is_empty()) {
                    ids.push(id_range(part, a.at)?);
                }
            }
            Directive::RemoveById(ids)
        }
        "secruleremovebytag" => {
            count(1, 1, "REGEX")?;
            Directive::RemoveByTag(rest[0].text.clone())
        }
        "secruleremovebymsg" => {
            count(1, 1, "REGEX")?;
            Directive::RemoveByMsg(rest[0].text.clone())
        }
        "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
            count(2, 3, "RULE \"TARGETS\" [\"REPLACED_TARGET\"]")?;
            let targets = parse_vars(&rest[1].text, rest[1].at)?;
            let replace = match rest.get(2) {
                Some(a) => Some(parse_vars(&a.text, a.at)?),
                None => None,
            };
            match lname.as_str() {
                "secruleupdatetargetbyid" => {
                    let mut ids = Vec::new();
                    for part in rest[0].text.split([',', ' ']).filter(|p| !p.is_empty()) {
                        ids.push(id_range(part, rest[0].at)?);
                    }
                    Directive::UpdateTargetById {
                        ids,
                        targets,
                        replace,
                    }
                }
                "secruleupdatetargetbytag" => Directive::UpdateTargetByTag {
                    tag: rest[0].text.clone(),
                    targets,
                    replace,
                },
                _ => Directive::UpdateTargetByMsg {
                    msg: rest[0].text.clone(),
                    targets,
                    replace,
                },
            }
        }
        "secruleupdateactionbyid" => {
            count(2, 2, "ID[:CHAIN_OFFSET] \"ACTIONS\"")?;
            let (id, offset) = match rest[0].text.split_once(':') {
                Some((id, off)) => (id, Some(off)),
                None => (rest[0].text.as_str(), None),
            };
            let id = rule_id(id, rest[0].at)?;
            let chain_offset = match offset {
                Some(o) => o.parse().map_err(|_| {
                    LineError::new(rest[0].at, format!("invalid chain offset `{o}`"))
                        .expected("ID or ID:N")
                })?,
                None => 0,
            };
            Directive::UpdateActionById {
                id,
                chain_offset,
                actions: parse_actions(&rest[1].text, rest[1].at)?,
            }
        }
        "seccomponentsignature" => {
            count(1, 1, "TEXT")?;
            Directive::ComponentSignature(rest[0].text.clone())
        }
        "seccollectiontimeout" => {
            count(1, 1, "SECONDS")?;
            Directive::CollectionTimeout(number(&rest[0])?)
        }
        "secpcrematchlimit" | "secpcrematchlimitrecursion" => {
            count(1, 1, "N")?;
            Directive::PcreMatchLimit(number(&rest[0])?)
        }
        "secremoterules" | "secremoterulesfailaction" => {
            return Err(LineError::new(0, format!("{} is not supported", name.text))
                .hint("Rampart never fetches rules over the network at load: download the rules and Include the file"));
        }
        n if IGNORED.iter().any(|i| i.eq_ignore_ascii_case(n)) => {
            Directive::Ignored(name.text.clone())
        }
        _ => {
            let mut e = LineError::new(0, format!("unknown directive `{}`", name.text))
                .expected("a SecLang directive such as SecRule, SecAction, SecMarker or Include");
            if let Some(s) = closest(&lname, DIRECTIVES.iter().chain(IGNORED).copied()) {
                e = e.hint(format!("did you mean `{s}`?"));
            }
            return Err(e);
        }
    };
    Ok(Parsed::Directive(d))
}

/// Directives with an effect.
const DIRECTIVES: &[&str] = &[
    "Include",
    "SecRule",
    "SecAction",
    "SecDefaultAction",
    "SecMarker",
    "SecRuleEngine",
    "SecRequestBodyAccess",
    "SecResponseBodyAccess",
    "SecRequestBodyLimit",
    "SecRequestBodyNoFilesLimit",
    "SecRequestBodyInMemoryLimit",
    "SecRequestBodyLimitAction",
    "SecResponseBodyLimit",
    "SecResponseBodyLimitAction",
    "SecResponseBodyMimeType",
    "SecResponseBodyMimeTypesClear",
    "SecArgumentsLimit",
    "SecRequestBodyJsonDepthLimit",
    "SecArgumentSeparator",
    "SecRuleRemoveById",
    "SecRuleRemoveByTag",
    "SecRuleRemoveByMsg",
    "SecRuleUpdateTargetById",
    "SecRuleUpdateTargetByTag",
    "SecRuleUpdateTargetByMsg",
    "SecRuleUpdateActionById",
    "SecComponentSignature",
    "SecCollectionTimeout",
    "SecPcreMatchLimit",
    "SecPcreMatchLimitRecursion",
];

/// Directives about ModSecurity's own logs, files and host integration: accepted without
/// effect, because Rampart has its own event log, never spools bodies to disk and does
/// not run inside a web server.
const IGNORED: &[&str] = &[
    "SecAuditEngine",
    "SecAuditLog",
    "SecAuditLog2",
    "SecAuditLogDirMode",
    "SecAuditLogFileMode",
    "SecAuditLogFormat",
    "SecAuditLogParts",
    "SecAuditLogRelevantStatus",
    "SecAuditLogStorageDir",
    "SecAuditLogType",
    "SecDebugLog",
    "SecDebugLogLevel",
    "SecTmpDir",
    "SecDataDir",
    "SecUploadDir",
    "SecUploadFileLimit",
    "SecUploadFileMode",
    "SecUploadKeepFiles",
    "SecTmpSaveUploadedFiles",
    "SecServerSignature",
    "SecStatusEngine",
    "SecUnicodeMapFile",
    "SecUnicodeCodePage",
    "SecWebAppId",
    "SecSensorId",
    "SecHashEngine",
    "SecHashKey",
    "SecHashParam",
    "SecHashMethodRx",
    "SecHashMethodPm",
    "SecGeoLookupDb",
    "SecGsbLookupDb",
    "SecHttpBlKey",
    "SecConnEngine",
    "SecContentInjection",
    "SecStreamOutBodyInspection",
    "SecStreamInBodyInspection",
    "SecXmlExternalEntity",
    "SecCookieFormat",
    "SecCookieV0Separator",
    "SecRuleInheritance",
    "SecInterceptOnError",
    "SecDisableBackendCompression",
    "SecChrootDir",
    "SecGuardianLog",
    "SecReadStateLimit",
    "SecWriteStateLimit",
    "SecConnReadStateLimit",
    "SecConnWriteStateLimit",
];

fn on_off(a: &Arg) -> Result<bool> {
    match a.text.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(LineError::new(a.at, format!("`{}` is not On or Off", a.text)).expected("On|Off")),
    }
}

fn engine_mode(a: &Arg) -> Result<EngineMode> {
    engine_mode_str(&a.text).ok_or_else(|| {
        LineError::new(a.at, format!("`{}` is not an engine mode", a.text))
            .expected("On|Off|DetectionOnly")
    })
}

fn engine_mode_str(s: &str) -> Option<EngineMode> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Some(EngineMode::On),
        "off" => Some(EngineMode::Off),
        "detectiononly" => Some(EngineMode::DetectionOnly),
        _ => None,
    }
}

fn limit_action(a: &Arg) -> Result<LimitAction> {
    match a.text.to_ascii_lowercase().as_str() {
        "reject" => Ok(LimitAction::Reject),
        "processpartial" => Ok(LimitAction::ProcessPartial),
        _ => Err(
            LineError::new(a.at, format!("`{}` is not a limit action", a.text))
                .expected("Reject|ProcessPartial"),
        ),
    }
}

fn number(a: &Arg) -> Result<u64> {
    a.text.parse().map_err(|_| {
        LineError::new(a.at, format!("`{}` is not a number", a.text))
            .expected("a whole number, e.g. 131072")
    })
}

fn rule_id(s: &str, at: usize) -> Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            LineError::new(at, format!("`{s}` is not a rule id"))
                .expected("a positive whole number, e.g. 942100")
        })
}

fn id_range(s: &str, at: usize) -> Result<IdRange> {
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (rule_id(a, at)?, rule_id(b, at)?),
        None => {
            let id = rule_id(s, at)?;
            (id, id)
        }
    };
    if first > last {
        return Err(LineError::new(at, format!("empty id range `{s}`"))
            .expected("FIRST-LAST with FIRST <= LAST"));
    }
    Ok(IdRange { first, last })
}

/// Parses a target list: `VAR[:KEY]|!VAR:KEY|&VAR…`.
pub(crate) fn parse_vars(s: &str, at: usize) -> Result<Vec<VarSel>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        let mut exclude = false;
        let mut count = false;
        match b.get(i) {
            Some(b'!') => {
                exclude = true;
                i += 1;
            }
            Some(b'&') => {
                count = true;
                i += 1;
            }
            _ => {}
        }
        let name_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let name = &s[name_start..i];
        if name.is_empty() {
            return Err(LineError::new(at + start, "a target is missing")
                .expected("a variable such as ARGS, REQUEST_HEADERS:User-Agent or !ARGS:foo"));
        }
        let Some(var) = Var::from_name(name) else {
            let mut e = LineError::new(at + name_start, format!("unknown variable `{name}`"))
                .expected("a SecLang variable such as ARGS, REQUEST_URI or TX:name");
            if let Some(c) = closest(name, Var::ALL.iter().map(|(n, _)| *n)) {
                e = e.hint(format!("did you mean `{c}`?"));
            }
            return Err(e);
        };
        let mut key = None;
        if b.get(i) == Some(&b':') {
            i += 1;
            let key_start = i;
            if !var.is_collection() {
                return Err(LineError::new(
                    at + key_start,
                    format!("{var} is not a collection and takes no `:key`"),
                )
                .hint(format!("write {var} alone")));
            }
            if var != Var::Xml && b.get(i) == Some(&b'/') {
                // `/regex/`: up to the next unescaped slash.
                i += 1;
                let rx_start = i;
                while i < b.len() && b[i] != b'/' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err(LineError::new(
                        at + key_start,
                        "regular expression key is not closed",
                    )
                    .expected("/REGEX/"));
                }
                key = Some(VarKey::Regex(s[rx_start..i].to_owned()));
                i += 1;
            } else if b.get(i) == Some(&b'\'') {
                i += 1;
                let q_start = i;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err(LineError::new(at + key_start, "quoted key is not closed")
                        .expected("'KEY'"));
                }
                let inner = &s[q_start..i];
                i += 1;
                key = Some(
                    match inner.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
                        Some(rx) if var != Var::Xml => VarKey::Regex(rx.to_owned()),
                        _ => VarKey::Name(inner.to_owned()),
                    },
                );
            } else {
                while i < b.len() && b[i] != b'|' {
                    i += 1;
                }
                let k = s[key_start..i].trim_end();
                if k.is_empty() {
                    return Err(
                        LineError::new(at + key_start, format!("empty key after {var}:"))
                            .expected("a member name or /REGEX/"),
                    );
                }
                key = Some(VarKey::Name(k.to_owned()));
            }
        }
        if exclude && key.is_none() {
            // `!ARGS` would exclude everything; ModSecurity requires a member.
            return Err(LineError::new(
                at + start,
                format!("`!{var}` excludes nothing in particular"),
            )
            .expected(format!("!{var}:NAME or !{var}:/REGEX/")));
        }
        out.push(VarSel {
            var,
            key,
            count,
            exclude,
        });
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i) {
            None => return Ok(out),
            Some(b'|') => i += 1,
            Some(_) => {
                return Err(LineError::new(at + i, "unexpected text after a target")
                    .expected("| between targets"));
            }
        }
    }
}

/// Parses an operator: `[!]@name param`, or a bare regular expression.
pub(crate) fn parse_operator(s: &str, at: usize) -> Result<OperatorSpec> {
    let trimmed = s.trim_start();
    let mut i = s.len() - trimmed.len();
    let mut negated = false;
    if s[i..].starts_with('!') {
        negated = true;
        i += 1;
    }
    if !s[i..].starts_with('@') {
        return Ok(OperatorSpec {
            op: Op::Rx,
            negated,
            param: s[i..].to_owned(),
        });
    }
    let name_start = i + 1;
    let name_end = s[name_start..]
        .find(|c: char| c.is_ascii_whitespace())
        .map_or(s.len(), |n| name_start + n);
    let name = &s[name_start..name_end];
    let Some(op) = Op::from_name(name) else {
        let mut e = LineError::new(at + i, format!("unknown operator `@{name}`"))
            .expected("an operator such as @rx, @pm, @eq, @detectSQLi");
        if let Some(c) = closest(name, Op::ALL.iter().map(|(n, _)| *n)) {
            e = e.hint(format!("did you mean `@{c}`?"));
        }
        return Err(e);
    };
    let param = s[name_end..].trim_start().to_owned();
    let takes_none = matches!(
        op,
        Op::UnconditionalMatch
            | Op::NoMatch
            | Op::GeoLookup
            | Op::DetectSqli
            | Op::DetectXss
            | Op::ValidateUrlEncoding
            | Op::ValidateUtf8Encoding
    );
    if param.is_empty() && !takes_none {
        return Err(
            LineError::new(at + name_end, format!("@{op} needs a parameter"))
                .expected(format!("\"@{op} VALUE\"")),
        );
    }
    Ok(OperatorSpec { op, negated, param })
}

/// Parses an action list: `name[:value], …` with single-quoted values holding commas.
pub(crate) fn parse_actions(s: &str, at: usize) -> Result<Vec<Action>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b':' && b[i] != b',' {
            i += 1;
        }
        let name = s[start..i].trim();
        if name.is_empty() {
            return Err(LineError::new(at + start, "empty action")
                .expected("an action such as id:1, phase:2, pass, t:lowercase"));
        }
        let mut value = None;
        if b.get(i) == Some(&b':') {
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if b.get(i) == Some(&b'\'') {
                let open = i;
                i += 1;
                let mut v = Vec::new();
                loop {
                    match b.get(i) {
                        None => {
                            return Err(LineError::new(
                                at + open,
                                format!("value of `{name}` is not closed"),
                            )
                            .expected("a closing '"));
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if b.get(i + 1) == Some(&b'\'') => {
                            v.push(b'\'');
                            i += 2;
                        }
                        Some(&c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                value = Some(String::from_utf8_lossy(&v).into_owned());
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < b.len() && b[i] != b',' {
                    return Err(LineError::new(
                        at + i,
                        format!("text after the quoted value of `{name}`"),
                    )
                    .expected(", before the next action"));
                }
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = Some(s[vs..i].trim_end().to_owned());
            }
        }
        out.push(action(name, value, at + start)?);
        if b.get(i) == Some(&b',') {
            i += 1;
        }
    }
}

fn need(name: &str, value: Option<String>, at: usize, form: &str) -> Result<String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(LineError::new(at, format!("`{name}` needs a value")).expected(form.to_owned())),
    }
}

fn none(name: &str, value: &Option<String>, at: usize) -> Result<()> {
    match value {
        None => Ok(()),
        Some(_) => {
            Err(LineError::new(at, format!("`{name}` takes no value")).expected(name.to_owned()))
        }
    }
}

fn small_number<T: std::str::FromStr>(name: &str, v: &str, at: usize, form: &str) -> Result<T> {
    v.trim().parse().map_err(|_| {
        LineError::new(at, format!("`{v}` is not a valid value for `{name}`"))
            .expected(form.to_owned())
    })
}

/// Builds one typed action.
fn action(name: &str, value: Option<String>, at: usize) -> Result<Action> {
    let lname = name.to_ascii_lowercase();
    Ok(match lname.as_str() {
        "id" => {
            let v = need(name, value, at, "id:NUMBER")?;
            Action::Id(rule_id(&v, at)?)
        }
        "phase" => {
            let v = need(
                name,
                value,
                at,
                "phase:1..5 (or request, response, logging)",
            )?;
            let p = match v.to_ascii_lowercase().as_str() {
                "request" => 2,
                "response" => 4,
                "logging" => 5,
                n => match n.parse::<u8>() {
                    Ok(p @ 1..=5) => p,
                    _ => {
                        return Err(LineError::new(at, format!("`{v}` is not a phase"))
                            .expected("phase:1..5 (or request, response, logging)"));
                    }
                },
            };
            Action::Phase(Phase(p))
        }
        "chain" => {
            none(name, &value, at)?;
            Action::Chain
        }
        "msg" => Action::Msg(value.unwrap_or_default()),
        "logdata" => Action::LogData(value.unwrap_or_default()),
        "tag" => Action::Tag(need(name, value, at, "tag:'TEXT'")?),
        "ver" => Action::Ver(value.unwrap_or_default()),
        "rev" => Action::Rev(value.unwrap_or_default()),
        "severity" => {
            let v = need(name, value, at, "severity:0..7 or a name such as CRITICAL")?;
            const NAMES: [&str; 8] = [
                "EMERGENCY",
                "ALERT",
                "CRITICAL",
                "ERROR",
                "WARNING",
                "NOTICE",
                "INFO",
                "DEBUG",
            ];
            let s = NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(v.trim()))
                .map(|p| p as u8)
                .or_else(|| v.trim().parse::<u8>().ok().filter(|&n| n <= 7));
            match s {
                Some(s) => Action::Severity(s),
                None => {
                    return Err(LineError::new(at, format!("`{v}` is not a severity"))
                        .expected("0..7 or EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG"));
                }
            }
        }
        "maturity" => Action::Maturity(small_number(
            name,
            &need(name, value, at, "maturity:1..9")?,
            at,
            "maturity:1..9",
        )?),
        "accuracy" => Action::Accuracy(small_number(
            name,
            &need(name, value, at, "accuracy:1..9")?,
            at,
            "accuracy:1..9",
        )?),
        "t" => {
            let v = need(name, value, at, "t:NAME, e.g. t:lowercase")?;
            match Transform::from_name(v.trim()) {
                Some(t) => Action::Transform(t),
                None => {
                    let mut e = LineError::new(at, format!("unknown transformation `{v}`"))
                        .expected("a transformation such as t:none, t:lowercase, t:urlDecodeUni");
                    if let Some(c) = closest(&v, Transform::ALL.iter().map(|(n, _)| *n)) {
                        e = e.hint(format!("did you mean `t:{c}`?"));
                    }
                    return Err(e);
                }
            }
        }
        "setvar" => Action::SetVar(setvar(
            &need(name, value, at, "setvar:COLLECTION.NAME[=[+|-]VALUE]")?,
            at,
        )?),
        "capture" => {
            none(name, &value, at)?;
            Action::Capture
        }
        "multimatch" => {
            none(name, &value, at)?;
            Action::MultiMatch
        }
        "skipafter" => Action::SkipAfter(need(name, value, at, "skipAfter:MARKER")?),
        "skip" => Action::Skip(small_number(
            name,
            &need(name, value, at, "skip:N")?,
            at,
            "skip:N (N >= 1)",
        )?),
        "ctl" => Action::Ctl(ctl(&need(name, value, at, "ctl:OPTION=VALUE")?, at)?),
        "pass" | "block" | "deny" | "drop" => {
            none(name, &value, at)?;
            Action::Disruptive(match lname.as_str() {
                "pass" => Disruptive::Pass,
                "block" => Disruptive::Block,
                "deny" => Disruptive::Deny,
                _ => Disruptive::Drop,
            })
        }
        "allow" => {
            if let Some(v) = &value {
                if !matches!(v.to_ascii_lowercase().as_str(), "phase" | "request") {
                    return Err(LineError::new(at, format!("`allow:{v}` is not valid"))
                        .expected("allow, allow:phase or allow:request"));
                }
            }
            Action::Disruptive(Disruptive::Allow(value))
        }
        "redirect" => {
            Action::Disruptive(Disruptive::Redirect(need(name, value, at, "redirect:URL")?))
        }
        "proxy" => Action::Disruptive(Disruptive::Proxy(need(name, value, at, "proxy:URL")?)),
        "pause" => Action::Disruptive(Disruptive::Pause(need(
            name,
            value,
            at,
            "pause:MILLISECONDS",
        )?)),
        "status" => {
            let v = need(name, value, at, "status:100..599")?;
            match v.trim().parse::<u16>() {
                Ok(s @ 100..=599) => Action::Status(s),
                _ => {
                    return Err(LineError::new(at, format!("`{v}` is not an HTTP status"))
                        .expected("status:100..599"));
                }
            }
        }
        "log" => {
            none(name, &value, at)?;
            Action::Log
        }
        "nolog" => {
            none(name, &value, at)?;
            Action::NoLog
        }
        "auditlog" => {
            none(name, &value, at)?;
            Action::AuditLog
        }
        "noauditlog" => {
            none(name, &value, at)?;
            Action::NoAuditLog
        }
        "initcol" => {
            let v = need(name, value, at, "initcol:COLLECTION=KEY")?;
            match v.split_once('=') {
                Some((c, k)) if !c.trim().is_empty() => {
                    Action::InitCol(c.trim().to_ascii_lowercase(), k.to_owned())
                }
                _ => {
                    return Err(LineError::new(at, format!("`initcol:{v}` is not valid"))
                        .expected("initcol:COLLECTION=KEY, e.g. initcol:ip=%{REMOTE_ADDR}"));
                }
            }
        }
        "setenv" => Action::SetEnv(need(name, value, at, "setenv:NAME=VALUE")?),
        "expirevar"
        | "deprecatevar"
        | "setuid"
        | "setsid"
        | "setrsc"
        | "sanitisearg"
        | "sanitisematched"
        | "sanitisematchedbytes"
        | "sanitiserequestheader"
        | "sanitiseresponseheader"
        | "xmlns"
        | "exec"
        | "append"
        | "prepend" => Action::Other(name.to_owned(), value),
        _ => {
            const KNOWN: &[&str] = &[
                "id",
                "phase",
                "chain",
                "msg",
                "logdata",
                "tag",
                "ver",
                "rev",
                "severity",
                "maturity",
                "accuracy",
                "t",
                "setvar",
                "capture",
                "multiMatch",
                "skipAfter",
                "skip",
                "ctl",
                "pass",
                "block",
                "deny",
                "drop",
                "allow",
                "redirect",
                "proxy",
                "pause",
                "status",
                "log",
                "nolog",
                "auditlog",
                "noauditlog",
                "initcol",
                "setenv",
                "expirevar",
                "deprecatevar",
                "setuid",
                "setsid",
                "setrsc",
                "sanitiseArg",
                "sanitiseMatched",
                "sanitiseMatchedBytes",
                "sanitiseRequestHeader",
                "sanitiseResponseHeader",
                "xmlns",
                "exec",
                "append",
                "prepend",
            ];
            let mut e = LineError::new(at, format!("unknown action `{name}`"))
                .expected("an action such as id, phase, msg, t, setvar, block, pass");
            if let Some(c) = closest(name, KNOWN.iter().copied()) {
                e = e.hint(format!("did you mean `{c}`?"));
            }
            return Err(e);
        }
    })
}

fn setvar(v: &str, at: usize) -> Result<SetVar> {
    let bad = || {
        LineError::new(at, format!("`setvar:{v}` is not valid"))
            .expected("setvar:COLLECTION.NAME=VALUE, =+N, =-N, or setvar:!COLLECTION.NAME")
    };
    let (target, op) = if let Some(t) = v.strip_prefix('!') {
        if t.contains('=') {
            return Err(bad());
        }
        (t, SetVarOp::Delete)
    } else {
        match v.split_once('=') {
            Some((t, val)) => {
                let op = if let Some(n) = val.strip_prefix('+') {
                    SetVarOp::Add(n.to_owned())
                } else if let Some(n) = val.strip_prefix('-') {
                    SetVarOp::Sub(n.to_owned())
                } else {
                    SetVarOp::Set(val.to_owned())
                };
                (t, op)
            }
            None => (v, SetVarOp::Set("1".to_owned())),
        }
    };
    let (collection, name) = target.trim().split_once('.').ok_or_else(bad)?;
    if collection.is_empty() || name.is_empty() {
        return Err(bad());
    }
    Ok(SetVar {
        collection: collection.to_ascii_lowercase(),
        name: name.to_owned(),
        op,
    })
}

fn ctl(v: &str, at: usize) -> Result<Ctl> {
    let Some((opt, val)) = v.split_once('=') else {
        return Err(LineError::new(at, format!("`ctl:{v}` is not valid"))
            .expected("ctl:OPTION=VALUE, e.g. ctl:ruleRemoveById=942100"));
    };
    let val = val.trim();
    let on_off = |val: &str| match val.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(LineError::new(at, format!("`{val}` is not On or Off"))
            .expected(format!("ctl:{opt}=On|Off"))),
    };
    let with_targets = |val: &str| -> Result<(String, Vec<VarSel>)> {
        let (what, targets) = val.split_once(';').ok_or_else(|| {
            LineError::new(at, format!("`ctl:{opt}` needs a rule and targets")).expected(format!(
                "ctl:{opt}=RULE;TARGETS, e.g. ctl:{opt}=942100;ARGS:password"
            ))
        })?;
        Ok((what.to_owned(), parse_vars(targets, at)?))
    };
    Ok(match opt.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(engine_mode_str(val).ok_or_else(|| {
            LineError::new(at, format!("`{val}` is not an engine mode"))
                .expected("On|Off|DetectionOnly")
        })?),
        "ruleremovebyid" => Ctl::RuleRemoveById(id_range(val, at)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(val.to_owned()),
        "ruleremovetargetbyid" => {
            let (id, t) = with_targets(val)?;
            Ctl::RuleRemoveTargetById(id_range(&id, at)?, t)
        }
        "ruleremovetargetbytag" => {
            let (tag, t) = with_targets(val)?;
            Ctl::RuleRemoveTargetByTag(tag, t)
        }
        "ruleremovetargetbymsg" => {
            let (msg, t) = with_targets(val)?;
            Ctl::RuleRemoveTargetByMsg(msg, t)
        }
        "requestbodyprocessor" => {
            Ctl::RequestBodyProcessor(match val.to_ascii_uppercase().as_str() {
                "URLENCODED" => BodyProcessor::UrlEncoded,
                "MULTIPART" => BodyProcessor::Multipart,
                "XML" => BodyProcessor::Xml,
                "JSON" => BodyProcessor::Json,
                _ => {
                    return Err(
                        LineError::new(at, format!("`{val}` is not a body processor"))
                            .expected("URLENCODED, MULTIPART, XML or JSON"),
                    );
                }
            })
        }
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(val)?),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(val)?),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on_off(val)?),
        "requestbodylimit" => Ctl::RequestBodyLimit(small_number(
            "ctl:requestBodyLimit",
            val,
            at,
            "ctl:requestBodyLimit=BYTES",
        )?),
        "auditengine" | "auditlogparts" | "debugloglevel" | "hashengine" | "parsexmlintoargs" => {
            Ctl::Ignored(opt.to_owned())
        }
        _ => {
            return Err(LineError::new(at, format!("unknown ctl option `{opt}`"))
                .expected("ruleEngine, ruleRemoveById, ruleRemoveByTag, ruleRemoveTargetById, ruleRemoveTargetByTag, requestBodyProcessor, forceRequestBodyVariable, requestBodyAccess, responseBodyAccess, requestBodyLimit"));
        }
    })
}

/// The known name closest to `name` (edit distance at most a third of its length).
pub(crate) fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    let limit = (name.len() / 3).max(1);
    known
        .map(|k| (distance(&name, &k.to_ascii_lowercase()), k))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Edit distance counting a swap of neighbours as one edit (optimal string alignment),
/// so `phsae` is one step from `phase`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}
