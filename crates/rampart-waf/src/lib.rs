//! Rampart's WAF engine: runs rules written in SecLang, the rule language of ModSecurity,
//! so that the OWASP Core Rule Set (CRS) and operators' own SecLang exclusions work
//! unmodified.
//!
//! # Layout
//!
//! - [`seclang`]: reads rule files (with `Include` and globs) into typed directives —
//!   every directive, variable, operator, transformation and action CRS uses is checked
//!   here, and every problem comes back located at `file:line:col` with what was expected.
//!   It never stops at the first error: [`seclang::load`] returns the directives it could
//!   read *and* all diagnostics, so `rampart check` can print them all.
//!
//! - [`engine`]: compiles directives into a [`engine::Ruleset`] and runs
//!   [`engine::Transaction`]s through it. A literal prefilter (required literals of each
//!   rule's operator, found with one scan per value and transformation chain)
//!   skips the rules whose literals no value holds; rules that read only `TX` values have
//!   their outcomes learnt at load; `TX` names are numbered at load so the request path
//!   never builds a key. `Ruleset::without_prefilter` turns the first two off so tests can
//!   show both decide alike.
//!
//! - [`libinjection`]: `@detectSQLi` and `@detectXSS` — libinjection's SQL fingerprinting
//!   and HTML5 XSS check, our own tokenizers held to the C library input by input.
//!
//! # Architecture invariants
//!
//! - Rule files are read once, at load; nothing here touches the network, and nothing on
//!   the request path reads a file.
//! - Parsing never panics on any input (a fuzz target holds it to that).

mod alphabet;
pub mod body;
mod digest;
pub mod engine;
mod factor;
pub mod ftw;
pub mod libinjection;
pub mod macros;
pub mod operator;
pub mod seclang;
pub mod transform;
#[cfg(test)]
mod xorshift;
