//! Essential secret sharing on a 4-validator testnet (4 custodians): a hospital splits a record
//! key 3-of-4 plus the patient's essential share and mints the record to a one-time owner of
//! the patient; every custodian takes custody; the patient grants a doctor (signing as the
//! one-time owner); the doctor collects 3 shares over gRPC and reconstructs the key that
//! decrypts the record; every release is on-chain; after the revoke the custodians refuse. Bad
//! requests get precise statuses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_sol_types::SolEvent;
use pmr_blob::{decrypt_to_vec, encrypt_to_vec, parse_cid, DataKey};
use pmr_client::{Wallet, PMR};
use pmr_proto::v1 as pb;
use pmr_proto::v1::share_service_client::ShareServiceClient;
use pmr_shares::{
    open_granted_patient_share, open_patient_share, open_sealed_share, reconstruct_record_key,
    seal_patient_share_to, split_record_key, CustodianInfo, CustodianShare, GrantContext,
    RecordKey, ReleaseChallenge, SealedShare, ShareEnvelope, X25519PublicKey, X25519Secret,
};
use rand::rngs::OsRng;
use tonic::Code;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Custodian {
    index: u16,
    address: Address,
    public_key: X25519PublicKey,
}

/// Signs a release challenge from `who` (a grantee) for `token`, addressed to `custodian`.
fn challenge(
    chain_id: u64,
    custodian: Address,
    token: U256,
    who: &Wallet,
    issued_at_ms: u64,
) -> pb::ReleaseShareRequest {
    challenge_to(chain_id, custodian, token, who, issued_at_ms, B256::ZERO)
}

/// [`challenge`] asking for the share sealed to `reply_key` (what a one-time owner sends: it
/// has no key on-chain).
fn challenge_to(
    chain_id: u64,
    custodian: Address,
    token: U256,
    who: &Wallet,
    issued_at_ms: u64,
    reply_key: B256,
) -> pb::ReleaseShareRequest {
    let ch = ReleaseChallenge::new(
        chain_id,
        custodian,
        token,
        who.address(),
        issued_at_ms,
        &mut OsRng,
    )
    .with_reply_key(reply_key);
    pb::ReleaseShareRequest {
        challenge: ch.to_bytes().to_vec(),
        signature: who
            .sign_message(ch.signing_hash().as_slice())
            .expect("sign")
            .to_vec(),
    }
}

/// Sends a release request and returns the refusal, failing if it was granted.
async fn refused(
    s: &mut ShareServiceClient<pmr_client::NodeChannel>,
    req: pb::ReleaseShareRequest,
    code: Code,
    says: &str,
) {
    match s.release_share(req).await {
        Ok(_) => panic!("release granted; expected {code:?} ({says})"),
        Err(st) => {
            assert_eq!(st.code(), code, "{}", st.message());
            assert!(
                st.message().contains(says),
                "`{}` does not say `{says}`",
                st.message()
            );
        }
    }
}

/// Waits until node `i` holds a verified share of `token` version `version`.
async fn wait_held(
    s: &mut ShareServiceClient<pmr_client::NodeChannel>,
    i: usize,
    token: U256,
    version: u32,
) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let st = s
            .get_custody_status(pb::GetCustodyStatusRequest {
                token_id: token.to_be_bytes::<32>().to_vec(),
            })
            .await
            .expect("custody status")
            .into_inner();
        if let Some(e) = st.versions.iter().find(|e| e.version == version) {
            assert_eq!(e.status, "held", "node{i}: {}", e.reason);
            assert_eq!(e.custodian_index, i as u32 + 1);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node{i} did not take custody of token {token} version {version} within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Collects shares from the custodians `from` for `who` and opens them.
#[allow(clippy::too_many_arguments)]
async fn collect(
    shares: &mut [ShareServiceClient<pmr_client::NodeChannel>],
    custodians: &[Custodian],
    from: &[usize],
    chain_id: u64,
    token: U256,
    who: &Wallet,
    secret: &X25519Secret,
    context: &GrantContext,
    reply_key: B256,
) -> (Vec<CustodianShare>, Vec<B256>) {
    let mut out = Vec::new();
    let mut txs = Vec::new();
    for &i in from {
        let req = challenge_to(
            chain_id,
            custodians[i].address,
            token,
            who,
            now_ms(),
            reply_key,
        );
        let resp = shares[i]
            .release_share(req)
            .await
            .unwrap_or_else(|e| panic!("release from node{i}: {}", e.message()))
            .into_inner();
        assert_eq!(resp.custodian_index, custodians[i].index as u32);
        assert_eq!(resp.key_commitment, context.key_commitment.to_bytes());
        let sealed = SealedShare::from_bytes(&resp.sealed_share).expect("80 bytes");
        out.push(
            open_sealed_share(&sealed, custodians[i].index, secret, context)
                .expect("opens for the grantee"),
        );
        txs.push(B256::from_slice(&resp.release_tx_hash));
    }
    (out, txs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_grant_release_reconstruct_revoke() {
    let net = start_net(4, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let id = net.chain_id;
    let admin = net.account("admin");
    let hospital = net.account("hospital");
    let patient = Wallet::random();
    let doctor = Wallet::random();
    let stranger = Wallet::random();
    let patient_x = X25519Secret::random_from_rng(OsRng);
    let doctor_x = X25519Secret::random_from_rng(OsRng);
    let stranger_x = X25519Secret::random_from_rng(OsRng);
    let mut c = Vec::new();
    let mut shares = Vec::new();
    for i in 0..4 {
        // As the hospital: it uploads; releases need no session (the challenge is signed).
        let client = net.client_as(i, &hospital).await;
        shares.push(ShareServiceClient::new(client.channel()));
        c.push(client);
    }

    // The custodians, as every node reports them; node i is custodian i + 1.
    let listed = shares[0]
        .get_custodians(pb::GetCustodiansRequest {})
        .await
        .expect("custodians")
        .into_inner();
    assert_eq!((listed.chain_id, listed.custodians.len()), (id, 4));
    assert_eq!(listed.default_threshold, 2);
    let custodians: Vec<Custodian> = listed
        .custodians
        .iter()
        .map(|c| Custodian {
            index: c.index as u16,
            address: Address::from_slice(&c.address),
            public_key: X25519PublicKey::from(<[u8; 32]>::try_from(&c.custody_key[..]).unwrap()),
        })
        .collect();
    for (i, s) in shares.iter_mut().enumerate() {
        let me = s
            .get_custodians(pb::GetCustodiansRequest {})
            .await
            .unwrap()
            .into_inner()
            .this_node
            .expect("every validator is a custodian");
        assert_eq!(me.index, i as u32 + 1);
    }

    // Accounts: a registered patient, a doctor and a stranger with encryption keys.
    ok(
        &c[0],
        id,
        &hospital,
        pmr_contract::register_patient_call(
            &patient,
            id,
            B256::repeat_byte(0x11),
            B256::from(X25519PublicKey::from(&patient_x).to_bytes()),
        )
        .unwrap(),
    )
    .await;
    for (w, x) in [(&doctor, &doctor_x), (&stranger, &stranger_x)] {
        let permitted = ok(
            &c[1],
            id,
            &admin,
            PMR::setPermittedCall {
                account: w.address(),
                permitted: true,
            },
        )
        .await;
        // Node 2 admits the account's own transaction only once it has that block too.
        net.wait_height(2, permitted.height).await;
        ok(
            &c[2],
            id,
            w,
            pmr_contract::set_encryption_key_call(
                w,
                id,
                B256::from(X25519PublicKey::from(x).to_bytes()),
            )
            .unwrap(),
        )
        .await;
    }

    // The hospital encrypts a record, splits its key 3-of-4 and mints it.
    let key = RecordKey::generate(&mut OsRng);
    let plaintext: Vec<u8> = b"PMR-SHARES-MARKER discharge summary "
        .iter()
        .copied()
        .cycle()
        .take(300 * 1024)
        .collect();
    let ciphertext = encrypt_to_vec(&DataKey::from_bytes(*key.dek()), &plaintext);
    let root = c[0].put_blob_bytes(ciphertext).await.expect("put record");
    let infos: Vec<CustodianInfo> = custodians
        .iter()
        .map(|c| CustodianInfo {
            index: c.index,
            address: c.address,
            public_key: c.public_key,
        })
        .collect();
    let envelope = split_record_key(
        &key,
        3,
        &infos,
        &X25519PublicKey::from(&patient_x),
        &mut OsRng,
    )
    .expect("split");
    let env_put = c[0]
        .put_blob_bytes(envelope.encode())
        .await
        .expect("put envelope");
    let one_time = pmr_contract::stealth::mint_to_account(&patient, 11).unwrap();
    let minted = ok(
        &c[0],
        id,
        &hospital,
        PMR::mintRecordCall {
            to: one_time.clone(),
            root: PMR::Cid::from_cid_bytes(&parse_cid(&root.root_cid).unwrap().to_bytes()).unwrap(),
            envelope: PMR::Cid::from_cid_bytes(&parse_cid(&env_put.root_cid).unwrap().to_bytes())
                .unwrap(),
            keyCommitment: B256::from(key.commitment().to_bytes()),
        },
    )
    .await;
    let token = U256::from_be_slice(&minted.output);
    // The record's owner is a one-time address only the patient's keys derive: it signs the
    // grants, revocations and the owner's releases.
    let owner = pmr_contract::stealth::one_time_wallet(&patient, &one_time).unwrap();
    let holder = view(&c[0], PMR::ownerOfCall { tokenId: token }).await;
    assert_eq!(holder, owner.address());
    assert_ne!(holder, patient.address());
    assert_eq!(scan_token(&c[0], &patient, token).await, Some(11));

    // Every custodian fetched the envelope, opened and verified its share.
    for (i, s) in shares.iter_mut().enumerate() {
        wait_held(s, i, token, 0).await;
    }

    // The patient grants the doctor: opens the essential share, re-seals it to the doctor.
    let env = ShareEnvelope::decode(
        &c[3]
            .get_blob_bytes(&env_put.root_cid)
            .await
            .expect("envelope"),
    )
    .expect("decodes");
    let doctor_ctx = GrantContext {
        chain_id: id,
        token_id: token,
        grantee: doctor.address(),
        key_commitment: env.key_commitment(),
    };
    let essential = open_patient_share(&env, &patient_x).expect("patient opens");
    let sealed = seal_patient_share_to(
        &essential,
        &X25519PublicKey::from(&doctor_x),
        &doctor_ctx,
        &mut OsRng,
    )
    .unwrap();
    let expiry = now_ms() / 1000 + 3600;
    ok(
        &c[1],
        id,
        &owner,
        PMR::grantAccessCall {
            tokenId: token,
            grantee: doctor.address(),
            expiry,
            sealedPatientShare: Bytes::from(sealed.to_bytes().to_vec()),
        },
    )
    .await;
    let granted_at = c[1].status().await.unwrap().height;
    for i in 0..4 {
        net.wait_height(i, granted_at).await;
    }

    // Every way to ask wrongly is refused, precisely.
    let to0 = custodians[0].address;
    refused(
        &mut shares[0],
        challenge(id, to0, token, &stranger, now_ms()),
        Code::PermissionDenied,
        "no grant",
    )
    .await;
    refused(
        &mut shares[0],
        challenge(id, to0, U256::from(999), &doctor, now_ms()),
        Code::NotFound,
        "unknown token",
    )
    .await;
    refused(
        &mut shares[0],
        challenge(id, custodians[1].address, token, &doctor, now_ms()),
        Code::FailedPrecondition,
        "wrong custodian",
    )
    .await;
    refused(
        &mut shares[0],
        challenge(id + 1, to0, token, &doctor, now_ms()),
        Code::FailedPrecondition,
        "chain",
    )
    .await;
    refused(
        &mut shares[0],
        challenge(id, to0, token, &doctor, now_ms() - 600_000),
        Code::FailedPrecondition,
        "old",
    )
    .await;
    let mut forged = challenge(id, to0, token, &doctor, now_ms());
    forged.signature = challenge(id, to0, token, &stranger, now_ms()).signature;
    refused(
        &mut shares[0],
        forged,
        Code::Unauthenticated,
        "not by the grantee",
    )
    .await;
    refused(
        &mut shares[0],
        pb::ReleaseShareRequest {
            challenge: vec![1, 2, 3],
            signature: vec![0; 65],
        },
        Code::InvalidArgument,
        "challenge",
    )
    .await;

    // The doctor collects 3 shares (nodes 1, 2, 3) and reconstructs the record key.
    let (got, txs) = collect(
        &mut shares,
        &custodians,
        &[1, 2, 3],
        id,
        token,
        &doctor,
        &doctor_x,
        &doctor_ctx,
        B256::ZERO,
    )
    .await;
    let grant = view(
        &c[0],
        PMR::grantOfCall {
            tokenId: token,
            grantee: doctor.address(),
        },
    )
    .await;
    let granted_share = open_granted_patient_share(
        &SealedShare::from_bytes(&grant.sealedShare).unwrap(),
        &doctor_x,
        &doctor_ctx,
    )
    .expect("the doctor opens the granted essential share");
    let rebuilt = reconstruct_record_key(&env, &granted_share, &got).expect("reconstructs");
    assert_eq!(*rebuilt.to_bytes(), *key.to_bytes());
    assert!(
        reconstruct_record_key(&env, &granted_share, &got[..2]).is_err(),
        "t - 1 shares must not reconstruct"
    );
    let fetched = c[2].get_blob_bytes(&root.root_cid).await.expect("record");
    assert_eq!(
        decrypt_to_vec(&DataKey::from_bytes(*rebuilt.dek()), &fetched).expect("decrypts"),
        plaintext
    );

    // A challenge is good once.
    let req = challenge(id, custodians[1].address, token, &doctor, now_ms());
    shares[1]
        .release_share(req.clone())
        .await
        .expect("first use");
    refused(&mut shares[1], req, Code::AlreadyExists, "replay").await;

    // Every release is on-chain, logged by the custodian that released.
    for (k, tx) in txs.iter().enumerate() {
        let r = c[0]
            .receipt(*tx)
            .await
            .expect("receipt")
            .receipt
            .expect("body");
        assert!(r.success);
        let log = r
            .logs
            .iter()
            .find(|l| {
                l.topics.first().map(|t| &t[..]) == Some(&PMR::ShareReleased::SIGNATURE_HASH[..])
            })
            .expect("a ShareReleased log");
        let topics: Vec<B256> = log.topics.iter().map(|t| B256::from_slice(t)).collect();
        let ev = PMR::ShareReleased::decode_raw_log(topics, &log.data).unwrap();
        assert_eq!(
            (ev.tokenId, ev.grantee, ev.custodian, ev.version),
            (token, doctor.address(), custodians[k + 1].address, 0)
        );
    }
    let released = shares[1]
        .get_custody_status(pb::GetCustodyStatusRequest {
            token_id: token.to_be_bytes::<32>().to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .releases;
    assert_eq!(released, 2);

    // A new version (fresh key) does not widen the doctor's grant: custodians still release
    // version 0 to the doctor, and the latest version to the owner (the one-time address; the
    // patient's own account is not the owner).
    let key_v1 = RecordKey::generate(&mut OsRng);
    let env_v1 = split_record_key(
        &key_v1,
        3,
        &infos,
        &X25519PublicKey::from(&patient_x),
        &mut OsRng,
    )
    .unwrap();
    let env_v1_put = c[0].put_blob_bytes(env_v1.encode()).await.unwrap();
    let appended = ok(
        &c[0],
        id,
        &hospital,
        PMR::appendVersionCall {
            tokenId: token,
            root: PMR::Cid::from_cid_bytes(&parse_cid(&root.root_cid).unwrap().to_bytes()).unwrap(),
            envelope: PMR::Cid::from_cid_bytes(
                &parse_cid(&env_v1_put.root_cid).unwrap().to_bytes(),
            )
            .unwrap(),
            keyCommitment: B256::from(key_v1.commitment().to_bytes()),
        },
    )
    .await;
    for i in 0..4 {
        net.wait_height(i, appended.height).await;
    }
    wait_held(&mut shares[2], 2, token, 1).await;
    let to2 = custodians[2].address;
    let for_doctor = shares[2]
        .release_share(challenge(id, to2, token, &doctor, now_ms()))
        .await
        .expect("doctor release after the update")
        .into_inner();
    assert_eq!(for_doctor.version, 0);
    assert_eq!(for_doctor.key_commitment, key.commitment().to_bytes());
    // The one-time owner must name the key to seal to; a grantee may not.
    refused(
        &mut shares[2],
        challenge(id, to2, token, &owner, now_ms()),
        Code::InvalidArgument,
        "reply key",
    )
    .await;
    refused(
        &mut shares[2],
        challenge_to(id, to2, token, &doctor, now_ms(), B256::repeat_byte(5)),
        Code::InvalidArgument,
        "reply key",
    )
    .await;
    let patient_key = B256::from(X25519PublicKey::from(&patient_x).to_bytes());
    let for_owner = shares[2]
        .release_share(challenge_to(id, to2, token, &owner, now_ms(), patient_key))
        .await
        .expect("owner release")
        .into_inner();
    assert_eq!(for_owner.version, 1);
    assert_eq!(for_owner.key_commitment, key_v1.commitment().to_bytes());
    refused(
        &mut shares[2],
        challenge(id, to2, token, &patient, now_ms()),
        Code::PermissionDenied,
        "no grant",
    )
    .await;

    // Node 3 loses its CUSTODIAN role: it reads that from the chain and releases nothing
    // more (were it to try, its release log would revert: the contract is the last gate).
    let role = view(&c[0], PMR::CUSTODIAN_ROLECall {}).await;
    ok(
        &c[1],
        id,
        &admin,
        PMR::revokeRoleCall {
            role,
            account: custodians[3].address,
        },
    )
    .await;
    let role_revoked_at = c[1].status().await.unwrap().height;
    net.wait_height(3, role_revoked_at).await;
    refused(
        &mut shares[3],
        challenge(id, custodians[3].address, token, &doctor, now_ms()),
        Code::FailedPrecondition,
        "not a share custodian of the chain",
    )
    .await;

    // Revoked: every custodian refuses (node 3 is none any more).
    ok(
        &c[3],
        id,
        &owner,
        PMR::revokeAccessCall {
            tokenId: token,
            grantee: doctor.address(),
        },
    )
    .await;
    let revoked_at = c[3].status().await.unwrap().height;
    for i in 0..3 {
        net.wait_height(i, revoked_at).await;
        let to = custodians[i].address;
        refused(
            &mut shares[i],
            challenge(id, to, token, &doctor, now_ms()),
            Code::PermissionDenied,
            "revoked",
        )
        .await;
    }

    // An expired grant is refused.
    let soon = c[0].status().await.unwrap().latest_timestamp_ms / 1000 + 6;
    let stranger_ctx = GrantContext {
        grantee: stranger.address(),
        ..doctor_ctx
    };
    let sealed = seal_patient_share_to(
        &essential,
        &X25519PublicKey::from(&stranger_x),
        &stranger_ctx,
        &mut OsRng,
    )
    .unwrap();
    ok(
        &c[0],
        id,
        &owner,
        PMR::grantAccessCall {
            tokenId: token,
            grantee: stranger.address(),
            expiry: soon,
            sealedPatientShare: Bytes::from(sealed.to_bytes().to_vec()),
        },
    )
    .await;
    while now_ms() / 1000 <= soon {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    refused(
        &mut shares[2],
        challenge(id, custodians[2].address, token, &stranger, now_ms()),
        Code::PermissionDenied,
        "expired",
    )
    .await;

    // A second record split 2-of-4 on the client (as `pmr record create` does): the owner
    // opens it with two custodians' shares and the essential share.
    let key2 = RecordKey::generate(&mut OsRng);
    let env2 = split_record_key(
        &key2,
        2,
        &infos,
        &X25519PublicKey::from(&patient_x),
        &mut OsRng,
    )
    .expect("split");
    let env2_put = c[0]
        .put_blob_bytes(env2.encode())
        .await
        .expect("put envelope");
    let one_time2 = pmr_contract::stealth::mint_to_account(&patient, 12).unwrap();
    let minted = ok(
        &c[0],
        id,
        &hospital,
        PMR::mintRecordCall {
            to: one_time2.clone(),
            root: PMR::Cid::from_cid_bytes(&parse_cid(&root.root_cid).unwrap().to_bytes()).unwrap(),
            envelope: PMR::Cid::from_cid_bytes(&parse_cid(&env2_put.root_cid).unwrap().to_bytes())
                .unwrap(),
            keyCommitment: B256::from(key2.commitment().to_bytes()),
        },
    )
    .await;
    let token2 = U256::from_be_slice(&minted.output);
    // Another record, another one-time owner.
    let owner2 = pmr_contract::stealth::one_time_wallet(&patient, &one_time2).unwrap();
    assert_ne!(owner2.address(), owner.address());
    assert_eq!(
        view(&c[0], PMR::ownerOfCall { tokenId: token2 }).await,
        owner2.address()
    );
    // The owner reads their own record: two custodians (nodes 1, 2) and the essential share.
    for i in [1, 2] {
        wait_held(&mut shares[i], i, token2, 0).await;
    }
    let owner_ctx = GrantContext {
        chain_id: id,
        token_id: token2,
        grantee: owner2.address(),
        key_commitment: env2.key_commitment(),
    };
    let (got2, _) = collect(
        &mut shares,
        &custodians,
        &[1, 2],
        id,
        token2,
        &owner2,
        &patient_x,
        &owner_ctx,
        B256::from(X25519PublicKey::from(&patient_x).to_bytes()),
    )
    .await;
    let own = open_patient_share(&env2, &patient_x).unwrap();
    let rebuilt2 = reconstruct_record_key(&env2, &own, &got2).expect("reconstructs");
    assert_eq!(*rebuilt2.to_bytes(), *key2.to_bytes());

    // Node 1's metrics count its releases (2 for the doctor, 1 for the owner), its peers and
    // the bitswap bytes it fetched (envelopes and records from node 0).
    let url = net.cluster.manifest().nodes[1].metrics.clone();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let m = scrape(&url);
        let (releases, peers, fetched) = (
            metric(&m, "pmr_share_releases_total"),
            metric(&m, "pmr_peers"),
            metric(&m, "pmr_bitswap_bytes_received_total"),
        );
        if releases == 3.0 && peers == 3.0 && fetched > 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node1 metrics: releases {releases}, peers {peers}, bitswap bytes received {fetched}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
