//! The HTTP server's connections: accepted here, served by hyper with the
//! router, and bounded the way nginx bounds them by default, since anyone
//! on a boot segment can open them.
//!
//! - A request's header must arrive within [`Limits::header_timeout`]
//!   (nginx's `client_header_timeout`, 60 s), and a kept-alive connection
//!   idle for as long between requests is closed too: a client that sends
//!   half a header and stops holds its socket no longer.
//! - One client address holds at most [`Limits::per_client`] connections;
//!   more are closed at once and counted, so one peer cannot take the
//!   server's descriptors from the machines that boot.
//! - At most [`Limits::connections`] are open in all; past that the
//!   server stops accepting until one closes (new ones wait in the
//!   kernel's queue), counted as well.
//!
//! On stop, no connection is accepted any more and those open finish
//! their requests (the caller bounds how long).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::metrics::{Out, signed};

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For a request's header to arrive, and for an idle kept-alive
    /// connection's next request to start.
    pub header_timeout: Duration,
    /// Open connections in all.
    pub connections: usize,
    /// Open connections from one client address.
    pub per_client: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(60),
            connections: 4096,
            per_client: 256,
        }
    }
}

/// What happened to connections, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    accepted: AtomicU64,
    open: AtomicU64,
    /// Closed at once: their client held `per_client` already.
    refused: AtomicU64,
    /// Times the server stopped accepting because `connections` were open.
    full: AtomicU64,
    /// Closed for sending no complete header in time (or idle too long).
    timed_out: AtomicU64,
}

impl Collector for ConnStats {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut out = Out(encoder);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.counter(
            "bootfleet_http_connections_accepted",
            "HTTP connections accepted",
            get(&self.accepted),
        )?;
        out.gauge(
            "bootfleet_http_connections_open",
            "HTTP connections open now",
            signed(get(&self.open)),
        )?;
        out.counter(
            "bootfleet_http_connections_refused",
            "HTTP connections closed at once because their client address held as many as it may",
            get(&self.refused),
        )?;
        out.counter(
            "bootfleet_http_connections_full",
            "Times the HTTP server stopped accepting because it held as many connections as it may",
            get(&self.full),
        )?;
        out.counter(
            "bootfleet_http_header_timeouts",
            "HTTP connections closed for sending no complete request header in time, or idling too long between requests",
            get(&self.timed_out),
        )
    }
}

/// Connections open per client address.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts one more from `ip`, unless it holds `max` already.
    fn take(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn give(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// What every accept loop of one server shares.
struct Accepting {
    app: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    slots: Arc<Semaphore>,
    per_client: Arc<PerClient>,
    graceful: hyper_util::server::graceful::GracefulShutdown,
    builder: hyper::server::conn::http1::Builder,
}

/// Serves `app` on each of `listeners` (one per address bootfleet is
/// reached at) within `limits`, the bounds shared, until `stop` resolves;
/// then lets the open connections finish their requests.
pub async fn serve(
    listeners: Vec<TcpListener>,
    app: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let shared = Arc::new(Accepting {
        app,
        limits,
        stats,
        slots: Arc::new(Semaphore::new(limits.connections)),
        per_client: Arc::new(PerClient::default()),
        graceful: hyper_util::server::graceful::GracefulShutdown::new(),
        builder,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept(l, shared.clone(), stop_rx.clone())))
        .collect();
    stop.await;
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    if let Ok(shared) = Arc::try_unwrap(shared) {
        shared.graceful.shutdown().await;
    }
}

/// Accepts on `listener` until `stop` turns true.
async fn accept(
    listener: TcpListener,
    a: Arc<Accepting>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let slot = tokio::select! {
            _ = stop.changed() => break,
            slot = a.slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        if a.slots.available_permits() == 0 {
            a.stats.full.fetch_add(1, Ordering::Relaxed);
        }
        let (stream, remote) = tokio::select! {
            _ = stop.changed() => break,
            got = listener.accept() => match got {
                Ok(got) => got,
                Err(e) => {
                    // Out of descriptors, or a connection reset before
                    // it was taken: wait a moment rather than spin.
                    tracing::debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        a.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if !a.per_client.take(remote.ip(), a.limits.per_client) {
            a.stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        a.stats.open.fetch_add(1, Ordering::Relaxed);
        let conn = a
            .builder
            .serve_connection(TokioIo::new(stream), service(a.app.clone(), remote));
        let conn = a.graceful.watch(conn);
        let (stats, per_client) = (a.stats.clone(), a.per_client.clone());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                tracing::trace!(error = %e, %remote, "HTTP connection ended");
            }
            per_client.give(remote.ip());
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// The router as one connection's hyper service, each request carrying
/// the client's address (axum's `ConnectInfo`).
fn service(
    app: Router,
    remote: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<axum::response::Response, std::convert::Infallible>,
    > + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(req.map(axum::body::Body::new))
    })
}
