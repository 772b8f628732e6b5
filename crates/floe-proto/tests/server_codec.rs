//! The server codec against exact bytes: request layouts, partial and pipelined frames, and every limit.

use bytes::BytesMut;
use floe_proto::{
    encode_v1_batch, encode_v1_single, encode_v2_error, encode_v2_ok, Op, ProtoError, Rejection,
    Reply, Request, ServerCodec, Status, V2Request,
};
use tokio_util::codec::{Decoder, Encoder};

/// Decodes every whole frame in `bytes`, failing the test on a decoder error or leftover bytes.
#[track_caller]
fn decode_all(codec: &mut ServerCodec, bytes: &[u8]) -> Vec<Result<Request, Rejection>> {
    let mut src = BytesMut::from(bytes);
    let mut items = Vec::new();
    while let Some(item) = codec.decode(&mut src).expect("decoder error") {
        items.push(item);
    }
    assert!(src.is_empty(), "{} bytes left undecoded", src.len());
    items
}

#[track_caller]
fn decode_one(bytes: &[u8]) -> Result<Request, Rejection> {
    let mut items = decode_all(&mut ServerCodec::default(), bytes);
    assert_eq!(items.len(), 1, "expected exactly one frame in {bytes:02x?}");
    items.remove(0)
}

fn v2_frame(op: u8, req_id: u32, count: u32, tag: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xF1, op];
    frame.extend_from_slice(&req_id.to_be_bytes());
    frame.extend_from_slice(&count.to_be_bytes());
    frame.push(u8::try_from(tag.len()).unwrap());
    frame.extend_from_slice(tag);
    frame
}

fn encoded(request: &Request) -> Vec<u8> {
    let mut dst = BytesMut::new();
    request.encode(&mut dst).unwrap();
    dst.to_vec()
}

fn reply_bytes(reply: Reply) -> Vec<u8> {
    let mut dst = BytesMut::new();
    ServerCodec::default().encode(reply, &mut dst).unwrap();
    dst.to_vec()
}

#[test]
fn v1_single_request_ignores_count() {
    assert_eq!(decode_one(&[0, 0]), Ok(Request::V1Single));
    assert_eq!(decode_one(&[0, 42]), Ok(Request::V1Single));
    assert_eq!(encoded(&Request::V1Single), [0, 0]);
}

#[test]
fn v1_batch_requests_at_0_1_and_255() {
    for count in [0u8, 1, 255] {
        assert_eq!(decode_one(&[1, count]), Ok(Request::V1Batch { count }));
        assert_eq!(encoded(&Request::V1Batch { count }), [1, count]);
    }
}

#[test]
fn v2_snowflake_request_bytes() {
    let bytes = [0xF1, 1, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 5, 0];
    let request = Request::V2(V2Request::snowflake(0x0102_0304, 5));
    assert_eq!(decode_one(&bytes), Ok(request.clone()));
    assert_eq!(encoded(&request), bytes);
}

#[test]
fn v2_segment_request_bytes() {
    let bytes = [
        0xF1, 2, 0, 0, 0, 7, 0, 0, 0x01, 0x00, 5, b'o', b'r', b'd', b'e', b'r',
    ];
    let request = Request::V2(V2Request::segment(7, 256, "order"));
    assert_eq!(decode_one(&bytes), Ok(request.clone()));
    assert_eq!(encoded(&request), bytes);
}

#[test]
fn v2_ping_request_bytes() {
    let bytes = [0xF1, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0];
    let request = Request::V2(V2Request::ping(u32::MAX));
    assert_eq!(decode_one(&bytes), Ok(request.clone()));
    assert_eq!(encoded(&request), bytes);
}

#[test]
fn v2_snowflake_and_ping_ignore_their_tag() {
    assert_eq!(
        decode_one(&v2_frame(1, 3, 2, b"ignored")),
        Ok(Request::V2(V2Request::snowflake(3, 2)))
    );
    // Even a tag that is not UTF-8, because it is never read.
    assert_eq!(
        decode_one(&v2_frame(3, 4, 0, &[0xFF])),
        Ok(Request::V2(V2Request::ping(4)))
    );
}

#[test]
fn v2_ping_count_is_carried_and_not_limited() {
    let item = decode_one(&v2_frame(3, 1, u32::MAX, b""));
    assert_eq!(
        item,
        Ok(Request::V2(V2Request {
            op: Op::Ping,
            req_id: 1,
            count: u32::MAX,
            tag: String::new()
        }))
    );
}

#[test]
fn v1_reply_layouts() {
    let mut dst = BytesMut::new();
    encode_v1_single(0x0102_0304_0506_0708, &mut dst);
    assert_eq!(dst.to_vec(), [1, 2, 3, 4, 5, 6, 7, 8]);

    let mut dst = BytesMut::new();
    encode_v1_batch(&[1, 0x0102_0304_0506_0708], &mut dst).unwrap();
    assert_eq!(
        dst.to_vec(),
        [2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]
    );

    let mut dst = BytesMut::new();
    encode_v1_batch(&[], &mut dst).unwrap();
    assert_eq!(dst.to_vec(), [0]);

    assert_eq!(reply_bytes(Reply::V1Single(u64::MAX)), [0xFF; 8]);
    assert_eq!(
        reply_bytes(Reply::V1Batch(vec![9])),
        [1, 0, 0, 0, 0, 0, 0, 0, 9]
    );
}

#[test]
fn v1_batch_of_255_is_whole_and_256_is_refused_without_writing() {
    let ids: Vec<u64> = (0..255).collect();
    let mut dst = BytesMut::new();
    encode_v1_batch(&ids, &mut dst).unwrap();
    assert_eq!(dst.len(), 1 + 8 * 255);
    assert_eq!(dst[0], 255);
    assert_eq!(&dst[dst.len() - 8..], &254u64.to_be_bytes());

    let ids: Vec<u64> = (0..256).collect();
    let mut dst = BytesMut::new();
    let err = encode_v1_batch(&ids, &mut dst).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::TooManyIds {
                count: 256,
                limit: 255,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(dst.is_empty());
}

#[test]
fn v2_ok_reply_layout() {
    let mut dst = BytesMut::new();
    encode_v2_ok(0x0A0B_0C0D, &[1, 0x0102_0304_0506_0708], &mut dst).unwrap();
    let mut expected = vec![0xF1, 0, 0x0A, 0x0B, 0x0C, 0x0D, 0, 0, 0, 2];
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(dst.to_vec(), expected);
}

#[test]
fn v2_ping_reply_has_len_0() {
    assert_eq!(
        reply_bytes(Reply::V2Ok {
            req_id: 9,
            ids: vec![]
        }),
        [0xF1, 0, 0, 0, 0, 9, 0, 0, 0, 0]
    );
}

#[test]
fn v2_error_reply_layout_for_every_status() {
    let statuses = [
        (Status::BadRequest, 1),
        (Status::UnknownTag, 2),
        (Status::Unavailable, 3),
        (Status::OverLimit, 4),
        (Status::Internal, 5),
    ];
    for (status, byte) in statuses {
        assert_eq!(u8::from(status), byte);
        assert_eq!(Status::try_from(byte).unwrap(), status);
        let reply = Reply::V2Error {
            req_id: 0x0000_0102,
            status,
            message: "no".to_owned(),
        };
        assert_eq!(
            reply_bytes(reply),
            [0xF1, byte, 0, 0, 1, 2, 0, 0, 0, 2, b'n', b'o']
        );
    }
    assert_eq!(Status::try_from(0).unwrap(), Status::Ok);
    assert!(matches!(
        Status::try_from(6),
        Err(ProtoError::UnknownStatus(6))
    ));
}

#[test]
fn error_reply_with_ok_status_is_refused() {
    let mut dst = BytesMut::new();
    let err = encode_v2_error(1, Status::Ok, "oops", &mut dst).unwrap_err();
    assert!(matches!(err, ProtoError::OkStatusInErrorReply), "{err:?}");
    assert!(dst.is_empty());
}

#[test]
fn frame_fed_one_byte_at_a_time_yields_one_request_at_the_end() {
    let frame = v2_frame(2, 77, 10, b"user");
    let mut codec = ServerCodec::default();
    let mut src = BytesMut::new();
    let mut items = Vec::new();
    for (i, &byte) in frame.iter().enumerate() {
        src.extend_from_slice(&[byte]);
        if let Some(item) = codec.decode(&mut src).unwrap() {
            items.push(item);
        } else {
            assert_eq!(src.len(), i + 1, "a partial frame must stay in the buffer");
        }
    }
    assert_eq!(items, [Ok(Request::V2(V2Request::segment(77, 10, "user")))]);
    assert!(src.is_empty());
}

#[test]
fn v1_frame_fed_one_byte_at_a_time_waits_for_the_count() {
    let mut codec = ServerCodec::default();
    let mut src = BytesMut::from(&[1u8][..]);
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    assert_eq!(src.len(), 1);
    src.extend_from_slice(&[200]);
    assert_eq!(
        codec.decode(&mut src).unwrap(),
        Some(Ok(Request::V1Batch { count: 200 }))
    );
}

#[test]
fn pipelined_v1_and_v2_frames_decode_in_order() {
    let mut bytes = vec![1, 3];
    bytes.extend(v2_frame(1, 5, 8, b""));
    bytes.extend([0, 0]);
    let items = decode_all(&mut ServerCodec::default(), &bytes);
    assert_eq!(
        items,
        [
            Ok(Request::V1Batch { count: 3 }),
            Ok(Request::V2(V2Request::snowflake(5, 8))),
            Ok(Request::V1Single)
        ]
    );
}

#[test]
fn ten_thousand_pipelined_v1_frames() {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000u32 {
        if i % 3 == 0 {
            bytes.extend([0, 0]);
            expected.push(Ok(Request::V1Single));
        } else {
            let count = (i % 256) as u8;
            bytes.extend([1, count]);
            expected.push(Ok(Request::V1Batch { count }));
        }
    }
    let items = decode_all(&mut ServerCodec::default(), &bytes);
    assert_eq!(items.len(), 10_000);
    assert_eq!(items, expected);
}

#[test]
fn count_over_the_limit_is_rejected_with_the_req_id_and_the_connection_goes_on() {
    let mut bytes = v2_frame(1, 42, 200_000, b"");
    bytes.extend([0, 0]);
    let items = decode_all(&mut ServerCodec::default(), &bytes);
    let rejection = Rejection {
        req_id: 42,
        status: Status::OverLimit,
        message: "count 200000 is over the limit of 100000".to_owned(),
    };
    assert_eq!(items, [Err(rejection.clone()), Ok(Request::V1Single)]);
    assert_eq!(
        reply_bytes(Reply::from(rejection)),
        [
            &[0xF1, 4, 0, 0, 0, 42, 0, 0, 0, 40][..],
            b"count 200000 is over the limit of 100000"
        ]
        .concat()
    );
}

#[test]
fn configured_limit_is_inclusive() {
    let mut codec = ServerCodec::new(10);
    assert_eq!(codec.max_count(), 10);
    let items = decode_all(
        &mut codec,
        &[v2_frame(2, 1, 10, b"t"), v2_frame(2, 2, 11, b"t")].concat(),
    );
    assert_eq!(items[0], Ok(Request::V2(V2Request::segment(1, 10, "t"))));
    assert_eq!(
        items[1],
        Err(Rejection {
            req_id: 2,
            status: Status::OverLimit,
            message: "count 11 is over the limit of 10".into()
        })
    );
}

#[test]
fn count_0_is_a_bad_request() {
    for op in [1, 2] {
        let item = decode_one(&v2_frame(op, 6, 0, b"tag"));
        let message = "count must be 1..=100000".to_owned();
        assert_eq!(
            item,
            Err(Rejection {
                req_id: 6,
                status: Status::BadRequest,
                message
            })
        );
    }
}

#[test]
fn unknown_op_is_a_bad_request_naming_the_op() {
    for op in [0u8, 5, 0xF1, 0xFF] {
        let err = decode_one(&v2_frame(op, 11, 1, b"abc")).unwrap_err();
        assert_eq!((err.req_id, err.status), (11, Status::BadRequest));
        assert!(err.message.contains(&format!("op {op}")), "{}", err.message);
    }
}

#[test]
fn number_requests_need_a_utf8_name() {
    assert_eq!(
        decode_one(&v2_frame(4, 3, 5, b"order_no")),
        Ok(Request::V2(V2Request::number(3, 5, "order_no")))
    );
    let err = decode_one(&v2_frame(4, 4, 1, b"")).unwrap_err();
    assert_eq!((err.req_id, err.status), (4, Status::BadRequest));
    assert!(
        err.message.contains("non-empty sequence name"),
        "{}",
        err.message
    );
    let err = decode_one(&v2_frame(4, 5, 1, &[0xFF])).unwrap_err();
    assert!(err.message.contains("not valid UTF-8"), "{}", err.message);
    let err = decode_one(&v2_frame(4, 6, 200_000, b"n")).unwrap_err();
    assert_eq!(err.status, Status::OverLimit);
}

#[test]
fn segment_without_tag_is_a_bad_request() {
    let err = decode_one(&v2_frame(2, 12, 1, b"")).unwrap_err();
    assert_eq!((err.req_id, err.status), (12, Status::BadRequest));
    assert!(err.message.contains("non-empty tag"), "{}", err.message);
}

#[test]
fn segment_with_non_utf8_tag_is_a_bad_request() {
    let err = decode_one(&v2_frame(2, 13, 1, &[b'a', 0xFF, 0xFE])).unwrap_err();
    assert_eq!((err.req_id, err.status), (13, Status::BadRequest));
    assert!(err.message.contains("UTF-8"), "{}", err.message);
}

#[test]
fn unknown_v1_command_is_a_sticky_fatal_error() {
    for byte in [2u8, 0x7F, 0xF0, 0xF2, 0xFF] {
        let mut codec = ServerCodec::default();
        let mut src = BytesMut::from(&[0, 0, byte, 0][..]);
        assert_eq!(codec.decode(&mut src).unwrap(), Some(Ok(Request::V1Single)));
        for _ in 0..2 {
            let err = codec.decode(&mut src).unwrap_err();
            assert!(
                matches!(err, ProtoError::UnknownCommand(b) if b == byte),
                "{err:?}"
            );
        }
    }
}

#[test]
fn unknown_command_is_fatal_even_before_its_second_byte() {
    let mut src = BytesMut::from(&[0x20][..]);
    assert!(matches!(
        ServerCodec::default().decode(&mut src),
        Err(ProtoError::UnknownCommand(0x20))
    ));
}

#[test]
fn eof_inside_a_frame_is_reported_and_clean_eof_is_not() {
    let mut codec = ServerCodec::default();
    let mut src = BytesMut::from(&v2_frame(1, 1, 1, b"")[..5]);
    let err = codec.decode_eof(&mut src).unwrap_err();
    assert!(
        matches!(err, ProtoError::UnexpectedEof { pending: 5 }),
        "{err:?}"
    );

    let mut src = BytesMut::from(&[0u8, 0][..]);
    assert_eq!(
        codec.decode_eof(&mut src).unwrap(),
        Some(Ok(Request::V1Single))
    );
    assert_eq!(codec.decode_eof(&mut src).unwrap(), None);
}

#[test]
fn too_long_tag_is_refused_when_encoding() {
    let request = Request::V2(V2Request::segment(1, 1, "x".repeat(256)));
    let mut dst = BytesMut::new();
    let err = request.encode(&mut dst).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::TagTooLong {
                len: 256,
                limit: 255
            }
        ),
        "{err:?}"
    );
    assert!(dst.is_empty());
    // 255 bytes is the most the length byte can say, and it fits.
    let request = Request::V2(V2Request::segment(1, 1, "x".repeat(255)));
    assert_eq!(decode_one(&encoded(&request)), Ok(request));
}

#[test]
fn op_byte_conversions() {
    for (op, byte) in [
        (Op::Snowflake, 1u8),
        (Op::Segment, 2),
        (Op::Ping, 3),
        (Op::Number, 4),
    ] {
        assert_eq!(u8::from(op), byte);
        assert_eq!(Op::try_from(byte).unwrap(), op);
    }
    assert!(matches!(Op::try_from(0), Err(ProtoError::UnknownOp(0))));
}
