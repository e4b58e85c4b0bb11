//! A man in the middle who holds a certificate of the network's CA (a stolen node certificate,
//! or a compromised node's own): it terminates TLS, forwards every byte to a real node, and in
//! the node's answers replaces each given 32-byte value by one of its choosing. What it cannot
//! do is make a client trust what the client checks against its own genesis or an account's
//! own signature.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A running proxy; dropped, it stops accepting.
pub(crate) struct Mitm {
    /// Where clients reach it (`https://127.0.0.1:PORT`).
    pub url: String,
    rewrites: Arc<AtomicU64>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Mitm {
    /// Proxies to the node at `upstream` (an `https://127.0.0.1:PORT` URL) with a certificate
    /// for 127.0.0.1 signed by the CA key `ca_key` (whose certificate is `ca_pem`), swapping
    /// `from` for `to` in every answer for each pair of `swaps`.
    pub(crate) async fn start(
        ca_key: &Path,
        ca_pem: &Path,
        upstream: &str,
        swaps: Vec<([u8; 32], [u8; 32])>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("mitm.pem"), dir.path().join("mitm.key"));
        pmr_node::tls::issue(ca_key, &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], &cert, &key).unwrap();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::from_pem_file(&key).unwrap())
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let mut client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let connector = TlsConnector::from(Arc::new(client));
        let target: SocketAddr = upstream
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let rewrites = Arc::new(AtomicU64::new(0));
        let swaps = Arc::new(swaps);
        let counter = rewrites.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (acceptor, connector) = (acceptor.clone(), connector.clone());
                let (swaps, counter) = (swaps.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(inbound) = acceptor.accept(inbound).await else {
                        return;
                    };
                    let Ok(tcp) = TcpStream::connect(target).await else {
                        return;
                    };
                    let name = ServerName::IpAddress(target.ip().into());
                    let Ok(outbound) = connector.connect(name, tcp).await else {
                        return;
                    };
                    relay(inbound, outbound, &swaps, &counter).await;
                });
            }
        });
        Self {
            url,
            rewrites,
            task,
            _dir: dir,
        }
    }

    /// How many values it has swapped so far.
    pub(crate) fn rewrites(&self) -> u64 {
        self.rewrites.load(Ordering::Relaxed)
    }
}

/// Copies requests as they are and answers with the swaps applied, until either side closes.
async fn relay<A, B>(inbound: A, outbound: B, swaps: &[([u8; 32], [u8; 32])], counter: &AtomicU64)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut in_r, mut in_w) = tokio::io::split(inbound);
    let (mut out_r, mut out_w) = tokio::io::split(outbound);
    let up = async {
        let _ = tokio::io::copy(&mut in_r, &mut out_w).await;
        let _ = out_w.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match out_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // A TLS record's plaintext arrives whole: a key is never split between reads of a
            // small answer, and `rewrites` shows whether the swap took effect.
            counter.fetch_add(swap_all(&mut buf[..n], swaps), Ordering::Relaxed);
            if in_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = in_w.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Replaces every occurrence of each `from` in `bytes` by its `to`; returns how many.
fn swap_all(bytes: &mut [u8], swaps: &[([u8; 32], [u8; 32])]) -> u64 {
    let mut count = 0;
    for (from, to) in swaps {
        let mut i = 0;
        while i + 32 <= bytes.len() {
            if bytes[i..i + 32] == from[..] {
                bytes[i..i + 32].copy_from_slice(to);
                count += 1;
                i += 32;
            } else {
                i += 1;
            }
        }
    }
    count
}
