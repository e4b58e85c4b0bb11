//! Bindings of the PMR contract, generated from the committed ABI
//! (`evm-contracts/artifacts/PMR.json`), and its fixed address.

use alloy_primitives::{address, Address};
use pmr_primitives::{join_blake3_cid, split_blake3_cid, CID_BYTES};

alloy_sol_types::sol!(
    #[sol(all_derives)]
    PMR,
    "../../evm-contracts/artifacts/PMR.json"
);

impl PMR::Cid {
    /// The contract's form of a CID given as bytes: `None` unless it is a CIDv1 with a one-byte
    /// codec and a 32-byte BLAKE3 digest.
    pub fn from_cid_bytes(bytes: &[u8]) -> Option<Self> {
        split_blake3_cid(bytes).map(|(codec, digest)| Self { codec, digest })
    }

    /// The CID's 36 bytes.
    pub fn to_cid_bytes(&self) -> [u8; CID_BYTES] {
        join_blake3_cid(self.codec, &self.digest)
    }
}

/// Where genesis deploys the PMR contract on every PMR network.
pub const PMR_ADDRESS: Address = address!("0x0000000000000000000000000000000000504d52");
