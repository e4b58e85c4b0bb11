//! The record lifecycle end to end on a 4-validator testnet, through the `pmr` CLI only: a
//! hospital creates a 1 MiB record for a registered patient (owned by a one-time address that
//! only the patient's viewing key finds); the patient grants a doctor; the doctor opens it
//! byte-identical; the patient revokes and the doctor is refused; the hospital makes a new
//! version; the audit lists all of it and its proof verifies offline; node 0 is killed and the
//! record still opens. Wrong callers fail clearly, custodians colluding without the patient
//! cannot rebuild the key, and no node's disk holds any plaintext. A man in the middle with a
//! certificate of the network's CA cannot make the CLI seal shares to his keys.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use pmr_client::PMR;
use pmr_shares::{open_custodian_share, reconstruct_record_key, PatientShare, ShareEnvelope};
use serde_json::Value;

const PASS: &str = "lifecycle test passphrase";
const MARKER: &[u8] = b"PMR-PLAINTEXT-MARKER-7f3a";

struct Cli {
    rpc: String,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .envs(self.env.iter().cloned())
            .env_remove("PMR_ACCOUNT")
            .env("PMR_PASSPHRASE", PASS)
            .env("PMR_RPC", &self.rpc)
            .env("RUST_LOG", "warn")
            .current_dir(&self.dir)
            .output()
            .expect("run pmr")
    }

    /// Runs a command that must succeed; returns its JSON output.
    fn ok(&self, args: &[&str]) -> Value {
        self.ok_said(args).0
    }

    /// [`Cli::ok`], also returning what the command wrote to stderr.
    fn ok_said(&self, args: &[&str]) -> (Value, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(&all);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "pmr {} failed:\n{err}",
            args.join(" ")
        );
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pmr {}: output is not JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (json, err)
    }

    /// Runs a command that must fail saying `says`, on one line, with RUST_BACKTRACE=1 set (as
    /// on many developer machines): no backtrace, no colour codes.
    fn fails(&self, args: &[&str], says: &str) {
        let out = Command::new(BIN)
            .args(args)
            .envs(self.env.iter().cloned())
            .env_remove("PMR_ACCOUNT")
            .env("PMR_PASSPHRASE", PASS)
            .env("PMR_RPC", &self.rpc)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "1")
            .current_dir(&self.dir)
            .output()
            .expect("run pmr");
        let err = String::from_utf8_lossy(&out.stderr);
        let cmd = args.join(" ");
        assert!(!out.status.success(), "pmr {cmd} succeeded");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.contains(says),
            "pmr {cmd}: the last line does not say `{says}`:\n{err}"
        );
        let errors = err.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(errors, 1, "pmr {cmd}:\n{err}");
        assert!(
            !err.contains('\x1b') && !err.contains("backtrace") && !err.contains("Location"),
            "pmr {cmd}: more than the error line:\n{err}"
        );
    }

    /// The CLI against nodes 0 to 3 of `net`, working in `dir`.
    fn of(net: &Net, dir: &Path) -> Self {
        let rpcs: Vec<String> = (0..4).map(|i| net.cluster.rpc(i).to_string()).collect();
        Cli {
            rpc: rpcs.join(","),
            dir: dir.to_path_buf(),
            env: net.cli_env(),
        }
    }

    /// The hospital whose key is `hospital_key` registers `patient` with what its
    /// `identity show --national-id` printed (`shown`).
    fn register_patient(&self, patient: &str, shown: &Value, hospital_key: &str) {
        let field = |k: &str| shown[k].as_str().unwrap().to_string();
        self.ok(&[
            "patient",
            "register",
            "--patient",
            patient,
            "--commitment",
            &field("pseudonym_commitment"),
            "--encryption-key",
            &field("encryption_key"),
            "--meta-address",
            &field("stealth_meta_address"),
            "--signature",
            &field("registration_signature"),
            "--key",
            hospital_key,
        ]);
    }

    fn identity(&self, name: &str) -> String {
        let out = self.run(&["identity", "new", "--out", &format!("{name}.json")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The path of development account `name` (`admin`, `hospital`) of `net`.
fn dev_key(net: &Net, name: &str) -> String {
    let path = net.dir.path().join("accounts").join(format!("{name}.json"));
    path.to_str().unwrap().to_string()
}

fn record_bytes(seed: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(1 << 20);
    let mut x = seed as u32 + 1;
    while data.len() < (1 << 20) - MARKER.len() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        data.push((x >> 16) as u8);
        if data.len() % 65_536 == 100 {
            data.extend_from_slice(MARKER);
        }
    }
    data.extend_from_slice(MARKER);
    data
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_record_lifecycle_through_the_cli() {
    let mut net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let work = tempfile::tempdir().unwrap();
    let cli = Cli::of(&net, work.path());
    let (admin_key, hospital_key) = (dev_key(&net, "admin"), dev_key(&net, "hospital"));
    let (admin_key, hospital_key) = (admin_key.as_str(), hospital_key.as_str());

    // Identities: a patient, a doctor, a stranger; keystores are encrypted.
    let patient = cli.identity("patient");
    let doctor = cli.identity("doctor");
    let stranger = cli.identity("stranger");
    let ks = std::fs::read_to_string(work.path().join("doctor.json")).unwrap();
    assert!(ks.contains("\"ciphertext\"") && ks.contains("scrypt"));
    let out = Command::new(BIN)
        .args(["identity", "show", "--key", "doctor.json"])
        .env("PMR_PASSPHRASE", "not the passphrase")
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    // The admin permits the doctor and the stranger; they publish their encryption keys.
    for who in [&doctor, &stranger] {
        cli.ok(&["admin", "permit", who, "--key", admin_key]);
    }
    for key in ["doctor.json", "stranger.json"] {
        cli.ok(&["identity", "register-key", "--key", key]);
    }

    // The patient computes the pseudonym commitment of their ABHA number; the hospital
    // registers them with it and their stealth meta-address.
    let shown = cli.ok(&[
        "identity",
        "show",
        "--key",
        "patient.json",
        "--national-id",
        "91-2345-6789-0123",
    ]);
    assert_eq!(
        shown["address"].as_str().unwrap().to_lowercase(),
        patient.to_lowercase()
    );
    let encryption_key = shown["encryption_key"].as_str().unwrap().to_string();
    let meta_address = shown["stealth_meta_address"].as_str().unwrap().to_string();
    assert!(meta_address.starts_with("st:eth:0x"), "{meta_address}");
    cli.fails(
        &[
            "identity",
            "show",
            "--key",
            "patient.json",
            "--national-id",
            "12-34",
        ],
        "national health ID",
    );
    cli.register_patient(&patient, &shown, hospital_key);

    // The hospital creates a 1 MiB record.
    let v0 = record_bytes(1);
    std::fs::write(work.path().join("scan-v0.bin"), &v0).unwrap();

    // First through a man in the middle holding a certificate of the network's CA, who answers
    // the patient's encryption key, then every custodian's custody key, with one of its own:
    // the CLI checks the patient's key against the patient's own signature and the custody
    // keys against the genesis it holds, names the mismatch, and seals and mints nothing.
    let genesis = pmr_primitives::Genesis::load(&net.dir.path().join("genesis.json")).unwrap();
    let patient_key: [u8; 32] = hex::decode(encryption_key.trim_start_matches("0x"))
        .unwrap()
        .try_into()
        .unwrap();
    let custody_swaps: Vec<([u8; 32], [u8; 32])> = genesis
        .custodians()
        .iter()
        .map(|c| (c.custody_key, [0x66; 32]))
        .collect();
    assert_eq!(custody_swaps.len(), 4);
    let create_v0 = [
        "record",
        "create",
        "--patient",
        &patient,
        "--type",
        "11",
        "--file",
        "scan-v0.bin",
        "--key",
        hospital_key,
    ];
    for (swaps, says) in [
        (vec![(patient_key, [0x77; 32])], "encryption key mismatch"),
        (custody_swaps, "custodian mismatch"),
    ] {
        let mitm = crate::mitm::Mitm::start(
            &net.dir.path().join("ca.key"),
            &net.dir.path().join("ca.pem"),
            net.cluster.rpc(0),
            swaps,
        )
        .await;
        let through_mitm = Cli {
            rpc: mitm.url.clone(),
            dir: work.path().to_path_buf(),
            env: net.cli_env(),
        };
        through_mitm.fails(&create_v0, says);
        assert!(mitm.rewrites() > 0, "the proxy swapped nothing ({says})");
    }
    let minted = view(&net.client(0).await, PMR::totalMintedCall {}).await;
    assert_eq!(minted, alloy_primitives::U256::ZERO, "nothing is minted");
    let created = cli.ok(&create_v0);
    let token = created["token_id"].as_str().unwrap().to_string();

    // The patient's viewing key finds the record among the announcements; its owner is a
    // one-time address, not the patient's, and is the token's owner on-chain.
    let list = ["record", "list", "--key", "patient.json"];
    let (listed, said) = cli.ok_said(&list);
    assert!(said.contains("scanned 1 new announcements"), "{said}");
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["token_id"], created["token_id"]);
    assert_eq!(listed[0]["versions"], 1);
    assert_eq!(listed[0]["record_type"], 11);
    let hospital = net.account("hospital").address();
    let address = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<alloy_primitives::Address>()
            .unwrap()
    };
    assert_eq!(address(&listed[0]["hospital"]), hospital);
    let one_time = address(&listed[0]["owner"]);
    assert_ne!(
        one_time,
        patient.parse::<alloy_primitives::Address>().unwrap()
    );
    let on_chain = view(
        &net.client(0).await,
        PMR::ownerOfCall {
            tokenId: token.parse().unwrap(),
        },
    )
    .await;
    assert_eq!(on_chain, one_time);
    // Nobody else's viewing key finds it.
    let theirs = cli.ok(&["record", "list", "--key", "doctor.json"]);
    assert_eq!(theirs.as_array().unwrap().len(), 0);

    // A second record for the same patient, under another one-time owner: the next list scans
    // only the announcement minted since the last one, and finds both.
    std::fs::write(
        work.path().join("note.bin"),
        b"a second record: a short note",
    )
    .unwrap();
    let second = cli.ok(&[
        "record",
        "create",
        "--patient",
        &patient,
        "--type",
        "12",
        "--file",
        "note.bin",
        "--key",
        hospital_key,
    ]);
    let (listed, said) = cli.ok_said(&list);
    assert!(said.contains("scanned 1 new announcements"), "{said}");
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["token_id"], created["token_id"]);
    assert_eq!(listed[1]["token_id"], second["token_id"]);
    assert_eq!(listed[1]["record_type"], 12);
    assert_ne!(address(&listed[1]["owner"]), one_time);
    // Nothing new: nothing scanned, the cache still knows both; a rescan reads them all again.
    let (again, said) = cli.ok_said(&list);
    assert!(said.contains("scanned 0 new announcements"), "{said}");
    assert_eq!(again.as_array().unwrap().len(), 2);
    let mut rescan = list.to_vec();
    rescan.push("--rescan");
    let (again, said) = cli.ok_said(&rescan);
    assert!(said.contains("scanned 2 new announcements"), "{said}");
    assert_eq!(again.as_array().unwrap().len(), 2);

    // An unknown token is named, not shown as the contract's raw error.
    cli.fails(
        &[
            "record",
            "open",
            "--token",
            "99",
            "-o",
            "none.bin",
            "--key",
            "patient.json",
        ],
        "no record with token 99",
    );

    // Not a hospital: refused at the upload, before anything is stored or minted. Not the
    // owner: refused.
    std::fs::write(work.path().join("x.bin"), b"x").unwrap();
    cli.fails(
        &[
            "record",
            "create",
            "--patient",
            &patient,
            "--type",
            "1",
            "--file",
            "x.bin",
            "--key",
            "stranger.json",
        ],
        "only hospitals may upload records",
    );
    cli.fails(
        &[
            "access",
            "grant",
            "--token",
            &token,
            "--to",
            &doctor,
            "--key",
            "stranger.json",
        ],
        "only the patient can do this",
    );

    // The patient grants the doctor; the doctor opens the record byte-identical.
    cli.ok(&[
        "access",
        "grant",
        "--token",
        &token,
        "--to",
        &doctor,
        "--expires",
        "1h",
        "--key",
        "patient.json",
    ]);
    let opened = cli.ok(&[
        "record",
        "open",
        "--token",
        &token,
        "-o",
        "doctor-copy.bin",
        "--key",
        "doctor.json",
    ]);
    assert_eq!(opened["version"], 0);
    assert_eq!(
        std::fs::read(work.path().join("doctor-copy.bin")).unwrap(),
        v0
    );

    // No grant; an expired grant.
    cli.fails(
        &[
            "record",
            "open",
            "--token",
            &token,
            "-o",
            "s.bin",
            "--key",
            "stranger.json",
        ],
        "has no grant",
    );
    let soon = (now_s() + 6).to_string();
    cli.ok(&[
        "access",
        "grant",
        "--token",
        &token,
        "--to",
        &stranger,
        "--expires",
        &soon,
        "--key",
        "patient.json",
    ]);
    while now_s() <= soon.parse::<u64>().unwrap() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cli.fails(
        &[
            "record",
            "open",
            "--token",
            &token,
            "-o",
            "s.bin",
            "--key",
            "stranger.json",
        ],
        "grant expired",
    );
    assert!(!work.path().join("s.bin").exists());

    // Revoked: the doctor is refused.
    cli.ok(&[
        "access",
        "revoke",
        "--token",
        &token,
        "--to",
        &doctor,
        "--key",
        "patient.json",
    ]);
    cli.fails(
        &[
            "record",
            "open",
            "--token",
            &token,
            "-o",
            "d2.bin",
            "--key",
            "doctor.json",
        ],
        "grant revoked",
    );

    // A new version, under a fresh key.
    let v1 = record_bytes(2);
    std::fs::write(work.path().join("scan-v1.bin"), &v1).unwrap();
    // The chain does not say whose record it is: the hospital names the patient (whose key
    // seals the new essential share; `--patient` is required).
    let updated = cli.ok(&[
        "record",
        "update",
        "--token",
        &token,
        "--patient",
        &patient,
        "--file",
        "scan-v1.bin",
        "--key",
        hospital_key,
    ]);
    assert_eq!(updated["version"], 1);
    assert_ne!(updated["key_commitment"], created["key_commitment"]);

    // The audit lists all of it; its proof verifies offline against the genesis, and a
    // tampered proof does not.
    let audit = cli.ok(&[
        "audit",
        "--token",
        &token,
        "--proof",
        "proof.json",
        "--account",
        "patient.json",
    ]);
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in ["minted", "granted", "released", "revoked", "version"] {
        assert!(kinds.contains(&k), "audit lacks `{k}`: {kinds:?}");
    }
    let genesis = net.dir.path().join("genesis.json");
    let genesis = genesis.to_str().unwrap();
    let verified = cli.ok(&[
        "verify-proof",
        "proof.json",
        "--token",
        &token,
        "--genesis",
        genesis,
    ]);
    assert_eq!(verified["events"].as_array().unwrap().len(), kinds.len());
    let proof = std::fs::read_to_string(work.path().join("proof.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&proof).unwrap();
    let receipt = doc["entries"][0]["receipt"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &receipt[..receipt.len() - 1],
        if receipt.ends_with('0') { "1" } else { "0" }
    );
    doc["entries"][0]["receipt"] = Value::String(flipped);
    std::fs::write(work.path().join("forged.json"), doc.to_string()).unwrap();
    cli.fails(
        &[
            "verify-proof",
            "forged.json",
            "--token",
            &token,
            "--genesis",
            genesis,
        ],
        "does not verify",
    );
    let mut old = doc.clone();
    old["entries"][0]["receipt"] = Value::String(receipt);
    old["version"] = Value::from(1);
    std::fs::write(work.path().join("v1.json"), old.to_string()).unwrap();
    cli.fails(
        &[
            "verify-proof",
            "v1.json",
            "--token",
            &token,
            "--genesis",
            genesis,
        ],
        "format version 1",
    );
    cli.fails(
        &[
            "verify-proof",
            "proof.json",
            "--token",
            "999",
            "--genesis",
            genesis,
        ],
        "not token 999",
    );

    // All four custodians pooling their shares of version 1 cannot rebuild its key without
    // the patient's essential share.
    let c1 = net.client(1).await;
    let version = c1
        .call(
            None,
            pmr_client::PMR_ADDRESS,
            alloy_sol_types::SolCall::abi_encode(&PMR::recordVersionCall {
                tokenId: token.parse().unwrap(),
                index: alloy_primitives::U256::from(1),
            })
            .into(),
            None,
        )
        .await
        .unwrap();
    let version =
        <PMR::recordVersionCall as alloy_sol_types::SolCall>::abi_decode_returns(&version.output)
            .unwrap();
    let env_cid = pmr_blob::Cid::try_from(&version.envelope.to_cid_bytes()[..]).unwrap();
    let env =
        ShareEnvelope::decode(&c1.get_blob_bytes(&env_cid.to_string()).await.unwrap()).unwrap();
    let pooled: Vec<_> = (0..4)
        .map(|i| {
            let secret = net.custodian(i).x25519().clone();
            open_custodian_share(&env, i as u16 + 1, &secret).expect("custodian opens its slot")
        })
        .collect();
    let guess = PatientShare::from_bytes(&[7u8; 32]).unwrap();
    assert!(
        reconstruct_record_key(&env, &guess, &pooled).is_err(),
        "custodians without the patient's share must not rebuild the key"
    );

    // Node 0 is killed; the patient still opens the latest version through the others.
    net.cluster.kill(0).unwrap();
    let own = cli.ok(&[
        "record",
        "open",
        "--token",
        &token,
        "-o",
        "own-copy.bin",
        "--key",
        "patient.json",
    ]);
    assert_eq!(own["version"], 1);
    assert_eq!(std::fs::read(work.path().join("own-copy.bin")).unwrap(), v1);

    // No plaintext anywhere on any node's disk.
    let mut all = Vec::new();
    files(net.dir.path(), &mut all);
    assert!(all.len() > 20, "node files found: {}", all.len());
    for f in all {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext marker found in {}",
            f.display()
        );
    }
    // ... while the opened copies do hold it (the marker check can fail).
    assert!(v1.windows(MARKER.len()).any(|w| w == MARKER));
}

/// The custody status node `i` reports for `token`: `(version, status, index)` per version.
async fn custody_status(net: &Net, i: usize, token: &str) -> Vec<(u32, String, u32)> {
    custody_entries(net, i, token)
        .await
        .into_iter()
        .map(|v| (v.version, v.status, v.custodian_index))
        .collect()
}

/// What `ShareService.GetCustodyStatus` of node `i` answers for `token`.
async fn custody_entries(net: &Net, i: usize, token: &str) -> Vec<pmr_proto::v1::CustodyEntry> {
    let c = net.client(i).await;
    let token: alloy_primitives::U256 = token.parse().unwrap();
    pmr_proto::v1::share_service_client::ShareServiceClient::new(c.channel())
        .get_custody_status(pmr_proto::v1::GetCustodyStatusRequest {
            token_id: token.to_be_bytes::<32>().to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions
}

/// [`custody_entries`] once node `i` took custody of `token` (fails after [`T`]).
async fn wait_custody(net: &Net, i: usize, token: &str) -> Vec<pmr_proto::v1::CustodyEntry> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let entries = custody_entries(net, i, token).await;
        if !entries.is_empty() {
            return entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {i} took no custody of {token}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A custodian the council adds later (#24 §2) receives the shares of records made after it
/// joined, and none of records made before (their keys stay split as they were).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_a_custodian_added_later_holds_shares_of_new_records_only() {
    let net = start_net_spare(4, 1, |_, _| {}, |_| {}).await;
    for i in 0..5 {
        net.wait_height(i, 2).await;
    }
    let work = tempfile::tempdir().unwrap();
    let cli = Cli::of(&net, work.path());
    let (admin_key, hospital_key) = (dev_key(&net, "admin"), dev_key(&net, "hospital"));
    let (admin_key, hospital_key) = (admin_key.as_str(), hospital_key.as_str());

    let patient = cli.identity("patient");
    let shown = cli.ok(&[
        "identity",
        "show",
        "--key",
        "patient.json",
        "--national-id",
        "91-2345-6789-0124",
    ]);
    cli.register_patient(&patient, &shown, hospital_key);
    let create = |file: &str, bytes: &[u8]| {
        std::fs::write(work.path().join(file), bytes).unwrap();
        let r = cli.ok(&[
            "record",
            "create",
            "--patient",
            &patient,
            "--type",
            "3",
            "--file",
            file,
            "--key",
            hospital_key,
        ]);
        r["token_id"].as_str().unwrap().to_string()
    };
    let before = create("before.bin", b"made while four custodians held shares");

    // Node 4's operator becomes the fifth custodian, from its public key listing.
    let listing = key_listing(&net.cluster.home(4));
    std::fs::write(work.path().join("node4.json"), &listing).unwrap();
    // Not by a hospital, which is no council member.
    cli.fails(
        &[
            "gov",
            "propose",
            "add-custodian",
            "--keys",
            "node4.json",
            "--key",
            hospital_key,
        ],
        "NotCouncilMember",
    );
    let made = cli.ok(&[
        "gov",
        "propose",
        "add-custodian",
        "--keys",
        "node4.json",
        "--key",
        admin_key,
    ]);
    assert_eq!(made["executed"], true, "{made}");
    let listed = ShareListing::of(&net, 0).await;
    assert_eq!(listed.0, 5, "custodians after the addition");
    assert_eq!(
        ShareListing::of(&net, 4).await.1,
        Some(5),
        "node 4 is custodian 5"
    );

    // A custodian the genesis does not name is vouched for by nodes agreeing on it: a client
    // that asks one node (or one node twice) seals nothing and mints nothing.
    std::fs::write(work.path().join("one.bin"), b"asked of one node").unwrap();
    let minted = view(&net.client(0).await, PMR::totalMintedCall {}).await;
    for rpc in [
        net.cluster.rpc(0).to_string(),
        format!("{0},{0}", net.cluster.rpc(1)),
    ] {
        let one = Cli {
            rpc,
            dir: work.path().to_path_buf(),
            env: net.cli_env(),
        };
        one.fails(
            &[
                "record",
                "create",
                "--patient",
                &patient,
                "--type",
                "3",
                "--file",
                "one.bin",
                "--key",
                hospital_key,
            ],
            "only one node was asked",
        );
    }
    assert_eq!(
        view(&net.client(0).await, PMR::totalMintedCall {}).await,
        minted
    );

    let after = create("after.bin", b"made once five custodians held shares");
    // Node 4 takes custody of the new record's share (index 5, opened and verified against
    // the envelope's commitments), and has none of the older record.
    let held: Vec<_> = wait_custody(&net, 4, &after)
        .await
        .into_iter()
        .map(|v| (v.version, v.status, v.custodian_index))
        .collect();
    assert_eq!(
        held,
        vec![(0, "held".to_string(), 5)],
        "node 4 for the new record"
    );
    assert!(
        custody_status(&net, 4, &before)
            .await
            .iter()
            .all(|(_, status, _)| status != "held"),
        "node 4 holds no share of a record made before it joined"
    );
    // The genesis custodians hold both.
    for token in [&before, &after] {
        let s = custody_status(&net, 0, token).await;
        assert_eq!(s.len(), 1, "node 0 for {token}: {s:?}");
        assert_eq!(s[0].1, "held");
    }

    // Removed again: its index stays, but it is no active custodian, and records made from
    // then on are split to the genesis's four only.
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let operator = listing["operator"].as_str().unwrap();
    let removed = cli.ok(&[
        "gov",
        "propose",
        "remove-custodian",
        operator,
        "--key",
        admin_key,
    ]);
    assert_eq!(removed["executed"], true, "{removed}");
    let listed = ShareListing::of(&net, 0).await;
    assert_eq!(listed.0, 4, "active custodians after the removal");
    assert_eq!(
        ShareListing::of(&net, 4).await.1,
        None,
        "node 4 is no custodian"
    );
    let last = create("last.bin", b"made after the fifth custodian left");
    for (token, custodians) in [(&before, 4), (&after, 5), (&last, 4)] {
        assert_eq!(
            envelope_slots(&net, token).await,
            custodians,
            "record {token}"
        );
    }
}

/// How many custodians the share envelope of `token`'s first version names (as node 0, a
/// custodian, took custody of it).
async fn envelope_slots(net: &Net, token: &str) -> usize {
    let cid = wait_custody(net, 0, token).await[0].envelope_cid.clone();
    let bytes = net.client(0).await.get_blob_bytes(&cid).await.unwrap();
    ShareEnvelope::decode(&bytes).unwrap().custodians().len()
}

/// What `ShareService.GetCustodians` answers: how many custodians, and this node's index.
struct ShareListing(usize, Option<u32>);

impl ShareListing {
    async fn of(net: &Net, i: usize) -> Self {
        let c = net.client(i).await;
        let r = pmr_proto::v1::share_service_client::ShareServiceClient::new(c.channel())
            .get_custodians(pmr_proto::v1::GetCustodiansRequest {})
            .await
            .unwrap()
            .into_inner();
        ShareListing(r.custodians.len(), r.this_node.map(|t| t.index))
    }
}
