//! Value sync: status, requests and responses (decided values with their certificates).

use std::ops::RangeInclusive;

use malachitebft_app_channel::app::types::codec::HasEncodedLen;
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_sync::{self as sync, RawDecidedValue};

use super::certificate::*;
use super::primitives::*;
use super::*;
use crate::context::{Height, PmrContext};

codec_impl!(
    sync::Status<PmrContext>,
    |w, v| {
        w.bytes(&v.peer_id.to_bytes());
        put_height(w, v.tip_height);
        put_height(w, v.history_min_height);
    },
    |r| {
        let peer_id =
            PeerId::from_bytes(r.bytes("peer id")?).map_err(|_| CodecError::Invalid("peer id"))?;
        Ok(sync::Status {
            peer_id,
            tip_height: get_height(r)?,
            history_min_height: get_height(r)?,
        })
    }
);

codec_impl!(
    sync::Request<PmrContext>,
    |w, v| {
        let sync::Request::ValueRequest(req) = v;
        put_height(w, *req.range.start());
        put_height(w, *req.range.end());
    },
    |r| {
        let start = get_height(r)?;
        let end = get_height(r)?;
        let range: RangeInclusive<Height> = start..=end;
        Ok(sync::Request::ValueRequest(sync::ValueRequest::new(range)))
    }
);

pub(super) fn put_response(w: &mut Writer, v: &sync::Response<PmrContext>) {
    let sync::Response::ValueResponse(resp) = v;
    put_height(w, resp.start_height);
    w.len(resp.values.len());
    for value in &resp.values {
        w.bytes(&value.value_bytes);
        put_ext_cert(w, &value.certificate);
    }
}

codec_impl!(
    sync::Response<PmrContext>,
    |w, v| { put_response(w, v) },
    |r| {
        let start_height = get_height(r)?;
        let n = r.len("sync values", 4 + 8 + 8 + 32 + 4)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let value_bytes = Bytes::copy_from_slice(r.bytes("value bytes")?);
            let certificate = get_ext_cert(r)?;
            values.push(RawDecidedValue::new(value_bytes, certificate));
        }
        Ok(sync::Response::ValueResponse(sync::ValueResponse::new(
            start_height,
            values,
        )))
    }
);

impl HasEncodedLen<sync::Response<PmrContext>> for PmrCodec {
    fn encoded_len(&self, msg: &sync::Response<PmrContext>) -> Result<usize, CodecError> {
        let mut w = Writer::default();
        put_response(&mut w, msg);
        Ok(w.0.len())
    }
}
