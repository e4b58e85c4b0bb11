//! Rounds, heights, addresses, hashes and signatures.

use malachitebft_app_channel::app::types::core::Round;
use malachitebft_signing_ed25519::Signature;
use pmr_primitives::B256;

use super::*;
use crate::context::{Address, BlockHash, Height};

pub(super) fn put_round(w: &mut Writer, r: Round) {
    w.u64(r.as_i64() as u64);
}

pub(super) fn get_round(r: &mut Reader<'_>) -> Result<Round, CodecError> {
    let v = r.u64("round")? as i64;
    match v {
        -1 => Ok(Round::Nil),
        v if (0..=u32::MAX as i64).contains(&v) => Ok(Round::new(v as u32)),
        _ => Err(CodecError::Invalid("round")),
    }
}

pub(super) fn put_height(w: &mut Writer, h: Height) {
    w.u64(h.0);
}

pub(super) fn get_height(r: &mut Reader<'_>) -> Result<Height, CodecError> {
    Ok(Height(r.u64("height")?))
}

pub(super) fn put_address(w: &mut Writer, a: &Address) {
    w.fixed(a.as_bytes());
}

pub(super) fn get_address(r: &mut Reader<'_>) -> Result<Address, CodecError> {
    let b: [u8; 20] = r.fixed("address")?;
    Address::from_slice(&b).ok_or(CodecError::Invalid("address"))
}

pub(super) fn put_hash(w: &mut Writer, h: &BlockHash) {
    w.fixed(h.0.as_slice());
}

pub(super) fn get_hash(r: &mut Reader<'_>) -> Result<BlockHash, CodecError> {
    Ok(BlockHash(B256::from(r.fixed::<32>("block hash")?)))
}

pub(super) fn put_sig(w: &mut Writer, s: &Signature) {
    w.fixed(&s.to_bytes());
}

pub(super) fn get_sig(r: &mut Reader<'_>) -> Result<Signature, CodecError> {
    Ok(Signature::from_bytes(r.fixed::<64>("signature")?))
}
