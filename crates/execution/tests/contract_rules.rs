//! The PMR contract's rules, exercised through revm and RocksDB with the `sol!` bindings.

mod common;

use alloy_primitives::{aliases::U256, Address, Bytes, FixedBytes, B256};
use common::{event, key_call, keys, register_call, Chain};
use pmr_contract::PMR;
use pmr_execution::TxRejection;

/// A CIDv1 (blake3 0x1e, 32-byte digest) as the contract takes it; raw codec (0x55) below 100
/// and dag-cbor (0x71) from 100 on, so roots and envelopes of one version differ in codec too.
fn cid(tag: u8) -> PMR::Cid {
    PMR::Cid {
        codec: if tag < 100 { 0x55 } else { 0x71 },
        digest: B256::repeat_byte(tag),
    }
}

/// Registers the patient and mints one record; returns the token id.
fn setup_record(chain: &mut Chain) -> U256 {
    let k = keys();
    chain.ok(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(0x11), B256::repeat_byte(0x22)),
    );
    mint(chain, 1)
}

fn mint(chain: &mut Chain, tag: u8) -> U256 {
    let k = keys();
    let r = chain.ok(
        &k.hospital,
        PMR::mintRecordCall {
            patient: k.patient.address(),
            root: cid(tag),
            envelope: cid(tag + 100),
            keyCommitment: B256::repeat_byte(tag),
            recordType: 7,
        },
    );
    U256::from_be_slice(&r.output)
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
    let id = setup_record(&mut chain);
    let (patient, other) = (k.patient.address(), k.doctor.address());
    chain.reverts(
        &k.patient,
        PMR::transferFromCall {
            from: patient,
            to: other,
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    chain.reverts(
        &k.patient,
        PMR::safeTransferFrom_0Call {
            from: patient,
            to: other,
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    chain.reverts(
        &k.patient,
        PMR::safeTransferFrom_1Call {
            from: patient,
            to: other,
            tokenId: id,
            data: Bytes::new(),
        },
        "RecordNotTransferable",
    );
    chain.reverts(
        &k.patient,
        PMR::approveCall { _0: other, _1: id },
        "ApprovalsDisabled",
    );
    chain.reverts(
        &k.patient,
        PMR::setApprovalForAllCall {
            _0: other,
            _1: true,
        },
        "ApprovalsDisabled",
    );
    // Not even the admin or the minting hospital can move it.
    chain.reverts(
        &k.hospital,
        PMR::transferFromCall {
            from: patient,
            to: other,
            tokenId: id,
        },
        "RecordNotTransferable",
    );
    // A zero caller (possible only in a read-only call) passes no `auth`: still refused.
    let out = chain.try_call_from(
        Address::ZERO,
        PMR::transferFromCall {
            from: patient,
            to: other,
            tokenId: id,
        },
    );
    assert!(!out.success);
    assert!(out.revert_reason.unwrap().contains("RecordNotTransferable"));
    assert_eq!(chain.view(PMR::ownerOfCall { tokenId: id }), patient);
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
    let r = chain.ok(
        &k.hospital,
        PMR::mintRecordCall {
            patient: k.patient.address(),
            root: cid(1),
            envelope: cid(2),
            keyCommitment: B256::repeat_byte(3),
            recordType: 42,
        },
    );
    let id = U256::from(1);
    assert_eq!(U256::from_be_slice(&r.output), id);
    let locked = event::<PMR::Locked>(&r);
    assert_eq!(locked.expect("Locked event").tokenId, id);
    let minted = event::<PMR::RecordMinted>(&r).expect("RecordMinted event");
    assert_eq!(minted.patient, k.patient.address());
    assert_eq!(minted.hospital, k.hospital.address());
    assert_eq!(minted.recordType, 42);
    assert_eq!(minted.root, cid(1));
    assert_eq!(minted.envelope, cid(2));
    assert_eq!(minted.keyCommitment, B256::repeat_byte(3));
    let uri = chain.view(PMR::tokenURICall { tokenId: id });
    assert_eq!(uri, format!("ipfs://b{}", base32(&cid_bytes(1))));
    assert!(
        uri.starts_with("ipfs://bafkr"),
        "a raw blake3 CIDv1 in base32 starts with bafkr: {uri}"
    );
    let rec = chain.view(PMR::recordOfCall { tokenId: id });
    assert_eq!(
        (rec.patient, rec.hospital, rec.recordType, rec.versions),
        (k.patient.address(), k.hospital.address(), 42, 1)
    );
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
        PMR::addCustodianCall { custodian: doctor },
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
        PMR::mintRecordCall {
            patient: doctor,
            root: cid(1),
            envelope: cid(2),
            keyCommitment: B256::repeat_byte(1),
            recordType: 1,
        },
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
    let r = chain.ok(&k.admin, PMR::addCustodianCall { custodian: doctor });
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
fn minting_requires_a_registered_patient_and_valid_fields() {
    let mut chain = Chain::new();
    let k = keys();
    let patient = k.patient.address();
    chain.reverts(
        &k.hospital,
        PMR::mintRecordCall {
            patient,
            root: cid(1),
            envelope: cid(2),
            keyCommitment: B256::repeat_byte(1),
            recordType: 1,
        },
        "PatientNotRegistered",
    );
    chain.reverts(
        &k.hospital,
        register_call(&k.patient, B256::ZERO, B256::repeat_byte(1)),
        "ZeroPseudonymCommitment",
    );
    chain.ok(
        &k.hospital,
        register_call(&k.patient, B256::repeat_byte(1), B256::repeat_byte(2)),
    );
    assert!(chain.view(PMR::isPatientCall { account: patient }));
    assert_eq!(
        chain.view(PMR::encryptionKeyOfCall { account: patient }),
        B256::repeat_byte(2)
    );
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
                    patient,
                    root,
                    envelope,
                    keyCommitment: B256::repeat_byte(1),
                    recordType: 1,
                },
                "UnsupportedCodec",
            );
        }
    }
    chain.reverts(
        &k.hospital,
        PMR::mintRecordCall {
            patient,
            root: cid(1),
            envelope: cid(2),
            keyCommitment: B256::ZERO,
            recordType: 1,
        },
        "ZeroKeyCommitment",
    );
    assert_eq!(chain.view(PMR::totalMintedCall {}), U256::ZERO);
}

#[test]
fn versions_are_appended_by_the_minting_hospital_or_the_patient_and_kept() {
    let mut chain = Chain::new();
    let k = keys();
    let id = setup_record(&mut chain);
    let append = |tag: u8| PMR::appendVersionCall {
        tokenId: id,
        root: cid(tag),
        envelope: cid(tag + 100),
        keyCommitment: B256::repeat_byte(tag),
    };
    let r = chain.ok(&k.hospital, append(2));
    assert_eq!(U256::from_be_slice(&r.output), U256::from(1));
    assert!(event::<PMR::RecordVersionAppended>(&r).is_some());
    chain.ok(&k.patient, append(3));
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
    let id = setup_record(&mut chain);
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
    chain.reverts(&k.patient, grant(future), "GranteeHasNoEncryptionKey");
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
    let now = chain.next_block_time();
    chain.reverts(&k.patient, grant(now), "ExpiryNotInFuture");
    chain.reverts(
        &k.patient,
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
    let r = chain.ok(&k.patient, grant(expiry));
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
    // The owner always has access; others do not.
    assert!(chain.view(PMR::hasAccessCall {
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
    chain.ok(&k.patient, grant(chain.next_block_time() + 3600));
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
        &k.patient,
        PMR::revokeAccessCall {
            tokenId: id,
            grantee: k.outsider.address(),
        },
        "NoGrant",
    );
    let r = chain.ok(
        &k.patient,
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
    // The patient can always have shares released to itself.
    chain.ok(
        &k.custodian,
        PMR::logShareReleaseCall {
            tokenId: id,
            grantee: k.patient.address(),
            challengeHash: B256::ZERO,
        },
    );
}

#[test]
fn the_mint_path_follows_hospital_role_grants_and_revocations() {
    // `mintRecord` reads a HOSPITAL flag kept beside the patient's balance instead of
    // AccessControl's role mapping; every way the role changes must move the flag with it.
    let mut chain = Chain::new();
    let k = keys();
    let id = setup_record(&mut chain);
    let hospital_role = chain.view(PMR::HOSPITAL_ROLECall {});
    let h = k.hospital.address();
    let mint_by = |chain: &mut Chain, signer, tag: u8| {
        chain.send(
            signer,
            PMR::mintRecordCall {
                patient: k.patient.address(),
                root: cid(tag),
                envelope: cid(tag + 100),
                keyCommitment: B256::repeat_byte(tag),
                recordType: 1,
            },
        )
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
    // Nor may a former hospital append to the records it minted; the patient still may.
    chain.reverts(
        &k.hospital,
        PMR::appendVersionCall {
            tokenId: id,
            root: cid(2),
            envelope: cid(102),
            keyCommitment: B256::repeat_byte(2),
        },
        "NotRecordEditor",
    );
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
        },
    );
    assert!(!mint_by(&mut chain, &k.doctor, 5).success);
    assert_eq!(chain.view(PMR::totalMintedCall {}), U256::from(2));
}

#[test]
fn owners_and_balances_follow_the_records_minted() {
    let mut chain = Chain::new();
    let k = keys();
    let first = setup_record(&mut chain);
    let patient = k.patient.address();
    assert_eq!(
        chain.view(PMR::balanceOfCall { owner: patient }),
        U256::from(1)
    );
    // A second patient, two records; the first patient's third.
    chain.ok(
        &k.hospital,
        register_call(&k.doctor, B256::repeat_byte(0x33), B256::repeat_byte(0x44)),
    );
    let mut ids = vec![];
    for (tag, to) in [
        (2u8, k.doctor.address()),
        (3, k.doctor.address()),
        (4, patient),
    ] {
        let r = chain.ok(
            &k.hospital,
            PMR::mintRecordCall {
                patient: to,
                root: cid(tag),
                envelope: cid(tag + 100),
                keyCommitment: B256::repeat_byte(tag),
                recordType: u32::from(tag),
            },
        );
        let transfer = event::<PMR::Transfer>(&r).expect("Transfer event");
        assert_eq!(
            (transfer.from, transfer.to, transfer.tokenId),
            (Address::ZERO, to, U256::from_be_slice(&r.output))
        );
        ids.push((U256::from_be_slice(&r.output), to, tag));
    }
    assert_eq!(
        chain.view(PMR::balanceOfCall { owner: patient }),
        U256::from(2)
    );
    assert_eq!(
        chain.view(PMR::balanceOfCall {
            owner: k.doctor.address()
        }),
        U256::from(2)
    );
    assert_eq!(
        chain.view(PMR::balanceOfCall {
            owner: k.outsider.address()
        }),
        U256::ZERO
    );
    assert!(chain
        .try_view(PMR::balanceOfCall {
            owner: Address::ZERO
        })
        .revert_reason
        .unwrap()
        .contains("ERC721InvalidOwner"));
    // Every field of every record reads back as minted: the packed first word is laid out as
    // Solidity lays out the struct.
    for (id, owner, tag) in ids {
        assert_eq!(chain.view(PMR::ownerOfCall { tokenId: id }), owner);
        let rec = chain.view(PMR::recordOfCall { tokenId: id });
        assert_eq!(
            (rec.patient, rec.hospital, rec.recordType, rec.versions),
            (owner, k.hospital.address(), u32::from(tag), 1)
        );
        let v = chain.view(PMR::recordVersionCall {
            tokenId: id,
            index: U256::ZERO,
        });
        assert_eq!(
            (v.root, v.envelope, v.keyCommitment),
            (cid(tag), cid(tag + 100), B256::repeat_byte(tag))
        );
    }
    assert_eq!(chain.view(PMR::ownerOfCall { tokenId: first }), patient);
    // Records are found by arithmetic on the token id, so ids that were never minted, however
    // large (where that arithmetic would wrap), must read as nonexistent and never as a slot
    // elsewhere in the contract.
    for id in [
        U256::ZERO,
        U256::from(5),
        U256::from(1) << 64,
        U256::MAX / U256::from(5),
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
    assert!(pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        doctor,
        a.encryptionKey,
        a.pseudonymCommitment,
        &a.signature
    ));
    assert!(!pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        doctor,
        B256::repeat_byte(0x66),
        a.pseudonymCommitment,
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
    assert!(pmr_contract::keys::verify_encryption_key(
        common::CHAIN_ID,
        k.patient.address(),
        p.encryptionKey,
        p.pseudonymCommitment,
        &p.signature
    ));

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
