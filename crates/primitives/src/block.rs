//! Blocks and headers.

use alloy_primitives::{keccak256, Address, Bytes, B256};
use alloy_rlp::{
    Decodable, Encodable, RlpDecodable, RlpDecodableWrapper, RlpEncodable, RlpEncodableWrapper,
};
use serde::{Deserialize, Serialize};

use crate::merkle::merkle_root;
use crate::Height;

/// A validator's address: the last 20 bytes of keccak256 of its ed25519 public key.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    RlpEncodableWrapper,
    RlpDecodableWrapper,
)]
pub struct ValidatorAddress(pub Address);

impl ValidatorAddress {
    /// Derives the address of an ed25519 public key.
    pub fn from_public_key(public_key: &[u8; 32]) -> Self {
        Self(Address::from_slice(&keccak256(public_key)[12..]))
    }
}

impl std::fmt::Display for ValidatorAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A block header. Its keccak256 over RLP is the block hash.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, RlpEncodable, RlpDecodable, Serialize, Deserialize,
)]
pub struct Header {
    /// The block's height; the first block after genesis is height 1.
    pub height: Height,
    /// Hash of the block at `height - 1`; the genesis hash for height 1.
    pub parent_hash: B256,
    /// Milliseconds since the Unix epoch, as proposed.
    pub timestamp_ms: u64,
    /// The validator that proposed the block; becomes `block.coinbase`.
    pub proposer: ValidatorAddress,
    /// Merkle root of the hashes of the block's transactions, in order.
    pub tx_root: B256,
    /// Commitment to the state after executing this block.
    pub state_root: B256,
    /// Merkle root of the hashes of the block's receipts, in order.
    pub receipts_root: B256,
    /// Gas used by all transactions of the block.
    pub gas_used: u64,
}

impl Header {
    /// The block hash.
    pub fn hash(&self) -> B256 {
        keccak256(alloy_rlp::encode(self))
    }
}

/// Why a block's bytes or contents were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The bytes are not one RLP-encoded block (or have bytes after it).
    #[error("malformed block encoding: {0}")]
    Malformed(String),
    /// The header's transactions root does not match the block's transactions.
    #[error("block transactions root {actual} does not match header {expected}")]
    TxRoot {
        /// The root in the header.
        expected: B256,
        /// The root computed from the block's transactions.
        actual: B256,
    },
}

/// A block: its header and its transactions as EIP-2718 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Block {
    /// The header, whose hash is the block hash.
    pub header: Header,
    /// The transactions as EIP-2718 bytes, in execution order.
    pub txs: Vec<Bytes>,
}

impl Block {
    /// The block hash (of its header).
    pub fn hash(&self) -> B256 {
        self.header.hash()
    }

    /// The transaction hashes of the block, in order.
    pub fn tx_hashes(&self) -> Vec<B256> {
        self.txs.iter().map(keccak256).collect()
    }

    /// Computes the transactions root of `txs`.
    pub fn compute_tx_root(txs: &[Bytes]) -> B256 {
        let hashes: Vec<B256> = txs.iter().map(keccak256).collect();
        merkle_root(&hashes)
    }

    /// Canonical bytes.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.length());
        self.encode(&mut out);
        out
    }

    /// Decodes canonical bytes and checks the transactions root.
    pub fn decode_checked(mut bytes: &[u8]) -> Result<Self, BlockError> {
        let block = Block::decode(&mut bytes).map_err(|e| BlockError::Malformed(e.to_string()))?;
        if !bytes.is_empty() {
            return Err(BlockError::Malformed("trailing bytes after block".into()));
        }
        let actual = Self::compute_tx_root(&block.txs);
        if actual != block.header.tx_root {
            return Err(BlockError::TxRoot {
                expected: block.header.tx_root,
                actual,
            });
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Block {
        let txs = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        Block {
            header: Header {
                height: 9,
                parent_hash: B256::repeat_byte(1),
                timestamp_ms: 1_700_000_000_000,
                proposer: ValidatorAddress(Address::repeat_byte(3)),
                tx_root: Block::compute_tx_root(&txs),
                state_root: B256::repeat_byte(4),
                receipts_root: B256::repeat_byte(5),
                gas_used: 42,
            },
            txs,
        }
    }

    #[test]
    fn round_trip_and_hash_covers_every_field() {
        let b = sample();
        let bytes = b.encode_to_vec();
        assert_eq!(Block::decode_checked(&bytes).unwrap(), b);
        let h = b.hash();
        // Every field, each changed on its own, changes the hash. The destructuring names them
        // all: a field added to the header does not compile here until it is covered.
        let Header {
            height,
            parent_hash,
            timestamp_ms,
            proposer,
            tx_root,
            state_root,
            receipts_root,
            gas_used,
        } = b.header.clone();
        let other = B256::repeat_byte(0xee);
        type Change = Box<dyn Fn(&mut Header)>;
        let changes: [(&str, Change); 8] = [
            ("height", Box::new(move |x| x.height = height + 1)),
            ("parent_hash", Box::new(move |x| x.parent_hash = other)),
            (
                "timestamp_ms",
                Box::new(move |x| x.timestamp_ms = timestamp_ms + 1),
            ),
            (
                "proposer",
                Box::new(|x| x.proposer = ValidatorAddress(Address::repeat_byte(0xee))),
            ),
            ("tx_root", Box::new(move |x| x.tx_root = other)),
            ("state_root", Box::new(move |x| x.state_root = other)),
            ("receipts_root", Box::new(move |x| x.receipts_root = other)),
            ("gas_used", Box::new(move |x| x.gas_used = gas_used + 1)),
        ];
        assert!(parent_hash != other && tx_root != other);
        assert!(state_root != other && receipts_root != other);
        assert_ne!(proposer, ValidatorAddress(Address::repeat_byte(0xee)));
        for (field, change) in &changes {
            let mut changed = b.header.clone();
            change(&mut changed);
            assert_ne!(changed, b.header, "{field} did not change");
            assert_ne!(changed.hash(), h, "the hash does not cover {field}");
        }
    }

    #[test]
    fn rejects_tx_root_mismatch_and_garbage() {
        let mut b = sample();
        b.txs.push(Bytes::from_static(b"smuggled"));
        assert!(matches!(
            Block::decode_checked(&b.encode_to_vec()),
            Err(BlockError::TxRoot { .. })
        ));
        assert!(matches!(
            Block::decode_checked(&[0xff, 0x00]),
            Err(BlockError::Malformed(_))
        ));
        let mut bytes = sample().encode_to_vec();
        bytes.push(0);
        assert!(matches!(
            Block::decode_checked(&bytes),
            Err(BlockError::Malformed(_))
        ));
    }
}
