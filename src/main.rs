//! The `bootfleet` command. Everything happens in the library; this only
//! hands the arguments over and exits with the status it gets back.

/// mimalloc: rendering thousands of files is allocation-heavy, and the
/// system allocator took about a fifth of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bootfleet::cli::main()
}
