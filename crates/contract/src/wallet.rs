//! Signing transactions.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

/// Errors of a wallet.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The private key is not 32 bytes of hex or not a valid secp256k1 key; carries why.
    #[error("invalid secp256k1 private key: {0}")]
    BadKey(String),
    /// Signing the transaction failed; carries the signer's error.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// An Ethereum account that signs transactions.
#[derive(Clone, Debug)]
pub struct Wallet {
    signer: PrivateKeySigner,
}

impl Wallet {
    /// A fresh random account.
    pub fn random() -> Self {
        Self {
            signer: PrivateKeySigner::random(),
        }
    }

    /// From a 32-byte private key.
    pub fn from_bytes(key: &B256) -> Result<Self, WalletError> {
        PrivateKeySigner::from_bytes(key)
            .map(|signer| Self { signer })
            .map_err(|e| WalletError::BadKey(e.to_string()))
    }

    /// From a hex private key (with or without `0x`).
    pub fn from_hex(key: &str) -> Result<Self, WalletError> {
        let bytes = hex::decode(key.trim().trim_start_matches("0x"))
            .map_err(|e| WalletError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(WalletError::BadKey(format!(
                "expected 32 bytes, got {}",
                bytes.len()
            )));
        }
        Self::from_bytes(&B256::from_slice(&bytes))
    }

    /// The 32-byte private key (for encrypted keystores).
    pub fn secret(&self) -> B256 {
        self.signer.to_bytes()
    }

    /// The private key as hex (for key files).
    pub fn to_hex(&self) -> String {
        hex::encode(self.signer.to_bytes())
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Signs an EIP-1559 call at zero gas price and returns its EIP-2718 bytes.
    pub fn sign_call(
        &self,
        chain_id: u64,
        nonce: u64,
        to: Address,
        input: Bytes,
        gas_limit: u64,
    ) -> Result<Bytes, WalletError> {
        let tx = TxEip1559 {
            chain_id,
            nonce,
            gas_limit,
            max_fee_per_gas: 0,
            max_priority_fee_per_gas: 0,
            to: TxKind::Call(to),
            value: U256::ZERO,
            input,
            access_list: Default::default(),
        };
        let sig = self
            .signer
            .sign_hash_sync(&tx.signature_hash())
            .map_err(|e| WalletError::Sign(e.to_string()))?;
        Ok(TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into())
    }

    /// Signs an EIP-191 `personal_sign` message (65-byte r||s||v signature).
    pub fn sign_message(&self, msg: &[u8]) -> Result<[u8; 65], WalletError> {
        let sig = self
            .signer
            .sign_message_sync(msg)
            .map_err(|e| WalletError::Sign(e.to_string()))?;
        Ok(sig.as_bytes())
    }
}
