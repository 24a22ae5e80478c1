//! The servers of a site: each registers `PREFIX/servers/<id>` on an etcd
//! lease of its own, kept alive while the server runs, so the key is
//! there while the server is alive and gone within
//! [`super::leases::HOLD_TTL_SECS`] of its death.
//!
//! What it is for: a server alone on its site has nobody to hear from,
//! so it does not follow the lease keys (every etcd write it makes
//! compares the key's revision anyway, so following is never what keeps
//! it right, only what keeps it current). Following costs etcd an event
//! per write and this server a decode per event, a sizeable part of a
//! DHCP exchange's work on one core. [`Peers::run`] says, through a
//! `watch` channel, whether any other server is registered; the lease
//! watch pauses while none is and goes on from the revision it paused at
//! when one registers, so it misses nothing: another server's writes from
//! before it registered (or while its registration had lapsed) are
//! replayed then.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::{Client, EventType, LeaseKeepAliveStream, LeaseKeeper};
use etcd_client::{PutOptions, WatchOptions};
use tokio::sync::watch;

use super::leases::HOLD_TTL_SECS;

/// Registers this server and follows `PREFIX/servers/`, saying whether a
/// server other than this one is registered.
pub struct Peers {
    pub client: Client,
    /// `PREFIX/servers/`.
    pub prefix: String,
    /// This server's own key.
    pub own: String,
    pub others: watch::Sender<bool>,
}

impl Peers {
    /// Runs until the store's runtime ends; each failure (etcd away, the
    /// registration's lease lost) starts over after a second.
    pub async fn run(self) {
        loop {
            if self.others.is_closed() {
                return;
            }
            if let Err(e) = self.round().await {
                tracing::debug!(error = %crate::error_chain(&e), "registering and following the site's servers");
            }
            // Unsure who is there: follow the leases (never wrong).
            self.others.send_replace(true);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Registers, then follows the registrations while keeping its own
    /// alive, until either fails.
    async fn round(&self) -> Result<(), etcd_client::Error> {
        let mut c = self.client.clone();
        let lease = c.lease_grant(HOLD_TTL_SECS, None).await?.id();
        let since =
            serde_json::to_vec(&serde_json::json!({ "since": crate::clock::now_ms() / 1000 }))
                .expect("plain data serialises");
        c.put(
            self.own.as_str(),
            since,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await?;
        let (keeper, answers) = c.lease_keep_alive(lease).await?;
        tokio::select! {
            r = self.follow() => r,
            r = keep_alive(keeper, answers) => r,
        }
    }

    /// Reads who is registered, then follows every change, until the
    /// watch ends.
    async fn follow(&self) -> Result<(), etcd_client::Error> {
        let mut c = self.client.clone();
        let all = super::paged::read(&mut c, self.prefix.as_bytes(), 0).await?;
        let mut there: BTreeSet<Vec<u8>> = all.kvs.iter().map(|kv| kv.key().to_vec()).collect();
        there.remove(self.own.as_bytes());
        self.others.send_replace(!there.is_empty());
        let from = all.revision + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let mut stream = c.watch(self.prefix.as_str(), Some(options)).await?;
        while let Some(resp) = stream.message().await? {
            if resp.canceled() {
                break;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                if kv.key() == self.own.as_bytes() {
                    // Our own registration gone (its lease expired while
                    // etcd was away): register again.
                    if ev.event_type() == EventType::Delete {
                        return Ok(());
                    }
                    continue;
                }
                match ev.event_type() {
                    EventType::Put => there.insert(kv.key().to_vec()),
                    EventType::Delete => there.remove(kv.key()),
                };
            }
            self.others.send_replace(!there.is_empty());
        }
        Ok(())
    }
}

/// Keeps the registration's lease alive; returns when it is lost.
async fn keep_alive(
    mut keeper: LeaseKeeper,
    mut answers: LeaseKeepAliveStream,
) -> Result<(), etcd_client::Error> {
    loop {
        keeper.keep_alive().await?;
        match answers.message().await? {
            Some(r) if r.ttl() > 0 => {}
            _ => return Ok(()),
        }
        tokio::time::sleep(Duration::from_secs((HOLD_TTL_SECS / 3) as u64)).await;
    }
}
