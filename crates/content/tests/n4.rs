//! Four real nodes: a blob put on node 0, replicated to nodes 1 and 2, is readable on node 3
//! after node 0 is shut down, with blocks coming from both replicas.

mod common;

use common::*;
use futures::StreamExt;
use pmr_blob::{decrypt_stream, DataKey, EncryptingReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_read_on_node3_after_node0_is_gone() {
    init_tracing();
    let nodes = spawn_mesh(4, fast_limits()).await;
    let key = DataKey::generate();
    let len = 12 * 1024 * 1024 + 4321;
    let put = nodes[0]
        .node
        .put_stream(EncryptingReader::new(&key, PatternReader::new(len, 42)))
        .await
        .expect("put");
    // Replication hook on two custodians, concurrently.
    let (r1, r2) = within(120, "replication on nodes 1 and 2", async {
        tokio::join!(
            nodes[1].node.replicate(put.root),
            nodes[2].node.replicate(put.root)
        )
    })
    .await;
    assert!(r1.expect("node 1").pinned);
    assert!(r2.expect("node 2").pinned);

    nodes[0].node.shutdown().await;
    let blob = within(
        30,
        "get_stream on node 3",
        nodes[3].node.get_stream(put.root),
    )
    .await
    .expect("root found on a replica");
    let mut plain = decrypt_stream(&key, blob);
    let mut h = blake3::Hasher::new();
    let mut got = 0u64;
    while let Some(piece) = within(60, "plaintext from node 3", plain.next()).await {
        let piece = piece.expect("authentic plaintext");
        got += piece.len() as u64;
        h.update(&piece);
    }
    assert_eq!(got, len);
    assert_eq!(h.finalize(), pattern_hash(len, 42).await);
    let s1 = nodes[1].node.net_stats();
    let s2 = nodes[2].node.net_stats();
    let leaves = put.size.div_ceil(256 * 1024);
    assert!(
        s1.blocks_sent + s2.blocks_sent >= leaves,
        "replicas served node 3: {} + {} blocks",
        s1.blocks_sent,
        s2.blocks_sent
    );
    let st = nodes[3].node.stat(put.root).await.expect("stat");
    assert!(
        st.local && !st.pinned,
        "read caches without pinning: {st:?}"
    );
    let mut replicas = st.replicas.clone();
    replicas.sort();
    let mut want = vec![nodes[1].node.peer_id(), nodes[2].node.peer_id()];
    want.sort();
    assert_eq!(replicas, want, "the live replicas answer HAVE");
}
