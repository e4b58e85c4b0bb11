//! The patient medical record lifecycle, over gRPC only.
//!
//! - Hospital: [`Network::create_record`] (generate a record key, encrypt, upload the
//!   ciphertext, split the key to the patient and the custodians, upload the envelope, mint) and
//!   [`Network::update_record`] (the same with a fresh key, appended as a new version).
//! - Patient: [`Network::scan_records`] (finds its records among the announcements with its
//!   viewing key), [`Network::grant`] (opens the essential share and re-seals it to the
//!   grantee's on-chain key), [`Network::revoke`]; each signed with the record's one-time key
//!   ([`Network::owner_identity`]).
//! - Grantee (or the owner): [`Network::open_record`] (collects `t` custodian shares with
//!   signed challenges, reconstructs the key, checks it against the on-chain commitment, fetches
//!   and decrypts).
//! - Anyone: [`Network::audit`] (every event of a token with its block height).
//!
//! A [`Network`] holds clients of several nodes: transactions go to the first reachable one,
//! share releases to every node that is a custodian, blob reads fall back node by node.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use futures::StreamExt;
use pmr_blob::{decrypt_to_vec, encrypt_to_vec, parse_cid, DataKey};
use pmr_contract::{describe_revert, describe_token_event, Wallet, PMR, PMR_ADDRESS};
use pmr_primitives::{AuditProof, Genesis, ProofEntry, AUDIT_PROOF_VERSION};
use pmr_proto::v1 as pb;
use pmr_proto::v1::share_service_client::ShareServiceClient;
use pmr_shares::{
    default_threshold, open_granted_patient_share, open_patient_share, open_sealed_share,
    reconstruct_record_key, seal_patient_share_to, split_record_key, verify_custodian_share,
    CustodianInfo, CustodianShare, GrantContext, RecordKey, ReleaseChallenge, SealedShare,
    ShareEnvelope, ShareError, X25519PublicKey,
};

use crate::client::{ClientError, PmrClient};
use crate::keystore::Identity;
use crate::session::ConnectOptions;

/// How long a lifecycle step waits for its transaction to commit.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
const GAS: u64 = 2_000_000;

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A node call failed; see [`ClientError`].
    #[error(transparent)]
    Client(#[from] ClientError),
    /// None of the given nodes answered (or none could serve a blob); carries each node's error.
    #[error("no node reachable: {0}")]
    NoNode(String),
    /// A PMR contract call or transaction reverted; carries the decoded revert reason.
    #[error("the PMR contract refused: {0}")]
    Reverted(String),
    /// Splitting, sealing, opening or reconstructing the record key's shares failed.
    #[error(transparent)]
    Shares(#[from] ShareError),
    /// The reconstructed key does not decrypt the stored ciphertext.
    #[error("the record does not decrypt with the reconstructed key: {0}")]
    Decrypt(String),
    /// A precondition was not met (unregistered key, no grant, too few custodian shares); the
    /// message says what to do.
    #[error("{0}")]
    Refused(String),
    /// The record is not the patient's: its one-time owner does not derive from this key.
    #[error("{0}")]
    NotOwner(String),
    /// Nodes returned data that does not decode, disagree with each other, or do not match the
    /// on-chain commitments.
    #[error("malformed data from the ledger: {0}")]
    Malformed(String),
}

/// A committed transaction.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The transaction hash.
    pub tx: B256,
    /// The height of the block it was committed in.
    pub height: u64,
    /// The call's ABI-encoded return data.
    pub output: Vec<u8>,
    /// The events it emitted.
    pub logs: Vec<pb::Log>,
}

/// A record made or updated.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordVersion {
    /// The record token.
    pub token_id: U256,
    /// The version index (0 for the version minted with the token).
    pub version: u32,
    /// CID of the encrypted record blob.
    pub root_cid: String,
    /// CID of the share envelope blob (the record key split to the patient and custodians).
    pub envelope_cid: String,
    /// The commitment to the record key, as stored on-chain.
    pub key_commitment: B256,
    /// Plaintext size, in bytes.
    pub size: u64,
    /// The hash of the mint or append transaction.
    pub tx: B256,
    /// The height it was committed at.
    pub height: u64,
}

/// A record token and its versions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordSummary {
    /// The record token.
    pub token_id: U256,
    /// The one-time address that owns the token.
    pub owner: Address,
    /// The hospital that minted it.
    pub hospital: Address,
    /// The record type given at mint (opened with the viewing key).
    pub record_type: u32,
    /// How many versions it has.
    pub versions: u32,
}

/// What one pass of [`Network::scan_records`] found.
#[derive(Clone, Debug)]
pub struct Scanned {
    /// The height the announcements were read at.
    pub height: u64,
    /// The last token that existed at that height (the next scan starts after it).
    pub last_token: u64,
    /// How many announcements were judged.
    pub judged: u64,
    /// The patient's records found, with their types opened.
    pub found: Vec<RecordSummary>,
}

/// How many announcements one `announcements` call asks for (the contract's maximum).
const ANNOUNCEMENT_BATCH: u64 = 512;

/// One event of a record's history.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEvent {
    /// The height of the block the event is in.
    pub height: u64,
    /// The hash of the transaction that emitted it.
    pub tx: B256,
    /// `minted`, `version`, `granted`, `revoked`, `released`.
    pub kind: String,
    /// A one-line account of the event (who, which version, until when).
    pub detail: String,
}

/// What a grantee needs from custodians.
pub struct Opened {
    /// The decrypted record.
    pub plaintext: Vec<u8>,
    /// The version opened.
    pub version: u32,
    /// Custodians (index) whose shares were used.
    pub custodians: Vec<u16>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The contract's form (codec and BLAKE3 digest) of a CID a node returned.
fn contract_cid(text: &str) -> Result<PMR::Cid, RecordError> {
    let cid = parse_cid(text)
        .map_err(|e| RecordError::Malformed(format!("node returned a bad CID {text}: {e}")))?;
    PMR::Cid::from_cid_bytes(&cid.to_bytes()).ok_or_else(|| {
        RecordError::Malformed(format!(
            "node returned CID {text}, which is not a CIDv1 with a one-byte codec and a BLAKE3 digest"
        ))
    })
}

fn cid_text(cid: &PMR::Cid) -> Result<String, RecordError> {
    pmr_contract::event_cid(cid)
        .map(|c| c.to_string())
        .map_err(|e| RecordError::Malformed(format!("a CID on-chain is not usable: {e}")))
}

/// A read-only PMR call on node `c` at `height` (its latest when `None`); a revert is an
/// error.
async fn call_on<C: SolCall>(
    c: &PmrClient,
    call: &C,
    height: Option<u64>,
) -> Result<C::Return, RecordError> {
    let out = c
        .call(None, PMR_ADDRESS, call.abi_encode().into(), height)
        .await?;
    if !out.success {
        return Err(RecordError::Reverted(describe_revert(&out.output)));
    }
    C::abi_decode_returns(&out.output)
        .map_err(|e| RecordError::Malformed(format!("cannot decode a PMR answer: {e}")))
}

/// Folds node `c`'s answer about `what` into `agreed`; a different answer is an error.
fn agree<T: PartialEq>(
    agreed: &mut Option<T>,
    answer: T,
    what: &str,
    c: &PmrClient,
) -> Result<(), RecordError> {
    match agreed {
        Some(a) if *a != answer => Err(RecordError::Malformed(format!(
            "the nodes disagree about `{what}` (node {} differs): refusing to act on one node's word",
            c.url()
        ))),
        Some(_) => Ok(()),
        None => {
            *agreed = Some(answer);
            Ok(())
        }
    }
}

/// Clients of one or more nodes of a PMR network.
pub struct Network {
    nodes: Vec<PmrClient>,
    chain_id: u64,
    genesis: Option<Genesis>,
}

impl Network {
    /// Connects to every URL that answers (at least one must). With the network's `genesis`,
    /// every node must run its chain, and the custodian keys shares are sealed to are the
    /// genesis's, checked against every node's answer; without it, no record can be created.
    pub async fn connect(
        urls: &[String],
        opts: &ConnectOptions,
        genesis: Option<Genesis>,
    ) -> Result<Self, RecordError> {
        let mut nodes = Vec::new();
        let mut errors = Vec::new();
        let mut chain_id = None;
        for url in urls {
            match PmrClient::connect(url.clone(), opts).await {
                Ok(c) => match c.status().await {
                    Ok(s) => {
                        if let Some(g) = &genesis {
                            let theirs = B256::try_from(s.genesis_hash.as_slice()).ok();
                            if theirs != Some(g.hash()) {
                                return Err(RecordError::Refused(format!(
                                    "{url} runs a chain whose genesis is {} but yours is {} \
                                     (chain {}): refusing to talk to it",
                                    alloy_primitives::hex::encode_prefixed(&s.genesis_hash),
                                    g.hash(),
                                    g.chain_id
                                )));
                            }
                            // Signatures name the chain: its id is the genesis's, never a
                            // node's word.
                            if s.chain_id != g.chain_id {
                                return Err(RecordError::Refused(format!(
                                    "{url} reports chain id {} but the genesis is of chain {}: \
                                     refusing to talk to it",
                                    s.chain_id, g.chain_id
                                )));
                            }
                        }
                        chain_id.get_or_insert(s.chain_id);
                        nodes.push(c);
                    }
                    Err(e) => errors.push(format!("{url}: {e}")),
                },
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        match chain_id {
            Some(chain_id) => Ok(Network {
                nodes,
                chain_id,
                genesis,
            }),
            None => Err(RecordError::NoNode(errors.join("; "))),
        }
    }

    /// The chain id the first answering node reported; transactions are signed for it.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The node transactions go to.
    pub fn primary(&self) -> &PmrClient {
        &self.nodes[0]
    }

    /// A read-only PMR call at the latest height.
    pub async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, RecordError> {
        call_on(self.primary(), &call, None).await
    }

    /// A read-only call answered by every reachable node, which must all agree: for what a
    /// single lying node could abuse (whose key a share is sealed to).
    pub async fn view_agreed<C: SolCall>(&self, call: C) -> Result<C::Return, RecordError>
    where
        C::Return: PartialEq,
    {
        let mut agreed = None;
        for c in &self.nodes {
            agree(&mut agreed, call_on(c, &call, None).await?, C::SIGNATURE, c)?;
        }
        agreed.ok_or_else(|| RecordError::NoNode("no node answered".into()))
    }

    /// `account`'s encryption key (zero if it has none), checked against the signature with
    /// which `account` published it: every node must report the same, and the signature must
    /// be `account`'s own, so that neither a lying node nor anyone on the path to every node
    /// can make a share be sealed to a key of theirs.
    pub async fn signed_encryption_key(&self, account: Address) -> Result<B256, RecordError> {
        Ok(self.signed_keys(account).await?.0)
    }

    /// `account`'s encryption key and stealth meta-address (empty when it is not a patient),
    /// checked as [`Self::signed_encryption_key`] checks the key.
    pub async fn signed_keys(&self, account: Address) -> Result<(B256, Vec<u8>), RecordError> {
        let a = self
            .view_agreed(PMR::encryptionKeyAttestationCall { account })
            .await?;
        if a.encryptionKey.is_zero() {
            return Ok((B256::ZERO, Vec::new()));
        }
        let fields = pmr_contract::PatientKeys {
            pseudonym_commitment: a.pseudonymCommitment,
            meta_address: &a.stealthMetaAddress,
        };
        if !pmr_contract::verify_encryption_key(
            self.chain_id,
            account,
            a.encryptionKey,
            fields,
            &a.signature,
        ) {
            return Err(RecordError::Refused(format!(
                "encryption key mismatch: the keys {} reported for {account} are not signed by \
                 {account}; refusing to seal a share to, or mint to, keys their owner did not \
                 publish",
                a.encryptionKey
            )));
        }
        Ok((a.encryptionKey, a.stealthMetaAddress.to_vec()))
    }

    /// Signs `call` from `from`, submits it and waits for its commit; a revert is an error.
    pub async fn send<C: SolCall>(&self, from: &Wallet, call: C) -> Result<Committed, RecordError> {
        let c = self.primary();
        let nonce = c.nonce(from.address()).await?;
        let raw = from
            .sign_call(
                self.chain_id,
                nonce,
                PMR_ADDRESS,
                call.abi_encode().into(),
                GAS,
            )
            .map_err(|e| RecordError::Refused(e.to_string()))?;
        let tx = c.submit(raw).await?;
        let height = c.wait_committed(tx, COMMIT_TIMEOUT).await?;
        let r = c
            .receipt(tx)
            .await?
            .receipt
            .ok_or_else(|| RecordError::Malformed("receipt without body".into()))?;
        if !r.success {
            return Err(RecordError::Reverted(describe_revert(&r.output)));
        }
        Ok(Committed {
            tx,
            height,
            output: r.output,
            logs: r.logs,
        })
    }

    /// The custodians shares are sealed to: the chain's active share custodians (the
    /// genesis's, which must come first as the genesis names them, then those the council
    /// added), which every reachable node must answer alike, both from its state and in its
    /// custodian list (a node, or anyone on the path to it, that names other keys is caught
    /// here instead of receiving shares).
    async fn custodians(&self) -> Result<Vec<CustodianInfo>, RecordError> {
        let genesis = self.genesis.as_ref().ok_or_else(|| {
            RecordError::Refused(
                "creating a record needs the network's genesis, to check the custodians' keys \
                 the shares are sealed to (--genesis FILE or PMR_GENESIS)"
                    .into(),
            )
        })?;
        let chain = self.view_agreed(PMR::shareCustodiansCall {}).await?;
        for g in genesis.custodians() {
            let listed = chain.list.get(usize::from(g.index) - 1);
            if listed.map(|c| (c.operator, c.custodyKey.0)) != Some((g.address, g.custody_key)) {
                return Err(RecordError::Refused(format!(
                    "custodian mismatch: the chain's custodian {} is not the genesis's ({}): \
                     refusing to seal shares to keys that are not the network's",
                    g.index, g.name
                )));
            }
        }
        let expected: Vec<pmr_primitives::GenesisCustodian> = chain
            .list
            .iter()
            .zip(&chain.active)
            .enumerate()
            .filter(|(_, (_, active))| **active)
            .map(|(i, (c, _))| pmr_primitives::GenesisCustodian {
                index: i as u16 + 1,
                name: format!("custodian-{}", i + 1),
                address: c.operator,
                custody_key: c.custodyKey.0,
            })
            .collect();
        // Custodians the genesis does not name are vouched for only by the nodes asked agreeing
        // on the chain's state: one node alone (or whoever sits between it and this client)
        // could name keys of its own.
        let genesis_count = genesis.custodians().len();
        let added = expected
            .iter()
            .filter(|c| usize::from(c.index) > genesis_count)
            .count();
        let distinct: std::collections::HashSet<&str> =
            self.nodes.iter().map(|c| c.url()).collect();
        if added > 0 && distinct.len() < 2 {
            return Err(RecordError::Refused(format!(
                "the chain names {added} custodian(s) besides the genesis's, and only one node \
                 was asked: give at least two nodes (--rpc A,B) so that their keys are checked \
                 by their agreement before shares are sealed to them"
            )));
        }
        for c in &self.nodes {
            let r = ShareServiceClient::new(c.channel())
                .get_custodians(pb::GetCustodiansRequest {})
                .await
                .map_err(ClientError::from)?
                .into_inner();
            let reported: Vec<(u32, Vec<u8>, Vec<u8>)> = r
                .custodians
                .iter()
                .map(|x| (x.index, x.address.clone(), x.custody_key.clone()))
                .collect();
            let want: Vec<(u32, Vec<u8>, Vec<u8>)> = expected
                .iter()
                .map(|x| (x.index as u32, x.address.to_vec(), x.custody_key.to_vec()))
                .collect();
            if reported != want {
                let first = want
                    .iter()
                    .zip(reported.iter().map(Some).chain(std::iter::repeat(None)))
                    .find(|(w, r)| Some(*w) != *r)
                    .map_or_else(
                        || "a custodian the genesis does not have".to_string(),
                        |(w, r)| {
                            format!(
                                "custodian {} (the genesis names custody key {}, the node \
                                 answered {})",
                                w.0,
                                alloy_primitives::hex::encode(&w.2),
                                r.map_or("nothing".into(), |r| alloy_primitives::hex::encode(&r.2))
                            )
                        },
                    );
                return Err(RecordError::Refused(format!(
                    "custodian mismatch: {} does not report the genesis's custodians: {first}; \
                     refusing to seal shares to keys that are not the network's",
                    c.url()
                )));
            }
        }
        Ok(expected
            .iter()
            .map(|c| CustodianInfo {
                index: c.index,
                address: c.address,
                public_key: X25519PublicKey::from(c.custody_key),
            })
            .collect())
    }

    /// Encrypts `plaintext` under a fresh key, uploads it and the key's share envelope.
    async fn prepare(
        &self,
        patient_key: B256,
        plaintext: &[u8],
    ) -> Result<(String, String, B256, u64), RecordError> {
        let infos = self.custodians().await?;
        let key = RecordKey::generate(&mut rand::rngs::OsRng);
        let ciphertext = encrypt_to_vec(&DataKey::from_bytes(*key.dek()), plaintext);
        // Computed here rather than taken from a node.
        let threshold = default_threshold(infos.len());
        let envelope = split_record_key(
            &key,
            threshold,
            &infos,
            &X25519PublicKey::from(patient_key.0),
            &mut rand::rngs::OsRng,
        )?;
        let c = self.primary();
        let root = c.put_blob_bytes(ciphertext).await?;
        let env = c.put_blob_bytes(envelope.encode()).await?;
        Ok((
            root.root_cid,
            env.root_cid,
            B256::from(key.commitment().to_bytes()),
            plaintext.len() as u64,
        ))
    }

    /// `patient`'s encryption key and stealth meta-address, as it signed them; refused when it
    /// is not a registered patient.
    async fn patient_keys(
        &self,
        patient: Address,
    ) -> Result<(B256, pmr_privacy::StealthMetaAddress), RecordError> {
        let (key, meta) = self.signed_keys(patient).await?;
        if key.is_zero() || meta.is_empty() {
            return Err(RecordError::Refused(format!(
                "{patient} is not a registered patient (no signed encryption key and stealth \
                 meta-address on-chain): register the patient first"
            )));
        }
        let meta = pmr_privacy::StealthMetaAddress::from_bytes(&meta)
            .map_err(|e| RecordError::Malformed(format!("{patient}'s meta-address: {e}")))?;
        Ok((key, meta))
    }

    /// A hospital creates a record for `patient`: one token, version 0, owned by a one-time
    /// address derived from the patient's meta-address (nothing on-chain names the patient or
    /// the type).
    pub async fn create_record(
        &self,
        hospital: &Wallet,
        patient: Address,
        record_type: u32,
        plaintext: &[u8],
    ) -> Result<RecordVersion, RecordError> {
        let (patient_key, meta) = self.patient_keys(patient).await?;
        let (root, envelope, commitment, size) = self.prepare(patient_key, plaintext).await?;
        let a = pmr_privacy::stealth::generate(&meta, record_type, &mut rand::rngs::OsRng);
        let done = self
            .send(
                hospital,
                PMR::mintRecordCall {
                    to: pmr_contract::stealth::one_time_owner(&a),
                    root: contract_cid(&root)?,
                    envelope: contract_cid(&envelope)?,
                    keyCommitment: commitment,
                },
            )
            .await?;
        Ok(RecordVersion {
            token_id: U256::from_be_slice(&done.output),
            version: 0,
            root_cid: root,
            envelope_cid: envelope,
            key_commitment: commitment,
            size,
            tx: done.tx,
            height: done.height,
        })
    }

    /// The minting hospital appends a new version under a fresh key, its patient share sealed
    /// to `patient` (the chain does not say whose record it is; the hospital that minted it
    /// knows).
    pub async fn update_record(
        &self,
        by: &Wallet,
        token: U256,
        patient: Address,
        plaintext: &[u8],
    ) -> Result<RecordVersion, RecordError> {
        let (patient_key, _) = self.patient_keys(patient).await?;
        self.append(by, token, patient_key, plaintext).await
    }

    async fn append(
        &self,
        by: &Wallet,
        token: U256,
        patient_key: B256,
        plaintext: &[u8],
    ) -> Result<RecordVersion, RecordError> {
        let (root, envelope, commitment, size) = self.prepare(patient_key, plaintext).await?;
        let done = self
            .send(
                by,
                PMR::appendVersionCall {
                    tokenId: token,
                    root: contract_cid(&root)?,
                    envelope: contract_cid(&envelope)?,
                    keyCommitment: commitment,
                },
            )
            .await?;
        Ok(RecordVersion {
            token_id: token,
            version: u32::from_be_bytes(
                done.output
                    .get(28..32)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| RecordError::Malformed("appendVersion output".into()))?,
            ),
            root_cid: root,
            envelope_cid: envelope,
            key_commitment: commitment,
            size,
            tx: done.tx,
            height: done.height,
        })
    }

    /// Scans the announcements of tokens after `after` (up to the last one at the primary
    /// node's latest height) with `key`: the patient's records, with their types opened.
    /// Nothing is sent that depends on the key or on what was found: the node learns only which
    /// range was read (the announcements carry the hospital and version count a listing shows,
    /// so no token is asked about on its own).
    pub async fn scan_records(
        &self,
        key: &pmr_privacy::ViewingKey,
        after: u64,
    ) -> Result<Scanned, RecordError> {
        let c = self.primary();
        let height = c.status().await?.height;
        let total = call_on(c, &PMR::totalMintedCall {}, Some(height)).await?;
        let last = u64::try_from(total)
            .map_err(|_| RecordError::Malformed(format!("totalMinted {total}")))?;
        let mut scanned = Scanned {
            height,
            last_token: last.max(after),
            judged: 0,
            found: Vec::new(),
        };
        let mut next = after + 1;
        while next <= last {
            let count = ANNOUNCEMENT_BATCH.min(last - next + 1);
            let call = PMR::announcementsCall {
                from: U256::from(next),
                count: U256::from(count),
            };
            let batch = call_on(c, &call, Some(height)).await?;
            if batch.len() as u64 != count {
                return Err(RecordError::Malformed(format!(
                    "asked for {count} announcements from token {next}, got {}",
                    batch.len()
                )));
            }
            for (i, a) in batch.iter().enumerate() {
                if let Some(f) = key.scan(&pmr_contract::stealth::announcement(&a.to)) {
                    scanned.found.push(RecordSummary {
                        token_id: U256::from(next + i as u64),
                        owner: a.to.owner,
                        hospital: a.hospital,
                        record_type: f.record_type,
                        versions: a.versions,
                    });
                }
            }
            scanned.judged += count;
            next += count;
        }
        Ok(scanned)
    }

    /// The one-time owner of `token`, as announced.
    async fn one_time_owner_of(&self, token: U256) -> Result<PMR::OneTimeOwner, RecordError> {
        let one = self
            .view(PMR::announcementsCall {
                from: token,
                count: U256::from(1),
            })
            .await?;
        match one.into_iter().next() {
            Some(a) => Ok(a.to),
            None => Err(RecordError::Refused(format!(
                "no record with token {token}"
            ))),
        }
    }

    /// `patient` acting as the one-time owner of `token`: the record's key derived from the
    /// patient's spending key. Refused when the record is not the patient's.
    pub async fn owner_identity(
        &self,
        patient: &Identity,
        token: U256,
    ) -> Result<Identity, RecordError> {
        let o = self.one_time_owner_of(token).await?;
        let wallet =
            pmr_contract::stealth::one_time_wallet(patient.wallet(), &o).map_err(|_| {
                RecordError::NotOwner(format!(
                    "token {token} is not {}'s record (its one-time owner {} is not derived from \
                 this key's meta-address): only the patient can do this",
                    patient.address(),
                    o.owner
                ))
            })?;
        Ok(patient.acting_as(wallet))
    }

    /// Fetches a blob from the first node that can serve it.
    pub async fn fetch(&self, cid: &str) -> Result<Vec<u8>, RecordError> {
        let mut last = None;
        for c in &self.nodes {
            match c.get_blob_bytes(cid).await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| RecordError::NoNode(cid.into()), RecordError::from))
    }

    async fn version(
        &self,
        token: U256,
        version: u32,
    ) -> Result<(String, ShareEnvelope, B256), RecordError> {
        let v = self
            .view(PMR::recordVersionCall {
                tokenId: token,
                index: U256::from(version),
            })
            .await?;
        let env_cid = cid_text(&v.envelope)?;
        let env = ShareEnvelope::decode(&self.fetch(&env_cid).await?)?;
        if env.key_commitment().to_bytes() != v.keyCommitment.0 {
            return Err(RecordError::Malformed(format!(
                "the envelope of token {token} version {version} does not match the on-chain key commitment"
            )));
        }
        Ok((cid_text(&v.root)?, env, v.keyCommitment))
    }

    /// The patient grants `grantee` access to the record's latest version until `expiry`
    /// (unix seconds).
    pub async fn grant(
        &self,
        patient: &Identity,
        token: U256,
        grantee: Address,
        expiry: u64,
    ) -> Result<Committed, RecordError> {
        let patient = &self.owner_identity(patient, token).await?;
        let grantee_key = self.signed_encryption_key(grantee).await?;
        if grantee_key.is_zero() {
            return Err(RecordError::Refused(format!(
                "{grantee} has no encryption key on-chain: it must register one first (`pmr identity register-key`)"
            )));
        }
        let versions = self.view(PMR::versionCountCall { tokenId: token }).await?;
        let sealed_version = versions - 1;
        let (_, env, _) = self.version(token, sealed_version).await?;
        let essential = open_patient_share(&env, patient.x25519())?;
        let context = GrantContext {
            chain_id: self.chain_id,
            token_id: token,
            grantee,
            key_commitment: env.key_commitment(),
        };
        let sealed = seal_patient_share_to(
            &essential,
            &X25519PublicKey::from(grantee_key.0),
            &context,
            &mut rand::rngs::OsRng,
        )?;
        let done = self
            .send(
                patient.wallet(),
                PMR::grantAccessCall {
                    tokenId: token,
                    grantee,
                    expiry,
                    sealedPatientShare: Bytes::from(sealed.to_bytes().to_vec()),
                },
            )
            .await?;
        // The contract names the version current at commit; the share must be of that one.
        let granted = done.logs.iter().find_map(|l| {
            let topics: Vec<B256> = l.topics.iter().map(|t| B256::from_slice(t)).collect();
            PMR::AccessGranted::decode_raw_log(topics, &l.data)
                .ok()
                .map(|e| e.version)
        });
        if granted != Some(sealed_version) {
            return Err(RecordError::Refused(format!(
                "a new version of token {token} was appended while granting (the grant names version {granted:?}, the share is of version {sealed_version}): grant again"
            )));
        }
        Ok(done)
    }

    /// The patient revokes `grantee`'s access.
    pub async fn revoke(
        &self,
        patient: &Identity,
        token: U256,
        grantee: Address,
    ) -> Result<Committed, RecordError> {
        let owner = self.owner_identity(patient, token).await?;
        self.send(
            owner.wallet(),
            PMR::revokeAccessCall {
                tokenId: token,
                grantee,
            },
        )
        .await
    }

    /// A grantee (or the owner) opens the record: the version its grant names (the latest for
    /// the owner).
    pub async fn open_record(&self, who: &Identity, token: U256) -> Result<Opened, RecordError> {
        // The patient opens its own record as its one-time owner; anyone else as a grantee.
        let as_owner = match self.owner_identity(who, token).await {
            Ok(owner) => Some(owner),
            Err(RecordError::NotOwner(_)) => None,
            Err(e) => return Err(e),
        };
        let who = as_owner.as_ref().unwrap_or(who);
        let me = who.address();
        let (version, essential_sealed) = if as_owner.is_some() {
            (
                self.view(PMR::versionCountCall { tokenId: token }).await? - 1,
                None,
            )
        } else {
            let g = self
                .view(PMR::grantOfCall {
                    tokenId: token,
                    grantee: me,
                })
                .await?;
            if g.expiry == 0 {
                return Err(RecordError::Refused(format!(
                    "{me} has no grant on token {token}: ask the patient for access"
                )));
            }
            (g.version, Some(g.sealedShare))
        };
        let (root, env, _) = self.version(token, version).await?;
        let context = GrantContext {
            chain_id: self.chain_id,
            token_id: token,
            grantee: me,
            key_commitment: env.key_commitment(),
        };
        let essential = match essential_sealed {
            None => open_patient_share(&env, who.x25519())?,
            Some(s) => {
                open_granted_patient_share(&SealedShare::from_bytes(&s)?, who.x25519(), &context)?
            }
        };
        // A grantee's shares come sealed to its published key. The owner's come sealed to a key
        // it names in the challenge: a fresh one for this opening, so that the custodians do
        // not learn the patient's published key (and with it, whose record this is).
        let fresh;
        let (replier, reply_key) = match as_owner {
            Some(_) => {
                fresh = who.with_fresh_sealing_key();
                (&fresh, fresh.encryption_key())
            }
            None => (who, B256::ZERO),
        };
        let (shares, used) = self
            .collect_shares(replier, token, &env, &context, reply_key)
            .await?;
        let key = reconstruct_record_key(&env, &essential, &shares)?;
        let ciphertext = self.fetch(&root).await?;
        let plaintext = decrypt_to_vec(&DataKey::from_bytes(*key.dek()), &ciphertext)
            .map_err(|e| RecordError::Decrypt(e.to_string()))?;
        Ok(Opened {
            plaintext,
            version,
            custodians: used,
        })
    }

    /// Asks custodian nodes for their shares until `t` are in hand: `t` at once, then one more
    /// for each refusal (so no more shares are released, and logged, than needed).
    async fn collect_shares(
        &self,
        who: &Identity,
        token: U256,
        env: &ShareEnvelope,
        context: &GrantContext,
        reply_key: B256,
    ) -> Result<(Vec<CustodianShare>, Vec<u16>), RecordError> {
        let need = env.threshold();
        let mut refusals = Vec::new();
        // Which reachable node is which custodian. Both calls are open to anyone and go without
        // a session: a custodian learns which one-time owner or grantee asks, never its account.
        let found = futures::future::join_all(self.nodes.iter().map(|c| async move {
            let r = ShareServiceClient::new(c.channel().anonymous())
                .get_custodians(pb::GetCustodiansRequest {})
                .await;
            (c, r)
        }))
        .await;
        let mut custodians = Vec::new();
        for (c, r) in found {
            match r {
                Ok(r) => {
                    if let Some(me) = r.into_inner().this_node {
                        let address = Address::try_from(me.address.as_slice())
                            .map_err(|_| RecordError::Malformed("custodian address".into()))?;
                        custodians.push((c, me.index, address));
                    }
                }
                Err(e) => refusals.push(format!("{}: {}", c.url(), e.message())),
            }
        }
        let ask = |c: &PmrClient, index: u32, custodian: Address| {
            let channel = c.channel().anonymous();
            async move {
                let ch = ReleaseChallenge::new(
                    self.chain_id,
                    custodian,
                    token,
                    who.address(),
                    now_ms(),
                    &mut rand::rngs::OsRng,
                )
                .with_reply_key(reply_key);
                let signature = who
                    .wallet()
                    .sign_message(ch.signing_hash().as_slice())
                    .map_err(|e| format!("custodian {index}: cannot sign: {e}"))?;
                let r = ShareServiceClient::new(channel)
                    .release_share(pb::ReleaseShareRequest {
                        challenge: ch.to_bytes().to_vec(),
                        signature: signature.to_vec(),
                    })
                    .await
                    .map_err(|e| format!("custodian {index}: {}", e.message()))?
                    .into_inner();
                let at = r.custodian_index as u16;
                SealedShare::from_bytes(&r.sealed_share)
                    .and_then(|s| open_sealed_share(&s, at, who.x25519(), context))
                    .map(|share| (share, at))
                    .map_err(|e| format!("custodian {index}: {e}"))
            }
        };
        let mut shares = Vec::new();
        let mut used = Vec::new();
        let mut next = 0;
        while shares.len() < need && next < custodians.len() {
            let batch = (need - shares.len()).min(custodians.len() - next);
            let results = futures::future::join_all(
                custodians[next..next + batch]
                    .iter()
                    .map(|(c, index, address)| ask(c, *index, *address)),
            )
            .await;
            next += batch;
            for r in results {
                match r {
                    Ok((_, at)) if used.contains(&at) => {
                        refusals.push(format!("custodian {at} answered twice"))
                    }
                    Ok((share, at)) => match verify_custodian_share(env, &share) {
                        Ok(()) => {
                            shares.push(share);
                            used.push(at);
                        }
                        Err(e) => refusals.push(format!("custodian {at}: {e}")),
                    },
                    Err(e) => refusals.push(e),
                }
            }
        }
        if shares.len() < need {
            return Err(RecordError::Refused(format!(
                "only {} of the {need} custodian shares needed were released: {}",
                shares.len(),
                refusals.join("; ")
            )));
        }
        Ok((shares, used))
    }

    /// Every event of `token`, in chain order, with the transactions' hashes.
    pub async fn audit(&self, token: U256) -> Result<Vec<AuditEvent>, RecordError> {
        let c = self.primary();
        let tip = c.status().await?.height;
        let mut out = Vec::new();
        let mut blocks = c.stream_blocks(1).await?;
        while let Some(b) = blocks.next().await {
            let b = b.map_err(ClientError::from)?;
            let height = b.header.as_ref().map_or(0, |h| h.height);
            for raw in &b.transactions {
                let tx = keccak256(raw);
                let Some(r) = c.receipt(tx).await?.receipt else {
                    continue;
                };
                for log in &r.logs {
                    let Ok(address) = Address::try_from(log.address.as_slice()) else {
                        continue;
                    };
                    let topics: Vec<B256> =
                        log.topics.iter().map(|t| B256::from_slice(t)).collect();
                    if let Some((kind, detail)) =
                        describe_token_event(address, &topics, &log.data, token)
                    {
                        out.push(AuditEvent {
                            height,
                            tx,
                            kind: kind.into(),
                            detail,
                        });
                    }
                }
            }
            if height >= tip {
                break;
            }
        }
        Ok(out)
    }

    /// What proves `events` (of `token`) to anyone holding the genesis: each transaction's
    /// receipt, its Merkle proof, its block and the block's commit certificate.
    pub async fn audit_proof(
        &self,
        token: U256,
        events: &[AuditEvent],
    ) -> Result<AuditProof, RecordError> {
        let c = self.primary();
        let mut txs: Vec<B256> = events.iter().map(|e| e.tx).collect();
        txs.dedup();
        let mut entries = Vec::new();
        for tx in txs {
            entries.push(proof_entry(c.receipt(tx).await?)?);
        }
        // The validator-set changes up to the last entry's block: its certificate may be signed
        // by a set the genesis does not name.
        let last = entries.iter().map(|e| e.cert_height).max().unwrap_or(0);
        let mut validator_changes = Vec::new();
        for change in c.validator_set_changes().await? {
            if change.height < last {
                validator_changes.push(proof_entry(change)?);
            }
        }
        let status = c.status().await?;
        Ok(AuditProof {
            version: AUDIT_PROOF_VERSION,
            chain_id: status.chain_id,
            genesis_hash: B256::from_slice(&status.genesis_hash),
            token_id: token,
            entries,
            validator_changes,
        })
    }
}

/// A receipt with its Merkle proof and certified block, as a node answers
/// `GetTransactionReceipt` (or `GetValidatorSetChanges`), in the audit-proof entry form.
pub fn proof_entry(r: pb::GetTransactionReceiptResponse) -> Result<ProofEntry, RecordError> {
    let (Some(receipt), Some(p), Some(block)) = (r.receipt, r.proof, r.block) else {
        return Err(RecordError::Malformed(format!(
            "the node returned no proof for a receipt of block {}",
            r.height
        )));
    };
    let cert = block
        .certificate
        .ok_or_else(|| RecordError::Malformed(format!("block {} has no certificate", r.height)))?;
    if receipt.tx_hash.len() != 32 || cert.block_hash.len() != 32 {
        return Err(RecordError::Malformed(format!(
            "a receipt of block {} names hashes that are not 32 bytes",
            r.height
        )));
    }
    Ok(ProofEntry {
        tx_hash: B256::from_slice(&receipt.tx_hash),
        receipt: hex::encode(&receipt.encoded),
        proof_index: p.index,
        proof_count: p.count,
        proof_siblings: p
            .siblings
            .iter()
            .map(|s| B256::try_from(s.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                RecordError::Malformed(format!(
                    "a receipt proof of block {} has a sibling that is not 32 bytes",
                    r.height
                ))
            })?,
        block: hex::encode(&block.encoded),
        cert_height: cert.height,
        cert_round: cert.round,
        cert_block_hash: B256::from_slice(&cert.block_hash),
        cert_signatures: cert
            .signatures
            .iter()
            .map(|s| (hex::encode(&s.validator), hex::encode(&s.signature)))
            .collect(),
    })
}
