//! What everything that renders does first (the server, `check`,
//! `render`, `tftp`): load and check the spec, report its warnings, take the
//! site key, build the inventory and the template environment. Nothing is
//! written until [`Prepared::keep_key`].

use std::path::{Path, PathBuf};

use crate::inventory::{Inventory, InventoryError, SiteKey};
use crate::render::{File, RenderError, Renderer};
use crate::spec::{Diagnostic, Spec, SpecError};

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
        source: InventoryError,
    },
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
    /// `state_dir`, or a new one that [`Prepared::keep_key`] saves once
    /// rendering has succeeded.
    pub fn load(
        spec_path: &Path,
        state_dir: &Path,
        warn: &dyn Fn(&Diagnostic),
    ) -> Result<Prepared, PrepareError> {
        let spec = load_spec(spec_path, warn)?;
        let existing = SiteKey::load(state_dir).map_err(|source| PrepareError::Key {
            what: "reading the site key",
            source,
        })?;
        let key_is_new = existing.is_none();
        let key = existing.unwrap_or_else(SiteKey::generate);
        let inventory = Inventory::build(&spec, &key);
        let renderer = Renderer::new(spec.templates_dir.as_deref())?;
        Ok(Prepared {
            spec,
            inventory,
            renderer,
            key,
            key_is_new: key_is_new.into(),
        })
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

    /// Saves a newly made site key, so the tokens just rendered stay
    /// valid; once (later calls do nothing).
    pub fn keep_key(&self, state_dir: &Path) -> Result<Option<PathBuf>, PrepareError> {
        use std::sync::atomic::Ordering;
        if !self.key_is_new.swap(false, Ordering::SeqCst) {
            return Ok(None);
        }
        let path = self.key.save(state_dir).map_err(|source| {
            self.key_is_new.store(true, Ordering::SeqCst);
            PrepareError::Key {
                what: "saving the new site key",
                source,
            }
        })?;
        tracing::info!(path = %path.display(), "created the site key that node tokens derive from");
        Ok(Some(path))
    }
}

/// The rendered files TFTP may serve: boot scripts only, never
/// cloud-configs (they carry tokens, and TFTP cannot check one).
pub fn boot_files(files: Vec<File>) -> Vec<File> {
    files
        .into_iter()
        .filter(|f| {
            f.path.starts_with("pxelinux.cfg/")
                || f.path.starts_with("ipxe/")
                || f.path == "boot.ipxe"
        })
        .collect()
}
