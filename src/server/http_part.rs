//! HTTP as a part of a server: the router on a bound listener, within the
//! connection limits of [`crate::http::listen`], on a runtime of its own
//! whose threads sit below DHCP and TFTP in priority. The server's
//! background tasks (writing timelines behind, enrolling machines) run on
//! it too.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::ServerError;
use crate::http::listen::{ConnStats, Limits};

/// A task run beside the HTTP server for as long as it runs.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How many nice levels the HTTP runtime's threads sit below DHCP and TFTP.
const HTTP_NICE: libc::c_int = 5;

/// How long requests under way may go on after the server was told to
/// stop.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// A running HTTP server.
pub struct HttpPart {
    /// Where it answers (the first of its addresses).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

/// Serves `app` on `listeners` (one per address bootfleet is reached at)
/// within `limits` (counted in `stats`), running `tasks` beside it.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    app: axum::Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    tasks: Vec<Task>,
) -> Result<HttpPart, ServerError> {
    let addr = listeners
        .first()
        .ok_or_else(|| ServerError::Io {
            what: "starting HTTP",
            source: std::io::Error::other("no address to answer at"),
        })?
        .local_addr()
        .map_err(|source| ServerError::Io {
            what: "reading the HTTP address",
            source,
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .on_thread_start(defer_to_udp)
        .build()
        .map_err(|source| ServerError::Io {
            what: "starting the HTTP runtime",
            source,
        })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("http-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                for task in tasks {
                    tokio::spawn(task);
                }
                let mut bound = Vec::new();
                for l in listeners {
                    bound.push(tokio::net::TcpListener::from_std(l).map_err(|source| {
                        ServerError::Io {
                            what: "serving HTTP",
                            source,
                        }
                    })?);
                }
                // On stop, requests under way get HTTP_DRAIN to finish; a
                // transfer to a machine that stopped reading (paused,
                // powered off) must not hold the server up for ever.
                let stop_seen = Arc::new(tokio::sync::Notify::new());
                let seen = stop_seen.clone();
                let serve = crate::http::listen::serve(bound, app, limits, stats, async move {
                    let _ = stopped.await;
                    seen.notify_one();
                });
                tokio::select! {
                    () = serve => {}
                    () = async {
                        stop_seen.notified().await;
                        tokio::time::sleep(HTTP_DRAIN).await;
                    } => {
                        tracing::warn!(
                            "HTTP: requests still under way {} s after the stop were cut off",
                            HTTP_DRAIN.as_secs()
                        );
                    }
                }
                Ok(())
            })
        })
        .map_err(|source| ServerError::Io {
            what: "starting the HTTP thread",
            source,
        })?;
    Ok(HttpPart {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl HttpPart {
    /// Whether it still serves.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops accepting, lets requests under way finish (at most
    /// [`HTTP_DRAIN`]) and waits.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(ServerError::Panicked("HTTP"))),
            None => Ok(()),
        }
    }
}

impl Drop for HttpPart {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Lowers the calling thread's priority by [`HTTP_NICE`]. The HTTP
/// runtime's threads stream hundreds of megabytes to every booting machine
/// while DHCP and TFTP answer small packets that each keep a firmware
/// waiting; at equal priority, a 200-machine boot storm took the TFTP
/// loader fetch from 0.9 to 1.8 s (median), and 1.4 s at nice 5
/// (bench/storm.sh). Lowering a thread's own priority needs no privilege.
fn defer_to_udp() {
    // SAFETY: gettid and getpriority/setpriority on the calling thread
    // take no pointers.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + HTTP_NICE).min(19));
        }
    }
}
