//! Scenarios: a testnet of real `pmr` processes, load, faults at given times, then invariants.
//!
//! - [`spec`]: the manifest (TOML) and its checks;
//! - [`faults`]: what each fault does to the testnet, and undoing it;
//! - [`run`]: starting the testnet, the load and the faults, sampling the network;
//! - [`invariants`]: what the samples and chains must show, and the report.
//!
//!
//! A scenario manifest (TOML) names the validators, the run's duration, optional load and the
//! faults, each at a time from the start:
//!
//! ```toml
//! name = "n4-kill-restart"
//! validators = 4
//! duration = "30s"
//! [load]
//! kind = "noop"      # noop | transfer | mint
//! rate = 200         # transactions per second, open loop
//! [[fault]]
//! at = "5s"
//! action = "kill"    # kill | stop | pause | resume | start | wipe | truncate
//! nodes = [1]        #   | partition | heal | skew | twin | flood
//! ```
//!
//! `wipe` is disk loss: SIGKILL, delete the node's data directory, restart it (it rejoins by
//! sync). `truncate` is a torn write: SIGKILL, cut the tail off the consensus WAL and RocksDB's
//! newest log, restart. `partition` cuts the listed nodes off from the rest (every node reaches
//! its peers through a proxy the harness controls); `heal` restores every link. `skew` restarts
//! the nodes with their clock shifted by `by` (e.g. `"+30s"`, through libfaketime; `"0s"` sets
//! it right). `twin` starts a second process with a validator's keys (a double signer).
//! `flood` kills a validator and puts in its place, under its p2p identity, a member that
//! publishes proposal parts nobody asked for (8 MiB/s over 48 streams, until the end).
//! At the end every fault still in place is healed, and the runner
//! waits for all of them to reach the height the network had then (the recovery time). Then it
//! checks, and names in its report:
//! - `no-fork`: every node has the same block hash at every height they all have;
//! - `no-loss`: every transaction the load generator saw committed is in every node's chain;
//! - `same-state`: every node reports the same state root at every common height, gives the
//!   same answers to record queries (owners, versions, access) at the last one, and, once
//!   stopped, holds on disk the state its header commits to (`pmr state verify`: every
//!   account, storage page and code read, their lattice hash recomputed);
//! - `progress`: the chain grew in every stretch of at least 6 s (20 s with a double signer)
//!   with at most f nodes down (starting 15 s after any moment with more than f down), and at
//!   least one such stretch was judged;
//! - `recovered`: every node reached a height committed after the heal within
//!   `recovery_timeout` (a halted chain must resume).
//!
//! and, when the scenario has such faults:
//! - `halted`: during a partition, no side without more than 2/3 of the validators committed
//!   a block (after a short grace for a block already decided at the cut): with a quorum on
//!   neither side no node did, otherwise the cut-off nodes did not;
//! - `evidence`: every double-signing validator's equivocation was recorded by another node;
//! - `clock`: block timestamps only grow, and none ran ahead of the harness's clock by more
//!   than the allowed drift;
//! - `flood-contained`: the flooder published, every honest node counted parts it refused,
//!   and none grew its resident memory by more than a bound while it ran.

mod faults;
mod flood;
mod invariants;
mod run;
mod spec;

pub use invariants::{Invariant, ScenarioReport};
pub use run::run_scenario;
pub use spec::{Action, Fault, Scenario};
