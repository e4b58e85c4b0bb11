//! Shared helpers of the multi-node tests: a real testnet of `pmr` processes on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::SolCall;
use pmr_client::{ConnectOptions, PmrClient, Wallet, PMR, PMR_ADDRESS};
use pmr_testnet::Cluster;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_pmr");
pub(crate) const T: Duration = Duration::from_secs(60);

/// A testnet directory and its running nodes; everything is killed and deleted on drop.
pub(crate) struct Net {
    pub cluster: Cluster,
    pub dir: tempfile::TempDir,
    pub chain_id: u64,
}

/// Creates (with `pmr testnet init`) and starts a testnet of `n` validators on free ports.
/// `tweak` edits each node's config.toml before the start.
pub(crate) async fn start_net(n: usize, tweak: impl Fn(usize, &mut toml::Table)) -> Net {
    start_net_prepared(n, tweak, |_| {}).await
}

/// [`start_net`], calling `prepare` with the testnet directory just before the nodes start.
pub(crate) async fn start_net_prepared(
    n: usize,
    tweak: impl Fn(usize, &mut toml::Table),
    prepare: impl FnOnce(&Path),
) -> Net {
    start_net_spare(n, 0, tweak, prepare).await
}

/// [`start_net_prepared`] with `spare` further nodes (`n` on) outside the genesis validator set.
pub(crate) async fn start_net_spare(
    n: usize,
    spare: usize,
    tweak: impl Fn(usize, &mut toml::Table),
    prepare: impl FnOnce(&Path),
) -> Net {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args([
            "testnet",
            "init",
            "--validators",
            &n.to_string(),
            "--spare",
            &spare.to_string(),
            "--empty-block-interval",
            "200ms",
            "--home",
        ])
        .arg(dir.path())
        .output()
        .expect("run pmr testnet init");
    assert!(
        out.status.success(),
        "pmr testnet init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..n + spare {
        let path = dir.path().join(format!("node{i}/config.toml"));
        let mut cfg: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        tweak(i, &mut cfg);
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    }
    prepare(dir.path());
    let mut cluster = Cluster::open(dir.path(), Path::new(BIN)).expect("open testnet");
    cluster.start_args = vec!["--log-level".into(), "info,pmr=debug".into()];
    cluster.start_all().expect("start nodes");
    let chain_id = cluster.manifest().chain_id;
    Net {
        cluster,
        dir,
        chain_id,
    }
}

impl Net {
    pub(crate) async fn client(&self, i: usize) -> PmrClient {
        self.cluster.client(i, T).await.expect("client")
    }

    /// A client of node `i` calling as `account` (the admin's is [`Net::client`]).
    pub(crate) async fn client_as(&self, i: usize, account: &Wallet) -> PmrClient {
        self.client(i).await; // waits until the node answers
        let opts = self.cluster.connect_options().expect("options");
        PmrClient::connect(self.cluster.rpc(i), &opts.as_account(account.clone()))
            .await
            .expect("client")
    }

    /// A client of node `i` with no account: no session, only the open methods (a stranger).
    pub(crate) async fn client_without_session(&self, i: usize) -> PmrClient {
        self.client(i).await; // waits until the node answers
        let opts = ConnectOptions {
            account: None,
            ..self.cluster.connect_options().expect("options")
        };
        PmrClient::connect(self.cluster.rpc(i), &opts)
            .await
            .expect("client")
    }

    /// Waits until node `i` reaches `h`, failing with its log tail.
    pub(crate) async fn wait_height(&self, i: usize, h: u64) -> u64 {
        match self.cluster.wait_height(i, h, T).await {
            Ok(h) => h,
            Err(e) => panic!("{e}\n--- node{i} log ---\n{}", self.cluster.log_tail(i, 40)),
        }
    }

    /// The admin permits `who` (a doctor), which publishes its encryption key: an account a
    /// patient can grant. Both through node `c`.
    pub(crate) async fn add_grantee(&self, c: &PmrClient, who: &pmr_client::Identity) {
        ok(
            c,
            self.chain_id,
            &self.account("admin"),
            PMR::setPermittedCall {
                account: who.address(),
                permitted: true,
            },
        )
        .await;
        ok(
            c,
            self.chain_id,
            who.wallet(),
            pmr_contract::set_encryption_key_call(
                who.wallet(),
                self.chain_id,
                who.encryption_key(),
            )
            .unwrap(),
        )
        .await;
    }

    pub(crate) async fn height(&self, i: usize) -> u64 {
        self.client(i).await.status().await.expect("status").height
    }

    /// What the `pmr` CLI needs to reach this testnet: its CA, its genesis, and the admin as
    /// the calling account (a command signing with `--key` calls as that key instead).
    pub(crate) fn cli_env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &str| self.dir.path().join(p).to_string_lossy().into_owned();
        vec![
            ("PMR_CA", path("ca.pem")),
            ("PMR_GENESIS", path("genesis.json")),
            ("PMR_ACCOUNT", path("accounts/admin.json")),
        ]
    }

    /// The operator account of node `i` (it may pin and unpin on that node).
    pub(crate) fn operator(&self, i: usize) -> Wallet {
        self.custodian(i).wallet().clone()
    }

    /// The custodian keystore of node `i` (its operator account and custody key), opened
    /// with the passphrase file the testnet wrote beside it.
    pub(crate) fn custodian(&self, i: usize) -> pmr_client::Identity {
        let keys = self.dir.path().join(format!("node{i}/keys"));
        let passphrase = std::fs::read_to_string(keys.join("passphrase")).expect("passphrase");
        pmr_client::Identity::load(&keys.join("custodian.json"), passphrase.trim_end())
            .expect("custodian keystore")
    }

    /// A development account of the testnet (`admin` or `hospital`).
    pub(crate) fn account(&self, name: &str) -> Wallet {
        let path: PathBuf = self.dir.path().join(format!("accounts/{name}.json"));
        pmr_node::keys::load_account(&path).expect("account key")
    }

    /// Block hashes of heights `1..=to` as node `i` has them.
    pub(crate) async fn hashes(&self, i: usize, to: u64) -> Vec<Vec<u8>> {
        let c = self.client(i).await;
        let mut out = Vec::new();
        for h in 1..=to {
            out.push(c.block(h).await.expect("block").hash);
        }
        out
    }

    /// Asserts every running node in `nodes` has the same blocks up to `to`.
    pub(crate) async fn assert_same_chain(&self, nodes: &[usize], to: u64) {
        let reference = self.hashes(nodes[0], to).await;
        for &i in &nodes[1..] {
            assert_eq!(
                self.hashes(i, to).await,
                reference,
                "node{i} differs from node{}",
                nodes[0]
            );
        }
    }
}

/// A plain call from `wallet` (nonce given) to an address with no code: the simplest
/// transaction the ledger accepts.
pub(crate) fn noop_tx(wallet: &Wallet, chain_id: u64, nonce: u64) -> Bytes {
    wallet
        .sign_call(
            chain_id,
            nonce,
            Address::repeat_byte(0x42),
            Bytes::new(),
            50_000,
        )
        .expect("sign")
}

pub(crate) async fn submit_and_wait(c: &PmrClient, raw: Bytes) -> (B256, u64) {
    let hash = c.submit(raw).await.expect("submit");
    let h = c.wait_committed(hash, T).await.expect("commit");
    (hash, h)
}

/// A PMR contract call as committed: its hash, height and receipt outcome.
pub(crate) struct Sent {
    pub hash: B256,
    pub height: u64,
    pub success: bool,
    pub output: Vec<u8>,
}

/// Signs a call of the PMR contract from `from` at its next nonce and waits for its receipt.
pub(crate) async fn send(c: &PmrClient, chain_id: u64, from: &Wallet, call: impl SolCall) -> Sent {
    let nonce = c.nonce(from.address()).await.expect("nonce");
    let raw = from
        .sign_call(
            chain_id,
            nonce,
            PMR_ADDRESS,
            call.abi_encode().into(),
            1_000_000,
        )
        .expect("sign");
    let (hash, height) = submit_and_wait(c, raw).await;
    let r = c
        .receipt(hash)
        .await
        .expect("receipt")
        .receipt
        .expect("receipt body");
    Sent {
        hash,
        height,
        success: r.success,
        output: r.output,
    }
}

/// A read-only PMR contract call at node `c`'s latest height, asserting it did not revert.
pub(crate) async fn view<C: SolCall>(c: &PmrClient, call: C) -> C::Return {
    let out = c
        .call(None, PMR_ADDRESS, call.abi_encode().into(), None)
        .await
        .expect("call");
    assert!(out.success, "view reverted");
    C::abi_decode_returns(&out.output).expect("decode")
}

/// [`send`], asserting the call succeeded.
pub(crate) async fn ok(c: &PmrClient, chain_id: u64, from: &Wallet, call: impl SolCall) -> Sent {
    let s = send(c, chain_id, from, call).await;
    assert!(
        s.success,
        "transaction {} reverted: 0x{}",
        s.hash,
        hex::encode(&s.output)
    );
    s
}

/// The record type `patient`'s viewing key finds in the announcement of `token`, as node `c`
/// returns it; `None` when the record is not the patient's.
pub(crate) async fn scan_token(c: &PmrClient, patient: &Wallet, token: U256) -> Option<u32> {
    let one = view(
        c,
        PMR::announcementsCall {
            from: token,
            count: U256::from(1),
        },
    )
    .await;
    let keys = pmr_privacy::StealthKeys::derive(&patient.secret()).expect("stealth keys");
    keys.viewing_key()
        .scan(&pmr_contract::stealth::announcement(&one[0].to))
        .map(|f| f.record_type)
}

/// GETs a node's Prometheus `/metrics` (plain HTTP/1.1 on loopback) and returns the body.
pub(crate) fn scrape(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = std::net::TcpStream::connect(host).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read metrics");
    body
}

/// Runs `pmr ARGS` with `envs` added to its environment; returns whether it succeeded and
/// what it printed (stdout, then stderr).
pub(crate) fn run_pmr(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run pmr");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An operator's public key listing (`pmr keys show --home HOME --output json`), as printed.
pub(crate) fn key_listing(home: &Path) -> String {
    let (ok, text) = run_pmr(
        &[
            "keys",
            "show",
            "--home",
            home.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    assert!(ok, "{text}");
    text
}

/// The value of metric `name` in a scrape (0 when absent).
pub(crate) fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
