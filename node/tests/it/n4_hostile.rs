//! Hostile clients against one node of a 4-validator network: 200 block streams that never
//! read, 5,000 concurrent share releases from one patient, and an oversized message on every
//! RPC. The node refuses what is over its bounds with a clear status, its memory stays within
//! a bound (150 MiB over what it held before), blocks keep committing, and a doctor's
//! legitimate release still succeeds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use pmr_client::proto as pb;
use pmr_client::proto::share_service_client::ShareServiceClient;
use pmr_client::{Identity, Network};
use pmr_primitives::Genesis;
use pmr_shares::ReleaseChallenge;
use rand::rngs::OsRng;
use tonic::Code;

use crate::common::*;

/// What the node may hold beyond its memory before the attack.
const RSS_BOUND: u64 = 150 * 1024 * 1024;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn release_request(
    chain_id: u64,
    custodian: alloy_primitives::Address,
    token: alloy_primitives::U256,
    who: &Identity,
) -> pb::ReleaseShareRequest {
    // `who` is the record's one-time owner: it names the key its share is sealed to.
    let ch = ReleaseChallenge::new(
        chain_id,
        custodian,
        token,
        who.address(),
        now_ms(),
        &mut OsRng,
    )
    .with_reply_key(who.encryption_key());
    pb::ReleaseShareRequest {
        challenge: ch.to_bytes().to_vec(),
        signature: who
            .wallet()
            .sign_message(ch.signing_hash().as_slice())
            .unwrap()
            .to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_floods_of_streams_releases_and_oversized_messages_are_bounded() {
    let net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let id = net.chain_id;
    let genesis = Genesis::load(&net.dir.path().join("genesis.json")).unwrap();
    let base = net.cluster.connect_options().unwrap();
    let admin = net.client(1).await;
    let hospital = net.account("hospital");
    let (patient, doctor) = (Identity::generate(), Identity::generate());

    // A record of the patient's, granted to a doctor.
    ok(
        &admin,
        id,
        &hospital,
        pmr_contract::register_patient_call(
            patient.wallet(),
            id,
            alloy_primitives::B256::repeat_byte(1),
            patient.encryption_key(),
        )
        .unwrap(),
    )
    .await;
    net.add_grantee(&admin, &doctor).await;
    let urls: Vec<String> = (0..4).map(|i| net.cluster.rpc(i).to_string()).collect();
    let as_hospital = Network::connect(
        &urls,
        &base.as_account(hospital.clone()),
        Some(genesis.clone()),
    )
    .await
    .unwrap();
    let data = vec![7u8; 4096];
    let v = as_hospital
        .create_record(&hospital, patient.address(), 3, &data)
        .await
        .unwrap();
    let as_patient = Network::connect(
        &urls,
        &base.as_account(patient.wallet().clone()),
        Some(genesis.clone()),
    )
    .await
    .unwrap();
    let far = now_ms() / 1000 + 3600;
    as_patient
        .grant(&patient, v.token_id, doctor.address(), far)
        .await
        .unwrap();
    // The record's owner, which custodians release the latest version to, is its one-time
    // address: the patient asks as it.
    let owner = as_patient
        .owner_identity(&patient, v.token_id)
        .await
        .unwrap();
    assert_ne!(owner.address(), patient.address());
    // Node 1 (custodian 2) has taken custody once the owner can read through it.
    let custodian = genesis.custodians()[1].address;
    let shares = ShareServiceClient::new(net.client_without_session(1).await.channel());
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = shares
            .clone()
            .release_share(release_request(id, custodian, v.token_id, &owner))
            .await;
        if r.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node1 never released: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the patient's budget refills
    let rss_before = net.cluster.rss(1).expect("node1 runs");
    let height_before = admin.status().await.unwrap().height;

    // 200 block streams from one account that never read: at most 8 open, the rest refused.
    let opened = join_all((0..200).map(|_| admin.stream_blocks(1))).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for r in opened {
        match r {
            Ok(s) => held.push(s),
            Err(e) => {
                assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
                assert!(e.to_string().contains("block streams open"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(
        held.len() <= 8 && held.len() + refused == 200,
        "{} held, {refused} refused",
        held.len()
    );
    assert!(!held.is_empty());

    // 5,000 concurrent releases from the patient: a few proceed, the rest are refused at once
    // without costing the custodian a transaction.
    let requests: Vec<_> = (0..5000)
        .map(|_| release_request(id, custodian, v.token_id, &owner))
        .collect();
    let outcomes = join_all(requests.into_iter().map(|req| {
        let mut s = shares.clone();
        async move { s.release_share(req).await.map(|_| ()) }
    }))
    .await;
    let released = outcomes.iter().filter(|r| r.is_ok()).count();
    let busy = outcomes
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    let other: Vec<_> = outcomes
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|s| s.code() != Code::ResourceExhausted)
        .take(3)
        .collect();
    assert!(
        (1..=30).contains(&released),
        "{released} releases went through"
    );
    assert!(
        released + busy >= 4990,
        "{released} released, {busy} busy, others: {other:?}"
    );

    // Oversized messages on every RPC: refused, the node unharmed.
    let big = vec![0u8; 2 * 1024 * 1024];
    let mut ledger = pb::ledger_service_client::LedgerServiceClient::new(admin.channel())
        .max_encoding_message_size(64 << 20);
    let uploader = net.client_as(1, &hospital).await;
    let mut content = pb::content_service_client::ContentServiceClient::new(uploader.channel())
        .max_encoding_message_size(64 << 20);
    let mut share = ShareServiceClient::new(admin.channel()).max_encoding_message_size(64 << 20);
    let mut auth = pb::auth_service_client::AuthServiceClient::new(admin.channel())
        .max_encoding_message_size(64 << 20);
    let codes = vec![
        ledger
            .submit_transaction(pb::SubmitTransactionRequest { raw: big.clone() })
            .await
            .map(|_| ()),
        ledger
            .call(pb::CallRequest {
                to: vec![0; 20],
                data: big.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ledger
            .get_block(pb::GetBlockRequest {
                selector: Some(pb::get_block_request::Selector::Hash(big.clone())),
            })
            .await
            .map(|_| ()),
        ledger
            .get_transaction(pb::GetTransactionRequest { hash: big.clone() })
            .await
            .map(|_| ()),
        ledger
            .get_transaction_receipt(pb::GetTransactionReceiptRequest {
                tx_hash: big.clone(),
            })
            .await
            .map(|_| ()),
        ledger
            .get_account(pb::GetAccountRequest {
                address: big.clone(),
                height: None,
            })
            .await
            .map(|_| ()),
        content
            .stat(pb::StatBlobRequest {
                root_cid: String::from_utf8(vec![b'b'; big.len()]).unwrap(),
            })
            .await
            .map(|_| ()),
        content
            .put_blob(futures::stream::iter(vec![pb::PutBlobRequest {
                chunk: big.clone(),
            }]))
            .await
            .map(|_| ()),
        share
            .release_share(pb::ReleaseShareRequest {
                challenge: big.clone(),
                signature: vec![],
            })
            .await
            .map(|_| ()),
        share
            .get_custody_status(pb::GetCustodyStatusRequest {
                token_id: big.clone(),
            })
            .await
            .map(|_| ()),
        auth.login(pb::LoginRequest {
            account: vec![],
            challenge: big.clone(),
            signature: vec![],
        })
        .await
        .map(|_| ()),
    ];
    for (i, r) in codes.iter().enumerate() {
        let e = r.as_ref().expect_err("an oversized message was served");
        assert!(
            matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
            "call {i}: {e:?}"
        );
    }

    // The node is within its bound, still commits, and a doctor's release succeeds.
    let rss_after = net.cluster.rss(1).expect("node1 still runs");
    assert!(
        rss_after < rss_before + RSS_BOUND,
        "node1's RSS grew from {} to {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    net.wait_height(1, height_before + 3).await;
    let as_doctor = Network::connect(
        &urls,
        &base.as_account(doctor.wallet().clone()),
        Some(genesis),
    )
    .await
    .unwrap();
    let opened = as_doctor
        .open_record(&doctor, v.token_id)
        .await
        .expect("the doctor reads");
    assert_eq!(opened.plaintext, data);
    drop(held);
    eprintln!(
        "figure: node1 RSS {} MiB before, {} MiB after 200 streams, 5,000 releases ({released} \
         released) and 11 oversized calls",
        rss_before >> 20,
        rss_after >> 20
    );
}
