//! bootfleet's HTTP side (axum): what booting machines fetch (`/boot.ipxe`,
//! their own iPXE script, `/assets/...`, `/cloud-config/<node>`,
//! `/ignition/<node>` and the configs it merges), the
//! phone-home call, and what people and scripts read (the status page,
//! `/api/v1/nodes`, `/metrics`, `/healthz`).
//!
//! Every request a booting machine makes is reported to the boot timeline
//! ([`crate::boot::Registry`]) by `timeline::record`, a middleware that
//! sees the path, the client's address and the status.

mod assets;
pub mod client;
pub mod leases;
pub mod listen;
mod machines;
pub mod metrics;
mod page;
mod power;
mod recorded;
mod timeline;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::routing::{get, post};

use crate::boot::Registry;
use crate::boot::classify::Names;
use crate::files::Files;
use crate::inventory::Inventory;
use crate::spec::Mac;

/// What the HTTP side serves for one version of the spec; replaced whole
/// when the spec is reloaded.
#[derive(Debug, Default)]
pub struct Site {
    /// The cluster's name, for the page title.
    pub cluster: String,
    /// Rendered files by path: `boot.ipxe`, `ipxe/<node>.ipxe`,
    /// `cloud-config/<node>.yml`, `ignition/<node>.ign`.
    pub files: HashMap<String, String>,
    pub inventory: Inventory,
    pub names: Names,
    /// Where `/assets/` is served from (kernel, initrd, loaders), resolved
    /// to a canonical path when the spec is loaded.
    pub images: PathBuf,
    /// Require `/cloud-config/<node>` to come from the node's own address.
    pub check_source: bool,
    /// `[ignition] merge`, served at `/ignition/<node>/merge/<i>`.
    pub merge: Vec<Arc<[u8]>>,
    /// The site's segments, to name each address's.
    pub segments: crate::spec::SegmentNames,
}

impl Site {
    /// The site of `spec` (its machines in `inventory`) from its rendered
    /// `files`, keeping those HTTP may serve; assets come from `images`,
    /// resolved once here since `/assets/` checks every file against it.
    pub fn rendered(
        spec: &crate::spec::Spec,
        inventory: Inventory,
        files: &[crate::render::File],
        images: &std::path::Path,
        check_source: bool,
    ) -> Site {
        Site {
            cluster: spec.cluster.name.clone(),
            files: files
                .iter()
                .filter(|f| crate::render::Generated::parse(&f.path).is_some_and(|g| g.over_http()))
                .map(|f| (f.path.clone(), f.content.clone()))
                .collect(),
            inventory,
            names: Names {
                kernel: spec.boot.kernel.clone(),
                initrd: spec.boot.initrd.clone(),
            },
            images: images
                .canonicalize()
                .unwrap_or_else(|_| images.to_path_buf()),
            check_source,
            merge: spec
                .ignition_merge
                .iter()
                .map(|m| m.bytes.clone())
                .collect(),
            segments: crate::spec::SegmentNames::of(spec),
        }
    }
}

/// One part of the server (`dhcp`, `tftp`, `http`, `store`) as
/// `/healthz` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartHealth {
    pub part: &'static str,
    pub ok: bool,
    /// Why, for people: `DHCP server stuck: its loop last ran 7.2 s ago`.
    pub detail: String,
}

/// What `/healthz` asks.
pub trait Health: Send + Sync {
    fn parts(&self) -> Vec<PartHealth>;
}

/// Asks `serve` to enrol a machine the spec does not list, seen at `ip`;
/// `done` is told once the machine's files are served (or enrolment was
/// not possible).
#[derive(Debug)]
pub struct EnrolRequest {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub site: Arc<RwLock<Arc<Site>>>,
    pub registry: Arc<Registry>,
    /// The `/metrics` page, with every part's metrics registered.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What HTTP counts for it (registered there).
    pub http: Arc<metrics::HttpMetrics>,
    /// Where unknown machines are sent to be enrolled (none: refused).
    pub enrol: Option<tokio::sync::mpsc::Sender<EnrolRequest>>,
    /// Whole files in memory, shared with the TFTP server: big assets are
    /// served from here (one copy of an initrd, whichever way it goes).
    pub files: Arc<Files>,
    /// The stored leases, for `/api/v1/leases` (none: not served).
    pub leases: Option<Arc<dyn crate::store::Leases>>,
    /// The parts' health, for `/healthz` (none: HTTP only).
    pub health: Option<Arc<dyn Health>>,
    /// The key power reports must present (none: not taken).
    pub api_key: Option<Arc<str>>,
    /// Told when a power action was reported (the power poll asks again).
    pub on_power: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl AppState {
    /// State over `site`, reporting to `registry`, big assets read
    /// through `files` (whose root is the images directory); `metrics`
    /// is the page, `http` what this side counts (registered on it).
    pub fn new(
        site: Site,
        registry: Arc<Registry>,
        metrics: Arc<crate::metrics::Metrics>,
        http: Arc<metrics::HttpMetrics>,
        files: Arc<Files>,
    ) -> AppState {
        AppState {
            site: Arc::new(RwLock::new(Arc::new(site))),
            registry,
            metrics,
            http,
            enrol: None,
            files,
            leases: None,
            health: None,
            api_key: None,
            on_power: None,
        }
    }

    /// The current site.
    pub fn site(&self) -> Arc<Site> {
        self.site.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the site (spec reloaded).
    pub fn replace_site(&self, site: Site) {
        *self.site.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(site);
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/nodes", get(page::nodes_json))
        .route("/api/v1/nodes/{name}", get(page::node_json))
        .route("/api/v1/nodes/{name}/power", post(power::report))
        .route("/api/v1/leases", get(leases::list))
        .route("/boot.ipxe", get(machines::boot_ipxe))
        .route("/ipxe/boot", get(machines::ipxe_by_mac))
        .route("/ipxe/{file}", get(machines::ipxe_by_name))
        .route("/cloud-config/{name}", get(machines::cloud_config))
        .route("/ignition/{name}", get(machines::ignition))
        .route(
            "/ignition/{name}/merge/{index}",
            get(machines::ignition_merge),
        )
        .route(
            "/phone-home/{name}",
            post(machines::phone_home).get(machines::phone_home),
        )
        .route("/assets/{*path}", get(assets::serve))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            timeline::record,
        ))
        .layer(axum::middleware::map_response(name_the_server))
        .with_state(state)
}

/// `/healthz`: 200 when every part is well, else 503; the body names
/// each part, whether it is well and why.
async fn healthz(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let parts = s.health.as_ref().map(|h| h.parts()).unwrap_or_else(|| {
        vec![PartHealth {
            part: "http",
            ok: true,
            detail: "answering".into(),
        }]
    });
    let ok = parts.iter().all(|p| p.ok);
    let status = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "parts": parts,
    });
    (status, axum::Json(body)).into_response()
}

/// The `Server` header of every answer: how `bootfleet nodes` tells
/// bootfleet from whatever else answers at an address.
pub const SERVER: &str = concat!("bootfleet/", env!("CARGO_PKG_VERSION"));

async fn name_the_server(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut().insert(
        axum::http::header::SERVER,
        axum::http::HeaderValue::from_static(SERVER),
    );
    res
}

#[cfg(test)]
mod tests;
