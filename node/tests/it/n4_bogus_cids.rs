//! Replication is not held up by blobs nobody has: 200 versions appended with CIDs that name
//! nothing (appends cost no gas), then a real record minted; every node holds the real record
//! within 30 s, and the bogus CIDs wait in the retry lane.

use std::time::{Duration, Instant};

use alloy_primitives::{B256, U256};
use alloy_sol_types::SolCall;
use pmr_client::{Wallet, PMR, PMR_ADDRESS};
use rand::RngCore;

use crate::common::*;

fn random_cid(codec: u8) -> PMR::Cid {
    let mut d = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut d);
    PMR::Cid {
        codec,
        digest: B256::from(d),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_bogus_cids_do_not_hold_up_a_real_record() {
    let net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let id = net.chain_id;
    let hospital = net.account("hospital");
    let c0 = net.client_as(0, &hospital).await;
    let patient = Wallet::random();
    ok(
        &c0,
        id,
        &hospital,
        pmr_contract::register_patient_call(
            &patient,
            id,
            B256::repeat_byte(1),
            B256::repeat_byte(2),
        )
        .unwrap(),
    )
    .await;
    let mint = |root: PMR::Cid, envelope: PMR::Cid| PMR::mintRecordCall {
        to: pmr_contract::stealth::mint_to_account(&patient, 1).unwrap(),
        root,
        envelope,
        keyCommitment: B256::repeat_byte(3),
    };
    let bogus = ok(&c0, id, &hospital, mint(random_cid(0x71), random_cid(0x55))).await;
    let token = U256::from_be_slice(&bogus.output);

    // 200 versions whose root and envelope CIDs name nothing, sent at once.
    let mut nonce = c0.nonce(hospital.address()).await.unwrap();
    let mut last = B256::ZERO;
    for _ in 0..200 {
        let call = PMR::appendVersionCall {
            tokenId: token,
            root: random_cid(0x71),
            envelope: random_cid(0x55),
            keyCommitment: B256::repeat_byte(4),
        };
        let raw = hospital
            .sign_call(id, nonce, PMR_ADDRESS, call.abi_encode().into(), 1_000_000)
            .unwrap();
        last = c0.submit(raw).await.expect("submit an append");
        nonce += 1;
    }
    c0.wait_committed(last, T)
        .await
        .expect("the appends commit");

    // Then a real record, uploaded to node 0 only.
    let root = c0
        .put_blob_bytes(vec![9u8; 300 * 1024])
        .await
        .unwrap()
        .root_cid;
    let env = c0
        .put_blob_bytes(b"an envelope".to_vec())
        .await
        .unwrap()
        .root_cid;
    let on_chain =
        |c: &str| PMR::Cid::from_cid_bytes(&pmr_blob::parse_cid(c).unwrap().to_bytes()).unwrap();
    ok(&c0, id, &hospital, mint(on_chain(&root), on_chain(&env))).await;
    let minted = Instant::now();
    let clients = futures::future::join_all((1..4).map(|i| net.client(i))).await;
    for (i, c) in clients.iter().enumerate() {
        for cid in [&root, &env] {
            loop {
                if c.blob_stat(cid)
                    .await
                    .map(|s| s.local && s.pinned)
                    .unwrap_or(false)
                {
                    break;
                }
                assert!(
                    minted.elapsed() < Duration::from_secs(30),
                    "node{} does not hold {cid} 30 s after its mint, behind 400 bogus CIDs",
                    i + 1
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!(
        "figure: the real record was on every node {:.1} s after its mint, behind 200 bogus \
         appends",
        minted.elapsed().as_secs_f64()
    );
    // Every bogus CID was tried, none skipped.
    let deadline = Instant::now() + T;
    loop {
        let log = std::fs::read_to_string(net.cluster.log_path(1)).unwrap_or_default();
        // A dag-cbor root no peer has waits in the retry lane; a raw one can never be a
        // record's root, so it is given up at once.
        let moved = log.matches("it moves to the retry lane").count();
        let given_up = log.matches("can never be replicated").count();
        if moved >= 200 && moved + given_up >= 400 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node1 moved {moved} of the 400 bogus CIDs to the retry lane and gave up {given_up}; \
             its replication log:\n{}",
            log.lines()
                .filter(|l| l.contains("replicat") && !l.contains("retry lane"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
