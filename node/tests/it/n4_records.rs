//! The PMR contract on a 4-validator testnet: a hospital mints record tokens to one-time owners
//! of a patient, the patient grants and revokes access as the one-time owner; every node
//! returns identical receipts and state; a record token cannot be transferred.

use crate::common::*;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::{SolCall, SolError};
use pmr_client::{Wallet, PMR, PMR_ADDRESS};

fn cid(tag: u8) -> PMR::Cid {
    PMR::Cid {
        codec: 0x55,
        digest: B256::repeat_byte(tag),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_mint_grant_revoke_identical_everywhere() {
    let net = start_net(4, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let id = net.chain_id;
    let admin = net.account("admin");
    let hospital = net.account("hospital");
    let patient = Wallet::random();
    let doctor = Wallet::random();
    // Spread the writes over the nodes: each node must accept and gossip them.
    let c = [
        net.client(0).await,
        net.client(1).await,
        net.client(2).await,
        net.client(3).await,
    ];

    let mut hashes = Vec::new();
    hashes.push(
        ok(
            &c[1],
            id,
            &hospital,
            pmr_contract::register_patient_call(
                &patient,
                id,
                B256::repeat_byte(0x11),
                B256::repeat_byte(0x22),
            )
            .unwrap(),
        )
        .await
        .hash,
    );
    let permitted = ok(
        &c[2],
        id,
        &admin,
        PMR::setPermittedCall {
            account: doctor.address(),
            permitted: true,
        },
    )
    .await;
    hashes.push(permitted.hash);
    // A node admits the doctor's own transaction only once it has the block permitting them.
    net.wait_height(3, permitted.height).await;
    hashes.push(
        ok(
            &c[3],
            id,
            &doctor,
            pmr_contract::set_encryption_key_call(&doctor, id, B256::repeat_byte(0x33)).unwrap(),
        )
        .await
        .hash,
    );
    let mut tokens = Vec::new();
    let mut owners = Vec::new();
    let mut minted = 0;
    for tag in 1..=2u8 {
        // Each record gets its own one-time owner, derived from the patient's meta-address.
        let to = pmr_contract::stealth::mint_to_account(&patient, 7).unwrap();
        let s = ok(
            &c[0],
            id,
            &hospital,
            PMR::mintRecordCall {
                to: to.clone(),
                root: cid(tag),
                envelope: cid(tag + 100),
                keyCommitment: B256::repeat_byte(tag),
            },
        )
        .await;
        tokens.push(U256::from_be_slice(&s.output));
        owners.push(pmr_contract::stealth::one_time_wallet(&patient, &to).unwrap());
        hashes.push(s.hash);
        minted = s.height;
    }
    // The owner of a record is its one-time address, not the patient's; only the patient's
    // viewing key tells it is the patient's.
    net.wait_height(2, minted).await;
    assert_ne!(owners[0].address(), owners[1].address());
    for (token, owner) in tokens.iter().zip(&owners) {
        let holder = view(&c[2], PMR::ownerOfCall { tokenId: *token }).await;
        assert_eq!(holder, owner.address());
        assert_ne!(holder, patient.address());
        assert_eq!(scan_token(&c[2], &patient, *token).await, Some(7));
        assert_eq!(scan_token(&c[2], &doctor, *token).await, None);
    }
    let uri = view(&c[3], PMR::tokenURICall { tokenId: tokens[1] }).await;
    assert!(uri.starts_with("ipfs://b"), "{uri}");

    // The patient grants the doctor access to the first record, then revokes it, signing as its
    // one-time owner (not on the permission list: a node admits it for its own token, once it
    // has the mint's block).
    let tip = c[0].status().await.unwrap().latest_timestamp_ms / 1000;
    net.wait_height(1, minted).await;
    let granted = ok(
        &c[1],
        id,
        &owners[0],
        PMR::grantAccessCall {
            tokenId: tokens[0],
            grantee: doctor.address(),
            expiry: tip + 3600,
            sealedPatientShare: Bytes::from_static(b"sealed share bytes"),
        },
    )
    .await;
    hashes.push(granted.hash);
    for (i, client) in c.iter().enumerate() {
        // Read from every node once it has the grant's block.
        net.wait_height(i, granted.height).await;
        assert!(
            view(
                client,
                PMR::hasAccessCall {
                    tokenId: tokens[0],
                    grantee: doctor.address()
                }
            )
            .await
        );
        assert!(
            !view(
                client,
                PMR::hasAccessCall {
                    tokenId: tokens[1],
                    grantee: doctor.address()
                }
            )
            .await
        );
    }
    // Each next transaction of the owner goes to another node, which has seen the last one
    // (the loop above waited for it), or it would hand out a nonce already used.
    let revoke = ok(
        &c[2],
        id,
        &owners[0],
        PMR::revokeAccessCall {
            tokenId: tokens[0],
            grantee: doctor.address(),
        },
    )
    .await;
    hashes.push(revoke.hash);
    assert!(
        !view(
            &c[2],
            PMR::hasAccessCall {
                tokenId: tokens[0],
                grantee: doctor.address()
            }
        )
        .await
    );

    // Someone else's token cannot be granted; a record token cannot be transferred.
    let not_owner = send(
        &c[0],
        id,
        &doctor,
        PMR::grantAccessCall {
            tokenId: tokens[1],
            grantee: doctor.address(),
            expiry: tip + 3600,
            sealedPatientShare: Bytes::from_static(b"x"),
        },
    )
    .await;
    assert!(!not_owner.success);
    assert_eq!(&not_owner.output[..4], PMR::NotRecordOwner::SELECTOR);
    net.wait_height(3, revoke.height).await;
    // A one-time owner may send only grants, revocations and versions of its own token: a node
    // refuses anything else from it at submission.
    let own_transfer = owners[0]
        .sign_call(
            id,
            c[3].nonce(owners[0].address()).await.unwrap(),
            PMR_ADDRESS,
            PMR::transferFromCall {
                from: owners[0].address(),
                to: doctor.address(),
                tokenId: tokens[0],
            }
            .abi_encode()
            .into(),
            1_000_000,
        )
        .unwrap();
    let refused = c[3].submit(own_transfer).await.unwrap_err();
    assert!(refused.to_string().contains("permission list"), "{refused}");
    // So the transfer is attempted by the patient's own (permitted) account: the contract
    // refuses any transfer, whoever asks.
    let transfer = send(
        &c[3],
        id,
        &patient,
        PMR::transferFromCall {
            from: owners[0].address(),
            to: doctor.address(),
            tokenId: tokens[0],
        },
    )
    .await;
    assert!(!transfer.success, "a record token was transferred");
    assert_eq!(&transfer.output[..4], PMR::RecordNotTransferable::SELECTOR);
    hashes.push(transfer.hash);
    assert_eq!(
        view(&c[0], PMR::ownerOfCall { tokenId: tokens[0] }).await,
        owners[0].address()
    );

    // Every node: identical receipts (same bytes, same proof root) and identical state roots.
    let last = transfer.height;
    for i in 0..4 {
        net.wait_height(i, last).await;
    }
    for hash in &hashes {
        let reference = c[0].receipt(*hash).await.unwrap();
        for client in &c[1..] {
            let r = client.receipt(*hash).await.unwrap();
            assert_eq!(r.receipt, reference.receipt, "receipt of {hash}");
            assert_eq!(r.height, reference.height);
            assert_eq!(
                r.block.as_ref().unwrap().hash,
                reference.block.as_ref().unwrap().hash
            );
        }
    }
    for h in 1..=last {
        let roots: Vec<Vec<u8>> = futures::future::join_all(
            c.iter()
                .map(|cl| async move { cl.block(h).await.unwrap().header.unwrap().state_root }),
        )
        .await;
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "state roots differ at height {h}"
        );
    }
    // Historical state: at the height of the grant the doctor had access, now not.
    let grant_height = c[0].receipt(hashes[5]).await.unwrap().height;
    let then = c[0]
        .call(
            None,
            PMR_ADDRESS,
            PMR::hasAccessCall {
                tokenId: tokens[0],
                grantee: doctor.address(),
            }
            .abi_encode()
            .into(),
            Some(grant_height),
        )
        .await
        .unwrap();
    assert!(PMR::hasAccessCall::abi_decode_returns(&then.output).unwrap());
    let _ = Address::ZERO;
}
