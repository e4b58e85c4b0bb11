//! The gRPC client.

use std::time::Duration;

use alloy_primitives::{Address, Bytes, B256};
use futures::StreamExt;
use pmr_proto::v1 as pb;
use pmr_proto::v1::ledger_service_client::LedgerServiceClient;

use crate::session::{ConnectOptions, NodeChannel, CONNECT_TIMEOUT};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::Code;

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node at `url` could not be reached (bad URL, refused, or no answer within 5 s).
    #[error("cannot connect to {url}: {reason} (is the node running? check --rpc)")]
    Connect {
        /// The URL dialled, with its scheme.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// The node answered with a gRPC error; see [`ClientError::code`] and the `is_*` helpers.
    /// (Not a `#[source]`: the message already says all the status says.)
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(tonic::Status),
    /// The node's answer did not decode as expected (e.g. a hash that is not 32 bytes).
    #[error("node returned malformed data: {0}")]
    Malformed(String),
    /// A wait (such as [`PmrClient::wait_committed`]) ran out of time; the operation may still
    /// complete later.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// Reading the local data to upload failed; the upload was aborted, so no truncated blob is
    /// stored.
    #[error("reading the data to upload failed: {0}; the upload was cancelled")]
    Read(#[source] std::io::Error),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Rpc(s)
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "invalid argument",
        Code::PermissionDenied => "permission denied",
        Code::FailedPrecondition => "rejected",
        Code::AlreadyExists => "already exists",
        Code::ResourceExhausted => "node busy",
        Code::NotFound => "not found",
        Code::Unavailable => "node unavailable",
        Code::OutOfRange => "out of range",
        Code::Unauthenticated => "unauthenticated",
        Code::DataLoss => "data loss",
        _ => "node error",
    }
}

impl ClientError {
    /// The gRPC code, when the node answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }

    /// Whether the node answered that it already holds this (its mempool has the transaction,
    /// or it is committed).
    pub fn is_already_known(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }

    /// Whether the node (or the connection to it) answered "try later": its mempool is full, or
    /// too many requests are open.
    pub fn is_busy(&self) -> bool {
        self.code() == Some(Code::ResourceExhausted)
    }

    /// Whether the node could not be reached or did not answer (connection refused or lost,
    /// timed out), as opposed to answering with a refusal: a submission that fails this way may
    /// be sent to another node, since no node has said no to it.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout(..) => true,
            // tonic reports a broken connection as `Unknown` ("transport error"), and a
            // connection reset while the node shuts down as `Internal` with the HTTP/2 error:
            // neither is the node's answer to the request.
            ClientError::Rpc(s) => {
                matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                ) || (s.code() == Code::Internal && s.message().starts_with("h2 protocol error"))
            }
            ClientError::Malformed(_) | ClientError::Read(_) => false,
        }
    }
}

/// Status of a node.
pub type Status = pb::GetStatusResponse;

/// A connection to one node.
#[derive(Clone)]
pub struct PmrClient {
    url: String,
    channel: NodeChannel,
}

impl std::fmt::Debug for PmrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PmrClient").field("url", &self.url).finish()
    }
}

const MAX_MESSAGE: usize = 64 * 1024 * 1024;

impl PmrClient {
    /// Connects to `url` (`https://host:port`; `http://` only with `opts.insecure`).
    pub async fn connect(
        url: impl Into<String>,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        let url = url.into();
        let url = if url.contains("://") {
            url
        } else {
            format!("https://{url}")
        };
        let connect_err = |reason: String| ClientError::Connect {
            url: url.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| connect_err(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let ca = opts.ca_pem.clone().ok_or_else(|| {
                connect_err(
                    "no CA to check the node's certificate against: pass the network's CA \
                     certificate (--ca FILE or PMR_CA; `pmr dev` writes .pmr-dev/ca.pem)"
                        .into(),
                )
            })?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                .map_err(|e| connect_err(e.to_string()))?;
        } else if !opts.insecure {
            return Err(connect_err(
                "plaintext http:// is refused: use https:// with the network's CA, or \
                 --insecure if you accept that anyone on the path can read and rewrite answers"
                    .into(),
            ));
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_err(format!("{e:?}")))?;
        Ok(Self {
            url,
            channel: NodeChannel::new(channel, opts.account.clone()),
        })
    }

    /// The URL this client connected to, with its scheme.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The channel (with this client's session) for the other services.
    pub fn channel(&self) -> NodeChannel {
        self.channel.clone()
    }

    fn ledger(&self) -> LedgerServiceClient<NodeChannel> {
        LedgerServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// The node's status: chain id, height, validators, peers, mempool size.
    pub async fn status(&self) -> Result<Status, ClientError> {
        Ok(self
            .ledger()
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner())
    }

    /// The node's operators: an online backup of the node's database, named `name`, written
    /// on the node's machine (see `LedgerService.CreateBackup`).
    pub async fn create_backup(&self, name: &str) -> Result<pb::CreateBackupResponse, ClientError> {
        Ok(self
            .ledger()
            .create_backup(pb::CreateBackupRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner())
    }

    /// The node's execution state at its latest committed height, as a stream of snapshot
    /// chunks (the operator of a validator of the network only; see `pmr state sync`).
    pub async fn state_snapshot(
        &self,
    ) -> Result<tonic::Streaming<pb::StateSnapshotChunk>, ClientError> {
        Ok(self
            .ledger()
            .get_state_snapshot(pb::GetStateSnapshotRequest {})
            .await?
            .into_inner())
    }

    /// Every change of the validator set since the genesis, each with the receipt, Merkle proof
    /// and certified block that prove it (accounts on the permission list).
    pub async fn validator_set_changes(
        &self,
    ) -> Result<Vec<pb::GetTransactionReceiptResponse>, ClientError> {
        /// More changes than any chain has: a node that claims more is refused.
        const MAX_CHANGES: u32 = 1 << 20;
        let mut all = Vec::new();
        let mut total = None;
        loop {
            let page = self
                .ledger()
                .get_validator_set_changes(pb::GetValidatorSetChangesRequest {
                    from: all.len() as u32,
                })
                .await?
                .into_inner();
            if page.total > MAX_CHANGES || *total.get_or_insert(page.total) != page.total {
                return Err(ClientError::Malformed(format!(
                    "the node's count of validator-set changes is implausible or changed between \
                     pages ({})",
                    page.total
                )));
            }
            let got = page.changes.len();
            all.extend(page.changes);
            if all.len() >= page.total as usize {
                all.truncate(page.total as usize);
                return Ok(all);
            }
            if got == 0 {
                return Err(ClientError::Malformed(format!(
                    "the node sent {} of the {} validator-set changes it counts",
                    all.len(),
                    page.total
                )));
            }
        }
    }

    /// Misbehavior evidence the node recorded (validators that signed twice), every page.
    pub async fn evidence(&self) -> Result<Vec<pb::Equivocation>, ClientError> {
        const PAGE: u32 = 1000;
        let mut all: Vec<pb::Equivocation> = Vec::new();
        let mut from_height = 0;
        loop {
            let page = self
                .ledger()
                .get_evidence(pb::GetEvidenceRequest {
                    from_height,
                    limit: PAGE,
                })
                .await?
                .into_inner()
                .evidence;
            let full = page.len() == PAGE as usize;
            match page.last().map(|e| e.height) {
                // A full page may end inside a height: keep the heights below it and ask
                // again from that height (unless one height alone filled the page).
                Some(h) if full && h > from_height => {
                    all.extend(page.into_iter().filter(|e| e.height < h));
                    from_height = h;
                }
                _ => {
                    all.extend(page);
                    break;
                }
            }
        }
        Ok(all)
    }

    /// Submits a signed transaction; returns its hash.
    pub async fn submit(&self, raw: Bytes) -> Result<B256, ClientError> {
        let resp = self
            .ledger()
            .submit_transaction(pb::SubmitTransactionRequest { raw: raw.to_vec() })
            .await?
            .into_inner();
        b256(&resp.tx_hash)
    }

    /// The committed block at `height`, with its commit certificate; `NotFound` above the tip.
    pub async fn block(&self, height: u64) -> Result<pb::BlockWithCertificate, ClientError> {
        self.ledger()
            .get_block(pb::GetBlockRequest {
                selector: Some(pb::get_block_request::Selector::Height(height)),
            })
            .await?
            .into_inner()
            .block
            .ok_or_else(|| ClientError::Malformed("empty block response".into()))
    }

    /// The committed block with this hash, with its commit certificate.
    pub async fn block_by_hash(&self, hash: B256) -> Result<pb::BlockWithCertificate, ClientError> {
        self.ledger()
            .get_block(pb::GetBlockRequest {
                selector: Some(pb::get_block_request::Selector::Hash(hash.to_vec())),
            })
            .await?
            .into_inner()
            .block
            .ok_or_else(|| ClientError::Malformed("empty block response".into()))
    }

    /// A transaction by hash, committed (with its height and index) or pending in the node's
    /// mempool; `NotFound` if the node has neither.
    pub async fn transaction(&self, hash: B256) -> Result<pb::GetTransactionResponse, ClientError> {
        Ok(self
            .ledger()
            .get_transaction(pb::GetTransactionRequest {
                hash: hash.to_vec(),
            })
            .await?
            .into_inner())
    }

    /// The receipt of a committed transaction, with its Merkle proof and block; `NotFound` until
    /// it is committed.
    pub async fn receipt(
        &self,
        hash: B256,
    ) -> Result<pb::GetTransactionReceiptResponse, ClientError> {
        Ok(self
            .ledger()
            .get_transaction_receipt(pb::GetTransactionReceiptRequest {
                tx_hash: hash.to_vec(),
            })
            .await?
            .into_inner())
    }

    /// Read-only contract call at the latest (or a given) height.
    pub async fn call(
        &self,
        from: Option<Address>,
        to: Address,
        data: Bytes,
        height: Option<u64>,
    ) -> Result<pb::CallResponse, ClientError> {
        Ok(self
            .ledger()
            .call(pb::CallRequest {
                from: from.map(|a| a.to_vec()).unwrap_or_default(),
                to: to.to_vec(),
                data: data.to_vec(),
                height,
            })
            .await?
            .into_inner())
    }

    /// An account's nonce, balance and code hash at the latest (or a given) committed height.
    pub async fn account(
        &self,
        address: Address,
        height: Option<u64>,
    ) -> Result<pb::GetAccountResponse, ClientError> {
        Ok(self
            .ledger()
            .get_account(pb::GetAccountRequest {
                address: address.to_vec(),
                height,
            })
            .await?
            .into_inner())
    }

    /// The next nonce of an account, from committed state.
    pub async fn nonce(&self, address: Address) -> Result<u64, ClientError> {
        Ok(self.account(address, None).await?.nonce)
    }

    /// Committed blocks from `from_height` (0: from the next one).
    pub async fn stream_blocks(
        &self,
        from_height: u64,
    ) -> Result<tonic::Streaming<pb::BlockWithCertificate>, ClientError> {
        Ok(self
            .ledger()
            .stream_blocks(pb::StreamBlocksRequest { from_height })
            .await?
            .into_inner())
    }

    /// Waits until the transaction is committed and returns its height.
    pub async fn wait_committed(&self, hash: B256, timeout: Duration) -> Result<u64, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut blocks = self.stream_blocks(0).await?;
        loop {
            match self.transaction(hash).await {
                Ok(t) if t.height.is_some() => return Ok(t.height.unwrap_or_default()),
                Ok(_) => {}
                Err(e) if e.code() == Some(Code::NotFound) => {
                    // Dropped from the mempool with a reason, or not yet gossiped here.
                    if e.to_string().contains("dropped") {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            match tokio::time::timeout_at(deadline, blocks.next()).await {
                Err(_) => {
                    return Err(ClientError::Timeout(
                        timeout,
                        format!("transaction {hash} to commit"),
                    ))
                }
                Ok(None) => blocks = self.stream_blocks(0).await?,
                Ok(Some(_)) => {}
            }
        }
    }
}

fn b256(bytes: &[u8]) -> Result<B256, ClientError> {
    if bytes.len() != 32 {
        return Err(ClientError::Malformed(format!(
            "expected a 32-byte hash, got {} bytes",
            bytes.len()
        )));
    }
    Ok(B256::from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_that_did_not_answer_counts_as_unreachable() {
        let rpc = |s: tonic::Status| ClientError::Rpc(s);
        for e in [
            rpc(tonic::Status::unavailable("tcp connect error")),
            rpc(tonic::Status::unknown("transport error")),
            rpc(tonic::Status::cancelled("connection closed")),
            rpc(tonic::Status::deadline_exceeded("timeout")),
            rpc(tonic::Status::internal(
                "h2 protocol error: error reading a body from connection",
            )),
            ClientError::Timeout(Duration::from_secs(5), "a node".into()),
            ClientError::Connect {
                url: "http://127.0.0.1:1".into(),
                reason: "refused".into(),
            },
        ] {
            assert!(e.is_unreachable(), "{e}");
            assert!(!e.is_already_known(), "{e}");
        }
        for e in [
            rpc(tonic::Status::permission_denied("not permitted")),
            rpc(tonic::Status::invalid_argument("bad signature")),
            rpc(tonic::Status::failed_precondition("nonce too low")),
            rpc(tonic::Status::resource_exhausted("mempool full")),
            rpc(tonic::Status::internal(
                "execution state in the database is corrupt",
            )),
            ClientError::Malformed("no hash".into()),
        ] {
            assert!(!e.is_unreachable(), "{e}");
        }
        assert!(rpc(tonic::Status::resource_exhausted("mempool full")).is_busy());
        assert!(!rpc(tonic::Status::unavailable("down")).is_busy());
        let known = rpc(tonic::Status::already_exists("duplicate"));
        assert!(known.is_already_known() && !known.is_unreachable());
    }
}
