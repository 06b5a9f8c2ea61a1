//! The running edge: the current configuration generation, the listeners, reloads and
//! shutdown.
//!
//! **Reload is atomic.** [`Edge::reload`] reads the file and builds a complete new
//! [`Generation`]; binds the sockets of listeners that are new or moved; and only when
//! all of that succeeded swaps the generation in and stops the listeners that went away.
//! Any failure leaves the running generation and its listeners exactly as they were.
//! Listeners whose name and address did not change keep their socket and every open
//! connection: they read the generation per connection and per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rampart_core::config::{Diagnostics, SourceFile};
use rampart_core::request_id::IdGen;
use tokio::sync::{Notify, watch};

use crate::generation::{Generation, StageFactory, no_stages};
use crate::limits::{ConnLimiter, RateLimiter};
use crate::metrics::Metrics;

thread_local! {
    static IDS: RefCell<IdGen> = RefCell::new(IdGen::new(seed()));
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the worker thread running the caller, if it is one.
pub fn worker_index() -> Option<usize> {
    WORKER.with(|w| w.get())
}

/// The data-plane threads: one single-threaded async runtime each, like nginx's worker
/// processes. Every listener is accepted on by every worker (on a clone of the same
/// socket), and everything a connection needs — its requests, its origin connections,
/// its timers — stays on the worker that accepted it. No request crosses threads, so
/// there are no cross-thread wake-ups on the request path.
pub struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    stops: Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workers({})", self.handles.len())
    }
}

impl Workers {
    /// Starts `n` worker threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("rampart-worker-{i}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(Some(i)));
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(rt.handle().clone()));
                    let _ = rt.block_on(stop_rx);
                })?;
            let handle = rx
                .recv()
                .map_err(|_| std::io::Error::other("worker thread died at start"))??;
            handles.push(handle);
            stops.push(stop_tx);
        }
        Ok(Workers {
            handles,
            stops: Mutex::new(stops),
        })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are no workers (never, once started).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runtime handles, one per worker.
    pub fn handles(&self) -> &[tokio::runtime::Handle] {
        &self.handles
    }

    /// Stops every worker; their remaining tasks are dropped.
    pub fn stop(&self) {
        for s in self
            .stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.send(());
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn seed() -> u64 {
    let s = RandomState::new();
    s.hash_one((std::thread::current().id(), std::time::SystemTime::now()))
}

/// A fresh request id (32 hex characters).
pub fn new_request_id() -> String {
    IDS.with(|g| g.borrow_mut().next_id())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn websocket_key() -> String {
    let id = new_request_id();
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    base64(&bytes)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Resolves once the edge starts draining.
pub async fn drained(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await.map(|_| ());
}

/// Why the edge could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(Diagnostics),
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A socket could not be bound.
    #[error("cannot bind listener `{name}` on {addr}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Counts live connections and tunnels, so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct Tracker {
    active: AtomicUsize,
    idle: Notify,
}

/// Held by each tracked connection.
#[derive(Debug)]
pub struct TrackToken(Arc<Tracker>);

impl Drop for TrackToken {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub(crate) struct Running {
    pub(crate) bind: SocketAddr,
    pub(crate) local: SocketAddr,
    stop: watch::Sender<bool>,
    pub(crate) conns: Arc<ConnLimiter>,
    pub(crate) rate: Arc<RateLimiter>,
}

/// State shared by every task of the edge.
pub struct Shared {
    current: ArcSwap<Generation>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    path: PathBuf,
    listeners: Mutex<HashMap<Arc<str>, Running>>,
    reload_lock: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
    tracker: Arc<Tracker>,
    admin: Mutex<Option<SocketAddr>>,
    stages: StageFactory,
    /// The data-plane threads.
    pub(crate) workers: Workers,
}

impl Shared {
    /// The generation in force.
    #[inline]
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// A token counting one live connection or tunnel.
    pub fn tracker(&self) -> TrackToken {
        self.tracker.active.fetch_add(1, Ordering::AcqRel);
        TrackToken(self.tracker.clone())
    }

    /// Receives `true` when the edge starts draining.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Reloads the configuration file; see [`Edge::reload`].
    pub async fn reload(self: &Arc<Self>) -> Result<u64, EdgeError> {
        let _serial = self.reload_lock.lock().await;
        let result = self.reload_locked().await;
        match &result {
            Ok(id) => {
                self.metrics.reloads.with(&["success"]).inc();
                self.metrics.generation.with(&[]).set(*id as i64);
                tracing::info!(generation = id, "configuration reloaded");
            }
            Err(e) => {
                self.metrics.reloads.with(&["failure"]).inc();
                tracing::error!(error = %e, "configuration reload refused; the running configuration stays in force");
            }
        }
        result
    }

    async fn reload_locked(self: &Arc<Self>) -> Result<u64, EdgeError> {
        let source = read_source(&self.path)?;
        let old = self.current();
        let id = old.id + 1;
        let metrics = self.metrics.clone();
        let old2 = old.clone();
        let stages = self.stages.clone();
        let workers = self.workers.len();
        // Building reads certificate files: keep that off the async workers.
        let g = tokio::task::spawn_blocking(move || {
            Generation::build(id, source, Some(&old2), &metrics, &stages, workers)
        })
        .await
        .map_err(|e| EdgeError::Read {
            path: self.path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(EdgeError::Config)?;
        let g = Arc::new(g);

        // Bind what is new or moved, before touching anything.
        let mut fresh = Vec::new();
        {
            let running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            for l in &g.config.listeners {
                match running.get(&l.name) {
                    Some(r) if r.bind == l.bind => {}
                    _ => fresh.push(l.clone()),
                }
            }
        }
        let mut bound = Vec::new();
        for l in &fresh {
            // A moved listener's old socket may hold the same port on another address;
            // binding first is correct because addresses differ.
            match crate::listener::bind(l.bind) {
                Ok(sock) => bound.push((l.clone(), sock)),
                Err(source) => {
                    return Err(EdgeError::Bind {
                        name: l.name.to_string(),
                        addr: l.bind,
                        source,
                    });
                }
            }
        }

        // Commit.
        self.current.store(g.clone());
        let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let keep: std::collections::HashSet<&str> =
            g.config.listeners.iter().map(|l| &*l.name).collect();
        running.retain(|name, r| {
            let stay = keep.contains(&**name)
                && g.config
                    .listeners
                    .iter()
                    .any(|l| l.name == *name && l.bind == r.bind);
            if !stay {
                let _ = r.stop.send(true);
                tracing::info!(listener = %name, addr = %r.local, "listener stopped");
            }
            stay
        });
        for (l, sock) in bound {
            let r = crate::listener::spawn(self.clone(), l.name.clone(), l.bind, sock);
            running.insert(l.name.clone(), r);
        }
        drop(running);
        for (i, p) in g.pools.iter().enumerate() {
            if !old.pools.iter().any(|o| Arc::ptr_eq(o, p)) {
                g.pools[i].start_health_checks();
            }
        }
        Ok(id)
    }

    pub(crate) fn limiters(&self, name: &str) -> Option<(Arc<ConnLimiter>, Arc<RateLimiter>)> {
        let running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        running.get(name).map(|r| (r.conns.clone(), r.rate.clone()))
    }
}

fn read_source(path: &Path) -> Result<SourceFile, EdgeError> {
    let text = std::fs::read_to_string(path).map_err(|source| EdgeError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

/// Validates a configuration file completely — syntax, references, certificate and key
/// files, CA bundles, log files, WAF rule files — exactly as `serve` and a reload would, without binding
/// anything. This is `rampart check`.
pub fn check(path: &Path) -> Result<rampart_core::config::Config, EdgeError> {
    let source = read_source(path)?;
    let metrics = Arc::new(Metrics::new());
    let config = rampart_core::config::load_str(&source).map_err(EdgeError::Config)?;
    crate::tls::server_config(&source, &config).map_err(EdgeError::Config)?;
    let mut diags = Diagnostics::default();
    for i in 0..config.pools.len() {
        if let Err(d) = crate::upstream::PoolRuntime::check(&source, &config, i, &metrics) {
            diags.0.extend(d.0);
        }
    }
    if let Err(d) = crate::waf::WafSet::build(&source, &config) {
        diags.0.extend(d.0);
    }
    if !diags.is_empty() {
        diags.sort();
        return Err(EdgeError::Config(diags));
    }
    Ok(config)
}

/// A running edge.
pub struct Edge {
    shared: Arc<Shared>,
}

impl Edge {
    /// Loads `path`, binds every listener and the admin endpoint, and starts serving.
    /// Must be called inside a tokio runtime.
    pub async fn start(path: &Path) -> Result<Edge, EdgeError> {
        Self::start_with(path, no_stages()).await
    }

    /// Like [`Edge::start`], with `stages` run after the standard ones.
    pub async fn start_with(path: &Path, stages: StageFactory) -> Result<Edge, EdgeError> {
        let source = read_source(path)?;
        let metrics = Arc::new(Metrics::new());
        // Validate before starting threads, so a bad file costs nothing.
        let config = rampart_core::config::load_str(&source).map_err(EdgeError::Config)?;
        let n = if config.edge.workers == 0 {
            default_workers()
        } else {
            config.edge.workers
        };
        let workers = Workers::start(n).map_err(|source| EdgeError::Read {
            path: "worker threads".into(),
            source,
        })?;
        let g = Arc::new(
            Generation::build(1, source, None, &metrics, &stages, workers.len())
                .map_err(EdgeError::Config)?,
        );
        let mut bound = Vec::new();
        for l in &g.config.listeners {
            let sock = crate::listener::bind(l.bind).map_err(|source| EdgeError::Bind {
                name: l.name.to_string(),
                addr: l.bind,
                source,
            })?;
            bound.push((l.name.clone(), l.bind, sock));
        }
        let admin = match g.config.edge.admin {
            Some(addr) => Some((
                addr,
                crate::listener::bind(addr).map_err(|source| EdgeError::Bind {
                    name: "admin".into(),
                    addr,
                    source,
                })?,
            )),
            None => None,
        };
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            current: ArcSwap::from(g.clone()),
            metrics: metrics.clone(),
            path: path.to_owned(),
            listeners: Mutex::new(HashMap::new()),
            reload_lock: tokio::sync::Mutex::new(()),
            shutdown,
            tracker: Arc::new(Tracker::default()),
            admin: Mutex::new(None),
            stages,
            workers,
        });
        {
            let mut running = shared.listeners.lock().unwrap_or_else(|p| p.into_inner());
            for (name, bind, sock) in bound {
                let r = crate::listener::spawn(shared.clone(), name.clone(), bind, sock);
                running.insert(name, r);
            }
        }
        if let Some((_, sock)) = admin {
            let local = sock.local_addr().ok();
            *shared.admin.lock().unwrap_or_else(|p| p.into_inner()) = local;
            crate::admin::spawn(shared.clone(), sock);
        }
        for p in &g.pools {
            p.start_health_checks();
        }
        metrics.generation.with(&[]).set(1);
        tracing::info!(config = %path.display(), listeners = g.config.listeners.len(), sites = g.config.sites.len(), "edge started");
        Ok(Edge { shared })
    }

    /// Reloads the configuration file atomically; returns the new generation number.
    /// On error nothing changed.
    pub async fn reload(&self) -> Result<u64, EdgeError> {
        self.shared.reload().await
    }

    /// The generation in force.
    pub fn current(&self) -> Arc<Generation> {
        self.shared.current()
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        let running = self
            .shared
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.get(listener).map(|r| r.local)
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        *self.shared.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops accepting, asks every connection to finish its in-flight requests, and waits
    /// for them up to `deadline`. Returns the number of connections still open then.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        {
            let running = self
                .shared
                .listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for r in running.values() {
                let _ = r.stop.send(true);
            }
        }
        let _ = self.shared.shutdown.send(true);
        let tracker = self.shared.tracker.clone();
        let wait = async {
            loop {
                let notified = tracker.idle.notified();
                if tracker.active.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        tracker.active.load(Ordering::Acquire)
    }
}

impl Running {
    pub(crate) fn new(bind: SocketAddr, local: SocketAddr, stop: watch::Sender<bool>) -> Self {
        Running {
            bind,
            local,
            stop,
            conns: Arc::new(ConnLimiter::default()),
            rate: Arc::new(RateLimiter::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(websocket_key().len(), 24);
    }
}
