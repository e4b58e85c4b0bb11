//! Shared setup: custodians, patient and grantee keys, and a split envelope, from a seed.

#![allow(dead_code)]

use alloy_primitives::{Address, U256};
use curve25519_dalek::scalar::Scalar;
use pmr_shares::{
    open_custodian_share, open_patient_share, split_record_key, CustodianInfo, CustodianShare,
    GrantContext, PatientShare, RecordKey, ShareEnvelope, X25519PublicKey, X25519Secret,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

pub(crate) struct Setup {
    pub key: RecordKey,
    pub custodian_secrets: Vec<X25519Secret>,
    pub custodians: Vec<CustodianInfo>,
    pub patient_secret: X25519Secret,
    pub grantee_secret: X25519Secret,
    pub envelope: ShareEnvelope,
    pub rng: StdRng,
}

impl Setup {
    /// n custodians with indices 1..=n, threshold t.
    pub(crate) fn new(n: u16, t: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let custodian_secrets: Vec<X25519Secret> = (0..n)
            .map(|_| X25519Secret::random_from_rng(&mut rng))
            .collect();
        let custodians: Vec<CustodianInfo> = custodian_secrets
            .iter()
            .enumerate()
            .map(|(i, sk)| CustodianInfo {
                index: i as u16 + 1,
                address: Address::with_last_byte(i as u8 + 1),
                public_key: X25519PublicKey::from(sk),
            })
            .collect();
        let patient_secret = X25519Secret::random_from_rng(&mut rng);
        let grantee_secret = X25519Secret::random_from_rng(&mut rng);
        let key = RecordKey::generate(&mut rng);
        let envelope = split_record_key(
            &key,
            t,
            &custodians,
            &X25519PublicKey::from(&patient_secret),
            &mut rng,
        )
        .expect("split a valid configuration");
        Setup {
            key,
            custodian_secrets,
            custodians,
            patient_secret,
            grantee_secret,
            envelope,
            rng,
        }
    }

    pub(crate) fn secret_of(&self, index: u16) -> &X25519Secret {
        &self.custodian_secrets[usize::from(index) - 1]
    }

    pub(crate) fn custodian_share(&self, index: u16) -> CustodianShare {
        open_custodian_share(&self.envelope, index, self.secret_of(index))
            .expect("custodian opens its own slot")
    }

    pub(crate) fn patient_share(&self) -> PatientShare {
        open_patient_share(&self.envelope, &self.patient_secret).expect("patient opens its slot")
    }

    pub(crate) fn grant_context(&self) -> GrantContext {
        GrantContext {
            chain_id: 7,
            token_id: U256::from(1234u64),
            grantee: Address::repeat_byte(0xab),
            key_commitment: self.envelope.key_commitment(),
        }
    }
}

pub(crate) fn scalar_of(bytes: &[u8; 32]) -> Scalar {
    Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes)).expect("canonical scalar")
}

/// Lagrange interpolation at 0 over whatever shares are given — no threshold check, so tests
/// can show what fewer than t shares (or shares without s_p) actually yield.
pub(crate) fn interpolate_at_zero(shares: &[CustodianShare]) -> Scalar {
    let xs: Vec<Scalar> = shares
        .iter()
        .map(|s| Scalar::from(u64::from(s.index())))
        .collect();
    let mut acc = Scalar::ZERO;
    for (j, share) in shares.iter().enumerate() {
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (m, xm) in xs.iter().enumerate() {
            if m != j {
                num *= xm;
                den *= xm - xs[j];
            }
        }
        acc += scalar_of(&share.value_bytes()) * num * den.invert();
    }
    acc
}
