//! One-time record owners: the stealth-address scheme of ERC-5564 on secp256k1 (scheme id 1,
//! with view tags).
//!
//! A patient publishes a [`StealthMetaAddress`]: a spending public key `P_spend` and a viewing
//! public key `P_view` (66 bytes, both compressed). For each record a hospital mints, it picks
//! an ephemeral key `r` and computes
//!
//! - the shared secret `S = r·P_view` (a point; its 33-byte compressed form is hashed),
//! - `s_h = keccak256(S)`, whose first byte is the view tag,
//! - the one-time owner `P_stealth = P_spend + s_h·G` and its Ethereum address,
//!
//! and announces `R = r·G`, the view tag and the owner with the record ([`Announcement`]).
//! The patient (or anyone holding the [`ViewingKey`]) computes `S = p_view·R`, skips the
//! announcement when the view tag differs (255 times in 256), and otherwise compares the
//! address; only the holder of `p_spend` can sign for the owner, with `p_spend + s_h`
//! ([`StealthKeys::one_time_secret`]). Nothing in an announcement names the patient: two
//! announcements to the same meta-address share no field and no function of public data.
//!
//! The record's type travels with the announcement sealed under the same shared secret
//! ([`seal_record_type`]): a 32-bit one-time pad from `keccak256("PMR record type" ‖ s_h)`,
//! which the minting hospital and the viewing-key holder can open and nobody else can.

use alloy_primitives::{keccak256, Address, B256};
use rand_core::{CryptoRng, RngCore};
use secp256k1::{PublicKey, Scalar, SecretKey, SECP256K1};
use zeroize::Zeroizing;

/// The ERC-5564 scheme id of secp256k1 with view tags.
pub const SCHEME_ID: u8 = 1;

/// Domains of the keys [`StealthKeys::derive`] makes from an account secret.
const SPENDING_DOMAIN: &[u8] = b"PMR stealth spending key v1";
const VIEWING_DOMAIN: &[u8] = b"PMR stealth viewing key v1";
const TYPE_DOMAIN: &[u8] = b"PMR record type";

/// Why a stealth key, meta-address or announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StealthError {
    /// Not 66 bytes of two compressed secp256k1 points.
    #[error("a stealth meta-address is 66 bytes (two compressed secp256k1 keys); {0}")]
    MetaAddress(String),
    /// An ephemeral key that is not a compressed secp256k1 point.
    #[error("the announcement's ephemeral key is not a compressed secp256k1 point")]
    EphemeralKey,
    /// The announcement is not to this meta-address.
    #[error("the announcement is not addressed to this patient")]
    NotMine,
    /// A derived key fell outside the curve order (probability about 2^-128).
    #[error("a derived key is out of range")]
    OutOfRange,
}

/// A patient's published keys: where hospitals derive one-time owners from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StealthMetaAddress {
    spending: PublicKey,
    viewing: PublicKey,
}

impl StealthMetaAddress {
    /// The 66 bytes `P_spend ‖ P_view` (compressed), as ERC-5564 and the contract keep them.
    pub fn to_bytes(&self) -> [u8; 66] {
        let mut out = [0u8; 66];
        out[..33].copy_from_slice(&self.spending.serialize());
        out[33..].copy_from_slice(&self.viewing.serialize());
        out
    }

    /// Parses [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StealthError> {
        if bytes.len() != 66 {
            return Err(StealthError::MetaAddress(format!(
                "this one is {} bytes",
                bytes.len()
            )));
        }
        let point = |b: &[u8], which: &str| {
            if !matches!(b[0], 2 | 3) {
                return Err(StealthError::MetaAddress(format!(
                    "the {which} key is not compressed"
                )));
            }
            PublicKey::from_slice(b).map_err(|_| {
                StealthError::MetaAddress(format!("the {which} key is not on the curve"))
            })
        };
        Ok(Self {
            spending: point(&bytes[..33], "spending")?,
            viewing: point(&bytes[33..], "viewing")?,
        })
    }

    /// `st:eth:0x…`, the text form ERC-5564 gives meta-addresses.
    pub fn to_text(&self) -> String {
        format!("st:eth:0x{}", hex::encode(self.to_bytes()))
    }
}

/// A one-time owner as announced with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The one-time owner's address.
    pub owner: Address,
    /// `R = r·G`, compressed.
    pub ephemeral: [u8; 33],
    /// The first byte of `keccak256(S)`.
    pub view_tag: u8,
    /// The record type sealed under the shared secret ([`seal_record_type`]).
    pub sealed_type: u32,
}

/// A fresh one-time owner for a record of `record_type` to `meta` (the hospital's side).
pub fn generate(
    meta: &StealthMetaAddress,
    record_type: u32,
    rng: &mut (impl RngCore + CryptoRng),
) -> Announcement {
    loop {
        let ephemeral = random_secret(rng);
        let r = PublicKey::from_secret_key(SECP256K1, &ephemeral);
        // Out of range only with probability about 2^-128: draw another ephemeral key.
        let Ok(shared) = meta.viewing.mul_tweak(SECP256K1, &Scalar::from(ephemeral)) else {
            continue;
        };
        let hashed = keccak256(shared.serialize());
        let Ok(owner) = stealth_public(&meta.spending, &hashed) else {
            continue;
        };
        return Announcement {
            owner: address_of(&owner),
            ephemeral: r.serialize(),
            view_tag: hashed[0],
            sealed_type: seal_record_type(record_type, &hashed),
        };
    }
}

/// `record_type` sealed (or opened: the pad is its own inverse) under `hashed_secret`.
pub fn seal_record_type(record_type: u32, hashed_secret: &B256) -> u32 {
    let mut input = Vec::with_capacity(TYPE_DOMAIN.len() + 32);
    input.extend_from_slice(TYPE_DOMAIN);
    input.extend_from_slice(hashed_secret.as_slice());
    let pad = keccak256(input);
    record_type ^ u32::from_be_bytes([pad[0], pad[1], pad[2], pad[3]])
}

/// An announcement the viewing key recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// `keccak256(S)`: with the spending key, what signs for the owner.
    pub hashed_secret: B256,
    /// The record type, opened.
    pub record_type: u32,
}

/// What finds a patient's records and reads their types, and cannot sign for them: `p_view`
/// and `P_spend`. A patient may hand it to a guardian or an auditor.
#[derive(Clone)]
pub struct ViewingKey {
    viewing: SecretKey,
    spending: PublicKey,
}

impl Drop for ViewingKey {
    fn drop(&mut self) {
        self.viewing.non_secure_erase();
    }
}

impl ViewingKey {
    /// The 65 bytes `p_view ‖ P_spend` (secret: whoever holds them can list the records).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 65]> {
        let mut out = Zeroizing::new([0u8; 65]);
        out[..32].copy_from_slice(&self.viewing.secret_bytes());
        out[32..].copy_from_slice(&self.spending.serialize());
        out
    }

    /// Parses [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StealthError> {
        let bad = |m: &str| StealthError::MetaAddress(format!("viewing key: {m}"));
        if bytes.len() != 65 {
            return Err(bad("not 65 bytes"));
        }
        Ok(Self {
            viewing: SecretKey::from_slice(&bytes[..32]).map_err(|_| bad("bad secret"))?,
            spending: PublicKey::from_slice(&bytes[32..]).map_err(|_| bad("bad spending key"))?,
        })
    }

    /// Whether `a` is to this patient: the view tag first (one scalar multiplication and a hash
    /// for every announcement), the owner's address only for the one in 256 whose tag matches.
    pub fn scan(&self, a: &Announcement) -> Option<Found> {
        self.check(a, true)
    }

    /// [`Self::scan`] without the view-tag shortcut: the address is derived for every
    /// announcement (what a scheme without view tags costs; for the benchmark).
    pub fn scan_without_view_tag(&self, a: &Announcement) -> Option<Found> {
        self.check(a, false)
    }

    fn check(&self, a: &Announcement, use_tag: bool) -> Option<Found> {
        let hashed = self.hashed_secret(&a.ephemeral).ok()?;
        if use_tag && hashed[0] != a.view_tag {
            return None;
        }
        let owner = stealth_public(&self.spending, &hashed).ok()?;
        (address_of(&owner) == a.owner).then(|| Found {
            hashed_secret: hashed,
            record_type: seal_record_type(a.sealed_type, &hashed),
        })
    }

    fn hashed_secret(&self, ephemeral: &[u8; 33]) -> Result<B256, StealthError> {
        let r = PublicKey::from_slice(ephemeral).map_err(|_| StealthError::EphemeralKey)?;
        let shared = r
            .mul_tweak(SECP256K1, &Scalar::from(self.viewing))
            .map_err(|_| StealthError::OutOfRange)?;
        Ok(keccak256(shared.serialize()))
    }
}

/// A patient's spending and viewing keys.
#[derive(Clone)]
pub struct StealthKeys {
    spending: SecretKey,
    view: ViewingKey,
}

impl Drop for StealthKeys {
    fn drop(&mut self) {
        self.spending.non_secure_erase();
    }
}

impl StealthKeys {
    /// The keys of the account whose secp256k1 secret is `account_secret`: two keys derived
    /// from it under their own domains, so the account's key file is all a patient keeps.
    pub fn derive(account_secret: &B256) -> Result<Self, StealthError> {
        let spending = domain_key(SPENDING_DOMAIN, account_secret)?;
        let viewing = domain_key(VIEWING_DOMAIN, account_secret)?;
        Ok(Self {
            spending,
            view: ViewingKey {
                viewing,
                spending: PublicKey::from_secret_key(SECP256K1, &spending),
            },
        })
    }

    /// The meta-address to publish.
    pub fn meta_address(&self) -> StealthMetaAddress {
        StealthMetaAddress {
            spending: self.view.spending,
            viewing: PublicKey::from_secret_key(SECP256K1, &self.view.viewing),
        }
    }

    /// The viewing half: finds records, cannot act on them.
    pub fn viewing_key(&self) -> &ViewingKey {
        &self.view
    }

    /// The secret of `a`'s one-time owner, `p_spend + s_h`: what signs grants, revocations and
    /// versions of that record. Fails when `a` is not to this patient.
    pub fn one_time_secret(&self, a: &Announcement) -> Result<Zeroizing<[u8; 32]>, StealthError> {
        let found = self.view.scan(a).ok_or(StealthError::NotMine)?;
        let mut tweak =
            Scalar::from_be_bytes(found.hashed_secret.0).map_err(|_| StealthError::OutOfRange)?;
        let mut secret = self
            .spending
            .add_tweak(&tweak)
            .map_err(|_| StealthError::OutOfRange)?;
        let out = Zeroizing::new(secret.secret_bytes());
        secret.non_secure_erase();
        tweak.non_secure_erase();
        Ok(out)
    }
}

fn domain_key(domain: &[u8], secret: &B256) -> Result<SecretKey, StealthError> {
    let mut input = Zeroizing::new(Vec::with_capacity(domain.len() + 32));
    input.extend_from_slice(domain);
    input.extend_from_slice(secret.as_slice());
    let digest = Zeroizing::new(keccak256(&*input).0);
    SecretKey::from_byte_array(&digest).map_err(|_| StealthError::OutOfRange)
}

fn random_secret(rng: &mut (impl RngCore + CryptoRng)) -> SecretKey {
    loop {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *b);
        if let Ok(k) = SecretKey::from_byte_array(&b) {
            return k;
        }
    }
}

/// `P_spend + s_h·G`.
fn stealth_public(spending: &PublicKey, hashed: &B256) -> Result<PublicKey, StealthError> {
    let tweak = Scalar::from_be_bytes(hashed.0).map_err(|_| StealthError::OutOfRange)?;
    spending
        .add_exp_tweak(SECP256K1, &tweak)
        .map_err(|_| StealthError::OutOfRange)
}

/// The Ethereum address of a public key.
fn address_of(key: &PublicKey) -> Address {
    Address::from_slice(&keccak256(&key.serialize_uncompressed()[1..])[12..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn keys(tag: u8) -> StealthKeys {
        StealthKeys::derive(&B256::repeat_byte(tag)).unwrap()
    }

    #[test]
    fn the_patient_finds_and_signs_for_its_own_records_only() {
        let (alice, bob) = (keys(1), keys(2));
        let a = generate(&alice.meta_address(), 0x0107, &mut OsRng);
        let found = alice.viewing_key().scan(&a).expect("alice finds hers");
        assert_eq!(found.record_type, 0x0107);
        assert_eq!(alice.viewing_key().scan_without_view_tag(&a), Some(found));
        assert!(bob.viewing_key().scan(&a).is_none());
        assert!(bob.viewing_key().scan_without_view_tag(&a).is_none());
        assert_eq!(bob.one_time_secret(&a).unwrap_err(), StealthError::NotMine);
        // The one-time secret is the owner's key.
        let secret = alice.one_time_secret(&a).unwrap();
        let sk = SecretKey::from_byte_array(&secret).unwrap();
        assert_eq!(
            address_of(&PublicKey::from_secret_key(SECP256K1, &sk)),
            a.owner
        );
        // A changed owner, ephemeral key or sealed type is not hers (or opens to garbage).
        let mut other_owner = a;
        other_owner.owner = Address::repeat_byte(9);
        assert!(alice.viewing_key().scan(&other_owner).is_none());
        let mut other_eph = a;
        other_eph.ephemeral = generate(&alice.meta_address(), 1, &mut OsRng).ephemeral;
        assert!(alice
            .viewing_key()
            .scan_without_view_tag(&other_eph)
            .is_none());
        let mut bad_point = a;
        bad_point.ephemeral[0] = 7;
        assert!(alice.viewing_key().scan(&bad_point).is_none());
    }

    #[test]
    fn announcements_to_one_patient_share_nothing() {
        let alice = keys(3);
        let meta = alice.meta_address();
        let (a, b) = (
            generate(&meta, 5, &mut OsRng),
            generate(&meta, 5, &mut OsRng),
        );
        assert_ne!(a.owner, b.owner);
        assert_ne!(a.ephemeral, b.ephemeral);
        // Same type, different sealed values (a fresh pad per record).
        assert_ne!(a.sealed_type, b.sealed_type);
        let meta_bytes = meta.to_bytes();
        for ann in [a, b] {
            assert!(!meta_bytes.windows(20).any(|w| w == ann.owner.as_slice()));
        }
    }

    #[test]
    fn the_view_tag_skips_announcements_to_others() {
        let (alice, bob) = (keys(4), keys(5));
        let n = 2_000;
        let skipped = (0..n)
            .map(|_| generate(&bob.meta_address(), 1, &mut OsRng))
            .filter(|a| alice.viewing_key().hashed_secret(&a.ephemeral).unwrap()[0] != a.view_tag)
            .count();
        // 255/256 expected: at least 98% of 2,000 (the chance of fewer is negligible).
        assert!(skipped >= n * 98 / 100, "skipped only {skipped} of {n}");
    }

    #[test]
    fn meta_addresses_and_viewing_keys_round_trip_and_bad_ones_are_refused() {
        let alice = keys(6);
        let meta = alice.meta_address();
        assert_eq!(StealthMetaAddress::from_bytes(&meta.to_bytes()), Ok(meta));
        assert!(meta.to_text().starts_with("st:eth:0x"));
        assert_eq!(meta.to_text().len(), 9 + 132);
        assert!(StealthMetaAddress::from_bytes(&meta.to_bytes()[..65]).is_err());
        let mut bad = meta.to_bytes();
        bad[0] = 4;
        assert!(StealthMetaAddress::from_bytes(&bad).is_err());
        let mut off_curve = meta.to_bytes();
        off_curve[34..66].copy_from_slice(&[0xff; 32]);
        assert!(StealthMetaAddress::from_bytes(&off_curve).is_err());
        let vk = ViewingKey::from_bytes(&*alice.viewing_key().to_bytes()).unwrap();
        let a = generate(&meta, 9, &mut OsRng);
        assert_eq!(vk.scan(&a).map(|f| f.record_type), Some(9));
        // Keys are a function of the account secret, and differ by account.
        assert_eq!(keys(6).meta_address(), meta);
        assert_ne!(keys(7).meta_address(), meta);
        assert_ne!(meta.spending, meta.viewing);
    }
}
