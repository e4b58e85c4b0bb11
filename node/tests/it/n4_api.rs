//! The public surface of a 4-validator network: status, blocks by height and by hash with
//! commit certificates that verify against the genesis, receipts whose inclusion a light client
//! can check, the block stream, gRPC health and reflection, and the CLI's JSON output.

use std::process::Command;

use crate::common::*;
use futures::StreamExt;
use pmr_client::proto;
use pmr_consensus::{verify_receipt_inclusion, Certificate, VerifyError};
use pmr_primitives::{Block, Genesis, MerkleProof, B256};

fn certificate(c: &proto::CommitCertificate) -> Certificate {
    pmr_node::state_sync::certificate_of(c).expect("a 32-byte block hash")
}

fn proof(p: &proto::MerkleProof) -> MerkleProof {
    MerkleProof {
        index: p.index,
        count: p.count,
        siblings: p.siblings.iter().map(|s| B256::from_slice(s)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_blocks_receipts_stream_health_reflection_cli() {
    let net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let genesis = Genesis::load(&net.dir.path().join("genesis.json")).expect("genesis");
    let c0 = net.client(0).await;

    // Status: chain, validators, peers.
    let s = c0.status().await.unwrap();
    assert_eq!(s.chain_id, net.chain_id);
    assert_eq!(s.validators.len(), 4);
    assert_eq!(s.peers.len(), 3, "{:?}", s.peers);
    assert!(!s.syncing);
    assert_eq!(s.genesis_hash, genesis.hash().to_vec());

    // A committed transaction's receipt verifies against its block header and certificate,
    // using nothing but the genesis; tampering with any part fails.
    let hospital = net.account("hospital");
    let (hash, height) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 0)).await;
    net.wait_height(2, height).await;
    let r = net.client(2).await.receipt(hash).await.unwrap();
    assert_eq!(r.height, height);
    let receipt = r.receipt.clone().unwrap();
    assert!(receipt.success);
    let block = r.block.clone().unwrap();
    let decoded = Block::decode_checked(&block.encoded).expect("canonical block");
    assert_eq!(decoded.hash().to_vec(), block.hash);
    let cert = certificate(block.certificate.as_ref().unwrap());
    let p = proof(r.proof.as_ref().unwrap());
    verify_receipt_inclusion(&genesis, hash, &receipt.encoded, &p, &decoded.header, &cert)
        .expect("receipt inclusion verifies");
    let mut forged = receipt.encoded.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert!(matches!(
        verify_receipt_inclusion(&genesis, hash, &forged, &p, &decoded.header, &cert),
        Err(VerifyError::BadReceiptProof | VerifyError::MalformedReceipt(_))
    ));
    let mut moved = p.clone();
    moved.index = (moved.index + 1) % moved.count.max(2);
    assert!(verify_receipt_inclusion(
        &genesis,
        hash,
        &receipt.encoded,
        &moved,
        &decoded.header,
        &cert
    )
    .is_err());
    let mut other_header = decoded.header.clone();
    other_header.gas_used += 1;
    assert_eq!(
        verify_receipt_inclusion(&genesis, hash, &receipt.encoded, &p, &other_header, &cert),
        Err(VerifyError::HeaderMismatch)
    );
    assert!(matches!(
        verify_receipt_inclusion(
            &genesis,
            B256::repeat_byte(3),
            &receipt.encoded,
            &p,
            &decoded.header,
            &cert
        ),
        Err(VerifyError::WrongTransaction { .. })
    ));
    let mut thin = cert.clone();
    thin.signatures.truncate(2);
    assert!(matches!(
        verify_receipt_inclusion(&genesis, hash, &receipt.encoded, &p, &decoded.header, &thin),
        Err(VerifyError::NotEnoughPower { .. })
    ));

    // GetBlock by height and by hash give the same block, with its certificate.
    let by_height = c0.block(height).await.unwrap();
    let by_hash = c0
        .block_by_hash(B256::from_slice(&by_height.hash))
        .await
        .unwrap();
    assert_eq!(by_height, by_hash);
    let missing = c0.block(10_000_000).await.unwrap_err();
    assert_eq!(missing.code(), Some(tonic::Code::NotFound), "{missing}");

    // StreamBlocks: consecutive heights from the one asked for, each equal to GetBlock's.
    let mut stream = c0.stream_blocks(1).await.unwrap();
    let mut expected = 1;
    while expected <= height + 1 {
        let b = tokio::time::timeout(T, stream.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for streamed block {expected}"))
            .expect("stream open")
            .expect("block");
        assert_eq!(b.header.as_ref().unwrap().height, expected);
        if expected <= height {
            assert_eq!(b, c0.block(expected).await.unwrap());
        }
        expected += 1;
    }

    // Health checking and reflection on the same port.
    let channel = c0.channel();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "pmr.v1.LedgerService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = tokio::time::timeout(T, replies.next())
        .await
        .expect("timed out waiting for the reflection reply")
        .expect("reply")
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["pmr.v1.LedgerService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }

    // The CLI prints JSON for scripts.
    let rpc = net.cluster.manifest().nodes[1].rpc.clone();
    let out = Command::new(BIN)
        .args(["status", "--rpc", &rpc, "--output", "json"])
        .envs(net.cli_env())
        .output()
        .expect("run pmr status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(j["chain_id"].as_u64(), Some(net.chain_id));
    assert!(j["height"].as_u64().unwrap() >= height);
    assert_eq!(j["validators"].as_array().unwrap().len(), 4);

    let out = Command::new(BIN)
        .args([
            "block",
            &height.to_string(),
            "--rpc",
            &rpc,
            "--output",
            "json",
        ])
        .envs(net.cli_env())
        .output()
        .expect("run pmr block");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("block JSON");
    assert_eq!(j["height"].as_u64(), Some(height));
    assert_eq!(
        j["hash"].as_str().unwrap(),
        format!("0x{}", hex::encode(&by_height.hash))
    );
    assert!(j["certificate"]["signatures"].as_array().unwrap().len() >= 3);

    // A node that is down is a clear error, not a hang.
    let out = Command::new(BIN)
        .args(["status", "--rpc", "http://127.0.0.1:9", "--output", "json"])
        .output()
        .expect("run pmr status");
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}
