//! The server's side of a connection: decodes requests, encodes replies.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::reply::{Reply, Status};
use crate::request::{Op, Rejection, Request, V2Request};
use crate::{
    ProtoError, DEFAULT_MAX_COUNT, V1_CMD_BATCH, V1_CMD_SINGLE, V1_REQUEST_LEN, V2_MAGIC,
    V2_REQUEST_HEADER_LEN,
};

/// Codec for the server's side: decodes [`Request`]s and encodes [`Reply`]s.
///
/// A decoded item is `Ok(request)` for a valid request and `Err(rejection)` for a well-delimited v2 frame that breaks
/// a rule; the server answers the rejection with `Reply::from(rejection)` and keeps reading. A decoder `Err` is fatal:
/// the server closes the connection, without a reply for [`ProtoError::UnknownCommand`]. That error is sticky: the
/// offending byte stays in the buffer, so decoding again returns it again.
#[derive(Debug, Clone)]
pub struct ServerCodec {
    /// Most IDs one v2 request may ask for; the decoder rejects larger counts so no handler ever sees them.
    max_count: u32,
}

impl ServerCodec {
    /// A codec that rejects v2 requests for more than `max_count` IDs with [`Status::OverLimit`].
    pub fn new(max_count: u32) -> ServerCodec {
        ServerCodec { max_count }
    }

    /// The limit this codec enforces.
    pub fn max_count(&self) -> u32 {
        self.max_count
    }

    fn decode_v2(&self, src: &mut BytesMut) -> Option<Result<Request, Rejection>> {
        if src.len() < V2_REQUEST_HEADER_LEN {
            src.reserve(V2_REQUEST_HEADER_LEN - src.len());
            return None;
        }
        let frame_len = V2_REQUEST_HEADER_LEN + usize::from(src[V2_REQUEST_HEADER_LEN - 1]);
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return None;
        }
        let mut frame = &src[1..frame_len];
        let op = frame.get_u8();
        let req_id = frame.get_u32();
        let count = frame.get_u32();
        frame.advance(1);
        let item = self.validate(op, req_id, count, frame);
        src.advance(frame_len);
        Some(item)
    }

    fn validate(&self, op: u8, req_id: u32, count: u32, tag: &[u8]) -> Result<Request, Rejection> {
        let reject = |status, message| Rejection {
            req_id,
            status,
            message,
        };
        let op = Op::try_from(op).map_err(|e| reject(Status::BadRequest, e.to_string()))?;
        if op == Op::Ping {
            // A ping issues nothing, so its count is carried as sent and not held to any limit.
            return Ok(Request::V2(V2Request {
                op,
                req_id,
                count,
                tag: String::new(),
            }));
        }
        if count == 0 {
            return Err(reject(
                Status::BadRequest,
                format!("count must be 1..={}", self.max_count),
            ));
        }
        let tag = if op.needs_tag() {
            let (what, field) = match op {
                Op::Number => ("number", "sequence name"),
                _ => ("segment", "tag"),
            };
            if tag.is_empty() {
                return Err(reject(
                    Status::BadRequest,
                    format!("{what} request needs a non-empty {field}"),
                ));
            }
            std::str::from_utf8(tag)
                .map_err(|e| {
                    reject(
                        Status::BadRequest,
                        format!("{what} {field} is not valid UTF-8: {e}"),
                    )
                })?
                .to_owned()
        } else {
            // Snowflake IDs belong to no tag; GenID-era clients may still send one.
            String::new()
        };
        if count > self.max_count {
            return Err(reject(
                Status::OverLimit,
                format!("count {count} is over the limit of {}", self.max_count),
            ));
        }
        Ok(Request::V2(V2Request {
            op,
            req_id,
            count,
            tag,
        }))
    }
}

impl Default for ServerCodec {
    fn default() -> ServerCodec {
        ServerCodec::new(DEFAULT_MAX_COUNT)
    }
}

impl Decoder for ServerCodec {
    type Item = Result<Request, Rejection>;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ProtoError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        match first {
            V1_CMD_SINGLE | V1_CMD_BATCH => {
                if src.len() < V1_REQUEST_LEN {
                    src.reserve(V1_REQUEST_LEN - src.len());
                    return Ok(None);
                }
                let count = src[1];
                src.advance(V1_REQUEST_LEN);
                let request = if first == V1_CMD_SINGLE {
                    Request::V1Single
                } else {
                    Request::V1Batch { count }
                };
                Ok(Some(Ok(request)))
            }
            V2_MAGIC => Ok(self.decode_v2(src)),
            other => Err(ProtoError::UnknownCommand(other)),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ProtoError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtoError::UnexpectedEof { pending: src.len() }),
        }
    }
}

impl Encoder<Reply> for ServerCodec {
    type Error = ProtoError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), ProtoError> {
        reply.encode(dst)
    }
}

impl Encoder<&Reply> for ServerCodec {
    type Error = ProtoError;

    fn encode(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtoError> {
        reply.encode(dst)
    }
}
