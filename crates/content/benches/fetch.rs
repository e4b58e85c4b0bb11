//! Sustained bitswap fetch of a 1 GiB record between two nodes on loopback (real libp2p TCP +
//! noise + yamux, RocksDB on both sides), beside a plain TCP copy of the same bytes.
//! Median of 3 runs each.
//!
//! `cargo bench -p pmr-content --bench fetch` (set `PMR_FETCH_MIB` to change the size).

use std::time::{Duration, Instant};

use pmr_content::{ContentConfig, ContentNode, Keypair, PeerSpec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

struct Pattern {
    left: u64,
    x: u64,
}

impl AsyncRead for Pattern {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(256 * 1024) as usize;
        let mut out = vec![0u8; n];
        for c in out.chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            c.copy_from_slice(&self.x.to_le_bytes()[..c.len()]);
        }
        self.left -= n as u64;
        buf.put_slice(&out);
        std::task::Poll::Ready(Ok(()))
    }
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn node(kp: Keypair, peers: Vec<PeerSpec>, dir: &std::path::Path) -> ContentNode {
    let store = pmr_storage::Store::open(dir).expect("store");
    let mut cfg = ContentConfig::new(kp, "/ip4/127.0.0.1/tcp/0".parse().expect("addr"));
    cfg.peers = peers;
    ContentNode::spawn(cfg, store).await.expect("node")
}

async fn tcp_copy(len: u64) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let buf = vec![0x5au8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            s.write_all(&buf[..n]).await.expect("write");
            left -= n as u64;
        }
    });
    let start = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < len {
        let n = c.read(&mut buf).await.expect("read");
        assert!(n > 0, "early eof");
        got += n as u64;
    }
    let d = start.elapsed();
    server.await.expect("server");
    d
}

fn main() {
    let mib: u64 = std::env::var("PMR_FETCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let len = mib * 1024 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (d0, d1) = (
            tempfile::tempdir().expect("d0"),
            tempfile::tempdir().expect("d1"),
        );
        let (k0, k1) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let n0 = node(
            k0.clone(),
            vec![PeerSpec {
                peer_id: k1.public().to_peer_id(),
                addrs: vec![],
            }],
            d0.path(),
        )
        .await;
        let n1 = node(
            k1,
            vec![PeerSpec {
                peer_id: n0.peer_id(),
                addrs: n0.listen_addrs(),
            }],
            d1.path(),
        )
        .await;
        while n1.connected_peers().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = Instant::now();
        let put = n0
            .put_stream(Pattern {
                left: len,
                x: 0x9e37_79b9_7f4a_7c15,
            })
            .await
            .expect("put");
        let put_d = t.elapsed();
        println!(
            "put (chunk + hash + store, no encryption) {} MiB: {:.2}s = {:.0} MB/s",
            mib,
            put_d.as_secs_f64(),
            mbps(len, put_d)
        );
        let mut fetch = Vec::new();
        for run in 0..3 {
            let t = Instant::now();
            n1.fetch_and_pin(put.root).await.expect("fetch");
            let d = t.elapsed();
            println!(
                "bitswap fetch_and_pin run {run}: {} MiB in {:.2}s = {:.0} MB/s",
                mib,
                d.as_secs_f64(),
                mbps(len, d)
            );
            fetch.push(mbps(len, d));
            n1.unpin(put.root).await.expect("unpin");
            n1.gc().await.expect("gc");
        }
        let mut tcp = Vec::new();
        for run in 0..3 {
            let d = tcp_copy(len).await;
            println!("plain TCP copy run {run}: {:.0} MB/s", mbps(len, d));
            tcp.push(mbps(len, d));
        }
        println!(
            "RESULT bitswap_fetch_{}MiB_median_MBps={:.0} plain_tcp_median_MBps={:.0}",
            mib,
            median(fetch),
            median(tcp)
        );
    });
}
