//! The contract's reverts and events in words: what a command prints when the contract refuses
//! it, and what an audit trail says about a record.

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_sol_types::{Panic, Revert, SolError, SolEvent, SolInterface};

use crate::cid::event_cid;
use crate::PMR::{self, PMRErrors};
use crate::PMR_ADDRESS;

/// The name of a role hash of the PMR contract.
fn role_name(role: &B256) -> String {
    if role.is_zero() {
        "ADMIN".into()
    } else if *role == keccak256("PMR_HOSPITAL") {
        "HOSPITAL".into()
    } else if *role == keccak256("PMR_CUSTODIAN") {
        "CUSTODIAN".into()
    } else {
        role.to_string()
    }
}

/// What a PMR custom error means, in a sentence the user can act on.
fn explain(err: &PMRErrors) -> Option<String> {
    use PMRErrors as E;
    Some(match err {
        E::ERC721NonexistentToken(e) => format!("no record with token {}", e.tokenId),
        E::AccessControlUnauthorizedAccount(e) => format!(
            "{} does not hold the {} role",
            e.account,
            role_name(&e.neededRole)
        ),
        E::NotPermitted(e) => format!("{} is not on the network's permission list", e.account),
        E::NotRecordOwner(e) => format!(
            "{} does not own token {}: only the record's owner (the patient, signing with its one-time key) can do this",
            e.caller, e.tokenId
        ),
        E::NotRecordEditor(e) => format!(
            "{} may not add versions to token {} (only its minting hospital or its owner may)",
            e.caller, e.tokenId
        ),
        E::NoGrant(e) => format!("{} has no grant on token {}", e.grantee, e.tokenId),
        E::NoLiveGrant(e) => format!(
            "{} has no live grant on token {} (never granted, revoked or expired)",
            e.grantee, e.tokenId
        ),
        E::BadStealthMetaAddress(_) => "the stealth meta-address is not two compressed \
             secp256k1 keys (66 bytes, each starting 0x02 or 0x03)"
            .into(),
        E::BadEphemeralKey(e) => format!(
            "the announcement's ephemeral key prefix {:#04x} is not 0x02 or 0x03",
            e.prefix
        ),
        E::PatientAlreadyRegistered(e) => format!("{} is already a registered patient", e.patient),
        E::BadKeySignature(e) => format!(
            "the encryption key is not signed by {}: an account publishes its own key, with its \
             own signature (`pmr identity show` prints it for a patient's registration)",
            e.account
        ),
        E::AccountRemoved(e) => format!(
            "{} was removed from the permission list by the admin: only the admin can permit it again",
            e.account
        ),
        E::GranteeHasNoEncryptionKey(e) => format!(
            "{} has no encryption key on-chain: it must register one first \
             (`pmr identity register-key`)",
            e.grantee
        ),
        E::ExpiryNotInFuture(e) => format!(
            "the expiry {} (unix seconds) is not after the block time {}",
            e.expiry, e.blockTimestamp
        ),
        E::VersionOutOfRange(e) => format!(
            "token {} has {} versions; there is no version {}",
            e.tokenId, e.versionCount, e.version
        ),
        E::RecordNotTransferable(e) => format!(
            "record {} cannot change hands: it belongs to its patient",
            e.tokenId
        ),
        E::UnsupportedCodec(e) => format!(
            "CID codec {:#x} is not supported (raw 0x55 or dag-cbor 0x71)",
            e.codec
        ),
        E::SealedShareTooLong(e) => {
            format!("the sealed share is {} bytes; at most {}", e.length, e.max)
        }
        _ => return None,
    })
}

/// Human-readable reason of a failed call's output: a PMR custom error in words with its name
/// in parentheses (`no record with token 99 (ERC721NonexistentToken)`), a `require` message,
/// a panic code, or the raw bytes when none of these decode.
pub fn describe_revert(output: &[u8]) -> String {
    if output.is_empty() {
        return "reverted without data (out of gas or invalid opcode?)".into();
    }
    if let Ok(err) = PMRErrors::abi_decode(output) {
        let debug = format!("{err:?}");
        let name = debug.split(['(', ' ', '{']).next().unwrap_or_default();
        return match explain(&err) {
            Some(words) => format!("{words} ({name})"),
            None => debug,
        };
    }
    if let Ok(revert) = Revert::abi_decode(output) {
        return format!("reverted: {}", revert.reason);
    }
    if let Ok(panic) = Panic::abi_decode(output) {
        return format!("panic code {:#x}", panic.code);
    }
    format!(
        "reverted with unknown data 0x{}",
        alloy_primitives::hex::encode(output)
    )
}

fn cid_text(cid: &PMR::Cid) -> String {
    event_cid(cid).map_or_else(|e| format!("(bad CID: {e})"), |c| c.to_string())
}

/// The kind (`minted`, `version`, `granted`, `revoked`, `released`) and a one-line account of a
/// PMR event about a token; `None` for any other log.
pub fn describe_event(topics: &[B256], data: &[u8]) -> Option<(&'static str, String)> {
    let t = topics.first()?;
    let topics = topics.iter().copied();
    if *t == PMR::RecordMinted::SIGNATURE_HASH {
        let e = PMR::RecordMinted::decode_raw_log(topics, data).ok()?;
        Some((
            "minted",
            format!(
                "version 0 to one-time owner {} (view tag {:#04x}), root {}",
                e.owner,
                e.viewTag,
                cid_text(&e.root)
            ),
        ))
    } else if *t == PMR::RecordVersionAppended::SIGNATURE_HASH {
        let e = PMR::RecordVersionAppended::decode_raw_log(topics, data).ok()?;
        Some((
            "version",
            format!(
                "version {} by {}, root {}",
                e.version,
                e.by,
                cid_text(&e.root)
            ),
        ))
    } else if *t == PMR::AccessGranted::SIGNATURE_HASH {
        let e = PMR::AccessGranted::decode_raw_log(topics, data).ok()?;
        Some((
            "granted",
            format!(
                "{} until {} (unix s), version {}",
                e.grantee, e.expiry, e.version
            ),
        ))
    } else if *t == PMR::AccessRevoked::SIGNATURE_HASH {
        let e = PMR::AccessRevoked::decode_raw_log(topics, data).ok()?;
        Some(("revoked", format!("{}", e.grantee)))
    } else if *t == PMR::ShareReleased::SIGNATURE_HASH {
        let e = PMR::ShareReleased::decode_raw_log(topics, data).ok()?;
        Some((
            "released",
            format!(
                "custodian {} released its share of version {} to {}",
                e.custodian, e.version, e.grantee
            ),
        ))
    } else {
        None
    }
}

/// The event about `token` that a log states, described; `None` for another contract's log,
/// another token's event, or a log that is not a PMR record event.
pub fn describe_token_event(
    address: Address,
    topics: &[B256],
    data: &[u8],
    token: U256,
) -> Option<(&'static str, String)> {
    if address != PMR_ADDRESS || topics.get(1) != Some(&B256::from(token)) {
        return None;
    }
    describe_event(topics, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverts_read_as_sentences_that_keep_the_error_name() {
        let unknown = PMR::ERC721NonexistentToken {
            tokenId: U256::from(99),
        }
        .abi_encode();
        assert_eq!(
            describe_revert(&unknown),
            "no record with token 99 (ERC721NonexistentToken)"
        );
        let role = PMR::AccessControlUnauthorizedAccount {
            account: Address::repeat_byte(1),
            neededRole: keccak256("PMR_HOSPITAL"),
        }
        .abi_encode();
        let text = describe_revert(&role);
        assert!(text.contains("HOSPITAL role"), "{text}");
        assert!(
            text.ends_with("(AccessControlUnauthorizedAccount)"),
            "{text}"
        );
        // An error without words keeps its decoded form; other data says what it is.
        assert!(describe_revert(&PMR::ZeroAddress {}.abi_encode()).starts_with("ZeroAddress"));
        assert!(describe_revert(&[]).contains("without data"));
        assert!(describe_revert(&[1, 2, 3]).contains("unknown data 0x010203"));
        let msg = Revert::from("nope").abi_encode();
        assert_eq!(describe_revert(&msg), "reverted: nope");
    }
}
