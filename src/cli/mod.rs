//! The command line: one file per subcommand, each gathering its options and
//! calling the library. Exit status: 0 ok, 1 runtime failure, 2 bad input.

mod check;
mod cluster;
mod completions;
mod dhcp;
mod images;
mod leases;
mod nodes;
mod power;
mod render;
mod report;
mod serve;
mod tftp;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::spec::{Diagnostic, SpecError};

/// Bare-metal provisioning: DHCP, TFTP and HTTP for PXE, per-machine
/// cloud-configs, and boot tracking, in one binary.
#[derive(Debug, Parser)]
#[command(name = "bootfleet", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  bootfleet check examples/rack.toml\n  bootfleet render examples/rack.toml --out out/\n  bootfleet render examples/rack.toml --node etcd0"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (-q errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
    /// Where bootfleet keeps its state (site key, leases, boot timelines).
    /// Default: /var/lib/bootfleet as root, else $XDG_STATE_HOME/bootfleet.
    #[arg(long, global = true, env = "BOOTFLEET_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// How log lines are written to stderr: `text` for people and
    /// journald, `json` (one object per line: timestamp, level, message,
    /// fields) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "BOOTFLEET_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// See [`Cli::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(check::Args),
    Render(render::Args),
    Tftp(tftp::Args),
    Dhcp(dhcp::Args),
    Serve(serve::Args),
    Cluster(cluster::Args),
    Nodes(nodes::Args),
    Leases(leases::Args),
    Power(power::PowerArgs),
    Reprovision(power::ReprovisionArgs),
    Images(images::Args),
    Completions(completions::Args),
}

/// A failure, sorted by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The spec, a template or an argument is wrong: exit status 2.
    #[error("{0}")]
    BadInput(String),
    /// Something failed while running: exit status 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Invalid { path, diagnostics } => {
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                let mut text: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
                text.push(format!(
                    "{}: {errors} error(s); nothing was written",
                    path.display()
                ));
                CliError::BadInput(text.join("\n"))
            }
            e @ SpecError::Read { .. } => CliError::Runtime(e.into()),
        }
    }
}

impl From<crate::prepare::PrepareError> for CliError {
    fn from(e: crate::prepare::PrepareError) -> Self {
        use crate::prepare::PrepareError as P;
        match e {
            P::Spec(e) => e.into(),
            P::Render(e) => e.into(),
            e @ P::Key { .. } => CliError::Runtime(e.into()),
        }
    }
}

impl From<crate::server::ServerError> for CliError {
    fn from(e: crate::server::ServerError) -> Self {
        use crate::server::ServerError as S;
        match e {
            S::Prepare(e) => e.into(),
            e @ S::NoImages { .. } => CliError::BadInput(e.to_string()),
            e => CliError::Runtime(e.into()),
        }
    }
}

impl From<crate::render::RenderError> for CliError {
    fn from(e: crate::render::RenderError) -> Self {
        use crate::render::RenderError as R;
        match e {
            e @ R::Io { .. } => CliError::Runtime(e.into()),
            e => CliError::BadInput(format!("{e}\nnothing was written")),
        }
    }
}

/// Binds a UDP socket for a server, with errors that say what to do:
/// non-blocking, for the runtime that will serve it.
pub(crate) fn bind_udp(
    addr: std::net::SocketAddr,
    what: &'static str,
) -> Result<std::net::UdpSocket, CliError> {
    crate::server::sockets::udp(addr, what).map_err(|e| CliError::Runtime(e.into()))
}

/// Loads and checks a spec, printing its warnings.
pub(crate) fn load_spec(path: &std::path::Path) -> Result<crate::spec::Spec, CliError> {
    Ok(crate::prepare::load_spec(path, &print_warning)?)
}

/// Prints a spec warning as the commands do.
pub(crate) fn print_warning(w: &Diagnostic) {
    eprintln!("{w}");
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        CliError::Runtime(anyhow::Error::new(e).context("the site's state"))
    }
}

/// Reads a spec and opens the store its `[state]` names, for `render` and
/// `tftp`: the site key comes from there.
pub(crate) fn prepare(
    path: &std::path::Path,
    state_dir: &std::path::Path,
) -> Result<(crate::prepare::Prepared, crate::store::Store), CliError> {
    let spec = load_spec(path)?;
    let store = crate::store::open(&spec.state, state_dir)?;
    let p = crate::prepare::Prepared::with_spec(spec, &*store.keys)?;
    Ok((p, store))
}

/// Prints `rows` under `header` in columns (the last one unpadded).
pub(crate) fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    print_rows(header, &rows);
}

/// Prints `rows` under `header` in columns (the last one unpadded); rows
/// as long as the header.
pub(crate) fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let n = header.len();
    let mut width = vec![0usize; n];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in width.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < n {
                let w = width[i];
                line.push_str(&format!("{cell:<w$}  "));
            } else {
                line.push_str(cell);
            }
        }
        println!("{}", line.trim_end());
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The state directory to use when none is given.
fn default_state_dir() -> PathBuf {
    if nix_is_root() {
        return PathBuf::from("/var/lib/bootfleet");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("bootfleet")
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn init_logging(verbose: u8, quiet: u8, format: LogFormat) {
    let level = match (verbose, quiet) {
        (_, q) if q > 0 => "error",
        (0, _) => "info",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BOOTFLEET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: logs in files and journals stay plain.
    use std::io::IsTerminal as _;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().flatten_event(true).init(),
    }
}

/// Parses the arguments, runs the command, prints any error, and returns
/// the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let result = match cli.command {
        Command::Check(args) => check::run(args, &state_dir),
        Command::Render(args) => render::run(args, &state_dir),
        Command::Tftp(args) => tftp::run(args, &state_dir),
        Command::Dhcp(args) => dhcp::run(args, &state_dir),
        Command::Serve(args) => serve::run(args, &state_dir),
        Command::Cluster(args) => cluster::run(args, &state_dir),
        Command::Nodes(args) => nodes::run(args),
        Command::Leases(args) => leases::run(args, &state_dir),
        Command::Power(args) => power::power(args, &state_dir),
        Command::Reprovision(args) => power::reprovision(args, &state_dir),
        Command::Images(args) => images::run(args),
        Command::Completions(args) => completions::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BadInput(text)) => {
            eprintln!("{text}");
            ExitCode::from(2)
        }
        Err(CliError::Runtime(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
