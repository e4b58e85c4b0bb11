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

#[test]
fn four_operators_form_a_genesis_from_public_files_only() {
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
    let admin = pmr_client::Wallet::random().address().to_string();
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
    let names = openssl(&[
        "x509",
        "-in",
        s(&node_pem),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        names.contains("node-a.example") && names.contains("127.0.0.1"),
        "{names}"
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
}
