//! The node's custody of record-key shares: taking custody when a record version commits, and
//! releasing a share to a grantee the ledger shows a live grant for.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::num::NonZeroU32;

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_sol_types::SolEvent;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pmr_blob::Cid;
use pmr_consensus::Ledger;
use pmr_content::ContentNode;
use pmr_contract::{event_cid, Wallet, PMR, PMR_ADDRESS};
use pmr_primitives::GenesisCustodian;
use pmr_shares::{
    open_custodian_share, seal_share_to, GrantContext, ReleaseChallenge, ShareEnvelope,
    X25519PublicKey, X25519Secret, SEALED_SHARE_LEN,
};
use pmr_storage::Store;
use prometheus_client::metrics::counter::Counter;
use rand::rngs::OsRng;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::error::CustodyError;
use crate::operator::{view, Operator};
use crate::record::{assess, CustodyRecord, CustodyStatus};
use crate::store::CustodyStore;

const TARGET: &str = "pmr::custody";
/// A release challenge is accepted for this long after it was made.
pub const MAX_REQUEST_AGE: Duration = Duration::from_secs(300);
/// ... and at most this far in the future (clock skew between caller and node).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// Gas limit of a `logShareRelease` transaction (it uses about 40k).
const RELEASE_GAS: u64 = 300_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Bounds on releases: each costs this node a transaction and a wait for its commit.
#[derive(Clone, Debug)]
pub struct ReleaseLimits {
    /// Releases one grantee may ask this node for per second (twice as many in a burst),
    /// counted once the challenge's signature checks.
    pub per_grantee_per_second: u32,
    /// Releases in progress at once on this node.
    pub max_in_flight: usize,
}

impl Default for ReleaseLimits {
    fn default() -> Self {
        Self {
            per_grantee_per_second: 5,
            max_in_flight: 64,
        }
    }
}

/// What [`Custody::open`] needs.
pub struct CustodyParams {
    /// The chain id.
    pub chain_id: u64,
    /// The genesis's custodians (`Genesis::custodians`), for their names; which custodians
    /// the chain has is read from its state.
    pub custodians: Vec<GenesisCustodian>,
    /// This node's custody key, if it has one.
    pub custody_key: Option<X25519Secret>,
    /// This node's operator account, if it has one (a custodian needs it to log releases).
    pub operator: Option<Wallet>,
    /// The node's ledger (views, submissions, commits).
    pub ledger: Arc<Ledger>,
    /// The node's content store (share envelopes).
    pub content: ContentNode,
    /// The node's database (the `shares` column).
    pub store: Store,
    /// Counts released shares (the `pmr_share_releases` metric).
    pub releases: Counter,
    /// Bounds on releases.
    pub limits: ReleaseLimits,
}

/// This node as a custodian, at one height.
struct Me<'a> {
    info: GenesisCustodian,
    secret: &'a X25519Secret,
    operator: &'a Operator,
}

/// The chain's active custodians as read at one height.
type CustodianCache = (u64, Arc<Vec<GenesisCustodian>>);

struct Inner {
    chain_id: u64,
    /// Names of the genesis's custodians by custody key (later ones are named by index).
    names: std::collections::HashMap<[u8; 32], String>,
    secret: Option<X25519Secret>,
    operator: Option<Operator>,
    cache: parking_lot::Mutex<Option<CustodianCache>>,
    ledger: Arc<Ledger>,
    content: ContentNode,
    store: CustodyStore,
    releases: Counter,
    limits: ReleaseLimits,
    in_flight: Arc<Semaphore>,
    per_grantee: DefaultKeyedRateLimiter<Address>,
}

/// A share on its way to a grantee, released after its log committed.
#[derive(Debug)]
pub struct Released {
    /// The share sealed to the grantee's encryption key, bound to the grant.
    pub sealed_share: [u8; SEALED_SHARE_LEN],
    /// This custodian's index.
    pub custodian_index: u16,
    /// The record version the share is of.
    pub version: u32,
    /// The version's key commitment.
    pub key_commitment: B256,
    /// The `logShareRelease` transaction.
    pub tx: B256,
    /// Where it committed.
    pub height: u64,
}

/// The node's custody of record-key shares. Cheap to clone.
#[derive(Clone)]
pub struct Custody {
    inner: Arc<Inner>,
}

impl Custody {
    /// The node's custody. Whether it is a custodian is read from the chain (the contract's
    /// share custodians: the genesis's, then those the council added), at every height: a
    /// node whose custody key the chain does not name holds no shares until the council adds
    /// it. A custodian whose operator account is another than the chain names is refused
    /// (here for the genesis's custodians, at use for later ones).
    pub fn open(p: CustodyParams) -> Result<Self, CustodyError> {
        let names = p
            .custodians
            .iter()
            .map(|c| (c.custody_key, c.name.clone()))
            .collect();
        let custody = Custody {
            inner: Arc::new(Inner {
                chain_id: p.chain_id,
                names,
                secret: p.custody_key,
                operator: p.operator.map(|w| Operator::new(w, p.chain_id)),
                cache: parking_lot::Mutex::new(None),
                ledger: p.ledger,
                content: p.content,
                store: CustodyStore::new(p.store),
                releases: p.releases,
                in_flight: Arc::new(Semaphore::new(p.limits.max_in_flight.max(1))),
                per_grantee: {
                    let rate = NonZeroU32::new(p.limits.per_grantee_per_second.max(1))
                        .unwrap_or(NonZeroU32::MIN);
                    let burst = rate.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
                    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
                },
                limits: p.limits,
            }),
        };
        match custody.me() {
            Ok(me) => {
                info!(target: TARGET, index = me.info.index, operator = %me.info.address, "this node is a share custodian")
            }
            Err(CustodyError::NotCustodian) => match &custody.inner.secret {
                None => info!(target: TARGET, "no custody key: this node is not a share custodian"),
                Some(secret) => {
                    warn!(target: TARGET, custody_key = %hex::encode(X25519PublicKey::from(secret).as_bytes()), "the chain names no custodian with this node's custody key: it holds no shares until the council adds it")
                }
            },
            Err(e) => return Err(e),
        }
        Ok(custody)
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// Every active custodian of the chain at the latest height, by index: the key of a record
    /// made now is split to these.
    pub fn custodians(&self) -> Result<Arc<Vec<GenesisCustodian>>, CustodyError> {
        let height = self.inner.ledger.tip().height;
        if let Some((at, list)) = self.inner.cache.lock().as_ref() {
            if *at == height {
                return Ok(list.clone());
            }
        }
        let answer = self
            .inner
            .ledger
            .executor
            .view(Some(height), &PMR::shareCustodiansCall {})
            .map_err(CustodyError::internal)?
            .map_err(|e| CustodyError::internal(format!("shareCustodians(): {e}")))?;
        let list: Vec<GenesisCustodian> = answer
            .list
            .iter()
            .zip(&answer.active)
            .enumerate()
            .filter(|(_, (_, active))| **active)
            .map(|(i, (c, _))| GenesisCustodian {
                index: i as u16 + 1,
                name: self
                    .inner
                    .names
                    .get(&c.custodyKey.0)
                    .cloned()
                    .unwrap_or_else(|| format!("custodian-{}", i + 1)),
                address: c.operator,
                custody_key: c.custodyKey.0,
            })
            .collect();
        let list = Arc::new(list);
        *self.inner.cache.lock() = Some((height, list.clone()));
        Ok(list)
    }

    /// This node's entry among the chain's custodians, when it is one.
    pub fn this_node(&self) -> Option<GenesisCustodian> {
        self.me().ok().map(|m| m.info)
    }

    /// This node's operator account, when it has one (a custodian signs its share-release
    /// logs with it).
    pub fn operator(&self) -> Option<alloy_primitives::Address> {
        self.inner.operator.as_ref().map(|o| o.address())
    }

    /// Whether this node is an active custodian of the chain at the latest height.
    pub fn is_custodian(&self) -> bool {
        self.me().is_ok()
    }

    fn me(&self) -> Result<Me<'_>, CustodyError> {
        let secret = self
            .inner
            .secret
            .as_ref()
            .ok_or(CustodyError::NotCustodian)?;
        let public = X25519PublicKey::from(secret);
        let list = self.custodians()?;
        let c = list
            .iter()
            .find(|c| &c.custody_key == public.as_bytes())
            .ok_or(CustodyError::NotCustodian)?;
        let operator = self.inner.operator.as_ref().ok_or_else(|| {
            CustodyError::Config(format!(
                "this node is custodian {} ({}) but has no operator key (keys/operator_key.json): \
                 a custodian needs it to log share releases",
                c.index, c.name
            ))
        })?;
        if operator.address() != c.address {
            return Err(CustodyError::Config(format!(
                "the operator key holds account {} but the chain names {} as the operator of \
                 custodian {} ({}): use the operator key the custodian was registered with",
                operator.address(),
                c.address,
                c.index,
                c.name
            )));
        }
        Ok(Me {
            info: c.clone(),
            secret,
            operator,
        })
    }

    /// The stored custody record of `token` version `version`.
    pub fn record(&self, token: U256, version: u32) -> Result<Option<CustodyRecord>, CustodyError> {
        self.inner.store.record(token, version)
    }

    /// Every custody record of `token`, by version.
    pub fn records(&self, token: U256) -> Result<Vec<CustodyRecord>, CustodyError> {
        self.inner.store.records(token)
    }

    /// Number of releases this node committed for `token`.
    pub fn releases(&self, token: U256) -> Result<u64, CustodyError> {
        self.inner.store.releases(token)
    }

    /// Takes custody of `token` version `version` from its (locally stored or fetchable)
    /// envelope `cid`, unless already done. Returns the record, stored durably.
    pub async fn take_custody(
        &self,
        token: U256,
        version: u32,
        cid: Cid,
        key_commitment: B256,
    ) -> Result<CustodyRecord, CustodyError> {
        let me = self.me()?;
        if let Some(rec) = self.record(token, version)? {
            return Ok(rec);
        }
        let fetch = |source| CustodyError::Fetch {
            cid,
            source: Box::new(source),
        };
        self.inner.content.fetch_and_pin(cid).await.map_err(fetch)?;
        let bytes = self.inner.content.get_bytes(cid).await.map_err(fetch)?;
        let rec = assess(version, &cid, &bytes, &key_commitment, me.secret);
        self.inner.store.put_record(token, &rec)?;
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

    /// Records the challenge's nonce as used (durably, off the async workers).
    async fn consume_nonce(&self, nonce: B256, issued_at_ms: u64) -> Result<(), CustodyError> {
        let this = self.clone();
        let prune_before =
            now_ms().saturating_sub((MAX_REQUEST_AGE + MAX_CLOCK_SKEW).as_millis() as u64);
        tokio::task::spawn_blocking(move || {
            this.inner
                .store
                .consume_nonce(nonce, issued_at_ms, prune_before)
        })
        .await
        .map_err(CustodyError::internal)?
    }

    /// Releases this custodian's share to the grantee of a signed release challenge. In order:
    /// the challenge's encoding, chain and custodian, its age, the grantee's signature, then at
    /// the latest committed height the token, the grant (present, not revoked, not expired; the
    /// owner needs none) and the grantee's encryption key, then that the nonce is new (recorded
    /// durably). Only after the node's `logShareRelease` transaction committed does the share
    /// leave the node, sealed to the grantee and bound to the grant.
    pub async fn release(
        &self,
        challenge: &[u8],
        signature: &[u8],
    ) -> Result<Released, CustodyError> {
        let me = self.me()?;
        let _in_flight = self
            .inner
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                CustodyError::Busy(format!(
                    "this custodian has {} releases in progress, its most: retry shortly",
                    self.inner.limits.max_in_flight
                ))
            })?;
        let chain_id = self.inner.chain_id;
        let ch = ReleaseChallenge::from_bytes(challenge)
            .map_err(|e| CustodyError::BadChallenge(e.to_string()))?;
        if ch.chain_id != chain_id {
            return Err(CustodyError::WrongChain {
                got: ch.chain_id,
                chain: chain_id,
            });
        }
        if ch.custodian != me.info.address {
            return Err(CustodyError::WrongCustodian {
                named: ch.custodian,
                me: me.info.address,
                name: me.info.name.clone(),
                index: me.info.index,
            });
        }
        ch.check_fresh(
            now_ms(),
            MAX_REQUEST_AGE.as_millis() as u64,
            MAX_CLOCK_SKEW.as_millis() as u64,
        )
        .map_err(|e| CustodyError::Stale(e.to_string()))?;
        ch.verify(signature)
            .map_err(|e| CustodyError::BadSignature(e.to_string()))?;
        if self.inner.per_grantee.check_key(&ch.grantee).is_err() {
            return Err(CustodyError::Busy(format!(
                "{} asks this custodian for more than {} releases a second: slow down",
                ch.grantee, self.inner.limits.per_grantee_per_second
            )));
        }

        let ledger = &self.inner.ledger;
        let (token, grantee) = (ch.token_id, ch.grantee);
        let height = ledger.tip().height;
        let record = view(ledger, height, PMR::recordOfCall { tokenId: token })
            .await?
            .map_err(|_| CustodyError::UnknownToken { token, height })?;
        let version = if grantee == record.owner {
            record.versions - 1
        } else {
            let g = view(
                ledger,
                height,
                PMR::grantOfCall {
                    tokenId: token,
                    grantee,
                },
            )
            .await?
            .map_err(CustodyError::internal)?;
            if g.expiry == 0 {
                return Err(CustodyError::NoGrant { grantee, token });
            }
            if g.revoked {
                return Err(CustodyError::GrantRevoked { grantee, token });
            }
            let now = now_ms() / 1000;
            if g.expiry <= now {
                return Err(CustodyError::GrantExpired {
                    grantee,
                    token,
                    expiry: g.expiry,
                    now,
                });
            }
            g.version
        };
        // A one-time owner has no key on-chain (none links it to its patient): it names the key
        // in the challenge it signed. A grantee's share goes to the key it published.
        let encryption_key = if grantee == record.owner {
            if ch.reply_key.is_zero() {
                return Err(CustodyError::BadChallenge(
                    "the record's owner names in the challenge (its reply key) the X25519 key \
                     its share is sealed to"
                        .into(),
                ));
            }
            ch.reply_key
        } else {
            if !ch.reply_key.is_zero() {
                return Err(CustodyError::BadChallenge(
                    "a grantee's share is sealed to the encryption key it published: leave the \
                     challenge's reply key zero"
                        .into(),
                ));
            }
            let key = view(
                ledger,
                height,
                PMR::encryptionKeyOfCall { account: grantee },
            )
            .await?
            .map_err(CustodyError::internal)?;
            if key.is_zero() {
                return Err(CustodyError::NoEncryptionKey(grantee));
            }
            key
        };
        let v = view(
            ledger,
            height,
            PMR::recordVersionCall {
                tokenId: token,
                index: U256::from(version),
            },
        )
        .await?
        .map_err(CustodyError::internal)?;
        let cid = event_cid(&v.envelope).map_err(|reason| CustodyError::BadEnvelopeCid {
            token,
            version,
            reason,
        })?;
        // Only a request that passed every ledger check uses up its nonce (so strangers cannot
        // fill the nonce store), and it does before anything leaves the node.
        self.consume_nonce(ch.nonce, ch.issued_at_ms).await?;
        let rec = self
            .take_custody(token, version, cid, v.keyCommitment)
            .await
            .map_err(|e| match e {
                // It stopped being a custodian meanwhile (the council removed it).
                CustodyError::NotCustodian => CustodyError::NotCustodian,
                e => CustodyError::NotHeldYet {
                    token,
                    version,
                    reason: e.to_string(),
                },
            })?;
        if rec.status != CustodyStatus::Held {
            return Err(CustodyError::InvalidShare {
                token,
                version,
                reason: rec.reason,
            });
        }
        let env = hex::decode(&rec.envelope)
            .ok()
            .and_then(|b| ShareEnvelope::decode(&b).ok())
            .ok_or_else(|| CustodyError::internal("corrupt custody record: stored envelope"))?;
        let share =
            open_custodian_share(&env, rec.index, me.secret).map_err(CustodyError::internal)?;
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
        .map_err(|e| CustodyError::Seal {
            grantee,
            reason: e.to_string(),
        })?;
        let done = me
            .operator
            .send_and_wait(
                ledger,
                PMR::logShareReleaseCall {
                    tokenId: token,
                    grantee,
                    challengeHash: keccak256(challenge),
                },
                RELEASE_GAS,
            )
            .await?;
        // The contract names the version it logged (decided at commit); release only if it is
        // the one this share belongs to.
        let logged = done
            .logs
            .iter()
            .filter(|l| l.address == PMR_ADDRESS)
            .find_map(|l| {
                PMR::ShareReleased::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
            })
            .map(|e| e.version);
        if logged != Some(version) {
            return Err(CustodyError::RecordChanged { logged, version });
        }
        self.inner.releases.inc();
        if let Err(e) = self.inner.store.count_release(token) {
            warn!(target: TARGET, error = %e, "cannot count a release");
        }
        info!(target: TARGET, token = %token, version, grantee = %grantee, tx = %done.tx, height = done.height, operator = %me.operator.address(), "share released");
        Ok(Released {
            sealed_share: sealed.to_bytes(),
            custodian_index: rec.index,
            version,
            key_commitment: B256::from(env.key_commitment().to_bytes()),
            tx: done.tx,
            height: done.height,
        })
    }
}
