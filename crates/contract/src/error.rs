//! Errors of the contract crate.

/// The committed artifact is not what this crate expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// `evm-contracts/artifacts/PMR.json` lacks something the executor needs.
    #[error("the PMR artifact: {0}")]
    Artifact(String),
}
