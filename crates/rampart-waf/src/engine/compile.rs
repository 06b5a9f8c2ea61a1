//! Directives → [`Ruleset`]: rules grouped by phase, chains linked, defaults folded in,
//! removals and updates applied, operators compiled, `skipAfter` targets resolved.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use regex::bytes::Regex;

use super::prefilter::Prefilter;
use super::txvars::TxNames;
use crate::macros::MacroText;
use crate::operator::{DataFiles, Operator};
use crate::seclang::{
    Action, Ctl, Directive, Disruptive, EngineMode, IdRange, LimitAction, Loaded, Origin, RuleFs,
    SetVarOp, Transform, Var, VarKey, VarSel,
};

/// Engine-wide settings from the configuration directives.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SecRuleEngine`.
    pub engine: EngineMode,
    /// `SecRequestBodyAccess`.
    pub request_body_access: bool,
    /// `SecResponseBodyAccess`.
    pub response_body_access: bool,
    /// `SecRequestBodyLimit`.
    pub request_body_limit: u64,
    /// `SecRequestBodyNoFilesLimit`.
    pub request_body_no_files_limit: u64,
    /// `SecRequestBodyLimitAction`.
    pub request_body_limit_action: LimitAction,
    /// `SecResponseBodyLimit`.
    pub response_body_limit: u64,
    /// `SecResponseBodyLimitAction`.
    pub response_body_limit_action: LimitAction,
    /// `SecResponseBodyMimeType`.
    pub response_body_mime_types: Vec<String>,
    /// `SecArgumentsLimit`.
    pub arguments_limit: Option<u64>,
    /// `SecRequestBodyJsonDepthLimit`.
    pub json_depth_limit: Option<u64>,
    /// `SecArgumentSeparator`.
    pub argument_separator: u8,
    /// `SecComponentSignature`s.
    pub component_signatures: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        // ModSecurity's defaults.
        Settings {
            engine: EngineMode::On,
            request_body_access: false,
            response_body_access: false,
            request_body_limit: 134_217_728,
            request_body_no_files_limit: 1_048_576,
            request_body_limit_action: LimitAction::Reject,
            response_body_limit: 524_288,
            response_body_limit_action: LimitAction::Reject,
            response_body_mime_types: vec!["text/plain".into(), "text/html".into()],
            arguments_limit: None,
            json_depth_limit: None,
            argument_separator: b'&',
            component_signatures: Vec::new(),
        }
    }
}

/// A rule that was not compiled, and why (reported, never dropped silently).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledRule {
    /// The rule's id (of its chain's first rule for a chain link).
    pub id: u64,
    /// Where it is written.
    pub origin: Origin,
    /// Why it does not run.
    pub reason: String,
}

/// A compiled ruleset, immutable and shared by all transactions.
#[derive(Debug)]
pub struct Ruleset {
    pub(crate) rules: Vec<CRule>,
    /// Per phase (index 0 = phase 1): the program.
    pub(crate) phases: [Vec<Item>; 5],
    /// Engine settings.
    pub settings: Settings,
    /// Rules that do not run, with the reason.
    pub disabled: Vec<DisabledRule>,
    /// Problems that make the ruleset unusable (duplicate ids, a chain without its end…).
    pub errors: Vec<String>,
    pub(crate) prefilter: Prefilter,
    /// Per rule: its outcome learnt at load, for rules decided by `TX` values alone (see
    /// [`super::tx::Memo`]); empty or `None`: evaluate.
    pub(crate) memo: super::tx::Memos,
    /// The `TX` names the rules mention, numbered.
    pub(crate) tx_names: TxNames,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Item {
    /// A chain's first rule.
    Rule(usize),
    /// A marker (its name is only needed for `skipAfter`, resolved at compile time).
    Marker,
}

/// Which members of a collection a target selects.
#[derive(Debug)]
pub(crate) enum KeySel {
    /// By name; lower-cased when the collection's names are case-insensitive.
    Name(String),
    Regex(Regex),
    /// A regular expression that is `^` and a literal (`/^header_name_920450_/`), as
    /// its lower-cased literal: no expression runs.
    Prefix(String),
}

#[derive(Debug)]
pub(crate) struct Target {
    pub var: Var,
    pub key: Option<KeySel>,
    pub count: bool,
    /// `TX:name`: the name's number (see [`TxNames`]).
    pub tx: Option<u32>,
    /// `TX:/regex/`: the numbered names the selector matches, in name order (names made
    /// at run time are matched when listed).
    pub tx_members: Option<Vec<u32>>,
}

#[derive(Debug)]
pub(crate) struct Exclusion {
    pub var: Var,
    pub key: KeySel,
}

#[derive(Debug)]
pub(crate) struct CSetVar {
    pub collection: String,
    pub name: MacroText,
    /// The `TX` member's number when the name has no macros (see [`TxNames`]).
    pub slot: Option<u32>,
    pub op: COp,
}

#[derive(Debug)]
pub(crate) enum COp {
    Set(MacroText),
    Add(MacroText),
    Sub(MacroText),
    Delete,
}

/// A compiled rule (or chain link).
#[derive(Debug)]
pub(crate) struct CRule {
    pub id: u64,
    pub origin: Origin,
    pub phase: u8,
    pub targets: Vec<Target>,
    pub exclusions: Vec<Exclusion>,
    pub transforms: Vec<Transform>,
    /// The transformation chain's number: rules with the same chain share results.
    pub chain: usize,
    pub operator: Option<Operator>,
    pub next: Option<usize>,
    pub msg: Option<MacroText>,
    pub logdata: Option<MacroText>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub setvars: Vec<CSetVar>,
    pub capture: bool,
    pub multi_match: bool,
    pub skip_after: Option<String>,
    /// Resolved `skipAfter`: the program index to continue at.
    pub skip_to: Option<usize>,
    pub skip: u32,
    pub ctls: Vec<Ctl>,
    /// The `ctl`s compiled against the whole ruleset (regular expressions and rule
    /// selections resolved once, at load).
    pub cctls: Vec<CCtl>,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub log: bool,
    pub ver: Option<String>,
}

impl CRule {
    pub(crate) fn has_tag(&self, re: &Regex) -> bool {
        self.tags.iter().any(|t| re.is_match(t.as_bytes()))
    }
}

/// A `ctl` action ready to run: which rules it selects is known at load.
#[derive(Debug)]
pub(crate) enum CCtl {
    Engine(EngineMode),
    /// `ctl:ruleRemoveById/ByTag`: the rules (by index) it removes.
    RemoveRules(Vec<bool>),
    /// `ctl:ruleRemoveTarget*`.
    RemoveTargets(TargetRemoval),
    BodyProcessor(crate::seclang::BodyProcessor),
    ForceBodyVariable(bool),
    BodyAccess(bool),
}

/// Targets removed from some rules for the rest of a transaction.
#[derive(Debug)]
pub(crate) struct TargetRemoval {
    /// Per rule index: whether the removal applies.
    pub rules: Vec<bool>,
    pub targets: Vec<(Var, Option<KeySel>)>,
}

/// The default actions of one phase.
#[derive(Debug, Clone, Default)]
struct Defaults {
    transforms: Vec<Transform>,
    disruptive: Option<Disruptive>,
    log: Option<bool>,
    status: Option<u16>,
}

/// Per rule: whether a transaction can reach it when every rule with an outcome learnt at
/// load ([`super::tx::Memos`]) has that outcome — what the configuration decides, e.g.
/// CRS's paranoia-level skips (`TX:DETECTION_PARANOIA_LEVEL "@lt 2"` with `skipAfter`),
/// which leave the rules above the configured level unreachable. Every other rule is
/// taken both ways (it may match or not, and then skip or not).
///
/// The prefilter gates only reachable rules. A rule reached anyway (a request that
/// changes a learnt rule's `TX` inputs, or removes it with `ctl`) simply runs ungated:
/// this decides speed, never outcomes.
fn expected_reach(rs: &Ruleset) -> Vec<bool> {
    let mut reach = vec![false; rs.rules.len()];
    for prog in &rs.phases {
        let mut at = vec![false; prog.len() + 1];
        at[0] = true;
        for (k, item) in prog.iter().enumerate() {
            if !at[k] {
                continue;
            }
            let Item::Rule(ci) = *item else {
                at[k + 1] = true;
                continue;
            };
            let mut link = Some(ci);
            while let Some(l) = link {
                if let Some(r) = reach.get_mut(l) {
                    *r = true;
                }
                link = rs.rules.get(l).and_then(|r| r.next);
            }
            let Some(rule) = rs.rules.get(ci) else {
                continue;
            };
            let after_match = rule
                .skip_to
                .unwrap_or(k + 1 + rule.skip as usize)
                .min(prog.len());
            match rs.memo.outcome(ci) {
                Some(true) => at[after_match] = true,
                Some(false) => at[k + 1] = true,
                None => {
                    at[k + 1] = true;
                    at[after_match] = true;
                }
            }
        }
    }
    reach
}

impl Ruleset {
    /// Compiles loaded directives. Data files named by operators are read through `fs`,
    /// relative to the rule's file.
    pub fn compile(loaded: &Loaded, fs: &dyn RuleFs) -> Ruleset {
        let mut rs = Ruleset {
            rules: Vec::new(),
            phases: Default::default(),
            settings: Settings::default(),
            disabled: Vec::new(),
            errors: Vec::new(),
            prefilter: Prefilter::build(&[], &[]),
            memo: Default::default(),
            tx_names: TxNames::new(),
        };
        let mut defaults: [Defaults; 5] = Default::default();
        // Directives that modify rules wherever they are.
        let mut remove_ids: Vec<IdRange> = Vec::new();
        let mut remove_tags: Vec<Regex> = Vec::new();
        let mut remove_msgs: Vec<Regex> = Vec::new();
        let mut target_updates: Vec<(Sel, Vec<VarSel>, Option<Vec<VarSel>>)> = Vec::new();
        let mut action_updates: Vec<(u64, u32, Vec<Action>)> = Vec::new();

        // Chains as lists of (origin, actions, rule) before compiling.
        struct Raw<'a> {
            origin: &'a Origin,
            rule: Option<&'a crate::seclang::Rule>,
            actions: Vec<Action>,
            chain_head: Option<usize>,
        }
        let mut raws: Vec<Raw<'_>> = Vec::new();
        let mut program: Vec<(Option<usize>, Option<String>)> = Vec::new(); // (raw index | marker)
        let mut open_chain: Option<usize> = None;
        let mut phase_of_raw: Vec<u8> = Vec::new();
        let mut defaults_of_raw: Vec<Defaults> = Vec::new();

        for located in &loaded.directives {
            let origin = &located.origin;
            match &located.directive {
                Directive::Rule(_) | Directive::Action(_) => {
                    let (rule, actions) = match &located.directive {
                        Directive::Rule(r) => (Some(r), r.actions.clone()),
                        Directive::Action(a) => (None, a.clone()),
                        _ => continue,
                    };
                    let idx = raws.len();
                    let head = open_chain;
                    let phase = match head {
                        Some(h) => phase_of_raw[h],
                        None => actions
                            .iter()
                            .rev()
                            .find_map(|a| match a {
                                Action::Phase(p) => Some(p.0),
                                _ => None,
                            })
                            .unwrap_or(2),
                    };
                    let chains = actions.contains(&Action::Chain);
                    raws.push(Raw {
                        origin,
                        rule,
                        actions,
                        chain_head: head,
                    });
                    phase_of_raw.push(phase);
                    defaults_of_raw.push(defaults[usize::from(phase - 1)].clone());
                    if head.is_none() {
                        program.push((Some(idx), None));
                    }
                    open_chain = if chains {
                        Some(head.unwrap_or(idx))
                    } else {
                        None
                    };
                }
                Directive::Marker(name) => {
                    if open_chain.take().is_some() {
                        rs.errors.push(format!("{origin}: SecMarker inside a chain (the previous rule says `chain` but no rule follows)"));
                    }
                    program.push((None, Some(name.clone())));
                }
                Directive::DefaultAction(actions) => {
                    let Some(phase) = actions.iter().find_map(|a| match a {
                        Action::Phase(p) => Some(p.0),
                        _ => None,
                    }) else {
                        rs.errors
                            .push(format!("{origin}: SecDefaultAction needs a phase"));
                        continue;
                    };
                    let mut d = Defaults::default();
                    for a in actions {
                        match a {
                            Action::Transform(Transform::None) => d.transforms.clear(),
                            Action::Transform(t) => d.transforms.push(*t),
                            Action::Disruptive(x) => d.disruptive = Some(x.clone()),
                            Action::Log => d.log = Some(true),
                            Action::NoLog => d.log = Some(false),
                            Action::Status(s) => d.status = Some(*s),
                            _ => {}
                        }
                    }
                    defaults[usize::from(phase - 1)] = d;
                }
                Directive::RuleEngine(m) => rs.settings.engine = *m,
                Directive::RequestBodyAccess(b) => rs.settings.request_body_access = *b,
                Directive::ResponseBodyAccess(b) => rs.settings.response_body_access = *b,
                Directive::RequestBodyLimit(n) => rs.settings.request_body_limit = *n,
                Directive::RequestBodyNoFilesLimit(n) => {
                    rs.settings.request_body_no_files_limit = *n
                }
                Directive::RequestBodyLimitAction(a) => rs.settings.request_body_limit_action = *a,
                Directive::ResponseBodyLimit(n) => rs.settings.response_body_limit = *n,
                Directive::ResponseBodyLimitAction(a) => {
                    rs.settings.response_body_limit_action = *a
                }
                Directive::ResponseBodyMimeType(t) => rs
                    .settings
                    .response_body_mime_types
                    .extend(t.iter().cloned()),
                Directive::ResponseBodyMimeTypesClear => {
                    rs.settings.response_body_mime_types.clear()
                }
                Directive::ArgumentsLimit(n) => rs.settings.arguments_limit = Some(*n),
                Directive::RequestBodyJsonDepthLimit(n) => rs.settings.json_depth_limit = Some(*n),
                Directive::ArgumentSeparator(c) => rs.settings.argument_separator = *c,
                Directive::ComponentSignature(s) => {
                    rs.settings.component_signatures.push(s.clone())
                }
                Directive::RemoveById(ids) => remove_ids.extend(ids.iter().copied()),
                Directive::RemoveByTag(t) => match crate::operator::regex(t) {
                    Ok(re) => remove_tags.push(re),
                    Err(e) => rs.errors.push(format!("{origin}: SecRuleRemoveByTag: {e}")),
                },
                Directive::RemoveByMsg(t) => match crate::operator::regex(t) {
                    Ok(re) => remove_msgs.push(re),
                    Err(e) => rs.errors.push(format!("{origin}: SecRuleRemoveByMsg: {e}")),
                },
                Directive::UpdateTargetById {
                    ids,
                    targets,
                    replace,
                } => {
                    target_updates.push((Sel::Ids(ids.clone()), targets.clone(), replace.clone()));
                }
                Directive::UpdateTargetByTag {
                    tag,
                    targets,
                    replace,
                } => match crate::operator::regex(tag) {
                    Ok(re) => target_updates.push((Sel::Tag(re), targets.clone(), replace.clone())),
                    Err(e) => rs
                        .errors
                        .push(format!("{origin}: SecRuleUpdateTargetByTag: {e}")),
                },
                Directive::UpdateTargetByMsg {
                    msg,
                    targets,
                    replace,
                } => match crate::operator::regex(msg) {
                    Ok(re) => target_updates.push((Sel::Msg(re), targets.clone(), replace.clone())),
                    Err(e) => rs
                        .errors
                        .push(format!("{origin}: SecRuleUpdateTargetByMsg: {e}")),
                },
                Directive::UpdateActionById {
                    id,
                    chain_offset,
                    actions,
                } => {
                    action_updates.push((*id, *chain_offset, actions.clone()));
                }
                Directive::RequestBodyInMemoryLimit(_)
                | Directive::CollectionTimeout(_)
                | Directive::PcreMatchLimit(_)
                | Directive::Ignored(_) => {}
            }
        }
        if let Some(h) = open_chain {
            rs.errors.push(format!(
                "{}: the last rule says `chain` but no rule follows",
                raws[h].origin
            ));
        }

        // Action updates, by chain position.
        for (id, offset, actions) in &action_updates {
            let Some(head) = raws
                .iter()
                .position(|r| r.chain_head.is_none() && r.actions.contains(&Action::Id(*id)))
            else {
                continue;
            };
            let target = raws
                .iter()
                .enumerate()
                .filter(|(i, r)| *i == head || r.chain_head == Some(head))
                .map(|(i, _)| i)
                .nth(*offset as usize);
            if let Some(t) = target {
                merge_actions(&mut raws[t].actions, actions);
            }
        }

        // Compile every raw rule.
        let mut seen_ids = HashSet::new();
        let mut compiled_index = vec![usize::MAX; raws.len()];
        let mut dead: HashSet<usize> = HashSet::new(); // raw heads whose chain is disabled or removed
        for (i, raw) in raws.iter().enumerate() {
            let head = raw.chain_head.unwrap_or(i);
            let head_id = id_of(&raws[head].actions);
            if raw.chain_head.is_none() {
                match head_id {
                    None => {
                        rs.errors
                            .push(format!("{}: rule without an id", raw.origin));
                        dead.insert(head);
                        continue;
                    }
                    Some(id) if !seen_ids.insert(id) => {
                        rs.errors
                            .push(format!("{}: rule id {id} is used twice", raw.origin));
                        dead.insert(head);
                        continue;
                    }
                    _ => {}
                }
            }
            if dead.contains(&head) {
                continue;
            }
            let id = head_id.unwrap_or(0);
            let phase = phase_of_raw[i];
            let d = &defaults_of_raw[head];
            match compile_rule(raw.rule, &raw.actions, raw.origin, id, phase, d, fs) {
                Ok(rule) => {
                    compiled_index[i] = rs.rules.len();
                    rs.rules.push(rule);
                }
                Err(reason) => {
                    rs.disabled.push(DisabledRule {
                        id,
                        origin: raw.origin.clone(),
                        reason,
                    });
                    dead.insert(head);
                }
            }
        }
        // Link chains; the head carries metadata the links lack.
        for (i, raw) in raws.iter().enumerate() {
            if let Some(h) = raw.chain_head {
                if dead.contains(&h) {
                    continue;
                }
                let prev = (0..i)
                    .rev()
                    .find(|&j| j == h || raws[j].chain_head == Some(h));
                if let Some(p) = prev {
                    let (pc, ic) = (compiled_index[p], compiled_index[i]);
                    if pc != usize::MAX && ic != usize::MAX {
                        rs.rules[pc].next = Some(ic);
                    }
                }
            }
        }

        // Removals and target updates, on chain heads (targets on the head rule only,
        // as ModSecurity does).
        let removed = |r: &CRule| {
            remove_ids.iter().any(|x| x.contains(r.id))
                || remove_tags.iter().any(|re| r.has_tag(re))
                || remove_msgs.iter().any(|re| {
                    r.msg
                        .as_ref()
                        .and_then(MacroText::static_text)
                        .is_some_and(|m| re.is_match(&m))
                })
        };
        for (sel, targets, replace) in &target_updates {
            for (raw_i, raw) in raws.iter().enumerate() {
                if raw.chain_head.is_some() || dead.contains(&raw_i) {
                    continue;
                }
                let ci = compiled_index[raw_i];
                if ci == usize::MAX {
                    continue;
                }
                let rule = &rs.rules[ci];
                let hit = match sel {
                    Sel::Ids(ids) => ids.iter().any(|x| x.contains(rule.id)),
                    Sel::Tag(re) => rule.has_tag(re),
                    Sel::Msg(re) => rule
                        .msg
                        .as_ref()
                        .and_then(MacroText::static_text)
                        .is_some_and(|m| re.is_match(&m)),
                };
                if !hit {
                    continue;
                }
                if let Some(old) = replace {
                    let olds: Vec<Target> = old.iter().filter_map(|v| target(v).ok()).collect();
                    rs.rules[ci]
                        .targets
                        .retain(|t| !olds.iter().any(|o| same_target(o, t)));
                }
                for v in targets {
                    match (v.exclude, target(v), exclusion(v)) {
                        (true, _, Ok(Some(x))) => rs.rules[ci].exclusions.push(x),
                        (false, Ok(t), _) => rs.rules[ci].targets.push(t),
                        (_, Err(e), _) | (_, _, Err(e)) => {
                            rs.errors.push(format!(
                                "{}: target update for rule {}: {e}",
                                raw.origin, rs.rules[ci].id
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }

        // Compile the ctl actions against the final rule list.
        let mut cctls = Vec::with_capacity(rs.rules.len());
        for r in &rs.rules {
            let mut out = Vec::new();
            for c in &r.ctls {
                match compile_ctl(c, &rs.rules) {
                    Ok(Some(x)) => out.push(x),
                    Ok(None) => {}
                    Err(e) => rs.errors.push(format!("{}: {e}", r.origin)),
                }
            }
            cctls.push(out);
        }
        for (r, c) in rs.rules.iter_mut().zip(cctls) {
            r.cctls = c;
        }

        // Number the distinct transformation chains.
        let mut chains: HashMap<Vec<Transform>, usize> = HashMap::new();
        for r in &mut rs.rules {
            let next = chains.len();
            r.chain = *chains.entry(r.transforms.clone()).or_insert(next);
        }

        // The program per phase.
        let mut marker_positions: [HashMap<String, Vec<usize>>; 5] = Default::default();
        for (raw, marker) in &program {
            match (raw, marker) {
                (Some(r), _) => {
                    if dead.contains(r) {
                        continue;
                    }
                    let ci = compiled_index[*r];
                    if ci == usize::MAX || removed(&rs.rules[ci]) {
                        continue;
                    }
                    let p = usize::from(rs.rules[ci].phase - 1);
                    rs.phases[p].push(Item::Rule(ci));
                }
                (None, Some(name)) => {
                    for (p, prog) in rs.phases.iter_mut().enumerate() {
                        prog.push(Item::Marker);
                        marker_positions[p]
                            .entry(name.clone())
                            .or_default()
                            .push(prog.len());
                    }
                }
                (None, None) => {}
            }
        }
        for (p, positions) in marker_positions.iter().enumerate() {
            let len = rs.phases[p].len();
            for k in 0..len {
                if let Item::Rule(ci) = rs.phases[p][k] {
                    let mut cur = Some(ci);
                    while let Some(c) = cur {
                        if let Some(name) = rs.rules[c].skip_after.clone() {
                            rs.rules[c].skip_to = Some(
                                positions
                                    .get(&name)
                                    .and_then(|v| v.iter().copied().find(|&pos| pos > k))
                                    .unwrap_or(len),
                            );
                        }
                        cur = rs.rules[c].next;
                    }
                }
            }
        }
        rs.tx_names = bind_tx(&mut rs.rules);
        // Outcomes are learnt first (without a prefilter: it only skips rules that
        // would not match, so what is learnt is the same), then the prefilter covers the
        // rules a transaction can reach with those outcomes.
        if rs.errors.is_empty() {
            rs.memo = super::tx::learn(&rs);
        }
        let reach = expected_reach(&rs);
        rs.prefilter = Prefilter::build(&rs.rules, &reach);
        rs
    }

    /// The same ruleset with the literal prefilter and the outcomes learnt at load turned
    /// off: every rule runs on every value. For differential tests (both must decide
    /// alike) and for diagnosis.
    pub fn without_prefilter(mut self) -> Ruleset {
        self.prefilter = Prefilter::build(&[], &[]);
        self.memo = Default::default();
        self
    }

    /// How many rules have an outcome learnt at load (decided by configuration values).
    pub fn learnt_count(&self) -> usize {
        self.memo.len()
    }

    /// How many rules the literal prefilter can skip, and over how many distinct
    /// literals (for `rampart waf check` and the benchmarks).
    pub fn prefilter_stats(&self) -> (usize, usize) {
        (self.prefilter.gated_count(), self.prefilter.literal_count())
    }

    /// The number of compiled rules (chain links included).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

enum Sel {
    Ids(Vec<IdRange>),
    Tag(Regex),
    Msg(Regex),
}

/// Resolves one `ctl` (`None`: it has no effect in this engine).
fn compile_ctl(c: &Ctl, rules: &[CRule]) -> Result<Option<CCtl>, String> {
    let select = |f: &dyn Fn(&CRule) -> bool| rules.iter().map(f).collect::<Vec<bool>>();
    let re =
        |what: &str, t: &str| crate::operator::regex(t).map_err(|e| format!("ctl:{what}={t}: {e}"));
    let msg_matches = |r: &CRule, m: &Regex| {
        r.msg
            .as_ref()
            .and_then(MacroText::static_text)
            .is_some_and(|t| m.is_match(&t))
    };
    Ok(Some(match c {
        Ctl::RuleEngine(m) => CCtl::Engine(*m),
        Ctl::RuleRemoveById(range) => CCtl::RemoveRules(select(&|r| range.contains(r.id))),
        Ctl::RuleRemoveByTag(t) => {
            let tag = re("ruleRemoveByTag", t)?;
            CCtl::RemoveRules(select(&|r| r.has_tag(&tag)))
        }
        Ctl::RuleRemoveTargetById(range, targets) => CCtl::RemoveTargets(TargetRemoval {
            rules: select(&|r| range.contains(r.id)),
            targets: removal_targets(targets)?,
        }),
        Ctl::RuleRemoveTargetByTag(t, targets) => {
            let tag = re("ruleRemoveTargetByTag", t)?;
            CCtl::RemoveTargets(TargetRemoval {
                rules: select(&|r| r.has_tag(&tag)),
                targets: removal_targets(targets)?,
            })
        }
        Ctl::RuleRemoveTargetByMsg(t, targets) => {
            let msg = re("ruleRemoveTargetByMsg", t)?;
            CCtl::RemoveTargets(TargetRemoval {
                rules: select(&|r| msg_matches(r, &msg)),
                targets: removal_targets(targets)?,
            })
        }
        Ctl::RequestBodyProcessor(bp) => CCtl::BodyProcessor(*bp),
        Ctl::ForceRequestBodyVariable(b) => CCtl::ForceBodyVariable(*b),
        Ctl::RequestBodyAccess(b) => CCtl::BodyAccess(*b),
        Ctl::ResponseBodyAccess(_) | Ctl::RequestBodyLimit(_) | Ctl::Ignored(_) => return Ok(None),
    }))
}

/// The targets a `ctl:ruleRemoveTarget*` names, key selectors compiled.
fn removal_targets(targets: &[VarSel]) -> Result<Vec<(Var, Option<KeySel>)>, String> {
    targets
        .iter()
        .map(|t| {
            Ok((
                t.var,
                t.key.as_ref().map(|k| key_sel(t.var, k)).transpose()?,
            ))
        })
        .collect()
}

fn id_of(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Id(i) => Some(*i),
        _ => None,
    })
}

/// `SecRuleUpdateActionById`: single-valued actions replace theirs, lists grow.
fn merge_actions(actions: &mut Vec<Action>, update: &[Action]) {
    for a in update {
        let same_kind = |b: &Action| std::mem::discriminant(a) == std::mem::discriminant(b);
        match a {
            Action::Tag(_) | Action::SetVar(_) | Action::Ctl(_) => actions.push(a.clone()),
            Action::Transform(Transform::None) => {
                actions.retain(|b| !matches!(b, Action::Transform(_)));
                actions.push(a.clone());
            }
            Action::Transform(_) => actions.push(a.clone()),
            _ => {
                actions.retain(|b| !same_kind(b));
                actions.push(a.clone());
            }
        }
    }
}

/// Numbers every `TX` name the rules write literally, read in macros or test, and binds
/// `setvar`s and macros to those numbers.
fn bind_tx(rules: &mut [CRule]) -> TxNames {
    let mut names = TxNames::new();
    for rule in rules.iter_mut() {
        let mut id = |n: &str| names.intern(n);
        for t in &mut rule.targets {
            if let (Var::Tx, Some(KeySel::Name(n))) = (t.var, &t.key) {
                t.tx = Some(id(n));
            }
        }
        for sv in &mut rule.setvars {
            if sv.collection == "tx" {
                if let Some(n) = sv.name.static_text() {
                    sv.slot = Some(id(&String::from_utf8_lossy(&n).to_ascii_lowercase()));
                }
            }
            match &mut sv.op {
                COp::Set(v) | COp::Add(v) | COp::Sub(v) => v.bind_tx(&mut id),
                COp::Delete => {}
            }
            sv.name.bind_tx(&mut id);
        }
        for m in [&mut rule.msg, &mut rule.logdata].into_iter().flatten() {
            m.bind_tx(&mut id);
        }
        if let Some(op) = &mut rule.operator {
            op.bind_tx(&mut id);
        }
    }
    names.finish();
    for t in rules.iter_mut().flat_map(|r| r.targets.iter_mut()) {
        if let (Var::Tx, Some(sel @ (KeySel::Prefix(_) | KeySel::Regex(_)))) = (t.var, &t.key) {
            let ids = names.sorted().iter().copied();
            t.tx_members = Some(
                ids.filter(|&id| super::tx::key_matches(sel, names.name(id).as_bytes(), Var::Tx))
                    .collect(),
            );
        }
    }
    names
}

/// Whether names of a collection compare case-insensitively.
pub(crate) fn case_insensitive_keys(var: Var) -> bool {
    !matches!(var, Var::Xml)
}

fn key_sel(var: Var, key: &VarKey) -> Result<KeySel, String> {
    Ok(match key {
        VarKey::Name(n) if case_insensitive_keys(var) => KeySel::Name(n.to_ascii_lowercase()),
        VarKey::Name(n) => KeySel::Name(n.clone()),
        VarKey::Regex(r) => match literal_prefix(r) {
            Some(p) => KeySel::Prefix(p),
            // Key regexes match names case-insensitively in ModSecurity.
            None => KeySel::Regex(crate::operator::regex(&format!("(?i:{r})"))?),
        },
    })
}

/// `^literal` (letters, digits, `_`, `-`) as its lower-cased literal.
fn literal_prefix(r: &str) -> Option<String> {
    let rest = r.strip_prefix('^')?;
    (!rest.is_empty()
        && rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
    .then(|| rest.to_ascii_lowercase())
}

fn target(v: &VarSel) -> Result<Target, String> {
    if v.var == Var::Xml {
        match &v.key {
            Some(VarKey::Name(p)) if p == "/*" || p == "//@*" => {}
            other => {
                return Err(format!(
                    "XML target {other:?}: only the XPath expressions /* and //@* are supported"
                ));
            }
        }
    }
    Ok(Target {
        var: v.var,
        key: v.key.as_ref().map(|k| key_sel(v.var, k)).transpose()?,
        count: v.count,
        tx: None,
        tx_members: None,
    })
}

fn exclusion(v: &VarSel) -> Result<Option<Exclusion>, String> {
    match (&v.key, v.exclude) {
        (Some(k), true) => Ok(Some(Exclusion {
            var: v.var,
            key: key_sel(v.var, k)?,
        })),
        _ => Ok(None),
    }
}

fn same_target(a: &Target, b: &Target) -> bool {
    a.var == b.var
        && a.count == b.count
        && match (&a.key, &b.key) {
            (None, None) => true,
            (Some(KeySel::Name(x)), Some(KeySel::Name(y))) => x == y,
            (Some(KeySel::Regex(x)), Some(KeySel::Regex(y))) => x.as_str() == y.as_str(),
            (Some(KeySel::Prefix(x)), Some(KeySel::Prefix(y))) => x == y,
            _ => false,
        }
}

fn compile_rule(
    rule: Option<&crate::seclang::Rule>,
    actions: &[Action],
    origin: &Origin,
    id: u64,
    phase: u8,
    d: &Defaults,
    fs: &dyn RuleFs,
) -> Result<CRule, String> {
    let mut targets = Vec::new();
    let mut exclusions = Vec::new();
    let operator = match rule {
        Some(r) => {
            for v in &r.variables {
                if v.exclude {
                    if let Some(x) = exclusion(v)? {
                        exclusions.push(x);
                    }
                } else {
                    targets.push(target(v)?);
                }
            }
            let dir = Path::new(origin.file.as_ref())
                .parent()
                .unwrap_or(Path::new("."));
            Some(Operator::compile(&r.operator, &DataFiles { fs, dir })?)
        }
        None => None,
    };
    let mut c = CRule {
        id,
        origin: origin.clone(),
        phase,
        targets,
        exclusions,
        transforms: d.transforms.clone(),
        chain: 0,
        operator,
        next: None,
        msg: None,
        logdata: None,
        tags: Vec::new(),
        severity: None,
        setvars: Vec::new(),
        capture: false,
        multi_match: false,
        skip_after: None,
        skip_to: None,
        skip: 0,
        ctls: Vec::new(),
        cctls: Vec::new(),
        disruptive: Disruptive::Pass,
        status: d.status,
        log: d.log.unwrap_or(true),
        ver: None,
    };
    let mut disruptive = None;
    for a in actions {
        match a {
            Action::Transform(Transform::None) => c.transforms.clear(),
            Action::Transform(t) => c.transforms.push(*t),
            Action::Msg(m) => c.msg = Some(MacroText::parse(m)),
            Action::LogData(m) => c.logdata = Some(MacroText::parse(m)),
            Action::Tag(t) => c.tags.push(t.clone()),
            Action::Severity(s) => c.severity = Some(*s),
            Action::Ver(v) => c.ver = Some(v.clone()),
            Action::SetVar(s) => c.setvars.push(CSetVar {
                collection: s.collection.clone(),
                name: MacroText::parse(&s.name),
                slot: None,
                op: match &s.op {
                    SetVarOp::Set(v) => COp::Set(MacroText::parse(v)),
                    SetVarOp::Add(v) => COp::Add(MacroText::parse(v)),
                    SetVarOp::Sub(v) => COp::Sub(MacroText::parse(v)),
                    SetVarOp::Delete => COp::Delete,
                },
            }),
            Action::Capture => c.capture = true,
            Action::MultiMatch => c.multi_match = true,
            Action::SkipAfter(m) => c.skip_after = Some(m.clone()),
            Action::Skip(n) => c.skip = *n,
            Action::Ctl(x) => c.ctls.push(x.clone()),
            Action::Disruptive(x) => disruptive = Some(x.clone()),
            Action::Status(s) => c.status = Some(*s),
            Action::Log => c.log = true,
            Action::NoLog => c.log = false,
            Action::Other(name, _) if name.eq_ignore_ascii_case("exec") => {
                return Err("the `exec` action (running programs) is not supported".into());
            }
            _ => {}
        }
    }
    c.disruptive = match disruptive {
        Some(Disruptive::Block) | None => d.disruptive.clone().unwrap_or(Disruptive::Pass),
        Some(x) => x,
    };
    if let Disruptive::Proxy(_) | Disruptive::Pause(_) = c.disruptive {
        return Err("`proxy` and `pause` are not supported: Rampart routes and paces by its own configuration".into());
    }
    Ok(c)
}
