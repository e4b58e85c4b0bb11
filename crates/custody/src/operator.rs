//! The custodian's side of the ledger: read-only contract views at a committed height, and the
//! operator account's own transactions (share-release logs), submitted with nonce retry and
//! awaited until they commit.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use alloy_sol_types::{SolCall, SolInterface};
use pmr_consensus::{Ledger, PoolError, SubmitError};
use pmr_contract::{describe_revert, Wallet, PMR, PMR_ADDRESS};
use pmr_execution::Log;
use tokio::sync::broadcast::error::RecvError;

use crate::error::CustodyError;

/// How long a release waits for its `ShareReleased` log to commit.
pub const RELEASE_COMMIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Nonces a submission steps past when earlier transactions still hold them.
const NONCE_ATTEMPTS: u32 = 64;

/// A read-only PMR contract call at `height`: `Ok(Err(revert reason))` when it reverts.
pub(crate) async fn view<C>(
    ledger: &Arc<Ledger>,
    height: u64,
    call: C,
) -> Result<Result<C::Return, String>, CustodyError>
where
    C: SolCall + Send + 'static,
    C::Return: Send,
{
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || ledger.executor.view(Some(height), &call))
        .await
        .map_err(CustodyError::internal)?
        .map_err(CustodyError::internal)
}

/// A committed transaction of the operator.
pub(crate) struct Committed {
    pub(crate) tx: B256,
    pub(crate) height: u64,
    pub(crate) logs: Vec<Log>,
}

/// The node's operator account: signs and submits its own transactions.
pub(crate) struct Operator {
    wallet: Wallet,
    chain_id: u64,
    /// Next nonce to use (None: read it from the committed state).
    next_nonce: tokio::sync::Mutex<Option<u64>>,
}

impl Operator {
    pub(crate) fn new(wallet: Wallet, chain_id: u64) -> Self {
        Self {
            wallet,
            chain_id,
            next_nonce: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn address(&self) -> Address {
        self.wallet.address()
    }

    /// Signs `call` to the PMR contract, submits it to `ledger` and waits until it commits; a
    /// revert is [`CustodyError::LogRefused`].
    pub(crate) async fn send_and_wait<C: SolCall>(
        &self,
        ledger: &Ledger,
        call: C,
        gas: u64,
    ) -> Result<Committed, CustodyError> {
        let data = call.abi_encode();
        // Subscribe before submitting, so the commit cannot slip by unseen.
        let mut blocks = ledger.subscribe();
        let hash = {
            let mut next = self.next_nonce.lock().await;
            let committed = ledger
                .executor
                .nonce(self.wallet.address())
                .map_err(CustodyError::internal)?;
            let mut nonce = next.map_or(committed, |n| n.max(committed));
            // A nonce may still be held by an earlier transaction that is pending (after a
            // timeout reset): step past it, a bounded number of times.
            let mut attempts = 0;
            loop {
                let raw = self
                    .wallet
                    .sign_call(self.chain_id, nonce, PMR_ADDRESS, data.clone().into(), gas)
                    .map_err(CustodyError::internal)?;
                match ledger.submit(raw.0) {
                    Ok(a) => {
                        *next = Some(nonce + 1);
                        break a.hash;
                    }
                    Err(SubmitError::Pool(PoolError::NonceTaken { .. }))
                        if attempts < NONCE_ATTEMPTS =>
                    {
                        attempts += 1;
                        nonce += 1;
                    }
                    Err(e) => {
                        *next = None;
                        return Err(CustodyError::Submit(e.to_string()));
                    }
                }
            }
        };
        let deadline = tokio::time::Instant::now() + RELEASE_COMMIT_TIMEOUT;
        loop {
            if let Some(loc) = ledger.tx_location(&hash).map_err(CustodyError::internal)? {
                if let Some(r) = ledger
                    .executor
                    .receipts(loc.height)
                    .map_err(CustodyError::internal)?
                    .and_then(|rs| rs.into_iter().nth(loc.index as usize))
                {
                    if r.success {
                        return Ok(Committed {
                            tx: hash,
                            height: loc.height,
                            logs: r.logs,
                        });
                    }
                    return Err(CustodyError::LogRefused {
                        height: loc.height,
                        reason: describe_revert(&r.output),
                        no_live_grant: matches!(
                            PMR::PMRErrors::abi_decode(&r.output),
                            Ok(PMR::PMRErrors::NoLiveGrant(_))
                        ),
                    });
                }
            }
            match tokio::time::timeout_at(deadline, blocks.recv()).await {
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => return Err(CustodyError::ShuttingDown),
                Err(_) => {
                    // The transaction may have been dropped: re-read the nonce next time.
                    *self.next_nonce.lock().await = None;
                    return Err(CustodyError::LogTimeout {
                        tx: hash,
                        secs: RELEASE_COMMIT_TIMEOUT.as_secs(),
                    });
                }
            }
        }
    }
}
