//! `bootfleet cluster up|down|status|console|run SPEC`: a libvirt test
//! cluster that PXE-boots from bootfleet (see `crate::cluster`).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::CliError;
use crate::cluster::{self, ClusterError, Paths, Report, UpOptions};

/// Test clusters of libvirt VMs that PXE-boot from bootfleet: a network
/// of their own (no libvirt DHCP), a disk and a VM per node, and a
/// bootfleet server on the bridge.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet cluster up examples/libvirt.toml\n  bootfleet cluster status examples/libvirt.toml --json\n  bootfleet cluster console examples/libvirt.toml node0 -f\n  bootfleet cluster down examples/libvirt.toml\n  bootfleet cluster run examples/ci.toml -- ./my-tests.sh"
)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The cluster spec (TOML).
    spec: PathBuf,
    /// The images directory the boot server serves.
    #[arg(long, default_value = "images", value_name = "DIR")]
    images: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Create what is missing (network, disks, VMs, boot server), start
    /// the VMs and wait until every node has phoned home.
    Up {
        #[command(flatten)]
        common: Common,
        /// Print a JSON summary (nodes, addresses, seconds per stage, etcd
        /// endpoints) on stdout.
        #[arg(long)]
        json: bool,
        /// Return once the VMs are started, without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove everything of the cluster (found from libvirt's tags) and
    /// stop its boot server.
    Down {
        #[command(flatten)]
        common: Common,
    },
    /// Each VM's state, MAC, address and boot stage, and the server's.
    Status {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        json: bool,
    },
    /// A node's serial console log.
    Console {
        #[command(flatten)]
        common: Common,
        /// The node's name in the spec.
        node: String,
        /// Keep printing what the node writes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Up, wait, run COMMAND, and always down (success, failure, timeout,
    /// Ctrl-C, SIGTERM). Exits with COMMAND's status. COMMAND gets
    /// BOOTFLEET_CLUSTER, BOOTFLEET_SERVER, BOOTFLEET_NODES,
    /// BOOTFLEET_NODE_ADDRESSES, BOOTFLEET_ETCD_ENDPOINTS and
    /// BOOTFLEET_SUMMARY (a JSON file, as `up --json` prints).
    Run {
        #[command(flatten)]
        common: Common,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

impl From<ClusterError> for CliError {
    fn from(e: ClusterError) -> Self {
        match e {
            e @ (ClusterError::NotOurs { .. }
            | ClusterError::Conflict(_)
            | ClusterError::ImagesMissing { .. }
            | ClusterError::FirmwareMissing { .. }) => CliError::BadInput(format!("error: {e}")),
            e => CliError::Runtime(e.into()),
        }
    }
}

fn load(common: &Common, state_dir: &Path) -> Result<(crate::spec::Spec, Paths), CliError> {
    let spec = super::load_spec(&common.spec)?;
    if let Some(seg) = spec.segments.iter().find(|s| s.interface().is_none()) {
        return Err(CliError::BadInput(format!(
            "{}: segment `{}` is reached through relays; `bootfleet cluster` builds a libvirt network per direct segment and no relays, so its nodes would never get an address\n  help: give it `interface = \"<a bridge name>\"` and `server = \"<the host's address there>\"` instead of `relay = true`, or serve the site with `bootfleet serve`",
            spec.path.display(),
            seg.name
        )));
    }
    let paths = Paths::new(&spec, &common.images, state_dir);
    Ok((spec, paths))
}

fn say(text: &str) {
    eprintln!("{text}");
}

/// The SIGINT/SIGTERM flag that `up` and `run` check between steps.
fn signals() -> Result<Arc<AtomicBool>, CliError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| CliError::Runtime(e.into()))?;
    }
    Ok(flag)
}

pub fn run(args: Args, state_dir: &Path) -> Result<(), CliError> {
    match args.command {
        Sub::Up {
            common,
            json,
            no_wait,
        } => {
            let (spec, paths) = load(&common, state_dir)?;
            let stop = AtomicBool::new(false);
            let r = cluster::up(
                &spec,
                &paths,
                &UpOptions {
                    wait: !no_wait,
                    stop: &stop,
                    say: &say,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("report"));
            } else {
                print_report(&r);
                println!(
                    "\nstatus: bootfleet cluster status {}\ntear down: bootfleet cluster down {}",
                    common.spec.display(),
                    common.spec.display()
                );
            }
            Ok(())
        }
        Sub::Down { common } => {
            let (spec, paths) = load(&common, state_dir)?;
            let t = std::time::Instant::now();
            let r = cluster::down(&spec, &paths)?;
            for what in &r.left_alone {
                eprintln!("warning: {what} is not this cluster's (no tag): left as it is");
            }
            println!(
                "removed {} VMs{}{}{} in {:.1} s",
                r.domains.len(),
                if r.network { ", the network" } else { "" },
                if r.pool {
                    ", the disks and their pool"
                } else {
                    ""
                },
                if r.servers.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", the boot server (pid {})",
                        r.servers
                            .iter()
                            .map(i32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Sub::Status { common, json } => {
            let (spec, paths) = load(&common, state_dir)?;
            let r = cluster::status(&spec, &paths)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("report"));
            } else {
                print_report(&r);
            }
            Ok(())
        }
        Sub::Console {
            common,
            node,
            follow,
        } => {
            let (spec, paths) = load(&common, state_dir)?;
            let path = cluster::console_path(&spec, &paths, &node).ok_or_else(|| {
                CliError::BadInput(format!(
                    "the spec has no node `{node}`\n  help: one of: {}",
                    spec.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            console(&path, follow)
        }
        Sub::Run { common, command } => run_command(&common, &command, state_dir),
    }
}

fn print_report(r: &Report) {
    println!(
        "cluster {}: server {} ({})",
        r.cluster,
        if r.server.running {
            format!("running, pid {}", r.server.pid.unwrap_or_default())
        } else {
            "not running".to_owned()
        },
        r.server.url
    );
    let rows: Vec<[String; 6]> = r
        .nodes
        .iter()
        .map(|n| {
            [
                n.name.clone(),
                n.domain.clone(),
                n.state.clone(),
                n.mac.clone(),
                n.ip.to_string(),
                n.stage.clone(),
            ]
        })
        .collect();
    super::print_table(&["NODE", "DOMAIN", "STATE", "MAC", "IP", "BOOT"], &rows);
    if let Some(s) = r.up_seconds {
        println!("up in {s:.1} s");
    }
}

fn console(path: &Path, follow: bool) -> Result<(), CliError> {
    let mut f = std::fs::File::open(path).map_err(|e| {
        CliError::Runtime(anyhow::anyhow!("cannot read {}: {e}\n  help: the node's console exists once `cluster up` has started its VM", path.display()))
    })?;
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf).map_err(|e| CliError::Runtime(e.into()))?;
        if n > 0 {
            out.write_all(&buf[..n])
                .map_err(|e| CliError::Runtime(e.into()))?;
            out.flush().ok();
            continue;
        }
        if !follow {
            return Ok(());
        }
        // A new `up` truncates the file: start again from its beginning.
        let pos = f.stream_position().unwrap_or(0);
        if std::fs::metadata(path).is_ok_and(|m| m.len() < pos) {
            f.rewind().ok();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The exit status for a command killed by signal `sig`, as shells report it.
fn signal_status(sig: i32) -> u8 {
    128u8.saturating_add(sig as u8)
}

fn run_command(common: &Common, command: &[String], state_dir: &Path) -> Result<(), CliError> {
    let (spec, paths) = load(common, state_dir)?;
    let stop = signals()?;
    let up = cluster::up(
        &spec,
        &paths,
        &UpOptions {
            wait: true,
            stop: &stop,
            say: &say,
        },
    );
    let outcome = match up {
        Ok(report) if !stop.load(Ordering::Relaxed) => run_child(&report, &paths, command, &stop),
        Ok(_) => Err(CliError::Runtime(ClusterError::Interrupted.into())),
        Err(e) => Err(e.into()),
    };
    eprintln!("tearing down the cluster");
    let down = cluster::down(&spec, &paths);
    match (&outcome, down) {
        (_, Err(e)) => {
            eprintln!("error: tearing down failed: {}", crate::error_chain(&e));
            if outcome.is_ok() {
                return Err(e.into());
            }
        }
        (_, Ok(r)) => eprintln!(
            "removed {} VMs, network: {}, pool: {}",
            r.domains.len(),
            r.network,
            r.pool
        ),
    }
    match outcome {
        Ok(0) => Ok(()),
        Ok(code) => std::process::exit(code.into()),
        Err(e) => Err(e),
    }
}

/// Runs the user's command with the cluster in its environment; its exit
/// status, or 128+N when a signal ended it (or ended `run`).
fn run_child(
    report: &Report,
    paths: &Paths,
    command: &[String],
    stop: &AtomicBool,
) -> Result<u8, CliError> {
    let summary = paths.dir.join("summary.json");
    std::fs::write(
        &summary,
        serde_json::to_string_pretty(report).expect("report"),
    )
    .map_err(|e| CliError::Runtime(e.into()))?;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("BOOTFLEET_CLUSTER", &report.cluster)
        .env("BOOTFLEET_SERVER", &report.server.url)
        .env(
            "BOOTFLEET_NODES",
            report
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .env(
            "BOOTFLEET_NODE_ADDRESSES",
            report
                .nodes
                .iter()
                .map(|n| format!("{}={}", n.name, n.ip))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .env("BOOTFLEET_ETCD_ENDPOINTS", report.etcd_endpoints.join(","))
        .env("BOOTFLEET_SUMMARY", &summary);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::BadInput(format!("cannot run {}: {e}", command[0])))?;
    let pgid = child.id() as i32;
    let mut signalled = false;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| CliError::Runtime(e.into()))? {
            use std::os::unix::process::ExitStatusExt as _;
            if signalled {
                return Ok(signal_status(libc::SIGTERM));
            }
            return Ok(status
                .code()
                .map_or_else(|| signal_status(status.signal().unwrap_or(0)), |c| c as u8));
        }
        if stop.load(Ordering::Relaxed) && !signalled {
            eprintln!("signal received: stopping {}", command[0]);
            // SAFETY: kill takes no pointers; the child leads its own group.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            signalled = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
