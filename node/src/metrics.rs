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
pub(crate) async fn serve(
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

/// Node-level metrics beside consensus': peers, the content store's bitswap traffic, share
/// releases.
#[derive(Clone, Default)]
pub(crate) struct NodeMetrics {
    /// Shares this node released (after their on-chain log committed).
    pub share_releases: prometheus_client::metrics::counter::Counter,
    /// Connected consensus peers.
    pub peers: prometheus_client::metrics::gauge::Gauge,
    pub bitswap_bytes_sent: prometheus_client::metrics::counter::Counter,
    pub bitswap_bytes_received: prometheus_client::metrics::counter::Counter,
    pub bitswap_blocks_sent: prometheus_client::metrics::counter::Counter,
    pub bitswap_blocks_received: prometheus_client::metrics::counter::Counter,
}

impl NodeMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "pmr_share_releases",
            "Key shares released by this custodian",
            self.share_releases.clone(),
        );
        registry.register("pmr_peers", "Connected consensus peers", self.peers.clone());
        registry.register(
            "pmr_bitswap_bytes_sent",
            "Block bytes served to peers over bitswap",
            self.bitswap_bytes_sent.clone(),
        );
        registry.register(
            "pmr_bitswap_bytes_received",
            "Block bytes fetched from peers over bitswap",
            self.bitswap_bytes_received.clone(),
        );
        registry.register(
            "pmr_bitswap_blocks_sent",
            "Blocks served to peers over bitswap",
            self.bitswap_blocks_sent.clone(),
        );
        registry.register(
            "pmr_bitswap_blocks_received",
            "Blocks fetched from peers over bitswap",
            self.bitswap_blocks_received.clone(),
        );
    }

    /// Copies the content store's and the ledger's figures into the metrics every second.
    pub(crate) fn spawn_sampler(
        &self,
        content: pmr_content::ContentNode,
        ledger: Arc<pmr_consensus::Ledger>,
    ) -> tokio::task::JoinHandle<()> {
        let m = self.clone();
        tokio::spawn(async move {
            let mut last = content.net_stats();
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = content.net_stats();
                m.bitswap_bytes_sent
                    .inc_by(now.bytes_sent.saturating_sub(last.bytes_sent));
                m.bitswap_bytes_received
                    .inc_by(now.bytes_received.saturating_sub(last.bytes_received));
                m.bitswap_blocks_sent
                    .inc_by(now.blocks_sent.saturating_sub(last.blocks_sent));
                m.bitswap_blocks_received
                    .inc_by(now.blocks_received.saturating_sub(last.blocks_received));
                last = now;
                m.peers.set(ledger.peers().await.len() as i64);
            }
        })
    }
}
