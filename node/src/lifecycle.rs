//! The record lifecycle on the command line: identities, administration, records, access,
//! audit and offline proof checking (`pmr identity|admin|patient|record|access|audit|
//! verify-proof`). Each command talks gRPC only, through `pmr_client::Network`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256};
use clap::{Args, Subcommand, ValueEnum};
use eyre::{bail, eyre, Context, Result};
use pmr_client::{Identity, Network, Wallet, PMR};
use pmr_consensus::{verify_receipt_inclusion, Certificate, CommitSignature};
use pmr_contract::describe_event;
use pmr_primitives::{Block, Genesis, MerkleProof};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The development testnet's gRPC endpoints (`pmr dev`).
pub const DEV_RPC: &str =
    "http://127.0.0.1:26602,http://127.0.0.1:26612,http://127.0.0.1:26622,http://127.0.0.1:26632";

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Nodes to talk to and how to print.
#[derive(Args, Clone)]
pub struct NetArgs {
    /// gRPC endpoints, comma separated: transactions go to the first that answers, share
    /// releases to every custodian among them.
    #[arg(long, env = "PMR_RPC", value_delimiter = ',', default_value = DEV_RPC)]
    pub rpc: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// Whose key signs.
#[derive(Args, Clone)]
pub struct KeyArgs {
    /// Identity keystore (`pmr identity new`), or a plain development account file
    /// (`.pmr-dev/accounts/*.json`) for commands that only sign transactions.
    #[arg(long)]
    pub key: PathBuf,
    /// File holding the keystore passphrase (default: the PMR_PASSPHRASE variable).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Create a new identity keystore (account key + X25519 key), encrypted with the passphrase.
    New {
        /// Where to write it (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// File holding the passphrase (default: the PMR_PASSPHRASE variable).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Show an identity's address, encryption key and, given a national health ID, the
    /// pseudonym commitment a hospital registers (only the identity's holder can compute it).
    Show {
        #[command(flatten)]
        key: KeyArgs,
        /// ABHA number (14 digits, dashes allowed) or ABHA address (name@abdm).
        #[arg(long)]
        national_id: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Publish this identity's encryption key on-chain (grantees must, before a grant).
    RegisterKey {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Give an account the HOSPITAL role.
    RegisterHospital {
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Give an account the CUSTODIAN role.
    AddCustodian {
        account: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Put an account on (or, with --revoke, take it off) the permission list.
    Permit {
        account: Address,
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub enum PatientCommand {
    /// A hospital registers a patient: address, pseudonym commitment and encryption key, as
    /// the patient's `pmr identity show --national-id` prints them.
    Register {
        #[arg(long)]
        patient: Address,
        #[arg(long)]
        commitment: B256,
        #[arg(long)]
        encryption_key: B256,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub enum RecordCommand {
    /// A hospital creates a record: encrypt FILE locally with a fresh key, upload the
    /// ciphertext, split the key to the patient and the custodians, mint the token.
    Create {
        #[arg(long)]
        patient: Address,
        /// Record type code (e.g. a LOINC-derived code agreed by the network).
        #[arg(long = "type")]
        record_type: u32,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// A new version of a record under a fresh key (grants made before it do not cover it).
    Update {
        #[arg(long)]
        token: U256,
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// The record tokens an account owns (default: the --key's account).
    List {
        #[arg(long)]
        owner: Option<Address>,
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// A grantee (or the owner) opens a record: collect custodian shares, reconstruct and check
    /// the key, fetch, decrypt, write the original bytes to -o FILE (mode 0600).
    Open {
        #[arg(long)]
        token: U256,
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Subcommand)]
pub enum AccessCommand {
    /// The patient grants an account access to a record's latest version.
    Grant {
        #[arg(long)]
        token: U256,
        #[arg(long)]
        to: Address,
        /// How long (e.g. `7d`, `12h`) or until when (unix seconds).
        #[arg(long, default_value = "30d")]
        expires: String,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
    /// The patient revokes a grant: custodians stop releasing shares to it.
    Revoke {
        #[arg(long)]
        token: U256,
        #[arg(long)]
        to: Address,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// Signing material loaded from `--key`.
pub enum Signer {
    Identity(Identity),
    Plain(Wallet),
}

impl Signer {
    pub fn wallet(&self) -> &Wallet {
        match self {
            Signer::Identity(i) => i.wallet(),
            Signer::Plain(w) => w,
        }
    }

    pub fn identity(&self, path: &Path) -> Result<&Identity> {
        match self {
            Signer::Identity(i) => Ok(i),
            Signer::Plain(_) => bail!(
                "{} is a plain development account: this command needs an identity keystore with an encryption key (`pmr identity new`)",
                path.display()
            ),
        }
    }
}

fn passphrase(file: Option<&Path>) -> Result<String> {
    match file {
        Some(f) => Ok(std::fs::read_to_string(f)
            .wrap_err_with(|| format!("cannot read passphrase file {}", f.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string()),
        None => std::env::var("PMR_PASSPHRASE")
            .map_err(|_| eyre!("no passphrase: set PMR_PASSPHRASE or pass --passphrase-file FILE")),
    }
}

/// Loads `--key`: a keystore (with its passphrase) or a plain development account file.
pub fn load_signer(k: &KeyArgs) -> Result<Signer> {
    let text = std::fs::read_to_string(&k.key)
        .wrap_err_with(|| format!("cannot read key file {}", k.key.display()))?;
    if text.contains("\"ciphertext\"") {
        let id = Identity::load(&k.key, &passphrase(k.passphrase_file.as_deref())?)?;
        Ok(Signer::Identity(id))
    } else {
        Ok(Signer::Plain(crate::testnet::load_account(&k.key)?))
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `7d`, `12h` (from now) or unix seconds.
pub fn parse_expiry(s: &str) -> Result<u64> {
    if let Ok(at) = s.parse::<u64>() {
        return Ok(at);
    }
    let d: Duration = humantime::parse_duration(s).map_err(|e| {
        eyre!("--expires `{s}` is neither a duration (7d, 12h) nor unix seconds: {e}")
    })?;
    Ok(now_s() + d.as_secs().max(1))
}

fn print(format: Format, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        Format::Text => println!("{}", text()),
    }
    Ok(())
}

fn read_input(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).wrap_err_with(|| format!("cannot read {}", file.display()))
}

async fn net(n: &NetArgs) -> Result<Network> {
    Ok(Network::connect(&n.rpc).await?)
}

async fn tx_result(n: &NetArgs, what: &str, done: pmr_client::records::Committed) -> Result<()> {
    print(
        n.output,
        json!({"tx": done.tx, "height": done.height}),
        || {
            format!(
                "{what}: committed at height {} (tx {})",
                done.height, done.tx
            )
        },
    )
}

pub async fn identity(cmd: IdentityCommand) -> Result<()> {
    match cmd {
        IdentityCommand::New {
            out,
            passphrase_file,
        } => {
            let id = Identity::generate();
            id.save(&out, &passphrase(passphrase_file.as_deref())?)?;
            println!("{}", id.address());
            eprintln!(
                "identity written to {} (encrypted; encryption key {})",
                out.display(),
                id.encryption_key()
            );
            Ok(())
        }
        IdentityCommand::Show {
            key,
            national_id,
            output,
        } => {
            let signer = load_signer(&key)?;
            let id = signer.identity(&key.key)?;
            let commitment = match national_id {
                Some(raw) => {
                    let nid = pmr_privacy::NationalId::parse(&raw)
                        .wrap_err("not a valid national health ID")?;
                    Some(B256::from(
                        pmr_privacy::PseudonymCommitment::compute(&id.pseudonym_secret(), &nid)
                            .to_bytes(),
                    ))
                }
                None => None,
            };
            print(
                output,
                json!({"address": id.address(), "encryption_key": id.encryption_key(), "pseudonym_commitment": commitment}),
                || {
                    let mut s = format!(
                        "address         {}\nencryption key  {}",
                        id.address(),
                        id.encryption_key()
                    );
                    if let Some(c) = commitment {
                        s.push_str(&format!("\ncommitment      {c}"));
                    }
                    s
                },
            )
        }
        IdentityCommand::RegisterKey { key, net: n } => {
            let signer = load_signer(&key)?;
            let id = signer.identity(&key.key)?;
            let done = net(&n)
                .await?
                .send(
                    id.wallet(),
                    PMR::setEncryptionKeyCall {
                        encryptionKey: id.encryption_key(),
                    },
                )
                .await?;
            tx_result(&n, "encryption key registered", done).await
        }
    }
}

/// Signs `call` with `--key`, commits it and prints the outcome.
async fn send_as<C: alloy_sol_types::SolCall>(
    key: &KeyArgs,
    n: &NetArgs,
    what: &str,
    call: C,
) -> Result<()> {
    let s = load_signer(key)?;
    let done = net(n).await?.send(s.wallet(), call).await?;
    tx_result(n, what, done).await
}

pub async fn admin(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::RegisterHospital { account, key, net } => {
            let call = PMR::registerHospitalCall { hospital: account };
            send_as(&key, &net, "hospital registered", call).await
        }
        AdminCommand::AddCustodian { account, key, net } => {
            let call = PMR::addCustodianCall { custodian: account };
            send_as(&key, &net, "custodian added", call).await
        }
        AdminCommand::Permit {
            account,
            revoke,
            key,
            net,
        } => {
            let call = PMR::setPermittedCall {
                account,
                permitted: !revoke,
            };
            let what = if revoke {
                "permission removed"
            } else {
                "permitted"
            };
            send_as(&key, &net, what, call).await
        }
    }
}

pub async fn patient(cmd: PatientCommand) -> Result<()> {
    match cmd {
        PatientCommand::Register {
            patient,
            commitment,
            encryption_key,
            key,
            net,
        } => {
            let call = PMR::registerPatientCall {
                patient,
                pseudonymCommitment: commitment,
                encryptionKey: encryption_key,
            };
            send_as(&key, &net, "patient registered", call).await
        }
    }
}

pub async fn record(cmd: RecordCommand) -> Result<()> {
    match cmd {
        RecordCommand::Create {
            patient,
            record_type,
            file,
            key,
            net: n,
        } => {
            let s = load_signer(&key)?;
            let data = read_input(&file)?;
            eprintln!(
                "encrypting {} ({} bytes), uploading, splitting the key, minting...",
                file.display(),
                data.len()
            );
            let v = net(&n)
                .await?
                .create_record(s.wallet(), patient, record_type, &data)
                .await?;
            print(n.output, serde_json::to_value(&v)?, || {
                format!(
                    "token {} version 0 minted at height {} (root {}, envelope {})",
                    v.token_id, v.height, v.root_cid, v.envelope_cid
                )
            })
        }
        RecordCommand::Update {
            token,
            file,
            key,
            net: n,
        } => {
            let s = load_signer(&key)?;
            let data = read_input(&file)?;
            let v = net(&n)
                .await?
                .update_record(s.wallet(), token, &data)
                .await?;
            print(n.output, serde_json::to_value(&v)?, || {
                format!(
                    "token {} version {} committed at height {} (fresh key; root {})",
                    v.token_id, v.version, v.height, v.root_cid
                )
            })
        }
        RecordCommand::List { owner, key, net: n } => {
            let owner = match (owner, key) {
                (Some(o), _) => o,
                (None, Some(k)) => Identity::peek_address(&k)
                    .or_else(|_| crate::testnet::load_account(&k).map(|w| w.address()))
                    .map_err(|e| eyre!("cannot read an address from {}: {e}", k.display()))?,
                (None, None) => bail!("give --owner ADDRESS or --key FILE"),
            };
            let list = net(&n).await?.records_of(owner).await?;
            print(n.output, serde_json::to_value(&list)?, || {
                if list.is_empty() {
                    return format!("{owner} owns no records");
                }
                list.iter()
                    .map(|r| {
                        format!(
                            "token {}  type {}  versions {}  hospital {}",
                            r.token_id, r.record_type, r.versions, r.hospital
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        RecordCommand::Open {
            token,
            out,
            key,
            net: n,
        } => {
            let s = load_signer(&key)?;
            let id = s.identity(&key.key)?;
            let opened = net(&n).await?.open_record(id, token).await?;
            crate::keys::write_secret_file(&out, &opened.plaintext)
                .wrap_err_with(|| format!("cannot write {}", out.display()))?;
            print(
                n.output,
                json!({"token": token, "version": opened.version, "bytes": opened.plaintext.len(), "custodians": opened.custodians, "out": out}),
                || {
                    format!(
                        "wrote {} bytes of token {token} version {} to {} (shares from custodians {:?})",
                        opened.plaintext.len(),
                        opened.version,
                        out.display(),
                        opened.custodians
                    )
                },
            )
        }
    }
}

pub async fn access(cmd: AccessCommand) -> Result<()> {
    match cmd {
        AccessCommand::Grant {
            token,
            to,
            expires,
            key,
            net: n,
        } => {
            let expiry = parse_expiry(&expires)?;
            let s = load_signer(&key)?;
            let id = s.identity(&key.key)?;
            let done = net(&n).await?.grant(id, token, to, expiry).await?;
            tx_result(
                &n,
                &format!("access to token {token} granted to {to} until {expiry}"),
                done,
            )
            .await
        }
        AccessCommand::Revoke {
            token,
            to,
            key,
            net: n,
        } => {
            let s = load_signer(&key)?;
            let id = s.identity(&key.key)?;
            let done = net(&n).await?.revoke(id, token, to).await?;
            tx_result(
                &n,
                &format!("access of {to} to token {token} revoked"),
                done,
            )
            .await
        }
    }
}

/// One proven transaction of an audit proof file.
#[derive(Serialize, Deserialize)]
struct ProofEntry {
    tx_hash: B256,
    /// Canonical receipt bytes (hex).
    receipt: String,
    proof_index: u64,
    proof_count: u64,
    proof_siblings: Vec<B256>,
    /// Canonical block bytes (hex).
    block: String,
    cert_height: u64,
    cert_round: u32,
    cert_block_hash: B256,
    /// (validator address hex, signature hex)
    cert_signatures: Vec<(String, String)>,
}

/// The audit proof format this `pmr` writes and reads. Version 2 (since a40bb21, 2026-12-01):
/// receipts are proven with the keyed-BLAKE3 Merkle tree of the block header's receipts root;
/// version 1 files used keccak and cannot be checked by this version.
const PROOF_FORMAT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct ProofFile {
    version: u32,
    chain_id: u64,
    genesis_hash: B256,
    token_id: U256,
    entries: Vec<ProofEntry>,
}

pub async fn audit(token: U256, proof: Option<PathBuf>, n: NetArgs) -> Result<()> {
    let network = net(&n).await?;
    let events = network.audit(token).await?;
    if let Some(path) = &proof {
        let c = network.primary();
        let mut txs: Vec<B256> = events.iter().map(|e| e.tx).collect();
        txs.dedup();
        let mut entries = Vec::new();
        for tx in txs {
            let r = c.receipt(tx).await?;
            let (Some(receipt), Some(p), Some(block)) = (r.receipt, r.proof, r.block) else {
                bail!("the node returned no proof for {tx}");
            };
            let cert = block
                .certificate
                .ok_or_else(|| eyre!("block {} has no certificate", r.height))?;
            entries.push(ProofEntry {
                tx_hash: tx,
                receipt: hex::encode(&receipt.encoded),
                proof_index: p.index,
                proof_count: p.count,
                proof_siblings: p.siblings.iter().map(|s| B256::from_slice(s)).collect(),
                block: hex::encode(&block.encoded),
                cert_height: cert.height,
                cert_round: cert.round,
                cert_block_hash: B256::from_slice(&cert.block_hash),
                cert_signatures: cert
                    .signatures
                    .iter()
                    .map(|s| (hex::encode(&s.validator), hex::encode(&s.signature)))
                    .collect(),
            });
        }
        let status = c.status().await?;
        let file = ProofFile {
            version: PROOF_FORMAT_VERSION,
            chain_id: status.chain_id,
            genesis_hash: B256::from_slice(&status.genesis_hash),
            token_id: token,
            entries,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&file)?)
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    print(n.output, serde_json::to_value(&events)?, || {
        let mut lines: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    "height {:>6}  {:<9} {}  (tx {})",
                    e.height, e.kind, e.detail, e.tx
                )
            })
            .collect();
        if lines.is_empty() {
            lines.push(format!("no events for token {token}"));
        }
        if let Some(p) = &proof {
            lines.push(format!(
                "proof written to {} (check it offline: pmr verify-proof {} --token {token} --genesis GENESIS)",
                p.display(),
                p.display()
            ));
        }
        lines.join("\n")
    })
}

/// Checks an audit proof file for `token` against a genesis, offline; returns the events it
/// proves. It proves that each event happened in a certified block; it cannot prove that the
/// file lists every event of the token.
pub fn verify_proof(
    file: &Path,
    genesis: &Path,
    token: U256,
) -> Result<Vec<(u64, String, String)>> {
    let genesis = Genesis::load(genesis)?;
    let proof: ProofFile = serde_json::from_slice(
        &std::fs::read(file).wrap_err_with(|| format!("cannot read {}", file.display()))?,
    )
    .wrap_err("not a PMR audit proof file")?;
    if proof.version != PROOF_FORMAT_VERSION {
        bail!(
            "the proof file is format version {}; this pmr checks version {PROOF_FORMAT_VERSION} \
             only (version 1 proved receipts with a keccak tree that chains no longer use): \
             export it again with `pmr audit --proof` from a node of a current chain",
            proof.version
        );
    }
    if proof.genesis_hash != genesis.hash() || proof.chain_id != genesis.chain_id {
        bail!(
            "the proof is for chain {} (genesis {}); this genesis is chain {} ({})",
            proof.chain_id,
            proof.genesis_hash,
            genesis.chain_id,
            genesis.hash()
        );
    }
    if proof.token_id != token {
        bail!(
            "the proof is for token {}, not token {token}",
            proof.token_id
        );
    }
    let topic = B256::from(token.to_be_bytes::<32>());
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, e) in proof.entries.iter().enumerate() {
        if !seen.insert(e.tx_hash) {
            bail!("entry {i} repeats transaction {}", e.tx_hash);
        }
        let bad = |what: &str| eyre!("entry {i} (tx {}): {what}", e.tx_hash);
        let block = Block::decode_checked(&hex::decode(&e.block).map_err(|_| bad("block hex"))?)
            .map_err(|err| bad(&format!("block: {err}")))?;
        let cert = Certificate {
            height: e.cert_height,
            round: e.cert_round,
            block_hash: e.cert_block_hash,
            signatures: e
                .cert_signatures
                .iter()
                .map(|(v, s)| {
                    Ok(CommitSignature {
                        validator: hex::decode(v)?,
                        signature: hex::decode(s)?,
                    })
                })
                .collect::<Result<_, hex::FromHexError>>()
                .map_err(|_| bad("signature hex"))?,
        };
        let merkle = MerkleProof {
            index: e.proof_index,
            count: e.proof_count,
            siblings: e.proof_siblings.clone(),
        };
        let receipt = verify_receipt_inclusion(
            &genesis,
            e.tx_hash,
            &hex::decode(&e.receipt).map_err(|_| bad("receipt hex"))?,
            &merkle,
            &block.header,
            &cert,
        )
        .map_err(|err| bad(&format!("does not verify: {err}")))?;
        for log in receipt
            .logs
            .iter()
            .filter(|l| l.address == pmr_contract::PMR_ADDRESS)
        {
            if log.topics.get(1) != Some(&topic) {
                continue;
            }
            if let Some((kind, detail)) = describe_event(&log.topics, &log.data) {
                events.push((block.header.height, kind.to_string(), detail));
            }
        }
    }
    Ok(events)
}

/// What `pmr bench records` measured.
#[derive(Serialize)]
pub struct RecordBench {
    pub records: usize,
    pub size: usize,
    pub nodes: usize,
    /// Encrypt + upload + split + upload envelope + mint finalized + root and envelope held by
    /// every node.
    pub create_ms: pmr_testnet::Latency,
    /// Collect shares + reconstruct + fetch + decrypt (the owner opening the record).
    pub open_ms: pmr_testnet::Latency,
}

/// `pmr bench records`: end-to-end record create and open latency on a running network.
pub async fn bench_records(
    rpc: &[String],
    count: usize,
    size: usize,
    hospital_key: &Path,
) -> Result<RecordBench> {
    use rand::RngCore;
    let network = Network::connect(rpc).await?;
    let hospital = crate::testnet::load_account(hospital_key)?;
    let mut nodes = Vec::new();
    for url in rpc {
        nodes.push(pmr_client::PmrClient::connect(url.clone()).await?);
    }
    let patient = Identity::generate();
    let mut commitment = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut commitment);
    network
        .send(
            &hospital,
            PMR::registerPatientCall {
                patient: patient.address(),
                pseudonymCommitment: B256::from(commitment),
                encryptionKey: patient.encryption_key(),
            },
        )
        .await?;
    let (mut create, mut open) = (Vec::new(), Vec::new());
    for i in 0..count {
        let mut data = vec![0u8; size];
        rand::rngs::OsRng.fill_bytes(&mut data);
        let t0 = std::time::Instant::now();
        let v = network
            .create_record(&hospital, patient.address(), 1, &data)
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for (n, c) in nodes.iter().enumerate() {
            for cid in [&v.root_cid, &v.envelope_cid] {
                loop {
                    if c.blob_stat(cid).await.map(|s| s.local).unwrap_or(false) {
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        bail!("node {n} did not replicate {cid} within 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        create.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t1 = std::time::Instant::now();
        let opened = network.open_record(&patient, v.token_id).await?;
        open.push(t1.elapsed().as_secs_f64() * 1000.0);
        if opened.plaintext != data {
            bail!("record {} opened to different bytes", v.token_id);
        }
        eprintln!(
            "record {}/{count}: create {:.0} ms, open {:.0} ms",
            i + 1,
            create[i],
            open[i]
        );
    }
    Ok(RecordBench {
        records: count,
        size,
        nodes: nodes.len(),
        create_ms: pmr_testnet::Latency::from_ms(create),
        open_ms: pmr_testnet::Latency::from_ms(open),
    })
}
