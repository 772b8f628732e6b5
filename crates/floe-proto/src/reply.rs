//! Reply frames and the encoders the server writes them with.
//!
//! The free functions encode straight from a slice of IDs, so the server builds each reply in one buffer and
//! writes it with one write, without collecting the IDs into a [`Reply`] first.

use bytes::{BufMut, BytesMut};

use crate::{
    ProtoError, MAX_MESSAGE_LEN, MAX_NUMBER_LEN, V1_MAX_BATCH, V2_MAGIC, V2_REPLY_HEADER_LEN,
};

/// The outcome of a v2 request, sent as the reply's second byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The body holds the IDs.
    Ok,
    /// The request was malformed (unknown op, count 0, missing or non-UTF-8 tag).
    BadRequest,
    /// The segment tag is not known to the server.
    UnknownTag,
    /// The server cannot issue IDs right now (no lease, clock behind, store down); retry later or elsewhere.
    Unavailable,
    /// The request asked for more IDs than the server allows at once.
    OverLimit,
    /// A bug or unexpected failure on the server.
    Internal,
}

impl From<Status> for u8 {
    fn from(status: Status) -> u8 {
        match status {
            Status::Ok => 0,
            Status::BadRequest => 1,
            Status::UnknownTag => 2,
            Status::Unavailable => 3,
            Status::OverLimit => 4,
            Status::Internal => 5,
        }
    }
}

impl TryFrom<u8> for Status {
    type Error = ProtoError;

    fn try_from(byte: u8) -> Result<Status, ProtoError> {
        match byte {
            0 => Ok(Status::Ok),
            1 => Ok(Status::BadRequest),
            2 => Ok(Status::UnknownTag),
            3 => Ok(Status::Unavailable),
            4 => Ok(Status::OverLimit),
            5 => Ok(Status::Internal),
            other => Err(ProtoError::UnknownStatus(other)),
        }
    }
}

/// One reply frame; the server encodes it, the client decodes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reply {
    /// Answer to [`crate::Request::V1Single`]: 8 bytes.
    V1Single(u64),
    /// Answer to [`crate::Request::V1Batch`]: a count byte, then the IDs.
    V1Batch(Vec<u64>),
    /// Successful v2 answer; a ping gets one with no IDs.
    V2Ok {
        /// Echo of the request's req_id.
        req_id: u32,
        /// The issued IDs.
        ids: Vec<u64>,
    },
    /// Successful v2 answer to a number request (op 4).
    V2Numbers {
        /// Echo of the request's req_id.
        req_id: u32,
        /// The numbers, in issue order.
        numbers: Vec<String>,
    },
    /// Failed v2 answer.
    V2Error {
        /// Echo of the request's req_id.
        req_id: u32,
        /// Why it failed; never [`Status::Ok`].
        status: Status,
        /// Human-readable detail, cut to [`MAX_MESSAGE_LEN`] bytes when encoded.
        message: String,
    },
}

impl Reply {
    /// Appends this reply's frame to `dst`; see the `encode_*` functions for when it fails.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtoError> {
        match self {
            Reply::V1Single(id) => {
                encode_v1_single(*id, dst);
                Ok(())
            }
            Reply::V1Batch(ids) => encode_v1_batch(ids, dst),
            Reply::V2Ok { req_id, ids } => encode_v2_ok(*req_id, ids, dst),
            Reply::V2Numbers { req_id, numbers } => encode_v2_numbers(*req_id, numbers, dst),
            Reply::V2Error {
                req_id,
                status,
                message,
            } => encode_v2_error(*req_id, *status, message, dst),
        }
    }
}

/// Appends a v1 single reply: the ID as 8 big-endian bytes.
pub fn encode_v1_single(id: u64, dst: &mut BytesMut) {
    dst.reserve(8);
    dst.put_u64(id);
}

/// Appends a v1 batch reply: the count byte, then each ID as 8 big-endian bytes.
///
/// Fails with [`ProtoError::TooManyIds`] for more than 255 IDs, before writing anything, because a truncated batch
/// must never look whole.
pub fn encode_v1_batch(ids: &[u64], dst: &mut BytesMut) -> Result<(), ProtoError> {
    let n = u8::try_from(ids.len()).map_err(|_| ProtoError::TooManyIds {
        kind: "v1 batch",
        count: ids.len(),
        limit: V1_MAX_BATCH,
    })?;
    dst.reserve(1 + 8 * ids.len());
    dst.put_u8(n);
    put_ids(ids, dst);
    Ok(())
}

/// Appends a v2 ok reply carrying `ids`; a ping is answered with an empty slice.
///
/// Fails with [`ProtoError::TooManyIds`] only for more than `u32::MAX` IDs, before writing anything.
pub fn encode_v2_ok(req_id: u32, ids: &[u64], dst: &mut BytesMut) -> Result<(), ProtoError> {
    let len = u32::try_from(ids.len()).map_err(|_| ProtoError::TooManyIds {
        kind: "v2 ok",
        count: ids.len(),
        limit: u32::MAX as usize,
    })?;
    dst.reserve(V2_REPLY_HEADER_LEN + 8 * ids.len());
    put_v2_header(Status::Ok, req_id, len, dst);
    put_ids(ids, dst);
    Ok(())
}

/// Appends a v2 ok reply to a number request: `len` is the body's length in bytes, the body is
/// the count as a `u32` and then each number as a length byte and its UTF-8 bytes.
///
/// Fails before writing anything with [`ProtoError::NumberTooLong`] for a number over
/// [`MAX_NUMBER_LEN`] bytes, or [`ProtoError::TooManyIds`] when the body would not fit a `u32`.
pub fn encode_v2_numbers(
    req_id: u32,
    numbers: &[impl AsRef<str>],
    dst: &mut BytesMut,
) -> Result<(), ProtoError> {
    let mut body_len = 4usize;
    for n in numbers {
        let len = n.as_ref().len();
        if len > MAX_NUMBER_LEN {
            return Err(ProtoError::NumberTooLong {
                len,
                limit: MAX_NUMBER_LEN,
            });
        }
        body_len += 1 + len;
    }
    let too_many = || ProtoError::TooManyIds {
        kind: "v2 number",
        count: numbers.len(),
        limit: u32::MAX as usize,
    };
    let len = u32::try_from(body_len).map_err(|_| too_many())?;
    let count = u32::try_from(numbers.len()).map_err(|_| too_many())?;
    dst.reserve(V2_REPLY_HEADER_LEN + body_len);
    put_v2_header(Status::Ok, req_id, len, dst);
    dst.put_u32(count);
    for n in numbers {
        let n = n.as_ref().as_bytes();
        // Checked above: every length fits the byte.
        dst.put_u8(n.len() as u8);
        dst.put_slice(n);
    }
    Ok(())
}

/// Appends a v2 error reply; a message over [`MAX_MESSAGE_LEN`] bytes is cut at a character boundary so clients
/// accept it.
///
/// Fails with [`ProtoError::OkStatusInErrorReply`] for [`Status::Ok`], which would make the client read the message
/// as IDs.
pub fn encode_v2_error(
    req_id: u32,
    status: Status,
    message: &str,
    dst: &mut BytesMut,
) -> Result<(), ProtoError> {
    if status == Status::Ok {
        return Err(ProtoError::OkStatusInErrorReply);
    }
    let body = truncate_at_char_boundary(message, MAX_MESSAGE_LEN).as_bytes();
    // MAX_MESSAGE_LEN is far below u32::MAX, so the cast cannot lose bits.
    let len = body.len() as u32;
    dst.reserve(V2_REPLY_HEADER_LEN + body.len());
    put_v2_header(status, req_id, len, dst);
    dst.put_slice(body);
    Ok(())
}

fn put_v2_header(status: Status, req_id: u32, len: u32, dst: &mut BytesMut) {
    dst.put_u8(V2_MAGIC);
    dst.put_u8(status.into());
    dst.put_u32(req_id);
    dst.put_u32(len);
}

fn put_ids(ids: &[u64], dst: &mut BytesMut) {
    for &id in ids {
        dst.put_u64(id);
    }
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    // Index 0 is always a boundary, so this stops.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        // "é" is two bytes, so a cut at 3 would split the second one.
        assert_eq!(truncate_at_char_boundary("éé", 3), "é");
        assert_eq!(truncate_at_char_boundary("éé", 4), "éé");
        assert_eq!(truncate_at_char_boundary("abc", 0), "");
    }

    #[test]
    fn number_replies_carry_length_prefixed_strings() {
        let mut dst = BytesMut::new();
        encode_v2_numbers(9, &["A-1", "A-22"], &mut dst).unwrap();
        let mut want = vec![0xF1, 0, 0, 0, 0, 9, 0, 0, 0, 4 + 4 + 5, 0, 0, 0, 2];
        want.extend_from_slice(b"\x03A-1\x04A-22");
        assert_eq!(dst.to_vec(), want);
        let long = "x".repeat(MAX_NUMBER_LEN + 1);
        let mut dst = BytesMut::new();
        assert!(matches!(
            encode_v2_numbers(1, &[long], &mut dst),
            Err(ProtoError::NumberTooLong { len: 256, .. })
        ));
        assert!(dst.is_empty(), "nothing written");
    }

    #[test]
    fn long_error_message_is_cut_to_the_limit() {
        let message = "x".repeat(MAX_MESSAGE_LEN + 10);
        let mut dst = BytesMut::new();
        encode_v2_error(7, Status::Internal, &message, &mut dst).unwrap();
        assert_eq!(dst.len(), V2_REPLY_HEADER_LEN + MAX_MESSAGE_LEN);
        assert_eq!(&dst[6..10], &(MAX_MESSAGE_LEN as u32).to_be_bytes());
    }
}
