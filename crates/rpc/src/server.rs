//! The gRPC server: the services, health checking and reflection on one port.

use std::net::SocketAddr;

use pmr_proto::v1::ledger_service_server::LedgerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tracing::info;

use crate::LedgerApi;

/// Largest gRPC message accepted or sent (a block with its transactions fits).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot listen for gRPC on {addr}: {source} (is another node using this port? choose another `rpc_listen`)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(String),
    #[error("gRPC services: {0}")]
    Services(String),
}

/// A running server.
pub struct ServerHandle {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
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

/// Serves the ledger service plus `extra` routes (other parts' services), with the standard
/// gRPC health service reporting each as serving, and server reflection.
pub async fn serve(
    addr: SocketAddr,
    ledger: LedgerApi,
    extra: Vec<Routes>,
    extra_names: &[&str],
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
    for name in extra_names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pmr_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RpcError::Reflection(e.to_string()))?;

    let mut router = Routes::new(
        LedgerServiceServer::new(ledger)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
    .add_service(health)
    .add_service(reflection)
    .into_axum_router();
    // Each extra service keeps its own routes under its gRPC path prefix (`/pkg.Service/`);
    // merging the routers instead would clash on tonic's catch-all fallback.
    if extra.len() != extra_names.len() {
        return Err(RpcError::Services(format!(
            "{} extra services but {} names",
            extra.len(),
            extra_names.len()
        )));
    }
    for (r, name) in extra.into_iter().zip(extra_names) {
        router = router.route(
            &format!("/{name}/{{*method}}"),
            axum::routing::any_service(r.into_axum_router()),
        );
    }
    let routes = Routes::from(router);
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
