//! `pmr.v1.ContentService` over the node's [`ContentNode`]: ciphertext blobs in, out, pinned.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use pmr_proto::v1::content_service_server::ContentService;
use pmr_proto::v1::{
    BlobStat, GetBlobRequest, GetBlobResponse, PinBlobRequest, PinBlobResponse, PutBlobRequest,
    PutBlobResponse, StatBlobRequest, UnpinBlobRequest, UnpinBlobResponse,
};
use tokio::io::{AsyncRead, ReadBuf};
use tonic::{Request, Response, Status, Streaming};

use pmr_content::{parse_cid, ContentNode, Stat};

use pmr_custody::Uploads;

use crate::access::Caller;
use crate::disk::DiskFloor;
use crate::status::{blob_status, content_status as status, custody_status};

/// Largest `PutBlobRequest.chunk` accepted.
pub const MAX_UPLOAD_CHUNK: usize = 1024 * 1024;

/// The gRPC `ContentService` backed by a content node.
#[derive(Clone)]
pub struct ContentApi {
    node: ContentNode,
    uploads: Uploads,
    disk: Arc<DiskFloor>,
}

impl ContentApi {
    /// Serves `node`, bounding uploads by `uploads`' quotas and the `disk` floor.
    pub fn new(node: ContentNode, uploads: Uploads, disk: Arc<DiskFloor>) -> Self {
        Self {
            node,
            uploads,
            disk,
        }
    }
}

fn to_proto(s: Stat) -> BlobStat {
    BlobStat {
        root_cid: s.root.to_string(),
        local: s.local,
        pinned: s.pinned,
        size: s.size,
        blocks_local: s.blocks_local,
        replica_peer_ids: s.replicas.iter().map(|p| p.to_string()).collect(),
    }
}

/// An [`AsyncRead`] over the upload stream's chunks.
struct UploadReader {
    inner: Streaming<PutBlobRequest>,
    cur: Bytes,
    /// The upload stream's own error (an oversized message, say), answered as it is.
    failed: Arc<Mutex<Option<Status>>>,
    /// Checked on every chunk: an upload stops when the disk reaches its floor.
    disk: Arc<DiskFloor>,
}

impl AsyncRead for UploadReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.cur.is_empty() {
                let n = self.cur.len().min(buf.remaining());
                let piece = self.cur.split_to(n);
                buf.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            match self.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(s))) => {
                    let e = io::Error::other(format!("upload stream failed: {}", s.message()));
                    *self.failed.lock() = Some(s);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Some(Ok(req))) => {
                    if let Err(s) = self.disk.check("uploads") {
                        let e = io::Error::other(s.message().to_string());
                        *self.failed.lock() = Some(s);
                        return Poll::Ready(Err(e));
                    }
                    if req.chunk.len() > MAX_UPLOAD_CHUNK {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "upload chunk of {} bytes exceeds {MAX_UPLOAD_CHUNK}; send smaller chunks",
                                req.chunk.len()
                            ),
                        )));
                    }
                    self.cur = Bytes::from(req.chunk);
                }
            }
        }
    }
}

type GetStream = Pin<Box<dyn Stream<Item = Result<GetBlobResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ContentService for ContentApi {
    async fn put_blob(
        &self,
        request: Request<Streaming<PutBlobRequest>>,
    ) -> Result<Response<PutBlobResponse>, Status> {
        self.disk.check("uploads")?;
        let uploader = request.extensions().get::<Caller>().map(|c| c.0);
        if let Some(account) = uploader {
            self.uploads.admit(account).map_err(custody_status)?;
        }
        let failed = Arc::new(Mutex::new(None));
        let reader = UploadReader {
            inner: request.into_inner(),
            cur: Bytes::new(),
            failed: failed.clone(),
            disk: self.disk.clone(),
        };
        let r = self
            .node
            .put_stream(reader)
            .await
            .map_err(|e| failed.lock().take().unwrap_or_else(|| status(e)))?;
        if let Some(account) = uploader {
            self.uploads
                .record(account, &r.root, r.size)
                .map_err(custody_status)?;
        }
        Ok(Response::new(PutBlobResponse {
            root_cid: r.root.to_string(),
            size: r.size,
        }))
    }

    type GetBlobStream = GetStream;

    async fn get_blob(
        &self,
        request: Request<GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        let root = parse_cid(&request.get_ref().root_cid).map_err(blob_status)?;
        let blob = self.node.get_stream(root).await.map_err(status)?;
        let total = blob.size();
        let mut first = true;
        let out = blob.map(move |piece| {
            let total_size = if std::mem::take(&mut first) { total } else { 0 };
            piece
                .map(|chunk| GetBlobResponse {
                    chunk: chunk.to_vec(),
                    total_size,
                })
                .map_err(status)
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn stat(&self, request: Request<StatBlobRequest>) -> Result<Response<BlobStat>, Status> {
        let root = parse_cid(&request.get_ref().root_cid).map_err(blob_status)?;
        let s = self.node.stat(root).await.map_err(status)?;
        Ok(Response::new(to_proto(s)))
    }

    async fn pin(
        &self,
        request: Request<PinBlobRequest>,
    ) -> Result<Response<PinBlobResponse>, Status> {
        let root = parse_cid(&request.get_ref().root_cid).map_err(blob_status)?;
        let s = self.node.fetch_and_pin(root).await.map_err(status)?;
        Ok(Response::new(PinBlobResponse {
            stat: Some(to_proto(s)),
        }))
    }

    async fn unpin(
        &self,
        request: Request<UnpinBlobRequest>,
    ) -> Result<Response<UnpinBlobResponse>, Status> {
        let root = parse_cid(&request.get_ref().root_cid).map_err(blob_status)?;
        let was_pinned = self.node.unpin(root).await.map_err(status)?;
        Ok(Response::new(UnpinBlobResponse { was_pinned }))
    }
}
