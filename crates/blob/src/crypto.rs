//! Record encryption: XChaCha20-Poly1305 over 64 KiB segments (a STREAM construction).
//!
//! Ciphertext layout: a 24-byte header `"PMRENC" | version 1 | log2(segment size) | salt(16)`
//! followed by segments of `plaintext (≤ 64 KiB) + 16-byte tag`. Segment `i` is sealed with
//! nonce `salt | i (u64 big-endian)` and associated data `header | last`, where `last` is 1 only
//! for the final segment. So a segment cannot be modified, moved, dropped, duplicated, copied
//! from another record (other key, other salt) or the stream cut at a segment boundary without
//! [`Decryptor`] failing. The final segment may be empty (an empty record is one 16-byte tag).
//!
//! Clients encrypt before upload ([`EncryptingReader`], [`encrypt_to_vec`]) and decrypt after
//! download ([`decrypt_stream`], [`Decryptor`]); nodes only ever see ciphertext.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use futures::{Stream, StreamExt};
use rand::RngCore;
use tokio::io::{AsyncRead, ReadBuf};
use zeroize::Zeroizing;

const MAGIC: &[u8; 6] = b"PMRENC";
const VERSION: u8 = 1;
const SEGMENT_LOG2: u8 = 16;
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 1 << SEGMENT_LOG2;
/// Bytes of authentication tag per segment.
pub const TAG: usize = 16;
/// Bytes of the ciphertext header.
pub const HEADER: usize = 24;

/// Ciphertext length for a plaintext of `len` bytes.
pub const fn ciphertext_len(len: u64) -> u64 {
    let segments = if len == 0 {
        1
    } else {
        len.div_ceil(SEGMENT as u64)
    };
    HEADER as u64 + len + segments * TAG as u64
}

/// Errors of record decryption.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The stream does not start with a PMR ciphertext header.
    #[error("not a PMR encrypted record (bad or missing header): {0}")]
    BadHeader(&'static str),
    /// A segment failed authentication.
    #[error(
        "ciphertext segment {segment} failed authentication: the record was modified, its chunks \
         reordered or mixed with another record's, or the key is wrong"
    )]
    Tampered {
        /// Index of the failing segment, from 0.
        segment: u64,
    },
    /// The stream ended before its final segment.
    #[error("ciphertext is truncated after {segments} segment(s): the final segment is missing")]
    Truncated {
        /// Segments authenticated before the stream ended.
        segments: u64,
    },
    /// Bytes follow the final segment.
    #[error("ciphertext has bytes after its final segment")]
    TrailingData,
    /// The ciphertext source failed.
    #[error("reading the ciphertext failed: {0}")]
    Source(String),
}

/// A record's 32-byte data-encryption key. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// The DEK of a record key `s` (32-byte scalar encoding):
    /// `blake3::derive_key("pmr record dek v1", s)`.
    pub fn derive_from_record_key(s: &[u8; 32]) -> Self {
        Self(Zeroizing::new(blake3::derive_key("pmr record dek v1", s)))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }
}

fn nonce(salt: &[u8; 16], counter: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(salt);
    n[16..].copy_from_slice(&counter.to_be_bytes());
    n.into()
}

fn aad(header: &[u8; HEADER], last: bool) -> [u8; HEADER + 1] {
    let mut a = [0u8; HEADER + 1];
    a[..HEADER].copy_from_slice(header);
    a[HEADER] = last as u8;
    a
}

/// Incremental encryptor: feed plaintext in any pieces, collect ciphertext.
pub struct Encryptor {
    cipher: XChaCha20Poly1305,
    header: [u8; HEADER],
    salt: [u8; 16],
    counter: u64,
    pending: Vec<u8>,
    header_sent: bool,
}

impl Encryptor {
    /// A new encryption of one record under `key`, with a random salt.
    pub fn new(key: &DataKey) -> Self {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let mut header = [0u8; HEADER];
        header[..6].copy_from_slice(MAGIC);
        header[6] = VERSION;
        header[7] = SEGMENT_LOG2;
        header[8..].copy_from_slice(&salt);
        Self {
            cipher: key.cipher(),
            header,
            salt,
            counter: 0,
            pending: Vec::with_capacity(2 * SEGMENT),
            header_sent: false,
        }
    }

    /// Encrypts `plaintext`, appending ready ciphertext to `out`. A full segment is held back
    /// until more data (or [`Encryptor::finish`]) shows whether it is the last.
    pub fn update(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        self.emit_header(out);
        self.pending.extend_from_slice(plaintext);
        let mut start = 0;
        while self.pending.len() - start > SEGMENT {
            let seg_start = out.len();
            out.extend_from_slice(&self.pending[start..start + SEGMENT]);
            self.seal(out, seg_start, false);
            start += SEGMENT;
        }
        self.pending.drain(..start);
    }

    /// Seals the final segment.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.emit_header(out);
        let seg_start = out.len();
        out.extend_from_slice(&self.pending);
        self.seal(out, seg_start, true);
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(&self.header);
            self.header_sent = true;
        }
    }

    fn seal(&mut self, out: &mut Vec<u8>, seg_start: usize, last: bool) {
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &nonce(&self.salt, self.counter),
                &aad(&self.header, last),
                &mut out[seg_start..],
            )
            // Only fails for plaintexts beyond 256 GiB; segments are 64 KiB.
            .expect("segment within XChaCha20 limits");
        out.extend_from_slice(&tag);
        self.counter += 1;
    }
}

/// Incremental decryptor: feed ciphertext in any pieces, collect verified plaintext.
pub struct Decryptor {
    cipher: XChaCha20Poly1305,
    header: Option<[u8; HEADER]>,
    segment: usize,
    counter: u64,
    pending: Vec<u8>,
}

impl Decryptor {
    /// A decryptor for a record encrypted under `key`.
    pub fn new(key: &DataKey) -> Self {
        Self {
            cipher: key.cipher(),
            header: None,
            segment: SEGMENT,
            counter: 0,
            pending: Vec::with_capacity(2 * (SEGMENT + TAG)),
        }
    }

    /// Decrypts `ciphertext`, appending authenticated plaintext to `out`.
    pub fn update(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.pending.extend_from_slice(ciphertext);
        let mut start = 0;
        if self.header.is_none() {
            if self.pending.len() < HEADER {
                return Ok(());
            }
            self.parse_header()?;
            start = HEADER;
        }
        let full = self.segment + TAG;
        while self.pending.len() - start > full {
            self.open(start, full, false, out)?;
            start += full;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// Decrypts the final segment; fails if the stream was cut short.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.header.is_none() {
            if self.pending.len() < HEADER {
                return Err(CryptoError::BadHeader("shorter than the 24-byte header"));
            }
            self.parse_header()?;
            self.pending.drain(..HEADER);
        }
        let len = self.pending.len();
        if len < TAG {
            return Err(CryptoError::Truncated {
                segments: self.counter,
            });
        }
        if len > self.segment + TAG {
            return Err(CryptoError::TrailingData);
        }
        let mark = out.len();
        match self.open(0, len, true, out) {
            Ok(()) => Ok(()),
            Err(e) => {
                // A full segment that opens as non-final means the real end was cut off.
                out.truncate(mark);
                if len == self.segment + TAG && self.open(0, len, false, out).is_ok() {
                    out.truncate(mark);
                    return Err(CryptoError::Truncated {
                        segments: self.counter,
                    });
                }
                Err(e)
            }
        }
    }

    fn parse_header(&mut self) -> Result<(), CryptoError> {
        let h: [u8; HEADER] = self.pending[..HEADER]
            .try_into()
            .map_err(|_| CryptoError::BadHeader("short header"))?;
        if &h[..6] != MAGIC {
            return Err(CryptoError::BadHeader("wrong magic"));
        }
        if h[6] != VERSION {
            return Err(CryptoError::BadHeader("unknown version"));
        }
        if !(12..=20).contains(&h[7]) {
            return Err(CryptoError::BadHeader("segment size out of range"));
        }
        self.segment = 1 << h[7];
        self.header = Some(h);
        Ok(())
    }

    fn open(
        &mut self,
        start: usize,
        len: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let header = self.header.ok_or(CryptoError::BadHeader("missing"))?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&header[8..]);
        let body = len - TAG;
        let mark = out.len();
        out.extend_from_slice(&self.pending[start..start + body]);
        let tag = Tag::clone_from_slice(&self.pending[start + body..start + len]);
        let res = self.cipher.decrypt_in_place_detached(
            &nonce(&salt, self.counter),
            &aad(&header, last),
            &mut out[mark..],
            &tag,
        );
        if res.is_err() {
            out.truncate(mark);
            return Err(CryptoError::Tampered {
                segment: self.counter,
            });
        }
        self.counter += 1;
        Ok(())
    }
}

/// Encrypts a whole in-memory record.
pub fn encrypt_to_vec(key: &DataKey, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ciphertext_len(plaintext.len() as u64) as usize);
    let mut e = Encryptor::new(key);
    e.update(plaintext, &mut out);
    e.finish(&mut out);
    out
}

/// Decrypts a whole in-memory record.
pub fn decrypt_to_vec(key: &DataKey, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(ciphertext.len());
    let mut d = Decryptor::new(key);
    d.update(ciphertext, &mut out)?;
    d.finish(&mut out)?;
    Ok(out)
}

/// An [`AsyncRead`] yielding the ciphertext of the plaintext read from `inner`: pass it to
/// `ContentNode::put_stream` to upload a record of any size with bounded memory.
pub struct EncryptingReader<R> {
    inner: R,
    enc: Option<Encryptor>,
    out: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> EncryptingReader<R> {
    /// Encrypts what `inner` yields under `key`.
    pub fn new(key: &DataKey, inner: R) -> Self {
        Self {
            inner,
            enc: Some(Encryptor::new(key)),
            out: Vec::with_capacity(2 * SEGMENT),
            pos: 0,
            scratch: vec![0u8; SEGMENT].into_boxed_slice(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for EncryptingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.pos);
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            this.out.clear();
            this.pos = 0;
            let Some(enc) = this.enc.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = rb.filled();
                    if filled.is_empty() {
                        if let Some(enc) = this.enc.take() {
                            enc.finish(&mut this.out);
                        }
                    } else {
                        enc.update(filled, &mut this.out);
                    }
                }
            }
        }
    }
}

/// Decrypts a stream of ciphertext pieces (e.g. `ContentNode::get_stream`) into plaintext
/// pieces; the last item is an error if the ciphertext was tampered with or cut short.
pub fn decrypt_stream<S, E>(
    key: &DataKey,
    ciphertext: S,
) -> futures::stream::BoxStream<'static, Result<Bytes, CryptoError>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display,
{
    let state = (ciphertext, Some(Decryptor::new(key)));
    futures::stream::unfold(state, |(mut src, dec)| async move {
        let mut dec = dec?;
        loop {
            let mut out = Vec::new();
            match src.next().await {
                Some(Ok(piece)) => {
                    if let Err(e) = dec.update(&piece, &mut out) {
                        return Some((Err(e), (src, None)));
                    }
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), (src, Some(dec))));
                    }
                }
                Some(Err(e)) => {
                    return Some((Err(CryptoError::Source(e.to_string())), (src, None)));
                }
                None => {
                    return match dec.finish(&mut out) {
                        Ok(()) => Some((Ok(Bytes::from(out)), (src, None))),
                        Err(e) => Some((Err(e), (src, None))),
                    };
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_match_formula() {
        let k = DataKey::generate();
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT] {
            let pt = vec![7u8; len];
            let ct = encrypt_to_vec(&k, &pt);
            assert_eq!(ct.len() as u64, ciphertext_len(len as u64));
            assert_eq!(decrypt_to_vec(&k, &ct).expect("decrypt"), pt);
        }
    }

    #[test]
    fn dek_derivation_is_stable_and_keyed() {
        let a = DataKey::derive_from_record_key(&[1u8; 32]);
        let b = DataKey::derive_from_record_key(&[1u8; 32]);
        let c = DataKey::derive_from_record_key(&[2u8; 32]);
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
        assert_eq!(format!("{a:?}"), "DataKey(..)");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_split_round_trips(len in 0usize..200_000, cut in 1usize..70_000) {
            let k = DataKey::generate();
            let pt: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut e = Encryptor::new(&k);
            let mut ct = Vec::new();
            for p in pt.chunks(cut) { e.update(p, &mut ct); }
            e.finish(&mut ct);
            let mut d = Decryptor::new(&k);
            let mut out = Vec::new();
            for p in ct.chunks(cut / 2 + 1) { d.update(p, &mut out).expect("update"); }
            d.finish(&mut out).expect("finish");
            prop_assert_eq!(out, pt);
        }
    }
}
