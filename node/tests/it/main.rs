//! The node's integration tests, in one binary (one link of RocksDB, revm and libp2p): the
//! multi-node tests start real `pmr` processes on 127.0.0.1 (`pmr testnet init` + the
//! `pmr-testnet` harness); `config`, `init` and `keys` check the files a node is made of.

// A helper's panic is its test's failure.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod common;

mod config;
mod genesis;
mod init;
mod keys;
mod mitm;
mod n1_access;
mod n4;
mod n4_api;
mod n4_backup;
mod n4_bogus_cids;
mod n4_content;
mod n4_crash;
mod n4_disk;
mod n4_divergence;
mod n4_faults;
mod n4_governance;
mod n4_hostile;
mod n4_lifecycle;
mod n4_privacy;
mod n4_records;
mod n4_shares;
mod n4_state_sync;
mod ops;
mod scenarios;
mod unknown_peer;
