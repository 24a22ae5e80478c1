//! The store of a site with several bootfleet servers: an etcd (v3) of
//! bootfleet's own, every key under the spec's `[state] prefix`:
//!
//! ```text
//! PREFIX/site/key             the site key (32 bytes)
//! PREFIX/leases/<ip>          {"mac", "expires", "server", "hold"} (see leases.rs)
//! PREFIX/machines/mac/<mac>   an enrolled machine (JSON)
//! PREFIX/machines/name/<name> its MAC   (so two servers cannot give one
//! PREFIX/machines/ip/<ip>     its MAC    name or address twice)
//! PREFIX/timelines/<mac>/<server>  a machine's boot timeline as that
//!                             server saw it (readers take the newest)
//! PREFIX/servers/<server>     a server that is up (on its etcd lease)
//! ```
//!
//! Whatever must be decided once is a transaction on create revision 0
//! (the key does not exist yet): the site key, an enrolment. A batch of
//! lease changes is one transaction (in chunks of etcd's 128-operation
//! limit; each chunk is atomic). Calls block on a runtime of the store's
//! own, each try bounded by [`TRY_TIMEOUT`].

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnOpResponse};

use super::{Enrolled, Enrolment, Keys, Machines, StoreError, Timelines};
use crate::spec::{EtcdStore, Mac};

/// How long connecting may take (a call's tries take about as long).
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// How long one try of a call may take: a try that went to a member that
/// has just died (or is waiting out an election) is given up soon and
/// the next goes to another member.
const TRY_TIMEOUT: Duration = Duration::from_secs(1);

/// Tries per call.
const TRIES: u32 = 3;

/// How long after a failed call the store fails at once, before trying
/// etcd again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// A connection to the site's etcd.
pub struct Etcd {
    client: Client,
    prefix: String,
    endpoints: String,
    runtime: tokio::runtime::Runtime,
    /// What this server knows of each lease key, kept by its own writes
    /// and by the watch. A write claims a key only at the revision known.
    known: Arc<Mutex<leases::Known>>,
    /// Other servers' changes, for [`Leases::changes`].
    news: Arc<Mutex<leases::News>>,
    /// This server, as its records name it (`host:pid/n`).
    id: String,
    /// The etcd lease this server's holds are attached to (kept alive;
    /// granted at the first hold).
    hold_lease: Arc<Mutex<Option<i64>>>,
    watching: AtomicBool,
    /// Whether another server is on the site (see [`peers`]); true until
    /// known otherwise.
    others: tokio::sync::watch::Sender<bool>,
    /// When a call last failed to reach etcd (none: the last one did).
    failed_at: Mutex<Option<std::time::Instant>>,
    /// Calls failed in a row.
    failures: Mutex<u32>,
    /// The revision the timelines were last read at.
    timelines_rev: Mutex<i64>,
    /// Times every lease was read again after the watch fell behind.
    rereads: Arc<std::sync::atomic::AtomicU64>,
}

impl Etcd {
    /// Connects to `config.endpoints` (TLS when its files are given).
    pub fn connect(config: &EtcdStore) -> Result<Etcd, StoreError> {
        let endpoints = config.endpoints.join(",");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                path: "(etcd client runtime)".into(),
                source,
            })?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(TIMEOUT)
            .with_timeout(TRY_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), TIMEOUT);
        if let Some(tls) = tls(config)? {
            options = options.with_tls(tls);
        }
        let eps = config.endpoints.clone();
        let connect = async move { Client::connect(eps, Some(options)).await };
        let client = block(&runtime, &endpoints, "connecting", TIMEOUT, connect)?;
        Ok(Etcd {
            client,
            prefix: config.prefix.clone(),
            endpoints,
            runtime,
            known: Arc::default(),
            news: Arc::default(),
            id: leases::server_id(),
            hold_lease: Arc::default(),
            watching: AtomicBool::new(false),
            others: tokio::sync::watch::Sender::new(true),
            failed_at: Mutex::new(None),
            failures: Mutex::new(0),
            timelines_rev: Mutex::new(0),
            rereads: Arc::default(),
        })
    }

    /// The name a timeline record is saved under: the server's own
    /// (stable across restarts), else this connection's id.
    fn writer<'a>(&'a self, server: &'a str) -> &'a str {
        if server.is_empty() || server.contains('/') {
            &self.id
        } else {
            server
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// Runs `f` against the client on the store's runtime.
    fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        // While etcd is known to be away, fail at once: the DHCP thread
        // must not wait out a timeout per batch (it answers what it can
        // on its own meanwhile).
        {
            let failed = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = failed.filter(|at| at.elapsed() < RETRY_AFTER) {
                return Err(StoreError::EtcdAway {
                    endpoints: self.endpoints.clone(),
                    what,
                    secs: at.elapsed().as_secs(),
                });
            }
        }
        let mut tries = 0;
        let out = loop {
            let out = block(
                &self.runtime,
                &self.endpoints,
                what,
                TRY_TIMEOUT,
                f(self.client.clone()),
            );
            tries += 1;
            let unanswered = matches!(
                out,
                Err(StoreError::Etcd { .. } | StoreError::EtcdTimeout { .. })
            );
            if !unanswered || tries == TRIES {
                break out;
            }
            // Again: another member may answer (the cluster was electing
            // a leader, or the try went to a member that had just died
            // and the connection has not moved on yet).
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match &out {
            Err(StoreError::Etcd { .. } | StoreError::EtcdTimeout { .. }) => {
                *failures += 1;
                // Away only after two calls failed in a row.
                if *failures >= 2 {
                    if failed.is_none() {
                        tracing::warn!(endpoints = %self.endpoints, "etcd unreachable: serving what this server knows; new leases wait");
                    }
                    *failed = Some(std::time::Instant::now());
                }
            }
            Ok(_) => {
                if failed.is_some() {
                    tracing::info!(endpoints = %self.endpoints, "etcd reachable again");
                }
                *failed = None;
                *failures = 0;
            }
            Err(_) => {}
        }
        out
    }

    /// Whether the last call reached etcd.
    pub fn reachable(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Every key under `PREFIX/rest` modified after `min_mod_revision`
    /// (0: all), read in pages (see [`paged`]), each page a call of its own
    /// (tried, bounded and counted like any other).
    fn read_prefix(
        &self,
        what: &'static str,
        rest: &str,
        min_mod_revision: i64,
    ) -> Result<paged::Snapshot, StoreError> {
        let mut cursor = paged::Cursor::new(self.key(rest).as_bytes(), min_mod_revision);
        loop {
            let (key, options) = cursor.request();
            match self.call(what, move |mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.get(key, Some(options)).await }
            }) {
                Ok(resp) => {
                    if !cursor.take(resp) {
                        return Ok(cursor.finish());
                    }
                }
                Err(StoreError::Etcd { source, .. }) if cursor.restart_after(&source) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `ops` with no condition, [`MAX_TXN_OPS`] to a transaction.
    fn unconditionally(&self, what: &'static str, ops: &[TxnOp]) -> Result<(), StoreError> {
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let txn = Txn::new().and_then(chunk.to_vec());
            self.call(what, move |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })?;
        }
        Ok(())
    }

    fn get_prefix(&self, what: &'static str, rest: &str) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .read_prefix(what, rest, 0)?
            .kvs
            .iter()
            .map(|kv| KeyValue {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: kv.value().to_vec(),
                created: kv.create_revision(),
            })
            .collect())
    }
}

struct KeyValue {
    key: String,
    value: Vec<u8>,
    created: i64,
}

fn tls(config: &EtcdStore) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    let https = config.endpoints.iter().any(|e| e.starts_with("https://"));
    if !https && config.ca_file.is_none() && config.cert_file.is_none() {
        return Ok(None);
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|source| StoreError::Io {
            path: p.to_owned(),
            source,
        })
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &config.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// Runs `fut` to completion on `runtime`, bounded by `limit`, from any
/// thread: one of an async runtime's included (there, on a thread of its
/// own, since a runtime cannot be blocked on from inside another).
fn block<T, Fut>(
    runtime: &tokio::runtime::Runtime,
    endpoints: &str,
    what: &'static str,
    limit: Duration,
    fut: Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    T: Send + 'static,
{
    let bounded = async move { tokio::time::timeout(limit, fut).await };
    let out = if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(bounded))
                .join()
                .expect("the etcd call does not panic")
        })
    } else {
        runtime.block_on(bounded)
    };
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(StoreError::Etcd {
            endpoints: endpoints.to_owned(),
            what,
            source: Box::new(source),
        }),
        Err(_) => Err(StoreError::EtcdTimeout {
            endpoints: endpoints.to_owned(),
            what,
            secs: limit.as_secs(),
        }),
    }
}

fn damaged(key: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |source| StoreError::Damaged {
        key: key.to_owned(),
        source,
    }
}

impl Machines for Etcd {
    fn list(&self) -> Result<Vec<Enrolled>, StoreError> {
        let mut rows = self.get_prefix("reading the enrolled machines", "machines/mac/")?;
        rows.sort_by_key(|kv| kv.created);
        rows.iter()
            .map(|kv| serde_json::from_slice(&kv.value).map_err(damaged(&kv.key)))
            .collect()
    }

    fn enrol(&self, m: &Enrolled) -> Result<Enrolment, StoreError> {
        let by_mac = self.key(&format!("machines/mac/{}", m.mac));
        let by_name = self.key(&format!("machines/name/{}", m.name));
        let by_ip = self.key(&format!("machines/ip/{}", m.ip));
        let record = serde_json::to_vec(m).expect("plain data serialises");
        let mac = m.mac.to_string();
        let absent = |k: &str| Compare::create_revision(k, CompareOp::Equal, 0);
        let txn = Txn::new()
            .when(vec![absent(&by_mac), absent(&by_name), absent(&by_ip)])
            .and_then(vec![
                TxnOp::put(by_mac.clone(), record, None),
                TxnOp::put(by_name.clone(), mac.clone(), None),
                TxnOp::put(by_ip.clone(), mac, None),
            ])
            .or_else(vec![
                TxnOp::get(by_mac.clone(), None),
                TxnOp::get(by_name, None),
                TxnOp::get(by_ip, None),
            ]);
        let resp = self.call("enrolling a machine", move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if resp.succeeded() {
            return Ok(Enrolment::Added);
        }
        let values: Vec<Option<Vec<u8>>> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .collect();
        if let Some(Some(own)) = values.first() {
            let e: Enrolled = serde_json::from_slice(own).map_err(damaged(&by_mac))?;
            return Ok(Enrolment::Already(e));
        }
        // The name or the address is another MAC's: that machine's record.
        let holder = values
            .iter()
            .skip(1)
            .flatten()
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or(StoreError::Malformed {
                key: by_mac.clone(),
                why: "an enrolment refused with nothing holding its keys",
            })?;
        let key = self.key(&format!("machines/mac/{holder}"));
        let k = key.clone();
        let resp = self.call("reading an enrolled machine", move |mut c| {
            let k = k.clone();
            async move { c.get(k, None).await }
        })?;
        let kv = resp.kvs().first().ok_or(StoreError::Malformed {
            key: key.clone(),
            why: "a name or address held by a machine that is not enrolled",
        })?;
        let other: Enrolled = serde_json::from_slice(kv.value()).map_err(damaged(&key))?;
        Ok(Enrolment::Clash(other))
    }
}

impl Keys for Etcd {
    fn get(&self) -> Result<Option<[u8; 32]>, StoreError> {
        let key = self.key("site/key");
        let k = key.clone();
        let resp = self.call("reading the site key", move |mut c| {
            let k = k.clone();
            async move { c.get(k, None).await }
        })?;
        resp.kvs()
            .first()
            .map(|kv| {
                <[u8; 32]>::try_from(kv.value()).map_err(|_| StoreError::Malformed {
                    key: key.clone(),
                    why: "not 32 bytes",
                })
            })
            .transpose()
    }

    fn get_or_create(&self, fresh: [u8; 32]) -> Result<([u8; 32], bool), StoreError> {
        let key = self.key("site/key");
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(key.clone(), fresh.to_vec(), None)])
            .or_else(vec![TxnOp::get(key.clone(), None)]);
        let resp = self.call("storing the site key", move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        if resp.succeeded() {
            return Ok((fresh, true));
        }
        let stored = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        stored
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .map(|k| (k, false))
            .ok_or(StoreError::Malformed {
                key,
                why: "not 32 bytes",
            })
    }
}

/// The MAC of a key `PREFIX/timelines/<mac>/<server>`.
fn mac_of(key: &[u8]) -> Option<Mac> {
    let key = std::str::from_utf8(key).ok()?;
    let (_, rest) = key.split_once("/timelines/")?;
    rest.split('/').next()?.parse().ok()
}

/// A timeline record as stored: the writing server's id, a newline, the
/// record (compact JSON, which holds no newline).
fn split_writer(value: &[u8]) -> (&[u8], &[u8]) {
    match value.iter().position(|b| *b == b'\n') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (&[], value),
    }
}

impl Timelines for Etcd {
    fn load(&self) -> Result<Vec<(Mac, Vec<u8>)>, StoreError> {
        let all = self.read_prefix("reading the boot timelines", "timelines/", 0)?;
        *self.timelines_rev.lock().unwrap_or_else(|p| p.into_inner()) = all.revision;
        Ok(all
            .kvs
            .iter()
            .filter_map(|kv| Some((mac_of(kv.key())?, split_writer(kv.value()).1.to_vec())))
            .collect())
    }

    fn save(&self, server: &str, rows: &[(Mac, Vec<u8>)]) -> Result<(), StoreError> {
        let server = self.writer(server);
        let ops: Vec<TxnOp> = rows
            .iter()
            .map(|(mac, v)| {
                let mut value = server.as_bytes().to_vec();
                value.push(b'\n');
                value.extend_from_slice(v);
                // One key per machine and server: two servers never
                // overwrite each other's view; readers join them.
                TxnOp::put(self.key(&format!("timelines/{mac}/{server}")), value, None)
            })
            .collect();
        self.unconditionally("saving the boot timelines", &ops)
    }

    /// Every server's record of each machine: one ranged delete per
    /// machine, 128 to a transaction.
    fn forget(&self, macs: &[Mac]) -> Result<(), StoreError> {
        let ops: Vec<TxnOp> = macs
            .iter()
            .map(|mac| {
                TxnOp::delete(
                    self.key(&format!("timelines/{mac}/")),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
            })
            .collect();
        self.unconditionally("forgetting boot timelines", &ops)
    }

    /// What changed since the revision last read: one ranged read of the
    /// keys modified after it.
    fn changed(&self, server: &str) -> Result<Vec<(Mac, Vec<u8>)>, StoreError> {
        let server = self.writer(server).to_owned();
        let since = *self.timelines_rev.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = self.read_prefix("reading the boot timelines", "timelines/", since + 1)?;
        *self.timelines_rev.lock().unwrap_or_else(|p| p.into_inner()) = fresh.revision;
        Ok(fresh
            .kvs
            .iter()
            .filter_map(|kv| {
                let (writer, record) = split_writer(kv.value());
                if writer == server.as_bytes() {
                    return None;
                }
                Some((mac_of(kv.key())?, record.to_vec()))
            })
            .collect())
    }
}

mod leases;
#[cfg(test)]
mod member;
mod paged;
mod peers;
#[cfg(test)]
mod tests;
