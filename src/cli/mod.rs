//! The command line: one file per subcommand, each gathering its options and
//! calling the library. Exit status: 0 ok, 1 runtime failure, 2 bad input.

mod check;
mod cluster;
mod completions;
mod dhcp;
mod images;
mod nodes;
mod prepare;
mod render;
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
    #[command(subcommand)]
    command: Command,
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
    what: &str,
) -> Result<std::net::UdpSocket, CliError> {
    let std_socket = std::net::UdpSocket::bind(addr).map_err(|e| {
        let help = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!("another program serves {what} on this port: stop it, or pick another with --listen"),
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need root (or CAP_NET_BIND_SERVICE); run as root or use --listen with a higher port".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "this machine has no such address: give one of its own (ip -br addr) or 0.0.0.0".to_owned(),
            _ => "check the address given with --listen".to_owned(),
        };
        CliError::Runtime(anyhow::anyhow!("cannot listen for {what} on {addr}: {e}\n  help: {help}"))
    })?;
    std_socket
        .set_nonblocking(true)
        .map_err(|e| CliError::Runtime(e.into()))?;
    Ok(std_socket)
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

fn init_logging(verbose: u8, quiet: u8) {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Parses the arguments, runs the command, prints any error, and returns
/// the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let result = match cli.command {
        Command::Check(args) => check::run(args, &state_dir),
        Command::Render(args) => render::run(args, &state_dir),
        Command::Tftp(args) => tftp::run(args, &state_dir),
        Command::Dhcp(args) => dhcp::run(args, &state_dir),
        Command::Serve(args) => serve::run(args, &state_dir),
        Command::Cluster(args) => cluster::run(args, &state_dir),
        Command::Nodes(args) => nodes::run(args),
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
