//! The gRPC server: every service, health checking and reflection on one port, behind TLS, the
//! access check (`access.rs`) and bounds on connections, streams, message sizes and time.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::StreamExt;
use pmr_proto::v1::auth_service_server::AuthServiceServer;
use pmr_proto::v1::content_service_server::ContentServiceServer;
use pmr_proto::v1::ledger_service_server::LedgerServiceServer;
use pmr_proto::v1::share_service_server::ShareServiceServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{info, warn};

use crate::access::{AccessLayer, AuthApi};
use crate::{ContentApi, LedgerApi, ShareApi};

/// Largest response the ledger sends (a block with its transactions fits).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Largest ledger request: a transaction (at most 128 KiB) or a call's data, with framing.
const MAX_LEDGER_REQUEST: usize = 256 * 1024;
/// Largest upload message: one chunk of at most 1 MiB, with framing.
const MAX_UPLOAD_MESSAGE: usize = crate::MAX_UPLOAD_CHUNK + 1024;
/// Largest request of the share and auth services (challenges, signatures, ids).
const MAX_SMALL_REQUEST: usize = 16 * 1024;

/// The node's TLS identity, and the CA its clients must present certificates of, if any.
#[derive(Clone)]
pub struct ServerTls {
    /// The node's certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// The certificate's private key (PEM).
    pub key_pem: Vec<u8>,
    /// When set, every client must present a certificate this CA (PEM) signed: mutual TLS.
    pub client_ca_pem: Option<Vec<u8>>,
}

/// Bounds on what callers may hold of the server.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Calls in flight on one connection at most (HTTP/2 streams).
    pub max_streams_per_connection: u32,
    /// How long a call may take to produce its response (streams then run on).
    pub request_timeout: Duration,
    /// How long a client may take for its TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_streams_per_connection: 128,
            request_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The listening socket could not be bound (port in use, or an address this host lacks).
    #[error("cannot listen for gRPC on {addr}: {source} (is another node using this port? choose another `rpc_listen`)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The reflection service could not load the compiled proto descriptors.
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(String),
    /// The TLS certificate or key does not load.
    #[error("the node's TLS certificate or key is unusable: {0}")]
    Tls(String),
}

/// A running server.
pub struct ServerHandle {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    /// The serving task; it ends when the server stops, with the transport error if it failed.
    pub task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl ServerHandle {
    /// Stops accepting requests and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// The services of one node, and who may call them.
pub struct Services {
    /// `pmr.v1.LedgerService`.
    pub ledger: LedgerApi,
    /// `pmr.v1.ContentService`.
    pub content: ContentApi,
    /// `pmr.v1.ShareService`.
    pub shares: ShareApi,
    /// `pmr.v1.AuthService`.
    pub auth: AuthApi,
    /// The check in front of every call.
    pub access: AccessLayer,
}

/// Serves every service on `addr` (TLS unless `tls` is `None`), with the standard gRPC health
/// service reporting each as serving, and server reflection (v1 and v1alpha).
pub async fn serve(
    addr: SocketAddr,
    tls: Option<ServerTls>,
    limits: ServerLimits,
    services: Services,
) -> Result<ServerHandle, RpcError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RpcError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| RpcError::Bind { addr, source })?;

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<LedgerServiceServer<LedgerApi>>()
        .await;
    reporter
        .set_serving::<ContentServiceServer<ContentApi>>()
        .await;
    reporter.set_serving::<ShareServiceServer<ShareApi>>().await;
    reporter.set_serving::<AuthServiceServer<AuthApi>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pmr_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| RpcError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| RpcError::Reflection(e.to_string()))?;

    let routes = Routes::new(
        LedgerServiceServer::new(services.ledger)
            .max_decoding_message_size(MAX_LEDGER_REQUEST)
            .max_encoding_message_size(MAX_RESPONSE),
    )
    .add_service(
        ContentServiceServer::new(services.content).max_decoding_message_size(MAX_UPLOAD_MESSAGE),
    )
    .add_service(
        ShareServiceServer::new(services.shares).max_decoding_message_size(MAX_SMALL_REQUEST),
    )
    .add_service(AuthServiceServer::new(services.auth).max_decoding_message_size(MAX_SMALL_REQUEST))
    .add_service(health)
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha);
    let mut builder = tonic::transport::Server::builder();
    let secure = tls.is_some();
    if let Some(tls) = tls {
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(tls.cert_pem, tls.key_pem))
            .timeout(limits.handshake_timeout);
        if let Some(ca) = tls.client_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| RpcError::Tls(e.to_string()))?;
    }
    let router = builder
        .max_concurrent_streams(limits.max_streams_per_connection)
        .timeout(limits.request_timeout)
        .layer(services.access)
        .add_routes(routes);
    let (tx, rx) = oneshot::channel();
    info!(target: "pmr::rpc", %local_addr, tls = secure, "gRPC listening");
    let incoming = limit_connections(listener, limits.max_connections);
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = rx.await;
    }));
    Ok(ServerHandle {
        local_addr,
        shutdown: Some(tx),
        task,
    })
}

/// Accepted connections, at most `max` open at once: a connection over the cap is closed as
/// soon as it is accepted, and every other holds a permit until it closes.
fn limit_connections(
    listener: TcpListener,
    max: usize,
) -> impl futures::Stream<Item = std::io::Result<Limited>> {
    let permits = Arc::new(Semaphore::new(max));
    futures::stream::unfold(listener, |l| async { Some((l.accept().await, l)) }).filter_map(
        move |accepted| {
            let permits = permits.clone();
            async move {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => return Some(Err(e)),
                };
                match permits.try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        Some(Ok(Limited {
                            stream,
                            _permit: permit,
                        }))
                    }
                    Err(_) => {
                        warn!(target: "pmr::rpc", %peer, max, "connection refused: the server holds its maximum of open connections");
                        None
                    }
                }
            }
        },
    )
}

/// A connection holding one of the server's connection permits.
pub(crate) struct Limited {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
