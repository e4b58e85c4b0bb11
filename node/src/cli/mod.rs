//! The `pmr` command line: the node's own commands (a file per group, each command a clap
//! variant with a `run`) beside the client commands of `pmr-cli`. Errors print as one line;
//! `--verbose` adds their causes and backtraces.

mod genesis;
mod node;
mod peer;
mod testnet;

use clap::{Parser, Subcommand};
use eyre::Result;
use pmr_cli::{log_filter, ClientCommand, Output};

/// The `pmr` command line.
#[derive(Parser)]
#[command(
    name = "pmr",
    version,
    about = "PMR Ledger: a permissioned ledger for patient medical records",
    long_about = "PMR Ledger node and client.\n\nRun a local 4-validator testnet with `pmr dev`; \
                  run one node with `pmr start --home DIR`; query a node with `pmr status --rpc URL`; \
                  store an encrypted file with `pmr blob put FILE`."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Output format of the command's result.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// On failure, print the error's whole chain of causes and, with RUST_BACKTRACE=1, where
    /// it arose.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Node(node::NodeCommand),
    #[command(flatten)]
    Testnet(testnet::TestnetCommand),
    #[command(flatten)]
    Client(ClientCommand),
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> Result<()> {
        match self.command {
            Command::Node(c) => c.run(self.output).await,
            Command::Testnet(c) => c.run(self.output).await,
            Command::Client(c) => c.run(self.output).await,
        }
    }
}

/// Logs of running nodes, on stdout, as text or JSON lines.
pub(crate) fn init_node_tracing(level: &str, json: bool) {
    let builder = tracing_subscriber::fmt().with_env_filter(log_filter(level));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
