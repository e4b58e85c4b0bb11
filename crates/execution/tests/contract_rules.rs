//! The PMR contract's rules, exercised through revm and RocksDB with the `sol!` bindings.

mod common;

use alloy_primitives::{aliases::U256, Address, Bytes, FixedBytes, B256};
use alloy_sol_types::SolCall;
use common::{
    event, key_call, keys, meta_address, one_time, register_call, wallet, Chain, OneTime,
};
use pmr_contract::{PatientKeys, PMR};
use pmr_execution::TxRejection;

/// A CIDv1 (blake3 0x1e, 32-byte digest) as the contract takes it; raw codec (0x55) below 100
/// and dag-cbor (0x71) from 100 on, so roots and envelopes of one version differ in codec too.
/// The one-time owners of an `announcements` answer.
fn owners(listed: &[PMR::Announced]) -> Vec<PMR::OneTimeOwner> {
    listed.iter().map(|a| a.to.clone()).collect()
}

fn cid(tag: u8) -> PMR::Cid {
    PMR::Cid {
        codec: if tag < 100 { 0x55 } else { 0x71 },
        digest: B256::repeat_byte(tag),
    }
}

/// Registers the patient and mints one record to one of its one-time owners; returns the token
/// id and the owner.
fn setup_record(chain: &mut Chain) -> (U256, OneTime) {
    let k = keys();
    chain.ok(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(0x11), B256::repeat_byte(0x22)),
    );
    mint(chain, 1)
}

/// The hospital mints record `tag` (type 7) to a fresh one-time owner of the patient; returns
/// the token id and the owner.
fn mint(chain: &mut Chain, tag: u8) -> (U256, OneTime) {
    let k = keys();
    let owner = one_time(&k.patient, 7);
    let r = chain.ok(&k.hospital, mint_call(&owner.to, tag));
    (U256::from_be_slice(&r.output), owner)
}

/// A mint of record `tag` to `to`.
fn mint_call(to: &PMR::OneTimeOwner, tag: u8) -> PMR::mintRecordCall {
    PMR::mintRecordCall {
        to: to.clone(),
        root: cid(tag),
        envelope: cid(tag + 100),
        keyCommitment: B256::repeat_byte(tag),
    }
}

/// `call` from a record's one-time owner `owner`, which is on no permission list: the node
/// refuses it (an owner is admitted only for grants, revocations and versions of its own
/// record), and the contract, simulated, refuses it too with `reason`.
fn refused_from_owner<C: SolCall>(chain: &Chain, owner: &OneTime, call: C, reason: &str) {
    let tx = common::sign(&owner.key, chain.nonce(&owner.key), &call);
    assert_eq!(
        chain.exec.check_tx(&tx),
        Err(TxRejection::NotPermitted(owner.address()))
    );
    let out = chain.try_call_from(owner.address(), call);
    assert!(!out.success, "expected a revert with {reason}");
    let why = out.revert_reason.expect("a reverted call has a reason");
    assert!(why.contains(reason), "expected {reason}, got {why}");
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Base32 (RFC 4648, lowercase, no padding): an independent reference for `tokenURI`.
/// The 36 bytes of [`cid`]`(tag)`, as `tokenURI` renders them.
fn cid_bytes(tag: u8) -> [u8; pmr_primitives::CID_BYTES] {
    let c = cid(tag);
    pmr_primitives::join_blake3_cid(c.codec, &c.digest)
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = String::new();
    for b in data {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(5) {
        bits.push('0');
    }
    bits.as_bytes()
        .chunks(5)
        .map(|c| {
            ALPHABET
                [usize::from_str_radix(std::str::from_utf8(c).expect("ascii"), 2).expect("bits")]
                as char
        })
        .collect()
}

#[test]
fn records_cannot_be_transferred_or_approved() {
    let mut chain = Chain::new();
    let k = keys();
    let (id, owner) = setup_record(&mut chain);
    let (holder, other) = (owner.address(), k.doctor.address());
    refused_from_owner(
        &chain,
        &owner,
        PMR::transferFromCall {
            from: holder,
            to: other,
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    refused_from_owner(
        &chain,
        &owner,
        PMR::safeTransferFrom_0Call {
            from: holder,
            to: other,
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    refused_from_owner(
        &chain,
        &owner,
        PMR::safeTransferFrom_1Call {
            from: holder,
            to: other,
            tokenId: id,
            data: Bytes::new(),
        },
        "RecordNotTransferable",
    );
    refused_from_owner(
        &chain,
        &owner,
        PMR::approveCall { _0: other, _1: id },
        "ApprovalsDisabled",
    );
    refused_from_owner(
        &chain,
        &owner,
        PMR::setApprovalForAllCall {
            _0: other,
            _1: true,
        },
        "ApprovalsDisabled",
    );
    // The patient's own account (permitted, but not the owner) cannot move it either.
    chain.reverts(
        &k.patient,
        PMR::transferFromCall {
            from: holder,
            to: k.patient.address(),
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    // Not even the admin or the minting hospital can move it.
    chain.reverts(
        &k.hospital,
        PMR::transferFromCall {
            from: holder,
            to: other,
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    // A zero caller (possible only in a read-only call) passes no `auth`: still refused.
    let out = chain.try_call_from(
        Address::ZERO,
        PMR::transferFromCall {
            from: holder,
            to: other,
            tokenId: id,
        },
    );
    assert!(!out.success);
    assert!(out.revert_reason.unwrap().contains("RecordNotTransferable"));
    assert_eq!(chain.view(PMR::ownerOfCall { tokenId: id }), holder);
    assert!(chain.view(PMR::lockedCall { tokenId: id }));
    assert!(chain.view(PMR::supportsInterfaceCall {
        interfaceId: FixedBytes([0xb4, 0x5a, 0x3c, 0x0e])
    }));
    assert!(chain.view(PMR::supportsInterfaceCall {
        interfaceId: FixedBytes([0x80, 0xac, 0x58, 0xcd])
    }));
    assert!(!chain.view(PMR::supportsInterfaceCall {
        interfaceId: FixedBytes([0xde, 0xad, 0xbe, 0xef])
    }));
    let missing = chain.try_view(PMR::lockedCall {
        tokenId: U256::from(99),
    });
    assert!(!missing.success);
    assert!(missing
        .revert_reason
        .unwrap()
        .contains("ERC721NonexistentToken"));
}

#[test]
fn mint_emits_locked_and_record_minted_and_sets_token_uri() {
    let mut chain = Chain::new();
    let k = keys();
    chain.ok(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(0x11), B256::repeat_byte(0x22)),
    );
    let to = one_time(&k.patient, 42);
    let r = chain.ok(
        &k.hospital,
        PMR::mintRecordCall {
            to: to.to.clone(),
            root: cid(1),
            envelope: cid(2),
            keyCommitment: B256::repeat_byte(3),
        },
    );
    let id = U256::from(1);
    assert_eq!(U256::from_be_slice(&r.output), id);
    let locked = event::<PMR::Locked>(&r);
    assert_eq!(locked.expect("Locked event").tokenId, id);
    let minted = event::<PMR::RecordMinted>(&r).expect("RecordMinted event");
    assert_eq!(minted.tokenId, id);
    assert_eq!(minted.owner, to.address());
    assert_eq!(
        (
            minted.ephemeralX,
            minted.ephemeralPrefix,
            minted.viewTag,
            minted.sealedType
        ),
        (
            to.to.ephemeralX,
            to.to.ephemeralPrefix,
            to.to.viewTag,
            to.to.sealedType
        )
    );
    assert_eq!(minted.root, cid(1));
    assert_eq!(minted.envelope, cid(2));
    assert_eq!(minted.keyCommitment, B256::repeat_byte(3));
    // Nothing the mint logs names the patient or the minting hospital.
    for log in &r.logs {
        for who in [k.patient.address(), k.hospital.address()] {
            assert!(
                !log.topics
                    .iter()
                    .any(|t| contains(t.as_slice(), who.as_slice())),
                "{who} in a topic of {log:?}"
            );
            assert!(
                !contains(&log.data, who.as_slice()),
                "{who} in the data of {log:?}"
            );
        }
    }
    // The announcement is enough for the patient to derive the owner's key, and it reads back
    // as minted.
    let announced = PMR::OneTimeOwner {
        owner: minted.owner,
        ephemeralX: minted.ephemeralX,
        ephemeralPrefix: minted.ephemeralPrefix,
        viewTag: minted.viewTag,
        sealedType: minted.sealedType,
    };
    let derived = pmr_contract::stealth::one_time_wallet(&wallet(&k.patient), &announced)
        .expect("the patient's record");
    assert_eq!(derived.address(), to.address());
    assert!(pmr_contract::stealth::one_time_wallet(&wallet(&k.doctor), &announced).is_err());
    let listed = chain.view(PMR::announcementsCall {
        from: id,
        count: U256::from(10),
    });
    assert_eq!(owners(&listed), vec![announced]);
    assert_eq!(
        (listed[0].hospital, listed[0].versions),
        (k.hospital.address(), 1)
    );
    let uri = chain.view(PMR::tokenURICall { tokenId: id });
    assert_eq!(uri, format!("ipfs://b{}", base32(&cid_bytes(1))));
    assert!(
        uri.starts_with("ipfs://bafkr"),
        "a raw blake3 CIDv1 in base32 starts with bafkr: {uri}"
    );
    let rec = chain.view(PMR::recordOfCall { tokenId: id });
    assert_eq!(
        (rec.owner, rec.hospital, rec.versions),
        (to.address(), k.hospital.address(), 1)
    );
    assert_eq!(chain.view(PMR::ownerOfCall { tokenId: id }), to.address());
}

#[test]
fn roles_gate_every_privileged_function() {
    let mut chain = Chain::new();
    let k = keys();
    let doctor = k.doctor.address();
    // The doctor is permitted (genesis) but holds no role.
    chain.reverts(
        &k.doctor,
        PMR::registerHospitalCall { hospital: doctor },
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &k.doctor,
        PMR::addCustodianCall {
            custodian: doctor,
            custodyKey: B256::repeat_byte(0xcc),
        },
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &k.doctor,
        PMR::setPermittedCall {
            account: k.outsider.address(),
            permitted: true,
        },
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &k.doctor,
        register_call(&k.doctor, B256::repeat_byte(1), B256::repeat_byte(1)),
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &k.doctor,
        mint_call(&one_time(&k.doctor, 1).to, 1),
        "AccessControlUnauthorizedAccount",
    );
    chain.reverts(
        &k.doctor,
        PMR::logShareReleaseCall {
            tokenId: U256::from(1),
            grantee: doctor,
            challengeHash: B256::ZERO,
        },
        "AccessControlUnauthorizedAccount",
    );
    // Genesis roles.
    let hospital_role = chain.view(PMR::HOSPITAL_ROLECall {});
    let custodian_role = chain.view(PMR::CUSTODIAN_ROLECall {});
    assert!(chain.view(PMR::hasRoleCall {
        role: hospital_role,
        account: k.hospital.address()
    }));
    assert!(chain.view(PMR::hasRoleCall {
        role: custodian_role,
        account: k.custodian.address()
    }));
    assert!(chain.view(PMR::hasRoleCall {
        role: B256::ZERO,
        account: k.admin.address()
    }));
    // The admin registers a second hospital: it gains the role and the permission.
    let h2 = k.hospital2.address();
    assert!(!chain.view(PMR::isPermittedCall { account: h2 }));
    let r = chain.ok(&k.admin, PMR::registerHospitalCall { hospital: h2 });
    assert!(event::<PMR::HospitalRegistered>(&r).is_some());
    assert!(event::<PMR::PermissionSet>(&r).is_some());
    assert!(chain.view(PMR::isPermittedCall { account: h2 }));
    assert!(chain.view(PMR::hasRoleCall {
        role: hospital_role,
        account: h2
    }));
    chain.ok(
        &k.hospital2,
        register_call(&k.patient, B256::repeat_byte(5), B256::repeat_byte(6)),
    );
    chain.reverts(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(5), B256::repeat_byte(6)),
        "PatientAlreadyRegistered",
    );
    let r = chain.ok(
        &k.admin,
        PMR::addCustodianCall {
            custodian: doctor,
            custodyKey: B256::repeat_byte(0xcc),
        },
    );
    assert!(event::<PMR::CustodianAdded>(&r).is_some());
    chain.ok(
        &k.admin,
        PMR::setPermittedCall {
            account: k.outsider.address(),
            permitted: true,
        },
    );
    assert!(chain.view(PMR::isPermittedCall {
        account: k.outsider.address()
    }));
    chain.reverts(
        &k.admin,
        PMR::setPermittedCall {
            account: Address::ZERO,
            permitted: true,
        },
        "ZeroAddress",
    );
}

#[test]
fn minting_requires_valid_fields() {
    let mut chain = Chain::new();
    let k = keys();
    let patient = k.patient.address();
    let to = one_time(&k.patient, 1).to;
    // The owner must be an address, the ephemeral key a compressed point's prefix and x.
    chain.reverts(
        &k.hospital,
        mint_call(
            &PMR::OneTimeOwner {
                owner: Address::ZERO,
                ..to.clone()
            },
            1,
        ),
        "ZeroAddress",
    );
    for prefix in [0u8, 4] {
        chain.reverts(
            &k.hospital,
            mint_call(
                &PMR::OneTimeOwner {
                    ephemeralPrefix: prefix,
                    ..to.clone()
                },
                1,
            ),
            "BadEphemeralKey",
        );
    }
    // A codec must be one varint byte (below 0x80), as root and as envelope: the contract
    // stores a CID as codec and digest and rebuilds its 36 bytes from them.
    for codec in [0x80u8, 0xff] {
        let bad = PMR::Cid {
            codec,
            digest: B256::repeat_byte(9),
        };
        for (root, envelope) in [(bad.clone(), cid(2)), (cid(1), bad.clone())] {
            chain.reverts(
                &k.hospital,
                PMR::mintRecordCall {
                    to: to.clone(),
                    root,
                    envelope,
                    keyCommitment: B256::repeat_byte(1),
                },
                "UnsupportedCodec",
            );
        }
    }
    chain.reverts(
        &k.hospital,
        PMR::mintRecordCall {
            to: to.clone(),
            root: cid(1),
            envelope: cid(2),
            keyCommitment: B256::ZERO,
        },
        "ZeroKeyCommitment",
    );
    assert_eq!(chain.view(PMR::totalMintedCall {}), U256::ZERO);
    // The one-time owner names no patient, so nothing about one is checked: a record can be
    // minted to a patient that is not registered (yet).
    chain.ok(&k.hospital, mint_call(&to, 1));
    assert_eq!(chain.view(PMR::totalMintedCall {}), U256::from(1));
    assert!(!chain.view(PMR::isPatientCall { account: patient }));

    // Registration: a pseudonym commitment, and a stealth meta-address of two compressed keys,
    // signed by the patient with the rest.
    chain.reverts(
        &k.hospital,
        register_call(&k.patient, B256::ZERO, B256::repeat_byte(1)),
        "ZeroPseudonymCommitment",
    );
    let meta = meta_address(&k.patient);
    let mut bad_spending = meta;
    bad_spending[0] = 0x04;
    let mut bad_viewing = meta;
    bad_viewing[33] = 0x04;
    let mut too_long = meta.to_vec();
    too_long.push(0x02);
    let bad_metas: [&[u8]; 5] = [&meta[..65], &bad_spending, &bad_viewing, &too_long, &[]];
    for bad in bad_metas {
        // Signed by the patient over this very meta-address: refused for its form alone.
        let call = pmr_contract::register_patient_call_with(
            &wallet(&k.patient),
            common::CHAIN_ID,
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            bad,
        )
        .expect("sign");
        chain.reverts(&k.hospital, call, "BadStealthMetaAddress");
    }
    // A valid meta-address other than the one the patient signed: refused, so no node or
    // hospital can have records minted to owners of its own choosing.
    let mut swapped = register_call(&k.patient, B256::repeat_byte(1), B256::repeat_byte(2));
    swapped.stealthMetaAddress = Bytes::copy_from_slice(&meta_address(&k.doctor));
    chain.reverts(&k.hospital, swapped, "BadKeySignature");
    assert!(!chain.view(PMR::isPatientCall { account: patient }));
    chain.ok(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(1), B256::repeat_byte(2)),
    );
    assert!(chain.view(PMR::isPatientCall { account: patient }));
    assert_eq!(
        chain.view(PMR::encryptionKeyOfCall { account: patient }),
        B256::repeat_byte(2)
    );
    assert_eq!(
        chain.view(PMR::stealthMetaAddressOfCall { patient }),
        Bytes::copy_from_slice(&meta)
    );

    // A one-time owner is fresh: an owner that already holds a record, a hospital or a patient
    // is refused (reusing one would link records in public, or lend the owner's admission to
    // an account on or off the permission list).
    let fresh = one_time(&k.patient, 1).to;
    for owner in [to.owner, k.hospital.address(), patient] {
        chain.reverts(
            &k.hospital,
            mint_call(
                &PMR::OneTimeOwner {
                    owner,
                    ..fresh.clone()
                },
                5,
            ),
            "OwnerNotFresh",
        );
    }
    chain.ok(&k.hospital, mint_call(&fresh, 5));
    assert_eq!(chain.view(PMR::totalMintedCall {}), U256::from(2));
}

#[test]
fn versions_are_appended_by_the_minting_hospital_or_the_patient_and_kept() {
    let mut chain = Chain::new();
    let k = keys();
    let (id, owner) = setup_record(&mut chain);
    let append = |tag: u8| PMR::appendVersionCall {
        tokenId: id,
        root: cid(tag),
        envelope: cid(tag + 100),
        keyCommitment: B256::repeat_byte(tag),
    };
    let r = chain.ok(&k.hospital, append(2));
    assert_eq!(U256::from_be_slice(&r.output), U256::from(1));
    assert!(event::<PMR::RecordVersionAppended>(&r).is_some());
    // The record's owner appends with its one-time key (admitted though on no permission
    // list); the patient's own account is not the owner.
    chain.ok(&owner.key, append(3));
    chain.reverts(&k.patient, append(4), "NotRecordEditor");
    chain.reverts(&k.doctor, append(4), "NotRecordEditor");
    chain.ok(
        &k.admin,
        PMR::registerHospitalCall {
            hospital: k.hospital2.address(),
        },
    );
    chain.reverts(&k.hospital2, append(4), "NotRecordEditor");
    assert_eq!(chain.view(PMR::versionCountCall { tokenId: id }), 3);
    for (i, tag) in [1u8, 2, 3].into_iter().enumerate() {
        let v = chain.view(PMR::recordVersionCall {
            tokenId: id,
            index: U256::from(i),
        });
        assert_eq!(
            (v.root, v.envelope, v.keyCommitment),
            (cid(tag), cid(tag + 100), B256::repeat_byte(tag))
        );
    }
    let out = chain.try_view(PMR::recordVersionCall {
        tokenId: id,
        index: U256::from(3),
    });
    assert!(out.revert_reason.unwrap().contains("VersionOutOfRange"));
    assert_eq!(
        chain.view(PMR::tokenURICall { tokenId: id }),
        format!("ipfs://b{}", base32(&cid_bytes(3)))
    );
}

#[test]
fn grants_expire_and_revoke_and_gate_share_release() {
    let mut chain = Chain::new();
    let k = keys();
    let (id, owner) = setup_record(&mut chain);
    let doctor = k.doctor.address();
    let share: Bytes = vec![0xab; 80].into();
    let grant = |expiry: u64| PMR::grantAccessCall {
        tokenId: id,
        grantee: doctor,
        expiry,
        sealedPatientShare: share.clone(),
    };
    let future = chain.next_block_time() + 3600;
    // The grantee must have registered an encryption key.
    chain.reverts(&owner.key, grant(future), "GranteeHasNoEncryptionKey");
    // An unpermitted account cannot set a key. Its transaction never reaches the contract: the
    // executor refuses senders off the permission list (tests/executor.rs), so the contract's
    // own check is exercised with a simulated call from the outsider.
    let outsider = k.outsider.address();
    let set_key = key_call(&k.outsider, B256::repeat_byte(1));
    assert_eq!(
        chain.exec.check_tx(&common::sign(&k.outsider, 0, &set_key)),
        Err(TxRejection::NotPermitted(outsider))
    );
    let refused = chain.try_call_from(outsider, set_key);
    assert!(!refused.success);
    let why = refused.revert_reason.expect("a reverted call has a reason");
    assert!(
        why.contains("NotPermitted"),
        "expected NotPermitted, got {why}"
    );
    assert_eq!(
        chain.view(PMR::encryptionKeyOfCall { account: outsider }),
        B256::ZERO
    );
    let r = chain.ok(&k.doctor, key_call(&k.doctor, B256::repeat_byte(0x33)));
    assert!(event::<PMR::EncryptionKeySet>(&r).is_some());
    // Only the owner grants; expiry must be in the future; the share must be present.
    chain.reverts(&k.hospital, grant(future), "NotRecordOwner");
    chain.reverts(&k.patient, grant(future), "NotRecordOwner");
    let now = chain.next_block_time();
    chain.reverts(&owner.key, grant(now), "ExpiryNotInFuture");
    chain.reverts(
        &owner.key,
        PMR::grantAccessCall {
            tokenId: id,
            grantee: doctor,
            expiry: future,
            sealedPatientShare: Bytes::new(),
        },
        "EmptySealedShare",
    );
    assert!(!chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: doctor
    }));
    // Before any grant, a custodian cannot log a release to the doctor.
    chain.reverts(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: doctor,
            challengeHash: B256::ZERO,
        },
        "NoLiveGrant",
    );

    let expiry = chain.next_block_time() + 10;
    let r = chain.ok(&owner.key, grant(expiry));
    let granted = event::<PMR::AccessGranted>(&r).expect("AccessGranted");
    assert_eq!(
        (granted.expiry, granted.sealedShare.clone()),
        (expiry, share.clone())
    );
    assert!(chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: doctor
    }));
    let g = chain.view(PMR::grantOfCall {
        tokenId: id,
        grantee: doctor,
    });
    assert_eq!(
        (g.expiry, g.revoked, g.version, g.sealedShare),
        (expiry, false, 0, share.clone())
    );
    // The owner always has access; others do not, the patient's own account included (it acts
    // on the record only through the one-time key).
    assert!(chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: owner.address()
    }));
    assert!(!chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: k.patient.address()
    }));
    assert!(!chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: k.outsider.address()
    }));

    // Release: custodian only, with a live grant.
    chain.reverts(
        &k.hospital,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: doctor,
            challengeHash: B256::ZERO,
        },
        "AccessControlUnauthorizedAccount",
    );
    let r = chain.ok(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: doctor,
            challengeHash: B256::repeat_byte(9),
        },
    );
    let released = event::<PMR::ShareReleased>(&r).expect("ShareReleased");
    assert_eq!(
        (released.grantee, released.custodian, released.challengeHash),
        (doctor, k.custodian.address(), B256::repeat_byte(9))
    );

    // Time passes beyond the expiry: access ends, releases are refused.
    chain.time_offset_ms += 60_000;
    chain.ok(&k.doctor, key_call(&k.doctor, B256::repeat_byte(0x34)));
    assert!(!chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: doctor
    }));
    chain.reverts(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: doctor,
            challengeHash: B256::ZERO,
        },
        "NoLiveGrant",
    );

    // A new grant, then revocation (owner only).
    chain.ok(&owner.key, grant(chain.next_block_time() + 3600));
    assert!(chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: doctor
    }));
    chain.reverts(
        &k.hospital,
        PMR::revokeAccessCall {
            tokenId: id,
            grantee: doctor,
        },
        "NotRecordOwner",
    );
    chain.reverts(
        &owner.key,
        PMR::revokeAccessCall {
            tokenId: id,
            grantee: k.outsider.address(),
        },
        "NoGrant",
    );
    let r = chain.ok(
        &owner.key,
        PMR::revokeAccessCall {
            tokenId: id,
            grantee: doctor,
        },
    );
    assert!(event::<PMR::AccessRevoked>(&r).is_some());
    assert!(!chain.view(PMR::hasAccessCall {
        tokenId: id,
        grantee: doctor
    }));
    assert!(
        chain
            .view(PMR::grantOfCall {
                tokenId: id,
                grantee: doctor
            })
            .revoked
    );
    chain.reverts(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: doctor,
            challengeHash: B256::ZERO,
        },
        "NoLiveGrant",
    );
    // The owner can always have shares released to itself; the patient's own account cannot.
    chain.ok(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: owner.address(),
            challengeHash: B256::ZERO,
        },
    );
    chain.reverts(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: k.patient.address(),
            challengeHash: B256::ZERO,
        },
        "NoLiveGrant",
    );
}

#[test]
fn the_mint_path_follows_hospital_role_grants_and_revocations() {
    // `mintRecord` reads a HOSPITAL flag kept beside the patient's balance instead of
    // AccessControl's role mapping; every way the role changes must move the flag with it.
    let mut chain = Chain::new();
    let k = keys();
    let (id, owner) = setup_record(&mut chain);
    let hospital_role = chain.view(PMR::HOSPITAL_ROLECall {});
    let h = k.hospital.address();
    let mint_by = |chain: &mut Chain, signer, tag: u8| {
        chain.send(signer, mint_call(&one_time(&k.patient, 1).to, tag))
    };
    chain.ok(
        &k.admin,
        PMR::revokeRoleCall {
            role: hospital_role,
            account: h,
        },
    );
    assert!(!chain.view(PMR::hasRoleCall {
        role: hospital_role,
        account: h
    }));
    let r = mint_by(&mut chain, &k.hospital, 2);
    assert!(!r.success);
    assert!(r
        .revert_reason()
        .unwrap()
        .contains("AccessControlUnauthorizedAccount"));
    // Nor may a former hospital append to the records it minted; the record's owner still may.
    let append = |tag: u8| PMR::appendVersionCall {
        tokenId: id,
        root: cid(tag),
        envelope: cid(tag + 100),
        keyCommitment: B256::repeat_byte(tag),
    };
    chain.reverts(&k.hospital, append(2), "NotRecordEditor");
    chain.ok(&owner.key, append(2));
    // AccessControl's own grantRole (not registerHospital) restores it.
    chain.ok(
        &k.admin,
        PMR::grantRoleCall {
            role: hospital_role,
            account: h,
        },
    );
    assert!(mint_by(&mut chain, &k.hospital, 3).success);
    // Renouncing is a revocation too.
    chain.ok(
        &k.hospital,
        PMR::renounceRoleCall {
            role: hospital_role,
            callerConfirmation: h,
        },
    );
    assert!(!mint_by(&mut chain, &k.hospital, 4).success);
    // Another role leaves the flag alone: a custodian made hospital-less stays unable to mint.
    chain.ok(
        &k.admin,
        PMR::addCustodianCall {
            custodian: k.doctor.address(),
            custodyKey: B256::repeat_byte(0xcc),
        },
    );
    assert!(!mint_by(&mut chain, &k.doctor, 5).success);
    assert_eq!(chain.view(PMR::totalMintedCall {}), U256::from(2));
}

#[test]
fn owners_and_balances_follow_the_records_minted() {
    let mut chain = Chain::new();
    let k = keys();
    let (first, first_owner) = setup_record(&mut chain);
    let patient = k.patient.address();
    // The record is its one-time owner's: the patient's own account holds nothing.
    let balance = |chain: &Chain, owner| chain.view(PMR::balanceOfCall { owner });
    assert_eq!(balance(&chain, first_owner.address()), U256::from(1));
    assert_eq!(balance(&chain, patient), U256::ZERO);
    // A second patient, two records; the first patient's second. Each goes to an owner of its
    // own.
    chain.ok(
        &k.hospital,
        register_call(&k.doctor, B256::repeat_byte(0x33), B256::repeat_byte(0x44)),
    );
    let mut ids = vec![];
    for (tag, of) in [(2u8, &k.doctor), (3, &k.doctor), (4, &k.patient)] {
        let to = one_time(of, u32::from(tag));
        let r = chain.ok(&k.hospital, mint_call(&to.to, tag));
        let transfer = event::<PMR::Transfer>(&r).expect("Transfer event");
        assert_eq!(
            (transfer.from, transfer.to, transfer.tokenId),
            (Address::ZERO, to.address(), U256::from_be_slice(&r.output))
        );
        ids.push((U256::from_be_slice(&r.output), to, tag));
    }
    for (_, to, _) in &ids {
        assert_eq!(balance(&chain, to.address()), U256::from(1));
    }
    for account in [patient, k.doctor.address(), k.outsider.address()] {
        assert_eq!(balance(&chain, account), U256::ZERO, "{account}");
    }
    assert!(chain
        .try_view(PMR::balanceOfCall {
            owner: Address::ZERO
        })
        .revert_reason
        .unwrap()
        .contains("ERC721InvalidOwner"));
    // Every field of every record reads back as minted: the packed first word is laid out as
    // Solidity lays out the struct (`recordOf` and `announcements` read it through the struct;
    // random view tags, prefixes and sealed types catch a field out of place).
    for (id, to, tag) in &ids {
        let id = *id;
        assert_eq!(chain.view(PMR::ownerOfCall { tokenId: id }), to.address());
        let rec = chain.view(PMR::recordOfCall { tokenId: id });
        assert_eq!(
            (rec.owner, rec.hospital, rec.versions),
            (to.address(), k.hospital.address(), 1)
        );
        let v = chain.view(PMR::recordVersionCall {
            tokenId: id,
            index: U256::ZERO,
        });
        assert_eq!(
            (v.root, v.envelope, v.keyCommitment),
            (cid(*tag), cid(*tag + 100), B256::repeat_byte(*tag))
        );
        assert_eq!(
            owners(&chain.view(PMR::announcementsCall {
                from: id,
                count: U256::from(1),
            })),
            vec![to.to.clone()]
        );
    }
    // All announcements in token order, from token 1 (there is no token 0).
    let mut all = vec![first_owner.to.clone()];
    all.extend(ids.iter().map(|(_, to, _)| to.to.clone()));
    let listed = chain.view(PMR::announcementsCall {
        from: U256::from(1),
        count: U256::from(100),
    });
    assert_eq!(owners(&listed), all);
    assert!(listed
        .iter()
        .all(|a| a.hospital == k.hospital.address() && a.versions >= 1));
    assert!(chain
        .view(PMR::announcementsCall {
            from: U256::ZERO,
            count: U256::from(100),
        })
        .is_empty());
    assert!(chain
        .view(PMR::announcementsCall {
            from: U256::from(5),
            count: U256::from(100),
        })
        .is_empty());
    assert_eq!(
        chain.view(PMR::ownerOfCall { tokenId: first }),
        first_owner.address()
    );
    // Records are found by arithmetic on the token id, so ids that were never minted, however
    // large (where that arithmetic would wrap), must read as nonexistent and never as a slot
    // elsewhere in the contract.
    for id in [
        U256::ZERO,
        U256::from(5),
        U256::from(1) << 64,
        U256::MAX / U256::from(pmr_contract::RECORD_WORDS),
        U256::MAX,
    ] {
        for reason in [
            chain
                .try_view(PMR::ownerOfCall { tokenId: id })
                .revert_reason,
            chain
                .try_view(PMR::recordOfCall { tokenId: id })
                .revert_reason,
            chain
                .try_view(PMR::tokenURICall { tokenId: id })
                .revert_reason,
        ] {
            assert!(reason.unwrap().contains("ERC721NonexistentToken"), "{id}");
        }
        assert!(!chain.view(PMR::hasAccessCall {
            tokenId: id,
            grantee: patient
        }));
    }
}

/// An account's encryption key is published with its own signature, kept on-chain for clients
/// to check: a hospital cannot set or replace anyone's key, a signature of another account or
/// for other values is refused, and an account the admin removed cannot be registered back.
#[test]
fn encryption_keys_are_published_by_their_owners_only() {
    let mut chain = Chain::new();
    let k = keys();
    let doctor = k.doctor.address();
    chain.ok(&k.doctor, key_call(&k.doctor, B256::repeat_byte(0x33)));

    // A hospital registers the doctor as a "patient" with a key of its own choosing, signed
    // by the hospital: refused, and the doctor's key is unchanged.
    let forged = register_call(&k.hospital, B256::repeat_byte(1), B256::repeat_byte(0x66));
    let mut as_doctor = forged.clone();
    as_doctor.patient = doctor;
    chain.reverts(&k.hospital, as_doctor, "BadKeySignature");
    // Nor with the doctor's own signature replayed from its key publication.
    let mut replayed = key_call(&k.doctor, B256::repeat_byte(0x33));
    let replay = PMR::registerPatientCall {
        patient: doctor,
        pseudonymCommitment: B256::repeat_byte(1),
        encryptionKey: B256::repeat_byte(0x33),
        stealthMetaAddress: Bytes::copy_from_slice(&meta_address(&k.doctor)),
        signature: std::mem::take(&mut replayed.signature),
    };
    chain.reverts(&k.hospital, replay, "BadKeySignature");
    assert_eq!(
        chain.view(PMR::encryptionKeyOfCall { account: doctor }),
        B256::repeat_byte(0x33)
    );
    assert!(!chain.view(PMR::isPatientCall { account: doctor }));

    // The doctor's attestation verifies for the doctor and nobody else; a key set with a
    // signature over another key is refused.
    let a = chain.view(PMR::encryptionKeyAttestationCall { account: doctor });
    assert_eq!(
        (a.pseudonymCommitment, a.stealthMetaAddress.len()),
        (B256::ZERO, 0),
        "not a patient"
    );
    let doctor_keys = PatientKeys {
        pseudonym_commitment: a.pseudonymCommitment,
        meta_address: &a.stealthMetaAddress,
    };
    assert_eq!(doctor_keys, PatientKeys::default());
    assert!(pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        doctor,
        a.encryptionKey,
        doctor_keys,
        &a.signature
    ));
    assert!(!pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        doctor,
        B256::repeat_byte(0x66),
        doctor_keys,
        &a.signature
    ));
    let mut other = key_call(&k.doctor, B256::repeat_byte(0x34));
    other.encryptionKey = B256::repeat_byte(0x35);
    chain.reverts(&k.doctor, other, "BadKeySignature");
    chain.reverts(
        &k.doctor,
        PMR::setEncryptionKeyCall {
            encryptionKey: B256::repeat_byte(0x35),
            signature: Bytes::from(vec![0u8; 65]),
        },
        "BadKeySignature",
    );

    // The patient's own signed registration is accepted and its attestation verifies.
    chain.ok(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(0x11), B256::repeat_byte(0x22)),
    );
    let p = chain.view(PMR::encryptionKeyAttestationCall {
        account: k.patient.address(),
    });
    assert_eq!(p.pseudonymCommitment, B256::repeat_byte(0x11));
    let meta = meta_address(&k.patient);
    assert_eq!(p.stealthMetaAddress, Bytes::copy_from_slice(&meta));
    let patient_keys = PatientKeys {
        pseudonym_commitment: p.pseudonymCommitment,
        meta_address: &p.stealthMetaAddress,
    };
    assert!(pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        k.patient.address(),
        p.encryptionKey,
        patient_keys,
        &p.signature
    ));
    // It covers the meta-address: with another one it does not verify.
    let other_meta = meta_address(&k.doctor);
    assert!(!pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        k.patient.address(),
        p.encryptionKey,
        PatientKeys {
            meta_address: &other_meta,
            ..patient_keys
        },
        &p.signature
    ));
    // The contract's digest is the one signed.
    assert_eq!(
        chain.view(PMR::encryptionKeyDigestCall {
            account: k.patient.address(),
            encryptionKey: p.encryptionKey,
            pseudonymCommitment: p.pseudonymCommitment,
            metaAddressHash: patient_keys.meta_address_hash(),
        }),
        pmr_contract::encryption_key_digest(
            common::CHAIN_ID,
            k.patient.address(),
            p.encryptionKey,
            patient_keys
        )
    );

    // The admin removes the doctor; a hospital cannot permit it again by registering it, even
    // with the doctor's valid signature; the admin can.
    chain.ok(
        &k.admin,
        PMR::setPermittedCall {
            account: doctor,
            permitted: false,
        },
    );
    chain.reverts(
        &k.hospital,
        register_call(&k.doctor, B256::repeat_byte(0x12), B256::repeat_byte(0x33)),
        "AccountRemoved",
    );
    assert!(!chain.view(PMR::isPermittedCall { account: doctor }));
    chain.ok(
        &k.admin,
        PMR::setPermittedCall {
            account: doctor,
            permitted: true,
        },
    );
    chain.ok(
        &k.hospital,
        register_call(&k.doctor, B256::repeat_byte(0x12), B256::repeat_byte(0x33)),
    );
}
