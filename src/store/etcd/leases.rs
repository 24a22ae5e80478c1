//! Leases shared by the servers of a site: `PREFIX/leases/<ip>` holds
//! `{"mac", "expires", "server", "hold"}`. A server writes a key only at
//! the revision it last saw it at (a transaction comparing the key's
//! mod revision), so of two servers claiming one address at once exactly
//! one wins; the other reads what won and is told [`Applied::Taken`]. An
//! OFFER's hold hangs on the server's own etcd lease (kept alive), so a
//! dead server's offers are gone within [`HOLD_TTL_SECS`]; an ACK's lease
//! has no etcd lease: it lasts until released or replaced once expired.
//! A watch on the prefix keeps what this server knows current and hands
//! other servers' changes to the DHCP table ([`Leases::changes`]); it
//! pauses while no other server is registered (see [`super::peers`]).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde::{Deserialize, Serialize};

use super::{Etcd, MAX_TXN_OPS, paged};
use crate::spec::Mac;
use crate::store::{Applied, Lease, Leases, Op, QUARANTINED, StoreError};

/// The time to live of the etcd lease a server's holds hang on.
pub const HOLD_TTL_SECS: i64 = 10;

/// How many times a batch is claimed again after other servers changed
/// some of its addresses first.
const CLAIM_ROUNDS: usize = 3;

#[derive(Serialize, Deserialize)]
struct Record {
    mac: Mac,
    expires: u64,
    /// The server that wrote it (`host:pid/n`).
    #[serde(default)]
    server: String,
    /// An OFFER's hold, not an ACK's lease.
    #[serde(default)]
    hold: bool,
}

/// One lease key as this server knows it.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The revision it last changed at (0: absent).
    rev: i64,
    /// The revision this is known as of (a deletion's too): an event
    /// from before it is old news.
    at: i64,
    lease: Option<Lease>,
    /// Written by this server, as a hold.
    own_hold: bool,
}

/// Every lease key this server knows of.
pub type Known = HashMap<Ipv4Addr, Entry>;

/// Other servers' changes: each address and its lease now (`None`: freed).
pub type News = Vec<(Ipv4Addr, Option<Lease>)>;

/// This server, as its records name it: unique per connection, even for
/// two in one process.
pub fn server_id() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}/{n}", std::process::id())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

use crate::clock::now_secs;

fn ip_of(key: &[u8]) -> Option<Ipv4Addr> {
    std::str::from_utf8(key)
        .ok()?
        .rsplit('/')
        .next()?
        .parse()
        .ok()
}

/// The entry a stored key and value stand for, and whether server `id`
/// wrote it.
fn entry(id: &str, key: &[u8], value: &[u8], rev: i64) -> Option<(Ipv4Addr, Entry, bool)> {
    let ip = ip_of(key)?;
    let r: Record = serde_json::from_slice(value).ok()?;
    let lease = Lease {
        ip,
        mac: r.mac,
        expires: r.expires,
    };
    let mine = r.server == id;
    Some((
        ip,
        Entry {
            rev,
            at: rev,
            lease: Some(lease),
            own_hold: r.hold && mine,
        },
        mine,
    ))
}

/// What to do with `op` given what is stored.
enum Verdict {
    Write,
    /// Nothing to change (a release of what is not there any more).
    Nothing,
    Taken(Option<Lease>),
}

/// Decides `op` against what is stored: settled in `results`, or queued
/// in `todo` to be written at `e`'s revision.
fn decide<'a>(
    op: &'a Op,
    e: &Entry,
    now: u64,
    results: &mut HashMap<Ipv4Addr, Applied>,
    todo: &mut Vec<(&'a Op, i64)>,
) {
    match verdict(op, e, now) {
        Verdict::Taken(holder) => {
            results.insert(op.ip(), Applied::Taken(holder));
        }
        Verdict::Nothing => {
            results.insert(op.ip(), Applied::Done);
        }
        Verdict::Write => todo.push((op, e.rev)),
    }
}

fn verdict(op: &Op, e: &Entry, now: u64) -> Verdict {
    let holder = e.lease.as_ref();
    match op {
        Op::Put(l) | Op::Hold(l) => match holder {
            Some(h) if h.mac != l.mac && h.expires > now => Verdict::Taken(Some(h.clone())),
            // The machine's own binding (another server's ACK) outlasts
            // an offer: it stands.
            Some(h) if matches!(op, Op::Hold(_)) && h.expires >= l.expires => Verdict::Nothing,
            _ => Verdict::Write,
        },
        Op::Remove { mac, .. } => match holder {
            Some(h) if h.mac == *mac => Verdict::Write,
            _ => Verdict::Nothing,
        },
        Op::Unhold { mac, .. } => match holder {
            Some(h) if h.mac == *mac && e.own_hold => Verdict::Write,
            _ => Verdict::Nothing,
        },
        Op::Quarantine { .. } => Verdict::Write,
        Op::Forget {
            mac, expired_by, ..
        } => match holder {
            Some(h) if h.mac == *mac && h.expires <= *expired_by && !e.own_hold => Verdict::Write,
            Some(h) => Verdict::Taken(Some(h.clone())),
            None => Verdict::Nothing,
        },
    }
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
        let slot = self.hold_lease.clone();
        self.runtime.spawn(async move {
            if let Ok((mut keeper, mut answers)) = c.lease_keep_alive(id).await {
                loop {
                    let alive = keeper.keep_alive().await.is_ok()
                        && matches!(answers.message().await, Ok(Some(r)) if r.ttl() > 0);
                    if !alive {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs((HOLD_TTL_SECS / 3) as u64)).await;
                }
            }
            // Lost (etcd away, or the lease expired): the next hold asks
            // for a new one.
            let mut held = slot.lock().unwrap_or_else(|p| p.into_inner());
            if *held == Some(id) {
                *held = None;
            }
        });
        *held = Some(id);
        Ok(id)
    }

    /// Starts watching the lease keys from `revision` on, and the site's
    /// servers (once).
    fn watch_from(&self, revision: i64) {
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let w = Watch {
            client: self.client.clone(),
            prefix: self.key("leases/"),
            known: self.known.clone(),
            news: self.news.clone(),
            id: self.id.clone(),
            others: self.others.subscribe(),
            rereads: self.rereads.clone(),
        };
        self.runtime.spawn(w.run(revision));
        let p = super::peers::Peers {
            client: self.client.clone(),
            prefix: self.key("servers/"),
            own: self.key(&format!("servers/{}", self.id)),
            others: self.others.clone(),
        };
        self.runtime.spawn(p.run());
    }

    fn txn_op(&self, op: &Op, hold: Option<i64>) -> TxnOp {
        let key = self.key(&format!("leases/{}", op.ip()));
        let record = |l: &Lease, hold: bool| {
            serde_json::to_vec(&Record {
                mac: l.mac,
                expires: l.expires,
                server: self.id.clone(),
                hold,
            })
            .expect("plain data serialises")
        };
        match op {
            Op::Put(l) => TxnOp::put(key, record(l, false), None),
            Op::Hold(l) => TxnOp::put(
                key,
                record(l, true),
                hold.map(|id| PutOptions::new().with_lease(id)),
            ),
            Op::Remove { .. } | Op::Unhold { .. } | Op::Forget { .. } => TxnOp::delete(key, None),
            Op::Quarantine { ip, until } => TxnOp::put(
                key,
                record(
                    &Lease {
                        ip: *ip,
                        mac: QUARANTINED,
                        expires: *until,
                    },
                    false,
                ),
                None,
            ),
        }
    }

    /// Records this server's writes, made at revision `at`.
    fn note_own(&self, at: i64, ops: &[&Op]) {
        let mut known = lock(&self.known);
        for op in ops {
            let e = match op {
                Op::Put(l) | Op::Hold(l) => Entry {
                    rev: at,
                    at,
                    lease: Some(l.clone()),
                    own_hold: matches!(op, Op::Hold(_)),
                },
                Op::Quarantine { ip, until } => Entry {
                    rev: at,
                    at,
                    lease: Some(Lease {
                        ip: *ip,
                        mac: QUARANTINED,
                        expires: *until,
                    }),
                    own_hold: false,
                },
                Op::Remove { .. } | Op::Unhold { .. } | Op::Forget { .. } => Entry {
                    at,
                    ..Entry::default()
                },
            };
            known.insert(op.ip(), e);
        }
    }

    /// Writes `chunk` in one transaction if every key is still at the
    /// revision given; `None` when it was, otherwise what etcd holds now
    /// for each key, in order (read in the same transaction).
    fn claim(
        &self,
        chunk: &[(&Op, i64)],
        hold: Option<i64>,
    ) -> Result<Option<Vec<Entry>>, StoreError> {
        let keys: Vec<String> = chunk
            .iter()
            .map(|(op, _)| self.key(&format!("leases/{}", op.ip())))
            .collect();
        let compares: Vec<Compare> = keys
            .iter()
            .zip(chunk)
            .map(|(key, (_, rev))| Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev))
            .collect();
        let writes: Vec<TxnOp> = chunk.iter().map(|(op, _)| self.txn_op(op, hold)).collect();
        let reads: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let resp = match self.call("storing leases", move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        }) {
            Ok(r) => r,
            Err(e) => {
                // The hold lease may be gone (etcd restarted): a new one
                // next time.
                *lock(&self.hold_lease) = None;
                return Err(e);
            }
        };
        if resp.succeeded() {
            let done: Vec<&Op> = chunk.iter().map(|(op, _)| *op).collect();
            self.note_own(resp.header().map_or(0, |h| h.revision()), &done);
            return Ok(None);
        }
        let mut stored = Vec::with_capacity(chunk.len());
        let mut known = lock(&self.known);
        for ((op, _), answer) in chunk.iter().zip(resp.op_responses()) {
            let mut e = match answer {
                TxnOpResponse::Get(got) => got
                    .kvs()
                    .first()
                    .and_then(|kv| entry(&self.id, kv.key(), kv.value(), kv.mod_revision()))
                    .map_or_else(Entry::default, |(_, e, _)| e),
                _ => Entry::default(),
            };
            // Read back, not heard: the event that made it is still news
            // when the watch brings it (news says what another server
            // did, whatever a failed claim already showed).
            e.at = (e.rev - 1).max(0);
            known.insert(op.ip(), e.clone());
            stored.push(e);
        }
        Ok(Some(stored))
    }
}

/// Follows every change to the lease keys: what other servers changed
/// becomes news; a watch that ends (etcd restarted, the history
/// compacted) starts again from a fresh read.
struct Watch {
    client: Client,
    prefix: String,
    known: Arc<Mutex<Known>>,
    news: Arc<Mutex<News>>,
    id: String,
    /// Whether another server is registered (see [`super::peers`]).
    others: tokio::sync::watch::Receiver<bool>,
    /// Times every lease was read again after a compaction.
    rereads: Arc<AtomicU64>,
}

impl Watch {
    async fn run(mut self, mut revision: i64) {
        loop {
            // Alone on the site: nobody else writes here. Wait for
            // company, then go on from where this left off.
            if self.others.wait_for(|others| *others).await.is_err() {
                return;
            }
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            let mut paused = false;
            let mut compacted = false;
            match self.client.watch(self.prefix.as_str(), Some(options)).await {
                Ok(mut stream) => loop {
                    let resp = tokio::select! {
                        r = stream.message() => r,
                        _ = self.others.wait_for(|others| !*others) => {
                            paused = true;
                            break;
                        }
                    };
                    let resp = match resp {
                        Ok(Some(resp)) => resp,
                        Ok(None) => break,
                        Err(e) => {
                            compacted = paged::is_compacted(&e);
                            tracing::debug!(error = %crate::error_chain(&e), "lease watch ended");
                            break;
                        }
                    };
                    if resp.canceled() {
                        // Asked to go on from a revision etcd compacted
                        // away (this server fell behind, or was paused
                        // across a compaction): the events are gone.
                        compacted = resp.compact_revision() > 0;
                        break;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        revision = revision.max(kv.mod_revision());
                        self.event(ev.event_type(), kv);
                    }
                },
                Err(e) => {
                    compacted = paged::is_compacted(&e);
                    tracing::debug!(error = %crate::error_chain(&e), "lease watch could not start");
                }
            }
            if paused {
                continue;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if compacted {
                // What changed meanwhile can only be read whole again.
                revision = self.catch_up(revision).await;
            }
            // Otherwise the watch goes on from `revision`: etcd replays
            // what was missed.
        }
    }

    /// Reads every lease again until a read succeeds (logged and counted;
    /// a failed read is logged and tried again, never skipped); the
    /// revision it read at.
    async fn catch_up(&mut self, behind: i64) -> i64 {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.reread().await {
                Ok(revision) => {
                    self.rereads.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        from = behind,
                        to = revision,
                        "the lease watch fell behind a compaction of etcd's history: read every lease again"
                    );
                    return revision;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %crate::error_chain(&e),
                        "the lease watch fell behind a compaction and reading every lease again failed; trying again"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn event(&self, kind: EventType, kv: &etcd_client::KeyValue) {
        let Some(ip) = ip_of(kv.key()) else { return };
        let at = kv.mod_revision();
        let mut known = lock(&self.known);
        // This server's own writes are known already, and a watch that
        // goes on after a pause replays what is older than that.
        if known.get(&ip).is_some_and(|e| e.at >= at) {
            return;
        }
        match kind {
            EventType::Put => {
                let Some((_, e, mine)) = entry(&self.id, kv.key(), kv.value(), at) else {
                    return;
                };
                let lease = e.lease.clone();
                known.insert(ip, e);
                drop(known);
                if !mine {
                    lock(&self.news).push((ip, lease));
                }
            }
            EventType::Delete => {
                known.insert(
                    ip,
                    Entry {
                        at,
                        ..Entry::default()
                    },
                );
                drop(known);
                lock(&self.news).push((ip, None));
            }
        }
    }

    /// Everything etcd holds now, read in pages, all of it news; the
    /// revision it was read at.
    async fn reread(&mut self) -> Result<i64, etcd_client::Error> {
        let all = paged::read(&mut self.client, self.prefix.as_bytes(), 0).await?;
        let mut fresh = Known::new();
        for kv in &all.kvs {
            if let Some((ip, e, _)) = entry(&self.id, kv.key(), kv.value(), kv.mod_revision()) {
                fresh.insert(ip, e);
            }
        }
        let mut known = lock(&self.known);
        let mut news = lock(&self.news);
        for (ip, e) in known.iter() {
            if e.lease.is_some() && !fresh.contains_key(ip) {
                news.push((*ip, None));
            }
        }
        for (ip, e) in &fresh {
            news.push((*ip, e.lease.clone()));
        }
        *known = fresh;
        Ok(all.revision)
    }
}

impl Leases for Etcd {
    /// Reads every lease, then follows the others' changes and registers
    /// this server (so that the others follow its own).
    fn load(&self) -> Result<Vec<Lease>, StoreError> {
        let all = self.read_prefix("reading the leases", "leases/", 0)?;
        let mut out = Vec::with_capacity(all.kvs.len());
        let mut known = lock(&self.known);
        for kv in &all.kvs {
            let Some((ip, e, _)) = entry(&self.id, kv.key(), kv.value(), kv.mod_revision()) else {
                return Err(StoreError::Malformed {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    why: "not a lease",
                });
            };
            out.extend(e.lease.clone());
            known.insert(ip, e);
        }
        drop(known);
        self.watch_from(all.revision);
        Ok(out)
    }

    fn shared(&self) -> bool {
        true
    }

    fn changes(&self) -> Vec<(Ipv4Addr, Option<Lease>)> {
        std::mem::take(&mut *lock(&self.news))
    }

    fn reachable(&self) -> bool {
        Etcd::reachable(self)
    }

    fn rereads(&self) -> u64 {
        self.rereads.load(Ordering::Relaxed)
    }

    /// Holds `PREFIX/sweeper` on this server's etcd lease: created if no
    /// server holds it, so one server of the site sweeps, and another
    /// takes over within the lease's TTL once that one is gone.
    fn sweeper(&self) -> bool {
        let Ok(hold) = self.hold_lease() else {
            return false;
        };
        let key = self.key("sweeper");
        let id = self.id.clone();
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key.as_str(),
                id.as_str(),
                Some(PutOptions::new().with_lease(hold)),
            )])
            .or_else(vec![TxnOp::get(key.as_str(), None)]);
        let Ok(resp) = self.call(
            "choosing the server that forgets expired leases",
            move |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            },
        ) else {
            return false;
        };
        resp.succeeded()
            || resp.op_responses().iter().any(|r| match r {
                TxnOpResponse::Get(got) => got
                    .kvs()
                    .first()
                    .is_some_and(|kv| kv.value() == id.as_bytes()),
                _ => false,
            })
    }

    /// Read as it is now, without touching what this server knows.
    fn listing(&self) -> Result<Vec<(Lease, Option<String>)>, StoreError> {
        Ok(self
            .read_prefix("reading the leases", "leases/", 0)?
            .kvs
            .iter()
            .filter_map(|kv| {
                let ip = ip_of(kv.key())?;
                let r: Record = serde_json::from_slice(kv.value()).ok()?;
                let lease = Lease {
                    ip,
                    mac: r.mac,
                    expires: r.expires,
                };
                Some((lease, Some(r.server).filter(|s| !s.is_empty())))
            })
            .collect())
    }

    /// Claims every address at the revision this server knows it at, in
    /// one transaction per 128 addresses; when one of them changed
    /// meanwhile, only what was lost is refused (see [`Etcd::claim`]).
    fn apply(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        let now = now_secs();
        // etcd changes a key once per transaction: the last change to
        // each address is the one that counts.
        let mut last: BTreeMap<Ipv4Addr, &Op> = BTreeMap::new();
        for op in ops {
            // A hold after the same machine's binding in one batch (its
            // DISCOVER again) does not undo the binding.
            let undoes_binding = matches!(
                (last.get(&op.ip()), op),
                (Some(Op::Put(b)), Op::Hold(h)) if b.mac == h.mac
            );
            if !undoes_binding {
                last.insert(op.ip(), op);
            }
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
                let e = known.get(ip).cloned().unwrap_or_default();
                decide(op, &e, now, &mut results, &mut todo);
            }
        }
        // A chunk whose compare fails reads back, in the same
        // transaction, every key it wanted to change: what changed
        // meanwhile is decided again at once and the rest is claimed
        // again together, so a lost race costs one more transaction per
        // round, not two per address.
        for _round in 0..CLAIM_ROUNDS {
            if todo.is_empty() {
                break;
            }
            let mut again: Vec<(&Op, i64)> = Vec::new();
            for chunk in todo.chunks(MAX_TXN_OPS) {
                match self.claim(chunk, hold)? {
                    None => {
                        for (op, _) in chunk {
                            results.insert(op.ip(), Applied::Done);
                        }
                    }
                    Some(stored) => {
                        let now = now_secs();
                        for ((op, _), e) in chunk.iter().zip(stored) {
                            decide(op, &e, now, &mut results, &mut again);
                        }
                    }
                }
            }
            todo = again;
        }
        // Still changing under us after every round: refused, and the
        // DHCP server decides again.
        for (op, _) in todo {
            results.insert(op.ip(), Applied::Taken(None));
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
