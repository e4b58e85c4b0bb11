//! Transactions as they arrive at the door: EIP-2718 bytes, decoded and signature-checked once.

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{Transaction as _, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};

/// What the door checks before any state is consulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLimits {
    /// The chain id every transaction must be signed for (EIP-155).
    pub chain_id: u64,
    /// Largest encoded transaction accepted, in bytes.
    pub max_tx_bytes: usize,
}

/// Why a transaction was refused at the door.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The encoding is over [`TxLimits::max_tx_bytes`].
    #[error("transaction is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The encoded size, in bytes.
        size: usize,
        /// The largest size accepted, in bytes.
        max: usize,
    },
    /// No bytes were given.
    #[error("transaction is empty")]
    Empty,
    /// The bytes do not decode as an EIP-2718 transaction; carries the decoder's error.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// An EIP-2718 type other than legacy or EIP-1559; carries the type byte.
    #[error(
        "unsupported transaction type {0}: only legacy (EIP-155) and EIP-1559 transactions are \
         accepted"
    )]
    UnsupportedType(u8),
    /// A legacy transaction signed without a chain id (no EIP-155 replay protection).
    #[error("legacy transaction without a chain id: sign it with EIP-155 replay protection")]
    MissingChainId,
    /// The transaction is signed for another chain.
    #[error("transaction is signed for chain id {got}, this network is chain id {expected}")]
    WrongChainId {
        /// The chain id the transaction is signed for.
        got: u64,
        /// This network's chain id.
        expected: u64,
    },
    /// The sender cannot be recovered from the signature; carries the reason.
    #[error("invalid signature: {0}")]
    BadSignature(String),
    /// Bytes follow the encoded transaction.
    #[error("trailing bytes after the transaction")]
    TrailingBytes,
}

/// A decoded transaction whose signature has been verified and whose sender is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    envelope: TxEnvelope,
    sender: Address,
    /// `keccak256(raw)`, computed once at decode (admission), not again where it is used.
    hash: B256,
    raw: Bytes,
}

impl SignedTx {
    /// Decodes EIP-2718 bytes, checks type, chain id and signature, and recovers the sender.
    pub fn decode(raw: Bytes, limits: &TxLimits) -> Result<Self, TxError> {
        if raw.is_empty() {
            return Err(TxError::Empty);
        }
        if raw.len() > limits.max_tx_bytes {
            return Err(TxError::TooLarge {
                size: raw.len(),
                max: limits.max_tx_bytes,
            });
        }
        let mut buf: &[u8] = &raw;
        let envelope =
            TxEnvelope::decode_2718(&mut buf).map_err(|e| TxError::Malformed(e.to_string()))?;
        if !buf.is_empty() {
            return Err(TxError::TrailingBytes);
        }
        match &envelope {
            TxEnvelope::Legacy(_) | TxEnvelope::Eip1559(_) => {}
            other => return Err(TxError::UnsupportedType(other.tx_type() as u8)),
        }
        match envelope.chain_id() {
            None => return Err(TxError::MissingChainId),
            Some(got) if got != limits.chain_id => {
                return Err(TxError::WrongChainId {
                    got,
                    expected: limits.chain_id,
                })
            }
            Some(_) => {}
        }
        let sender = envelope
            .recover_signer()
            .map_err(|e| TxError::BadSignature(e.to_string()))?;
        Ok(Self {
            envelope,
            sender,
            hash: alloy_primitives::keccak256(&raw),
            raw,
        })
    }

    /// The transaction hash (keccak of the EIP-2718 bytes), as Ethereum tools compute it.
    pub fn hash(&self) -> B256 {
        self.hash
    }

    /// The recovered signer.
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// The encoded bytes, exactly as signed.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The decoded envelope.
    pub fn envelope(&self) -> &TxEnvelope {
        &self.envelope
    }

    /// The sender's nonce this transaction uses.
    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }

    /// The gas limit the sender set.
    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }

    /// `None` for contract creation.
    pub fn to(&self) -> Option<Address> {
        match self.envelope.kind() {
            TxKind::Call(a) => Some(a),
            TxKind::Create => None,
        }
    }

    /// The value transferred, in wei (PMR execution requires zero).
    pub fn value(&self) -> U256 {
        self.envelope.value()
    }

    /// The calldata.
    pub fn input(&self) -> &Bytes {
        self.envelope.input()
    }

    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        self.raw.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxLegacy};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    const LIMITS: TxLimits = TxLimits {
        chain_id: 7,
        max_tx_bytes: 4096,
    };

    fn signer() -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).expect("valid key")
    }

    fn eip1559(chain_id: u64, nonce: u64) -> Bytes {
        let tx = TxEip1559 {
            chain_id,
            nonce,
            gas_limit: 100_000,
            to: TxKind::Call(Address::repeat_byte(2)),
            input: Bytes::from_static(b"\x01\x02"),
            ..Default::default()
        };
        let sig = signer().sign_hash_sync(&tx.signature_hash()).expect("sign");
        TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into()
    }

    #[test]
    fn accepts_eip1559_and_recovers_sender() {
        let tx = SignedTx::decode(eip1559(7, 3), &LIMITS).expect("valid");
        assert_eq!(tx.sender(), signer().address());
        assert_eq!(tx.nonce(), 3);
        assert_eq!(tx.to(), Some(Address::repeat_byte(2)));
        // The hash kept from decode is the one Ethereum tools compute.
        assert_eq!(tx.hash(), *tx.envelope().tx_hash());
    }

    #[test]
    fn accepts_eip155_legacy_and_rejects_pre_eip155() {
        let mk = |chain_id: Option<u64>| {
            let tx = TxLegacy {
                chain_id,
                nonce: 0,
                gas_limit: 21_000,
                to: TxKind::Call(Address::ZERO),
                ..Default::default()
            };
            let sig = signer().sign_hash_sync(&tx.signature_hash()).expect("sign");
            Bytes::from(TxEnvelope::from(tx.into_signed(sig)).encoded_2718())
        };
        assert!(SignedTx::decode(mk(Some(7)), &LIMITS).is_ok());
        assert_eq!(
            SignedTx::decode(mk(None), &LIMITS),
            Err(TxError::MissingChainId)
        );
    }

    #[test]
    fn rejects_wrong_chain_tampering_garbage_and_size() {
        assert_eq!(
            SignedTx::decode(eip1559(8, 0), &LIMITS),
            Err(TxError::WrongChainId {
                got: 8,
                expected: 7
            })
        );
        // Flip a byte of the payload: either the RLP breaks or the signature names someone else.
        let good = eip1559(7, 0);
        let mut bad = good.to_vec();
        let i = bad.len() - 70; // inside the signed fields, before v/r/s
        bad[i] ^= 0x01;
        match SignedTx::decode(bad.into(), &LIMITS) {
            Err(_) => {}
            Ok(tx) => assert_ne!(tx.sender(), signer().address()),
        }
        // A zeroed signature cannot be recovered.
        let mut zero_sig = good.to_vec();
        let n = zero_sig.len();
        for b in &mut zero_sig[n - 32..] {
            *b = 0;
        }
        assert!(matches!(
            SignedTx::decode(zero_sig.into(), &LIMITS),
            Err(TxError::BadSignature(_)) | Err(TxError::Malformed(_))
        ));
        assert!(matches!(
            SignedTx::decode(Bytes::from_static(b"\x02\xff\xff"), &LIMITS),
            Err(TxError::Malformed(_))
        ));
        assert_eq!(SignedTx::decode(Bytes::new(), &LIMITS), Err(TxError::Empty));
        let big = Bytes::from(vec![0u8; 5000]);
        assert!(matches!(
            SignedTx::decode(big, &LIMITS),
            Err(TxError::TooLarge {
                size: 5000,
                max: 4096
            })
        ));
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert_eq!(
            SignedTx::decode(trailing.into(), &LIMITS),
            Err(TxError::TrailingBytes)
        );
    }

    #[test]
    fn rejects_other_types() {
        let tx = TxEip2930 {
            chain_id: 7,
            gas_limit: 21_000,
            to: TxKind::Call(Address::ZERO),
            ..Default::default()
        };
        let sig = signer().sign_hash_sync(&tx.signature_hash()).expect("sign");
        let raw: Bytes = TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into();
        assert_eq!(
            SignedTx::decode(raw, &LIMITS),
            Err(TxError::UnsupportedType(1))
        );
    }
}
