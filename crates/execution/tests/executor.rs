//! The executor on a real RocksDB: genesis, blocks, rejections, commit and queries.

mod common;

use alloy_primitives::{Address, Bytes, B256, KECCAK256_EMPTY, U256};
use alloy_sol_types::{SolCall, SolEvent};
use common::*;
use pmr_contract::{PMR, PMR_ADDRESS};
use pmr_execution::{
    intrinsic_gas, receipt_proof, verify_receipt, ExecutionError, Executor, TxRejection,
};
use pmr_primitives::GasLimits;
use pmr_storage::Store;

/// The hospital registers the test patient (`keys().patient`, whose address is `patient`).
fn register(nonce: u64, patient: Address) -> pmr_primitives::SignedTx {
    let k = keys();
    assert_eq!(
        patient,
        k.patient.address(),
        "the test patient signs its registration"
    );
    sign(
        &k.hospital,
        nonce,
        &register_call(&k.patient, B256::repeat_byte(1), B256::repeat_byte(2)),
    )
}

/// A raw-codec CIDv1 with a blake3 digest of `[tag; 32]`, as the contract takes it.
fn cid(tag: u8) -> PMR::Cid {
    PMR::Cid {
        codec: 0x55,
        digest: B256::repeat_byte(tag),
    }
}

/// A mint of record `tag` to `to`.
fn mint_call(to: &PMR::OneTimeOwner, tag: u8) -> PMR::mintRecordCall {
    PMR::mintRecordCall {
        to: to.clone(),
        root: cid(tag),
        envelope: cid(tag.wrapping_add(1)),
        keyCommitment: B256::repeat_byte(tag.max(1)),
    }
}

/// A mint of record `tag` to a fresh one-time owner of the test patient.
fn mint(tag: u8) -> PMR::mintRecordCall {
    mint_call(&one_time(&keys().patient, 1).to, tag)
}

/// A mint the contract refuses (`BadEphemeralKey`: no compressed point has prefix 4).
fn bad_mint(tag: u8) -> PMR::mintRecordCall {
    let mut call = mint(tag);
    call.to.ephemeralPrefix = 4;
    call
}

#[test]
fn genesis_deploys_pmr_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let root = {
        let store = Store::open(dir.path()).unwrap();
        let exec = Executor::open(store, &genesis()).unwrap();
        assert_eq!(exec.head(), (0, exec.genesis_state_root()));
        let pmr = exec.account(None, PMR_ADDRESS).unwrap();
        assert_ne!(pmr.code_hash, KECCAK256_EMPTY);
        assert_eq!(pmr.nonce, 1);
        for a in [
            k.admin.address(),
            k.hospital.address(),
            k.custodian.address(),
            k.doctor.address(),
        ] {
            assert!(exec.is_permitted(a).unwrap(), "{a} permitted at genesis");
        }
        assert!(!exec.is_permitted(k.outsider.address()).unwrap());
        assert_eq!(exec.receipts(0).unwrap(), Some(vec![]));
        exec.genesis_state_root()
    };
    // Reopening executes nothing new and agrees.
    let store = Store::open(dir.path()).unwrap();
    let exec = Executor::open(store, &genesis()).unwrap();
    assert_eq!(exec.head(), (0, root));
    // Another genesis on the same database is refused.
    drop(exec);
    let store = Store::open(dir.path()).unwrap();
    let mut other = genesis();
    other.hospitals.push(k.hospital2.address());
    let err = Executor::open(store, &other).unwrap_err();
    assert!(
        matches!(err, ExecutionError::GenesisMismatch { .. }),
        "{err}"
    );
    // A different genesis gives a different root on a fresh database.
    let chain = Chain::with_genesis(other);
    assert_ne!(chain.exec.genesis_state_root(), root);
}

#[test]
fn mint_produces_receipts_with_logs_and_provable_receipts() {
    let mut chain = Chain::new();
    let k = keys();
    let patient = k.patient.address();
    let txs = vec![
        register(0, patient),
        sign(&k.hospital, 1, &mint(7)),
        sign(&k.hospital, 2, &mint(8)),
    ];
    let executed = chain.block(&txs);
    assert_eq!(executed.height, 1);
    assert_eq!(executed.receipts.len(), 3);
    let mut cumulative = 0;
    for (i, r) in executed.receipts.iter().enumerate() {
        assert!(r.success, "{:?}", r.revert_reason());
        assert_eq!(r.index, i as u64);
        assert_eq!(r.tx_hash, txs[i].hash());
        cumulative += r.gas_used;
        assert_eq!(r.cumulative_gas_used, cumulative);
        assert!(r.gas_used > 21_000);
    }
    assert_eq!(executed.gas_used, cumulative);
    let mint = &executed.receipts[1];
    assert!(mint.logs.iter().all(|l| l.address == PMR_ADDRESS));
    let topics: Vec<B256> = mint.logs.iter().map(|l| l.topics[0]).collect();
    assert_eq!(
        topics,
        vec![
            PMR::Transfer::SIGNATURE_HASH,
            PMR::Locked::SIGNATURE_HASH,
            PMR::RecordMinted::SIGNATURE_HASH
        ]
    );
    assert_eq!(
        PMR::mintRecordCall::abi_decode_returns(&executed.receipts[2].output).unwrap(),
        U256::from(2)
    );
    // Stored receipts equal the executed ones and prove against the receipts root.
    let stored = chain
        .exec
        .receipts(1)
        .unwrap()
        .expect("receipts of height 1");
    assert_eq!(stored, executed.receipts);
    for (i, r) in stored.iter().enumerate() {
        let proof = receipt_proof(&stored, i).unwrap();
        assert!(verify_receipt(&executed.receipts_root, r, &proof));
    }
    assert_eq!(chain.exec.receipts(2).unwrap(), None);
    assert_eq!(
        chain.exec.state_root_at(1).unwrap(),
        Some(executed.state_root)
    );
    assert_eq!(chain.exec.head(), (1, executed.state_root));
    assert_ne!(executed.state_root, chain.exec.genesis_state_root());
    assert_eq!(chain.nonce(&k.hospital), 3);
}

#[test]
fn unpermitted_sender_is_rejected_with_a_reason() {
    let chain = Chain::new();
    let k = keys();
    let outsider = k.outsider.address();
    let tx = sign(&k.outsider, 0, &key_call(&k.outsider, B256::repeat_byte(1)));
    let err = chain.exec.check_tx(&tx).unwrap_err();
    assert_eq!(err, TxRejection::NotPermitted(outsider));
    assert!(err.to_string().contains("setPermitted"), "{err}");
    assert!(!err.is_retryable());
    let ok = sign(&k.doctor, 0, &key_call(&k.doctor, B256::repeat_byte(1)));
    chain.exec.check_tx(&ok).unwrap();
    let built = chain
        .exec
        .build_block(&chain.next_env(), vec![tx.clone(), ok.clone()])
        .unwrap();
    assert_eq!(built.included, vec![ok]);
    assert_eq!(
        built.rejected,
        vec![(tx.hash(), TxRejection::NotPermitted(outsider))]
    );
    assert_eq!(built.executed.receipts.len(), 1);
    match chain
        .exec
        .execute_block(&chain.next_env(), std::slice::from_ref(&tx))
    {
        Err(ExecutionError::InvalidBlock {
            index: 0,
            hash,
            reason: TxRejection::NotPermitted(a),
        }) => {
            assert_eq!((hash, a), (tx.hash(), outsider));
        }
        other => panic!("expected InvalidBlock, got {other:?}"),
    }
}

/// A record's one-time owner is on no permission list: the node admits from it exactly the calls
/// only a record's owner may make (grants, revocations, versions), about its own record, in the
/// mempool and in blocks alike, and nothing else.
#[test]
fn one_time_owners_are_admitted_only_for_their_own_record() {
    let mut chain = Chain::new();
    let k = keys();
    let doctor = k.doctor.address();
    let (a, b) = (one_time(&k.patient, 1), one_time(&k.patient, 2));
    let setup = chain.block(&[
        register(0, k.patient.address()),
        sign(&k.hospital, 1, &mint_call(&a.to, 1)),
        sign(&k.hospital, 2, &mint_call(&b.to, 2)),
        // The grantee needs an encryption key.
        sign(&k.doctor, 0, &key_call(&k.doctor, B256::repeat_byte(5))),
    ]);
    assert!(setup.receipts.iter().all(|r| r.success));
    let (token_a, token_b) = (U256::from(1), U256::from(2));
    assert!(!chain.exec.is_permitted(a.address()).unwrap());
    let grant = |token: U256| PMR::grantAccessCall {
        tokenId: token,
        grantee: doctor,
        expiry: u64::MAX / 2,
        sealedPatientShare: Bytes::from(vec![1u8; 64]),
    };
    let refused: Result<(), TxRejection> = Err(TxRejection::NotPermitted(a.address()));

    // Its own record: a grant, a revocation and a version are admitted.
    let own_grant = sign(&a.key, 0, &grant(token_a));
    chain.exec.check_tx(&own_grant).unwrap();
    let revoke = PMR::revokeAccessCall {
        tokenId: token_a,
        grantee: doctor,
    };
    chain.exec.check_tx(&sign(&a.key, 0, &revoke)).unwrap();
    let append = PMR::appendVersionCall {
        tokenId: token_a,
        root: cid(3),
        envelope: cid(4),
        keyCommitment: B256::repeat_byte(3),
    };
    chain.exec.check_tx(&sign(&a.key, 0, &append)).unwrap();
    // Another record of the same patient is not its own.
    assert_eq!(
        chain.exec.check_tx(&sign(&a.key, 0, &grant(token_b))),
        refused
    );
    // Nor is a record that does not exist.
    assert_eq!(
        chain.exec.check_tx(&sign(&a.key, 0, &grant(U256::from(3)))),
        refused
    );
    // Any other call is refused, whatever the contract would make of it.
    let permit_itself = PMR::setPermittedCall {
        account: a.address(),
        permitted: true,
    };
    assert_eq!(
        chain.exec.check_tx(&sign(&a.key, 0, &permit_itself)),
        refused
    );
    let set_key = key_call(&a.key, B256::repeat_byte(6));
    assert_eq!(chain.exec.check_tx(&sign(&a.key, 0, &set_key)), refused);
    assert_eq!(
        chain.exec.check_tx(&sign(&a.key, 0, &mint_call(&a.to, 9))),
        refused
    );
    // The grant's calldata sent anywhere but the PMR contract is refused too.
    let elsewhere = sign_to(
        &a.key,
        0,
        Address::repeat_byte(0x99),
        grant(token_a).abi_encode(),
        GAS,
    );
    assert_eq!(chain.exec.check_tx(&elsewhere), refused);
    // An unpermitted account that owns nothing is refused the same grant.
    let outsider = k.outsider.address();
    assert_eq!(
        chain.exec.check_tx(&sign(&k.outsider, 0, &grant(token_a))),
        Err(TxRejection::NotPermitted(outsider))
    );

    // A proposer leaves out the grant on the other record and includes the owner's own.
    let on_b = sign(&a.key, 0, &grant(token_b));
    let built = chain
        .exec
        .build_block(&chain.next_env(), vec![on_b.clone(), own_grant.clone()])
        .unwrap();
    assert_eq!(built.included, vec![own_grant.clone()]);
    assert_eq!(
        built.rejected,
        vec![(on_b.hash(), TxRejection::NotPermitted(a.address()))]
    );
    // A validator refuses a block holding it.
    assert!(matches!(
        chain
            .exec
            .execute_block(&chain.next_env(), std::slice::from_ref(&on_b)),
        Err(ExecutionError::InvalidBlock {
            index: 0,
            reason: TxRejection::NotPermitted(_),
            ..
        })
    ));
    let executed = chain.block(&[own_grant]);
    assert!(executed.receipts[0].success);
    let access = |token: U256| PMR::hasAccessCall {
        tokenId: token,
        grantee: doctor,
    };
    assert!(chain.view(access(token_a)));
    assert!(!chain.view(access(token_b)));
    assert!(!chain.exec.is_permitted(a.address()).unwrap());

    // A record minted earlier in the same block counts: its owner's grant follows the mint.
    let c = one_time(&k.patient, 3);
    let executed = chain.block(&[
        sign(&k.hospital, 3, &mint_call(&c.to, 3)),
        sign(&c.key, 0, &grant(U256::from(3))),
    ]);
    assert!(executed.receipts.iter().all(|r| r.success));
    assert!(chain.view(access(U256::from(3))));

    // The admin can stop a one-time owner: once removed, even its own record's calls are
    // refused, in the mempool and in blocks.
    let revoke_a = sign(&a.key, 1, &revoke);
    chain.exec.check_tx(&revoke_a).unwrap();
    let removed = chain.block(&[sign(
        &k.admin,
        chain.exec.nonce(k.admin.address()).unwrap(),
        &PMR::setPermittedCall {
            account: a.address(),
            permitted: false,
        },
    )]);
    assert!(removed.receipts[0].success);
    assert_eq!(chain.exec.check_tx(&revoke_a), refused);
    assert!(matches!(
        chain
            .exec
            .execute_block(&chain.next_env(), std::slice::from_ref(&revoke_a)),
        Err(ExecutionError::InvalidBlock {
            reason: TxRejection::NotPermitted(_),
            ..
        })
    ));
}

#[test]
fn permission_changes_apply_to_later_transactions_in_the_same_block() {
    let chain = Chain::new();
    let k = keys();
    let permit = sign(
        &k.admin,
        0,
        &PMR::setPermittedCall {
            account: k.outsider.address(),
            permitted: true,
        },
    );
    let by_outsider = sign(&k.outsider, 0, &key_call(&k.outsider, B256::repeat_byte(1)));
    let built = chain
        .exec
        .build_block(
            &chain.next_env(),
            vec![by_outsider.clone(), permit.clone(), by_outsider.clone()],
        )
        .unwrap();
    // Refused before the admin's transaction, accepted after it.
    assert_eq!(built.included, vec![permit, by_outsider.clone()]);
    assert_eq!(
        built.rejected,
        vec![(
            by_outsider.hash(),
            TxRejection::NotPermitted(k.outsider.address())
        )]
    );
    assert!(built.executed.receipts.iter().all(|r| r.success));
}

#[test]
fn nonce_rules() {
    let mut chain = Chain::new();
    let k = keys();
    let key_call = |b| key_call(&k.doctor, B256::repeat_byte(b));
    let t0 = sign(&k.doctor, 0, &key_call(1));
    let t1 = sign(&k.doctor, 1, &key_call(2));
    let t2 = sign(&k.doctor, 2, &key_call(3));
    // Mempool: a future nonce is admitted, a used one is not.
    chain.exec.check_tx(&t2).unwrap();
    let built = chain
        .exec
        .build_block(
            &chain.next_env(),
            vec![t0.clone(), t2.clone(), t1.clone(), t0.clone()],
        )
        .unwrap();
    assert_eq!(built.included, vec![t0.clone(), t1.clone()]);
    let doctor = k.doctor.address();
    assert_eq!(
        built.rejected,
        vec![
            (
                t2.hash(),
                TxRejection::NonceGap {
                    sender: doctor,
                    expected: 1,
                    got: 2
                }
            ),
            (
                t0.hash(),
                TxRejection::NonceTooLow {
                    sender: doctor,
                    expected: 2,
                    got: 0
                }
            ),
        ]
    );
    assert!(built.rejected[0].1.is_retryable());
    assert!(!built.rejected[1].1.is_retryable());
    // A validator refuses a block with a gap.
    assert!(matches!(
        chain
            .exec
            .execute_block(&chain.next_env(), &[t0.clone(), t2.clone()]),
        Err(ExecutionError::InvalidBlock {
            index: 1,
            reason: TxRejection::NonceGap { .. },
            ..
        })
    ));
    chain.block(&[t0.clone(), t1]);
    assert_eq!(chain.nonce(&k.doctor), 2);
    assert_eq!(
        chain.exec.check_tx(&t0),
        Err(TxRejection::NonceTooLow {
            sender: doctor,
            expected: 2,
            got: 0
        })
    );
    chain.exec.check_tx(&t2).unwrap();
}

#[test]
fn gas_limits_per_transaction_and_per_block() {
    let gas = GasLimits {
        block_gas_limit: 500_000,
        tx_gas_limit: 200_000,
    };
    let chain = Chain::with_genesis(genesis_with(gas));
    let k = keys();
    let input = key_call(&k.doctor, B256::repeat_byte(1)).abi_encode();
    let too_high = sign_to(&k.doctor, 0, PMR_ADDRESS, input.clone(), 200_001);
    assert_eq!(
        chain.exec.check_tx(&too_high),
        Err(TxRejection::GasLimitTooHigh {
            limit: 200_001,
            max: 200_000
        })
    );
    let too_low = sign_to(&k.doctor, 0, PMR_ADDRESS, input.clone(), 21_000);
    match chain.exec.check_tx(&too_low) {
        Err(TxRejection::IntrinsicGasTooLow {
            limit: 21_000,
            intrinsic,
        }) => assert!(intrinsic > 21_000),
        other => panic!("expected IntrinsicGasTooLow, got {other:?}"),
    }
    // A proposer handed it anyway leaves it out with the same reason (revm's check, mapped),
    // and a validator refuses a block holding it.
    let admitted = chain.exec.check_tx(&too_low).unwrap_err();
    let built = chain
        .exec
        .build_block(&chain.next_env(), vec![too_low.clone()])
        .unwrap();
    assert!(built.included.is_empty());
    assert_eq!(built.rejected, vec![(too_low.hash(), admitted.clone())]);
    assert!(matches!(
        chain.exec.execute_block(&chain.next_env(), &[too_low]),
        Err(ExecutionError::InvalidBlock { reason, .. }) if reason == admitted
    ));
    let create = {
        // Contract creation is refused outright.
        use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
        use alloy_eips::eip2718::Encodable2718;
        use alloy_signer::SignerSync;
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            gas_limit: 100_000,
            to: alloy_primitives::TxKind::Create,
            input: vec![0u8; 4].into(),
            ..Default::default()
        };
        let sig = k.doctor.sign_hash_sync(&tx.signature_hash()).unwrap();
        pmr_primitives::SignedTx::decode(
            TxEnvelope::from(tx.into_signed(sig)).encoded_2718().into(),
            &LIMITS,
        )
        .unwrap()
    };
    assert_eq!(
        chain.exec.check_tx(&create),
        Err(TxRejection::ContractCreation(PMR_ADDRESS))
    );

    // Each reserves 200k: two fit in 500k (they use ~50k each, so the third reserves 200k of
    // the ~400k left and fits too); build blocks until one stops.
    let txs: Vec<_> = (0..12)
        .map(|n| sign_to(&k.doctor, n, PMR_ADDRESS, input.clone(), 200_000))
        .collect();
    let built = chain
        .exec
        .build_block(&chain.next_env(), txs.clone())
        .unwrap();
    let used = built.executed.gas_used;
    assert!(used <= gas.block_gas_limit);
    assert!(!built.included.is_empty() && built.included.len() < txs.len());
    let first_left = built.included.len();
    for (i, (hash, reason)) in built.rejected.iter().enumerate() {
        assert_eq!(*hash, txs[first_left + i].hash());
        assert!(
            matches!(reason, TxRejection::BlockFull { limit: 200_000, .. }),
            "{reason}"
        );
        assert!(reason.is_retryable());
    }
    // The first left-out transaction really did not fit.
    let remaining = gas.block_gas_limit - used;
    assert!(remaining < 200_000);
    assert!(matches!(
        chain
            .exec
            .execute_block(&chain.next_env(), &txs[..first_left + 1]),
        Err(ExecutionError::InvalidBlock {
            reason: TxRejection::BlockFull { .. },
            ..
        })
    ));
}

#[test]
fn reverted_and_out_of_gas_transactions_are_included_with_failed_receipts() {
    let mut chain = Chain::new();
    let k = keys();
    chain.block(&[register(0, k.patient.address())]);
    let refused = sign(&k.hospital, 1, &bad_mint(1));
    // A valid mint with enough gas to start (the intrinsic gas, which for this calldata is
    // the EIP-7623 floor, leaving a few thousand for execution) but far too little to store a
    // record (fresh slots cost 22,100 each).
    let input = mint(1).abi_encode();
    let intrinsic = intrinsic_gas(&sign_to(&k.hospital, 2, PMR_ADDRESS, input.clone(), GAS));
    let limit = intrinsic + 1_000;
    let starving = sign_to(&k.hospital, 2, PMR_ADDRESS, input, limit);
    let executed = chain.block(&[refused, starving]);
    let (a, b) = (&executed.receipts[0], &executed.receipts[1]);
    assert!(!a.success && !b.success);
    assert!(a.revert_reason().unwrap().contains("BadEphemeralKey"));
    assert_eq!(
        b.gas_used,
        limit,
        "an out-of-gas transaction spends its whole limit (output 0x{})",
        hex::encode(&b.output)
    );
    assert!(b.output.is_empty(), "out of gas returns nothing");
    assert!(a.logs.is_empty() && b.logs.is_empty());
    // Failed transactions still consume their nonce.
    assert_eq!(chain.nonce(&k.hospital), 3);
}

#[test]
fn wrong_height_is_refused() {
    let chain = Chain::new();
    let err = chain.exec.execute_block(&env(2), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ExecutionError::WrongHeight {
                expected: 1,
                got: 2
            }
        ),
        "{err}"
    );
    assert!(chain.exec.build_block(&env(0), vec![]).is_err());
}

#[test]
fn committed_state_survives_reopen_and_uncommitted_batches_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let patient = k.patient.address();
    let (head, executed1) = {
        let store = Store::open(dir.path()).unwrap();
        let exec = Executor::open(store.clone(), &genesis()).unwrap();
        let b1 = exec
            .execute_block(
                &env(1),
                &[register(0, patient), sign(&k.hospital, 1, &mint(1))],
            )
            .unwrap();
        commit(&store, &exec, &b1);
        // Height 2 executed and staged, but its batch is dropped (a crash before commit).
        let b2 = exec
            .execute_block(&env(2), &[sign(&k.hospital, 2, &mint(2))])
            .unwrap();
        let mut batch = store.batch();
        exec.write_to_batch(&b2, &mut batch);
        assert!(!batch.is_empty());
        drop(batch);
        (exec.head(), b1)
    };
    assert_eq!(head, (1, executed1.state_root));
    let store = Store::open(dir.path()).unwrap();
    let exec = Executor::open(store.clone(), &genesis()).unwrap();
    assert_eq!(exec.head(), head);
    assert_eq!(exec.nonce(k.hospital.address()).unwrap(), 2);
    assert_eq!(exec.receipts(1).unwrap(), Some(executed1.receipts.clone()));
    assert_eq!(exec.receipts(2).unwrap(), None);
    assert_eq!(total_minted(&exec), U256::from(1));
    // Height 2 executes again after the restart and commits.
    let b2 = exec
        .execute_block(&env(2), &[sign(&k.hospital, 2, &mint(2))])
        .unwrap();
    commit(&store, &exec, &b2);
    assert_eq!(exec.head(), (2, b2.state_root));
}

#[test]
fn only_the_committed_execution_of_a_height_counts() {
    let mut chain = Chain::new();
    let k = keys();
    let a = chain
        .exec
        .execute_block(
            &chain.next_env(),
            &[sign(
                &k.doctor,
                0,
                &key_call(&k.doctor, B256::repeat_byte(1)),
            )],
        )
        .unwrap();
    let b = chain
        .exec
        .execute_block(
            &chain.next_env(),
            &[sign(
                &k.doctor,
                0,
                &key_call(&k.doctor, B256::repeat_byte(2)),
            )],
        )
        .unwrap();
    assert_ne!(a.state_root, b.state_root);
    commit(&chain.store, &chain.exec, &b);
    assert_eq!(chain.exec.head(), (1, b.state_root));
    assert_eq!(
        chain.view(PMR::encryptionKeyOfCall {
            account: k.doctor.address()
        }),
        B256::repeat_byte(2)
    );
    // `a` is stale now.
    assert!(chain.exec.execute_block(&env(1), &[]).is_err());
    let _ = &mut chain;
}

#[test]
fn two_executors_fed_the_same_blocks_agree() {
    let k = keys();
    let patient = k.patient.address();
    let x = Chain::new();
    let y = Chain::new();
    assert_eq!(x.exec.genesis_state_root(), y.exec.genesis_state_root());
    let first = one_time(&k.patient, 1);
    let blocks: Vec<Vec<_>> = vec![
        vec![
            register(0, patient),
            sign(&k.hospital, 1, &mint_call(&first.to, 1)),
        ],
        vec![],
        vec![
            sign(&k.hospital, 2, &mint(2)),
            sign(&k.doctor, 0, &key_call(&k.doctor, B256::repeat_byte(5))),
            sign(&k.hospital, 3, &bad_mint(3)), // reverts
        ],
        vec![sign(
            &first.key,
            0,
            &PMR::grantAccessCall {
                tokenId: U256::from(1),
                grantee: k.doctor.address(),
                expiry: u64::MAX / 2,
                sealedPatientShare: Bytes::from(vec![1u8; 64]),
            },
        )],
    ];
    for txs in &blocks {
        let ex = x.exec.execute_block(&x.next_env(), txs).unwrap();
        let ey = y.exec.execute_block(&y.next_env(), txs).unwrap();
        assert_eq!(ex, ey);
        commit(&x.store, &x.exec, &ex);
        commit(&y.store, &y.exec, &ey);
    }
    assert_eq!(x.exec.head(), y.exec.head());
    for h in 0..=4 {
        assert_eq!(x.exec.receipts(h).unwrap(), y.exec.receipts(h).unwrap());
        assert_eq!(
            x.exec.state_root_at(h).unwrap(),
            y.exec.state_root_at(h).unwrap()
        );
    }
    // The root commits to the state, not to its history: every block that changed state moved
    // it, the empty block (height 2) left it where it was.
    let roots: Vec<_> = (0..=4).map(|h| x.exec.state_root_at(h).unwrap()).collect();
    assert_eq!(roots[2], roots[1]);
    let distinct: std::collections::HashSet<_> = roots.iter().collect();
    assert_eq!(distinct.len(), 4);
    // Each store, read entry by entry, gives the root its head records.
    for chain in [&x, &y] {
        let check = pmr_execution::Executor::verify_stored_state(&chain.store).unwrap();
        assert_eq!(check.height, 4);
        assert_eq!(check.computed_root, x.exec.head().1);
        assert!(check.matches(), "{check:?}");
        assert!(
            check.counts.pages > 5 && check.counts.accounts >= 4 && check.counts.codes == 1,
            "{check:?}"
        );
    }
    // The one-time owner's grant was admitted and applied.
    assert!(x.view(PMR::hasAccessCall {
        tokenId: U256::from(1),
        grantee: k.doctor.address(),
    }));
}

#[test]
fn historical_calls_and_accounts() {
    let mut chain = Chain::new();
    let k = keys();
    let patient = k.patient.address();
    chain.block(&[register(0, patient), sign(&k.hospital, 1, &mint(1))]);
    chain.block(&[
        sign(&k.hospital, 2, &mint(2)),
        sign(&k.hospital, 3, &mint(3)),
    ]);
    let total_at = |h: Option<u64>| {
        let out = chain
            .exec
            .call(
                h,
                Address::ZERO,
                PMR_ADDRESS,
                PMR::totalMintedCall {}.abi_encode().into(),
            )
            .unwrap();
        PMR::totalMintedCall::abi_decode_returns(&out.output).unwrap()
    };
    assert_eq!(total_at(Some(0)), U256::ZERO);
    assert_eq!(total_at(Some(1)), U256::from(1));
    assert_eq!(total_at(Some(2)), U256::from(3));
    assert_eq!(total_at(None), U256::from(3));
    let hospital = k.hospital.address();
    assert_eq!(chain.exec.account(Some(0), hospital).unwrap().nonce, 0);
    assert_eq!(chain.exec.account(Some(1), hospital).unwrap().nonce, 2);
    assert_eq!(chain.exec.account(None, hospital).unwrap().nonce, 4);
    assert_eq!(
        chain.exec.account(None, hospital).unwrap().code_hash,
        KECCAK256_EMPTY
    );
    assert!(matches!(
        chain.exec.account(Some(3), hospital),
        Err(ExecutionError::HeightNotAvailable {
            requested: 3,
            head: 2
        })
    ));
    // A patient registered at height 1 was unknown at height 0.
    let is_patient = |h| {
        let out = chain
            .exec
            .call(
                Some(h),
                Address::ZERO,
                PMR_ADDRESS,
                PMR::isPatientCall { account: patient }.abi_encode().into(),
            )
            .unwrap();
        PMR::isPatientCall::abi_decode_returns(&out.output).unwrap()
    };
    assert!(!is_patient(0));
    assert!(is_patient(1));
    // Calls write nothing.
    let before = chain.exec.head();
    let out = chain
        .exec
        .call(
            None,
            k.hospital.address(),
            PMR_ADDRESS,
            mint(9).abi_encode().into(),
        )
        .unwrap();
    assert!(
        out.success,
        "a simulated mint succeeds: {:?}",
        out.revert_reason
    );
    assert!(!out.logs.is_empty());
    assert_eq!(chain.exec.head(), before);
    assert_eq!(total_at(None), U256::from(3));
    let _ = &mut chain;
}

/// Enough gas for a mint to pass its checks and write its first slots, not to finish.
const OOG_MINT_GAS: u64 = 90_000;

/// The same transactions in one block and one block each give the same receipts (gas, logs,
/// output) and the same contract state. A block's transactions share one EVM journal,
/// finalized once at the end: this fails if a transaction did not see what an earlier one in
/// its block wrote, if a slot written by one and only read by a later one were left out of the
/// block's changes, or if storage gas (EIP-2200/2929) were charged against the wrong original
/// value.
#[test]
fn one_shared_block_and_one_block_per_transaction_agree() {
    let k = keys();
    let patient = k.patient.address();
    let doctor = k.doctor.address();
    // The owners of tokens 1 and 2 (the mints of tags 1 and 4; those of 2 and 3 fail).
    let (first, second) = (one_time(&k.patient, 1), one_time(&k.patient, 4));
    let grant = |owner: &OneTime, nonce: u64, token: u8| {
        let call = PMR::grantAccessCall {
            tokenId: U256::from(token),
            grantee: doctor,
            expiry: u64::MAX / 2,
            sealedPatientShare: Bytes::from(vec![token; 64]),
        };
        sign(&owner.key, nonce, &call)
    };
    let txs = vec![
        register(0, patient),
        sign(&k.hospital, 1, &mint_call(&first.to, 1)),
        // Runs out of gas after writing the owner's balance, the token counter and the first
        // record word: rolled back.
        sign_to(
            &k.hospital,
            2,
            PMR_ADDRESS,
            mint(2).abi_encode(),
            OOG_MINT_GAS,
        ),
        // Reverts (no valid ephemeral key): its writes are rolled back, its nonce and gas are
        // not.
        sign(&k.hospital, 3, &bad_mint(3)),
        sign(&k.hospital, 4, &mint_call(&second.to, 4)),
        sign(&k.doctor, 0, &key_call(&k.doctor, B256::repeat_byte(5))),
        grant(&first, 0, 1),
        sign(
            &first.key,
            1,
            &PMR::revokeAccessCall {
                tokenId: U256::from(1),
                grantee: doctor,
            },
        ),
        grant(&second, 0, 2),
    ];
    let mut shared = Chain::new();
    let mut alone = Chain::new();
    let together = shared.block(&txs);
    assert_eq!(together.receipts.len(), txs.len());
    let oog = &together.receipts[2];
    assert_eq!(
        oog.gas_used, OOG_MINT_GAS,
        "the short mint used all its gas"
    );
    for (i, tx) in txs.iter().enumerate() {
        let own = alone.block(std::slice::from_ref(tx)).receipts.remove(0);
        let r = &together.receipts[i];
        assert_eq!(
            (r.success, r.gas_used, &r.logs, &r.output),
            (own.success, own.gas_used, &own.logs, &own.output),
            "transaction {i}"
        );
        assert_eq!(r.success, i != 2 && i != 3, "transaction {i}");
    }
    for chain in [&shared, &alone] {
        assert!(chain.view(PMR::isPatientCall { account: patient }));
        for owner in [&first, &second] {
            assert_eq!(
                chain.view(PMR::balanceOfCall {
                    owner: owner.address()
                }),
                U256::from(1)
            );
        }
        assert_eq!(
            chain.view(PMR::balanceOfCall { owner: patient }),
            U256::ZERO
        );
        assert_eq!(chain.view(PMR::totalMintedCall {}), U256::from(2));
        let access = |token: u64| PMR::hasAccessCall {
            tokenId: U256::from(token),
            grantee: doctor,
        };
        assert!(!chain.view(access(1)), "revoked in the block");
        assert!(chain.view(access(2)));
        assert_eq!(chain.nonce(&k.hospital), 5);
        assert_eq!(chain.nonce(&first.key), 2);
        assert_eq!(chain.nonce(&second.key), 1);
    }
    // What the block wrote is committed: the next block's mint and grants build on it.
    let next = shared.block(&[sign(&k.hospital, 5, &mint(5)), grant(&first, 2, 1)]);
    assert!(next.receipts.iter().all(|r| r.success));
}

/// Two chains fed the same blocks: a patient registered and `n` records minted to one-time
/// owners (the first one's owner returned).
fn twin_chains_with_records(n: u8) -> (Chain, Chain, OneTime) {
    let k = keys();
    let x = Chain::new();
    let y = Chain::new();
    let first = one_time(&k.patient, 1);
    let mut txs = vec![
        register(0, k.patient.address()),
        sign(&k.hospital, 1, &mint_call(&first.to, 1)),
    ];
    for i in 2..=n {
        txs.push(sign(&k.hospital, u64::from(i), &mint(i)));
    }
    for chain in [&x, &y] {
        let executed = chain
            .exec
            .execute_block(&chain.next_env(), &txs)
            .expect("test step");
        assert!(executed.receipts.iter().all(|r| r.success));
        commit(&chain.store, &chain.exec, &executed);
    }
    (x, y, first)
}

/// Flips the lowest bit of the last byte of the newest stored version of the storage page
/// holding `slot` of the PMR contract (the page stays well formed: one slot's value changes);
/// returns the page's stored key.
fn corrupt_page(store: &Store, slot: U256) -> Vec<u8> {
    let page = slot & !U256::from(7);
    let mut prefix = PMR_ADDRESS.to_vec();
    prefix.extend_from_slice(&page.to_be_bytes::<32>());
    let mut found = None;
    store
        .for_each_from(pmr_storage::Column::Storage, &prefix, |k, v| {
            if k.starts_with(&prefix) {
                found = Some((k.to_vec(), v.to_vec()));
            }
            false
        })
        .expect("test step");
    let (key, mut value) = found.expect("the page is stored");
    *value.last_mut().expect("a page value") ^= 1;
    store
        .put(
            pmr_storage::Column::Storage,
            &key,
            &value,
            pmr_storage::Durability::Sync,
        )
        .expect("test step");
    key
}

#[test]
fn a_corrupted_page_fails_verification_and_diverges_when_next_written() {
    let (x, y, first) = twin_chains_with_records(3);
    let layout = pmr_contract::ContractLayout::get().unwrap();
    // Both stores verify before anything is touched, and the check judged entries.
    for chain in [&x, &y] {
        let check = Executor::verify_stored_state(&chain.store).unwrap();
        assert!(check.matches(), "{check:?}");
        assert!(check.counts.pages >= 5, "{check:?}");
    }
    // Corrupt, on x only, the page of record 1's first word (no later block below reads it
    // before the version is appended).
    let record_slot = layout.record_owner_key(1);
    corrupt_page(&x.store, record_slot);
    let check = Executor::verify_stored_state(&x.store).unwrap();
    assert!(!check.matches(), "the corruption went unseen: {check:?}");
    assert_eq!(check.recorded_root, y.exec.head().1);
    assert!(Executor::verify_stored_state(&y.store).unwrap().matches());
    // A block that does not touch the page: both executors still agree (the root only moves
    // by what blocks change) ...
    let k = keys();
    let untouched = [sign(&k.hospital, 4, &mint(4))];
    let ex = x.exec.execute_block(&x.next_env(), &untouched).unwrap();
    let ey = y.exec.execute_block(&y.next_env(), &untouched).unwrap();
    assert_eq!(ex.state_root, ey.state_root);
    commit(&x.store, &x.exec, &ex);
    commit(&y.store, &y.exec, &ey);
    // ... and the block that rewrites it gives the corrupted node another root than its twin:
    // the divergence consensus halts on.
    let append = PMR::appendVersionCall {
        tokenId: U256::from(1),
        root: cid(9),
        envelope: cid(10),
        keyCommitment: B256::repeat_byte(9),
    };
    let txs = [sign(&first.key, 0, &append)];
    let ex = x.exec.execute_block(&x.next_env(), &txs).unwrap();
    let ey = y.exec.execute_block(&y.next_env(), &txs).unwrap();
    assert!(ey.receipts[0].success);
    assert_ne!(
        ex.state_root, ey.state_root,
        "the corrupted page went unnoticed"
    );
}

#[test]
fn a_snapshot_imports_only_when_it_is_the_trusted_state() {
    let (x, _y, _) = twin_chains_with_records(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.snap");
    let info = pmr_execution::export_snapshot(&x.store, &path).unwrap();
    let (height, root) = x.exec.head();
    assert_eq!((info.height, info.state_root), (height, root));
    assert!(
        info.counts.pages >= 5 && info.counts.accounts >= 2,
        "{info:?}"
    );
    assert_eq!(
        pmr_execution::verify_snapshot(&path, Some(root)).unwrap(),
        info
    );
    // What a header the network signed says of that height (here: the source's own record).
    let trusted = pmr_execution::TrustedHead {
        height,
        state_root: root,
        timestamp_ms: info.timestamp_ms,
    };

    // Imported into an empty store: an executor opens on it at the snapshot's height and
    // answers as the source does.
    let target = tempfile::tempdir().unwrap();
    let store = Store::open(target.path()).unwrap();
    Executor::import_snapshot(&store, &x.genesis, &path, trusted).unwrap();
    let imported = Executor::open(store.clone(), &x.genesis).unwrap();
    assert_eq!(imported.head(), (height, root));
    assert_eq!(total_minted(&imported), U256::from(4));
    assert_eq!(total_minted(&imported), total_minted(&x.exec));
    assert!(Executor::verify_stored_state(&store).unwrap().matches());
    // Twice into the same store: refused.
    assert!(Executor::import_snapshot(&store, &x.genesis, &path, trusted).is_err());

    // Another trusted root: refused, nothing written.
    let empty = tempfile::tempdir().unwrap();
    let store = Store::open(empty.path()).unwrap();
    let other_root = pmr_execution::TrustedHead {
        state_root: B256::repeat_byte(1),
        ..trusted
    };
    let err = Executor::import_snapshot(&store, &x.genesis, &path, other_root)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not the trusted"), "{err}");
    // The right root but another height or time (a backdated block time would make expired
    // grants look valid): refused.
    for other in [
        pmr_execution::TrustedHead {
            height: height + 1,
            ..trusted
        },
        pmr_execution::TrustedHead {
            timestamp_ms: trusted.timestamp_ms - 86_400_000,
            ..trusted
        },
    ] {
        let err = Executor::import_snapshot(&store, &x.genesis, &path, other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the trusted header is"), "{err}");
    }

    // One changed byte in one entry (the last byte before the end marker: the last code's
    // or page's value), and the file's own root: refused, nothing written.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    let changed = dir.path().join("changed.snap");
    bytes[n - 2] ^= 0x01;
    std::fs::write(&changed, &bytes).unwrap();
    let err = Executor::import_snapshot(&store, &x.genesis, &changed, trusted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "{err}");
    // A page changed in the middle, keeping the encoding valid: find the first page entry
    // (kind 2) and flip its last byte.
    let mut bytes = std::fs::read(&path).unwrap();
    let mut at = 56;
    while bytes[at] != 2 {
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        at += 5 + len;
    }
    let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
    bytes[at + 5 + len - 1] ^= 0x01;
    std::fs::write(&changed, &bytes).unwrap();
    let err = pmr_execution::verify_snapshot(&changed, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("entries give state root"), "{err}");
    let err = Executor::import_snapshot(&store, &x.genesis, &changed, trusted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "{err}");
    // A missing entry (the first page cut out): refused.
    let mut cut = bytes[..at].to_vec();
    cut.extend_from_slice(&std::fs::read(&path).unwrap()[at + 5 + len..]);
    std::fs::write(&changed, &cut).unwrap();
    assert!(pmr_execution::verify_snapshot(&changed, Some(root)).is_err());
    // None of the refusals wrote anything: the store still takes the good snapshot.
    assert!(store.last(pmr_storage::Column::Accounts).unwrap().is_none());
    Executor::import_snapshot(&store, &x.genesis, &path, trusted).unwrap();

    // A store holding state but no head (an import that failed part-way) is used by neither an
    // import nor an executor.
    let partial = tempfile::tempdir().unwrap();
    let store = Store::open(partial.path()).unwrap();
    store
        .put(
            pmr_storage::Column::Accounts,
            &[7u8; 28],
            &[0u8; 72],
            pmr_storage::Durability::Sync,
        )
        .unwrap();
    let err = Executor::import_snapshot(&store, &x.genesis, &path, trusted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds state"), "{err}");
    let err = Executor::open(store, &x.genesis).unwrap_err().to_string();
    assert!(err.contains("no executed head"), "{err}");
}
