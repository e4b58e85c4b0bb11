//! Bindings of the PMR contract, generated from the committed ABI, and its fixed address.

// `RecordMinted` has nine fields, and its generated constructor as many arguments.
#![allow(clippy::too_many_arguments)]

use alloy_primitives::{address, Address};

alloy_sol_types::sol!(
    #[sol(all_derives)]
    #[allow(missing_docs)]
    PMR,
    "../../evm-contracts/artifacts/PMR.json"
);

/// Where genesis deploys the PMR contract on every PMR network: the ASCII bytes of "PMR" at the
/// low end.
pub const PMR_ADDRESS: Address = address!("0x0000000000000000000000000000000000504d52");

/// Blocks between the block that changes the validator set and the first height the new set
/// decides: the contract's `VALIDATOR_CHANGE_DELAY` (a test checks they agree).
pub const VALIDATOR_CHANGE_DELAY: u64 = 5;
