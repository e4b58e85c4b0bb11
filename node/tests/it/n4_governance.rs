//! Governance (#24 §2) on a running network under load: the council (grown from the genesis's
//! one member to 2 of 3 by its own proposals) adds a fifth validator, which syncs and then
//! votes; rotates a validator's key to a node that was running as a full node; removes a
//! validator. Each change takes effect at the height the chain derives; the chain never halts
//! or forks, and every transaction submitted throughout is committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use alloy_primitives::B256;
use pmr_primitives::ValidatorAddress;

use crate::common::*;

/// The council's change delay (`VALIDATOR_CHANGE_DELAY` of the contract).
const DELAY: u64 = pmr_contract::VALIDATOR_CHANGE_DELAY;

fn consensus_key(net: &Net, i: usize) -> String {
    let v: serde_json::Value = serde_json::from_str(&key_listing(&net.cluster.home(i))).unwrap();
    v["consensus_key"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x")
        .to_string()
}

fn address_of(key: &str) -> Vec<u8> {
    let bytes: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
    ValidatorAddress::from_public_key(&bytes).0.to_vec()
}

/// Validator addresses whose precommits node `c` holds in the certificate of height `h`.
async fn signers(c: &pmr_client::PmrClient, h: u64) -> Vec<Vec<u8>> {
    let block = c.block(h).await.expect("block");
    block
        .certificate
        .expect("certificate")
        .signatures
        .into_iter()
        .map(|s| s.validator)
        .collect()
}

/// Runs `pmr gov ARGS` against node 0 as `key`; returns its JSON answer or the failure text.
fn gov(net: &Net, args: &[&str], key: &[&str]) -> Result<serde_json::Value, String> {
    let env = net.cli_env();
    let rpc = net.cluster.rpc(0).to_string();
    let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.push(("PMR_RPC", &rpc));
    let mut all = vec!["gov"];
    all.extend_from_slice(args);
    all.extend_from_slice(key);
    all.extend_from_slice(&["--output", "json"]);
    let (ok, text) = run_pmr(&all, &envs);
    if !ok {
        return Err(text);
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_council_adds_rotates_and_removes_validators_under_load() {
    let mut net = start_net_spare(4, 2, |_, _| {}, |_| {}).await;
    // Node 4 stays down until it is a validator: it must sync before it votes.
    net.cluster.kill(4).unwrap();
    let keys: Vec<String> = (0..6).map(|i| consensus_key(&net, i)).collect();
    let dir = net.dir.path().to_path_buf();
    let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let admin_key = path("accounts/admin.json");
    let admin = ["--key", admin_key.as_str()];
    let (op0_key, op0_pass) = (
        path("node0/keys/custodian.json"),
        path("node0/keys/passphrase"),
    );
    let op0 = [
        "--key",
        op0_key.as_str(),
        "--passphrase-file",
        op0_pass.as_str(),
    ];
    let (op1_key, op1_pass) = (
        path("node1/keys/custodian.json"),
        path("node1/keys/passphrase"),
    );
    let op1 = [
        "--key",
        op1_key.as_str(),
        "--passphrase-file",
        op1_pass.as_str(),
    ];
    let (op2_key, op2_pass) = (
        path("node2/keys/custodian.json"),
        path("node2/keys/passphrase"),
    );

    // Load for the whole test: transactions from the hospital, spread over nodes 0 and 1.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (c0, c1) = (net.client(0).await, net.client(1).await);
        let hospital = net.account("hospital");
        let (chain_id, stop) = (net.chain_id, stop.clone());
        tokio::spawn(async move {
            let mut sent: Vec<B256> = Vec::new();
            let mut nonce = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..4 {
                    let c = if nonce.is_multiple_of(2) { &c0 } else { &c1 };
                    let hash = c
                        .submit(noop_tx(&hospital, chain_id, nonce))
                        .await
                        .expect("a node that is up admits the transaction");
                    sent.push(hash);
                    nonce += 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            sent
        })
    };

    // The genesis council is the admin alone (threshold 1): it adds two operators and raises
    // the threshold to 2, each change made at once.
    let (a0, a1) = (
        net.operator(0).address().to_string(),
        net.operator(1).address().to_string(),
    );
    for args in [
        vec!["propose", "add-member", a0.as_str()],
        vec!["propose", "add-member", a1.as_str()],
        vec!["propose", "set-threshold", "2"],
    ] {
        let r = gov(&net, &args, &admin).unwrap();
        assert_eq!(r["executed"], true, "{r}");
    }
    let council = gov(&net, &["council"], &[]).unwrap();
    assert_eq!(council["threshold"], 2, "{council}");
    assert_eq!(council["members"].as_array().unwrap().len(), 3, "{council}");

    // Who may not govern: a validator's operator that is no council member.
    let err = gov(
        &net,
        &["propose", "add-validator", "--consensus-key", &keys[4]],
        &[
            "--key",
            op2_key.as_str(),
            "--passphrase-file",
            op2_pass.as_str(),
        ],
    )
    .expect_err("an operator outside the council proposes");
    assert!(err.contains("NotCouncilMember"), "{err}");

    // 1. Add node 4. One approval changes nothing; the second makes the change.
    let r = gov(
        &net,
        &["propose", "add-validator", "--consensus-key", &keys[4]],
        &admin,
    )
    .unwrap();
    assert_eq!(r["executed"], false, "{r}");
    let id = r["proposal"].as_u64().unwrap().to_string();
    let err = gov(&net, &["approve", &id], &admin).expect_err("a second approval by one member");
    assert!(err.contains("AlreadyApproved"), "{err}");
    let open = gov(&net, &["proposals", "--open"], &[]).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(
        gov(&net, &["validators"], &[])
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "no change before the threshold"
    );
    let r = gov(&net, &["approve", &id], &op0).unwrap();
    assert_eq!(r["executed"], true, "{r}");
    let added_at = r["height"].as_u64().unwrap() + DELAY;
    let history = gov(&net, &["validators"], &[]).unwrap();
    assert_eq!(history[1]["from_height"], added_at, "{history}");
    assert_eq!(history[1]["validators"].as_array().unwrap().len(), 5);

    // Node 4 starts, syncs, and signs blocks from the height its membership takes effect.
    net.cluster.start(4).unwrap();
    let c0 = net.client(0).await;
    net.wait_height(4, added_at + 2).await;
    let v4 = address_of(&keys[4]);
    for h in 1..added_at {
        assert!(
            !signers(&c0, h).await.contains(&v4),
            "node 4 signed {h}, before it was a validator"
        );
    }
    // Once caught up it votes: its precommits are in certificates of the blocks that follow.
    let caught_up = net.height(4).await;
    net.wait_height(0, caught_up + 20).await;
    let mut signed = 0;
    for h in caught_up..caught_up + 20 {
        signed += signers(&c0, h).await.contains(&v4) as usize;
    }
    assert!(
        signed > 0,
        "node 4 signed none of the 20 blocks after it caught up at {caught_up} (a validator \
         from {added_at})\n--- node4 log ---\n{}",
        net.cluster.log_tail(4, 30)
    );
    let status = c0.status().await.unwrap();
    assert_eq!(status.validators.len(), 5);

    // 2. Rotate node 2's key to node 5's (running all along as a full node): from the
    // effective height node 5 signs in node 2's place, and node 2 can go.
    let r = gov(
        &net,
        &[
            "propose",
            "rotate-key",
            "--old",
            &keys[2],
            "--new",
            &keys[5],
        ],
        &op1,
    )
    .unwrap();
    let id = r["proposal"].as_u64().unwrap().to_string();
    let r = gov(&net, &["approve", &id], &admin).unwrap();
    assert_eq!(r["executed"], true, "{r}");
    let rotated_at = r["height"].as_u64().unwrap() + DELAY;
    net.wait_height(0, rotated_at + 12).await;
    let (v2, v5) = (address_of(&keys[2]), address_of(&keys[5]));
    for h in 1..rotated_at {
        assert!(
            !signers(&c0, h).await.contains(&v5),
            "node 5 signed {h} before the rotation"
        );
    }
    let mut signed = 0;
    for h in rotated_at..rotated_at + 12 {
        let s = signers(&c0, h).await;
        assert!(!s.contains(&v2), "the old key signed {h}");
        signed += s.contains(&v5) as usize;
    }
    assert!(signed > 0, "the new key signed none of 12 blocks");
    net.cluster.kill(2).unwrap();

    // 3. Remove node 3; then it goes too, and the four that remain keep deciding.
    let r = gov(
        &net,
        &["propose", "remove-validator", "--consensus-key", &keys[3]],
        &op0,
    )
    .unwrap();
    let id = r["proposal"].as_u64().unwrap().to_string();
    let r = gov(&net, &["approve", &id], &op1).unwrap();
    assert_eq!(r["executed"], true, "{r}");
    let removed_at = r["height"].as_u64().unwrap() + DELAY;
    net.wait_height(0, removed_at + 2).await;
    net.cluster.kill(3).unwrap();
    let v3 = address_of(&keys[3]);
    let tip = net.wait_height(0, removed_at + 12).await;
    for h in removed_at..=tip {
        assert!(
            !signers(&c0, h).await.contains(&v3),
            "a removed validator signed {h}"
        );
    }
    assert_eq!(c0.status().await.unwrap().validators.len(), 4);

    // No transaction lost: every one submitted is committed, on the same chain everywhere.
    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    assert!(sent.len() > 100, "only {} transactions of load", sent.len());
    let tip = net.height(0).await;
    net.wait_height(0, tip + 3).await;
    let mut last = 0;
    for hash in &sent {
        let t = c0.transaction(*hash).await.expect("transaction");
        let height = match t.height {
            Some(h) => h,
            None => c0.wait_committed(*hash, T).await.expect("committed"),
        };
        last = last.max(height);
    }
    for i in [1, 4, 5] {
        net.wait_height(i, last).await;
    }
    net.assert_same_chain(&[0, 1, 4, 5], last).await;

    // No halt: blocks kept coming through every change (empty blocks every 200 ms).
    let mut longest = 0;
    let mut previous = c0.block(1).await.unwrap().header.unwrap().timestamp_ms;
    for h in 2..=last {
        let t = c0.block(h).await.unwrap().header.unwrap().timestamp_ms;
        longest = longest.max(t - previous);
        previous = t;
    }
    assert!(longest < 10_000, "the chain stalled for {longest} ms");

    // The history is proven to whoever joins: each change by the receipt of the transaction
    // that made it, in a block certified by the set of its height. A stranger gets nothing.
    let err = net
        .client_without_session(0)
        .await
        .validator_set_changes()
        .await
        .expect_err("a stranger");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == tonic::Code::Unauthenticated),
        "{err}"
    );
    let genesis = pmr_primitives::Genesis::load(&net.dir.path().join("genesis.json")).unwrap();
    let entries: Vec<_> = c0
        .validator_set_changes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| pmr_client::records::proof_entry(r).unwrap())
        .collect();
    assert_eq!(entries.len(), 3, "add, rotate, remove");
    // Paged by the caller's position.
    let mut ledger = pmr_proto::v1::ledger_service_client::LedgerServiceClient::new(c0.channel());
    for (from, expect) in [(1, 2), (3, 0), (9, 0)] {
        let page = ledger
            .get_validator_set_changes(pmr_proto::v1::GetValidatorSetChangesRequest { from })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((page.changes.len(), page.total), (expect, 3), "from {from}");
    }
    let proven = pmr_consensus::ValidatorSchedule::from_entries(&genesis, &entries).unwrap();
    assert_eq!(proven.at(last).validators().len(), 4);
    assert_eq!(proven.at(added_at - 1).validators().len(), 4);
    assert_eq!(proven.at(added_at).validators().len(), 5);
    // Changes out of order, or an altered one, do not verify. (Leaving one out can go unseen
    // here when a later change's block carries no signature of the left-out set's newcomers:
    // each change names the whole new set. State sync therefore also compares the proven
    // history with the one in the snapshot's state.)
    let mut reordered = entries.clone();
    reordered.swap(0, 1);
    assert!(pmr_consensus::ValidatorSchedule::from_entries(&genesis, &reordered).is_err());
    let mut altered = entries.clone();
    let flip = if altered[1].receipt.as_bytes()[10] == b'0' {
        "1"
    } else {
        "0"
    };
    altered[1].receipt.replace_range(10..11, flip);
    assert!(pmr_consensus::ValidatorSchedule::from_entries(&genesis, &altered).is_err());

    // An audit proof of a transaction after the changes verifies offline with the changes it
    // carries, and not without them (its block was signed by a set the genesis does not name).
    let late = *sent.last().unwrap();
    let mut proof = pmr_primitives::AuditProof {
        version: pmr_primitives::AUDIT_PROOF_VERSION,
        chain_id: genesis.chain_id,
        genesis_hash: genesis.hash(),
        token_id: Default::default(),
        entries: vec![pmr_client::records::proof_entry(c0.receipt(late).await.unwrap()).unwrap()],
        validator_changes: entries.clone(),
    };
    pmr_consensus::verify_audit_proof(&proof, &genesis, Default::default()).unwrap();
    proof.validator_changes.clear();
    let err = pmr_consensus::verify_audit_proof(&proof, &genesis, Default::default())
        .expect_err("checked against the genesis set alone");
    assert!(err.to_string().contains("entry 0"), "{err}");

    // Node 3 (removed) loses its disk and joins again by state sync: the block it starts from
    // is signed by validators the genesis does not have all of.
    std::fs::remove_dir_all(net.cluster.home(3).join("data")).unwrap();
    let home3 = net.cluster.home(3);
    let (synced, text) = run_pmr(
        &[
            "state",
            "sync",
            "--home",
            home3.to_str().unwrap(),
            "--from",
            net.cluster.rpc(0),
            "--output",
            "json",
        ],
        &[],
    );
    assert!(synced, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let base = report["height"].as_u64().unwrap();
    assert!(base > removed_at, "{report}");
    net.cluster.start(3).unwrap();
    let tip = net.height(0).await;
    net.wait_height(3, tip + 2).await;
    let c3 = net.client(3).await;
    assert_eq!(
        c3.block(tip + 1).await.unwrap().hash,
        c0.block(tip + 1).await.unwrap().hash
    );
    eprintln!(
        "governance under load: {} transactions, {last} blocks, longest gap between blocks {longest} ms",
        sent.len()
    );
}
