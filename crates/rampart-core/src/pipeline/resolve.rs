//! [`Resolve`]: which site and route a request belongs to.
//!
//! The host (from [`super::HeadCheck`]) is looked up in the listener's host table (exact
//! names, then the longest `*.suffix` wildcard, then a `*` site); the path picks the
//! route with the longest matching prefix. No site → 404 ("unknown host"), no route → 404.

use http::StatusCode;

use super::{Flow, Reply, RequestView, Stage};
use crate::config::Config;

/// The resolution stage; see the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Resolve;

impl Stage for Resolve {
    fn name(&self) -> &'static str {
        "resolve"
    }

    fn on_request(&self, cfg: &Config, req: &mut RequestView) -> Flow {
        let Some(table) = cfg.routing.get(req.listener) else {
            return Flow::Respond(Reply::new(
                StatusCode::NOT_FOUND,
                "no site on this listener",
            ));
        };
        let Some(site_idx) = table.lookup(&req.host) else {
            return Flow::Respond(Reply::new(StatusCode::NOT_FOUND, "no site for this host"));
        };
        let site = &cfg.sites[site_idx];
        req.site = Some(site_idx);
        req.tenant = Some(site.tenant);
        match site.route_for(req.head.uri.path()) {
            Some(r) => {
                req.route = Some(r);
                Flow::Continue
            }
            None => Flow::Respond(Reply::new(StatusCode::NOT_FOUND, "no route for this path")),
        }
    }
}
