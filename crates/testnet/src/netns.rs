//! Every node in a Linux network namespace of its own (root only).
//!
//! ```text
//!   hub namespace:  br0 10.77.0.254/24 ── v0 ── v1 ── … (veth ends on the bridge)
//!   node i's:       eth0 10.77.0.(i+1)/24 (the other end of vi), lo
//! ```
//!
//! The harness itself runs in the hub namespace (see [`Namespaces::enter_hub`]): its link
//! proxies listen on the bridge's address, its clients dial the nodes' addresses, and a node
//! reaches another only through the bridge. Nothing is configured outside the namespaces made
//! here: the veth pairs are created inside the hub and the nodes' namespaces, never in the
//! caller's, and dropping [`Namespaces`] deletes them all (with their links and addresses).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::cluster::HarnessError;

/// Where `ip netns add` mounts a namespace.
const NETNS_DIR: &str = "/run/netns";

fn err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Scenario(format!("network namespaces: {e}"))
}

/// Runs `ip ARGS`; an error names the command and what `ip` said.
fn ip(args: &[&str]) -> Result<(), HarnessError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| err(format!("cannot run `ip` (iproute2): {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The hub's and the nodes' namespaces of one testnet.
pub struct Namespaces {
    hub: String,
    /// Whether `hub` was made here (and is ours to delete).
    hub_made: bool,
    nodes: Vec<String>,
}

/// Testnets in namespaces this process made so far: each gets names of its own.
static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Namespaces {
    /// The bridge's address in the hub namespace.
    pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);

    /// Makes the hub and `n` node namespaces (at most 250), named after this process so that
    /// concurrent runs do not clash. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
    pub fn create(n: usize) -> Result<Self, HarnessError> {
        if n == 0 || n > 250 {
            return Err(err(format!("{n} nodes: between 1 and 250")));
        }
        let run = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("pmr{}x{run}", std::process::id());
        let mut made = Self {
            hub: format!("{tag}-hub"),
            hub_made: false,
            nodes: Vec::new(),
        };
        // On any error from here, dropping `made` deletes what was made so far.
        ip(&["netns", "add", &made.hub]).map_err(|e| {
            err(format!(
                "{e} (a scenario with `namespaces = true` makes network namespaces and veth \
                 pairs: run it as root)"
            ))
        })?;
        made.hub_made = true;
        let hub = made.hub.clone();
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{}/24", Self::HUB_IP),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{tag}-n{i}");
            ip(&["netns", "add", &ns])?;
            made.nodes.push(ns.clone());
            let veth = format!("v{i}");
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &veth, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &veth, "up"])?;
            let addr = format!("{}/24", Self::node_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(made)
    }

    /// Node `i`'s address (on its `eth0`).
    pub fn node_ip(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, i as u8 + 1))
    }

    /// Every node's address, in order.
    pub fn node_ips(&self) -> Vec<IpAddr> {
        (0..self.nodes.len()).map(Self::node_ip).collect()
    }

    fn path(name: &str) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(name)
    }

    fn open(name: &str) -> Result<OwnedFd, HarnessError> {
        let path = Self::path(name);
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(|e| err(format!("{}: {e}", path.display())))
    }

    /// Moves the calling thread into the hub namespace. Sockets it opens afterwards, and
    /// threads and processes it starts, are in the hub (a tokio runtime built on this thread
    /// afterwards has every worker there).
    pub fn enter_hub(&self) -> Result<(), HarnessError> {
        let fd = Self::open(&self.hub)?;
        setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| err(format!("setns: {e}")))
    }

    /// Node `i`'s namespace's name, for `ip netns exec NAME …` (how the harness starts each
    /// node process in its namespace).
    pub fn node(&self, i: usize) -> Option<&str> {
        self.nodes.get(i).map(String::as_str)
    }
}

/// The `isolated` invariant of a run in namespaces, judged while every node runs: each node's
/// process (`pids[i]`) is in a network namespace (`/proc/PID/ns/net`) that no other node
/// shares, that is not the harness's (the hub) and not the machine's (PID 1's). Fails when a
/// process could not be judged.
pub(crate) fn isolated(pids: &[Option<u32>]) -> crate::scenario::Invariant {
    let ns_of = |path: String| {
        std::fs::read_link(path)
            .ok()
            .map(|l| l.display().to_string())
    };
    let hub = ns_of("/proc/thread-self/ns/net".into());
    let machine = ns_of("/proc/1/ns/net".into());
    let mut seen = std::collections::HashSet::new();
    let (mut own, mut judged) = (0, 0);
    for pid in pids {
        let Some(ns) = pid.and_then(|p| ns_of(format!("/proc/{p}/ns/net"))) else {
            continue;
        };
        judged += 1;
        if Some(&ns) != hub.as_ref() && Some(&ns) != machine.as_ref() && seen.insert(ns) {
            own += 1;
        }
    }
    let n = pids.len();
    crate::scenario::Invariant {
        name: "isolated".into(),
        passed: n > 0 && judged == n && own == n,
        detail: format!(
            "{own} of {n} nodes in a network namespace of their own ({judged} judged, none \
             the harness's or the machine's)"
        ),
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace takes its interfaces (and so the veth pairs) with it.
        // Only what this instance made (a name that existed already was never added).
        let hub = self.hub_made.then_some(&self.hub);
        for ns in self.nodes.iter().chain(hub) {
            if Self::path(ns).exists() {
                if let Err(e) = ip(&["netns", "delete", ns]) {
                    tracing::warn!(target: "pmr::testnet", %e, "cannot delete a namespace");
                }
            }
        }
    }
}
