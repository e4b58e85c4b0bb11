//! Four validators as four `pmr` processes: agreement, inclusion, bad input at the door.

use std::time::Duration;

use crate::common::*;
use alloy_primitives::{Address, Bytes};
use pmr_client::{ClientError, Wallet, B256};
use tonic::Code;

/// Submits `raw` to `c`, again while the node answers that it cannot judge the sender's
/// permission yet (it is catching up: even a healthy node can trail the network for a moment
/// under load), for at most 20 s.
async fn submit_settled(c: &pmr_client::PmrClient, raw: Bytes) -> Result<B256, ClientError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match c.submit(raw.clone()).await {
            Err(e)
                if e.code() == Some(Code::Unavailable)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_agree_include_once_and_refuse_bad_input() {
    let net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 3).await;
    }

    // A transaction submitted to node 1 is committed once, and every node has it at the same
    // height in the same block.
    let hospital = net.account("hospital");
    let c1 = net.client(1).await;
    let raw = noop_tx(&hospital, net.chain_id, 0);
    let (hash, height) = submit_and_wait(&c1, raw.clone()).await;
    for i in 0..4 {
        let c = net.client(i).await;
        net.wait_height(i, height).await;
        let t = c.transaction(hash).await.expect("tx known everywhere");
        assert_eq!(t.height, Some(height), "node{i}");
    }
    // Resubmitting it is refused, and it appears in exactly one block.
    let again = c1.submit(raw).await.expect_err("duplicate");
    assert_eq!(again.code(), Some(Code::AlreadyExists), "{again}");
    let tip = net.height(0).await;
    let c0 = net.client(0).await;
    let mut found = 0;
    for h in 1..=tip {
        let b = c0.block(h).await.unwrap();
        found += b
            .transactions
            .iter()
            .filter(|t| alloy_primitives::keccak256(t) == hash)
            .count();
    }
    assert_eq!(found, 1);

    // Every node has committed the same blocks.
    let tip = (0..4).map(|_| tip).min().unwrap();
    for i in 0..4 {
        net.wait_height(i, tip).await;
    }
    net.assert_same_chain(&[0, 1, 2, 3], tip).await;

    // Bad input at the door, each with its own clear error (and kept, to show later that no
    // node took any of it).
    let mut refused: Vec<Bytes> = Vec::new();
    refused.push(Bytes::from_static(b"\x02\xc0\xff"));
    let garbage = c1.submit(refused[0].clone()).await.unwrap_err();
    assert_eq!(garbage.code(), Some(Code::InvalidArgument), "{garbage}");
    assert!(garbage.to_string().contains("malformed"), "{garbage}");

    refused.push(noop_tx(&hospital, net.chain_id + 1, 1));
    let wrong_chain = c1.submit(refused[1].clone()).await.unwrap_err();
    assert_eq!(wrong_chain.code(), Some(Code::InvalidArgument));
    assert!(
        wrong_chain.to_string().contains("chain id"),
        "{wrong_chain}"
    );

    let mut tampered = noop_tx(&hospital, net.chain_id, 1).to_vec();
    let n = tampered.len();
    tampered[n - 1] ^= 0xff; // last byte of the signature's s
    refused.push(tampered.into());
    let tampered = submit_settled(&c1, refused[2].clone()).await.unwrap_err();
    assert!(
        matches!(
            tampered.code(),
            Some(Code::InvalidArgument) | Some(Code::PermissionDenied)
        ),
        "a tampered signature must not pass as the hospital: {tampered}"
    );

    let stranger = Wallet::random();
    refused.push(noop_tx(&stranger, net.chain_id, 0));
    let denied = submit_settled(&c1, refused[3].clone()).await.unwrap_err();
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    assert!(denied.to_string().contains("permission list"), "{denied}");

    // A different transaction reusing a committed nonce.
    let reused = hospital
        .sign_call(
            net.chain_id,
            0,
            Address::repeat_byte(7),
            Bytes::new(),
            50_000,
        )
        .unwrap();
    refused.push(reused);
    let stale = c1.submit(refused[4].clone()).await.unwrap_err();
    assert_eq!(stale.code(), Some(Code::FailedPrecondition), "{stale}");
    assert!(stale.to_string().contains("nonce"), "{stale}");

    refused.push(
        hospital
            .sign_call(
                net.chain_id,
                1,
                Address::ZERO,
                Bytes::from(vec![0u8; 200 * 1024]),
                9_000_000,
            )
            .unwrap(),
    );
    let oversized = c1.submit(refused[5].clone()).await.unwrap_err();
    assert_eq!(oversized.code(), Some(Code::InvalidArgument));
    assert!(oversized.to_string().contains("limit"), "{oversized}");

    // None of the refused transactions changed anything, then or two blocks later: on every
    // node the hospital's next nonce is still 1 and no refused transaction is known.
    assert_eq!(c1.nonce(hospital.address()).await.unwrap(), 1);
    let later = net.height(1).await + 2;
    assert_eq!(refused.len(), 6);
    for i in 0..4 {
        net.wait_height(i, later).await;
        let c = net.client(i).await;
        assert_eq!(c.nonce(hospital.address()).await.unwrap(), 1, "node{i}");
        for raw in &refused {
            let hash = alloy_primitives::keccak256(raw);
            match c.transaction(hash).await {
                Err(e) => assert_eq!(e.code(), Some(Code::NotFound), "node{i}: {e}"),
                Ok(t) => panic!(
                    "node{i} knows refused transaction {hash} (height {:?}, pending {})",
                    t.height, t.pending
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mempool_answers_try_later() {
    // Node 0 has a tiny mempool; with two validators frozen nothing commits, so it fills.
    let mut net = start_net(4, |i, cfg| {
        if i == 0 {
            let mut mempool = toml::Table::new();
            mempool.insert("max_txs".into(), toml::Value::Integer(3));
            cfg["consensus"]
                .as_table_mut()
                .unwrap()
                .insert("mempool".into(), toml::Value::Table(mempool));
        }
    })
    .await;
    net.wait_height(0, 2).await;
    net.cluster.pause(2).unwrap();
    net.cluster.pause(3).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hospital = net.account("hospital");
    let c0 = net.client(0).await;
    let start = c0.nonce(hospital.address()).await.unwrap();
    let mut results = Vec::new();
    for k in 0..6 {
        results.push(c0.submit(noop_tx(&hospital, net.chain_id, start + k)).await);
    }
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(Code::ResourceExhausted)))
        .count();
    assert_eq!(full, 3, "{results:?}");
    let msg = results[5].as_ref().unwrap_err().to_string();
    assert!(msg.contains("try again later"), "{msg}");
    net.cluster.resume(2).unwrap();
    net.cluster.resume(3).unwrap();
    // Once the network commits again, the admitted ones land and the pool drains.
    let admitted_last = start + 2;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if c0.nonce(hospital.address()).await.unwrap() == admitted_last + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "admitted transactions never committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
