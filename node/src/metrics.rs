//! Prometheus metrics over HTTP (`GET /metrics`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use eyre::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Serves `registry` on `addr`; returns the task and the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
) -> Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .wrap_err_with(|| {
            format!("cannot listen for metrics on {addr} (port taken? set `metrics_listen`)")
        })?;
    let bound = listener.local_addr()?;
    let registry = Arc::new(registry);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match encode(&mut body, &registry) {
                    Ok(()) => (
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response(),
                    Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                        .into_response(),
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((task, bound))
}
