//! `pmr.v1.ShareService` over the node's [`Custody`]: who the custodians are, share releases to
//! grantees, and what this node holds.

use alloy_primitives::U256;
use pmr_custody::Custody;
use pmr_primitives::GenesisCustodian;
use pmr_proto::v1 as pb;
use pmr_proto::v1::share_service_server::ShareService;
use pmr_shares::default_threshold;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::status::custody_status;

/// The gRPC `ShareService` backed by the node's custody.
#[derive(Clone)]
pub struct ShareApi {
    custody: Custody,
}

impl ShareApi {
    /// Serves `custody`.
    pub fn new(custody: Custody) -> Self {
        Self { custody }
    }
}

fn custodian_pb(c: &GenesisCustodian) -> pb::Custodian {
    pb::Custodian {
        index: c.index as u32,
        address: c.address.to_vec(),
        custody_key: c.custody_key.to_vec(),
        name: c.name.clone(),
    }
}

#[tonic::async_trait]
impl ShareService for ShareApi {
    async fn get_custodians(
        &self,
        _request: Request<pb::GetCustodiansRequest>,
    ) -> Result<Response<pb::GetCustodiansResponse>, Status> {
        let all = self
            .custody
            .custodians()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::GetCustodiansResponse {
            chain_id: self.custody.chain_id(),
            custodians: all.iter().map(custodian_pb).collect(),
            this_node: self.custody.this_node().as_ref().map(custodian_pb),
            default_threshold: default_threshold(all.len()) as u32,
        }))
    }

    async fn release_share(
        &self,
        request: Request<pb::ReleaseShareRequest>,
    ) -> Result<Response<pb::ReleaseShareResponse>, Status> {
        let req = request.into_inner();
        match self.custody.release(&req.challenge, &req.signature).await {
            Ok(r) => Ok(Response::new(pb::ReleaseShareResponse {
                sealed_share: r.sealed_share.to_vec(),
                custodian_index: r.custodian_index as u32,
                version: r.version,
                key_commitment: r.key_commitment.to_vec(),
                release_tx_hash: r.tx.to_vec(),
                release_height: r.height,
            })),
            Err(e) => {
                let s = custody_status(e);
                info!(target: "pmr::custody", code = ?s.code(), message = s.message(), "share release refused");
                Err(s)
            }
        }
    }

    async fn get_custody_status(
        &self,
        request: Request<pb::GetCustodyStatusRequest>,
    ) -> Result<Response<pb::GetCustodyStatusResponse>, Status> {
        let id = request.into_inner().token_id;
        if id.len() > 32 {
            return Err(Status::invalid_argument(format!(
                "token_id is {} bytes; at most 32 (big-endian)",
                id.len()
            )));
        }
        let token = U256::from_be_slice(&id);
        let versions = self
            .custody
            .records(token)
            .map_err(custody_status)?
            .into_iter()
            .map(|r| pb::CustodyEntry {
                version: r.version,
                envelope_cid: r.envelope_cid,
                status: r.status.as_str().into(),
                reason: r.reason,
                custodian_index: r.index as u32,
                threshold: r.threshold as u32,
            })
            .collect();
        Ok(Response::new(pb::GetCustodyStatusResponse {
            versions,
            releases: self.custody.releases(token).map_err(custody_status)?,
        }))
    }
}
