//! The client's side of a connection: encodes requests, decodes replies.
//!
//! v1 replies carry no kind or length marker, so decoding them needs to know what was asked. [`ClientCodec`] keeps
//! that in a FIFO; the free `decode_*` functions serve callers that track it themselves.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::reply::{Reply, Status};
use crate::request::Op;
use crate::request::Request;
use crate::{
    number_body_bound, ProtoError, DEFAULT_MAX_COUNT, MAX_MESSAGE_LEN, V2_MAGIC,
    V2_REPLY_HEADER_LEN,
};

/// Decodes a v1 single reply once its 8 bytes are buffered.
pub fn decode_v1_single(src: &mut BytesMut) -> Option<u64> {
    if src.len() < 8 {
        src.reserve(8 - src.len());
        return None;
    }
    Some(src.get_u64())
}

/// Decodes a v1 batch reply once its count byte and all its IDs are buffered.
pub fn decode_v1_batch(src: &mut BytesMut) -> Option<Vec<u64>> {
    let n = usize::from(*src.first()?);
    let frame_len = 1 + 8 * n;
    if src.len() < frame_len {
        src.reserve(frame_len - src.len());
        return None;
    }
    src.advance(1);
    Some(get_ids(src, n))
}

/// Decodes a v2 reply once it is whole, refusing bodies over `max_count` IDs or [`MAX_MESSAGE_LEN`] bytes before
/// buffering them.
///
/// An error message that is not valid UTF-8 is decoded lossily, since it only ever reaches a log.
pub fn decode_v2_reply(src: &mut BytesMut, max_count: u32) -> Result<Option<Reply>, ProtoError> {
    decode_v2(src, max_count, Body::Ids)
}

/// Decodes a v2 reply to a number request (op 4) once it is whole: [`Reply::V2Numbers`] on
/// [`Status::Ok`], refusing a body over [`number_body_bound`]`(max_count)` bytes before buffering
/// it, and one that does not hold exactly its count of UTF-8 numbers.
pub fn decode_v2_number_reply(
    src: &mut BytesMut,
    max_count: u32,
) -> Result<Option<Reply>, ProtoError> {
    decode_v2(src, max_count, Body::Numbers)
}

/// What the body of an ok v2 reply holds, which only the request tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `len` IDs of 8 bytes.
    Ids,
    /// `len` bytes: a count and that many length-prefixed strings.
    Numbers,
}

fn decode_v2(src: &mut BytesMut, max_count: u32, body: Body) -> Result<Option<Reply>, ProtoError> {
    let Some(&first) = src.first() else {
        return Ok(None);
    };
    if first != V2_MAGIC {
        return Err(ProtoError::BadMagic(first));
    }
    if src.len() < 2 {
        src.reserve(V2_REPLY_HEADER_LEN - src.len());
        return Ok(None);
    }
    // Checked before the rest of the header arrives because the body's meaning depends on it.
    let status = Status::try_from(src[1])?;
    if src.len() < V2_REPLY_HEADER_LEN {
        src.reserve(V2_REPLY_HEADER_LEN - src.len());
        return Ok(None);
    }
    let mut header = &src[2..V2_REPLY_HEADER_LEN];
    let req_id = header.get_u32();
    let len = header.get_u32();
    let too_large = |what, limit: u64| ProtoError::FrameTooLarge {
        what,
        len: len.into(),
        limit,
    };
    let body_len = match (status, body) {
        (Status::Ok, Body::Ids) => {
            if len > max_count {
                return Err(too_large("ID count", max_count.into()));
            }
            // Saturating so a large limit on a 32-bit target yields an unreachable length rather than a panic.
            (len as usize).saturating_mul(8)
        }
        (Status::Ok, Body::Numbers) => {
            let limit = number_body_bound(max_count);
            if len as usize > limit {
                return Err(too_large("number body length", limit as u64));
            }
            len as usize
        }
        _ => {
            if len as usize > MAX_MESSAGE_LEN {
                return Err(too_large("message length", MAX_MESSAGE_LEN as u64));
            }
            len as usize
        }
    };
    let frame_len = body_len.saturating_add(V2_REPLY_HEADER_LEN);
    if src.len() < frame_len {
        src.reserve(frame_len - src.len());
        return Ok(None);
    }
    src.advance(V2_REPLY_HEADER_LEN);
    let reply = match (status, body) {
        (Status::Ok, Body::Ids) => Reply::V2Ok {
            req_id,
            ids: get_ids(src, len as usize),
        },
        (Status::Ok, Body::Numbers) => {
            let numbers = get_numbers(&src[..body_len], max_count);
            src.advance(body_len);
            Reply::V2Numbers {
                req_id,
                numbers: numbers?,
            }
        }
        _ => {
            let message = String::from_utf8_lossy(&src[..body_len]).into_owned();
            src.advance(body_len);
            Reply::V2Error {
                req_id,
                status,
                message,
            }
        }
    };
    Ok(Some(reply))
}

/// The numbers of a whole number reply body: `n u32`, then `n` × (`len u8`, UTF-8 bytes), and
/// nothing after.
fn get_numbers(mut body: &[u8], max_count: u32) -> Result<Vec<String>, ProtoError> {
    let bad = |what: String| ProtoError::MalformedNumbers(what);
    if body.len() < 4 {
        return Err(bad(format!("a body of {} bytes has no count", body.len())));
    }
    let n = body.get_u32();
    if n > max_count {
        return Err(bad(format!("{n} numbers, over the limit of {max_count}")));
    }
    let mut numbers = Vec::with_capacity(n as usize);
    for i in 0..n {
        let Some((&len, rest)) = body.split_first() else {
            return Err(bad(format!("the body ends before number {i} of {n}")));
        };
        let Some((text, rest)) = rest.split_at_checked(usize::from(len)) else {
            return Err(bad(format!("number {i} of {n} is cut short")));
        };
        let text =
            std::str::from_utf8(text).map_err(|e| bad(format!("number {i} is not UTF-8: {e}")))?;
        numbers.push(text.to_owned());
        body = rest;
    }
    if !body.is_empty() {
        return Err(bad(format!("{} bytes after the last number", body.len())));
    }
    Ok(numbers)
}

fn get_ids(src: &mut BytesMut, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(src.get_u64());
    }
    ids
}

/// What the next reply must be, remembered when its request was encoded.
#[derive(Debug, Clone, Copy)]
enum Expected {
    V1Single,
    V1Batch(u8),
    V2 { req_id: u32, body: Body },
}

/// Codec for the client's side: encodes [`Request`]s and decodes the [`Reply`] to each, in request order.
///
/// Every decoder error means the stream is out of step; reconnect and retry the unanswered requests.
#[derive(Debug, Clone)]
pub struct ClientCodec {
    /// Most IDs a v2 ok reply may carry; bounds the allocation a peer can cause.
    max_count: u32,
    /// Replies still owed, oldest first, because v1 replies cannot be decoded without knowing what was asked.
    pending: VecDeque<Expected>,
}

impl ClientCodec {
    /// A codec that refuses v2 ok replies carrying more than `max_count` IDs.
    pub fn new(max_count: u32) -> ClientCodec {
        ClientCodec {
            max_count,
            pending: VecDeque::new(),
        }
    }

    /// How many encoded requests still await their reply.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Default for ClientCodec {
    fn default() -> ClientCodec {
        ClientCodec::new(DEFAULT_MAX_COUNT)
    }
}

impl Decoder for ClientCodec {
    type Item = Reply;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtoError> {
        let Some(&expected) = self.pending.front() else {
            return if src.is_empty() {
                Ok(None)
            } else {
                Err(ProtoError::UnsolicitedReply(src.len()))
            };
        };
        let reply = match expected {
            Expected::V1Single => decode_v1_single(src).map(Reply::V1Single),
            Expected::V1Batch(asked) => {
                if let Some(&got) = src.first() {
                    if got != asked {
                        return Err(ProtoError::BatchSizeMismatch {
                            expected: asked,
                            got,
                        });
                    }
                }
                decode_v1_batch(src).map(Reply::V1Batch)
            }
            Expected::V2 {
                req_id: asked,
                body,
            } => {
                let reply = decode_v2(src, self.max_count, body)?;
                if let Some(
                    Reply::V2Ok { req_id, .. }
                    | Reply::V2Numbers { req_id, .. }
                    | Reply::V2Error { req_id, .. },
                ) = &reply
                {
                    if *req_id != asked {
                        return Err(ProtoError::ReqIdMismatch {
                            expected: asked,
                            got: *req_id,
                        });
                    }
                }
                reply
            }
        };
        if reply.is_some() {
            self.pending.pop_front();
        }
        Ok(reply)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtoError> {
        match self.decode(src)? {
            Some(reply) => Ok(Some(reply)),
            None if !src.is_empty() => Err(ProtoError::UnexpectedEof { pending: src.len() }),
            None if !self.pending.is_empty() => Err(ProtoError::Unanswered {
                count: self.pending.len(),
            }),
            None => Ok(None),
        }
    }
}

impl Encoder<Request> for ClientCodec {
    type Error = ProtoError;

    fn encode(&mut self, request: Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        <ClientCodec as Encoder<&Request>>::encode(self, &request, dst)
    }
}

impl Encoder<&Request> for ClientCodec {
    type Error = ProtoError;

    fn encode(&mut self, request: &Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        request.encode(dst)?;
        self.pending.push_back(match request {
            Request::V1Single => Expected::V1Single,
            Request::V1Batch { count } => Expected::V1Batch(*count),
            Request::V2(req) => Expected::V2 {
                req_id: req.req_id,
                body: if req.op == Op::Number {
                    Body::Numbers
                } else {
                    Body::Ids
                },
            },
        });
        Ok(())
    }
}
