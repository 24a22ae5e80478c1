//! The `bootfleet` command. Everything happens in the library; this only
//! hands the arguments over and exits with the status it gets back.

fn main() -> std::process::ExitCode {
    bootfleet::cli::main()
}
