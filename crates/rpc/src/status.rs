//! The one place where each part's errors become gRPC status codes. The code tells a client
//! what to do: fix the request (`INVALID_ARGUMENT`), wait and retry (`UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED`), ask someone else (`PERMISSION_DENIED`, `FAILED_PRECONDITION`), or
//! report a bug (`INTERNAL`, `DATA_LOSS`).

use std::io;

use pmr_blob::BlobError;
use pmr_consensus::{PoolError, SubmitError};
use pmr_content::ContentError;
use pmr_custody::CustodyError;
use pmr_execution::TxRejection;
use tonic::Status;

/// An error the caller cannot fix: a bug or a broken disk.
pub(crate) fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A refused transaction submission.
pub(crate) fn submit_status(e: SubmitError) -> Status {
    let msg = e.to_string();
    match e {
        SubmitError::Invalid(_) => Status::invalid_argument(msg),
        SubmitError::Rejected(TxRejection::NotPermitted(_)) => Status::permission_denied(msg),
        SubmitError::Rejected(_) => Status::failed_precondition(msg),
        SubmitError::AlreadyCommitted { .. } | SubmitError::Pool(PoolError::Duplicate(_)) => {
            Status::already_exists(msg)
        }
        SubmitError::Pool(PoolError::NonceTaken { .. }) => Status::failed_precondition(msg),
        SubmitError::Pool(PoolError::Full { .. } | PoolError::SenderFull(_)) => {
            Status::resource_exhausted(msg)
        }
        SubmitError::CatchingUp { .. } => Status::unavailable(msg),
        SubmitError::Chain(_) => Status::internal(msg),
    }
}

/// A malformed CID, block or manifest.
pub(crate) fn blob_status(e: BlobError) -> Status {
    let msg = e.to_string();
    match e {
        BlobError::InvalidCid { .. }
        | BlobError::UnsupportedCid { .. }
        | BlobError::TooLarge { .. } => Status::invalid_argument(msg),
        BlobError::CorruptBlock { .. } | BlobError::BadManifest { .. } => Status::data_loss(msg),
    }
}

/// A content store failure.
pub(crate) fn content_status(e: ContentError) -> Status {
    let msg = e.to_string();
    match e {
        ContentError::Blob(e) => blob_status(e),
        ContentError::NotFound { .. } => Status::not_found(msg),
        ContentError::NotLocal { .. } => Status::failed_precondition(msg),
        ContentError::BadDag { .. } => Status::data_loss(msg),
        ContentError::Read(ref e) if e.kind() == io::ErrorKind::InvalidData => {
            Status::invalid_argument(msg)
        }
        ContentError::Read(_) => Status::aborted(msg),
        ContentError::Shutdown => Status::unavailable(msg),
        ContentError::Storage(_) | ContentError::Network(_) | ContentError::Config(_) => {
            Status::internal(msg)
        }
    }
}

/// A refused or failed share release (or custody query).
pub(crate) fn custody_status(e: CustodyError) -> Status {
    use CustodyError as E;
    let msg = e.to_string();
    match e {
        E::BadChallenge(_) => Status::invalid_argument(msg),
        E::BadSignature(_) => Status::unauthenticated(msg),
        E::Replay(_) => Status::already_exists(msg),
        E::UnknownToken { .. } => Status::not_found(msg),
        E::NoGrant { .. } | E::GrantRevoked { .. } | E::GrantExpired { .. } => {
            Status::permission_denied(msg)
        }
        E::LogRefused { no_live_grant, .. } if no_live_grant => Status::permission_denied(msg),
        E::NotCustodian
        | E::WrongChain { .. }
        | E::WrongCustodian { .. }
        | E::Stale(_)
        | E::NoEncryptionKey(_)
        | E::BadEnvelopeCid { .. }
        | E::InvalidShare { .. }
        | E::Seal { .. }
        | E::LogRefused { .. } => Status::failed_precondition(msg),
        E::NotHeldYet { .. }
        | E::Submit(_)
        | E::LogTimeout { .. }
        | E::ShuttingDown
        | E::Fetch { .. } => Status::unavailable(msg),
        E::RecordChanged { .. } => Status::aborted(msg),
        E::Busy(_) => Status::resource_exhausted(msg),
        E::Config(_) | E::Storage(_) | E::Internal(_) => Status::internal(msg),
    }
}
