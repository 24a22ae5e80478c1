//! The store of a site with several bootfleet servers: an etcd (v3) of
//! bootfleet's own, every key under the spec's `[state] prefix`:
//!
//! ```text
//! PREFIX/site/key             the site key (32 bytes)
//! PREFIX/leases/<ip>          {"mac": .., "expires": ..}
//! PREFIX/machines/mac/<mac>   an enrolled machine (JSON)
//! PREFIX/machines/name/<name> its MAC   (so two servers cannot give one
//! PREFIX/machines/ip/<ip>     its MAC    name or address twice)
//! PREFIX/timelines/<mac>      a machine's boot timeline record
//! ```
//!
//! Whatever must be decided once is a transaction on create revision 0
//! (the key does not exist yet): the site key, an enrolment. A batch of
//! lease changes is one transaction (in chunks of etcd's 128-operation
//! limit; each chunk is atomic). Calls block on a runtime of the store's
//! own, each bounded by [`TIMEOUT`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use serde::{Deserialize, Serialize};

use super::{
    Applied, Enrolled, Enrolment, Keys, Lease, Leases, Machines, Op, StoreError, Timelines,
};
use crate::spec::{EtcdStore, Mac};

/// How long one call may take before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// The time to live of the etcd lease a server's holds hang on: a dead
/// server's offers are free again this long after it stopped.
const HOLD_TTL_SECS: i64 = 10;

/// Each lease key as this server knows it: the revision it last changed
/// at (0: absent), and the lease there.
type Known = HashMap<Ipv4Addr, (i64, Option<Lease>)>;

/// Other servers' changes: each address and its lease now (`None`: freed).
type News = Vec<(Ipv4Addr, Option<Lease>)>;

/// A connection to the site's etcd.
pub struct Etcd {
    client: Client,
    prefix: String,
    endpoints: String,
    runtime: tokio::runtime::Runtime,
    /// What this server knows of each lease key, kept by its own writes
    /// and by the watch: the revision it last changed at (0: absent) and
    /// the lease there. A write claims a key only at the revision known.
    known: Arc<Mutex<Known>>,
    /// Other servers' changes, for [`Leases::changes`].
    news: Arc<Mutex<News>>,
    /// This server, as its records name it (`host:pid/n`).
    id: String,
    /// The etcd lease this server's holds are attached to (kept alive;
    /// granted at the first hold).
    hold_lease: Mutex<Option<i64>>,
    watching: AtomicBool,
}

#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    mac: Mac,
    expires: u64,
    /// The server that wrote it (`host:pid/n`): its own writes are not news
    /// to it.
    #[serde(default)]
    server: String,
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
            .with_timeout(TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), TIMEOUT);
        if let Some(tls) = tls(config)? {
            options = options.with_tls(tls);
        }
        let eps = config.endpoints.clone();
        let connect = async move { Client::connect(eps, Some(options)).await };
        let client = block(&runtime, &endpoints, "connecting", connect)?;
        Ok(Etcd {
            client,
            prefix: config.prefix.clone(),
            endpoints,
            runtime,
            known: Arc::default(),
            news: Arc::default(),
            id: {
                // Unique per connection, even for two in one process.
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
                let n = N.fetch_add(1, Ordering::Relaxed);
                format!("{}:{}/{n}", hostname(), std::process::id())
            },
            hold_lease: Mutex::new(None),
            watching: AtomicBool::new(false),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// Runs `f` against the client on the store's runtime.
    fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        block(&self.runtime, &self.endpoints, what, f(self.client.clone()))
    }

    fn get_prefix(&self, what: &'static str, rest: &str) -> Result<Vec<KeyValue>, StoreError> {
        let key = self.key(rest);
        let resp = self.call(what, move |mut c| async move {
            c.get(key, Some(GetOptions::new().with_prefix())).await
        })?;
        Ok(resp
            .kvs()
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

/// Runs `fut` to completion on `runtime`, bounded by [`TIMEOUT`], from any
/// thread: one of an async runtime's included (there, on a thread of its
/// own, since a runtime cannot be blocked on from inside another).
fn block<T, Fut>(
    runtime: &tokio::runtime::Runtime,
    endpoints: &str,
    what: &'static str,
    fut: Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    T: Send + 'static,
{
    let bounded = async move { tokio::time::timeout(TIMEOUT, fut).await };
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
            secs: TIMEOUT.as_secs(),
        }),
    }
}

fn damaged(key: &str) -> impl Fn(serde_json::Error) -> StoreError + '_ {
    move |source| StoreError::Damaged {
        key: key.to_owned(),
        source,
    }
}

/// This host's name, for the records this server writes.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_secs() -> u64 {
    crate::boot::now_ms() / 1000
}

/// The lease a record under `key` stands for.
fn lease_of(key: &[u8], value: &[u8]) -> Option<(Ipv4Addr, Lease)> {
    let ip: Ipv4Addr = std::str::from_utf8(key)
        .ok()?
        .rsplit('/')
        .next()?
        .parse()
        .ok()?;
    let r: LeaseRecord = serde_json::from_slice(value).ok()?;
    Some((
        ip,
        Lease {
            ip,
            mac: r.mac,
            expires: r.expires,
        },
    ))
}

/// Whether `holder` keeps `mac` from an address at `now`.
fn blocks(holder: &Option<Lease>, mac: Mac, now: u64) -> bool {
    holder
        .as_ref()
        .is_some_and(|h| h.mac != mac && h.expires > now)
}

impl Etcd {
    /// The etcd lease for holds: granted once, then kept alive by a task.
    fn hold_lease(&self) -> Result<i64, StoreError> {
        let mut held = lock(&self.hold_lease);
        if let Some(id) = *held {
            return Ok(id);
        }
        let granted = self.call("granting the lease for offers", |mut c| async move {
            c.lease_grant(HOLD_TTL_SECS, None).await
        })?;
        let id = granted.id();
        let mut c = self.client.clone();
        self.runtime.spawn(async move {
            let Ok((mut keeper, mut answers)) = c.lease_keep_alive(id).await else {
                return;
            };
            loop {
                if keeper.keep_alive().await.is_err() || answers.message().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs((HOLD_TTL_SECS / 3) as u64)).await;
            }
        });
        *held = Some(id);
        Ok(id)
    }

    /// Starts watching the lease keys from `revision` on (once).
    fn watch_from(&self, revision: i64) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let prefix = self.key("leases/");
        let (client, known, news, id) = (
            self.client.clone(),
            self.known.clone(),
            self.news.clone(),
            self.id.clone(),
        );
        self.runtime
            .spawn(watch(client, prefix, revision, known, news, id));
    }

    /// One op as its own transaction, at the revision etcd has now.
    fn apply_one(&self, op: &Op, hold: Option<i64>) -> Result<Applied, StoreError> {
        let key = self.key(&format!("leases/{}", op.ip()));
        for _ in 0..2 {
            let k = key.clone();
            let got = self.call("reading a lease", move |mut c| async move {
                c.get(k, None).await
            })?;
            let (rev, holder) = got.kvs().first().map_or((0, None), |kv| {
                (
                    kv.mod_revision(),
                    lease_of(kv.key(), kv.value()).map(|(_, l)| l),
                )
            });
            if let Op::Put(l) | Op::Hold(l) = op {
                if blocks(&holder, l.mac, now_secs()) {
                    lock(&self.known).insert(op.ip(), (rev, holder.clone()));
                    return Ok(Applied::Taken(holder));
                }
            }
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    rev,
                )])
                .and_then(vec![self.txn_op(op, hold)]);
            let resp = self.call(
                "claiming a lease",
                move |mut c| async move { c.txn(txn).await },
            )?;
            if resp.succeeded() {
                let at = resp.header().map_or(0, |h| h.revision());
                self.note_own(at, std::slice::from_ref(op));
                return Ok(Applied::Done);
            }
        }
        Ok(Applied::Taken(None))
    }

    fn txn_op(&self, op: &Op, hold: Option<i64>) -> TxnOp {
        let key = self.key(&format!("leases/{}", op.ip()));
        let record = |l: &Lease| {
            serde_json::to_vec(&LeaseRecord {
                mac: l.mac,
                expires: l.expires,
                server: self.id.clone(),
            })
            .expect("plain data serialises")
        };
        match op {
            Op::Put(l) => TxnOp::put(key, record(l), None),
            Op::Hold(l) => TxnOp::put(
                key,
                record(l),
                hold.map(|id| PutOptions::new().with_lease(id)),
            ),
            Op::Remove(_) => TxnOp::delete(key, None),
        }
    }

    /// Records this server's writes at revision `at`.
    fn note_own(&self, at: i64, ops: &[Op]) {
        let mut known = lock(&self.known);
        for op in ops {
            let lease = match op {
                Op::Put(l) | Op::Hold(l) => Some(l.clone()),
                Op::Remove(_) => None,
            };
            known.insert(op.ip(), (if lease.is_some() { at } else { 0 }, lease));
        }
    }
}

/// Follows every change to the lease keys, from `revision` on: what other
/// servers changed becomes news; a watch that ends (etcd restarted, the
/// history compacted) starts again from a fresh read.
async fn watch(
    mut client: Client,
    prefix: String,
    mut revision: i64,
    known: Arc<Mutex<Known>>,
    news: Arc<Mutex<News>>,
    id: String,
) {
    loop {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        if let Ok(mut stream) = client.watch(prefix.as_str(), Some(options)).await {
            while let Ok(Some(resp)) = stream.message().await {
                if resp.canceled() {
                    break;
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    revision = revision.max(kv.mod_revision());
                    let mine = serde_json::from_slice::<LeaseRecord>(kv.value())
                        .is_ok_and(|r| r.server == id);
                    let change = match ev.event_type() {
                        EventType::Put => lease_of(kv.key(), kv.value()).map(|(ip, l)| {
                            lock(&known).insert(ip, (kv.mod_revision(), Some(l.clone())));
                            (ip, Some(l))
                        }),
                        EventType::Delete => {
                            let ip = std::str::from_utf8(kv.key())
                                .ok()
                                .and_then(|k| k.rsplit('/').next()?.parse().ok());
                            ip.map(|ip| {
                                lock(&known).insert(ip, (0, None));
                                (ip, None)
                            })
                        }
                    };
                    if let (Some(change), false) = (change, mine) {
                        lock(&news).push(change);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Start again from what etcd holds now: every lease is news.
        let Ok(all) = client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
        else {
            continue;
        };
        revision = all.header().map_or(revision, |h| h.revision());
        let mut fresh = HashMap::new();
        for kv in all.kvs() {
            if let Some((ip, l)) = lease_of(kv.key(), kv.value()) {
                fresh.insert(ip, (kv.mod_revision(), Some(l)));
            }
        }
        let mut known = lock(&known);
        let mut news = lock(&news);
        for (ip, (_, l)) in known.iter() {
            if l.is_some() && !fresh.contains_key(ip) {
                news.push((*ip, None));
            }
        }
        for (ip, (_, l)) in &fresh {
            news.push((*ip, l.clone()));
        }
        *known = fresh;
    }
}

impl Leases for Etcd {
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        let key = self.key("leases/");
        let resp = self.call("reading the leases", move |mut c| async move {
            c.get(key, Some(GetOptions::new().with_prefix())).await
        })?;
        let mut out = Vec::new();
        let mut known = lock(&self.known);
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if key
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
                .is_none()
            {
                continue;
            }
            let (ip, lease) = lease_of(kv.key(), kv.value()).ok_or(StoreError::Malformed {
                key,
                why: "not a lease",
            })?;
            known.insert(ip, (kv.mod_revision(), Some(lease.clone())));
            out.push(lease);
        }
        drop(known);
        self.watch_from(resp.header().map_or(0, |h| h.revision()));
        Ok(out)
    }

    fn shared(&self) -> bool {
        true
    }

    fn changes(&self) -> Vec<(Ipv4Addr, Option<Lease>)> {
        std::mem::take(&mut *lock(&self.news))
    }

    /// Claims every address at the revision this server knows it at, in
    /// one transaction per 128 addresses; when one of them changed
    /// meanwhile, each op of that chunk goes alone, so only the lost
    /// address is refused.
    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        let now = now_secs();
        // etcd changes a key once per transaction: the last change to
        // each address is the one that counts.
        let mut last: BTreeMap<Ipv4Addr, &Op> = BTreeMap::new();
        for op in ops {
            last.insert(op.ip(), op);
        }
        let hold = if last.values().any(|o| matches!(o, Op::Hold(_))) {
            Some(self.hold_lease()?)
        } else {
            None
        };
        let mut results: HashMap<Ipv4Addr, Applied> = HashMap::new();
        let mut todo: Vec<(&Op, i64)> = Vec::new();
        {
            let known = lock(&self.known);
            for (ip, op) in &last {
                let (rev, holder) = known.get(ip).cloned().unwrap_or((0, None));
                match op {
                    Op::Put(l) | Op::Hold(l) if blocks(&holder, l.mac, now) => {
                        results.insert(*ip, Applied::Taken(holder));
                    }
                    _ => todo.push((op, rev)),
                }
            }
        }
        for chunk in todo.chunks(MAX_TXN_OPS) {
            let compares: Vec<Compare> = chunk
                .iter()
                .map(|(op, rev)| {
                    let key = self.key(&format!("leases/{}", op.ip()));
                    Compare::mod_revision(key, CompareOp::Equal, *rev)
                })
                .collect();
            let puts: Vec<TxnOp> = chunk.iter().map(|(op, _)| self.txn_op(op, hold)).collect();
            let txn = Txn::new().when(compares).and_then(puts);
            let resp = self.call(
                "storing leases",
                move |mut c| async move { c.txn(txn).await },
            );
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    // The hold lease may be gone (etcd restarted): a new one next time.
                    *lock(&self.hold_lease) = None;
                    return Err(e);
                }
            };
            if resp.succeeded() {
                let at = resp.header().map_or(0, |h| h.revision());
                let done: Vec<Op> = chunk.iter().map(|(op, _)| (*op).clone()).collect();
                self.note_own(at, &done);
                for (op, _) in chunk {
                    results.insert(op.ip(), Applied::Done);
                }
                continue;
            }
            for (op, _) in chunk {
                results.insert(op.ip(), self.apply_one(op, hold)?);
            }
        }
        Ok(ops
            .iter()
            .map(|op| results.get(&op.ip()).cloned().unwrap_or(Applied::Done))
            .collect())
    }
}

impl Drop for Etcd {
    /// This server's holds go with it, at once.
    fn drop(&mut self) {
        if let Some(id) = *lock(&self.hold_lease) {
            let _ = self.call("revoking the lease for offers", move |mut c| async move {
                c.lease_revoke(id).await
            });
        }
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
        let resp = self.call("enrolling a machine", move |mut c| async move {
            c.txn(txn).await
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
        let resp = self.call("reading an enrolled machine", move |mut c| async move {
            c.get(k, None).await
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
        let resp = self.call("reading the site key", move |mut c| async move {
            c.get(k, None).await
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
        let resp = self.call("storing the site key", move |mut c| async move {
            c.txn(txn).await
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

impl Timelines for Etcd {
    fn load(&self) -> Result<Vec<(Mac, Vec<u8>)>, StoreError> {
        Ok(self
            .get_prefix("reading the boot timelines", "timelines/")?
            .into_iter()
            .filter_map(|kv| {
                let mac = kv.key.rsplit('/').next()?.parse().ok()?;
                Some((mac, kv.value))
            })
            .collect())
    }

    fn save(&self, rows: &[(Mac, Vec<u8>)]) -> Result<(), StoreError> {
        let ops: Vec<TxnOp> = rows
            .iter()
            .map(|(mac, v)| TxnOp::put(self.key(&format!("timelines/{mac}")), v.clone(), None))
            .collect();
        for chunk in ops.chunks(MAX_TXN_OPS) {
            let txn = Txn::new().and_then(chunk.to_vec());
            self.call("saving the boot timelines", move |mut c| async move {
                c.txn(txn).await
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
