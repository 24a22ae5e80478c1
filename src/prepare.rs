//! What everything that renders does first (the server, `check`,
//! `render`, `tftp`): load and check the spec, report its warnings, take the
//! site key from the store, build the inventory and the template
//! environment. Nothing is written until [`Prepared::keep_key`].

use std::path::Path;

use crate::inventory::{Inventory, SiteKey};
use crate::render::{File, Generated, RenderError, Renderer};
use crate::spec::{Diagnostic, Spec, SpecError};
use crate::store::{Keys, StoreError};

/// Why a spec could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{what}")]
    Key {
        what: &'static str,
        source: StoreError,
    },
}

/// What [`Prepared::keep_key`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKept {
    /// The key rendered with is the site's (now, or already).
    Ours,
    /// Another server stored a key first: render again ([`Prepared::load`]
    /// now finds it).
    Theirs,
}

/// Loads and checks a spec, handing each warning to `warn`.
pub fn load_spec(path: &Path, warn: &dyn Fn(&Diagnostic)) -> Result<Spec, PrepareError> {
    let loaded = crate::spec::load(path)?;
    for w in &loaded.warnings {
        warn(w);
    }
    Ok(loaded.spec)
}

/// A checked spec with everything needed to render it.
pub struct Prepared {
    pub spec: Spec,
    pub inventory: Inventory,
    pub renderer: Renderer,
    key: SiteKey,
    /// Set until the new key is saved.
    key_is_new: std::sync::atomic::AtomicBool,
}

impl Prepared {
    /// Loads `spec_path` (its warnings to `warn`); uses the site key in
    /// `keys`, or a new one that [`Prepared::keep_key`] stores once
    /// rendering has succeeded.
    pub fn load(
        spec_path: &Path,
        keys: &dyn Keys,
        warn: &dyn Fn(&Diagnostic),
    ) -> Result<Prepared, PrepareError> {
        let spec = load_spec(spec_path, warn)?;
        Prepared::with_spec(spec, keys)
    }

    /// [`Prepared::load`] with a key given, never stored (`check`).
    pub fn with_key(spec: Spec, key: SiteKey) -> Result<Prepared, PrepareError> {
        let inventory = Inventory::build(&spec, &key);
        let renderer = Renderer::new(spec.templates_dir.as_deref())?;
        Ok(Prepared {
            spec,
            inventory,
            renderer,
            key,
            key_is_new: false.into(),
        })
    }

    /// [`Prepared::load`] for a spec already loaded.
    pub fn with_spec(spec: Spec, keys: &dyn Keys) -> Result<Prepared, PrepareError> {
        let existing = keys.get().map_err(|source| PrepareError::Key {
            what: "reading the site key",
            source,
        })?;
        let key = existing.map_or_else(SiteKey::generate, SiteKey::from_bytes);
        let prepared = Prepared::with_key(spec, key)?;
        prepared
            .key_is_new
            .store(existing.is_none(), std::sync::atomic::Ordering::SeqCst);
        Ok(prepared)
    }

    /// The spec with `extra` nodes added (enrolled machines) and its
    /// inventory; the spec as read stays as it is.
    pub fn with_nodes(&self, extra: Vec<crate::spec::NodeSpec>) -> (Spec, Inventory) {
        let mut spec = self.spec.clone();
        spec.nodes.extend(extra);
        let inventory = Inventory::build(&spec, &self.key);
        (spec, inventory)
    }

    /// Every file of the cluster, rendered and checked.
    pub fn all_files(&self) -> Result<Vec<File>, PrepareError> {
        Ok(self.renderer.all_files(&self.spec, &self.inventory)?)
    }

    /// The key power reports are made with (see
    /// [`crate::inventory::SiteKey::api_key`]).
    pub fn api_key(&self) -> String {
        self.key.api_key()
    }

    /// Renders with `render`, then stores the site key if it is new; when
    /// another server of the site stored one first, prepares again with
    /// theirs and renders once more. Every first rendering of a site goes
    /// through here (`serve`, `render`, `tftp`), so the tokens served are
    /// always the stored key's.
    pub fn rendered_keeping_key<T, E: From<PrepareError>>(
        mut self,
        keys: &dyn Keys,
        render: impl Fn(&Prepared) -> Result<T, E>,
    ) -> Result<(Prepared, T), E> {
        loop {
            let out = render(&self)?;
            match self.keep_key(keys)? {
                KeyKept::Ours => return Ok((self, out)),
                KeyKept::Theirs => self = Prepared::with_spec(self.spec.clone(), keys)?,
            }
        }
    }

    /// Stores a newly made site key, so the tokens just rendered stay
    /// valid; once (later calls do nothing). Two servers of one site
    /// starting together both try; the store keeps the first, and the
    /// other hears [`KeyKept::Theirs`] and renders again.
    pub fn keep_key(&self, keys: &dyn Keys) -> Result<KeyKept, PrepareError> {
        use std::sync::atomic::Ordering;
        if !self.key_is_new.swap(false, Ordering::SeqCst) {
            return Ok(KeyKept::Ours);
        }
        let (_, created) = keys.get_or_create(*self.key.bytes()).map_err(|source| {
            self.key_is_new.store(true, Ordering::SeqCst);
            PrepareError::Key {
                what: "storing the new site key",
                source,
            }
        })?;
        if !created {
            return Ok(KeyKept::Theirs);
        }
        tracing::info!("created the site key that node tokens derive from");
        Ok(KeyKept::Ours)
    }
}

/// The rendered files TFTP may serve: boot scripts only, never
/// cloud-configs (they carry tokens, and TFTP cannot check one).
pub fn boot_files(files: Vec<File>) -> Vec<File> {
    files
        .into_iter()
        .filter(|f| Generated::parse(&f.path).is_some_and(|g| g.over_tftp()))
        .collect()
}
