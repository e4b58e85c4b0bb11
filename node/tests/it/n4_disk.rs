//! Uploads cannot fill a node: a hospital's uploads that no committed record names count
//! against its quota and are collected when they expire (a named one never is), and a node
//! whose disk is under its free-space floor refuses uploads and new transactions with
//! RESOURCE_EXHAUSTED while it keeps committing blocks. The small disk is a tmpfs the test
//! mounts over node 0's data directory (the tests run as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use pmr_client::{Wallet, PMR};
use tonic::Code;

use crate::common::*;

const MIB: usize = 1024 * 1024;

/// A tmpfs mounted for the test; unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the test needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_uploads_are_bounded_by_quota_expiry_and_a_free_space_floor() {
    let mut small_disk = None;
    let net = start_net_prepared(
        4,
        |i, cfg| {
            let content = cfg["content"].as_table_mut().unwrap();
            if i == 1 {
                content.insert("upload_quota".into(), toml::Value::Integer(20 * MIB as i64));
                content.insert("upload_ttl".into(), toml::Value::String("3s".into()));
                content.insert("collect_every".into(), toml::Value::String("1s".into()));
            }
            if i == 0 {
                let rpc = cfg["rpc"].as_table_mut().unwrap();
                rpc.insert(
                    "min_free_disk".into(),
                    toml::Value::Integer(512 * MIB as i64),
                );
            }
        },
        |dir| small_disk = Some(Tmpfs::mount(&dir.join("node0/data"), "1g")),
    )
    .await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let id = net.chain_id;
    let hospital = net.account("hospital");

    // Node 1: a 20 MiB quota of unnamed uploads, expiring after 3 s.
    let h1 = net.client_as(1, &hospital).await;
    // Random bytes: equal chunks would be stored once.
    let blob = |_seed: u8| {
        let mut data = vec![0u8; 8 * MIB];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut data);
        data
    };
    let named = h1.put_blob_bytes(blob(1)).await.expect("upload 1").root_cid;
    let unnamed = h1.put_blob_bytes(blob(2)).await.expect("upload 2").root_cid;
    h1.put_blob_bytes(blob(3))
        .await
        .expect("upload 3 (16 MiB pending < 20)");
    let e = h1
        .put_blob_bytes(blob(4))
        .await
        .expect_err("over the quota");
    assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
    assert!(e.to_string().contains("quota"), "{e}");
    // A committed record names the first upload.
    let patient = Wallet::random();
    ok(
        &h1,
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
    let cid =
        |c: &str| PMR::Cid::from_cid_bytes(&pmr_blob::parse_cid(c).unwrap().to_bytes()).unwrap();
    ok(
        &h1,
        id,
        &hospital,
        PMR::mintRecordCall {
            to: pmr_contract::stealth::mint_to_account(&patient, 1).unwrap(),
            root: cid(&named),
            envelope: cid(&named),
            keyCommitment: B256::repeat_byte(3),
        },
    )
    .await;
    // The unnamed uploads expire and are collected; the named one stays; uploads fit again.
    let deadline = Instant::now() + T;
    while h1.blob_stat(&unnamed).await.unwrap().local {
        assert!(
            Instant::now() < deadline,
            "an expired upload was never collected"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let kept = h1.blob_stat(&named).await.unwrap();
    assert!(
        kept.local && kept.pinned,
        "a record's blob was collected: {kept:?}"
    );
    h1.put_blob_bytes(blob(5))
        .await
        .expect("uploads fit again once expired ones are gone");

    // Node 0: uploads fill its 1 GiB disk down to the 512 MiB floor, then are refused.
    let h0 = net.client_as(0, &hospital).await;
    let mut accepted = 0;
    let refusal = loop {
        let mut data = vec![0u8; 16 * MIB];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut data);
        match h0.put_blob_bytes(data).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 64, "uploads were never refused on a 1 GiB disk");
    };
    assert_eq!(refusal.code(), Some(Code::ResourceExhausted), "{refusal}");
    assert!(refusal.to_string().contains("floor"), "{refusal}");
    assert!(accepted >= 1, "the floor refused the first upload already");
    // New transactions are refused there too, but node 0 keeps committing the chain's blocks.
    let admin = net.account("admin");
    let c0 = net.client(0).await;
    let nonce = c0.nonce(admin.address()).await.unwrap();
    let e = c0
        .submit(noop_tx(&admin, id, nonce))
        .await
        .expect_err("a transaction on a full node");
    assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
    let before = c0.status().await.unwrap().height;
    let c1 = net.client(1).await;
    submit_and_wait(&c1, noop_tx(&admin, id, nonce)).await;
    net.wait_height(0, before + 5).await;
    eprintln!(
        "figure: node 0 accepted {accepted} uploads of 16 MiB on its 1 GiB disk before its 512 MiB floor"
    );
    drop(net);
    drop(small_disk);
}
