//! `pmr bench records`: the end-to-end latency of a record's life on a running network, as a
//! hospital and the patient see it.

use std::time::{Duration, Instant};

use pmr_client::{ConnectOptions, Identity, Network, PmrClient, Wallet, B256};
use pmr_primitives::Genesis;
use rand::RngCore;
use serde::Serialize;

use crate::{HarnessError, Latency};

/// What `pmr bench records` measured.
#[derive(Serialize)]
pub struct RecordBench {
    /// Records created and opened.
    pub records: usize,
    /// Bytes per record.
    pub size: usize,
    /// Nodes that had to hold each record.
    pub nodes: usize,
    /// Encrypt + upload + split + upload envelope + mint finalized + root and envelope held by
    /// every node.
    pub create_ms: Latency,
    /// Collect shares + reconstruct + fetch + decrypt (the owner opening the record).
    pub open_ms: Latency,
}

/// `pmr bench records`: end-to-end record create and open latency on a running network.
pub async fn bench_records(
    rpc: &[String],
    count: usize,
    size: usize,
    hospital: &Wallet,
    connect: &ConnectOptions,
    genesis: Genesis,
) -> Result<RecordBench, HarnessError> {
    let bench = |e: &dyn std::fmt::Display| HarnessError::Bench(e.to_string());
    let connect = connect.as_account(hospital.clone());
    let network = Network::connect(rpc, &connect, Some(genesis))
        .await
        .map_err(|e| bench(&e))?;
    let mut nodes = Vec::new();
    for url in rpc {
        nodes.push(
            PmrClient::connect(url.clone(), &connect)
                .await
                .map_err(|e| bench(&e))?,
        );
    }
    let patient = Identity::generate();
    let mut commitment = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut commitment);
    let registration = pmr_contract::register_patient_call(
        patient.wallet(),
        network.chain_id(),
        B256::from(commitment),
        patient.encryption_key(),
    )
    .map_err(|e| bench(&e))?;
    network
        .send(hospital, registration)
        .await
        .map_err(|e| bench(&e))?;
    let (mut create, mut open) = (Vec::new(), Vec::new());
    for i in 0..count {
        let mut data = vec![0u8; size];
        rand::rngs::OsRng.fill_bytes(&mut data);
        let t0 = Instant::now();
        let v = network
            .create_record(hospital, patient.address(), 1, &data)
            .await
            .map_err(|e| bench(&e))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for (n, c) in nodes.iter().enumerate() {
            for cid in [&v.root_cid, &v.envelope_cid] {
                loop {
                    if c.blob_stat(cid).await.map(|s| s.local).unwrap_or(false) {
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(bench(&format!(
                            "node {n} did not replicate {cid} within 60 s"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        create.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t1 = Instant::now();
        let opened = network
            .open_record(&patient, v.token_id)
            .await
            .map_err(|e| bench(&e))?;
        open.push(t1.elapsed().as_secs_f64() * 1000.0);
        if opened.plaintext != data {
            return Err(bench(&format!(
                "record {} opened to different bytes",
                v.token_id
            )));
        }
        eprintln!(
            "record {}/{count}: create {:.0} ms, open {:.0} ms",
            i + 1,
            create[i],
            open[i]
        );
    }
    Ok(RecordBench {
        records: count,
        size,
        nodes: nodes.len(),
        create_ms: Latency::from_ms(create),
        open_ms: Latency::from_ms(open),
    })
}
