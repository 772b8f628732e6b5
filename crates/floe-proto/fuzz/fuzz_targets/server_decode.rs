//! The server decoder must never panic, and must give the same items whether input arrives whole or byte by byte.
#![no_main]

use bytes::BytesMut;
use floe_proto::ServerCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fn decode(data: &[u8], chunk: usize) -> Vec<String> {
    let mut codec = ServerCodec::new(1_000);
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        src.extend_from_slice(piece);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(item)) => out.push(format!("{item:?}")),
                Ok(None) => break,
                Err(e) => {
                    out.push(e.to_string());
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(decode(data, data.len()), decode(data, 1));
});
