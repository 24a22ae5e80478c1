//! `bootfleet completions SHELL`: print a shell completion script.

use clap::CommandFactory;

use super::{Cli, CliError};

/// Print a completion script for your shell.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  bootfleet completions bash > /etc/bash_completion.d/bootfleet\n  bootfleet completions zsh > \"${fpath[1]}/_bootfleet\""
)]
pub struct Args {
    /// The shell to write completions for.
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> Result<(), CliError> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "bootfleet",
        &mut std::io::stdout(),
    );
    Ok(())
}
