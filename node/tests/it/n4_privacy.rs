//! The privacy adversary on a 4-validator network: a reader with the whole chain and
//! authenticated reads, given three records one hospital minted (two of patient P, one of
//! patient Q), cannot tell which two share a patient. Every value the chain shows about each
//! record (each topic and data word of every log of its mint and grant, the transactions'
//! senders, and every contract view about it) is collected; no value is shared by P's two
//! records alone, and none of P's or Q's public registration (address, encryption key,
//! pseudonym commitment, meta-address keys) appears in any of them. P's viewing key finds
//! exactly P's two; Q's finds Q's one; each record's grant is signed by its one-time owner.

use std::collections::BTreeSet;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use pmr_client::{Identity, Network, PmrClient, PMR, PMR_ADDRESS};
use pmr_primitives::Genesis;

use crate::common::*;

/// The record type of all three records: distinctive enough that its four bytes appearing in
/// a record's data would not be chance.
const RECORD_TYPE: u32 = 0x5a17_c0de;

/// Every value a reader sees about one record: 32-byte words (and the whole byte strings they
/// came from, for the substring checks).
#[derive(Default)]
struct Seen {
    words: BTreeSet<Vec<u8>>,
    bytes: Vec<u8>,
}

impl Seen {
    /// Judges `data` word by word. Words below 2^40 (counts, token ids, the ephemeral key's
    /// parity bit, the one-byte view tag) are left out: two records agree on them by chance
    /// (the parity half the time, the view tag once in 256) whoever their patients are; every
    /// larger value (addresses, keys, digests, commitments, sealed shares) is judged.
    fn add(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        for w in data.chunks(32) {
            if w.len() < 32 || w[..27].iter().any(|b| *b != 0) {
                self.words.insert(w.to_vec());
            }
        }
    }

    /// Logs of a receipt and the sender of its transaction.
    async fn add_tx(&mut self, c: &PmrClient, tx: B256) {
        let r = c.receipt(tx).await.unwrap().receipt.expect("receipt");
        assert!(r.success);
        assert!(!r.logs.is_empty(), "no logs to judge");
        for log in &r.logs {
            self.add(&log.address);
            for t in &log.topics {
                self.add(t);
            }
            self.add(&log.data);
        }
        let t = c.transaction(tx).await.unwrap();
        let mut sender = [0u8; 32];
        sender[12..].copy_from_slice(&t.sender);
        self.add(&sender);
        self.add(&r.output);
    }

    async fn add_view<C: SolCall>(&mut self, c: &PmrClient, call: C) {
        let out = c
            .call(None, PMR_ADDRESS, call.abi_encode().into(), None)
            .await
            .unwrap();
        assert!(out.success, "view reverted");
        self.add(&out.output);
    }
}

/// A patient's public registration values as a reader finds them on-chain.
async fn public_values(c: &PmrClient, patient: &Identity) -> Vec<Vec<u8>> {
    let out = c
        .call(
            None,
            PMR_ADDRESS,
            PMR::encryptionKeyAttestationCall {
                account: patient.address(),
            }
            .abi_encode()
            .into(),
            None,
        )
        .await
        .unwrap();
    let a = PMR::encryptionKeyAttestationCall::abi_decode_returns(&out.output).unwrap();
    assert_eq!(
        a.stealthMetaAddress.len(),
        66,
        "registered with a meta-address"
    );
    vec![
        patient.address().to_vec(),
        a.encryptionKey.to_vec(),
        a.pseudonymCommitment.to_vec(),
        a.stealthMetaAddress[1..33].to_vec(),
        a.stealthMetaAddress[34..].to_vec(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n4_records_of_one_patient_cannot_be_linked_without_the_viewing_key() {
    let net = start_net(4, |_, _| {}).await;
    for i in 0..4 {
        net.wait_height(i, 2).await;
    }
    let id = net.chain_id;
    let genesis = Genesis::load(&net.dir.path().join("genesis.json")).unwrap();
    let base = net.cluster.connect_options().unwrap();
    let c = net.client(0).await;
    let hospital = net.account("hospital");
    let (p, q, doctor) = (
        Identity::generate(),
        Identity::generate(),
        Identity::generate(),
    );
    for (patient, tag) in [(&p, 1u8), (&q, 2)] {
        ok(
            &c,
            id,
            &hospital,
            pmr_contract::register_patient_call(
                patient.wallet(),
                id,
                B256::repeat_byte(tag),
                patient.encryption_key(),
            )
            .unwrap(),
        )
        .await;
    }
    net.add_grantee(&c, &doctor).await;

    // The hospital mints P's two records and Q's one, all of the same type.
    let urls = vec![net.cluster.rpc(0).to_string()];
    let as_hospital = Network::connect(
        &urls,
        &base.as_account(hospital.clone()),
        Some(genesis.clone()),
    )
    .await
    .unwrap();
    let mut minted = Vec::new();
    for (patient, body) in [(&p, &b"P first"[..]), (&q, b"Q only"), (&p, b"P second")] {
        minted.push(
            as_hospital
                .create_record(&hospital, patient.address(), RECORD_TYPE, body)
                .await
                .unwrap(),
        );
    }
    let (a1, b, a2) = (&minted[0], &minted[1], &minted[2]);

    // Each patient grants the doctor its records, signing as each record's one-time owner.
    let far = c.status().await.unwrap().latest_timestamp_ms / 1000 + 3600;
    let mut grants = Vec::new();
    for (patient, v) in [(&p, a1), (&q, b), (&p, a2)] {
        let as_patient = Network::connect(
            &urls,
            &base.as_account(patient.wallet().clone()),
            Some(genesis.clone()),
        )
        .await
        .unwrap();
        let done = as_patient
            .grant(patient, v.token_id, doctor.address(), far)
            .await
            .unwrap();
        let sender = c.transaction(done.tx).await.unwrap().sender;
        let owner: Address = view(
            &c,
            PMR::ownerOfCall {
                tokenId: v.token_id,
            },
        )
        .await;
        assert_eq!(sender, owner.to_vec(), "the grant is the one-time owner's");
        assert_ne!(owner, patient.address());
        grants.push(done.tx);
    }

    // Everything a reader can see about each record.
    let mut seen = Vec::new();
    for (v, grant) in [(a1, grants[0]), (b, grants[1]), (a2, grants[2])] {
        let mut s = Seen::default();
        s.add_tx(&c, v.tx).await;
        s.add_tx(&c, grant).await;
        let t = v.token_id;
        let owner: Address = view(&c, PMR::ownerOfCall { tokenId: t }).await;
        s.add_view(&c, PMR::ownerOfCall { tokenId: t }).await;
        s.add_view(&c, PMR::recordOfCall { tokenId: t }).await;
        s.add_view(
            &c,
            PMR::recordVersionCall {
                tokenId: t,
                index: U256::ZERO,
            },
        )
        .await;
        s.add_view(&c, PMR::tokenURICall { tokenId: t }).await;
        s.add_view(
            &c,
            PMR::announcementsCall {
                from: t,
                count: U256::from(1),
            },
        )
        .await;
        s.add_view(&c, PMR::balanceOfCall { owner }).await;
        s.add_view(
            &c,
            PMR::grantOfCall {
                tokenId: t,
                grantee: doctor.address(),
            },
        )
        .await;
        // The blobs any permitted reader may fetch: the ciphertext and the share envelope.
        for cid in [&v.root_cid, &v.envelope_cid] {
            let blob = c.get_blob_bytes(cid).await.unwrap();
            assert!(!blob.is_empty());
            s.add(&blob);
        }
        seen.push(s);
    }
    // Each record shows at least: its owner, ephemeral key, two CID digests, key commitment,
    // event signatures, the hospital, the grantee, the sealed share.
    let judged: Vec<usize> = seen.iter().map(|s| s.words.len()).collect();
    assert!(
        judged.iter().all(|n| *n >= 15),
        "too few values judged: {judged:?}"
    );

    // No value is shared by P's two records that Q's does not share too.
    let linking: Vec<String> = seen[0]
        .words
        .intersection(&seen[2].words)
        .filter(|w| !seen[1].words.contains(*w))
        .map(hex::encode)
        .collect();
    assert!(
        linking.is_empty(),
        "values only P's two records share: {linking:?}"
    );
    // The pair is not special the other way either: no value of Q's links it to one of P's.
    for (i, j) in [(0, 1), (2, 1)] {
        let only: Vec<_> = seen[i]
            .words
            .intersection(&seen[j].words)
            .filter(|w| !seen[2 - i].words.contains(*w))
            .collect();
        assert!(only.is_empty(), "records {i} and {j} share {only:?}");
    }

    // The sealed types (32 bits, left out of the words above) differ although the types are
    // the same: a fresh pad per record, not per patient.
    let mut sealed = Vec::new();
    for v in [a1, b, a2] {
        let a = view(
            &c,
            PMR::announcementsCall {
                from: v.token_id,
                count: U256::from(1),
            },
        )
        .await;
        sealed.push(a[0].to.sealedType);
    }
    assert!(
        sealed[0] != sealed[1] && sealed[0] != sealed[2] && sealed[1] != sealed[2],
        "sealed types {sealed:?}"
    );

    // Nothing public about either patient, and not the record type, appears in any record's
    // data, its envelope included.
    for (i, s) in seen.iter().enumerate() {
        let t = RECORD_TYPE.to_be_bytes();
        assert!(
            !s.bytes.windows(4).any(|w| w == t),
            "record {i} shows its type in clear"
        );
    }
    for patient in [&p, &q] {
        for value in public_values(&c, patient).await {
            for (i, s) in seen.iter().enumerate() {
                assert!(
                    !s.bytes.windows(value.len()).any(|w| w == value.as_slice()),
                    "record {i} shows {} of patient {}",
                    hex::encode(&value),
                    patient.address()
                );
            }
        }
    }

    // The positive control: each viewing key finds exactly its own, with the type.
    let as_p = Network::connect(
        &urls,
        &base.as_account(p.wallet().clone()),
        Some(genesis.clone()),
    )
    .await
    .unwrap();
    for (patient, want) in [(&p, vec![a1, a2]), (&q, vec![b])] {
        let keys = patient.stealth_keys().unwrap();
        let scanned = as_p.scan_records(keys.viewing_key(), 0).await.unwrap();
        assert!(scanned.judged >= 3, "judged {}", scanned.judged);
        let want: Vec<(U256, u32)> = want.iter().map(|v| (v.token_id, RECORD_TYPE)).collect();
        let found: Vec<(U256, u32)> = scanned
            .found
            .iter()
            .map(|r| (r.token_id, r.record_type))
            .collect();
        assert_eq!(found, want);
    }
}
