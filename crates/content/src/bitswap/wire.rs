//! The bitswap 1.2.0 wire format: the protobuf `Message` of the bitswap spec, hand-written as
//! prost structs, each message prefixed by its unsigned-varint length.
//!
//! This module is public so tests and tools can speak raw bitswap; the node only uses it
//! through `ContentNode`.

use bytes::Bytes;
use cid::Cid;
use futures::{AsyncRead, AsyncReadExt};

use pmr_blob::ids::{block_cid, BLAKE3};

/// Protocol id of bitswap 1.2.0.
pub const PROTOCOL: &str = "/ipfs/bitswap/1.2.0";
/// Largest message the spec allows: 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// A bitswap message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// Wants and cancels of the sender.
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Bitswap 1.0.0 blocks (ignored by this implementation).
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub blocks: Vec<Bytes>,
    /// Blocks with their CID prefix.
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<PayloadBlock>,
    /// HAVE / DONT_HAVE answers.
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    /// Bytes the sender still has queued for the receiver.
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

/// A wantlist (full or a delta).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    /// Entries.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// Whether this replaces the receiver's copy of the sender's wantlist.
    #[prost(bool, tag = "2")]
    pub full: bool,
}

/// A wantlist entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// CID bytes of the wanted block.
    #[prost(bytes = "bytes", tag = "1")]
    pub block: Bytes,
    /// Priority (higher first).
    #[prost(int32, tag = "2")]
    pub priority: i32,
    /// This entry revokes an earlier want.
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    /// [`WantType`].
    #[prost(enumeration = "WantType", tag = "4")]
    pub want_type: i32,
    /// Answer DONT_HAVE if the block is not there.
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

/// What a want asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WantType {
    /// Send the block.
    Block = 0,
    /// Say whether you have it.
    Have = 1,
}

/// A block and the prefix of its CID (version, codec, multihash code and length).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PayloadBlock {
    /// CID prefix.
    #[prost(bytes = "bytes", tag = "1")]
    pub prefix: Bytes,
    /// Block bytes.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// HAVE or DONT_HAVE for a CID.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    /// CID bytes.
    #[prost(bytes = "bytes", tag = "1")]
    pub cid: Bytes,
    /// [`PresenceType`].
    #[prost(enumeration = "PresenceType", tag = "2")]
    pub r#type: i32,
}

/// Presence answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PresenceType {
    /// The sender has the block.
    Have = 0,
    /// The sender does not have the block.
    DontHave = 1,
}

/// Errors reading a message off a stream.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces more than the limit.
    #[error("bitswap message of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// The announced length, in bytes.
        len: u64,
        /// The largest message accepted, in bytes.
        max: usize,
    },
    /// The length prefix is not a valid varint.
    #[error("malformed bitswap length prefix")]
    BadLength,
    /// The body is not a bitswap protobuf.
    #[error("undecodable bitswap message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The stream failed or ended mid-message.
    #[error("bitswap stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends `v` as an unsigned varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        v |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Encodes `msg` with its length prefix.
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    let body = prost::Message::encoded_len(msg);
    let mut out = Vec::with_capacity(body + 10);
    put_varint(&mut out, body as u64);
    prost::Message::encode(msg, &mut out).expect("Vec grows as needed");
    out
}

/// Reads one length-prefixed message. `Ok(None)` on a clean end of stream. The length is
/// checked against `max` before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Message>, WireError> {
    let mut len = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        match r.read(&mut b).await? {
            0 if i == 0 => return Ok(None),
            0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            _ => {}
        }
        len |= ((b[0] & 0x7f) as u64) << (7 * i);
        if b[0] & 0x80 == 0 {
            if len > max as u64 {
                return Err(WireError::Oversized { len, max });
            }
            let mut buf = vec![0u8; len as usize];
            r.read_exact(&mut buf).await?;
            return Ok(Some(<Message as prost::Message>::decode(Bytes::from(buf))?));
        }
    }
    Err(WireError::BadLength)
}

/// The CID prefix of a CIDv1: version, codec, multihash code, digest length.
pub fn cid_prefix(cid: &Cid) -> Bytes {
    let mut out = Vec::with_capacity(8);
    put_varint(&mut out, 1);
    put_varint(&mut out, cid.codec());
    put_varint(&mut out, cid.hash().code());
    put_varint(&mut out, cid.hash().size() as u64);
    Bytes::from(out)
}

/// Why a received block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    /// Not a CIDv1 prefix.
    Malformed,
    /// A hash other than blake3-256.
    UnsupportedHash,
}

/// The CID of a received block: the prefix's codec over the blake3 of `data`.
pub fn block_cid_from_prefix(prefix: &[u8], data: &[u8]) -> Result<Cid, PrefixError> {
    let mut fields = [0u64; 4];
    let mut pos = 0;
    for f in &mut fields {
        let (v, n) = get_varint(&prefix[pos..]).ok_or(PrefixError::Malformed)?;
        *f = v;
        pos += n;
    }
    let [version, codec, code, len] = fields;
    if version != 1 || pos != prefix.len() {
        return Err(PrefixError::Malformed);
    }
    if code != BLAKE3 || len != 32 {
        return Err(PrefixError::UnsupportedHash);
    }
    Ok(block_cid(codec, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmr_blob::ids::RAW;

    #[tokio::test]
    async fn frame_round_trip_and_limits() {
        let cid = block_cid(RAW, b"abc");
        let msg = Message {
            wantlist: Some(Wantlist {
                entries: vec![Entry {
                    block: Bytes::from(cid.to_bytes()),
                    priority: 1,
                    cancel: false,
                    want_type: WantType::Have as i32,
                    send_dont_have: true,
                }],
                full: false,
            }),
            payload: vec![PayloadBlock {
                prefix: cid_prefix(&cid),
                data: Bytes::from_static(b"abc"),
            }],
            ..Default::default()
        };
        let frame = encode_frame(&msg);
        let mut r = futures::io::Cursor::new(frame.clone());
        let got = read_frame(&mut r, MAX_MESSAGE_SIZE)
            .await
            .expect("read")
            .expect("some");
        assert_eq!(got, msg);
        assert!(read_frame(&mut r, MAX_MESSAGE_SIZE)
            .await
            .expect("eof")
            .is_none());
        let p = &got.payload[0];
        assert_eq!(block_cid_from_prefix(&p.prefix, &p.data), Ok(cid));
        assert_ne!(block_cid_from_prefix(&p.prefix, b"abd"), Ok(cid));

        let mut r = futures::io::Cursor::new(frame);
        let err = read_frame(&mut r, 8).await.expect_err("oversized");
        assert!(matches!(err, WireError::Oversized { max: 8, .. }), "{err}");
    }
}
