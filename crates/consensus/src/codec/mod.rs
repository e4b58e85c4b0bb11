//! Binary wire and WAL encoding of every message the engine exchanges or persists.
//!
//! A small, strict format: fixed-width big-endian integers, `u32` length prefixes, one tag byte
//! per enum. Decoding never allocates more than the input holds, rejects unknown tags, and
//! rejects trailing bytes, so a hostile peer cannot make a node allocate or accept garbage.

use bytes::Bytes;
use malachitebft_app_channel::app::types::codec::Codec;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ends inside a field, or a list claims more items than the remaining input can
    /// hold; names the field.
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes are left over after a complete message; carries their count.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// An enum's tag byte has no meaning for that enum.
    #[error("unknown tag {tag} for {what}")]
    BadTag {
        /// The enum being decoded.
        what: &'static str,
        /// The tag byte read.
        tag: u8,
    },
    /// A list is longer than any message may carry (100,000 items).
    #[error("{what} has {len} items, over the limit of {max}")]
    TooMany {
        /// The list being decoded.
        what: &'static str,
        /// The length the input claims.
        len: usize,
        /// The most items a list may have.
        max: usize,
    },
    /// A field was read whole but its value is not valid (a round out of range, a malformed peer
    /// id); names the field.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Most entries a list in a message may have (votes of a validator set, values of a sync batch).
const MAX_ITEMS: usize = 100_000;

/// Writes the format.
#[derive(Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn fixed(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }
    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.0)
    }
}

/// Reads the format.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(a))
    }
    pub(crate) fn fixed<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    /// A list length, bounded both by [`MAX_ITEMS`] and by what the input can still hold.
    pub(crate) fn len(
        &mut self,
        what: &'static str,
        min_item_size: usize,
    ) -> Result<usize, CodecError> {
        let n = self.u32(what)? as usize;
        if n > MAX_ITEMS {
            return Err(CodecError::TooMany {
                what,
                len: n,
                max: MAX_ITEMS,
            });
        }
        if n.saturating_mul(min_item_size.max(1)) > self.buf.len() {
            return Err(CodecError::Truncated(what));
        }
        Ok(n)
    }
    pub(crate) fn end(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing(self.buf.len()))
        }
    }
}

// ---- the codec --------------------------------------------------------------------------

/// The codec handed to the engine for the network, the WAL and value sync.
#[derive(Clone, Copy, Debug, Default)]
pub struct PmrCodec;

pub(super) fn decode_all<T>(
    bytes: &[u8],
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let mut r = Reader::new(bytes);
    let v = f(&mut r)?;
    r.end()?;
    Ok(v)
}

pub(super) fn encode_with(f: impl FnOnce(&mut Writer)) -> Result<Bytes, CodecError> {
    let mut w = Writer::default();
    f(&mut w);
    Ok(w.finish())
}

macro_rules! codec_impl {
    ($ty:ty, |$w:ident, $v:ident| $enc:block, |$r:ident| $dec:block) => {
        impl Codec<$ty> for PmrCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$ty, CodecError> {
                decode_all(&bytes, |$r| $dec)
            }

            fn encode(&self, $v: &$ty) -> Result<Bytes, CodecError> {
                encode_with(|$w| $enc)
            }
        }
    };
}

mod certificate;
mod primitives;
mod proposal;
mod value_sync;
mod vote;

pub use certificate::{decode_certificate, encode_certificate};

#[cfg(test)]
mod tests;
