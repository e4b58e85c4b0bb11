//! Share custody: this node as a custodian of record-key shares, served as
//! `pmr.v1.ShareService`.
//!
//! The custodians of a chain are the genesis validators with an X25519 custody key and an
//! operator account ([`Genesis::custodians`]); a node is one of them when its
//! `keys/custody_key.json` matches a genesis entry. When a record's mint or new version commits,
//! the replicator pins its share envelope and hands it here ([`Custody::take_custody`]): the
//! node opens its slot, verifies the share against the VSS commitments and the on-chain key
//! commitment, and records the outcome in the `shares` column. The share itself stays sealed to
//! the custody key (the envelope's slot) at rest.
//!
//! A release ([`ShareService::release_share`]) checks, in order: the challenge's encoding, chain
//! and custodian, its age, the grantee's signature, that its nonce is new (recorded durably),
//! then at the latest committed height the token, the grant (present, not revoked, not expired)
//! and the grantee's encryption key. Only after the node's `logShareRelease` transaction has
//! committed successfully does the share leave the node, sealed to the grantee and bound to the
//! grant: every release is on the chain before anyone can use it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolEvent};
use eyre::{bail, Context, Result};
use pmr_client::{Wallet, PMR, PMR_ADDRESS};
use pmr_consensus::{Ledger, PoolError, SubmitError};
use pmr_content::{Cid, ContentNode};
use pmr_primitives::{Genesis, GenesisCustodian};
use pmr_proto::v1 as pb;
use pmr_proto::v1::share_service_server::{ShareService, ShareServiceServer};
use pmr_shares::{
    open_custodian_share, seal_share_to, split_record_key, CustodianInfo, GrantContext,
    ReleaseChallenge, ShareEnvelope, X25519PublicKey, X25519Secret,
};
use pmr_storage::{Column, Durability, Store};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::config::Home;

/// The gRPC name of the share service (health checking).
pub const SERVICE_NAME: &str = "pmr.v1.ShareService";
const TARGET: &str = "pmr::custody";
/// A release challenge or issue request is accepted for this long after it was made.
pub const MAX_REQUEST_AGE: Duration = Duration::from_secs(300);
/// ... and at most this far in the future (clock skew between caller and node).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// How long a release waits for its `ShareReleased` log to commit.
pub const RELEASE_COMMIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Gas limit of a `logShareRelease` transaction (it uses about 40k).
const RELEASE_GAS: u64 = 300_000;

/// `shares` column key prefixes.
const CUSTODY_PREFIX: u8 = b'c';
const NONCE_PREFIX: u8 = b'n';
const RELEASES_PREFIX: u8 = b'r';

/// What this node holds for one version of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustodyStatus {
    /// A verified share is kept.
    Held,
    /// The envelope has no slot for this node.
    NotCustodian,
    /// The slot does not open or verify, or the envelope is malformed.
    Invalid,
}

impl CustodyStatus {
    fn as_str(self) -> &'static str {
        match self {
            CustodyStatus::Held => "held",
            CustodyStatus::NotCustodian => "not_custodian",
            CustodyStatus::Invalid => "invalid",
        }
    }
}

/// The custody outcome of one record version, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyRecord {
    pub version: u32,
    pub envelope_cid: String,
    pub status: CustodyStatus,
    /// Why the status is not `held`.
    pub reason: String,
    /// This node's index in the envelope (0 without a slot).
    pub index: u16,
    pub threshold: u16,
    /// The envelope bytes (hex) when a share is held: its slot is the share, sealed to this
    /// node's custody key.
    #[serde(default)]
    pub envelope: String,
}

/// Judges a version's envelope for the custodian holding `secret`. Pure: no I/O.
pub fn assess(
    version: u32,
    cid: &Cid,
    bytes: &[u8],
    onchain_commitment: &B256,
    secret: &X25519Secret,
) -> CustodyRecord {
    let mut rec = CustodyRecord {
        version,
        envelope_cid: cid.to_string(),
        status: CustodyStatus::Invalid,
        reason: String::new(),
        index: 0,
        threshold: 0,
        envelope: String::new(),
    };
    let env = match ShareEnvelope::decode(bytes) {
        Ok(e) => e,
        Err(e) => {
            rec.reason = format!("the envelope does not decode: {e}");
            return rec;
        }
    };
    rec.threshold = env.threshold() as u16;
    if env.key_commitment().as_bytes() != &onchain_commitment.0 {
        rec.reason = "the envelope's key commitment differs from the one committed on-chain".into();
        return rec;
    }
    let Some(slot) = env.custodian_by_key(&X25519PublicKey::from(secret)) else {
        rec.status = CustodyStatus::NotCustodian;
        rec.reason = "the envelope has no slot for this node's custody key".into();
        return rec;
    };
    rec.index = slot.index;
    match open_custodian_share(&env, slot.index, secret) {
        Ok(_) => {
            rec.status = CustodyStatus::Held;
            rec.envelope = hex::encode(bytes);
        }
        Err(e) => rec.reason = format!("this node's share does not open or verify: {e}"),
    }
    rec
}

/// The custodian threshold used when a caller asks for none: `f + 1` of `3f + 1` custodians
/// (so `f` colluding custodians learn nothing and `f` unavailable ones stop no release), and
/// at least 2.
pub fn default_threshold(custodians: usize) -> usize {
    (custodians.saturating_sub(1) / 3 + 1).max(2)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn custody_key(token: U256, version: u32) -> Vec<u8> {
    key_with(
        CUSTODY_PREFIX,
        &[&token.to_be_bytes::<32>(), &version.to_be_bytes()],
    )
}

fn releases_key(token: U256) -> Vec<u8> {
    key_with(RELEASES_PREFIX, &[&token.to_be_bytes::<32>()])
}

fn key_with(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// This node as a custodian.
struct Me {
    info: GenesisCustodian,
    secret: X25519Secret,
    operator: Wallet,
}

struct Inner {
    chain_id: u64,
    custodians: Vec<GenesisCustodian>,
    me: Option<Me>,
    ledger: Arc<Ledger>,
    content: ContentNode,
    store: Store,
    /// Next nonce of the operator account (None: read it from the committed state).
    next_nonce: tokio::sync::Mutex<Option<u64>>,
    /// Serializes nonce check-and-record.
    seen: std::sync::Mutex<()>,
    /// The `pmr_share_releases` metric.
    releases: prometheus_client::metrics::counter::Counter,
}

/// The node's custody of record-key shares.
#[derive(Clone)]
pub struct Custody {
    inner: Arc<Inner>,
}

impl Custody {
    /// Loads this node's custody key and operator account from `home` when the genesis names
    /// them as a custodian.
    pub fn open(
        home: &Home,
        genesis: &Genesis,
        ledger: Arc<Ledger>,
        content: ContentNode,
        store: Store,
        releases: prometheus_client::metrics::counter::Counter,
    ) -> Result<Self> {
        let custodians = genesis.custodians();
        let me = if home.custody_key().exists() {
            let secret = crate::keys::load_custody_key(&home.custody_key())?;
            let public = X25519PublicKey::from(&secret);
            match custodians
                .iter()
                .find(|c| &c.custody_key == public.as_bytes())
            {
                None => {
                    warn!(target: TARGET, custody_key = %hex::encode(public.as_bytes()), "this node's custody key is not in the genesis: it is not a custodian and holds no shares");
                    None
                }
                Some(c) => {
                    let operator = crate::testnet::load_account(&home.operator_key())
                        .wrap_err("a custodian needs its operator key to log share releases")?;
                    if operator.address() != c.address {
                        bail!(
                            "{} holds account {} but the genesis names {} as the operator of custodian {} ({}): use the operator key the genesis was made with",
                            home.operator_key().display(),
                            operator.address(),
                            c.address,
                            c.index,
                            c.name
                        );
                    }
                    info!(target: TARGET, index = c.index, operator = %c.address, custodians = custodians.len(), "this node is a share custodian");
                    Some(Me {
                        info: c.clone(),
                        secret,
                        operator,
                    })
                }
            }
        } else {
            info!(target: TARGET, "no custody key ({}): this node is not a share custodian", home.custody_key().display());
            None
        };
        Ok(Custody {
            inner: Arc::new(Inner {
                chain_id: genesis.chain_id,
                custodians,
                me,
                ledger,
                content,
                store,
                next_nonce: tokio::sync::Mutex::new(None),
                seen: std::sync::Mutex::new(()),
                releases,
            }),
        })
    }

    /// Whether this node is a custodian of the chain.
    pub fn is_custodian(&self) -> bool {
        self.inner.me.is_some()
    }

    fn me(&self) -> Result<&Me, Status> {
        self.inner.me.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node is not a share custodian (no custody key in its genesis entry); ask a custodian node (GetCustodians lists them)",
            )
        })
    }

    /// The stored custody record of `token` version `version`.
    pub fn record(&self, token: U256, version: u32) -> Result<Option<CustodyRecord>> {
        let key = custody_key(token, version);
        match self.inner.store.get(Column::Shares, &key)? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).wrap_err("corrupt custody record")?,
            )),
            None => Ok(None),
        }
    }

    /// Every custody record of `token`, by version.
    pub fn records(&self, token: U256) -> Result<Vec<CustodyRecord>> {
        let prefix = key_with(CUSTODY_PREFIX, &[&token.to_be_bytes::<32>()]);
        self.inner
            .store
            .scan_prefix(Column::Shares, &prefix)?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).wrap_err("corrupt custody record"))
            .collect()
    }

    /// Takes custody of `token` version `version` from its (locally stored or fetchable)
    /// envelope `cid`, unless already done. Returns the record, stored durably.
    pub async fn take_custody(
        &self,
        token: U256,
        version: u32,
        cid: Cid,
        key_commitment: B256,
    ) -> Result<CustodyRecord> {
        let Some(me) = &self.inner.me else {
            bail!("this node is not a share custodian");
        };
        if let Some(rec) = self.record(token, version)? {
            return Ok(rec);
        }
        self.inner
            .content
            .fetch_and_pin(cid)
            .await
            .wrap_err_with(|| format!("cannot fetch share envelope {cid}"))?;
        let bytes = self.inner.content.get_bytes(cid).await?;
        let rec = assess(version, &cid, &bytes, &key_commitment, &me.secret);
        let key = custody_key(token, version);
        self.inner.store.put(
            Column::Shares,
            &key,
            &serde_json::to_vec(&rec)?,
            Durability::Sync,
        )?;
        match rec.status {
            CustodyStatus::Held => {
                info!(target: TARGET, token = %token, version, index = rec.index, envelope = %cid, "share verified and held")
            }
            CustodyStatus::NotCustodian => {
                info!(target: TARGET, token = %token, version, envelope = %cid, "no slot for this node in the envelope")
            }
            CustodyStatus::Invalid => {
                warn!(target: TARGET, token = %token, version, envelope = %cid, reason = %rec.reason, "the dealer gave this node an invalid share: it cannot release one for this version")
            }
        }
        Ok(rec)
    }

    /// Number of releases this node committed for `token`.
    pub fn releases(&self, token: U256) -> Result<u64> {
        let key = releases_key(token);
        Ok(self
            .inner
            .store
            .get(Column::Shares, &key)?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    fn count_release(&self, token: U256) -> Result<()> {
        let _g = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
        let n = self.releases(token)? + 1;
        let key = releases_key(token);
        self.inner
            .store
            .put(Column::Shares, &key, &n.to_be_bytes(), Durability::Buffered)?;
        Ok(())
    }

    /// Records `nonce` (of a request made at `issued_at_ms`) as used; refuses one seen before.
    /// Keys are `n ‖ issued_at_ms ‖ nonce`, so entries older than the freshness window (which
    /// no request can reuse: it would be refused as stale) are pruned in key order.
    async fn consume_nonce(&self, nonce: B256, issued_at_ms: u64) -> Result<(), Status> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _g = this.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
            let store = &this.inner.store;
            let key = key_with(
                NONCE_PREFIX,
                &[&issued_at_ms.to_be_bytes(), nonce.as_slice()],
            );
            if store.get(Column::Shares, &key).map_err(internal)?.is_some() {
                return Err(Status::already_exists(format!(
                    "nonce {nonce} was already used: replay refused; sign a new request with a fresh nonce"
                )));
            }
            let cutoff = now_ms()
                .saturating_sub((MAX_REQUEST_AGE + MAX_CLOCK_SKEW).as_millis() as u64);
            let mut stale = Vec::new();
            store
                .for_each_from(Column::Shares, &[NONCE_PREFIX], |k, _| {
                    let at = k
                        .get(1..9)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_be_bytes);
                    match (k.first(), at) {
                        (Some(&NONCE_PREFIX), Some(at)) if at < cutoff => {
                            stale.push(k.to_vec());
                            stale.len() < 1024
                        }
                        _ => false,
                    }
                })
                .map_err(internal)?;
            let mut batch = store.batch();
            for k in &stale {
                batch.delete(Column::Shares, k);
            }
            batch.put(Column::Shares, &key, &[]);
            batch.commit(Durability::Sync).map_err(internal)
        })
        .await
        .map_err(internal)?
    }

    /// A read-only PMR contract call at `height`: `Ok(Err(revert reason))` when it reverts.
    async fn view<C: SolCall + Send + 'static>(
        &self,
        height: u64,
        call: C,
    ) -> Result<Result<C::Return, String>, Status> {
        let ledger = self.inner.ledger.clone();
        let data = Bytes::from(call.abi_encode());
        let out = tokio::task::spawn_blocking(move || {
            ledger
                .executor
                .call(Some(height), Address::ZERO, PMR_ADDRESS, data)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        if !out.success {
            return Ok(Err(out.revert_reason.unwrap_or_else(|| "reverted".into())));
        }
        C::abi_decode_returns(&out.output)
            .map(Ok)
            .map_err(|e| internal(format!("cannot decode the PMR contract's answer: {e}")))
    }

    /// Submits `logShareRelease` from the operator account and waits until it commits.
    async fn log_release(
        &self,
        me: &Me,
        token: U256,
        grantee: Address,
        challenge_hash: B256,
    ) -> Result<(B256, u64, Vec<pmr_execution::Log>), Status> {
        let ledger = &self.inner.ledger;
        let data = PMR::logShareReleaseCall {
            tokenId: token,
            grantee,
            challengeHash: challenge_hash,
        }
        .abi_encode();
        // Subscribe before submitting, so the commit cannot slip by unseen.
        let mut blocks = ledger.subscribe();
        let hash = {
            let mut next = self.inner.next_nonce.lock().await;
            let committed = ledger
                .executor
                .nonce(me.operator.address())
                .map_err(internal)?;
            let mut nonce = next.map_or(committed, |n| n.max(committed));
            // A nonce may still be held by an earlier release's pending transaction (after a
            // timeout reset): step past it, a bounded number of times.
            let mut attempts = 0;
            loop {
                let raw = me
                    .operator
                    .sign_call(
                        self.inner.chain_id,
                        nonce,
                        PMR_ADDRESS,
                        data.clone().into(),
                        RELEASE_GAS,
                    )
                    .map_err(internal)?;
                match ledger.submit(raw.0) {
                    Ok(a) => {
                        *next = Some(nonce + 1);
                        break a.hash;
                    }
                    Err(SubmitError::Pool(PoolError::NonceTaken { .. })) if attempts < 64 => {
                        attempts += 1;
                        nonce += 1;
                    }
                    Err(e) => {
                        *next = None;
                        return Err(Status::unavailable(format!(
                            "cannot submit the share-release log: {e}; nothing was released"
                        )));
                    }
                }
            }
        };
        let deadline = tokio::time::Instant::now() + RELEASE_COMMIT_TIMEOUT;
        loop {
            if let Some(loc) = ledger.tx_location(&hash).map_err(internal)? {
                if let Some(r) = ledger
                    .executor
                    .receipts(loc.height)
                    .map_err(internal)?
                    .and_then(|rs| rs.into_iter().nth(loc.index as usize))
                {
                    if r.success {
                        return Ok((hash, loc.height, r.logs));
                    }
                    let reason = pmr_contract::describe_revert(&r.output);
                    let msg = format!(
                        "the ledger refused the share-release log at height {} ({reason}); nothing was released",
                        loc.height
                    );
                    return Err(if reason.contains("NoLiveGrant") {
                        Status::permission_denied(msg)
                    } else {
                        Status::failed_precondition(msg)
                    });
                }
            }
            match tokio::time::timeout_at(deadline, blocks.recv()).await {
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => {
                    return Err(Status::unavailable("the node is shutting down"))
                }
                Err(_) => {
                    // The transaction may have been dropped: re-read the nonce next time.
                    *self.inner.next_nonce.lock().await = None;
                    return Err(Status::unavailable(format!(
                        "the share-release log {hash} did not commit within {}s, so no share was returned (the log may still commit later): retry with a new challenge",
                        RELEASE_COMMIT_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }

    async fn release(
        &self,
        req: pb::ReleaseShareRequest,
    ) -> Result<pb::ReleaseShareResponse, Status> {
        let me = self.me()?;
        let chain_id = self.inner.chain_id;
        let ch = ReleaseChallenge::from_bytes(&req.challenge)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if ch.chain_id != chain_id {
            return Err(Status::failed_precondition(format!(
                "the challenge is for chain {}; this is chain {chain_id}",
                ch.chain_id
            )));
        }
        if ch.custodian != me.info.address {
            return Err(Status::failed_precondition(format!(
                "wrong custodian: the challenge names {}, this node is custodian {} ({}, index {})",
                ch.custodian, me.info.address, me.info.name, me.info.index
            )));
        }
        ch.check_fresh(
            now_ms(),
            MAX_REQUEST_AGE.as_millis() as u64,
            MAX_CLOCK_SKEW.as_millis() as u64,
        )
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        ch.verify(&req.signature)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;

        let (token, grantee) = (ch.token_id, ch.grantee);
        let height = self.inner.ledger.tip().height;
        let record = self
            .view(height, PMR::recordOfCall { tokenId: token })
            .await?
            .map_err(|_| {
                Status::not_found(format!(
                    "unknown token {token}: no record has this id at height {height}"
                ))
            })?;
        let version = if grantee == record.patient {
            record.versions - 1
        } else {
            let g = self
                .view(
                    height,
                    PMR::grantOfCall {
                        tokenId: token,
                        grantee,
                    },
                )
                .await?
                .map_err(internal)?;
            if g.expiry == 0 {
                return Err(Status::permission_denied(format!(
                    "no grant: {grantee} has never been granted access to token {token}"
                )));
            }
            if g.revoked {
                return Err(Status::permission_denied(format!(
                    "grant revoked: the owner revoked {grantee}'s access to token {token}"
                )));
            }
            let now_s = now_ms() / 1000;
            if g.expiry <= now_s {
                return Err(Status::permission_denied(format!(
                    "grant expired: {grantee}'s access to token {token} ended at {} (unix seconds; now {now_s})",
                    g.expiry
                )));
            }
            g.version
        };
        let encryption_key = self
            .view(height, PMR::encryptionKeyOfCall { account: grantee })
            .await?
            .map_err(internal)?;
        if encryption_key.is_zero() {
            return Err(Status::failed_precondition(format!(
                "{grantee} has no encryption key on-chain: register one with setEncryptionKey first"
            )));
        }
        let v = self
            .view(
                height,
                PMR::recordVersionCall {
                    tokenId: token,
                    index: U256::from(version),
                },
            )
            .await?
            .map_err(internal)?;
        let cid = crate::replicate::event_cid(&v.envelope).map_err(|e| {
            Status::failed_precondition(format!(
                "version {version} of token {token} names no usable envelope: {e}"
            ))
        })?;
        // Only a request that passed every ledger check uses up its nonce (so strangers cannot
        // fill the nonce store), and it does before anything leaves the node.
        self.consume_nonce(ch.nonce, ch.issued_at_ms).await?;
        let rec = self
            .take_custody(token, version, cid, v.keyCommitment)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "this node has not taken custody of token {token} version {version} yet: {e:#}"
                ))
            })?;
        if rec.status != CustodyStatus::Held {
            return Err(Status::failed_precondition(format!(
                "this node holds no valid share of token {token} version {version}: {}",
                rec.reason
            )));
        }
        let env = hex::decode(&rec.envelope)
            .ok()
            .and_then(|b| ShareEnvelope::decode(&b).ok())
            .ok_or_else(|| internal("corrupt custody record: stored envelope"))?;
        let share = open_custodian_share(&env, rec.index, &me.secret).map_err(internal)?;
        let context = GrantContext {
            chain_id,
            token_id: token,
            grantee,
            key_commitment: env.key_commitment(),
        };
        let sealed = seal_share_to(
            &share,
            &X25519PublicKey::from(encryption_key.0),
            &context,
            &mut OsRng,
        )
        .map_err(|e| {
            Status::failed_precondition(format!("cannot seal to {grantee}'s encryption key: {e}"))
        })?;
        let (tx, at, logs) = self
            .log_release(me, token, grantee, keccak256(&req.challenge))
            .await?;
        // The contract names the version it logged (decided at commit); release only if it is
        // the one this share belongs to.
        let logged = logs
            .iter()
            .filter(|l| l.address == PMR_ADDRESS)
            .find_map(|l| {
                PMR::ShareReleased::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
            })
            .map(|e| e.version);
        if logged != Some(version) {
            return Err(Status::aborted(format!(
                "the record changed while releasing (the log names version {logged:?}, this share is of version {version}); no share was returned: retry with a new challenge"
            )));
        }
        self.inner.releases.inc();
        if let Err(e) = self.count_release(token) {
            warn!(target: TARGET, error = %e, "cannot count a release");
        }
        info!(target: TARGET, token = %token, version, grantee = %grantee, tx = %tx, height = at, "share released");
        Ok(pb::ReleaseShareResponse {
            sealed_share: sealed.to_bytes().to_vec(),
            custodian_index: rec.index as u32,
            version,
            key_commitment: env.key_commitment().to_bytes().to_vec(),
            release_tx_hash: tx.to_vec(),
            release_height: at,
        })
    }
}

fn custodian_pb(c: &GenesisCustodian) -> pb::Custodian {
    pb::Custodian {
        index: c.index as u32,
        address: c.address.to_vec(),
        custody_key: c.custody_key.to_vec(),
        name: c.name.clone(),
    }
}

#[tonic::async_trait]
impl ShareService for Custody {
    async fn get_custodians(
        &self,
        _request: Request<pb::GetCustodiansRequest>,
    ) -> Result<Response<pb::GetCustodiansResponse>, Status> {
        let c = &self.inner.custodians;
        Ok(Response::new(pb::GetCustodiansResponse {
            chain_id: self.inner.chain_id,
            custodians: c.iter().map(custodian_pb).collect(),
            this_node: self.inner.me.as_ref().map(|m| custodian_pb(&m.info)),
            default_threshold: default_threshold(c.len()) as u32,
        }))
    }

    async fn release_share(
        &self,
        request: Request<pb::ReleaseShareRequest>,
    ) -> Result<Response<pb::ReleaseShareResponse>, Status> {
        let res = self.release(request.into_inner()).await;
        if let Err(s) = &res {
            info!(target: TARGET, code = ?s.code(), message = s.message(), "share release refused");
        }
        res.map(Response::new)
    }

    async fn get_custody_status(
        &self,
        request: Request<pb::GetCustodyStatusRequest>,
    ) -> Result<Response<pb::GetCustodyStatusResponse>, Status> {
        let id = request.into_inner().token_id;
        if id.len() > 32 {
            return Err(Status::invalid_argument(format!(
                "token_id is {} bytes; at most 32 (big-endian)",
                id.len()
            )));
        }
        let token = U256::from_be_slice(&id);
        let versions = self
            .records(token)
            .map_err(internal)?
            .into_iter()
            .map(|r| pb::CustodyEntry {
                version: r.version,
                envelope_cid: r.envelope_cid,
                status: r.status.as_str().into(),
                reason: r.reason,
                custodian_index: r.index as u32,
                threshold: r.threshold as u32,
            })
            .collect();
        Ok(Response::new(pb::GetCustodyStatusResponse {
            versions,
            releases: self.releases(token).map_err(internal)?,
        }))
    }
}

/// The gRPC routes of the share service, for `pmr_rpc::serve`'s extra routes (without tonic's
/// fallback, as [`crate::content::routes`] explains).
pub fn routes(custody: &Custody) -> Routes {
    let svc = ShareServiceServer::new(custody.clone());
    Routes::from(Routes::new(svc).into_axum_router().reset_fallback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_shares::{RecordKey, X25519Secret};

    fn envelope(custodians: &[X25519Secret], threshold: usize) -> (ShareEnvelope, RecordKey) {
        let infos: Vec<CustodianInfo> = custodians
            .iter()
            .enumerate()
            .map(|(i, s)| CustodianInfo {
                index: i as u16 + 1,
                address: Address::repeat_byte(i as u8 + 1),
                public_key: X25519PublicKey::from(s),
            })
            .collect();
        let key = RecordKey::generate(&mut OsRng);
        let patient = X25519PublicKey::from(&X25519Secret::random_from_rng(OsRng));
        let env = split_record_key(&key, threshold, &infos, &patient, &mut OsRng).unwrap();
        (env, key)
    }

    #[test]
    fn assess_holds_verified_shares_and_names_every_failure() {
        let secrets: Vec<X25519Secret> = (0..4)
            .map(|_| X25519Secret::random_from_rng(OsRng))
            .collect();
        let (env, key) = envelope(&secrets, 2);
        let bytes = env.encode();
        let cid = pmr_blob::ids::block_cid(0x55, &bytes);
        let commitment = B256::from(key.commitment().to_bytes());

        let held = assess(0, &cid, &bytes, &commitment, &secrets[2]);
        assert_eq!(held.status, CustodyStatus::Held, "{}", held.reason);
        assert_eq!((held.index, held.threshold), (3, 2));
        assert_eq!(hex::decode(&held.envelope).unwrap(), bytes);

        let stranger = X25519Secret::random_from_rng(OsRng);
        let none = assess(0, &cid, &bytes, &commitment, &stranger);
        assert_eq!(none.status, CustodyStatus::NotCustodian);
        assert!(none.envelope.is_empty());

        let other = assess(0, &cid, &bytes, &B256::repeat_byte(7), &secrets[0]);
        assert_eq!(other.status, CustodyStatus::Invalid);
        assert!(other.reason.contains("key commitment"), "{}", other.reason);

        let garbage = assess(0, &cid, &bytes[..bytes.len() - 3], &commitment, &secrets[0]);
        assert_eq!(garbage.status, CustodyStatus::Invalid);
        assert!(
            garbage.reason.contains("does not decode"),
            "{}",
            garbage.reason
        );

        // A slot whose sealed share was altered (the envelope still decodes).
        let slot = env.custodian(1).unwrap().sealed.to_bytes();
        let at = bytes
            .windows(slot.len())
            .position(|w| w == slot)
            .expect("slot bytes in the encoding");
        let mut forged = bytes.clone();
        forged[at + 40] ^= 1;
        let bad = assess(0, &cid, &forged, &commitment, &secrets[0]);
        assert_eq!(bad.status, CustodyStatus::Invalid);
        assert!(
            bad.reason.contains("does not open or verify"),
            "{}",
            bad.reason
        );
    }

    #[test]
    fn default_threshold_is_f_plus_one_and_at_least_two() {
        assert_eq!(default_threshold(1), 2);
        assert_eq!(default_threshold(4), 2);
        assert_eq!(default_threshold(7), 3);
        assert_eq!(default_threshold(10), 4);
    }
}
