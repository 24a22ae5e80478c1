//! What the servers serve while a server runs: the spec as last read, the
//! machines enrolled so far, and the files rendered from both. A SIGHUP
//! reads the spec again; an enrolment adds a machine; either way the new
//! rendering reaches HTTP, TFTP, DHCP and the boot timelines together.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::ServerError;
use crate::boot::{Registry, known};
use crate::files::Files;
use crate::http::{AppState, EnrolRequest, Site};
use crate::inventory::enrol::{self, Enrolled, Verdict};
use crate::prepare::{Prepared, boot_files};
use crate::spec::Mac;
use crate::store::{Enrolment, Store};

/// Where the servers' content comes from.
pub(crate) struct Source {
    pub spec: PathBuf,
    pub images: PathBuf,
    pub check_source: bool,
    /// Where the site key and the enrolled machines are kept.
    pub store: Store,
}

/// The spec and enrolled machines rendered into what the servers need.
pub(crate) struct Loaded {
    pub site: Site,
    pub tftp_files: Vec<(String, Vec<u8>)>,
    pub dhcp: crate::dhcp::site::Site,
    pub spec: crate::spec::Spec,
}

impl Source {
    /// Reads and checks the spec (and takes the site key).
    pub fn read(&self) -> Result<Prepared, ServerError> {
        Ok(Prepared::load(&self.spec, &*self.store.keys, &|w| {
            tracing::warn!("{w}")
        })?)
    }

    /// Renders `prepared` with the `enrolled` machines added (the site key
    /// is kept by [`Prepared::rendered_keeping_key`]).
    pub fn render(
        &self,
        prepared: &Prepared,
        enrolled: &[Enrolled],
    ) -> Result<Loaded, ServerError> {
        let (spec, inventory) = prepared.with_nodes(enrol::as_nodes(&prepared.spec, enrolled));
        let files = prepared
            .renderer
            .all_files(&spec, &inventory)
            .map_err(super::PrepareError::from)?;
        let site = Site::rendered(&spec, inventory, &files, &self.images, self.check_source);
        let tftp_files = boot_files(files)
            .into_iter()
            .map(|f| (f.path, f.content.into_bytes()))
            .collect();
        Ok(Loaded {
            site,
            tftp_files,
            dhcp: crate::dhcp::config::from_spec(&spec),
            spec,
        })
    }
}

/// The running servers' content, and the means to replace it.
pub(crate) struct Live {
    pub source: Source,
    /// The spec as last read from disk (without enrolled machines).
    base: Mutex<Prepared>,
    enrolled: Mutex<Vec<Enrolled>>,
    pub state: AppState,
    pub files: Arc<Files>,
    pub registry: Arc<Registry>,
    pub dhcp_pending: Option<Arc<Mutex<Option<crate::dhcp::site::Site>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    pub fn new(
        source: Source,
        base: Prepared,
        enrolled: Vec<Enrolled>,
        state: AppState,
        files: Arc<Files>,
        registry: Arc<Registry>,
    ) -> Live {
        Live {
            source,
            base: Mutex::new(base),
            enrolled: Mutex::new(enrolled),
            state,
            files,
            registry,
            dhcp_pending: None,
        }
    }

    /// Hands a new rendering to every server.
    fn apply(&self, l: Loaded) {
        self.files.set_generated(l.tftp_files);
        self.registry.set_known(known(&l.site.inventory));
        self.registry.set_segments(l.site.segments.clone());
        self.state.replace_site(l.site);
        if let Some(p) = &self.dhcp_pending {
            *lock(p) = Some(l.dhcp);
        }
    }

    /// The spec as last read (without enrolled machines).
    pub fn spec(&self) -> crate::spec::Spec {
        lock(&self.base).spec.clone()
    }

    /// Reads the spec again; a bad one is refused and the old one kept.
    pub fn reload(&self) -> Result<(), ServerError> {
        let prepared = self.source.read()?;
        let mut base = lock(&self.base);
        let enrolled = lock(&self.enrolled);
        let loaded = self.source.render(&prepared, &enrolled)?;
        self.apply(loaded);
        *base = prepared;
        drop((base, enrolled));
        // The BMCs of the new spec are asked now.
        if let Some(poke) = &self.state.on_power {
            poke();
        }
        Ok(())
    }

    /// Enrols the machines among `seen` that the spec may enrol and does
    /// not know yet; returns their names. The store decides (another
    /// server of the site may have enrolled the machine, or given its name
    /// or address away); they are stored before any of their files is
    /// served.
    pub fn enrol(&self, seen: &[(Mac, Ipv4Addr)]) -> Result<Vec<String>, ServerError> {
        let base = lock(&self.base);
        let mut enrolled = lock(&self.enrolled);
        let now = crate::clock::now_ms() / 1000;
        let store_err = |what| move |source| ServerError::Store { what, source };
        let mut added = Vec::new();
        let mut changed = false;
        for &(mac, ip) in seen {
            let e = match enrol::enrol(&base.spec, &enrolled, mac, ip, now) {
                Verdict::Enrol(e) => e,
                Verdict::Known => continue,
                Verdict::Clash => {
                    tracing::warn!(%mac, %ip, "not enrolled: its name or address belongs to a node of the spec");
                    continue;
                }
            };
            match self
                .source
                .store
                .machines
                .enrol(&e)
                .map_err(store_err("enrolling a machine"))?
            {
                Enrolment::Added => {
                    tracing::info!(name = %e.name, mac = %e.mac, ip = %e.ip, "enrolled a machine that is not in the spec");
                    added.push(e.name.clone());
                    changed = true;
                }
                Enrolment::Already(other) => {
                    tracing::info!(name = %other.name, mac = %other.mac, ip = %other.ip, "enrolled already, by another server of the site");
                    changed = true;
                }
                Enrolment::Clash(other) => {
                    tracing::warn!(%mac, %ip, name = %e.name, holder = %other.mac, "not enrolled: another enrolled machine holds its name or address");
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(added);
        }
        // The store's list is the site's: other servers' enrolments too.
        *enrolled = self
            .source
            .store
            .machines
            .list()
            .map_err(store_err("reading the enrolled machines"))?;
        let loaded = self.source.render(&base, &enrolled)?;
        self.apply(loaded);
        Ok(added)
    }
}

/// Enrols what arrives on `rx`, a batch at a time (one rendering for all
/// the machines that asked meanwhile), then tells each asker.
pub(super) async fn enrol_loop(live: Arc<Live>, mut rx: mpsc::Receiver<EnrolRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let seen: Vec<(Mac, Ipv4Addr)> = batch.iter().map(|r| (r.mac, r.ip)).collect();
        let l = live.clone();
        match tokio::task::spawn_blocking(move || l.enrol(&seen)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("enrolment failed; the machines stay unknown:\n{e:#}"),
            Err(e) => tracing::error!(error = %crate::error_chain(&e), "enrolment task failed"),
        }
        // Whether enrolled or refused, nobody needs to wait for their files.
        let configs: Vec<String> = batch
            .iter()
            .map(|r| super::events::pxelinux_config(r.mac))
            .collect();
        live.files.settled(&configs);
        for r in batch {
            if let Some(done) = r.done {
                let _ = done.send(());
            }
        }
    }
}
