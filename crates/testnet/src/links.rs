//! Network links between the nodes of a testnet, through TCP proxies the harness controls, so a
//! scenario can cut them (a partition) and restore them (a heal).
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

/// `/ip4/127.0.0.1/tcp/PORT` → `PORT`.
fn tcp_port(addr: &str) -> Option<u16> {
    let mut parts = addr.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ip4"), Some(_), Some("tcp"), Some(port)) => port.parse().ok(),
        _ => None,
    }
}

impl Links {
    /// Puts a proxy on every link between the nodes whose homes are `homes` (node *i* is named
    /// `names[i]` in its peers' configs) and rewrites their configs to dial through them.
    /// Call before the nodes start; the proxies run until [`Links`] is dropped.
    pub async fn install(homes: &[&Path], names: &[String]) -> Result<Self, HarnessError> {
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
                    let target = value.as_str().and_then(tcp_port).ok_or_else(|| {
                        err(format!("peer {name}: {port_name} is not /ip4/…/tcp/PORT"))
                    })?;
                    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
                    let port = listener.local_addr().map_err(err)?.port();
                    *value = toml::Value::String(format!("/ip4/127.0.0.1/tcp/{port}"));
                    tasks.push(tokio::spawn(proxy(listener, target, cut.subscribe())));
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

/// Forwards connections accepted on `listener` to `127.0.0.1:target` while the link is up.
async fn proxy(listener: TcpListener, target: u16, cut: watch::Receiver<bool>) {
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
            let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let mut inbound = inbound;
            tokio::select! {
                _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|c| *c) => {}
            }
            // Dropping both sockets closes the connection on both sides.
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn ports_are_read_from_multiaddrs() {
        assert_eq!(tcp_port("/ip4/127.0.0.1/tcp/26600"), Some(26600));
        assert_eq!(tcp_port("/ip4/127.0.0.1/udp/26600"), None);
        assert_eq!(tcp_port("/dns4/x/tcp/1/p2p/abc"), None);
    }

    /// Two fake homes whose configs name each other; the proxy carries bytes until cut, closes
    /// live connections when cut, refuses new ones, and carries again after the heal.
    #[tokio::test]
    async fn a_cut_link_closes_and_refuses_connections_until_healed() {
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
        let homes: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
        let links = Links::install(&homes, &names).await.unwrap();
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
