//! libvirt test clusters that boot the way a rack boots: a network of the
//! cluster's own (no libvirt DHCP or DNS), a disk and a VM per node with
//! the spec's MAC, and a bootfleet server on the bridge that they PXE-boot
//! from. [`plan`] works out what the cluster is (pure), [`driver`] asks
//! libvirt what exists and converges it, [`process`] runs the server.
//! Everything created is found again from libvirt alone, so `down` works
//! after a crash of `up` at any point.

pub mod accel;
pub mod driver;
pub mod plan;
pub mod preflight;
pub mod process;
pub mod wait;
pub mod xml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::boot::NodeStatus;
use crate::spec::{Firmware, Spec};
use driver::{Found, Libvirt};
use plan::Plan;

/// Why a cluster command failed; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to libvirt at {uri}: {message}\n  help: {help}")]
    Connect {
        uri: String,
        message: String,
        help: String,
    },
    #[error("libvirt failed {what}")]
    Libvirt {
        what: String,
        source: virt::error::Error,
    },
    #[error(
        "{kind} `{name}` exists but is not this cluster's (it carries no tag of cluster `{cluster}`); nothing was changed\n  help: rename or remove it yourself (`virsh {kind}-...`), or give the cluster another name"
    )]
    NotOurs {
        kind: &'static str,
        name: String,
        cluster: String,
    },
    #[error("{0}\n  nothing was created")]
    Conflict(preflight::Conflict),
    #[error("{path} is missing: the VMs would stop at that step\n  help: {help}")]
    ImagesMissing { path: PathBuf, help: String },
    #[error(
        "the test OS in {} was built by an older bootfleet (it cannot run Ignition)\n  help: rebuild it: bootfleet images testos{} --images {}", .dir.display(), if .dir.ends_with("testos-systemd") { " --systemd" } else { "" }, .images.display()
    )]
    TestosStale { dir: PathBuf, images: PathBuf },
    #[error(
        "the UEFI firmware {path} is missing\n  help: apt-get install ovmf, or set `firmware = \"bios\"` under [libvirt]"
    )]
    FirmwareMissing { path: PathBuf },
    #[error("the storage pool at {} has {} MiB free, the disks need {} MiB\n  help: free space there, or set `pool_dir` under [libvirt] to a larger disk", path.display(), available >> 20, need >> 20)]
    PoolFull {
        path: PathBuf,
        available: u64,
        need: u64,
    },
    #[error(transparent)]
    Xml(#[from] xml::XmlError),
    #[error("{0}")]
    Server(String),
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("not every node phoned home within {} s:\n  {}\n  help: `bootfleet cluster console SPEC NODE` shows a node's console; `bootfleet cluster down SPEC` removes the cluster", timeout.as_secs(), stalled.join("\n  "))]
    Stalled {
        timeout: Duration,
        stalled: Vec<String>,
    },
    #[error("interrupted")]
    Interrupted,
}

/// Where a cluster command keeps what is not in libvirt.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The spec file (the server reads it).
    pub spec: PathBuf,
    /// The images directory the server serves.
    pub images: PathBuf,
    /// `STATE_DIR/clusters/NAME`: the server's state, its log and the consoles.
    pub dir: PathBuf,
}

impl Paths {
    /// The paths of `spec`'s cluster under `state_dir`.
    pub fn new(spec: &Spec, images: &Path, state_dir: &Path) -> Paths {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        Paths {
            spec: abs(&spec.path),
            images: abs(images),
            dir: abs(&state_dir.join("clusters").join(&spec.cluster.name)),
        }
    }

    fn console_dir(&self) -> PathBuf {
        self.dir.join("console")
    }

    fn server_state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// The plan of `spec`'s cluster, with the accelerator decided for this host.
pub fn plan(spec: &Spec, paths: &Paths) -> (Plan, accel::Decision) {
    let decision = accel::decide(
        spec.libvirt.accel,
        &paths.images.join(&spec.boot.kernel),
        &paths.dir.join("accel"),
    );
    (
        Plan::new(spec, decision.kvm, &paths.console_dir()),
        decision,
    )
}

/// What `up` and `status` report about a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub domain: String,
    pub state: String,
    pub mac: String,
    pub ip: std::net::Ipv4Addr,
    pub stage: String,
    /// Seconds spent in each boot stage.
    pub seconds: HashMap<String, f64>,
    pub console: PathBuf,
}

/// The cluster as a whole: what `up --json` and `status --json` print.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    pub server: ServerReport,
    pub nodes: Vec<NodeReport>,
    pub etcd_endpoints: Vec<String>,
    /// Seconds `up` took, from its start to the last phone-home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_seconds: Option<f64>,
}

/// Whether the cluster's server runs.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    pub running: bool,
    pub pid: Option<i32>,
    pub url: String,
    pub log: PathBuf,
}

fn report(
    spec: &Spec,
    plan: &Plan,
    paths: &Paths,
    lv: &Libvirt,
    seen: &HashMap<String, NodeStatus>,
) -> Result<Report, ClusterError> {
    let pid = process::find(&plan.cluster).first().copied();
    let mut nodes = Vec::new();
    for d in &plan.domains {
        let n = seen.get(&d.node);
        nodes.push(NodeReport {
            name: d.node.clone(),
            domain: d.name.clone(),
            state: lv.domain_state(d)?,
            mac: d.mac.clone(),
            ip: d.ip,
            stage: wait::describe(n),
            seconds: n
                .map(|n| {
                    n.stages
                        .iter()
                        .map(|s| (s.stage.name().to_owned(), s.ms as f64 / 1000.0))
                        .collect()
                })
                .unwrap_or_default(),
            console: d.console_log.clone(),
        });
    }
    Ok(Report {
        cluster: plan.cluster.clone(),
        server: ServerReport {
            running: pid.is_some(),
            pid,
            url: format!("http://{}/", spec.api_address()),
            log: process::log_path(&paths.dir),
        },
        etcd_endpoints: spec
            .nodes
            .iter()
            .filter(|n| n.roles.etcd)
            .map(|n| format!("http://{}:{}", n.ip, spec.etcd.client_port))
            .collect(),
        nodes,
        up_seconds: None,
    })
}

/// Fails unless the boot files are in the images directory (and, for
/// UEFI, the firmware is installed), naming the command that provides them.
fn check_files(spec: &Spec, paths: &Paths) -> Result<(), ClusterError> {
    for f in [&spec.boot.kernel, &spec.boot.initrd] {
        let path = paths.images.join(f);
        if !path.is_file() {
            let images = paths.images.display();
            let help = if f.starts_with("testos/") {
                format!("build the test OS: bootfleet images testos --images {images}")
            } else if f.starts_with("testos-systemd/") {
                format!("build the test OS: bootfleet images testos --systemd --images {images}")
            } else if let Some(v) = f.strip_prefix("flatcar/").and_then(|r| r.split('/').next()) {
                format!("fetch it: bootfleet images fetch flatcar --version {v} --images {images}")
            } else {
                "put the file there, or point --images at the directory that has it".to_owned()
            };
            return Err(ClusterError::ImagesMissing { path, help });
        }
    }
    if !crate::images::testos::current(&paths.images, &spec.boot.kernel) {
        return Err(ClusterError::TestosStale {
            dir: paths.images.join(&spec.boot.kernel).with_file_name(""),
            images: paths.images.clone(),
        });
    }
    if spec.libvirt.firmware == Firmware::Uefi {
        for f in [xml::OVMF_CODE, xml::OVMF_VARS] {
            if !Path::new(f).is_file() {
                return Err(ClusterError::FirmwareMissing { path: f.into() });
            }
        }
    }
    Ok(())
}

/// What `up` is told.
pub struct UpOptions<'a> {
    /// Wait for every node to phone home.
    pub wait: bool,
    /// Set by a signal handler: stop waiting.
    pub stop: &'a AtomicBool,
    /// Told each step as it happens (for the terminal).
    pub say: &'a dyn Fn(&str),
}

/// Brings the cluster up, converging on what exists: checks everything it
/// can before creating anything, then the network, the pool and disks, the
/// boot server, the VMs; then waits for every node to phone home.
pub fn up(spec: &Spec, paths: &Paths, o: &UpOptions<'_>) -> Result<Report, ClusterError> {
    let t0 = Instant::now();
    let since = crate::clock::now_ms();
    check_files(spec, paths)?;
    let (plan, decision) = plan(spec, paths);
    (o.say)(&format!("accelerator: {}", decision.why));
    let lv = Libvirt::open(&plan.uri)?;
    // Nothing is created while anything is in the way.
    let mut found = Vec::new();
    for net in &plan.networks {
        let f = lv.network_found(&plan, net)?;
        if f == Found::Foreign {
            return Err(ClusterError::NotOurs {
                kind: "net",
                name: net.name.clone(),
                cluster: plan.cluster.clone(),
            });
        }
        found.push(f);
    }
    if lv.pool_found(&plan)? == Found::Foreign {
        return Err(ClusterError::NotOurs {
            kind: "pool",
            name: plan.pool.name.clone(),
            cluster: plan.cluster.clone(),
        });
    }
    for d in &plan.domains {
        if lv.domain_found(&plan, d)? == Found::Foreign {
            return Err(ClusterError::NotOurs {
                kind: "domain",
                name: d.name.clone(),
                cluster: plan.cluster.clone(),
            });
        }
    }
    let others = lv.other_networks(&plan)?;
    let routes = preflight::host_routes();
    for (net, f) in plan.networks.iter().zip(&found) {
        preflight::network_conflicts(
            net,
            &others,
            &routes,
            preflight::interface_exists(&net.bridge),
            *f == Found::Ours { active: true },
        )
        .map_err(ClusterError::Conflict)?;
    }

    for net in &plan.networks {
        lv.ensure_network(&plan, net)?;
        (o.say)(&format!(
            "network {} (bridge {}, {}/{})",
            net.name,
            net.bridge,
            net.address,
            net.subnet.prefix_len()
        ));
    }
    lv.ensure_storage(&plan)?;
    (o.say)(&format!(
        "pool {} at {} ({} disks)",
        plan.pool.name,
        plan.pool.path.display(),
        plan.domains.len()
    ));
    let http = spec.api_address();
    match process::find(&plan.cluster).first() {
        Some(&pid) => {
            // It re-reads the spec, so a changed spec takes effect.
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            (o.say)(&format!(
                "boot server already running (pid {pid}); told it to re-read the spec"
            ));
        }
        None => {
            let pid = process::start(&process::Start {
                cluster: &plan.cluster,
                spec: &paths.spec,
                images: &paths.images,
                state_dir: &paths.server_state(),
                log: &process::log_path(&paths.dir),
                http: http
                    .parse()
                    .map_err(|e| ClusterError::Server(format!("bad server address {http}: {e}")))?,
            })?;
            (o.say)(&format!(
                "boot server started (pid {pid}), status page http://{http}/"
            ));
        }
    }
    std::fs::create_dir_all(paths.console_dir()).map_err(|source| ClusterError::Io {
        what: format!("creating {}", paths.console_dir().display()),
        source,
    })?;
    let started = lv.ensure_domains(&plan)?;
    (o.say)(&format!(
        "{} VMs, {} started now{}",
        plan.domains.len(),
        started.len(),
        if started.is_empty() {
            String::new()
        } else {
            format!(": {}", started.join(", "))
        }
    ));
    let seen = if o.wait {
        let nodes: Vec<wait::Waited> = plan
            .domains
            .iter()
            .map(|d| wait::Waited {
                node: d.node.clone(),
                look: format!("console: {}", d.console_log.display()),
            })
            .collect();
        wait::until_booted(
            &nodes,
            &http,
            &started,
            since,
            spec.libvirt.boot_timeout,
            o.stop,
        )?
    } else {
        wait::fetch(&http).unwrap_or_default()
    };
    let mut r = report(spec, &plan, paths, &lv, &seen)?;
    r.up_seconds = Some(t0.elapsed().as_secs_f64());
    Ok(r)
}

/// What `down` removed and what it left alone.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub domains: Vec<String>,
    pub network: bool,
    pub pool: bool,
    pub servers: Vec<i32>,
    /// Namesakes that are not the cluster's: left as they were.
    pub left_alone: Vec<String>,
}

/// Removes everything of the cluster that libvirt knows as the cluster's,
/// and stops its server: the VMs (destroyed in parallel, NVRAM with them),
/// the network, the disks and their pool. Anything with the same name that
/// is not tagged with the cluster is left as it is (and named).
pub fn down(spec: &Spec, paths: &Paths) -> Result<Removed, ClusterError> {
    let plan = Plan::new(spec, false, &paths.console_dir());
    let lv = Libvirt::open(&plan.uri)?;
    let mut removed = Removed::default();
    for pid in process::find(&plan.cluster) {
        process::stop(pid);
        removed.servers.push(pid);
    }
    let results: Vec<Result<(String, bool, bool), ClusterError>> = std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .domains
            .iter()
            .map(|d| {
                let (lv, plan) = (&lv, &plan);
                s.spawn(move || {
                    let foreign = lv.domain_found(plan, d)? == Found::Foreign;
                    Ok((
                        d.name.clone(),
                        foreign,
                        !foreign && lv.remove_domain(plan, d)?,
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("domain removal thread"))
            .collect()
    });
    for r in results {
        let (name, foreign, gone) = r?;
        if foreign {
            removed.left_alone.push(format!("domain {name}"));
        }
        if gone {
            removed.domains.push(name);
        }
    }
    for net in &plan.networks {
        if lv.network_found(&plan, net)? == Found::Foreign {
            removed.left_alone.push(format!("network {}", net.name));
        }
        removed.network |= lv.remove_network(&plan, net)?;
    }
    if lv.pool_found(&plan)? == Found::Foreign {
        removed.left_alone.push(format!("pool {}", plan.pool.name));
    }
    removed.pool = lv.remove_storage(&plan)?;
    // The server's leases and site key go with the cluster; the consoles
    // and the server's log stay for a post-mortem (the next `up`
    // overwrites them).
    let state = paths.server_state();
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(|source| ClusterError::Io {
            what: format!("removing {}", state.display()),
            source,
        })?;
    }
    Ok(removed)
}

/// The cluster as it is now: each VM's state, the server, the boot stages.
pub fn status(spec: &Spec, paths: &Paths) -> Result<Report, ClusterError> {
    let plan = Plan::new(spec, false, &paths.console_dir());
    let lv = Libvirt::open(&plan.uri)?;
    let seen = if process::find(&plan.cluster).is_empty() {
        HashMap::new()
    } else {
        wait::fetch(&spec.api_address()).unwrap_or_default()
    };
    report(spec, &plan, paths, &lv, &seen)
}

/// The serial console log of `node`.
pub fn console_path(spec: &Spec, paths: &Paths, node: &str) -> Option<PathBuf> {
    spec.nodes
        .iter()
        .any(|n| n.name == node)
        .then(|| plan::console_log(&paths.console_dir(), node))
}
