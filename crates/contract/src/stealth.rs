//! The contract's form of an ERC-5564 announcement ([`PMR::OneTimeOwner`]) and back.

use alloy_primitives::B256;
use pmr_privacy::{Announcement, StealthMetaAddress};

use crate::{Wallet, WalletError, PMR};

/// `a` as `mintRecord` takes it and `announcements` returns it.
pub fn one_time_owner(a: &Announcement) -> PMR::OneTimeOwner {
    PMR::OneTimeOwner {
        owner: a.owner,
        ephemeralX: B256::from_slice(&a.ephemeral[1..]),
        ephemeralPrefix: a.ephemeral[0],
        viewTag: a.view_tag,
        sealedType: a.sealed_type,
    }
}

/// The announcement a [`PMR::OneTimeOwner`] carries.
pub fn announcement(o: &PMR::OneTimeOwner) -> Announcement {
    let mut ephemeral = [0u8; 33];
    ephemeral[0] = o.ephemeralPrefix;
    ephemeral[1..].copy_from_slice(o.ephemeralX.as_slice());
    Announcement {
        owner: o.owner,
        ephemeral,
        view_tag: o.viewTag,
        sealed_type: o.sealedType,
    }
}

/// A fresh one-time owner of a record of `record_type` for the patient at `meta`.
pub fn mint_to(meta: &StealthMetaAddress, record_type: u32) -> PMR::OneTimeOwner {
    one_time_owner(&pmr_privacy::stealth::generate(
        meta,
        record_type,
        &mut rand_core::OsRng,
    ))
}

/// The stealth keys `patient`'s account key derives.
fn keys_of(patient: &Wallet) -> Result<pmr_privacy::StealthKeys, WalletError> {
    pmr_privacy::StealthKeys::derive(&patient.secret())
        .map_err(|e| WalletError::Sign(e.to_string()))
}

/// The meta-address `patient`'s account key derives (what its registration publishes).
pub fn meta_address_of(patient: &Wallet) -> Result<StealthMetaAddress, WalletError> {
    Ok(keys_of(patient)?.meta_address())
}

/// [`mint_to`] the patient whose account is `patient` (tests, the load generator).
pub fn mint_to_account(
    patient: &Wallet,
    record_type: u32,
) -> Result<PMR::OneTimeOwner, WalletError> {
    Ok(mint_to(&meta_address_of(patient)?, record_type))
}

/// The wallet of `o`'s one-time owner, for the patient whose account is `patient`: what signs
/// that record's grants, revocations and versions. Fails when `o` is not the patient's.
pub fn one_time_wallet(patient: &Wallet, o: &PMR::OneTimeOwner) -> Result<Wallet, WalletError> {
    let secret = keys_of(patient)?
        .one_time_secret(&announcement(o))
        .map_err(|e| WalletError::Sign(e.to_string()))?;
    Wallet::from_bytes(&B256::from(*secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_survive_the_contract_form() {
        let keys = pmr_privacy::StealthKeys::derive(&B256::repeat_byte(3)).unwrap();
        let o = mint_to(&keys.meta_address(), 12);
        let a = announcement(&o);
        assert_eq!(one_time_owner(&a), o);
        assert_eq!(keys.viewing_key().scan(&a).map(|f| f.record_type), Some(12));
    }

    #[test]
    fn the_one_time_wallet_is_the_owner_and_only_the_patient_derives_it() {
        let (patient, other) = (Wallet::random(), Wallet::random());
        let o = mint_to_account(&patient, 1).unwrap();
        assert_eq!(one_time_wallet(&patient, &o).unwrap().address(), o.owner);
        assert_ne!(o.owner, patient.address());
        assert!(one_time_wallet(&other, &o).is_err());
    }
}
