//! TCP pass-through: non-HTTP services behind a listener with `mode = "tcp"`.
//!
//! Bytes are relayed untouched between the client and a server of the listener's pool
//! (chosen like HTTP requests: balancing, health, ejection on connect failures). The
//! per-client-IP connection and connection-rate limits were applied before this point.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::runtime::Shared;
use crate::upstream::{Outcome, PoolRuntime};

/// Relays one client connection to a server of `pool`.
pub async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    listener: &str,
    tenant: &str,
    mut client: C,
    peer: SocketAddr,
    pool: Arc<PoolRuntime>,
) {
    let mut exclude = None;
    for attempt in 0..2 {
        let Some(lease) = pool.pick(exclude) else {
            tracing::warn!(tenant, listener, pool = %pool.spec.id, client = %peer, "tcp: no origin server available");
            return;
        };
        let s = lease.server();
        let addr = s.authority.clone();
        let connect =
            tokio::time::timeout(pool.spec.connect_timeout, TcpStream::connect(addr.as_str()))
                .await;
        let mut origin = match connect {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                lease.record(Outcome::ConnectError);
                tracing::warn!(tenant, listener, pool = %pool.spec.id, server = %addr, error = %e, "tcp: origin connect failed");
                exclude = Some(lease.index());
                if attempt == 0 && pool.servers.len() > 1 {
                    continue;
                }
                return;
            }
            Err(_) => {
                lease.record(Outcome::Timeout);
                tracing::warn!(tenant, listener, pool = %pool.spec.id, server = %addr, "tcp: origin connect timed out");
                return;
            }
        };
        lease.record(Outcome::Ok);
        let _ = origin.set_nodelay(true);
        let mut shutdown = shared.shutdown_signal();
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut origin) => match r {
                Ok((up, down)) => {
                    shared.metrics.tcp_bytes.with(&[listener, "upstream"]).add(up);
                    shared.metrics.tcp_bytes.with(&[listener, "downstream"]).add(down);
                    tracing::debug!(tenant, listener, client = %peer, server = %addr, up, down, "tcp: connection closed");
                }
                Err(e) => tracing::debug!(tenant, listener, client = %peer, server = %addr, error = %e, "tcp: connection ended with error"),
            },
            _ = crate::runtime::drained(&mut shutdown) => {
                tracing::debug!(tenant, listener, client = %peer, "tcp: closed for shutdown");
            }
        }
        return;
    }
}
