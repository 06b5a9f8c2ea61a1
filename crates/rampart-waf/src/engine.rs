//! The rule engine: a compiled [`Ruleset`] and the [`Transaction`] that runs it over one
//! HTTP exchange, phase by phase, as ModSecurity v3 does.
//!
//! # Semantics kept from ModSecurity (CRS depends on them)
//!
//! - Phases 1–5 run the rules of that phase in file order; `SecMarker`s appear in every
//!   phase and `skipAfter` jumps past the named marker of the current phase.
//! - A rule tests every value of every target (exclusions and `ctl` removals applied),
//!   after its transformation chain (with `multiMatch`, after every step). Each matching
//!   value updates `MATCHED_VAR(S)` and runs the rule's `setvar`s; when the whole chain
//!   has matched, the remaining actions run and the match is recorded (if logged).
//! - `SecDefaultAction` of a phase supplies transformations (cleared by `t:none`), the
//!   action `block` means, and logging, for the rules of that phase that follow.
//! - `SecRuleRemoveBy*` and `SecRuleUpdate*` apply to rules wherever they are defined.

mod compile;
mod literals;
mod prefilter;
#[cfg(test)]
mod tests;
mod tx;
mod txvars;

pub use compile::{DisabledRule, Ruleset, Settings};
pub use tx::{Intervention, MatchedRule, RequestInfo, Transaction};
