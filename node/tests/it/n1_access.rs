//! The trust boundary of one node: TLS with a pinned CA, sessions, and a role per method.
//! A stranger's calls get `UNAUTHENTICATED`, an account without the role `PERMISSION_DENIED`,
//! and neither changes anything; plaintext and a certificate of another CA are refused.

use pmr_client::proto;
use pmr_client::{ConnectOptions, PmrClient, Wallet, PMR};
use tonic::Code;

use crate::common::*;

/// A client of node 0 with `opts`, once the node answers.
async fn connect(net: &Net, opts: &ConnectOptions) -> PmrClient {
    net.client(0).await;
    PmrClient::connect(net.cluster.rpc(0), opts)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_callers_without_a_session_or_a_role_are_refused_and_change_nothing() {
    let net = start_net(1, |_, _| {}).await;
    net.wait_height(0, 2).await;
    let id = net.chain_id;
    let base = net.cluster.connect_options().expect("options");
    let admin = net.client(0).await;
    let hospital = net.account("hospital");

    // Without a session: a minimal status, the custodians, and nothing else.
    let anon = connect(
        &net,
        &ConnectOptions {
            account: None,
            ..base.clone()
        },
    )
    .await;
    let s = anon.status().await.expect("status is open");
    assert_eq!(s.chain_id, id);
    assert!(s.height >= 2);
    assert!(s.validators.is_empty() && s.peers.is_empty(), "{s:?}");
    assert!(s.validator_address.is_empty());
    let full = admin.status().await.expect("status");
    assert_eq!((full.validators.len(), full.peers.len()), (1, 0));
    let custodians = proto::share_service_client::ShareServiceClient::new(anon.channel())
        .get_custodians(proto::GetCustodiansRequest {})
        .await
        .expect("custodians are open")
        .into_inner();
    assert_eq!(custodians.custodians.len(), 1);
    let tx = noop_tx(&hospital, id, 0);
    let refused = [
        anon.block(1).await.expect_err("block"),
        anon.submit(tx.clone()).await.expect_err("submit"),
        anon.put_blob_bytes(b"x".to_vec()).await.expect_err("put"),
        anon.nonce(hospital.address()).await.expect_err("account"),
    ];
    for e in &refused {
        assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
        assert!(e.to_string().contains("needs a session"), "{e}");
    }

    // An account not on the permission list cannot even log in.
    let stranger = Wallet::random();
    let s = connect(&net, &base.as_account(stranger.clone())).await;
    let e = s.block(1).await.expect_err("stranger");
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(
        e.to_string()
            .contains("not on the network's permission list"),
        "{e}"
    );

    // A permitted account reads the chain but may not upload, pin or unpin.
    let reader = Wallet::random();
    ok(
        &admin,
        id,
        &net.account("admin"),
        PMR::setPermittedCall {
            account: reader.address(),
            permitted: true,
        },
    )
    .await;
    let r = connect(&net, &base.as_account(reader.clone())).await;
    r.block(1).await.expect("a permitted account reads blocks");
    let e = r.put_blob_bytes(b"x".to_vec()).await.expect_err("upload");
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("only hospitals may upload"), "{e}");

    // A hospital uploads, but only the node's operator pins.
    let h = connect(&net, &base.as_account(hospital.clone())).await;
    let put = h
        .put_blob_bytes(b"ciphertext".to_vec())
        .await
        .expect("hospital uploads");
    let e = h.pin(&put.root_cid).await.expect_err("pin by a hospital");
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("operators"), "{e}");
    let op = connect(&net, &base.as_account(net.operator(0))).await;
    assert!(op.pin(&put.root_cid).await.expect("operator pins").pinned);

    // A forged or foreign token is refused like none at all.
    let mut forged = proto::ledger_service_client::LedgerServiceClient::with_interceptor(
        anon.channel(),
        |mut req: tonic::Request<()>| {
            let bogus = format!("Bearer v1.{}.99999999999999.00", "ab".repeat(20));
            req.metadata_mut()
                .insert("authorization", bogus.parse().unwrap());
            Ok(req)
        },
    );
    let e = forged
        .get_block(proto::GetBlockRequest {
            selector: Some(proto::get_block_request::Selector::Height(1)),
        })
        .await
        .expect_err("forged token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("not valid at this node"), "{e:?}");

    // Nothing the refused calls carried reached the chain.
    net.wait_height(0, full.height + 2).await;
    let e = admin
        .transaction(alloy_primitives::keccak256(&tx))
        .await
        .expect_err("tx");
    assert_eq!(e.code(), Some(Code::NotFound), "{e}");
    assert_eq!(admin.nonce(hospital.address()).await.unwrap(), 0);

    // Plaintext to a TLS port, and a certificate chained to another CA, do not connect.
    let plain = PmrClient::connect(
        net.cluster.rpc(0).replace("https://", "http://"),
        &ConnectOptions {
            insecure: true,
            ..base.clone()
        },
    )
    .await;
    if let Ok(c) = plain {
        c.status()
            .await
            .expect_err("plaintext answered by a TLS port");
    }
    let refused_plain =
        PmrClient::connect(net.cluster.rpc(0).replace("https://", "http://"), &base)
            .await
            .expect_err("http:// without --insecure");
    assert!(
        refused_plain.to_string().contains("plaintext"),
        "{refused_plain}"
    );
    let other_ca = tempfile::tempdir().unwrap();
    pmr_node::tls::new_ca(
        &other_ca.path().join("ca.pem"),
        &other_ca.path().join("ca.key"),
    )
    .unwrap();
    let wrong = ConnectOptions {
        ca_pem: Some(std::fs::read(other_ca.path().join("ca.pem")).unwrap()),
        ..base.clone()
    };
    match PmrClient::connect(net.cluster.rpc(0), &wrong).await {
        Err(e) => assert!(
            format!("{e:?}").to_lowercase().contains("certificate"),
            "{e:?}"
        ),
        Ok(c) => {
            let e = c.status().await.expect_err("a node of another CA answered");
            assert!(
                format!("{e:?}").to_lowercase().contains("certificate"),
                "{e:?}"
            );
        }
    }
}
