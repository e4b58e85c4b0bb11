//! HPKE (RFC 9180) sealing of 32-byte shares: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305, base mode.
//!
//! Every seal binds a context (`info`) naming what the share is for — the envelope slot, or the
//! grant it is released under — so a sealed share cannot be replayed into another slot, record,
//! token or grantee: it simply fails to open there.

use alloy_primitives::{Address, U256};
use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::{CustodianShare, KeyCommitment, PatientShare, ShareError, Slot};

type HpkeKem = X25519HkdfSha256;
type HpkePublicKey = <HpkeKem as Kem>::PublicKey;
type HpkePrivateKey = <HpkeKem as Kem>::PrivateKey;
type HpkeEncappedKey = <HpkeKem as Kem>::EncappedKey;

/// Length of the encapsulated key.
const ENC_LEN: usize = 32;
/// Length of the sealed payload: a 32-byte scalar.
const PLAINTEXT_LEN: usize = 32;
/// Length of the Poly1305 tag.
const TAG_LEN: usize = 16;
/// Length of a version-1 sealed share: `enc ‖ ciphertext ‖ tag`.
pub const SEALED_SHARE_LEN: usize = ENC_LEN + PLAINTEXT_LEN + TAG_LEN;

const INFO_RELEASE: &[u8] = b"pmr/shares/v1/release-custodian-share";
const INFO_GRANT: &[u8] = b"pmr/shares/v1/grant-patient-share";

/// A 32-byte share sealed with HPKE to one X25519 public key: `enc (32) ‖ ct (32) ‖ tag (16)`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedShare([u8; SEALED_SHARE_LEN]);

impl SealedShare {
    /// Reads a sealed share; it must be exactly [`SEALED_SHARE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShareError> {
        let arr: [u8; SEALED_SHARE_LEN] =
            bytes
                .try_into()
                .map_err(|_| ShareError::BadSealedShareLength {
                    len: bytes.len(),
                    expected: SEALED_SHARE_LEN,
                })?;
        Ok(SealedShare(arr))
    }

    /// The 80 bytes.
    pub fn to_bytes(&self) -> [u8; SEALED_SHARE_LEN] {
        self.0
    }

    /// The 80 bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; SEALED_SHARE_LEN] {
        &self.0
    }

    pub(crate) fn from_array(bytes: [u8; SEALED_SHARE_LEN]) -> Self {
        SealedShare(bytes)
    }
}

impl std::fmt::Debug for SealedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedShare({} bytes)", SEALED_SHARE_LEN)
    }
}

/// What a share released to a grantee is bound to: the chain, the record token, the grantee's
/// Ethereum address and the record version's key commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantContext {
    /// Chain id of the network.
    pub chain_id: u64,
    /// The record token.
    pub token_id: U256,
    /// The grantee's Ethereum address.
    pub grantee: Address,
    /// Key commitment `S` of the record version the grant covers.
    pub key_commitment: KeyCommitment,
}

impl GrantContext {
    /// Canonical bytes: `chain_id (8 BE) ‖ token_id (32 BE) ‖ grantee (20) ‖ S (32)`.
    pub fn to_bytes(&self) -> [u8; 92] {
        let mut out = [0u8; 92];
        out[..8].copy_from_slice(&self.chain_id.to_be_bytes());
        out[8..40].copy_from_slice(&self.token_id.to_be_bytes::<32>());
        out[40..60].copy_from_slice(self.grantee.as_slice());
        out[60..].copy_from_slice(self.key_commitment.as_bytes());
        out
    }

    fn info(&self, label: &[u8], slot: Slot) -> Vec<u8> {
        let mut info = Vec::with_capacity(label.len() + 92 + 3);
        info.extend_from_slice(label);
        info.extend_from_slice(&self.to_bytes());
        info.extend_from_slice(&slot_tag(slot));
        info
    }
}

/// Three bytes naming a slot inside an HPKE `info`.
pub(crate) fn slot_tag(slot: Slot) -> [u8; 3] {
    match slot {
        Slot::Patient => [0x02, 0, 0],
        Slot::Custodian(i) => {
            let [hi, lo] = i.to_be_bytes();
            [0x01, hi, lo]
        }
    }
}

/// Adapts a rand_core 0.6 RNG (what `rand` 0.8 and FROST use) to the rand_core 0.9 traits HPKE
/// 0.13 asks for.
struct RngAdapter<'a, R>(&'a mut R);

impl<R: RngCore> hpke::rand_core::RngCore for RngAdapter<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl<R: RngCore + CryptoRng> hpke::rand_core::CryptoRng for RngAdapter<'_, R> {}

/// Seals 32 bytes to `recipient` under `info`/`aad`.
pub(crate) fn seal_bytes<R: RngCore + CryptoRng>(
    recipient: &PublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8; PLAINTEXT_LEN],
    slot: Slot,
    rng: &mut R,
) -> Result<SealedShare, ShareError> {
    let pk =
        HpkePublicKey::from_bytes(recipient.as_bytes()).map_err(|e| ShareError::SealFailed {
            slot,
            reason: e.to_string(),
        })?;
    let mut buf = Zeroizing::new(*plaintext);
    let (enc, tag) =
        hpke::single_shot_seal_in_place_detached::<ChaCha20Poly1305, HkdfSha256, HpkeKem, _>(
            &OpModeS::Base,
            &pk,
            info,
            buf.as_mut(),
            aad,
            &mut RngAdapter(rng),
        )
        .map_err(|e| ShareError::SealFailed {
            slot,
            reason: e.to_string(),
        })?;
    let mut out = [0u8; SEALED_SHARE_LEN];
    out[..ENC_LEN].copy_from_slice(&enc.to_bytes());
    out[ENC_LEN..ENC_LEN + PLAINTEXT_LEN].copy_from_slice(buf.as_ref());
    out[ENC_LEN + PLAINTEXT_LEN..].copy_from_slice(&tag.to_bytes());
    Ok(SealedShare(out))
}

/// Opens a sealed share with `secret` under `info`/`aad`; any failure is blamed on `slot`.
pub(crate) fn open_bytes(
    sealed: &SealedShare,
    secret: &StaticSecret,
    info: &[u8],
    aad: &[u8],
    slot: Slot,
) -> Result<Zeroizing<[u8; PLAINTEXT_LEN]>, ShareError> {
    let fail = || ShareError::SealOpenFailed { slot };
    let sk_bytes = Zeroizing::new(secret.to_bytes());
    let sk = HpkePrivateKey::from_bytes(sk_bytes.as_ref()).map_err(|_| fail())?;
    let bytes = &sealed.0;
    let enc = HpkeEncappedKey::from_bytes(&bytes[..ENC_LEN]).map_err(|_| fail())?;
    let tag = AeadTag::<ChaCha20Poly1305>::from_bytes(&bytes[ENC_LEN + PLAINTEXT_LEN..])
        .map_err(|_| fail())?;
    let mut buf = Zeroizing::new([0u8; PLAINTEXT_LEN]);
    buf.copy_from_slice(&bytes[ENC_LEN..ENC_LEN + PLAINTEXT_LEN]);
    hpke::single_shot_open_in_place_detached::<ChaCha20Poly1305, HkdfSha256, HpkeKem>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        buf.as_mut(),
        aad,
        &tag,
    )
    .map_err(|_| fail())?;
    Ok(buf)
}

/// Custodian side of a release: seals this custodian's share to the grantee's X25519 key, bound
/// to the grant (chain, token, grantee, key commitment) and to the custodian's index.
pub fn seal_share_to<R: RngCore + CryptoRng>(
    share: &CustodianShare,
    grantee: &PublicKey,
    context: &GrantContext,
    rng: &mut R,
) -> Result<SealedShare, ShareError> {
    let slot = Slot::Custodian(share.index());
    let info = context.info(INFO_RELEASE, slot);
    seal_bytes(grantee, &info, &[], &share.value_bytes(), slot, rng)
}

/// Grantee side of a release: opens the share that custodian `custodian` sealed to us under
/// `context`. Failure (altered bytes, wrong grant, share of another custodian) blames
/// `custodian`. The result is not yet checked against the VSS commitments: reconstruction does
/// that (or call [`crate::verify_custodian_share`]).
pub fn open_sealed_share(
    sealed: &SealedShare,
    custodian: u16,
    grantee_secret: &StaticSecret,
    context: &GrantContext,
) -> Result<CustodianShare, ShareError> {
    if custodian == 0 {
        return Err(ShareError::ZeroCustodianIndex);
    }
    let slot = Slot::Custodian(custodian);
    let info = context.info(INFO_RELEASE, slot);
    let bytes = open_bytes(sealed, grantee_secret, &info, &[], slot)?;
    CustodianShare::from_bytes(custodian, &bytes)
}

/// Patient side of a grant: re-seals the patient's essential share to the grantee, bound to the
/// grant. The result goes into the grant transaction.
pub fn seal_patient_share_to<R: RngCore + CryptoRng>(
    share: &PatientShare,
    grantee: &PublicKey,
    context: &GrantContext,
    rng: &mut R,
) -> Result<SealedShare, ShareError> {
    let info = context.info(INFO_GRANT, Slot::Patient);
    seal_bytes(grantee, &info, &[], &share.to_bytes(), Slot::Patient, rng)
}

/// Grantee side of a grant: opens the patient's essential share from the grant transaction.
pub fn open_granted_patient_share(
    sealed: &SealedShare,
    grantee_secret: &StaticSecret,
    context: &GrantContext,
) -> Result<PatientShare, ShareError> {
    let info = context.info(INFO_GRANT, Slot::Patient);
    let bytes = open_bytes(sealed, grantee_secret, &info, &[], Slot::Patient)?;
    PatientShare::from_bytes(&bytes)
}
