//! Blobs: the node's `pmr.v1.ContentService`. A node stores and serves ciphertext only; encrypt
//! before [`PmrClient::put_blob`] and decrypt after [`PmrClient::get_blob`] (the helpers are in
//! the `pmr-content` crate: `EncryptingReader`, `Decryptor`, `DataKey`).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use pmr_proto::v1 as pb;
use pmr_proto::v1::content_service_client::ContentServiceClient;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;

use crate::client::{ClientError, PmrClient};
use crate::session::NodeChannel;

/// Size of the pieces an upload is sent in (the node accepts up to 1 MiB).
pub const UPLOAD_CHUNK: usize = 512 * 1024;
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// What a node reports of a blob: local, pinned, size, replicas.
pub type BlobStat = pb::BlobStat;

/// A stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutBlob {
    /// Root CID naming the blob (CIDv1, base32 `bafy...`).
    pub root_cid: String,
    /// Blob size in bytes.
    pub size: u64,
}

/// A blob being downloaded: its size, then its bytes in order. The last item is an error if
/// the node could not deliver the rest.
pub struct BlobDownload {
    size: u64,
    inner: BoxStream<'static, Result<Vec<u8>, ClientError>>,
}

impl BlobDownload {
    /// Blob size in bytes, as its root manifest states.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Stream for BlobDownload {
    type Item = Result<Vec<u8>, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl PmrClient {
    fn content(&self) -> ContentServiceClient<NodeChannel> {
        ContentServiceClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Uploads a blob given as a stream of pieces (any sizes); the node stores and pins it.
    /// A blob over the node's `max_record_size` fails with INVALID_ARGUMENT and nothing is kept.
    pub async fn put_blob<S>(&self, pieces: S) -> Result<PutBlob, ClientError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let requests = pieces.flat_map(|piece| {
            let parts: Vec<pb::PutBlobRequest> = if piece.len() <= UPLOAD_CHUNK {
                vec![pb::PutBlobRequest { chunk: piece }]
            } else {
                piece
                    .chunks(UPLOAD_CHUNK)
                    .map(|c| pb::PutBlobRequest { chunk: c.to_vec() })
                    .collect()
            };
            futures::stream::iter(parts)
        });
        let r = self.content().put_blob(requests).await?.into_inner();
        Ok(PutBlob {
            root_cid: r.root_cid,
            size: r.size,
        })
    }

    /// Uploads an in-memory blob.
    pub async fn put_blob_bytes(&self, data: impl Into<Vec<u8>>) -> Result<PutBlob, ClientError> {
        self.put_blob(futures::stream::iter([data.into()])).await
    }

    /// Uploads everything `reader` yields, with bounded memory. If reading fails the upload is
    /// cancelled, so the node keeps nothing of it.
    pub async fn put_blob_reader<R>(&self, reader: R) -> Result<PutBlob, ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (err_tx, err_rx) = oneshot::channel::<std::io::Error>();
        let requests =
            futures::stream::unfold((reader, Some(err_tx)), |(mut r, err_tx)| async move {
                let err_tx = err_tx?;
                let mut buf = vec![0u8; UPLOAD_CHUNK];
                let mut filled = 0;
                while filled < buf.len() {
                    match r.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            // Never end the stream cleanly on an error: that would store a
                            // truncated blob. The caller drops the call instead.
                            let _ = err_tx.send(e);
                            return std::future::pending().await;
                        }
                    }
                }
                if filled == 0 {
                    return None;
                }
                buf.truncate(filled);
                Some((pb::PutBlobRequest { chunk: buf }, (r, Some(err_tx))))
            });
        let mut content = self.content();
        let call = content.put_blob(requests);
        tokio::select! {
            r = call => {
                let r = r?.into_inner();
                Ok(PutBlob { root_cid: r.root_cid, size: r.size })
            }
            Ok(e) = err_rx => Err(ClientError::Read(e)),
        }
    }

    /// Starts downloading a blob (fetched from peers when the node does not hold it).
    /// NOT_FOUND: no reachable node holds it; INVALID_ARGUMENT: `root_cid` is malformed.
    pub async fn get_blob(&self, root_cid: &str) -> Result<BlobDownload, ClientError> {
        let mut stream = self
            .content()
            .get_blob(pb::GetBlobRequest {
                root_cid: root_cid.to_string(),
            })
            .await?
            .into_inner();
        // The first message carries the size; an empty blob sends none.
        let first = stream.message().await?;
        let size = first.as_ref().map_or(0, |m| m.total_size);
        let head = futures::stream::iter(first.map(|m| Ok(m.chunk)));
        let rest = stream.map(|r| r.map(|m| m.chunk).map_err(ClientError::from));
        Ok(BlobDownload {
            size,
            inner: head.chain(rest).boxed(),
        })
    }

    /// Downloads a whole blob into memory.
    pub async fn get_blob_bytes(&self, root_cid: &str) -> Result<Vec<u8>, ClientError> {
        let mut d = self.get_blob(root_cid).await?;
        let mut out = Vec::with_capacity(d.size().min(1 << 30) as usize);
        while let Some(piece) = d.next().await {
            out.extend_from_slice(&piece?);
        }
        if out.len() as u64 != d.size() {
            return Err(ClientError::Malformed(format!(
                "blob {root_cid} announced {} bytes and delivered {}",
                d.size(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Whether the node holds the blob, pins it, its size, and which connected peers hold it.
    pub async fn blob_stat(&self, root_cid: &str) -> Result<BlobStat, ClientError> {
        Ok(self
            .content()
            .stat(pb::StatBlobRequest {
                root_cid: root_cid.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Operators: fetches the blob from peers if needed and pins it on the node.
    pub async fn pin(&self, root_cid: &str) -> Result<BlobStat, ClientError> {
        self.content()
            .pin(pb::PinBlobRequest {
                root_cid: root_cid.to_string(),
            })
            .await?
            .into_inner()
            .stat
            .ok_or_else(|| ClientError::Malformed("Pin returned no stat".into()))
    }

    /// Operators: unpins the blob (removed at the node's next garbage collection). Returns
    /// whether it was pinned.
    pub async fn unpin(&self, root_cid: &str) -> Result<bool, ClientError> {
        Ok(self
            .content()
            .unpin(pb::UnpinBlobRequest {
                root_cid: root_cid.to_string(),
            })
            .await?
            .into_inner()
            .was_pinned)
    }
}
