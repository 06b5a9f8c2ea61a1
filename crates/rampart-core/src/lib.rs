//! # rampart-core
//!
//! The pure core of Rampart: everything that can be decided without touching a socket,
//! a file or a clock. The edge (`rampart-edge`) owns all I/O and calls into this crate.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration in two layers — [`config::raw`] mirrors the file
//!   (serde, `deny_unknown_fields`, spans kept), [`config::compile`] validates it into the
//!   runtime [`config::Config`]. Every problem becomes a [`config::Diagnostic`] with
//!   file:line:col, what was expected and a hint.
//! - [`decision`]: verdicts of every stage and the request's decision (most severe
//!   enforced verdict; monitor-mode verdicts kept as `would_*`).
//! - [`pipeline`]: the request view, the [`pipeline::Stage`] trait, verdicts, and the
//!   stages that need no I/O (site/route resolution, client identity).
//! - [`h1`]: the HTTP/1 framing guard that validates a client byte stream before the
//!   HTTP parser sees it (request-smuggling defence).
//! - [`net`]: CIDR sets for trusted proxies and lists.
//! - [`proxy_protocol`]: a parser for the HAProxy PROXY protocol v1 and v2 headers that
//!   tells *incomplete* (read more bytes) from *invalid*.
//! - [`request_id`]: request id generation and validation.
//!
//! **Architecture Invariant:** this crate performs no I/O and spawns no tasks; its
//! functions are deterministic given their inputs, so they are unit-tested, fuzzed and
//! benchmarked without sockets.
#![forbid(unsafe_code)]

pub mod config;
pub mod decision;
pub mod h1;
pub mod net;
pub mod pipeline;
pub mod proxy_protocol;
pub mod request_id;
