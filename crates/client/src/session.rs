//! The client's side of TLS and sessions: how a [`crate::PmrClient`] reaches a node.
//!
//! A node's certificate must chain to the network's CA, which the client pins
//! ([`ConnectOptions::ca_pem`]); plaintext `http://` is refused unless asked for
//! ([`ConnectOptions::insecure`]). With an account ([`ConnectOptions::account`]), every call
//! carries a session token: the first call (and any call once the token nears its expiry)
//! first signs the node's login challenge (`AuthService`), transparently.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use pmr_contract::Wallet;
use pmr_primitives::session::login_message;
use pmr_proto::v1 as pb;
use pmr_proto::v1::auth_service_client::AuthServiceClient;
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::Status;
use tower::Service;

/// How to reach a node.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// The network's CA certificate (PEM) the node's certificate must chain to; needed for
    /// `https://` URLs.
    pub ca_pem: Option<Vec<u8>>,
    /// The account calls are made as (a session is opened on first use); `None`: only the open
    /// methods (status, custodians, release with a signed challenge) work.
    pub account: Option<Wallet>,
    /// Allow plaintext `http://` URLs: answers can then be read and rewritten on the way.
    pub insecure: bool,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .field("account", &self.account.as_ref().map(|w| w.address()))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl ConnectOptions {
    /// The same options, calling as `account`.
    pub fn as_account(&self, account: Wallet) -> Self {
        Self {
            account: Some(account),
            ..self.clone()
        }
    }
}

/// A session is renewed when it has less than this left.
const RENEW_BEFORE_MS: u64 = 60_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Session {
    account: Option<Wallet>,
    /// The plain channel, for logging in.
    channel: Channel,
    token: tokio::sync::Mutex<Option<(String, u64)>>,
}

impl Session {
    /// A valid token, logging in first when there is none or it nears its expiry; `None`
    /// without an account.
    async fn token(&self) -> Result<Option<String>, Status> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if let Some((t, expires)) = &*token {
            if *expires > now_ms() + RENEW_BEFORE_MS {
                return Ok(Some(t.clone()));
            }
        }
        let mut auth = AuthServiceClient::new(self.channel.clone());
        let challenge = auth
            .get_challenge(pb::GetChallengeRequest {})
            .await?
            .into_inner();
        let message = login_message(challenge.chain_id, &challenge.challenge, account.address());
        let signature = account
            .sign_message(message.as_bytes())
            .map_err(|e| Status::internal(format!("cannot sign the login: {e}")))?;
        let reply = auth
            .login(pb::LoginRequest {
                account: account.address().to_vec(),
                challenge: challenge.challenge,
                signature: signature.to_vec(),
            })
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    format!("cannot log in as {}: {}", account.address(), s.message()),
                )
            })?
            .into_inner();
        *token = Some((reply.token.clone(), reply.expires_at_ms));
        Ok(Some(reply.token))
    }
}

/// A channel to one node that adds the session token to every call.
#[derive(Clone)]
pub struct NodeChannel {
    inner: Channel,
    session: Arc<Session>,
}

impl NodeChannel {
    pub(crate) fn new(channel: Channel, account: Option<Wallet>) -> Self {
        Self {
            inner: channel.clone(),
            session: Arc::new(Session {
                account,
                channel,
                token: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The same connection without a session: for the calls open to anyone (share releases,
    /// whose challenge is signed), so that they carry no account the node could tie them to.
    pub fn anonymous(&self) -> NodeChannel {
        NodeChannel::new(self.inner.clone(), None)
    }

    /// The account calls are made as.
    pub fn account(&self) -> Option<&Wallet> {
        self.session.account.as_ref()
    }
}

impl Service<http::Request<Body>> for NodeChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let session = self.session.clone();
        // The clone is the ready one (tower's rule for services called from futures).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match session.token().await {
                Ok(Some(token)) => {
                    if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
                        req.headers_mut().insert(http::header::AUTHORIZATION, v);
                    }
                }
                Ok(None) => {}
                // The call fails with the login's status, as if the node had answered it.
                Err(status) => return Ok(status.into_http()),
            }
            inner.call(req).await
        })
    }
}

/// How long connecting may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
