//! The admin endpoint: `GET /metrics` (Prometheus), `GET /healthz`, `GET /readyz`,
//! `POST /-/reload` (reload the configuration file; 200 with the new generation, or 422
//! with the same diagnostics `rampart check` prints), `GET /-/flood` (automatic flood
//! rules and each site's baseline, as JSON) and `POST /-/flood/{site}/{rule}/{pin|unpin|
//! cancel}`. Bind it to loopback or a management
//! network only: it is not authenticated.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::runtime::Shared;

pub(crate) fn spawn(shared: Arc<Shared>, sock: std::net::TcpListener) {
    tokio::spawn(async move {
        let listener = match TcpListener::from_std(sock) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot register admin listener");
                return;
            }
        };
        if let Ok(a) = listener.local_addr() {
            tracing::info!(addr = %a, "admin endpoint listening");
        }
        let mut shutdown = shared.shutdown_signal();
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
                _ = crate::runtime::drained(&mut shutdown) => return,
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => {
            if *shared.shutdown_signal().borrow() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else {
                text(
                    StatusCode::OK,
                    "text/plain",
                    format!("ready generation={}\n", shared.current().id),
                )
            }
        }
        (&Method::POST, "/-/reload") => match shared.reload().await {
            Ok(id) => text(
                StatusCode::OK,
                "text/plain",
                format!("reloaded: generation {id}\n"),
            ),
            Err(e) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "text/plain",
                format!("reload refused, the running configuration stays in force:\n{e}\n"),
            ),
        },
        (&Method::GET, "/-/flood") => text(
            StatusCode::OK,
            "application/json",
            shared.current().flood.describe().to_string() + "\n",
        ),
        (&Method::POST, p) if p.starts_with("/-/flood/") => {
            let parts: Vec<&str> = p["/-/flood/".len()..].split('/').collect();
            match parts.as_slice() {
                [site, rule, what] => match shared.current().flood.act(site, rule, what) {
                    Ok(v) => text(StatusCode::OK, "application/json", v.to_string() + "\n"),
                    Err(why) => text(StatusCode::NOT_FOUND, "text/plain", why + "\n"),
                },
                _ => text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "expected /-/flood/{site}/{rule}/{pin|unpin|cancel}\n".into(),
                ),
            }
        }
        (_, "/metrics" | "/healthz" | "/readyz" | "/-/reload") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    Ok(resp)
}
