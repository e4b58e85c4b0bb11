//! Running a scenario: a fresh testnet behind link proxies, the load, the faults on schedule,
//! samples of the network every 250 ms, then the chains of every node for the invariants.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy_primitives::{keccak256, B256};
use futures::StreamExt;
use tokio::time::{sleep, Instant};

use super::faults::FaultState;
use super::flood::{contained, scrape, FloodWatch};
use super::invariants::{
    clock_sane, evidence_recorded, halted, observed_heights, stalled_stretches, ChainEntry,
    Invariant, Sample, ScenarioReport,
};
use super::spec::{Action, Scenario};
use crate::cluster::{Cluster, HarnessError};
use crate::links::Links;
use crate::load::{run_load, LoadSpec};
use crate::netns::Namespaces;

fn harness(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Scenario(e.to_string())
}

/// Reads the admin account a `pmr testnet init` wrote.
/// Runs `scenario` with the `pmr` binary `bin` in the (empty or absent) directory `dir`.
pub async fn run_scenario(
    scenario: &Scenario,
    bin: &Path,
    dir: &Path,
) -> Result<ScenarioReport, HarnessError> {
    scenario.check().map_err(|reason| HarnessError::Manifest {
        path: PathBuf::from(&scenario.name),
        reason,
    })?;
    if !scenario.namespaces {
        return run_in(scenario, bin, dir, None).await;
    }
    let namespaces = Namespaces::create(scenario.validators)?;
    let (scenario, bin, dir) = (scenario.clone(), bin.to_path_buf(), dir.to_path_buf());
    // The harness runs in the hub namespace: a thread of its own enters it, then builds a
    // runtime whose workers (and every socket and process they make) start there too. The
    // namespaces outlive the run: the cluster (which kills the nodes) is dropped first.
    let thread = std::thread::spawn(move || {
        namespaces.enter_hub()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(harness)?;
        let report = runtime.block_on(run_in(&scenario, &bin, &dir, Some(&namespaces)));
        drop(runtime);
        drop(namespaces);
        report
    });
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(harness)?
        .map_err(|_| harness("the scenario's thread panicked"))?
}

async fn run_in(
    scenario: &Scenario,
    bin: &Path,
    dir: &Path,
    namespaces: Option<&Namespaces>,
) -> Result<ScenarioReport, HarnessError> {
    let mut init = Command::new(bin);
    init.args(["testnet", "init", "--validators"])
        .arg(scenario.validators.to_string())
        .args(["--empty-block-interval", "500ms", "--home"])
        .arg(dir);
    if let Some(ns) = namespaces {
        let hosts: Vec<String> = ns.node_ips().iter().map(|ip| ip.to_string()).collect();
        init.arg("--hosts").arg(hosts.join(","));
    }
    let out = init
        .output()
        .map_err(|e| harness(format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(harness(format!(
            "pmr testnet init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut cluster = Cluster::open(dir, bin)?;
    if let Some(ns) = namespaces {
        cluster.use_namespaces(ns)?;
    }
    let mut state = FaultState::default();
    if scenario.has(Action::Partition) || scenario.wan.is_some() {
        let homes: Vec<PathBuf> = (0..cluster.len()).map(|i| cluster.home(i)).collect();
        let homes: Vec<&Path> = homes.iter().map(|h| h.as_path()).collect();
        let names: Vec<String> = cluster
            .manifest()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let bind = match namespaces {
            Some(_) => IpAddr::V4(Namespaces::HUB_IP),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        state.links = Some(Links::install(&homes, &names, scenario.wan, bind).await?);
    }
    for f in scenario.faults.iter().filter(|f| f.action == Action::Twin) {
        for &i in &f.nodes {
            cluster.prepare_twin(i)?;
        }
    }
    cluster.start_all()?;
    let boot = Duration::from_secs(60);
    for i in 0..cluster.len() {
        cluster.wait_height(i, 2, boot).await?;
    }
    let isolated = match namespaces {
        Some(_) => {
            let pids: Vec<Option<u32>> = (0..cluster.len()).map(|i| cluster.pid(i)).collect();
            Some(crate::netns::isolated(&pids))
        }
        None => None,
    };
    let observer = scenario.observer().unwrap_or(0);
    let n = cluster.len();

    // Load, in the background, watched on the observer.
    let load = match &scenario.load {
        Some(l) => {
            let mut rpcs = vec![cluster.rpc(observer).to_string()];
            rpcs.extend(
                (0..n)
                    .filter(|i| *i != observer)
                    .map(|i| cluster.rpc(i).to_string()),
            );
            let spec = LoadSpec {
                rpcs,
                rate: l.rate,
                duration: scenario.duration,
                kind: l.kind.parse().map_err(harness)?,
                accounts: l.accounts,
                admin: cluster.admin()?,
                connect: cluster.connect_options()?,
                drain: Duration::from_secs(30),
                max_in_flight: 4096,
                resubmit_after: Some(RESUBMIT_AFTER),
            };
            Some(tokio::spawn(run_load(spec)))
        }
        None => None,
    };

    // Faults on schedule, sampling the network's height meanwhile.
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut faults = scenario.faults.clone();
    faults.sort_by_key(|f| f.at);
    let mut next = 0;
    let clients = {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(cluster.client(i, boot).await?);
        }
        v
    };
    let mut twin_chains: Vec<(usize, Result<Vec<B256>, String>)> = Vec::new();
    let mut watch = FloodWatch::default();
    while start.elapsed() < scenario.duration {
        while next < faults.len() && faults[next].at <= start.elapsed() {
            let f = &faults[next];
            state.apply(&mut cluster, f).await?;
            tracing::info!(target: "pmr::scenario", at = ?f.at, action = ?f.action, nodes = ?f.nodes, "fault");
            next += 1;
        }
        // The observer's view, or (while it is down: a rolling restart faults every node in
        // turn) the first other node that answers.
        let mut status = None;
        for i in std::iter::once(observer).chain((0..n).filter(|i| *i != observer)) {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(500), clients[i].status()).await
            {
                status = Some(s);
                break;
            }
        }
        if let Some(s) = &status {
            state.observe_tip(s.height);
        }
        if let Some(f) = &state.flooder {
            let honest: Vec<usize> = (0..n).filter(|i| *i != f.node).collect();
            let gauges = futures::future::join_all(honest.iter().map(|&i| {
                scrape(
                    &cluster.manifest().nodes[i].metrics,
                    "pmr_proposal_stream_bytes",
                )
            }))
            .await;
            for (&i, g) in honest.iter().zip(gauges) {
                watch.record(i, cluster.rss(i));
                watch.record_buffered(i, g);
            }
        }
        // During a partition every node's height is watched (with a short deadline each: a
        // cut-off node still answers its own gRPC).
        let all = if !state.cut_off.is_empty() {
            let asks = clients
                .iter()
                .map(|c| tokio::time::timeout(Duration::from_millis(500), c.status()));
            Some(
                futures::future::join_all(asks)
                    .await
                    .into_iter()
                    .map(|r| r.ok().and_then(|s| s.ok()).map(|s| s.height))
                    .collect(),
            )
        } else {
            None
        };
        samples.push(Sample {
            at: start.elapsed(),
            wall_ms: now_ms(),
            height: status.as_ref().map(|s| s.height),
            tip_timestamp_ms: status.as_ref().map(|s| s.latest_timestamp_ms),
            faulty: state.faulty(),
            no_quorum: state.no_quorum,
            cut_off: state.cut_off.iter().copied().collect(),
            all,
        });
        sleep(Duration::from_millis(250)).await;
    }
    // The double signers' own chains, before they are stopped.
    let opts = cluster.connect_options()?;
    for (of, rpc, _) in cluster.twins() {
        twin_chains.push((of, twin_chain(&rpc, &opts).await));
    }

    // What the flood did to the honest nodes, read before their flooder is stopped.
    let flood_judged = match &state.flooder {
        Some(f) => {
            let honest: Vec<usize> = (0..n).filter(|i| *i != f.node).collect();
            let mut refused = Vec::new();
            for &i in &honest {
                refused.push(
                    scrape(
                        &cluster.manifest().nodes[i].metrics,
                        "pmr_proposal_parts_refused_total",
                    )
                    .await,
                );
            }
            Some((honest, refused))
        }
        None => None,
    };

    // Heal everything and time the catch-up.
    state.heal_all(&mut cluster).await?;
    let heal = Instant::now();
    // A block committed after the heal: a halted chain must resume, not merely be caught up with.
    let target = clients[observer].status().await.map_err(harness)?.height + 1;
    let mut recovered = true;
    let deadline = heal + scenario.recovery_timeout;
    for i in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || cluster.wait_height(i, target, left).await.is_err() {
            recovered = false;
        }
    }
    let recovery_ms = heal.elapsed().as_millis() as u64;

    let load = match load {
        Some(t) => Some(t.await.map_err(harness)??),
        None => None,
    };

    // Invariants, over the chain up to the observer's height once the load has drained (every
    // transaction it saw committed is at or below it); every node must reach it first.
    let mut invariants = Vec::new();
    let verify_to = clients[observer].status().await.map_err(harness)?.height;
    let mut chains: Vec<Vec<ChainEntry>> = Vec::new();
    let mut caught_up = Vec::with_capacity(n);
    for i in 0..n {
        cluster
            .wait_height(i, verify_to, scenario.recovery_timeout)
            .await?;
        let c = cluster.client(i, boot).await?;
        chains.push(fetch_chain(&c, verify_to).await?);
        caught_up.push(c);
    }
    let common = chains.iter().map(|c| c.len()).min().unwrap_or(0);
    let final_height = verify_to;
    let mut forks = 0u64;
    let mut state_diffs = 0u64;
    for h in 0..common {
        if chains.iter().any(|c| c[h].hash != chains[0][h].hash) {
            forks += 1;
        }
        if chains
            .iter()
            .any(|c| c[h].state_root != chains[0][h].state_root)
        {
            state_diffs += 1;
        }
    }
    // A double signer's chain is compared too; one that cannot be read, or committed
    // nothing the others have, was not checked: that fails the invariant, it is not left out.
    let mut twin_heights = 0usize;
    let mut unjudged_twins = Vec::new();
    for (of, twin) in &twin_chains {
        match twin {
            Ok(twin) => {
                let judged = twin.len().min(common);
                if judged == 0 {
                    unjudged_twins.push(format!("node {of}'s double signer committed no block"));
                }
                for (h, hash) in twin.iter().enumerate().take(common) {
                    twin_heights += 1;
                    if *hash != chains[0][h].hash {
                        forks += 1;
                    }
                }
            }
            Err(e) => unjudged_twins.push(format!("node {of}'s double signer: {e}")),
        }
    }
    invariants.push(Invariant {
        name: "no-fork".into(),
        passed: forks == 0 && unjudged_twins.is_empty() && common > 0,
        detail: format!(
            "{n} nodes agree on every block hash of heights 1..={common}{}: {forks} heights differ{}",
            if twin_chains.is_empty() {
                String::new()
            } else {
                format!(" (and the double signers on the {twin_heights} they committed)")
            },
            if unjudged_twins.is_empty() {
                String::new()
            } else {
                format!("; not judged: {unjudged_twins:?}")
            }
        ),
    });
    // Beyond the commitment: the records as each node's EVM answers for them at that height.
    // A node that cannot answer fails the invariant rather than the run.
    let mut answers = Vec::with_capacity(n);
    for (i, c) in caught_up.iter().enumerate() {
        answers.push(
            record_queries(c, common as u64)
                .await
                .map_err(|e| format!("node {i}: {e}")),
        );
    }
    let unanswered: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    let first = answers.iter().find_map(|a| a.as_ref().ok());
    let query_diffs = answers.iter().filter(|a| a.as_ref().ok() != first).count();
    let queries = first.map_or(0, |q| q.len());
    let tokens = queries.saturating_sub(1) / 4;
    // Under mint load the queries must have covered minted records, not only the count.
    let minting = scenario.load.as_ref().is_some_and(|l| l.kind == "mint");
    // Completed once the nodes are stopped and their disks read (below).
    let same_state_at = invariants.len();
    let same_state_rpc = state_diffs == 0
        && query_diffs == 0
        && unanswered.is_empty()
        && common > 0
        && (!minting || tokens > 0);
    let same_state_detail = format!(
        "state roots of heights 1..={common}: {state_diffs} differ; record queries at height \
         {common} (totalMinted, then ownerOf, versionCount and hasAccess of {tokens} tokens): \
         {query_diffs} node(s) answer differently{}{}",
        if unanswered.is_empty() {
            String::new()
        } else {
            format!(" ({unanswered:?})")
        },
        if minting && tokens == 0 {
            "; mint load but no record to query"
        } else {
            ""
        }
    );
    // Every load transaction is valid: no node may refuse one (busy or unreachable nodes only
    // delay it: the load sends it to the next), and each must commit before the drain ends.
    let (offered, uncommitted, refused) = load.as_ref().map_or((0, 0, 0), |r| {
        (r.offered, r.uncommitted, r.rejected.values().sum::<u64>())
    });
    let (acknowledged, lost) = match &load {
        Some(r) => {
            let mut lost = 0u64;
            for hash in &r.committed {
                if chains
                    .iter()
                    .any(|c| !c.iter().any(|e| e.txs.contains(hash)))
                {
                    lost += 1;
                }
            }
            (r.committed.len() as u64, lost)
        }
        None => (0, 0),
    };
    // A saturating load offers more than the network can commit by design: what is still
    // pending when the drain ends is reported, not a loss; all the rest is judged as always.
    let saturate = scenario.load.as_ref().is_some_and(|l| l.saturate);
    invariants.push(Invariant {
        name: "no-loss".into(),
        // With load, seeing nothing committed means the check saw nothing: a failure.
        passed: lost == 0
            && (uncommitted == 0 || saturate)
            && refused == 0
            && (load.is_none() || acknowledged > 0),
        detail: format!(
            "{acknowledged} transactions seen committed; {lost} missing from some node; of \
             {offered} offered, {refused} refused and {uncommitted} neither refused nor committed{}",
            if saturate {
                " (a saturating load: those still pending at the end are not judged)"
            } else {
                ""
            }
        ),
    });
    let f = scenario.max_faulty();
    let heights = observed_heights(&samples);
    // An equivocating validator may leave honest nodes locked on different values (each counts
    // whichever of its two votes arrived first), so Tendermint legitimately needs several
    // rounds, each longer than the last, before a height decides (4 rounds, 8.5 s, seen in
    // n4-double-sign); crash faults cost at most a round or two.
    let window = Duration::from_secs(if scenario.has(Action::Twin) { 20 } else { 6 });
    let (stalls, judged) = stalled_stretches(&heights, f, window);
    invariants.push(Invariant {
        name: "progress".into(),
        // No stretch judged (a run too short, or faulty throughout) shows nothing: a failure.
        passed: stalls.is_empty() && judged > 0,
        detail: if !stalls.is_empty() {
            format!("no new block while at most {f} node(s) were faulty during {stalls:?}")
        } else if judged == 0 {
            format!("no {window:?} stretch with at most {f} node(s) faulty (15 s after any moment with more) was observed: lengthen the run")
        } else {
            format!("the chain grew in each of {judged} {window:?} stretches judged with at most {f} node(s) faulty (15 s after any moment with more)")
        },
    });
    invariants.push(Invariant {
        name: "recovered".into(),
        passed: recovered,
        detail: format!(
            "every node reached height {target}, one past the network's at the heal, within {:?} \
             of it",
            scenario.recovery_timeout
        ),
    });
    if scenario.has(Action::Partition) {
        invariants.push(halted(&samples));
    }
    if scenario.has(Action::Twin) {
        invariants.push(evidence_recorded(scenario, cluster.dir(), &clients).await);
    }
    if scenario.has(Action::Skew) {
        invariants.push(clock_sane(&samples, &chains[observer]));
    }
    if scenario.has(Action::Flood) {
        let (honest, refused) = flood_judged.unwrap_or_default();
        invariants.push(contained(state.flood_report, &honest, &refused, &watch));
    }
    invariants.extend(isolated);
    cluster.kill_all();
    // The state each node holds, not only the root it reports: every stopped node's state is
    // recomputed from its disk (`pmr state verify`: every account, with the load accounts'
    // nonces, every storage page and code) and must give its own header's root, which must be
    // the root the others signed at that height.
    let (disk_ok, disk_detail) = stored_states_agree(&cluster, &chains[0]);
    invariants.insert(
        same_state_at,
        Invariant {
            name: "same-state".into(),
            passed: same_state_rpc && disk_ok,
            detail: format!("{same_state_detail}; {disk_detail}"),
        },
    );
    Ok(ScenarioReport {
        name: scenario.name.clone(),
        validators: n,
        faults: scenario.faults.clone(),
        acknowledged,
        lost,
        forks,
        recovery_ms,
        final_height,
        invariants,
        load,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `pmr state verify` on every (stopped) node: whether each node's stored state gives
/// its latest header's root, that root is the one `reference` (a node's chain from height 1)
/// has at that height, and entries were read; with what was judged.
fn stored_states_agree(cluster: &Cluster, reference: &[ChainEntry]) -> (bool, String) {
    let mut judged_nodes = 0;
    let mut entries = 0u64;
    let mut problems = Vec::new();
    for i in 0..cluster.len() {
        let (passed, v) = match cluster.verify_state(i) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("node {i}: {e}"));
                continue;
            }
        };
        let count = |k: &str| v[k].as_u64().unwrap_or(0);
        let read = count("accounts") + count("pages") + count("codes");
        let height = count("height");
        let root = v["computed_root"].as_str().unwrap_or_default().to_string();
        let signed = height
            .checked_sub(1)
            .and_then(|h| reference.get(h as usize))
            .map(|e| e.state_root.to_string());
        if !passed || read == 0 {
            problems.push(format!(
                "node {i}: its disk does not give its header's root ({v})"
            ));
        } else if signed.as_ref().is_some_and(|s| *s != root) {
            problems.push(format!(
                "node {i}: root {root} at height {height}, the others signed {signed:?}"
            ));
        } else {
            judged_nodes += 1;
            entries += read;
        }
    }
    let ok = problems.is_empty() && judged_nodes == cluster.len() && entries > 0;
    (
        ok,
        format!(
            "stored state recomputed from disk on {judged_nodes} of {} nodes ({entries} entries \
             read), each giving its header's root{}",
            cluster.len(),
            if problems.is_empty() {
                String::new()
            } else {
                format!(": {problems:?}")
            }
        ),
    )
}

async fn fetch_chain(c: &pmr_client::PmrClient, to: u64) -> Result<Vec<ChainEntry>, HarnessError> {
    let blocks: Vec<_> = futures::stream::iter(1..=to)
        .map(|h| c.block(h))
        .buffered(16)
        .collect()
        .await;
    let mut chain = Vec::new();
    for b in blocks {
        let b = b.map_err(harness)?;
        let (state_root, timestamp_ms) = b
            .header
            .as_ref()
            .map(|h| (B256::from_slice(&h.state_root), h.timestamp_ms))
            .unwrap_or_default();
        chain.push(ChainEntry {
            hash: B256::from_slice(&b.hash),
            state_root,
            timestamp_ms,
            txs: b.transactions.iter().map(keccak256).collect(),
        });
    }
    Ok(chain)
}

/// The most tokens whose owner, versions and access [`record_queries`] asks about.
const QUERIED_TOKENS: u64 = 200;

/// The load sends a transaction again, to the next node, when it has not committed this long
/// after it was last sent: a node killed, paused or cut off may hold it in its mempool.
const RESUBMIT_AFTER: Duration = Duration::from_secs(3);

/// Answers of the PMR contract at `height` (read-only calls, each node's own EVM): the number of
/// records, then for up to [`QUERIED_TOKENS`] token ids spread over them, the owner, the
/// version count, and whether a fixed probe address (granted nothing) and the token's owner
/// have access. Raw outputs, so any difference in what a node returns counts.
async fn record_queries(
    c: &pmr_client::PmrClient,
    height: u64,
) -> Result<Vec<(bool, Vec<u8>)>, HarnessError> {
    use alloy_primitives::{Address, U256};
    use alloy_sol_types::SolCall;
    use pmr_client::{PMR, PMR_ADDRESS};
    let call = |data: Vec<u8>| c.call(None, PMR_ADDRESS, data.into(), Some(height));
    let total = call(PMR::totalMintedCall {}.abi_encode())
        .await
        .map_err(harness)?;
    let minted = PMR::totalMintedCall::abi_decode_returns(&total.output)
        .map(|t| t.saturating_to::<u64>())
        .unwrap_or(0);
    let mut out = vec![(total.success, total.output.to_vec())];
    let step = minted.div_ceil(QUERIED_TOKENS).max(1);
    let probe = Address::repeat_byte(0x5a);
    for id in (1..=minted).step_by(step as usize) {
        let token = U256::from(id);
        let owner = call(PMR::ownerOfCall { tokenId: token }.abi_encode())
            .await
            .map_err(harness)?;
        let holder = PMR::ownerOfCall::abi_decode_returns(&owner.output).unwrap_or(probe);
        out.push((owner.success, owner.output.to_vec()));
        for data in [
            PMR::versionCountCall { tokenId: token }.abi_encode(),
            PMR::hasAccessCall {
                tokenId: token,
                grantee: probe,
            }
            .abi_encode(),
            PMR::hasAccessCall {
                tokenId: token,
                grantee: holder,
            }
            .abi_encode(),
        ] {
            let r = call(data).await.map_err(harness)?;
            out.push((r.success, r.output.to_vec()));
        }
    }
    Ok(out)
}

/// The block hashes a double signer committed (empty if it cannot be reached).
/// The block hashes a double signer committed, from height 1; why they could not be read.
async fn twin_chain(rpc: &str, opts: &pmr_client::ConnectOptions) -> Result<Vec<B256>, String> {
    let c = tokio::time::timeout(
        Duration::from_secs(5),
        pmr_client::PmrClient::connect(rpc.to_string(), opts),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    let status = tokio::time::timeout(Duration::from_secs(5), c.status())
        .await
        .map_err(|_| "status timed out".to_string())?
        .map_err(|e| format!("status: {e}"))?;
    let chain = fetch_chain(&c, status.height)
        .await
        .map_err(|e| format!("blocks: {e}"))?;
    Ok(chain.into_iter().map(|e| e.hash).collect())
}
