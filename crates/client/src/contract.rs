//! Bindings of the PMR contract, generated from the committed ABI
//! (`evm-contracts/artifacts/PMR.json`), and its fixed address.

use alloy_primitives::{address, Address};

alloy_sol_types::sol!(
    #[sol(all_derives)]
    PMR,
    "../../evm-contracts/artifacts/PMR.json"
);

/// Where genesis deploys the PMR contract on every PMR network.
pub const PMR_ADDRESS: Address = address!("0x0000000000000000000000000000000000504d52");
