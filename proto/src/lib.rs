//! Protocol buffers of the PMR node's gRPC API (`pmr.v1`), with tonic clients and servers.
//!
//! The `.proto` files in `proto/pmr/v1/` are the source of truth; they are compiled at build time
//! with protox, so no system `protoc` is needed.

#![allow(clippy::all, missing_docs)]

/// Generated types and services of package `pmr.v1`.
pub mod v1 {
    tonic::include_proto!("pmr.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("pmr_descriptor");
