//! The genesis ceremony (#24 §1): four operators, each with a home of its own, and a
//! coordinator share only public files: each operator's `pmr keys show --output json`, the
//! draft, the genesis and its hash. No private key leaves a home; every operator verifies the
//! genesis against the announced hash and its own keys, and `pmr init` keeps the keys. The
//! coordinator, as CA holder, signs a node's TLS certificate from a request; the node's TLS key
//! never leaves its home.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn ok(args: &[&str], envs: &[(&str, &str)]) -> String {
    let (good, text) = run_pmr(args, envs);
    assert!(good, "pmr {args:?} failed:\n{text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_operators_form_a_genesis_from_public_files_only() {
    let root = tempfile::tempdir().unwrap();
    let pass = [("PMR_KEY_PASSPHRASE", "correct horse battery staple")];
    let public = root.path().join("public");
    std::fs::create_dir_all(&public).unwrap();
    let names = ["state-a", "state-b", "hospital-c", "ministry-d"];
    let homes: Vec<_> = names.iter().map(|n| root.path().join(n)).collect();
    // Each operator, on its own machine: keys only, then the public listing.
    for (name, home) in names.iter().zip(&homes) {
        ok(&["keys", "init", "--home", s(home)], &pass);
        let listing = ok(
            &["keys", "show", "--home", s(home), "--output", "json"],
            &[],
        );
        let v: serde_json::Value = serde_json::from_str(&listing).expect("JSON listing");
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        // Public keys and addresses only.
        for f in &fields {
            assert!(
                [
                    "validator_address",
                    "consensus_key",
                    "peer_id",
                    "separate_network_key",
                    "custody_key",
                    "operator"
                ]
                .contains(&f.as_str()),
                "unexpected field {f} in {listing}"
            );
        }
        std::fs::write(public.join(format!("{name}.json")), listing).unwrap();
        assert!(!home.join("keys/admin.json").exists());
    }
    // A second `keys init` on the same home is refused (it would replace the keys).
    assert!(!run_pmr(&["keys", "init", "--home", s(&homes[0])], &pass).0);

    // The coordinator, with the public files only.
    let draft = public.join("draft.json");
    ok(
        &["genesis", "new", "--chain-id", "7070", "--out", s(&draft)],
        &[],
    );
    // Finalizing before there is a validator or an admin is refused.
    let genesis = public.join("genesis.json");
    assert!(
        !run_pmr(
            &["genesis", "finalize", s(&draft), "--out", s(&genesis)],
            &[]
        )
        .0
    );
    for name in &names {
        let keys = public.join(format!("{name}.json"));
        ok(
            &["genesis", "add-validator", s(&draft), "--keys", s(&keys)],
            &[],
        );
    }
    // The same operator twice (under another name), or a file that is no key listing: refused,
    // and the draft is unchanged.
    let before = std::fs::read(&draft).unwrap();
    let again = public.join(format!("{}.json", names[0]));
    let (added, text) = run_pmr(
        &[
            "genesis",
            "add-validator",
            s(&draft),
            "--keys",
            s(&again),
            "--name",
            "twice",
        ],
        &[],
    );
    assert!(!added, "{text}");
    assert!(
        !run_pmr(
            &["genesis", "add-validator", s(&draft), "--keys", s(&draft)],
            &[]
        )
        .0
    );
    assert_eq!(std::fs::read(&draft).unwrap(), before);
    assert!(
        !run_pmr(
            &["genesis", "finalize", s(&draft), "--out", s(&genesis)],
            &[]
        )
        .0
    );
    // The governing account's key stays with whoever governs (here, the harness that will
    // talk to the network as that account).
    let net = root.path().join("net");
    let admin = pmr_node::keys::generate_account(&net.join("accounts/admin.json"))
        .unwrap()
        .address()
        .to_string();
    let hospital = pmr_client::Wallet::random().address().to_string();
    ok(
        &["genesis", "set-admin", s(&draft), "--address", &admin],
        &[],
    );
    ok(
        &["genesis", "add-hospital", s(&draft), "--address", &hospital],
        &[],
    );
    let text = ok(
        &[
            "genesis",
            "finalize",
            s(&draft),
            "--out",
            s(&genesis),
            "--output",
            "json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hash = v["hash"].as_str().unwrap().to_string();
    assert_eq!(v["validators"].as_array().unwrap().len(), 4);

    // Every operator verifies the genesis against the hash and its own keys, then inits.
    let wrong = format!("0x{}", "11".repeat(32));
    for home in &homes {
        ok(
            &[
                "genesis",
                "verify",
                s(&genesis),
                "--hash",
                &hash,
                "--home",
                s(home),
            ],
            &[],
        );
        assert!(!run_pmr(&["genesis", "verify", s(&genesis), "--hash", &wrong], &[]).0);
        let node_key = std::fs::read(home.join("keys/node_key.json")).unwrap();
        ok(&["init", "--home", s(home), "--genesis", s(&genesis)], &[]);
        assert_eq!(
            std::fs::read(home.join("keys/node_key.json")).unwrap(),
            node_key,
            "init replaced the key the genesis names"
        );
        assert!(
            !home.join("keys/admin.json").exists(),
            "a validator host got an admin key"
        );
        let g = pmr_primitives::Genesis::load(&home.join("genesis.json")).unwrap();
        assert_eq!(format!("{}", g.hash()), hash);
    }
    // TLS between organizations: the ceremony names the coordinator as CA holder; each node
    // makes its TLS key on its own host and sends a request; the CA key stays with the
    // coordinator, the node's key with the node.
    let ca_dir = root.path().join("coordinator-ca");
    ok(&["tls", "new-ca", "--out", s(&ca_dir)], &[]);
    let request = public.join("state-a.tls-request.json");
    ok(
        &[
            "tls",
            "request",
            "--home",
            s(&homes[0]),
            "--host",
            "node-a.example",
            "--ip",
            "127.0.0.1",
            "--out",
            s(&request),
        ],
        &[],
    );
    let req_text = std::fs::read_to_string(&request).unwrap();
    assert!(!req_text.contains("PRIVATE"), "{req_text}");
    let cert = public.join("state-a.pem");
    ok(
        &[
            "tls",
            "sign",
            "--ca-key",
            s(&ca_dir.join("ca.key")),
            "--request",
            s(&request),
            "--out",
            s(&cert),
        ],
        &[],
    );
    ok(
        &[
            "tls",
            "install",
            "--home",
            s(&homes[0]),
            "--cert",
            s(&cert),
            "--ca-cert",
            s(&ca_dir.join("ca.pem")),
        ],
        &[],
    );
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is missing: run ./scripts/setup");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let node_pem = homes[0].join("tls/node.pem");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        s(&homes[0].join("tls/ca.pem")),
        s(&node_pem),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    // The certificate carries the key the node made, and names what was asked.
    let cert_key = openssl(&["x509", "-in", s(&node_pem), "-noout", "-pubkey"]);
    let node_key = openssl(&["pkey", "-in", s(&homes[0].join("tls/node.key")), "-pubout"]);
    assert_eq!(cert_key, node_key);
    let sans = openssl(&[
        "x509",
        "-in",
        s(&node_pem),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        sans.contains("node-a.example") && sans.contains("127.0.0.1"),
        "{sans}"
    );
    // A request whose key is not a P-256 point is refused.
    let bad = public.join("bad.tls-request.json");
    std::fs::write(&bad, req_text.replacen("\"04", "\"05", 1)).unwrap();
    let (signed, text) = run_pmr(
        &[
            "tls",
            "sign",
            "--ca-key",
            s(&ca_dir.join("ca.key")),
            "--request",
            s(&bad),
            "--out",
            s(&public.join("bad.pem")),
        ],
        &[],
    );
    assert!(
        !signed && text.contains("not an uncompressed P-256 point"),
        "{text}"
    );

    // A node whose keys are not in the genesis fails verification.
    let stranger = root.path().join("stranger");
    ok(&["keys", "init", "--home", s(&stranger)], &pass);
    let (good, text) = run_pmr(
        &[
            "genesis",
            "verify",
            s(&genesis),
            "--hash",
            &hash,
            "--home",
            s(&stranger),
        ],
        &[],
    );
    assert!(!good && text.contains("is not in"), "{text}");
    // Nothing secret was shared: the public directory holds listings, the draft and the
    // genesis, and none of them holds a secret field.
    for entry in std::fs::read_dir(&public).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains("secret") && !text.contains("ciphertext"),
            "{text}"
        );
    }

    start_the_network(root.path(), &names, &homes, &public, &ca_dir, &pass).await;
}

/// The last step: every operator gets its certificate from the CA holder, picks its ports,
/// adds the others as peers from their public listings and announced addresses (`pmr peer
/// add`), and starts its node; the four commit blocks together.
async fn start_the_network(
    root: &Path,
    names: &[&str],
    homes: &[std::path::PathBuf],
    public: &Path,
    ca_dir: &Path,
    pass: &[(&str, &str)],
) {
    use pmr_node::config::{Home, NodeConfig};
    let ports = pmr_testnet::testnet_ports(names.len(), None).unwrap();
    let tcp = |p: u16| format!("/ip4/127.0.0.1/tcp/{p}");
    for (i, home) in homes.iter().enumerate() {
        if i > 0 {
            let request = public.join(format!("{}.tls-request.json", names[i]));
            ok(
                &["tls", "request", "--home", s(home), "--host", names[i]]
                    .into_iter()
                    .chain(["--ip", "127.0.0.1", "--out", s(&request)])
                    .collect::<Vec<_>>(),
                &[],
            );
            let cert = public.join(format!("{}.pem", names[i]));
            let ca_key = ca_dir.join("ca.key");
            ok(
                &[
                    "tls",
                    "sign",
                    "--ca-key",
                    s(&ca_key),
                    "--request",
                    s(&request),
                ]
                .into_iter()
                .chain(["--out", s(&cert)])
                .collect::<Vec<_>>(),
                &[],
            );
            let ca = ca_dir.join("ca.pem");
            ok(
                &["tls", "install", "--home", s(home), "--cert", s(&cert)]
                    .into_iter()
                    .chain(["--ca-cert", s(&ca)])
                    .collect::<Vec<_>>(),
                &[],
            );
        }
        let path = Home::new(home.clone()).config();
        let mut cfg = NodeConfig::load(&path).unwrap();
        let p = &ports[i];
        cfg.rpc_listen = format!("127.0.0.1:{}", p.rpc).parse().unwrap();
        cfg.metrics_listen = Some(format!("127.0.0.1:{}", p.metrics).parse().unwrap());
        cfg.consensus.p2p_listen = tcp(p.p2p).parse().unwrap();
        cfg.consensus.gossip_listen = tcp(p.gossip).parse().unwrap();
        cfg.content.listen = tcp(p.content).parse().unwrap();
        cfg.save(&path).unwrap();
    }
    for (i, home) in homes.iter().enumerate() {
        for (j, name) in names.iter().enumerate().filter(|(j, _)| *j != i) {
            let listing = public.join(format!("{name}.json"));
            let (p2p, gossip, content) = (
                tcp(ports[j].p2p),
                tcp(ports[j].gossip),
                tcp(ports[j].content),
            );
            ok(
                &["peer", "add", "--home", s(home), "--keys", s(&listing)]
                    .into_iter()
                    .chain(["--p2p", &p2p, "--gossip", &gossip, "--content", &content])
                    .collect::<Vec<_>>(),
                &[],
            );
        }
        // Itself, or a peer already there: refused, with the reason.
        let own = public.join(format!("{}.json", names[i]));
        let other = public.join(format!("{}.json", names[(i + 1) % names.len()]));
        for (listing, why) in [(&own, "this node itself"), (&other, "already a peer")] {
            let (added, text) = run_pmr(
                &["peer", "add", "--home", s(home), "--keys", s(listing)]
                    .into_iter()
                    .chain([
                        "--p2p",
                        "/ip4/127.0.0.1/tcp/1",
                        "--gossip",
                        "/ip4/127.0.0.1/tcp/2",
                    ])
                    .collect::<Vec<_>>(),
                &[],
            );
            assert!(!added && text.contains(why), "{text}");
        }
        let listed = ok(
            &["peer", "list", "--home", s(home), "--output", "json"],
            &[],
        );
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(
            listed.as_array().unwrap().len(),
            names.len() - 1,
            "{listed}"
        );
    }
    // The harness's view of the network: the homes as they are, the CA, the governing account.
    let net = root.join("net");
    let manifest = pmr_testnet::Manifest {
        chain_id: 7070,
        nodes: names
            .iter()
            .zip(&ports)
            .map(|(name, p)| pmr_testnet::NodeEntry {
                name: name.to_string(),
                home: Path::new("..").join(name),
                rpc: format!("https://127.0.0.1:{}", p.rpc),
                metrics: format!("http://127.0.0.1:{}/metrics", p.metrics),
                validator: true,
            })
            .collect(),
        accounts: vec![("admin".into(), "accounts/admin.json".into())],
        ca: Path::new("..").join("coordinator-ca/ca.pem"),
    };
    manifest.save(&net).unwrap();
    let mut cluster = pmr_testnet::Cluster::open(&net, Path::new(BIN)).unwrap();
    for i in 0..names.len() {
        let env = pass.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        cluster.set_env(i, env.collect()).unwrap();
    }
    cluster.start_all().unwrap();
    let boot = std::time::Duration::from_secs(90);
    for i in 0..names.len() {
        if let Err(e) = cluster.wait_height(i, 3, boot).await {
            panic!("{e}\n{}", cluster.log_tail(i, 30));
        }
    }
    // One chain: every node holds the same block at height 2, and it carries every
    // validator's signature that reached the commit (at least 3 of 4).
    let mut hashes = std::collections::HashSet::new();
    for i in 0..names.len() {
        let client = cluster.client(i, boot).await.unwrap();
        let block = client.block(2).await.unwrap();
        let signatures = block.certificate.map_or(0, |c| c.signatures.len());
        assert!(signatures >= 3, "height 2 carries {signatures} signatures");
        hashes.insert(block.hash);
    }
    assert_eq!(
        hashes.len(),
        1,
        "the nodes hold different blocks at height 2"
    );
}
