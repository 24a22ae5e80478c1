//! `bootfleet power SPEC status|on|off|cycle [NODE...]` and `bootfleet
//! reprovision SPEC [NODE...]`: machines acted on through their BMCs
//! (see [`crate::power`]), a bounded number at a time, each with its own
//! result; `reprovision` then waits on the boot server's timelines until
//! each node has phoned home again.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use super::CliError;
use super::report::Reporter;
use crate::boot::{PowerAction, PowerVerb};
use crate::power::{Action, BootOverride, PowerError, Status};
use crate::spec::{NodeSpec, Spec};

/// Which nodes: by name, or all, or by role or label.
#[derive(Debug, clap::Args)]
pub struct Select {
    /// Nodes by name.
    nodes: Vec<String>,
    /// Every node of the spec.
    #[arg(long, conflicts_with = "nodes")]
    all: bool,
    /// Nodes with this role (etcd or worker).
    #[arg(long, value_name = "ROLE")]
    role: Option<String>,
    /// Nodes with this label (k=v); may be given more than once.
    #[arg(long, value_name = "K=V")]
    label: Vec<String>,
}

/// What `power` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Verb {
    Status,
    On,
    Off,
    Cycle,
}

/// Read or change the power of the spec's machines through their BMCs
/// (Redfish, IPMI, or libvirt for VMs): a table of node, driver, power
/// state, boot override and, per node, what went wrong and how to fix it.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet power examples/rack.toml status --all\n  bootfleet power examples/rack.toml on worker1 worker2\n  bootfleet power site.toml cycle --role worker --label rack=r2 --json\n\nA node without `bmc` in the spec is the libvirt domain <cluster>-<node> (what\n`bootfleet cluster` creates). on, off and cycle are reported to the spec's boot\nserver (with the API key from its state directory), whose timelines show them.\nExit status 1 when any node failed."
)]
pub struct PowerArgs {
    /// The cluster spec (TOML).
    spec: std::path::PathBuf,
    /// status, on, off (at once, no orderly shutdown) or cycle (off then on).
    #[arg(value_enum)]
    verb: Verb,
    #[command(flatten)]
    select: Select,
    /// Report the actions to this HOST:PORT instead of the spec's server
    /// address and port.
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
    /// Print JSON, for scripts.
    #[arg(long)]
    json: bool,
}

/// Boot the spec's machines again from the network: set each one's next
/// boot to the network through its BMC, power-cycle it (or power it on),
/// and wait until it has phoned home to the boot server again.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet reprovision examples/rack.toml worker3\n  bootfleet reprovision site.toml --role worker --timeout 20m\n  bootfleet reprovision site.toml --all --json\n\nA node whose boot override could not be set is never power-cycled. Needs the\nspec's boot server running. Exit status 1 when a node did not come back."
)]
pub struct ReprovisionArgs {
    /// The cluster spec (TOML) the boot server runs.
    spec: std::path::PathBuf,
    #[command(flatten)]
    select: Select,
    /// How long to wait for every node to phone home (90s, 10m, 1h).
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    timeout: String,
    /// Ask this HOST:PORT instead of the spec's server address and port.
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
    /// Print JSON, for CI.
    #[arg(long)]
    json: bool,
}

/// One node's result.
#[derive(Debug, serde::Serialize)]
struct Row {
    node: String,
    driver: String,
    #[serde(flatten)]
    status: Option<Status>,
    /// What was done (`powered on`, `cycled, network boot once`, ...).
    done: Option<String>,
    error: Option<String>,
}

/// The nodes `select` names, in spec order; unknown names are bad input.
fn selected<'a>(spec: &'a Spec, select: &Select) -> Result<Vec<&'a NodeSpec>, CliError> {
    for name in &select.nodes {
        if !spec.nodes.iter().any(|n| &n.name == name) {
            return Err(CliError::BadInput(format!(
                "no node named `{name}` in {}\n  help: the spec's nodes are {}",
                spec.path.display(),
                spec.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut labels = Vec::new();
    for l in &select.label {
        let Some((k, v)) = l.split_once('=') else {
            return Err(CliError::BadInput(format!(
                "--label {l}: write it as KEY=VALUE"
            )));
        };
        labels.push((k, v));
    }
    if select.nodes.is_empty() && !select.all && select.role.is_none() && labels.is_empty() {
        return Err(CliError::BadInput(
            "which nodes? name them, or give --all, --role ROLE or --label K=V".into(),
        ));
    }
    let picked: Vec<&NodeSpec> = spec
        .nodes
        .iter()
        .filter(|n| select.nodes.is_empty() || select.nodes.contains(&n.name))
        .filter(|n| {
            select
                .role
                .as_ref()
                .is_none_or(|r| n.roles.names().contains(&r.as_str()))
        })
        .filter(|n| {
            labels
                .iter()
                .all(|(k, v)| n.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    if picked.is_empty() {
        return Err(CliError::BadInput("no node of the spec matches".into()));
    }
    Ok(picked)
}

/// Runs `work` for every node, at most 16 at a time; rows in node order.
fn each(nodes: &[&NodeSpec], work: impl Fn(&NodeSpec) -> Row + Sync) -> Vec<Row> {
    let next = Mutex::new(0usize);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new((0..nodes.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..nodes.len().min(16) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(node) = nodes.get(i) else { break };
                    let row = work(node);
                    rows.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(row);
                }
            });
        }
    });
    rows.into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

fn row(node: &NodeSpec, driver: &str) -> Row {
    Row {
        node: node.name.clone(),
        driver: driver.to_owned(),
        status: None,
        done: None,
        error: None,
    }
}

fn failed(mut r: Row, e: &PowerError) -> Row {
    r.error = Some(e.to_string());
    r
}

/// The node's driver: its BMC's, or libvirt's when it names none.
fn driver_name(node: &NodeSpec) -> &'static str {
    node.bmc
        .as_ref()
        .map_or(crate::spec::BmcDriver::Libvirt, |b| b.driver)
        .name()
}

fn print(rows: &[Row], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(rows).expect("rows serialise")
        );
        return;
    }
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.node.clone(),
                r.driver.clone(),
                r.status
                    .as_ref()
                    .map_or("?".into(), |s| s.power.to_string()),
                r.status.as_ref().map_or("?".into(), |s| s.boot.to_string()),
                match (&r.error, &r.done) {
                    (Some(e), _) => format!("error: {}", e.replace('\n', "\n    ")),
                    (None, Some(d)) => d.clone(),
                    (None, None) => String::new(),
                },
            ]
        })
        .collect();
    let head = ["NODE", "DRIVER", "POWER", "BOOT", ""];
    let width = |i: usize| {
        table
            .iter()
            .map(|r| r[i].len())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..4).map(width).collect();
    let line = |r: &[String; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
        .trim_end()
        .to_owned()
    };
    println!("{}", line(&head.map(str::to_owned)));
    for r in &table {
        println!("{}", line(r));
    }
}

/// What the server's timeline is told of `action` taken at `at`.
fn reported(at: u64, action: Action, by: &str, boot: Option<&BootOverride>) -> PowerAction {
    PowerAction {
        at,
        action: match action {
            Action::On => PowerVerb::On,
            Action::Off => PowerVerb::Off,
            Action::Cycle => PowerVerb::Cycle,
        },
        by: by.to_owned(),
        boot: boot.map(ToString::to_string),
    }
}

pub fn power(args: PowerArgs, state_dir: &std::path::Path) -> Result<(), CliError> {
    let spec = super::load_spec(&args.spec)?;
    let nodes = selected(&spec, &args.select)?;
    let reporter = (args.verb != Verb::Status)
        .then(|| Reporter::new(&spec, state_dir, args.server.as_deref()));
    let rows = each(&nodes, |node| {
        let r = row(node, driver_name(node));
        let mut bmc = match crate::power::open(&spec, node) {
            Ok(b) => b,
            Err(e) => return failed(r, &e),
        };
        let done = match args.verb {
            Verb::Status => None,
            Verb::On => Some((Action::On, "on")),
            Verb::Off => Some((Action::Off, "off")),
            Verb::Cycle => Some((Action::Cycle, "cycled")),
        };
        let mut r = r;
        if let Some((action, said)) = done {
            let at = crate::clock::now_ms();
            if let Err(e) = bmc.act(action) {
                return failed(r, &e);
            }
            if let Some(reporter) = &reporter {
                reporter.report(&node.name, &reported(at, action, "power", None));
            }
            r.done = Some(said.into());
        }
        match bmc.status() {
            Ok(s) => r.status = Some(s),
            Err(e) => return failed(r, &e),
        }
        r
    });
    print(&rows, args.json);
    if let Some(note) = reporter.as_ref().and_then(Reporter::note) {
        eprintln!("{note}");
    }
    if rows.iter().any(|r| r.error.is_some()) {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "{} of {} nodes failed",
            rows.iter().filter(|r| r.error.is_some()).count(),
            rows.len()
        )));
    }
    Ok(())
}

pub fn reprovision(args: ReprovisionArgs, state_dir: &std::path::Path) -> Result<(), CliError> {
    let spec = super::load_spec(&args.spec)?;
    let timeout = crate::spec::parse_duration(&args.timeout).ok_or_else(|| {
        CliError::BadInput(format!(
            "--timeout {}: write a duration such as 90s, 10m or 1h",
            args.timeout
        ))
    })?;
    let nodes = selected(&spec, &args.select)?;
    let http = args.server.clone().unwrap_or_else(|| spec.api_address());
    // The server must be there to watch the boots, before anything is
    // power-cycled.
    crate::cluster::wait::fetch(&http).map_err(|e| {
        CliError::Runtime(anyhow::anyhow!(
            "the boot server at {http} does not answer ({e}); nothing was power-cycled\n  help: start `bootfleet serve {}` (or give --server HOST:PORT)",
            args.spec.display()
        ))
    })?;
    let reporter = Reporter::new(&spec, state_dir, Some(&http));
    let since = crate::clock::now_ms();
    let rows = each(&nodes, |node| {
        let mut r = row(node, driver_name(node));
        let mut bmc = match crate::power::open(&spec, node) {
            Ok(b) => b,
            Err(e) => return failed(r, &e),
        };
        let boot = match bmc.network_boot_once() {
            Ok(b) => b,
            Err(e) => {
                r.error = Some(format!("{e}\n  the node was not power-cycled"));
                return r;
            }
        };
        let at = crate::clock::now_ms();
        if let Err(e) = bmc.act(Action::Cycle) {
            return failed(r, &e);
        }
        reporter.report(
            &node.name,
            &reported(at, Action::Cycle, "reprovision", Some(&boot)),
        );
        r.done = Some(match boot {
            BootOverride::PxeOnce => "cycled, network boot once".into(),
            _ => "cycled, network boot (the BMC keeps it for every boot)".into(),
        });
        if let Ok(s) = bmc.status() {
            r.status = Some(s);
        }
        r
    });
    let cycled: Vec<crate::cluster::wait::Waited> = rows
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| crate::cluster::wait::Waited {
            node: r.node.clone(),
            look: format!(
                "`bootfleet power {} status {}`",
                args.spec.display(),
                r.node
            ),
        })
        .collect();
    if !args.json {
        print(&rows, false);
    }
    if let Some(note) = reporter.note() {
        eprintln!("{note}");
    }
    let names: Vec<String> = cycled.iter().map(|w| w.node.clone()).collect();
    let stop = AtomicBool::new(false);
    let waited = if cycled.is_empty() {
        Ok(Default::default())
    } else {
        crate::cluster::wait::until_booted(&cycled, &http, &names, since, timeout, &stop)
    };
    let seen = match &waited {
        Ok(seen) => seen.clone(),
        Err(_) => crate::cluster::wait::fetch(&http).unwrap_or_default(),
    };
    if args.json {
        let nodes: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let n = seen.get(&r.node);
                serde_json::json!({
                    "node": r.node,
                    "driver": r.driver,
                    "done": r.done,
                    "error": r.error,
                    "back": r.error.is_none() && n.is_some_and(|n| n.state == crate::boot::State::Booted
                        && n.stages.iter().any(|s| s.stage == crate::boot::Stage::Booted && s.at >= since)),
                    "stage": crate::cluster::wait::describe(n),
                    "boot_cause": n.and_then(|n| n.boot_cause.as_ref()).map(|c| c.message.clone()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes }))
                .expect("JSON serialises")
        );
    }
    let failed = rows.iter().filter(|r| r.error.is_some()).count();
    match waited {
        Err(crate::cluster::ClusterError::Stalled { timeout, stalled }) => {
            Err(CliError::Runtime(anyhow::anyhow!(
                "not every node came back within {} s:\n  {}",
                timeout.as_secs(),
                stalled.join("\n  ")
            )))
        }
        Err(e) => Err(CliError::Runtime(e.into())),
        Ok(_) if failed > 0 => Err(CliError::Runtime(anyhow::anyhow!(
            "{failed} of {} nodes could not be power-cycled",
            rows.len()
        ))),
        Ok(_) => {
            if !args.json {
                eprintln!("every node phoned home again");
            }
            Ok(())
        }
    }
}
