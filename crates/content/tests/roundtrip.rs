//! Encrypt → chunk → store → read → decrypt on one real node (RocksDB), at the size edges.

mod common;

use common::*;
use futures::StreamExt;
use pmr_blob::{ciphertext_len, decrypt_stream, DataKey, EncryptingReader};
use pmr_content::{ContentConfig, ContentError, ContentNode};

async fn round_trip(node: &pmr_content::ContentNode, len: u64, seed: u64) {
    let key = DataKey::generate();
    let put = within(
        300,
        "put_stream",
        node.put_stream(EncryptingReader::new(&key, PatternReader::new(len, seed))),
    )
    .await
    .expect("put");
    assert_eq!(put.size, ciphertext_len(len), "ciphertext size for {len}");
    let stat = node.stat(put.root).await.expect("stat");
    assert!(stat.local && stat.pinned, "{stat:?}");
    assert_eq!(stat.size, Some(put.size));

    let blob = node.get_stream(put.root).await.expect("get");
    assert_eq!(blob.size(), put.size);
    let mut plain = decrypt_stream(&key, blob);
    let mut h = blake3::Hasher::new();
    let mut got = 0u64;
    while let Some(piece) = within(300, "decrypted piece", plain.next()).await {
        let piece = piece.expect("decrypt");
        got += piece.len() as u64;
        h.update(&piece);
    }
    assert_eq!(got, len);
    assert_eq!(
        h.finalize(),
        pattern_hash(len, seed).await,
        "plaintext of {len} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_edge_sizes_and_100_mib() {
    init_tracing();
    let t = spawn_node(
        pmr_content::Keypair::generate_ed25519(),
        vec![],
        fast_limits(),
    )
    .await;
    for (i, len) in [0u64, 1, 256 * 1024, 256 * 1024 + 1]
        .into_iter()
        .enumerate()
    {
        round_trip(&t.node, len, i as u64).await;
    }
    round_trip(&t.node, 100 * 1024 * 1024, 99).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphertext_block_boundaries_round_trip_exactly() {
    // The node stores any byte stream: exactly one block, one block + 1, empty.
    let t = spawn_node(
        pmr_content::Keypair::generate_ed25519(),
        vec![],
        fast_limits(),
    )
    .await;
    for len in [0usize, 1, 256 * 1024, 256 * 1024 + 1, 3 * 256 * 1024 + 17] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let put = t.node.put_bytes(&data).await.expect("put");
        assert_eq!(put.size, len as u64);
        assert_eq!(
            t.node.get_bytes(put.root).await.expect("get"),
            data,
            "len {len}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_is_a_clear_error_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = pmr_storage::Store::open(dir.path()).expect("store");
    let mut cfg = ContentConfig::new(pmr_content::Keypair::generate_ed25519(), loopback());
    cfg.max_record_size = 5 * 1024 * 1024;
    let node = ContentNode::spawn(cfg, store.clone()).await.expect("spawn");
    let err = node
        .put_stream(PatternReader::new(8 * 1024 * 1024, 5))
        .await
        .expect_err("over the limit");
    assert!(
        matches!(
            err,
            ContentError::Blob(pmr_blob::BlobError::TooLarge { limit: 5242880, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_record_size"), "{err}");
    let mut blocks = 0;
    store
        .for_each_from(pmr_storage::Column::Blobs, &[], |_, _| {
            blocks += 1;
            true
        })
        .expect("scan");
    assert_eq!(blocks, 0, "a refused upload leaves no blocks");
    assert!(node.blockstore().pins().expect("pins").is_empty());
    // Exactly at the limit is fine.
    node.put_stream(PatternReader::new(5 * 1024 * 1024, 6))
        .await
        .expect("at the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpin_and_gc_remove_blocks_pin_requires_local_blocks() {
    let t = spawn_node(
        pmr_content::Keypair::generate_ed25519(),
        vec![],
        fast_limits(),
    )
    .await;
    let a = t
        .node
        .put_stream(PatternReader::new(700_000, 1))
        .await
        .expect("a");
    let b = t
        .node
        .put_stream(PatternReader::new(300_000, 2))
        .await
        .expect("b");
    assert!(t.node.unpin(b.root).await.expect("unpin"));
    assert!(!t.node.unpin(b.root).await.expect("unpin twice"));
    let report = t.node.gc().await.expect("gc");
    assert_eq!(report.removed_blocks, 3, "2 leaves + 1 manifest of b");
    assert_eq!(report.kept_blocks, 4, "3 leaves + 1 manifest of a");
    let sb = t.node.stat(b.root).await.expect("stat b");
    assert!(!sb.local && !sb.pinned && sb.size.is_none());
    let err = t.node.get_bytes(b.root).await.expect_err("gone");
    assert!(matches!(err, ContentError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&b.root.to_string()), "{err}");
    let err = t.node.pin(b.root).await.expect_err("not local");
    assert!(matches!(err, ContentError::NotLocal { .. }), "{err}");
    assert!(t.node.pin(a.root).await.expect("pin a").pinned);
}
