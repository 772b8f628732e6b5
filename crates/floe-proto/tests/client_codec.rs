//! The client codec: replies decoded in request order, and a peer that breaks the protocol detected early.

use bytes::BytesMut;
use floe_proto::{
    decode_v1_batch, decode_v1_single, decode_v2_reply, ClientCodec, ProtoError, Reply, Request,
    Status, V2Request, MAX_MESSAGE_LEN,
};
use tokio_util::codec::{Decoder, Encoder};

fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut dst = BytesMut::new();
    reply.encode(&mut dst).unwrap();
    dst.to_vec()
}

fn v2_reply_header(status: u8, req_id: u32, len: u32) -> Vec<u8> {
    let mut header = vec![0xF1, status];
    header.extend_from_slice(&req_id.to_be_bytes());
    header.extend_from_slice(&len.to_be_bytes());
    header
}

#[track_caller]
fn client_expecting(requests: &[Request]) -> ClientCodec {
    let mut codec = ClientCodec::default();
    let mut wire = BytesMut::new();
    for request in requests {
        codec.encode(request, &mut wire).unwrap();
    }
    assert_eq!(codec.pending(), requests.len());
    codec
}

#[test]
fn replies_to_mixed_pipelined_requests_decode_in_order() {
    let requests = [
        Request::V1Single,
        Request::V1Batch { count: 2 },
        Request::V2(V2Request::snowflake(10, 1)),
        Request::V1Batch { count: 0 },
        Request::V2(V2Request::segment(11, 5, "t")),
        Request::V2(V2Request::ping(12)),
    ];
    let replies = [
        Reply::V1Single(0x0102_0304_0506_0708),
        Reply::V1Batch(vec![5, 6]),
        Reply::V2Ok {
            req_id: 10,
            ids: vec![99],
        },
        Reply::V1Batch(vec![]),
        Reply::V2Error {
            req_id: 11,
            status: Status::UnknownTag,
            message: "unknown tag t".into(),
        },
        Reply::V2Ok {
            req_id: 12,
            ids: vec![],
        },
    ];
    let mut codec = client_expecting(&requests);
    let mut src = BytesMut::new();
    for reply in &replies {
        src.extend_from_slice(&encode_reply(reply));
    }
    // The v1 bytes alone are ambiguous: only the FIFO of asked requests makes them decodable.
    assert_eq!(&src[..9], &[1, 2, 3, 4, 5, 6, 7, 8, 2]);
    let mut decoded = Vec::new();
    while let Some(reply) = codec.decode(&mut src).unwrap() {
        decoded.push(reply);
    }
    assert_eq!(decoded, replies);
    assert_eq!(codec.pending(), 0);
    assert!(codec.decode_eof(&mut src).unwrap().is_none());
}

#[test]
fn v2_reply_fed_one_byte_at_a_time() {
    let bytes = encode_reply(&Reply::V2Ok {
        req_id: 3,
        ids: vec![1, 2, 3],
    });
    let mut codec = client_expecting(&[Request::V2(V2Request::snowflake(3, 3))]);
    let mut src = BytesMut::new();
    let mut decoded = Vec::new();
    for &byte in &bytes {
        src.extend_from_slice(&[byte]);
        decoded.extend(codec.decode(&mut src).unwrap());
    }
    assert_eq!(
        decoded,
        [Reply::V2Ok {
            req_id: 3,
            ids: vec![1, 2, 3]
        }]
    );
}

#[test]
fn free_decoders_wait_for_whole_frames() {
    let mut src = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0][..]);
    assert_eq!(decode_v1_single(&mut src), None);
    src.extend_from_slice(&[7]);
    assert_eq!(decode_v1_single(&mut src), Some(7));

    let mut src = BytesMut::from(&[1u8, 0, 0, 0, 0, 0, 0, 0][..]);
    assert_eq!(decode_v1_batch(&mut src), None);
    assert_eq!(src.len(), 8);
    src.extend_from_slice(&[8]);
    assert_eq!(decode_v1_batch(&mut src), Some(vec![8]));

    let mut src = BytesMut::from(&[0u8][..]);
    assert_eq!(decode_v1_batch(&mut src), Some(vec![]));
    assert!(src.is_empty());
}

#[test]
fn v2_ok_reply_over_max_count_is_refused_from_its_header() {
    let mut src = BytesMut::from(&v2_reply_header(0, 1, 101)[..]);
    let err = decode_v2_reply(&mut src, 100).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::FrameTooLarge {
                len: 101,
                limit: 100,
                ..
            }
        ),
        "{err:?}"
    );

    let mut src = BytesMut::from(&v2_reply_header(0, 1, 100)[..]);
    assert_eq!(decode_v2_reply(&mut src, 100).unwrap(), None);
    assert!(
        src.capacity() >= 10 + 800,
        "the decoder should reserve the whole frame"
    );
}

#[test]
fn v2_error_message_over_64_kib_is_refused_from_its_header() {
    let mut src = BytesMut::from(&v2_reply_header(1, 1, MAX_MESSAGE_LEN as u32 + 1)[..]);
    let err = decode_v2_reply(&mut src, 100).unwrap_err();
    assert!(
        matches!(err, ProtoError::FrameTooLarge { limit: 65_536, .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_status_and_bad_magic_are_errors() {
    let mut src = BytesMut::from(&[0xF1u8, 6][..]);
    assert!(matches!(
        decode_v2_reply(&mut src, 10),
        Err(ProtoError::UnknownStatus(6))
    ));
    let mut src = BytesMut::from(&[0x00u8][..]);
    assert!(matches!(
        decode_v2_reply(&mut src, 10),
        Err(ProtoError::BadMagic(0))
    ));
}

#[test]
fn non_utf8_error_message_is_decoded_lossily() {
    let mut bytes = v2_reply_header(5, 1, 2);
    bytes.extend([b'a', 0xFF]);
    let reply = decode_v2_reply(&mut BytesMut::from(&bytes[..]), 10).unwrap();
    assert_eq!(
        reply,
        Some(Reply::V2Error {
            req_id: 1,
            status: Status::Internal,
            message: "a\u{FFFD}".into()
        })
    );
}

#[test]
fn bytes_with_no_request_outstanding_are_an_error() {
    let mut codec = ClientCodec::default();
    let mut src = BytesMut::from(&[0u8; 8][..]);
    assert!(matches!(
        codec.decode(&mut src),
        Err(ProtoError::UnsolicitedReply(8))
    ));
}

#[test]
fn v1_batch_reply_with_another_count_is_an_error() {
    let mut codec = client_expecting(&[Request::V1Batch { count: 3 }]);
    let mut src = BytesMut::from(&[4u8][..]);
    let err = codec.decode(&mut src).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::BatchSizeMismatch {
                expected: 3,
                got: 4
            }
        ),
        "{err:?}"
    );
}

#[test]
fn v2_reply_for_another_req_id_is_an_error() {
    let mut codec = client_expecting(&[
        Request::V2(V2Request::ping(1)),
        Request::V2(V2Request::ping(2)),
    ]);
    let mut src = BytesMut::from(
        &encode_reply(&Reply::V2Ok {
            req_id: 2,
            ids: vec![],
        })[..],
    );
    let err = codec.decode(&mut src).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::ReqIdMismatch {
                expected: 1,
                got: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn eof_with_requests_unanswered_is_reported() {
    let mut codec = client_expecting(&[Request::V1Single, Request::V1Single]);
    let mut src = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 1][..]);
    assert_eq!(
        codec.decode_eof(&mut src).unwrap(),
        Some(Reply::V1Single(1))
    );
    let err = codec.decode_eof(&mut src).unwrap_err();
    assert!(
        matches!(err, ProtoError::Unanswered { count: 1 }),
        "{err:?}"
    );

    let mut codec = client_expecting(&[Request::V1Single]);
    let mut src = BytesMut::from(&[0u8, 0, 0][..]);
    assert!(matches!(
        codec.decode_eof(&mut src),
        Err(ProtoError::UnexpectedEof { pending: 3 })
    ));
}

#[test]
fn failed_encode_leaves_nothing_pending() {
    let mut codec = ClientCodec::default();
    let mut dst = BytesMut::new();
    let request = Request::V2(V2Request::segment(1, 1, "y".repeat(300)));
    assert!(matches!(
        codec.encode(request, &mut dst),
        Err(ProtoError::TagTooLong { len: 300, .. })
    ));
    assert_eq!(codec.pending(), 0);
    assert!(dst.is_empty());
}
