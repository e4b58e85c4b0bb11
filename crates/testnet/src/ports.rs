//! Ports of a local testnet: node `i` uses a block of ten from `base + 10 i`: p2p, +1 gossip,
//! +2 gRPC, +3 metrics, +4 content.

use std::net::TcpListener;

use rand::Rng;

use crate::HarnessError;

/// Ports of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// Consensus (libp2p).
    pub p2p: u16,
    /// Transaction gossip (libp2p).
    pub gossip: u16,
    /// gRPC API.
    pub rpc: u16,
    /// Prometheus metrics.
    pub metrics: u16,
    /// Content store (bitswap).
    pub content: u16,
}

/// Ports reserved per node.
pub const PORTS_PER_NODE: u16 = 10;
/// Ports each node uses out of its block of [`PORTS_PER_NODE`].
const PORTS_USED: usize = 5;

/// Node `i`'s ports when the first node starts at `base`.
pub fn fixed_ports(base: u16, i: usize) -> Ports {
    let b = base + PORTS_PER_NODE * i as u16;
    Ports {
        p2p: b,
        gossip: b + 1,
        rpc: b + 2,
        metrics: b + 3,
        content: b + 4,
    }
}

/// First port the kernel hands out for outgoing connections and `bind(0)`.
pub fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Lowest port a free-port testnet uses.
const FREE_PORTS_FROM: u16 = 10_000;
/// `pmr dev`'s default ports, left alone.
pub const DEV_PORTS: std::ops::Range<u16> = 26_600..26_700;

/// Free ports for `n` nodes, laid out like `--base-port` (node `i` at `base + 10 i ..`) from a
/// random base below the kernel's ephemeral range: ports handed out by `bind(0)` come from the
/// same range as the source ports of every outgoing connection on the machine, so one of them
/// could be taken by some process's dial before the node binds it. Every port is checked by
/// binding it (all held until the choice is made); if no block is free, ports the OS hands out.
pub fn free_ports(n: usize) -> Result<Vec<Ports>, HarnessError> {
    let span = PORTS_PER_NODE as usize * n;
    let top = ephemeral_start().saturating_sub(1) as usize;
    if top > FREE_PORTS_FROM as usize + span {
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let base = rng.gen_range(FREE_PORTS_FROM as usize..=top - span) as u16;
            let end = base as usize + span;
            if (base as usize) < DEV_PORTS.end as usize && end > DEV_PORTS.start as usize {
                continue;
            }
            let ports: Vec<Ports> = (0..n).map(|i| fixed_ports(base, i)).collect();
            let held: std::io::Result<Vec<TcpListener>> = ports
                .iter()
                .flat_map(|p| [p.p2p, p.gossip, p.rpc, p.metrics, p.content])
                .map(|port| TcpListener::bind(("127.0.0.1", port)))
                .collect();
            if held.is_ok() {
                return Ok(ports);
            }
        }
    }
    os_free_ports(n)
}

/// Ports the OS reports free right now (held open until all are chosen, so none repeats).
fn os_free_ports(n: usize) -> Result<Vec<Ports>, HarnessError> {
    let none_free = |e: std::io::Error| HarnessError::Ports(e.to_string());
    let listeners: Vec<TcpListener> = (0..n * PORTS_USED)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(none_free)?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()
        .map_err(none_free)?;
    Ok(ports
        .chunks(PORTS_USED)
        .map(|c| Ports {
            p2p: c[0],
            gossip: c[1],
            rpc: c[2],
            metrics: c[3],
            content: c[4],
        })
        .collect())
}

/// Ports for `n` nodes: from `base` when given (refused when the last would pass 65535),
/// otherwise free ones ([`free_ports`]).
pub fn testnet_ports(n: usize, base: Option<u16>) -> Result<Vec<Ports>, HarnessError> {
    match base {
        Some(base) => {
            let last =
                base as usize + PORTS_PER_NODE as usize * n.saturating_sub(1) + PORTS_USED - 1;
            if last > u16::MAX as usize {
                return Err(HarnessError::Ports(format!(
                    "--base-port {base} leaves no room for {n} nodes (10 ports each, up to \
                     {last}); choose a lower base port"
                )));
            }
            Ok((0..n).map(|i| fixed_ports(base, i)).collect())
        }
        None => free_ports(n),
    }
}
