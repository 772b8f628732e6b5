//! Property tests: the decoders survive any input, do not care how it is chunked, and invert the encoders.

use bytes::BytesMut;
use floe_proto::{
    decode_v2_number_reply, decode_v2_reply, ClientCodec, Op, Reply, Request, ServerCodec, Status,
    V2Request,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tokio_util::codec::{Decoder, Encoder};

/// Feeds `chunks` in order and records every decoder output, ending at the first error or after end of input.
fn decode_chunked(max_count: u32, chunks: &[&[u8]]) -> Vec<String> {
    let mut codec = ServerCodec::new(max_count);
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(item)) => out.push(format!("{item:?}")),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error: {e}"));
                    return out;
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut src) {
            Ok(Some(item)) => out.push(format!("{item:?}")),
            Ok(None) => return out,
            Err(e) => {
                out.push(format!("error: {e}"));
                return out;
            }
        }
    }
}

/// Splits `bytes` at cut points derived from `cuts`, which may be empty, unsorted or out of range.
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// Frame-shaped bytes, mostly plausible, so the fuzzing reaches past the first byte.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let v1 = (prop_oneof![Just(0u8), Just(1u8), any::<u8>()], any::<u8>())
        .prop_map(|(cmd, count)| vec![cmd, count]);
    let v2 = (
        prop_oneof![4 => 1u8..=4, 1 => any::<u8>()],
        any::<u32>(),
        prop_oneof![0u32..=20, any::<u32>()],
        prop::collection::vec(any::<u8>(), 0..12),
    )
        .prop_map(|(op, req_id, count, tag)| {
            let mut frame = vec![0xF1, op];
            frame.extend_from_slice(&req_id.to_be_bytes());
            frame.extend_from_slice(&count.to_be_bytes());
            frame.push(tag.len() as u8);
            frame.extend_from_slice(&tag);
            frame
        });
    prop_oneof![3 => v1, 3 => v2, 1 => prop::collection::vec(any::<u8>(), 0..16)]
}

fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(frame_like(), 0..24).prop_map(|frames| frames.concat()),
    ]
}

fn valid_request(max_count: u32) -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::V1Single),
        any::<u8>().prop_map(|count| Request::V1Batch { count }),
        (any::<u32>(), 1..=max_count)
            .prop_map(|(req_id, count)| Request::V2(V2Request::snowflake(req_id, count))),
        // At most 63 characters of at most 4 bytes each, so the tag always fits its length byte.
        (any::<u32>(), 1..=max_count, "\\PC{1,63}")
            .prop_map(|(req_id, count, tag)| Request::V2(V2Request::segment(req_id, count, tag))),
        (any::<u32>(), 1..=max_count, "[a-z_.-]{1,64}")
            .prop_map(|(req_id, count, name)| Request::V2(V2Request::number(req_id, count, name))),
        (any::<u32>(), any::<u32>()).prop_map(|(req_id, count)| Request::V2(V2Request {
            op: Op::Ping,
            req_id,
            count,
            tag: String::new()
        })),
    ]
}

fn v2_reply() -> impl Strategy<Value = Reply> {
    let error_status = prop_oneof![
        Just(Status::BadRequest),
        Just(Status::UnknownTag),
        Just(Status::Unavailable),
        Just(Status::OverLimit),
        Just(Status::Internal)
    ];
    prop_oneof![
        (any::<u32>(), prop::collection::vec(any::<u64>(), 0..600))
            .prop_map(|(req_id, ids)| Reply::V2Ok { req_id, ids }),
        (any::<u32>(), error_status, "\\PC{0,200}").prop_map(|(req_id, status, message)| {
            Reply::V2Error {
                req_id,
                status,
                message,
            }
        }),
    ]
}

/// A number reply: up to 60 characters of up to 4 bytes each fit the one length byte.
fn number_reply() -> impl Strategy<Value = Reply> {
    (any::<u32>(), prop::collection::vec("\\PC{0,60}", 0..100))
        .prop_map(|(req_id, numbers)| Reply::V2Numbers { req_id, numbers })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Integration tests have no lib.rs for the default persistence to find; keep failures beside this file.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn decoding_never_panics_and_ignores_chunking(
        bytes in input_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..32),
        max_count in prop_oneof![Just(floe_proto::DEFAULT_MAX_COUNT), 0u32..=20],
    ) {
        let whole = decode_chunked(max_count, &[&bytes]);
        let chunked = decode_chunked(max_count, &split(&bytes, &cuts));
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn byte_at_a_time_matches_whole(bytes in input_bytes()) {
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(decode_chunked(100, &[&bytes]), decode_chunked(100, &singles));
    }

    #[test]
    fn requests_round_trip(
        requests in prop::collection::vec(valid_request(1_000), 0..40),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut client = ClientCodec::default();
        let mut wire = BytesMut::new();
        for request in &requests {
            client.encode(request, &mut wire).unwrap();
        }
        prop_assert_eq!(client.pending(), requests.len());

        let mut server = ServerCodec::new(1_000);
        let mut src = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in split(&wire, &cuts) {
            src.extend_from_slice(chunk);
            while let Some(item) = server.decode(&mut src).unwrap() {
                decoded.push(item.unwrap());
            }
        }
        prop_assert!(src.is_empty());
        prop_assert_eq!(decoded, requests);
    }

    #[test]
    fn v2_replies_round_trip(reply in v2_reply()) {
        let mut wire = BytesMut::new();
        reply.encode(&mut wire).unwrap();
        let expected_len = match &reply {
            Reply::V2Ok { ids, .. } => 10 + 8 * ids.len(),
            Reply::V2Error { message, .. } => 10 + message.len(),
            _ => unreachable!(),
        };
        prop_assert_eq!(wire.len(), expected_len);

        let mut src = wire.clone();
        prop_assert_eq!(decode_v2_reply(&mut src, 1_000).unwrap(), Some(reply.clone()));
        prop_assert!(src.is_empty());

        // Through the codec too, one byte short of whole first, which must not yield a reply.
        let (Reply::V2Ok { req_id, .. } | Reply::V2Error { req_id, .. }) = &reply else { unreachable!() };
        let mut client = ClientCodec::new(1_000);
        client.encode(Request::V2(V2Request::ping(*req_id)), &mut BytesMut::new()).unwrap();
        let mut src = BytesMut::from(&wire[..wire.len() - 1]);
        prop_assert_eq!(client.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&wire[wire.len() - 1..]);
        prop_assert_eq!(client.decode(&mut src).unwrap(), Some(reply));
    }

    #[test]
    fn number_replies_round_trip(reply in number_reply(), cut in any::<usize>()) {
        let mut wire = BytesMut::new();
        reply.encode(&mut wire).unwrap();
        let Reply::V2Numbers { req_id, numbers } = &reply else { unreachable!() };
        let body: usize = 4 + numbers.iter().map(|n| 1 + n.len()).sum::<usize>();
        prop_assert_eq!(wire.len(), 10 + body);
        prop_assert_eq!(&wire[6..10], &(body as u32).to_be_bytes());

        let mut src = wire.clone();
        prop_assert_eq!(decode_v2_number_reply(&mut src, 1_000).unwrap(), Some(reply.clone()));
        prop_assert!(src.is_empty());

        // Through the codec, in two pieces: a number request's reply is read as numbers.
        let mut client = ClientCodec::new(1_000);
        let request = Request::V2(V2Request::number(*req_id, 1, "order_no"));
        client.encode(request, &mut BytesMut::new()).unwrap();
        let cut = cut % wire.len();
        let mut src = BytesMut::from(&wire[..cut]);
        prop_assert_eq!(client.decode(&mut src).unwrap(), None);
        src.extend_from_slice(&wire[cut..]);
        prop_assert_eq!(client.decode(&mut src).unwrap(), Some(reply));
    }

    #[test]
    fn number_bodies_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..300),
        count in 0u32..8,
        lie in prop_oneof![Just(0i64), -3i64..3],
    ) {
        // A header that announces the body (give or take a few bytes), then anything.
        let mut wire = vec![0xF1, 0, 0, 0, 0, 1];
        let announced = (body.len() as i64 + 4 + lie).max(0) as u32;
        wire.extend_from_slice(&announced.to_be_bytes());
        wire.extend_from_slice(&count.to_be_bytes());
        wire.extend_from_slice(&body);
        let mut src = BytesMut::from(&wire[..]);
        let _ = decode_v2_number_reply(&mut src, 10);
    }

    #[test]
    fn v1_replies_round_trip(ids in prop::collection::vec(any::<u64>(), 0..=255), single in any::<u64>()) {
        let mut client = ClientCodec::default();
        let count = ids.len() as u8;
        client.encode(Request::V1Batch { count }, &mut BytesMut::new()).unwrap();
        client.encode(Request::V1Single, &mut BytesMut::new()).unwrap();

        let mut wire = BytesMut::new();
        floe_proto::encode_v1_batch(&ids, &mut wire).unwrap();
        floe_proto::encode_v1_single(single, &mut wire);
        prop_assert_eq!(wire.len(), 1 + 8 * ids.len() + 8);

        prop_assert_eq!(client.decode(&mut wire).unwrap(), Some(Reply::V1Batch(ids)));
        prop_assert_eq!(client.decode(&mut wire).unwrap(), Some(Reply::V1Single(single)));
        prop_assert!(wire.is_empty());
    }
}
