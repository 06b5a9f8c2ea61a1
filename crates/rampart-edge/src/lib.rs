//! # rampart-edge
//!
//! Rampart's data plane: a hardened reverse proxy that listens on any number of ports,
//! runs every request through the pipeline of `rampart-core`, and forwards it to origin
//! pools. All of Rampart's I/O on the request path lives here.
//!
//! # Layout
//!
//! - [`runtime`]: the running [`Edge`], configuration generations in force, atomic reload,
//!   drain on shutdown. Entry point.
//! - [`generation`]: one configuration plus everything built from it, swapped as a whole.
//! - [`listener`]: accept loops; PROXY protocol, per-IP limits, TLS, HTTP/1.1 and HTTP/2.
//! - [`framing`]: the HTTP/1 framing guard and client timeouts in front of the parser.
//! - [`server`]: the edge's own HTTP/1.1 server (requests built from the guard's layout
//!   of each head).
//! - [`deadline`]: `LazyTimer`, timeouts re-armed per request without timer-wheel work.
//! - [`proxy`]: the request path: pipeline → forward → response → access log.
//! - [`upstream`]: origin pools: balancing, connections, passive ejection, health checks.
//! - [`tcp`]: TCP pass-through listeners.
//! - [`body`]: streamed request and response bodies with limits and timeouts.
//! - [`tls`]: certificates by SNI; TLS to origins.
//! - [`errorpage`]: the edge's own HTML/JSON pages, always with the request id.
//! - [`metrics`], [`accesslog`], [`admin`]: observability.
//! - [`limits`]: per-client-IP connection and connection-rate limits.
//! - [`policy`], [`waf`], [`challenge`], [`bot`]: the security stages (lists, limits and
//!   custom rules; the OWASP CRS; the proof-of-work interstitial and clearance tokens;
//!   client identity and bot score), with
//!   [`event`] (the request's one security event), [`redis`] (shared counters) and
//!   [`geo`] (country and ASN lookups).
//! - [`explain`], [`report`]: `rampart explain` and `rampart report`.
//!
//! **Architecture Invariant:** nothing on the request path panics or blocks: a bad
//! request is a response, a failing origin is a 502/503/504, a bad configuration is
//! refused while the previous one keeps serving.
#![forbid(unsafe_code)]

pub mod accesslog;
pub mod admin;
pub mod body;
pub mod bot;
pub mod challenge;
pub mod deadline;
pub mod errorpage;
pub mod event;
pub mod explain;
pub mod flood;
pub mod framing;
pub mod generation;
pub mod geo;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod redis;
pub mod report;
pub mod runtime;
pub mod server;
mod spans;
pub mod tcp;
pub mod tls;
pub mod upstream;
pub mod waf;

pub use runtime::{Edge, EdgeError, check};
