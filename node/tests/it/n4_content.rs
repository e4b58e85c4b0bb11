//! The content store as part of every node, on networks of real `pmr` processes: a blob put
//! on node 0 is replicated by the others when a hospital mints a record naming it (a node that
//! was down then replicates it after its restart), and is still served after node 0 is
//! SIGKILLed; malformed CIDs in committed events are skipped; unknown and
//! malformed CIDs get clear errors in bounded time; an upload over `max_record_size` is refused
//! and leaves nothing stored; `pmr blob put` / `pmr blob get` round-trip a file between nodes.

use std::future::Future;
use std::time::Duration;

use crate::common::*;
use alloy_primitives::B256;
use alloy_sol_types::SolInterface;
use pmr_blob::{decrypt_to_vec, encrypt_to_vec, parse_cid, DataKey};
use pmr_client::{BlobStat, Wallet, PMR};
use tonic::Code;

/// Bounds a wait and names what it waited for.
async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls node `i` until it holds `cid` locally and pinned.
async fn wait_pinned(net: &Net, i: usize, cid: &str, what: &str) -> BlobStat {
    let c = net.client(i).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match c.blob_stat(cid).await {
            Ok(s) if s.local && s.pinned => return s,
            Ok(s) => last = format!("{s:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "timed out after 120s waiting for node{i} to pin the {what} {cid}; last stat: {last}\n--- node{i} log ---\n{}",
        net.cluster.log_tail(i, 40)
    );
}

fn log_of(net: &Net, i: usize) -> String {
    std::fs::read_to_string(net.cluster.log_path(i)).unwrap_or_default()
}

/// Runs the `pmr` CLI (as the testnet's hospital) with a bounded wait; returns (success,
/// stdout, stderr).
async fn pmr(net: &Net, args: &[&str], what: &str) -> (bool, String, String) {
    let hospital = net.dir.path().join("accounts/hospital.json");
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .envs(net.cli_env())
        .env("PMR_ACCOUNT", hospital)
        .kill_on_drop(true)
        .output();
    let out = within(120, what, child).await.expect("run pmr");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_blob_replicated_on_mint_and_served_after_uploader_is_killed() {
    let mut net = start_net(4, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let id = net.chain_id;
    let hospital = net.account("hospital");
    let patient = Wallet::random();
    let c0 = net.client_as(0, &hospital).await;

    // The hospital encrypts a 5 MiB record on its side and uploads only the ciphertext.
    let plaintext = noise(5 * 1024 * 1024, 7);
    let key = DataKey::generate();
    let ciphertext = encrypt_to_vec(&key, &plaintext);
    let record = within(
        60,
        "PutBlob of the 5 MiB record on node0",
        c0.put_blob_bytes(ciphertext.clone()),
    )
    .await
    .expect("put record");
    assert_eq!(record.size, ciphertext.len() as u64);
    let envelope = within(
        30,
        "PutBlob of the share envelope on node0",
        c0.put_blob_bytes(b"sealed shares (test)".to_vec()),
    )
    .await
    .expect("put envelope");
    let s0 = c0.blob_stat(&record.root_cid).await.expect("stat on node0");
    assert!(
        s0.local && s0.pinned && s0.size == Some(record.size),
        "{s0:?}"
    );
    // Nothing is replicated before a block names the record.
    for i in 1..4 {
        let s = net
            .client(i)
            .await
            .blob_stat(&record.root_cid)
            .await
            .expect("stat");
        assert!(
            !s.local && !s.pinned,
            "node{i} holds the record before its mint: {s:?}"
        );
    }

    // Node 2 is down while the record is minted; it must replicate it after its restart.
    net.cluster.kill(2).expect("SIGKILL node2");
    let reg = pmr_contract::register_patient_call(
        &patient,
        id,
        B256::repeat_byte(0x11),
        B256::repeat_byte(0x22),
    )
    .unwrap();
    ok(&c0, id, &hospital, reg).await;
    // A mint whose CID codec is not one varint byte is refused by the contract (the
    // transaction is included, reverted, and mints nothing); replication goes on with the next
    // record.
    let bad = PMR::mintRecordCall {
        to: pmr_contract::stealth::mint_to_account(&patient, 1).unwrap(),
        root: PMR::Cid {
            codec: 0x80,
            digest: B256::repeat_byte(3),
        },
        envelope: PMR::Cid {
            codec: 0xff,
            digest: B256::repeat_byte(4),
        },
        keyCommitment: B256::repeat_byte(1),
    };
    let refused = send(&c0, id, &hospital, bad).await;
    assert!(!refused.success, "a mint of bad CIDs was accepted");
    assert!(
        PMR::PMRErrors::abi_decode(&refused.output)
            .is_ok_and(|e| matches!(e, PMR::PMRErrors::UnsupportedCodec(_))),
        "reverted with 0x{}",
        hex::encode(&refused.output)
    );
    let mint = PMR::mintRecordCall {
        to: pmr_contract::stealth::mint_to_account(&patient, 7).unwrap(),
        root: PMR::Cid::from_cid_bytes(&parse_cid(&record.root_cid).expect("root cid").to_bytes())
            .expect("a blake3 CIDv1"),
        envelope: PMR::Cid::from_cid_bytes(
            &parse_cid(&envelope.root_cid)
                .expect("envelope cid")
                .to_bytes(),
        )
        .expect("a blake3 CIDv1"),
        keyCommitment: B256::repeat_byte(2),
    };
    let minted_at = ok(&c0, id, &hospital, mint).await.height;
    let committed = std::time::Instant::now();

    for i in [1, 3] {
        let s = wait_pinned(&net, i, &record.root_cid, "record root").await;
        assert_eq!(s.size, Some(record.size), "node{i}");
        wait_pinned(&net, i, &envelope.root_cid, "share envelope").await;
    }
    eprintln!(
        "figure: 5 MiB record and its envelope pinned on nodes 1 and 3 within {:?} of the mint's commit (height {minted_at})",
        committed.elapsed()
    );
    net.cluster.start(2).expect("restart node2");
    let restarted = std::time::Instant::now();
    let s = wait_pinned(
        &net,
        2,
        &record.root_cid,
        "record root (minted while it was down)",
    )
    .await;
    assert_eq!(s.size, Some(record.size), "node2");
    wait_pinned(
        &net,
        2,
        &envelope.root_cid,
        "share envelope (minted while it was down)",
    )
    .await;
    eprintln!(
        "figure: node2, down during the mint, pinned both {:?} after its restart",
        restarted.elapsed()
    );
    for i in 1..4 {
        assert!(
            log_of(&net, i).contains("replicated: fetched and pinned"),
            "node{i} logged no replication:\n{}",
            net.cluster.log_tail(i, 40)
        );
    }

    // The uploader dies without warning; node 3 serves the whole record from its replica.
    net.cluster.kill(0).expect("SIGKILL node0");
    let c3 = net.client(3).await;
    let got = within(
        60,
        "GetBlob of the record on node3 after node0 was killed",
        c3.get_blob_bytes(&record.root_cid),
    )
    .await
    .expect("node3 serves the record");
    assert_eq!(got.len(), ciphertext.len());
    let opened = decrypt_to_vec(&key, &got).expect("the ciphertext from node3 authenticates");
    assert!(
        opened == plaintext,
        "node3's record decrypts to something else"
    );
    // The network goes on committing without node 0.
    net.wait_height(1, minted_at + 2).await;

    // CLI round trip between two surviving nodes: `pmr blob put` on node 1, `pmr blob get` on
    // node 2 (which fetches it from its peers over bitswap).
    let files = tempfile::tempdir().expect("tempdir");
    let original = files.path().join("scan.bin");
    let data = noise(9 * 1024 * 1024 + 123, 11);
    std::fs::write(&original, &data).unwrap();
    let started = std::time::Instant::now();
    let (ok, out, err) = pmr(
        &net,
        &[
            "blob",
            "put",
            original.to_str().unwrap(),
            "--rpc",
            net.cluster.rpc(1),
            "--output",
            "json",
        ],
        "pmr blob put on node1",
    )
    .await;
    assert!(ok, "pmr blob put failed: {err}");
    eprintln!(
        "figure: pmr blob put of 9 MiB: {:?}; its stderr: {err}",
        started.elapsed()
    );
    let put: serde_json::Value = serde_json::from_str(&out).expect("JSON output of pmr blob put");
    let cid = put["root_cid"].as_str().expect("root_cid").to_string();
    let key_file = files.path().join("scan.bin.key");
    assert_eq!(put["key_file"].as_str(), key_file.to_str());
    assert_eq!(put["plaintext_size"].as_u64(), Some(data.len() as u64));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "key file mode");
    }
    let stored = net
        .client(1)
        .await
        .get_blob_bytes(&cid)
        .await
        .expect("ciphertext on node1");
    assert!(
        !stored.windows(64).any(|w| w == &data[4096..4160]),
        "plaintext reached the node"
    );

    let copy = files.path().join("copy.bin");
    let (ok, out, err) = pmr(
        &net,
        &[
            "blob",
            "get",
            &cid,
            "-o",
            copy.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
            "--rpc",
            net.cluster.rpc(2),
        ],
        "pmr blob get on node2",
    )
    .await;
    assert!(ok, "pmr blob get failed: {err}");
    eprintln!(
        "figure: pmr blob put + get of 9 MiB: {:?}; get's stderr: {err}",
        started.elapsed()
    );
    assert!(out.contains("wrote"), "{out}");
    assert!(
        std::fs::read(&copy).unwrap() == data,
        "the file from node2 differs from the original"
    );
    let (ok, out, err) = pmr(
        &net,
        &[
            "blob",
            "stat",
            &cid,
            "--rpc",
            net.cluster.rpc(2),
            "--output",
            "json",
        ],
        "pmr blob stat",
    )
    .await;
    assert!(ok, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("stat JSON");
    assert_eq!(st["local"], true, "{out}");
    assert_eq!(st["pinned"], false, "a read caches without pinning: {out}");

    // The wrong key: a clear error and no output file.
    let other = files.path().join("other.txt");
    std::fs::write(&other, b"another record").unwrap();
    let (ok, _, err) = pmr(
        &net,
        &[
            "blob",
            "put",
            other.to_str().unwrap(),
            "--rpc",
            net.cluster.rpc(1),
        ],
        "second pmr blob put",
    )
    .await;
    assert!(ok, "{err}");
    let wrong = files.path().join("wrong.bin");
    let (ok, _, err) = pmr(
        &net,
        &[
            "blob",
            "get",
            &cid,
            "-o",
            wrong.to_str().unwrap(),
            "--key",
            files.path().join("other.txt.key").to_str().unwrap(),
            "--rpc",
            net.cluster.rpc(3),
        ],
        "pmr blob get with the wrong key",
    )
    .await;
    assert!(!ok, "decrypted with the wrong key");
    assert!(err.contains("does not decrypt"), "{err}");
    assert!(!wrong.exists(), "a failed decryption left an output file");
    assert!(
        std::fs::read_dir(files.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "a partial file was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n2_bad_cids_and_oversized_uploads_get_clear_errors() {
    // Over 16 leaves (4 MiB), so the refused upload has written blocks it must take back.
    const LIMIT: u64 = 5 * 1024 * 1024;
    let mut net = start_net(2, |i, cfg| {
        if i == 0 {
            let content = cfg
                .get_mut("content")
                .and_then(|v| v.as_table_mut())
                .expect("testnet init writes a [content] table");
            content.insert("max_record_size".into(), toml::Value::Integer(LIMIT as i64));
        }
    })
    .await;
    let hospital = net.account("hospital");
    let c0 = net.client_as(0, &hospital).await;
    let c1 = net.client_as(1, &hospital).await;

    // A well-formed CID no node holds: NOT_FOUND naming it, within the fetch deadline.
    let ghost = pmr_blob::ids::block_cid(pmr_blob::ids::DAG_CBOR, b"no such record").to_string();
    let err = within(
        40,
        "GetBlob of an unknown CID on node0",
        c0.get_blob(&ghost),
    )
    .await
    .err()
    .expect("unknown CID found");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    assert!(err.to_string().contains(&ghost), "{err}");
    // A malformed one: INVALID_ARGUMENT at once, for every call that takes a CID.
    let err = within(
        10,
        "GetBlob of a malformed CID",
        c0.get_blob("bafy-not-a-cid"),
    )
    .await
    .err()
    .expect("malformed accepted");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("not a valid CID"), "{err}");
    let operator = net.client_as(0, &net.operator(0)).await;
    for e in [
        c0.blob_stat("zzz").await.expect_err("stat"),
        operator.pin("").await.expect_err("pin"),
        operator.unpin("bafy?").await.expect_err("unpin"),
    ] {
        assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    }

    // Over node 0's limit: refused with a clear error; the same bytes fit node 1's default.
    let big = noise(8 * 1024 * 1024 + 5, 3);
    let err = within(
        60,
        "oversized PutBlob on node0",
        c0.put_blob_bytes(big.clone()),
    )
    .await
    .expect_err("an upload over max_record_size was accepted");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains("max_record_size"), "{err}");
    let on1 = within(60, "PutBlob on node1", c1.put_blob_bytes(big))
        .await
        .expect("fits node1");
    let s = c0.blob_stat(&on1.root_cid).await.expect("stat");
    assert!(!s.local && !s.pinned && s.blocks_local == 0, "{s:?}");
    // And node 0 refuses to fetch it for a reader.
    let err = within(
        40,
        "GetBlob over the limit on node0",
        c0.get_blob(&on1.root_cid),
    )
    .await
    .err()
    .expect("fetched");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    // It keeps working for records within its limit.
    let small = within(
        30,
        "small PutBlob on node0",
        c0.put_blob_bytes(b"within the limit".to_vec()),
    )
    .await
    .expect("small put");
    assert_eq!(
        c0.get_blob_bytes(&small.root_cid).await.expect("small get"),
        b"within the limit"
    );

    // Nothing of the refused upload is on node 0's disk: no leaf of it (the upload had written
    // 4 MiB of them before it crossed the limit), only the small record and the big record's
    // root manifest that the refused read fetched.
    net.cluster.kill(0).expect("SIGKILL node0");
    let store = pmr_storage::Store::open(net.cluster.home(0).join("data/db"))
        .expect("open node0's database");
    let blocks = store
        .scan_prefix(pmr_storage::Column::Blobs, b"")
        .expect("scan blobs");
    let pins = store
        .scan_prefix(pmr_storage::Column::Pins, b"")
        .expect("scan pins");
    assert_eq!(pins.len(), 1, "pins on node0: only the small record");
    let total: usize = blocks.iter().map(|(_, v)| v.len()).sum();
    assert!(
        blocks.len() <= 3 && total < 64 * 1024,
        "node0 kept {} blocks, {total} bytes",
        blocks.len()
    );
}
