//! `pmr bench load|records`: measurements against a running network.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use eyre::Result;
use pmr_testnet::{bench_records, run_load, LoadKind, LoadReport, LoadSpec, RecordBench};
use serde::Serialize;

use crate::args::{ConnArgs, DEV_RPC};
use crate::Output;
use pmr_client::dev_account::load_dev_account as load_account;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// End-to-end record latency: create (encrypt, upload, split, mint, replicated to every
    /// node) and open (collect shares, reconstruct, fetch, decrypt) of COUNT records.
    Records {
        /// gRPC endpoints of the network, comma separated.
        #[arg(long, value_delimiter = ',', default_value = DEV_RPC)]
        rpc: Vec<String>,
        /// Records to create and open, one after the other.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Record size in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        size: usize,
        /// Key file of a hospital account.
        #[arg(long, default_value = ".pmr-dev/accounts/hospital.json")]
        hospital_key: PathBuf,
        /// The network's genesis file (custodian keys are checked against it).
        #[arg(long, env = "PMR_GENESIS", default_value = ".pmr-dev/genesis.json")]
        genesis: PathBuf,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Open-loop load: offer transactions at a fixed rate from many accounts and report offered
    /// and finalized throughput, commit latency percentiles and rejects by reason.
    Load {
        /// gRPC endpoints, comma separated; transactions are spread over them.
        #[arg(long, value_delimiter = ',', default_value = DEV_RPC)]
        rpc: Vec<String>,
        /// Offered transactions per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// How long to offer load.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// What each transaction does: noop, transfer or mint.
        #[arg(long, default_value = "noop")]
        kind: LoadKind,
        /// Number of sending accounts (permitted by the admin before the run).
        #[arg(long, default_value_t = 200)]
        accounts: usize,
        /// Key file of the network admin.
        #[arg(long, default_value = ".pmr-dev/accounts/admin.json")]
        admin_key: PathBuf,
        /// How long to wait for accepted transactions to commit after the offering stops.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        drain: Duration,
        /// Most submissions in flight.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
        /// Send a transaction again, to the next node, when it has not committed this long
        /// after it was last sent (its node may have crashed holding it), and keep one every
        /// node answered "busy" to send later; `0s` (the default, so the offered load is
        /// exactly `--rate`) never resends. A submission always moves on to the next node when
        /// one cannot be reached. Scenarios (`pmr testnet run`) resend after 3 s.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        resubmit_after: Duration,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// `pmr bench load`.
#[derive(Serialize)]
#[serde(transparent)]
struct Load(LoadReport);

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_text().trim_end())
    }
}

/// `pmr bench records`.
#[derive(Serialize)]
#[serde(transparent)]
struct Records(RecordBench);

impl fmt::Display for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        let (c, o) = (&r.create_ms, &r.open_ms);
        writeln!(
            f,
            "{} records of {} bytes on {} nodes",
            r.records, r.size, r.nodes
        )?;
        writeln!(
            f,
            "create (until minted and held by every node): p50 {:.0} ms, p90 {:.0} ms, p99 \
             {:.0} ms, max {:.0} ms",
            c.p50, c.p90, c.p99, c.max
        )?;
        write!(
            f,
            "open (shares, reconstruct, fetch, decrypt):    p50 {:.0} ms, p90 {:.0} ms, p99 \
             {:.0} ms, max {:.0} ms",
            o.p50, o.p90, o.p99, o.max
        )
    }
}

impl BenchCommand {
    pub(crate) async fn run(self, out: Output) -> Result<()> {
        match self {
            BenchCommand::Load {
                rpc,
                rate,
                duration,
                kind,
                accounts,
                admin_key,
                drain,
                max_in_flight,
                resubmit_after,
                conn,
            } => {
                crate::init_cli_tracing();
                let admin = load_account(&admin_key)?;
                let connect = conn.options(Some(&admin))?;
                let report = run_load(LoadSpec {
                    rpcs: rpc,
                    rate,
                    duration,
                    kind,
                    accounts,
                    admin,
                    connect,
                    drain,
                    max_in_flight,
                    resubmit_after: (!resubmit_after.is_zero()).then_some(resubmit_after),
                })
                .await?;
                out.show(&Load(report))
            }
            BenchCommand::Records {
                rpc,
                count,
                size,
                hospital_key,
                genesis,
                conn,
            } => {
                let hospital = load_account(&hospital_key)?;
                let connect = conn.options(Some(&hospital))?;
                let genesis = pmr_primitives::Genesis::load(&genesis)?;
                let r = bench_records(&rpc, count, size, &hospital, &connect, genesis).await?;
                out.show(&Records(r))
            }
        }
    }
}
