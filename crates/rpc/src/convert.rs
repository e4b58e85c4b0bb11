//! Conversions between node types and protobuf messages.

use pmr_consensus::CommittedBlock;
use pmr_primitives::{Address, Header, MerkleProof, B256};
use pmr_proto::v1 as pb;
use tonic::Status;

pub(crate) fn header(h: &Header) -> pb::BlockHeader {
    pb::BlockHeader {
        height: h.height,
        parent_hash: h.parent_hash.to_vec(),
        timestamp_ms: h.timestamp_ms,
        proposer: h.proposer.0.to_vec(),
        tx_root: h.tx_root.to_vec(),
        state_root: h.state_root.to_vec(),
        receipts_root: h.receipts_root.to_vec(),
        gas_used: h.gas_used,
    }
}

pub(crate) fn block(b: &CommittedBlock) -> pb::BlockWithCertificate {
    let c = &b.certificate;
    pb::BlockWithCertificate {
        hash: b.hash.to_vec(),
        header: Some(header(&b.block.header)),
        transactions: b.block.txs.iter().map(|t| t.to_vec()).collect(),
        certificate: Some(pb::CommitCertificate {
            height: c.height.0,
            round: c.round.as_u32().unwrap_or(0),
            block_hash: c.value_id.0.to_vec(),
            signatures: c
                .commit_signatures
                .iter()
                .map(|s| pb::CommitSignature {
                    validator: s.address.as_bytes().to_vec(),
                    signature: s.signature.to_bytes().to_vec(),
                })
                .collect(),
        }),
        encoded: b.encoded.to_vec(),
    }
}

pub(crate) fn proof(p: &MerkleProof) -> pb::MerkleProof {
    pb::MerkleProof {
        index: p.index,
        count: p.count,
        siblings: p.siblings.iter().map(|s| s.to_vec()).collect(),
    }
}

pub(crate) fn b256(bytes: &[u8], what: &str) -> Result<B256, Status> {
    if bytes.len() != 32 {
        return Err(Status::invalid_argument(format!(
            "{what} must be 32 bytes, got {}",
            bytes.len()
        )));
    }
    Ok(B256::from_slice(bytes))
}

pub(crate) fn address(bytes: &[u8], what: &str) -> Result<Address, Status> {
    if bytes.len() != 20 {
        return Err(Status::invalid_argument(format!(
            "{what} must be a 20-byte address, got {} bytes",
            bytes.len()
        )));
    }
    Ok(Address::from_slice(bytes))
}
