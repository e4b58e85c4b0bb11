//! Receipts: what a transaction did, in a form every validator encodes to the same bytes.
//!
//! A block's receipts root is `merkle_root([blake3(rlp(receipt)) for each receipt])` with the
//! Merkle tree of `pmr-primitives`, so one receipt (say, an `AccessGranted` log) can be proved
//! against a block header with [`receipt_proof`] and [`verify_receipt`].

use alloy_primitives::{Address, Bytes, B256};
use alloy_rlp::{Decodable, Encodable, Header, RlpDecodable, RlpEncodable};
use pmr_primitives::{merkle_proof, merkle_root, verify_merkle_proof, MerkleProof};

/// An EVM log.
#[derive(Clone, Debug, Default, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Log {
    /// The contract that emitted the log.
    pub address: Address,
    /// The indexed topics, the event signature hash first.
    pub topics: Vec<B256>,
    /// The ABI-encoded non-indexed event arguments.
    pub data: Bytes,
}

impl From<&revm::primitives::Log> for Log {
    fn from(log: &revm::primitives::Log) -> Self {
        Self {
            address: log.address,
            topics: log.data.topics().to_vec(),
            data: log.data.data.clone(),
        }
    }
}

impl From<revm::primitives::Log> for Log {
    fn from(log: revm::primitives::Log) -> Self {
        let (topics, data) = log.data.split();
        Self {
            address: log.address,
            topics,
            data,
        }
    }
}

/// The outcome of one transaction of a block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Hash of the transaction.
    pub tx_hash: B256,
    /// Position of the transaction in its block.
    pub index: u64,
    /// `false` when the transaction reverted or halted (it is still included, its gas spent).
    pub success: bool,
    /// Gas used by this transaction, after refunds.
    pub gas_used: u64,
    /// Gas used by this and every earlier transaction of the block.
    pub cumulative_gas_used: u64,
    /// Logs emitted, in order; empty when the transaction failed.
    pub logs: Vec<Log>,
    /// Return data, or revert data when `success` is false.
    pub output: Bytes,
    /// The address of a contract created by the transaction. Always `None` on a PMR network,
    /// which refuses contract creation after genesis; kept so the encoding need not change if that
    /// policy does.
    pub contract_address: Option<Address>,
}

impl Receipt {
    /// `blake3(rlp(self))`: the leaf of the receipts root.
    pub fn hash(&self) -> B256 {
        leaf_hash(&alloy_rlp::encode(self))
    }

    /// Why the transaction failed, decoded from its revert data; `None` when it succeeded.
    pub fn revert_reason(&self) -> Option<String> {
        (!self.success).then(|| pmr_contract::describe_revert(&self.output))
    }

    fn contract_address_bytes(&self) -> &[u8] {
        self.contract_address
            .as_ref()
            .map(|a| a.as_slice())
            .unwrap_or(&[])
    }

    fn payload_length(&self) -> usize {
        self.tx_hash.length()
            + self.index.length()
            + self.success.length()
            + self.gas_used.length()
            + self.cumulative_gas_used.length()
            + self.logs.length()
            + self.output.length()
            + self.contract_address_bytes().length()
    }
}

impl Encodable for Receipt {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        Header {
            list: true,
            payload_length: self.payload_length(),
        }
        .encode(out);
        self.tx_hash.encode(out);
        self.index.encode(out);
        self.success.encode(out);
        self.gas_used.encode(out);
        self.cumulative_gas_used.encode(out);
        self.logs.encode(out);
        self.output.encode(out);
        self.contract_address_bytes().encode(out);
    }

    fn length(&self) -> usize {
        let payload = self.payload_length();
        payload + alloy_rlp::length_of_length(payload)
    }
}

impl Decodable for Receipt {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let header = Header::decode(buf)?;
        if !header.list {
            return Err(alloy_rlp::Error::UnexpectedString);
        }
        let start = buf.len();
        let receipt = Receipt {
            tx_hash: Decodable::decode(buf)?,
            index: Decodable::decode(buf)?,
            success: Decodable::decode(buf)?,
            gas_used: Decodable::decode(buf)?,
            cumulative_gas_used: Decodable::decode(buf)?,
            logs: Decodable::decode(buf)?,
            output: Decodable::decode(buf)?,
            contract_address: {
                let raw = Bytes::decode(buf)?;
                match raw.len() {
                    0 => None,
                    20 => Some(Address::from_slice(&raw)),
                    _ => return Err(alloy_rlp::Error::Custom("contract address is not 20 bytes")),
                }
            },
        };
        if start - buf.len() != header.payload_length {
            return Err(alloy_rlp::Error::ListLengthMismatch {
                expected: header.payload_length,
                got: start - buf.len(),
            });
        }
        Ok(receipt)
    }
}

/// The receipts-root leaf of an RLP-encoded receipt.
fn leaf_hash(rlp: &[u8]) -> B256 {
    B256::from(*blake3::hash(rlp).as_bytes())
}

/// The receipts root of a block.
pub fn receipts_root(receipts: &[Receipt]) -> B256 {
    let leaves: Vec<B256> = receipts.iter().map(Receipt::hash).collect();
    merkle_root(&leaves)
}

/// A proof that `receipts[index]` is under [`receipts_root`]`(receipts)`.
pub fn receipt_proof(receipts: &[Receipt], index: usize) -> Option<MerkleProof> {
    let leaves: Vec<B256> = receipts.iter().map(Receipt::hash).collect();
    merkle_proof(&leaves, index)
}

/// Checks that `receipt` is at `proof.index` under `receipts_root` (from a block header).
pub fn verify_receipt(receipts_root: &B256, receipt: &Receipt, proof: &MerkleProof) -> bool {
    proof.index == receipt.index && verify_merkle_proof(receipts_root, &receipt.hash(), proof)
}

/// The receipts' stored encoding (an RLP list, as [`encode_receipts`]) and their root, encoding
/// each receipt once for both, straight into the output after the list header.
pub(crate) fn encode_receipts_with_root(receipts: &[Receipt]) -> (Vec<u8>, B256) {
    let header = Header {
        list: true,
        payload_length: receipts.iter().map(Encodable::length).sum(),
    };
    let mut out = Vec::with_capacity(header.length() + header.payload_length);
    header.encode(&mut out);
    let mut leaves = Vec::with_capacity(receipts.len());
    for r in receipts {
        let start = out.len();
        r.encode(&mut out);
        leaves.push(leaf_hash(&out[start..]));
    }
    debug_assert_eq!(out.len(), header.length() + header.payload_length);
    (out, merkle_root(&leaves))
}

pub(crate) fn encode_receipts(receipts: &[Receipt]) -> Vec<u8> {
    let mut out = Vec::new();
    alloy_rlp::encode_list::<Receipt, Receipt>(receipts, &mut out);
    out
}

pub(crate) fn decode_receipts(mut bytes: &[u8]) -> alloy_rlp::Result<Vec<Receipt>> {
    let receipts = Vec::<Receipt>::decode(&mut bytes)?;
    if !bytes.is_empty() {
        return Err(alloy_rlp::Error::Custom("trailing bytes after receipts"));
    }
    Ok(receipts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64, created: bool) -> Receipt {
        Receipt {
            tx_hash: alloy_primitives::keccak256(i.to_be_bytes()),
            index: i,
            success: i.is_multiple_of(2),
            gas_used: 21_000 + i,
            cumulative_gas_used: 21_000 * (i + 1),
            logs: vec![Log {
                address: Address::repeat_byte(7),
                topics: vec![B256::repeat_byte(1), B256::repeat_byte(2)],
                data: Bytes::from(vec![i as u8; 40]),
            }],
            output: Bytes::from_static(b"\x08\xc3\x79\xa0"),
            contract_address: created.then(|| Address::repeat_byte(9)),
        }
    }

    #[test]
    fn rlp_round_trip_with_and_without_contract_address() {
        for r in [sample(0, false), sample(3, true), Receipt::default()] {
            let bytes = alloy_rlp::encode(&r);
            assert_eq!(bytes.len(), r.length());
            assert_eq!(Receipt::decode(&mut bytes.as_slice()).unwrap(), r);
        }
        let all: Vec<Receipt> = (0..5).map(|i| sample(i, i == 2)).collect();
        assert_eq!(decode_receipts(&encode_receipts(&all)).unwrap(), all);
        for n in [0, 1, 2, all.len()] {
            let (bytes, root) = encode_receipts_with_root(&all[..n]);
            assert_eq!(bytes, encode_receipts(&all[..n]), "one encoding for both");
            assert_eq!(root, receipts_root(&all[..n]));
        }
        let mut trailing = encode_receipts(&all);
        trailing.push(0);
        assert!(decode_receipts(&trailing).is_err());
    }

    #[test]
    fn proofs_verify_and_reject_tampering() {
        let all: Vec<Receipt> = (0..7).map(|i| sample(i, false)).collect();
        let root = receipts_root(&all);
        for (i, r) in all.iter().enumerate() {
            let proof = receipt_proof(&all, i).unwrap();
            assert!(verify_receipt(&root, r, &proof));
            let mut forged = r.clone();
            forged.success = !forged.success;
            assert!(!verify_receipt(&root, &forged, &proof));
        }
        assert!(receipt_proof(&all, 7).is_none());
    }
}
