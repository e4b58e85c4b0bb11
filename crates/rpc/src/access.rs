//! Who may call what. One tower layer in front of every service reads the caller's session
//! token, checks the role the method needs against the chain's state, and puts the caller's
//! account into the request ([`Caller`]) for the handlers: no caller, `UNAUTHENTICATED`;
//! the wrong role, `PERMISSION_DENIED`; either way the handler never runs.
//!
//! | method | who |
//! |---|---|
//! | health, reflection, `AuthService.*`, `LedgerService.GetStatus` (minimal without a session), `ShareService.GetCustodians` | anyone |
//! | `ShareService.ReleaseShare` | anyone: the grantee proves itself by signing its release challenge |
//! | `ContentService.PutBlob` | hospitals |
//! | `ContentService.Pin`, `ContentService.Unpin`, `LedgerService.CreateBackup` | the node's operators |
//! | `LedgerService.GetStateSnapshot` | the operator of any validator in the genesis, and the node's operators |
//! | every other method | accounts on the chain's permission list |

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use alloy_primitives::{Address, Bytes};
use alloy_sol_types::SolCall;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use pmr_consensus::Ledger;
use pmr_contract::{PMR, PMR_ADDRESS};
use pmr_proto::v1 as pb;
use pmr_proto::v1::auth_service_server::AuthService;
use tonic::body::Body;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

use crate::auth::{AuthError, Sessions};
use crate::convert;

/// The authenticated account of a call, in its extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller(pub Address);

/// What a method needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Need {
    /// Anyone, with or without a session.
    Open,
    /// An account on the permission list.
    Permitted,
    /// An account with the HOSPITAL role.
    Hospital,
    /// One of the node's operator accounts.
    Operator,
    /// The operator account of a validator of the network (named in the genesis), or one of
    /// the node's operators.
    NetworkOperator,
}

/// The need of a gRPC method path (`/package.Service/Method`).
pub fn need(path: &str) -> Need {
    match path {
        "/pmr.v1.LedgerService/GetStatus"
        | "/pmr.v1.ShareService/GetCustodians"
        | "/pmr.v1.ShareService/ReleaseShare" => Need::Open,
        "/pmr.v1.ContentService/PutBlob" => Need::Hospital,
        "/pmr.v1.ContentService/Pin"
        | "/pmr.v1.ContentService/Unpin"
        | "/pmr.v1.LedgerService/CreateBackup" => Need::Operator,
        "/pmr.v1.LedgerService/GetStateSnapshot" => Need::NetworkOperator,
        p if p.starts_with("/pmr.v1.AuthService/")
            || p.starts_with("/grpc.health.v1.Health/")
            || p.starts_with("/grpc.reflection.") =>
        {
            Need::Open
        }
        _ => Need::Permitted,
    }
}

/// Role answers of one height.
type RoleCache = (u64, HashMap<(Address, Need), bool>);

/// The roles of accounts, read from the committed state at the tip and cached per height.
pub struct Roles {
    ledger: Arc<Ledger>,
    operators: Vec<Address>,
    network_operators: Vec<Address>,
    cache: Mutex<RoleCache>,
}

/// Cached role answers at most (per height).
const ROLE_CACHE: usize = 10_000;

impl Roles {
    /// Roles on `ledger`'s chain; `operators` may pin and unpin.
    pub fn new(ledger: Arc<Ledger>, operators: Vec<Address>) -> Self {
        Self {
            ledger,
            operators,
            network_operators: Vec::new(),
            cache: Mutex::new((0, HashMap::new())),
        }
    }

    /// The operator accounts of the network's validators (from the genesis), who may fetch a
    /// state snapshot to join.
    pub fn with_network_operators(mut self, operators: Vec<Address>) -> Self {
        self.network_operators = operators;
        self
    }

    /// Whether `account` meets `need`.
    pub fn allows(&self, account: Address, need: Need) -> Result<bool, Status> {
        let height = self.ledger.tip().height;
        {
            let cache = self.cache.lock();
            if cache.0 == height {
                if let Some(ok) = cache.1.get(&(account, need)) {
                    return Ok(*ok);
                }
            }
        }
        let ok = match need {
            Need::Open => true,
            Need::Operator => self.operators.contains(&account),
            Need::NetworkOperator => {
                self.operators.contains(&account) || self.network_operators.contains(&account)
            }
            Need::Permitted => self
                .ledger
                .executor
                .is_permitted(account)
                .map_err(|e| Status::internal(e.to_string()))?,
            Need::Hospital => self.has_role(account, height)?,
        };
        let mut cache = self.cache.lock();
        if cache.0 != height || cache.1.len() >= ROLE_CACHE {
            *cache = (height, HashMap::new());
        }
        cache.1.insert((account, need), ok);
        Ok(ok)
    }

    fn has_role(&self, account: Address, height: u64) -> Result<bool, Status> {
        let role = PMR::hasRoleCall {
            role: alloy_primitives::keccak256("PMR_HOSPITAL"),
            account,
        };
        let out = self
            .ledger
            .executor
            .call(
                Some(height),
                Address::ZERO,
                PMR_ADDRESS,
                Bytes::from(role.abi_encode()),
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(out.success && PMR::hasRoleCall::abi_decode_returns(&out.output).unwrap_or(false))
    }
}

/// The layer that checks every call (see the module docs).
#[derive(Clone)]
pub struct AccessLayer {
    sessions: Arc<Sessions>,
    roles: Arc<Roles>,
    /// Whether a method's need is enforced (always, but for `pmr start --no-auth`).
    enforce: bool,
}

impl AccessLayer {
    /// Checks calls with `sessions` and `roles`.
    pub fn new(sessions: Arc<Sessions>, roles: Arc<Roles>) -> Self {
        Self {
            sessions,
            roles,
            enforce: true,
        }
    }

    /// Lets every call through, with its caller when it sends a valid session: for
    /// benchmarks that price the checks (`pmr start --insecure --no-auth`), never a network
    /// with real records.
    pub fn unchecked(sessions: Arc<Sessions>, roles: Arc<Roles>) -> Self {
        Self {
            sessions,
            roles,
            enforce: false,
        }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;
    fn layer(&self, inner: S) -> Access<S> {
        Access {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`AccessLayer`] around a service.
#[derive(Clone)]
pub struct Access<S> {
    inner: S,
    layer: AccessLayer,
}

fn bearer(req: &http::Request<Body>) -> Option<&str> {
    req.headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

impl AccessLayer {
    /// The caller of `req`, checked against what its method needs.
    fn check(&self, req: &http::Request<Body>) -> Result<Option<Caller>, Status> {
        let need = if self.enforce {
            need(req.uri().path())
        } else {
            Need::Open
        };
        let token = bearer(req);
        if need == Need::Open {
            // A session is optional here; a bad one is ignored.
            return Ok(token.and_then(|t| self.sessions.verify(t).ok()).map(Caller));
        }
        let account = self
            .sessions
            .verify(token.ok_or(AuthError::Missing)?)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if !self.roles.allows(account, need)? {
            let what = match need {
                Need::Hospital => "only hospitals may upload records",
                Need::Operator => "only this node's operators may pin, unpin or back it up",
                Need::NetworkOperator => {
                    "only the operators of the network's validators may fetch a state snapshot"
                }
                _ => "only accounts on the network's permission list may call it",
            };
            return Err(Status::permission_denied(format!(
                "{account} may not call {}: {what}",
                req.uri().path()
            )));
        }
        Ok(Some(Caller(account)))
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        Status::unauthenticated(e.to_string())
    }
}

impl<S> Service<http::Request<Body>> for Access<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        match self.layer.check(&req) {
            Ok(caller) => {
                if let Some(c) = caller {
                    req.extensions_mut().insert(c);
                }
                // The clone is the ready one (tower's rule for services called from futures).
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

/// `pmr.v1.AuthService`.
#[derive(Clone)]
pub struct AuthApi {
    sessions: Arc<Sessions>,
    roles: Arc<Roles>,
}

impl AuthApi {
    /// Logs accounts in with `sessions`, admitting those `roles` finds permitted.
    pub fn new(sessions: Arc<Sessions>, roles: Arc<Roles>) -> Self {
        Self { sessions, roles }
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn get_challenge(
        &self,
        _request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        Ok(Response::new(pb::GetChallengeResponse {
            challenge: self.sessions.challenge().to_vec(),
            chain_id: self.sessions.chain_id(),
        }))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = request.into_inner();
        let account = convert::address(&req.account, "account")?;
        let (token, expires_at_ms) =
            self.sessions
                .login(account, &req.challenge, &req.signature)?;
        if !(self.roles.allows(account, Need::Permitted)?
            || self.roles.allows(account, Need::Operator)?)
        {
            return Err(Status::permission_denied(format!(
                "{account} is not on the network's permission list: ask the network's \
                 administrators to permit it"
            )));
        }
        Ok(Response::new(pb::LoginResponse {
            token,
            expires_at_ms,
        }))
    }
}
