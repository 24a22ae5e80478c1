//! Telling the boot server what `power` and `reprovision` did through a
//! BMC (`POST /api/v1/nodes/<name>/power`), so its timelines show the
//! action and attribute the boot that follows. The key is the one `serve`
//! wrote to `api.key` in its state directory (or, for a `cluster` spec,
//! its cluster's). A report that cannot be made never stops an action:
//! it is said once, with why.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::boot::PowerAction;
use crate::spec::Spec;

/// Where reports go, and what stopped the first one that failed.
pub(crate) struct Reporter {
    addr: String,
    key: Result<String, String>,
    failed: Mutex<Option<String>>,
}

impl Reporter {
    /// Reports to `server` (default: the spec's server address and HTTP
    /// port) with the key found under `state_dir`.
    pub fn new(spec: &Spec, state_dir: &Path, server: Option<&str>) -> Reporter {
        let dirs: Vec<PathBuf> = vec![
            state_dir.to_owned(),
            state_dir
                .join("clusters")
                .join(&spec.cluster.name)
                .join("state"),
        ];
        let key = crate::server::api_key::read(&dirs)
            .map(|(k, _)| k)
            .ok_or_else(|| {
                format!(
                    "no API key in {} (it is written by `bootfleet serve`; run this where the server runs, with its --state-dir)",
                    dirs.iter()
                        .map(|d| d.join(crate::server::api_key::FILE).display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            });
        Reporter {
            addr: server.map_or_else(|| spec.api_address(), str::to_owned),
            key,
            failed: Mutex::new(None),
        }
    }

    /// Reports `action` on `node`; a failure is kept for [`Reporter::note`].
    pub fn report(&self, node: &str, action: &PowerAction) {
        let sent = match &self.key {
            Ok(key) => crate::http::client::post_json(
                &self.addr,
                &format!("/api/v1/nodes/{node}/power"),
                key,
                &serde_json::to_string(action).expect("a power action serialises"),
            )
            .map(drop)
            .map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        if let Err(why) = sent {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(why);
        }
    }

    /// What stopped a report, once, for the end of the command's output.
    pub fn note(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|why| {
                format!("note: the boot server's timelines do not show these power actions: {why}")
            })
    }
}
