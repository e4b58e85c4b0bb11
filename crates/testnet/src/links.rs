//! Network links between the nodes of a testnet, through TCP proxies the harness controls, so a
//! scenario can cut them (a partition) and restore them (a heal), and give them wide-area
//! delay, jitter and loss ([`Wan`]: the kernels these tests run on have no `netem`).
//!
//! [`Links::install`] rewrites every node's `config.toml` so that node *i* reaches node *j* on
//! each of its ports (consensus p2p, transaction gossip, content) through a proxy of its own,
//! `i → j`. A proxy forwards bytes both ways until its link is cut; cutting closes every
//! connection it carries and refuses new ones until the link is restored. A node's inbound
//! connections from *i* all arrive through `i → j`, its outbound ones to *i* through `j → i`,
//! so cutting both directions isolates the pair completely (the nodes dial only configured
//! addresses: discovery is off and peers are an allow-list).

use std::collections::HashMap;
use std::path::Path;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::HarnessError;

/// The node ports that carry traffic between nodes, as named in `[[consensus.peers]]`.
const PEER_PORTS: [&str; 3] = ["p2p", "gossip", "content"];

/// Wide-area shaping of every link: each link (a pair of nodes) gets a fixed one-way delay
/// between `one_way_ms[0]` and `one_way_ms[1]` (spread over the pairs, as regions at different
/// distances), plus up to `jitter_ms` more per chunk of bytes (order is kept: a chunk never
/// overtakes the one before it, as on a TCP connection), and a fraction `loss` of chunks held
/// for a retransmission timeout (200 ms) more, which is what a lost segment costs a TCP
/// stream.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wan {
    /// Shortest and longest one-way delay of a link, in milliseconds.
    pub one_way_ms: [u64; 2],
    /// Extra delay per chunk, uniform in `0..=jitter_ms`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Fraction of chunks delayed by a retransmission timeout.
    #[serde(default)]
    pub loss: f64,
}

/// What a lost segment costs a TCP stream (Linux's minimum retransmission timeout).
const RTO: std::time::Duration = std::time::Duration::from_millis(200);

impl Wan {
    /// The one-way delay of the link between nodes `a` and `b` of `n` (the same both ways).
    pub fn delay(&self, a: usize, b: usize, n: usize) -> std::time::Duration {
        let [lo, hi] = self.one_way_ms;
        let pairs = (n * n.saturating_sub(1) / 2).max(1);
        let (a, b) = (a.min(b), a.max(b));
        // The pair's rank among all pairs, spread evenly over [lo, hi].
        let rank = (0..a).map(|i| n - 1 - i).sum::<usize>() + (b - a - 1);
        let step = if pairs > 1 {
            (hi.saturating_sub(lo)) * rank as u64 / (pairs as u64 - 1)
        } else {
            0
        };
        std::time::Duration::from_millis(lo + step)
    }
}

/// One direction of the connection between two nodes, on every peer port.
struct Link {
    cut: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Every link of a testnet.
pub struct Links {
    /// `(from, to)` → the proxies `from` dials `to` through.
    links: HashMap<(usize, usize), Link>,
    nodes: usize,
}

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Scenario(format!("links: {e}"))
}

/// `/ip4/IP/tcp/PORT` → `IP:PORT`.
fn tcp_addr(addr: &str) -> Option<std::net::SocketAddr> {
    let mut parts = addr.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ip4"), Some(ip), Some("tcp"), Some(port)) => Some(std::net::SocketAddr::new(
            ip.parse().ok()?,
            port.parse().ok()?,
        )),
        _ => None,
    }
}

#[cfg(test)]
fn tcp_port(addr: &str) -> Option<u16> {
    tcp_addr(addr).map(|a| a.port())
}

impl Links {
    /// Puts a proxy on every link between the nodes whose homes are `homes` (node *i* is named
    /// `names[i]` in its peers' configs) and rewrites their configs to dial through them.
    /// The proxies listen on `bind` (127.0.0.1, or the hub's address when the nodes are in
    /// network namespaces) and dial each node where its config says it listens.
    /// Call before the nodes start; the proxies run until [`Links`] is dropped.
    pub async fn install(
        homes: &[&Path],
        names: &[String],
        wan: Option<Wan>,
        bind: std::net::IpAddr,
    ) -> Result<Self, HarnessError> {
        let mut links = HashMap::new();
        for (from, home) in homes.iter().enumerate() {
            let path = home.join("config.toml");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            let mut cfg: toml::Value =
                toml::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))?;
            let peers = cfg
                .get_mut("consensus")
                .and_then(|c| c.get_mut("peers"))
                .and_then(|p| p.as_array_mut())
                .ok_or_else(|| err(format!("{} has no [[consensus.peers]]", path.display())))?;
            for peer in peers.iter_mut() {
                let name = peer
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("")
                    .to_string();
                let Some(to) = names.iter().position(|n| *n == name) else {
                    continue;
                };
                let (cut, _) = watch::channel(false);
                let mut tasks = Vec::new();
                for port_name in PEER_PORTS {
                    let Some(value) = peer.get_mut(port_name) else {
                        continue;
                    };
                    let target = value.as_str().and_then(tcp_addr).ok_or_else(|| {
                        err(format!("peer {name}: {port_name} is not /ip4/IP/tcp/PORT"))
                    })?;
                    let listener = TcpListener::bind((bind, 0)).await.map_err(err)?;
                    let port = listener.local_addr().map_err(err)?.port();
                    *value = toml::Value::String(format!("/ip4/{bind}/tcp/{port}"));
                    let shape = wan.map(|w| Shape {
                        delay: w.delay(from, to, homes.len()),
                        jitter_ms: w.jitter_ms,
                        loss: w.loss,
                    });
                    tasks.push(tokio::spawn(proxy(
                        listener,
                        target,
                        cut.subscribe(),
                        shape,
                    )));
                }
                links.insert((from, to), Link { cut, tasks });
            }
            let text = toml::to_string(&cfg).map_err(err)?;
            std::fs::write(&path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
        }
        let n = homes.len();
        if links.len() != n * (n - 1) {
            return Err(err(format!(
                "{} links for {n} nodes, expected {}: some node does not list every other one \
                 in [[consensus.peers]] by name",
                links.len(),
                n * (n - 1)
            )));
        }
        Ok(Self {
            links,
            nodes: homes.len(),
        })
    }

    fn set(&self, a: usize, b: usize, cut: bool) {
        for key in [(a, b), (b, a)] {
            if let Some(l) = self.links.get(&key) {
                l.cut.send_replace(cut);
            }
        }
    }

    /// Cuts every link between nodes in different groups; nodes in no group form one more
    /// group. Links inside a group are restored.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let side = |n: usize| groups.iter().position(|g| g.contains(&n));
        for a in 0..self.nodes {
            for b in a + 1..self.nodes {
                self.set(a, b, side(a) != side(b));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.partition(&[]);
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.links.get(&(a, b)).is_some_and(|l| *l.cut.borrow())
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for l in self.links.values() {
            // Ends the connections in flight too.
            l.cut.send_replace(true);
            for t in &l.tasks {
                t.abort();
            }
        }
    }
}

/// The shaping of one link (see [`Wan`]).
#[derive(Clone, Copy, Debug)]
struct Shape {
    delay: std::time::Duration,
    jitter_ms: u64,
    loss: f64,
}

/// Copies `from` to `to`, each chunk released `shape`'s delay after it was read, in order.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shape: Shape,
) {
    use rand::Rng;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = tokio::time::Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (jitter, lost) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(0..=shape.jitter_ms),
                shape.loss > 0.0 && rng.gen_bool(shape.loss.min(1.0)),
            )
        };
        let mut at = tokio::time::Instant::now()
            + shape.delay
            + std::time::Duration::from_millis(jitter)
            + if lost { RTO } else { std::time::Duration::ZERO };
        // Never before the chunk ahead of it.
        at = at.max(last);
        last = at;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Forwards connections accepted on `listener` to `target` while the link is up, shaped by
/// `shape` when given.
async fn proxy(
    listener: TcpListener,
    target: std::net::SocketAddr,
    cut: watch::Receiver<bool>,
    shape: Option<Shape>,
) {
    loop {
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(target: "pmr::testnet", error = %e, "link proxy cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if *cut.borrow() {
            // A cut link: the dialer sees the connection closed at once.
            drop(inbound);
            continue;
        }
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let mut inbound = inbound;
            match shape {
                None => tokio::select! {
                    _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.wait_for(|c| *c) => {}
                },
                Some(shape) => {
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                delayed_copy(in_r, out_w, shape),
                                delayed_copy(out_r, in_w, shape)
                            )
                        } => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                }
            }
            // Dropping both sockets closes the connection on both sides.
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn ports_are_read_from_multiaddrs() {
        assert_eq!(tcp_port("/ip4/127.0.0.1/tcp/26600"), Some(26600));
        assert_eq!(
            tcp_addr("/ip4/10.77.0.3/tcp/26600"),
            Some("10.77.0.3:26600".parse().unwrap())
        );
        assert_eq!(tcp_port("/ip4/127.0.0.1/udp/26600"), None);
        assert_eq!(tcp_port("/dns4/x/tcp/1/p2p/abc"), None);
    }

    #[test]
    fn wan_delays_spread_over_the_range_and_are_symmetric() {
        let wan = Wan {
            one_way_ms: [15, 75],
            jitter_ms: 0,
            loss: 0.0,
        };
        let n = 4;
        let mut seen = Vec::new();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    assert_eq!(wan.delay(a, b, n), wan.delay(b, a, n));
                    seen.push(wan.delay(a, b, n).as_millis());
                }
            }
        }
        assert_eq!(seen.iter().min(), Some(&15));
        assert_eq!(seen.iter().max(), Some(&75));
        assert!(seen.iter().all(|d| (15..=75).contains(d)));
        let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), 6, "one delay per pair of 4 nodes: {seen:?}");
        assert_eq!(
            Wan {
                one_way_ms: [40, 40],
                ..wan
            }
            .delay(0, 1, 2)
            .as_millis(),
            40
        );
    }

    /// Bytes through a shaped link arrive no sooner than its delay, in order, both ways.
    #[tokio::test]
    async fn a_shaped_link_delays_every_byte_in_order() {
        let (dirs, names, echo_port) = echo_homes().await;
        let homes: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
        let wan = Wan {
            one_way_ms: [60, 60],
            jitter_ms: 10,
            loss: 0.0,
        };
        let _links = Links::install(&homes, &names, Some(wan), LOCALHOST)
            .await
            .unwrap();
        let cfg: toml::Value =
            toml::from_str(&std::fs::read_to_string(homes[0].join("config.toml")).unwrap())
                .unwrap();
        let port = tcp_port(cfg["consensus"]["peers"][0]["p2p"].as_str().unwrap()).unwrap();
        assert_ne!(port, echo_port);
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let sent: Vec<u8> = (0..200u8).collect();
        let start = std::time::Instant::now();
        for chunk in sent.chunks(7) {
            s.write_all(chunk).await.unwrap();
        }
        let mut got = vec![0u8; sent.len()];
        s.read_exact(&mut got).await.unwrap();
        // Out and back through the proxy: at least twice the one-way delay.
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(120),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(got, sent, "order kept");
    }

    /// Two fake homes whose configs name each other, each peer's p2p address an echo server.
    async fn echo_homes() -> ([tempfile::TempDir; 2], Vec<String>, u16) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let names = vec!["node0".to_string(), "node1".to_string()];
        for (i, d) in dirs.iter().enumerate() {
            let other = &names[1 - i];
            std::fs::write(
                d.path().join("config.toml"),
                format!(
                    "moniker = \"{}\"\n[consensus]\n[[consensus.peers]]\nname = \"{other}\"\n\
                     p2p = \"/ip4/127.0.0.1/tcp/{echo_port}\"\n",
                    names[i]
                ),
            )
            .unwrap();
        }
        (dirs, names, echo_port)
    }

    /// Two fake homes whose configs name each other; the proxy carries bytes until cut, closes
    /// live connections when cut, refuses new ones, and carries again after the heal.
    #[tokio::test]
    async fn a_cut_link_closes_and_refuses_connections_until_healed() {
        let (dirs, names, echo_port) = echo_homes().await;
        let homes: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
        let links = Links::install(&homes, &names, None, LOCALHOST)
            .await
            .unwrap();
        let cfg: toml::Value =
            toml::from_str(&std::fs::read_to_string(homes[0].join("config.toml")).unwrap())
                .unwrap();
        let p2p = cfg["consensus"]["peers"][0]["p2p"].as_str().unwrap();
        let port = tcp_port(p2p).unwrap();
        assert_ne!(port, echo_port, "the config now dials the proxy");

        let roundtrip = |mut s: TcpStream| async move {
            s.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>((s, buf))
        };
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut live, got) = roundtrip(s).await.unwrap();
        assert_eq!(&got, b"ping");

        links.partition(&[vec![0], vec![1]]);
        assert!(links.is_cut(0, 1) && links.is_cut(1, 0));
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), live.read(&mut buf))
            .await
            .expect("the live connection is closed when the link is cut");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert!(roundtrip(s).await.is_err(), "a new connection is refused");

        links.heal();
        assert!(!links.is_cut(0, 1));
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(&roundtrip(s).await.unwrap().1, b"ping");
    }
}
