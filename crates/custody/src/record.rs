//! What a custodian holds for one version of a record, and the pure check that decides it.

use alloy_primitives::B256;
use pmr_blob::Cid;
use pmr_shares::{open_custodian_share, ShareEnvelope, X25519PublicKey, X25519Secret};
use serde::{Deserialize, Serialize};

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
    /// The status as the gRPC API spells it.
    pub fn as_str(self) -> &'static str {
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
    /// The record version.
    pub version: u32,
    /// The envelope's CID.
    pub envelope_cid: String,
    /// What this node holds.
    pub status: CustodyStatus,
    /// Why the status is not `held`.
    pub reason: String,
    /// This node's index in the envelope (0 without a slot).
    pub index: u16,
    /// Custodian shares needed with the patient's.
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;
    use pmr_shares::{split_record_key, CustodianInfo, RecordKey};
    use rand::rngs::OsRng;

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
}
