//! The sample origin: a small bank front-end (`/`, `/search`, `/product/N`, `POST /login`,
//! `/api/…`) that counts, per second, the requests it receives from each population (by
//! the client address the edge puts in `X-Forwarded-For`) and marks its answers with
//! `x-origin: 1`, so clients can tell an origin answer from the edge's own.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::Population;

/// Requests the origin received: per (population, second since start).
#[derive(Default)]
pub struct Counts {
    per_second: Mutex<HashMap<(Population, u64), u64>>,
}

impl Counts {
    /// Requests from `p` in seconds `[from, to)`.
    pub fn between(&self, p: Population, from: u64, to: u64) -> u64 {
        let m = self.per_second.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((q, s), _)| *q == p && *s >= from && *s < to)
            .map(|(_, n)| *n)
            .sum()
    }

    /// All requests in seconds `[from, to)`.
    pub fn total_between(&self, from: u64, to: u64) -> u64 {
        let m = self.per_second.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((_, s), _)| *s >= from && *s < to)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// Starts the origin on 127.0.0.1; its address and counts.
pub async fn start(started: Instant) -> anyhow::Result<(SocketAddr, Arc<Counts>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, c.clone(), started));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((addr, counts))
}

async fn handle(
    req: Request<Incoming>,
    counts: Arc<Counts>,
    started: Instant,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let client = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<Ipv4Addr>().ok());
    let pop = client.map_or(Population::Legit, crate::population_of);
    {
        let mut m = counts.per_second.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((pop, started.elapsed().as_secs())).or_default() += 1;
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, page) = match (method.as_str(), path.as_str()) {
        ("POST", "/login") => {
            if body.starts_with(b"user=customer") {
                (StatusCode::OK, "<p>Welcome back.</p>".to_owned())
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    "<p>Wrong user or password.</p>".to_owned(),
                )
            }
        }
        (_, p) if p.starts_with("/api/") => (StatusCode::OK, "{\"balance\":1024}".to_owned()),
        (_, p) => (
            StatusCode::OK,
            format!(
                "<html><body><h1>Bank</h1><p>{}</p>{}</body></html>",
                p,
                "x".repeat(512)
            ),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(page)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("x-origin", http::HeaderValue::from_static("1"));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html"),
    );
    Ok(r)
}
