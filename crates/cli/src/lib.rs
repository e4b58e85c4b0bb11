//! The client commands of the `pmr` binary: what hospitals, patients, doctors, auditors and
//! testers run against a network. They talk to nodes through the SDK (`pmr-client`) only;
//! the node's own commands (`init`, `start`, `keys`, `dev`, `testnet`) are in `node/`.
//!
//! One module per command group, each command a clap variant with a `run`. A command's result
//! is a typed view that prints as text or, with `--output json`, as JSON ([`Output::show`]).

mod args;
mod audit;
mod bench;
mod blob;
mod chain;
mod gov;
mod identity;
mod record;

use std::fmt::Display;

use clap::{ArgMatches, FromArgMatches, Subcommand, ValueEnum};
use eyre::Result;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

/// Every client command, to flatten into the `pmr` command line
/// (`#[command(flatten)] Client(ClientCommand)`).
pub struct ClientCommand(Commands);

#[derive(Subcommand)]
enum Commands {
    #[command(flatten)]
    Chain(chain::ChainCommand),
    /// Benchmarks against a running network.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Encrypted blobs (record contents) in the nodes' content store.
    #[command(subcommand)]
    Blob(blob::BlobCommand),
    /// Governance: the council proposes and approves changes of validators, council, roles
    /// and permissions.
    #[command(subcommand)]
    Gov(gov::GovCommand),
    #[command(flatten)]
    Identity(identity::IdentityCommands),
    #[command(flatten)]
    Record(record::RecordCommands),
    #[command(flatten)]
    Audit(audit::AuditCommand),
}

impl ClientCommand {
    /// Runs the command, printing its result as `out` says.
    pub async fn run(self, out: Output) -> Result<()> {
        match self.0 {
            Commands::Chain(c) => c.run(out).await,
            Commands::Bench(c) => c.run(out).await,
            Commands::Blob(c) => c.run(out).await,
            Commands::Gov(c) => c.run(out).await,
            Commands::Identity(c) => c.run(out).await,
            Commands::Record(c) => c.run(out).await,
            Commands::Audit(c) => c.run(out).await,
        }
    }
}

impl FromArgMatches for ClientCommand {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Commands::from_arg_matches(m).map(Self)
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl Subcommand for ClientCommand {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        Commands::augment_subcommands(cmd)
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        Commands::augment_subcommands_for_update(cmd)
    }
    fn has_subcommand(name: &str) -> bool {
        Commands::has_subcommand(name)
    }
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Lines for a person.
    #[default]
    Text,
    /// One pretty-printed JSON document.
    Json,
}

impl Output {
    /// Prints `view`: its `Display` as text, or its `Serialize` form as JSON.
    pub fn show(self, view: &(impl Serialize + Display)) -> Result<()> {
        match self {
            Output::Json => println!("{}", serde_json::to_string_pretty(view)?),
            Output::Text => println!("{view}"),
        }
        Ok(())
    }
}

/// `0x`-prefixed hex.
fn hex0x(b: &[u8]) -> String {
    alloy_primitives::hex::encode_prefixed(b)
}

/// RUST_LOG when set, else `level`.
pub fn log_filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
}

/// Warnings and errors of a command that prints a report, on stderr so that `--output json`
/// stays parseable (RUST_LOG overrides the level).
pub fn init_cli_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("warn"))
        .with_writer(std::io::stderr)
        .init();
}
