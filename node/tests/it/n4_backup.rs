//! Online backup and restore (#24, day-2 operations): a node's operator backs up its database
//! while it runs and commits blocks; nobody else may; after the node's disk is lost, `pmr
//! restore` puts the backup in place, verifies its state against its header, and the node
//! rejoins and agrees with the others.

use crate::common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_and_the_node_rejoins() {
    let mut net = start_net(4, |_, _| {}).await;
    let hospital = net.account("hospital");
    let c0 = net.client(0).await;
    let (_, first) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 0)).await;
    net.wait_height(3, first).await;

    // Callers who may not: a permitted account that is not node 3's operator (a curious
    // hospital), another node's operator, and a stranger. Nothing is written for them.
    let backups = net.cluster.home(3).join("data/backups");
    for (who, account) in [
        ("the hospital", &hospital),
        ("node 0's operator", &net.operator(0)),
    ] {
        let err = net
            .client_as(3, account)
            .await
            .create_backup("stolen")
            .await
            .expect_err(who);
        assert!(
            matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::PermissionDenied),
            "{who}: {err}"
        );
    }
    // A stranger without a session is not let in at all.
    let anon = net.client_without_session(3).await;
    let err = anon.create_backup("stolen").await.expect_err("no session");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::Unauthenticated),
        "a stranger: {err}"
    );
    assert!(!backups.join("stolen").exists());

    // The operator, while the chain runs.
    let operator = net.client_as(3, &net.operator(3)).await;
    let err = operator
        .create_backup("../escape")
        .await
        .expect_err("bad name");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::InvalidArgument),
        "{err}"
    );
    let backup = operator.create_backup("b1").await.expect("backup");
    assert!(backup.height >= first, "{backup:?}");
    let err = operator.create_backup("b1").await.expect_err("twice");
    assert!(
        matches!(&err, pmr_client::ClientError::Rpc(s) if s.code() == Code::AlreadyExists),
        "{err}"
    );
    // The backup's root is the one the network signed at its height.
    let signed = c0
        .block(backup.height)
        .await
        .unwrap()
        .header
        .unwrap()
        .state_root;
    assert_eq!(backup.state_root, signed);

    // More blocks, then node 3's disk is lost; the backup was copied off the machine.
    let (_, later) = submit_and_wait(&c0, noop_tx(&hospital, net.chain_id, 1)).await;
    let offsite = net.dir.path().join("offsite-b1");
    std::fs::create_dir_all(&offsite).unwrap();
    for entry in std::fs::read_dir(&backup.path).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), offsite.join(entry.file_name())).unwrap();
    }
    net.cluster.kill(3).unwrap();
    std::fs::remove_dir_all(net.cluster.home(3).join("data")).unwrap();

    let home = net.cluster.home(3);
    let home = home.to_str().unwrap();
    let restore = |from: &std::path::Path| {
        run_pmr(
            &["restore", "--home", home, "--from", from.to_str().unwrap()],
            &[],
        )
    };
    // Not a backup: refused.
    assert!(!restore(net.dir.path()).0);
    let (restored, text) = restore(&offsite);
    assert!(restored, "{text}");
    assert!(
        text.contains("the stored state is the state the header commits to"),
        "{text}"
    );
    assert!(
        text.contains(&format!("height         {}", backup.height)),
        "{text}"
    );

    // It rejoins: past the block committed after the backup, with the others' roots.
    net.cluster.start(3).unwrap();
    let tip = net.height(0).await;
    net.wait_height(3, tip.max(later) + 1).await;
    let c3 = net.client(3).await;
    for h in [backup.height, later] {
        let mine = c3.block(h).await.unwrap().header.unwrap().state_root;
        let theirs = c0.block(h).await.unwrap().header.unwrap().state_root;
        assert_eq!(mine, theirs, "height {h}");
    }
}
