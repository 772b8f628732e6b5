//! Request frames: what a client asks for, in v1 or v2.

use bytes::{BufMut, BytesMut};

use crate::reply::{Reply, Status};
use crate::{
    ProtoError, MAX_TAG_LEN, V1_CMD_BATCH, V1_CMD_SINGLE, V1_REQUEST_LEN, V2_MAGIC,
    V2_REQUEST_HEADER_LEN,
};

/// What a v2 request asks the server to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Time-based IDs from the snowflake generator.
    Snowflake,
    /// IDs from the number range of one business tag.
    Segment,
    /// A liveness check answered with an empty ok reply.
    Ping,
    /// Business numbers of one number sequence (the tag field carries its name), answered
    /// with strings ([`crate::Reply::V2Numbers`]).
    Number,
}

impl Op {
    /// Whether the op names something in the tag field (a segment tag, a sequence name).
    pub fn needs_tag(self) -> bool {
        matches!(self, Op::Segment | Op::Number)
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        match op {
            Op::Snowflake => 1,
            Op::Segment => 2,
            Op::Ping => 3,
            Op::Number => 4,
        }
    }
}

impl TryFrom<u8> for Op {
    type Error = ProtoError;

    fn try_from(byte: u8) -> Result<Op, ProtoError> {
        match byte {
            1 => Ok(Op::Snowflake),
            2 => Ok(Op::Segment),
            3 => Ok(Op::Ping),
            4 => Ok(Op::Number),
            other => Err(ProtoError::UnknownOp(other)),
        }
    }
}

/// A well-formed v2 request, as decoded after every limit was checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct V2Request {
    /// What to do.
    pub op: Op,
    /// Chosen by the client and echoed in the reply, so a client can match replies to requests.
    pub req_id: u32,
    /// How many IDs to issue; 1..=max_count for snowflake and segment, carried unchecked for ping.
    pub count: u32,
    /// The business tag of a segment request or the sequence name of a number request; empty for
    /// other ops, whose tag the decoder ignores.
    pub tag: String,
}

impl V2Request {
    /// A request for `count` snowflake IDs.
    pub fn snowflake(req_id: u32, count: u32) -> V2Request {
        V2Request {
            op: Op::Snowflake,
            req_id,
            count,
            tag: String::new(),
        }
    }

    /// A request for `count` IDs from the segment of `tag`.
    pub fn segment(req_id: u32, count: u32, tag: impl Into<String>) -> V2Request {
        V2Request {
            op: Op::Segment,
            req_id,
            count,
            tag: tag.into(),
        }
    }

    /// A request for `count` numbers of the sequence `name`.
    pub fn number(req_id: u32, count: u32, name: impl Into<String>) -> V2Request {
        V2Request {
            op: Op::Number,
            req_id,
            count,
            tag: name.into(),
        }
    }

    /// A liveness check.
    pub fn ping(req_id: u32) -> V2Request {
        V2Request {
            op: Op::Ping,
            req_id,
            count: 0,
            tag: String::new(),
        }
    }
}

/// One decoded request frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// v1 `cmd 0`: one ID, answered with [`Reply::V1Single`].
    V1Single,
    /// v1 `cmd 1`: `count` IDs (0..=255), answered with [`Reply::V1Batch`].
    V1Batch {
        /// How many IDs to issue; 0 is valid and answered with the single byte 0.
        count: u8,
    },
    /// A v2 request, answered with [`Reply::V2Ok`] or [`Reply::V2Error`] carrying its req_id.
    V2(V2Request),
}

impl Request {
    /// Appends this request's frame to `dst`, reserving its whole length first.
    ///
    /// Fails only for a tag longer than [`MAX_TAG_LEN`], before writing anything.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtoError> {
        match self {
            Request::V1Single => {
                dst.reserve(V1_REQUEST_LEN);
                dst.put_u8(V1_CMD_SINGLE);
                // GenID ignores the count of a single request; 0 is what its Python client sends.
                dst.put_u8(0);
            }
            Request::V1Batch { count } => {
                dst.reserve(V1_REQUEST_LEN);
                dst.put_u8(V1_CMD_BATCH);
                dst.put_u8(*count);
            }
            Request::V2(req) => {
                let tag_len = u8::try_from(req.tag.len()).map_err(|_| ProtoError::TagTooLong {
                    len: req.tag.len(),
                    limit: MAX_TAG_LEN,
                })?;
                dst.reserve(V2_REQUEST_HEADER_LEN + req.tag.len());
                dst.put_u8(V2_MAGIC);
                dst.put_u8(req.op.into());
                dst.put_u32(req.req_id);
                dst.put_u32(req.count);
                dst.put_u8(tag_len);
                dst.put_slice(req.tag.as_bytes());
            }
        }
        Ok(())
    }
}

/// A v2 request that was well delimited but invalid; the server answers it and keeps the connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rejection {
    /// The req_id of the rejected request, so the client can match the error reply.
    pub req_id: u32,
    /// [`Status::BadRequest`] or [`Status::OverLimit`].
    pub status: Status,
    /// Names the offending value and the allowed range, for the client's logs.
    pub message: String,
}

impl From<Rejection> for Reply {
    fn from(rejection: Rejection) -> Reply {
        Reply::V2Error {
            req_id: rejection.req_id,
            status: rejection.status,
            message: rejection.message,
        }
    }
}
