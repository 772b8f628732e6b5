//! The client decoder must never panic or over-allocate on whatever a peer sends.
#![no_main]

use bytes::BytesMut;
use floe_proto::{ClientCodec, Request, V2Request};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut codec = ClientCodec::new(1_000);
    let request = match selector % 4 {
        0 => Request::V1Single,
        1 => Request::V1Batch { count: selector },
        2 => Request::V2(V2Request::number(u32::from(selector), 1, "n")),
        _ => Request::V2(V2Request::snowflake(u32::from(selector), 1)),
    };
    codec.encode(request, &mut BytesMut::new()).unwrap();
    let mut src = BytesMut::from(rest);
    while let Ok(Some(_)) = codec.decode(&mut src) {}
});
