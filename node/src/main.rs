//! `pmr`: the PMR Ledger node and its command-line client.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use eyre::{Context, Result};
use pmr_node::cli::Cli;

/// jemalloc for Rust allocations (RocksDB's C++ keeps glibc: see the workspace `Cargo.toml`).
/// revm allocates per transaction and a block of mints allocates megabytes (receipts, change
/// sets); glibc handed large blocks back to the kernel and took fresh zeroed pages again every
/// block, where jemalloc reuses them (`cargo bench --workspace --bench execution`).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    if verbose {
        // Causes and backtraces, coloured only on a terminal.
        let theme = match std::io::stderr().is_terminal() {
            true => color_eyre::config::Theme::dark(),
            false => color_eyre::config::Theme::new(),
        };
        let _ = color_eyre::config::HookBuilder::default()
            .theme(theme)
            .install();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if verbose => {
            eprintln!("error: {e:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once (many errors already name their
/// source in their own message).
fn one_line(e: &eyre::Report) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn run(cli: Cli) -> Result<()> {
    pmr_node::check_cpu()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?
        .block_on(cli.run())
}
