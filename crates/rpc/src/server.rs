//! The gRPC server: the services, health checking and reflection on one port.

use std::net::SocketAddr;

use pmr_proto::v1::content_service_server::ContentServiceServer;
use pmr_proto::v1::ledger_service_server::LedgerServiceServer;
use pmr_proto::v1::share_service_server::ShareServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tracing::info;

use crate::{ContentApi, LedgerApi, ShareApi};

/// Largest gRPC message accepted or sent (a block with its transactions fits).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

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

/// The services of one node.
pub struct Services {
    /// `pmr.v1.LedgerService`.
    pub ledger: LedgerApi,
    /// `pmr.v1.ContentService`.
    pub content: ContentApi,
    /// `pmr.v1.ShareService`.
    pub shares: ShareApi,
}

/// Serves every service on `addr`, with the standard gRPC health service reporting each as
/// serving, and server reflection.
pub async fn serve(addr: SocketAddr, services: Services) -> Result<ServerHandle, RpcError> {
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
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pmr_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RpcError::Reflection(e.to_string()))?;

    let routes = Routes::new(
        LedgerServiceServer::new(services.ledger)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(ContentServiceServer::new(services.content))
    .add_service(ShareServiceServer::new(services.shares))
    .add_service(health)
    .add_service(reflection);
    let (tx, rx) = oneshot::channel();
    info!(target: "pmr::rpc", %local_addr, "gRPC listening");
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes.prepare())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = rx.await;
            }),
    );
    Ok(ServerHandle {
        local_addr,
        shutdown: Some(tx),
        task,
    })
}
