//! # rampart-policy
//!
//! The policy layer of Rampart: what an operator writes to say precisely what to stop.
//! Everything here is pure — no sockets, files or clocks (times are arguments) — so it
//! is unit-tested, fuzzed and benchmarked without an edge.
//!
//! # Layout
//!
//! - [`expr`]: the rule expression language: lexer, parser, type checker and evaluator
//!   over a [`Request`].
//! - [`request`]: [`Request`], the typed view of a request that expressions read.
//! - [`set`]: string, integer and address sets that `in` tests against.
//! - [`ratelimit`]: sliding-window and GCRA arithmetic, graduated thresholds with holds,
//!   distinct counting, and the bounded in-process store.
//! - [`policy`]: a site's or route's policy — list uses, limits, custom rules — and its
//!   evaluation into the request's decision (`rampart_core::decision`).
//! - [`build`]: the validated configuration (`rampart_core::config::PolicySpec`) →
//!   runtime [`policy::Policy`] and [`Lists`], with expression errors located in the
//!   configuration file.
//! - [`bot`]: the bot score of a request, with its reasons.
//! - [`fingerprint`]: the TLS ClientHello parser and the JA4 fingerprint; the HTTP/2
//!   fingerprint.
//! - [`challenge`]: the challenge's puzzles and clearance tokens (signed, bound to site,
//!   address prefix and TLS fingerprint; key rotation).
//! - [`flood`]: automatic flood mitigation's baseline, detection and signature search.
//! - [`geo`]: writing MaxMind DB files (test databases with exact answers, and the
//!   ASN database built from the free CSV tables).
//! - [`list`]: named lists (`$office`) of addresses, strings or integers, and their file
//!   format.
#![forbid(unsafe_code)]

pub mod bot;
pub mod build;
pub mod challenge;
pub mod expr;
pub mod fingerprint;
pub mod flood;
pub mod geo;
pub mod list;
pub mod policy;
pub mod ratelimit;
pub mod request;
pub mod set;

pub use expr::{Expr, ExprError};
pub use list::{List, Lists};
pub use request::{Request, Response};
