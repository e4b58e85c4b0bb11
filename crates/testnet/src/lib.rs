//! A local testnet as real processes: the manifest `pmr testnet init` writes, and a harness that
//! starts each node as its own `pmr start` process, kills, pauses and restarts them, and waits
//! (always with a deadline) for the chain to reach a state.
//!
//! Every process the harness starts is killed when the [`Cluster`] is dropped, so a failing
//! test leaves nothing running.

mod cluster;
mod links;
pub use links::Wan;
mod load;
mod manifest;
pub mod netns;
pub mod ports;
mod records;
mod scenario;

pub use cluster::{Cluster, HarnessError};
pub use links::Links;
pub use load::{run_load, Latency, LoadKind, LoadReport, LoadSpec};
pub use manifest::{Manifest, NodeEntry, MANIFEST_FILE};
pub use ports::{testnet_ports, Ports};
pub use records::{bench_records, RecordBench};
pub use scenario::{run_scenario, Action, Fault, Invariant, Scenario, ScenarioReport};
