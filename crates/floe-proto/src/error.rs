//! The one error type of this crate; every variant is something the caller acts on (close, reconnect, fix input).

/// Why a frame could not be encoded or decoded.
///
/// On the decoding side every variant except [`ProtoError::Io`] means the byte stream can no longer be trusted:
/// the server closes the connection (silently for [`ProtoError::UnknownCommand`]), the client reconnects.
/// Recoverable v2 request problems are not errors but [`crate::Rejection`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A request started with a byte that is neither a v1 command nor the v2 magic; GenID closes without a reply.
    #[error(
        "unknown command byte {0:#04x}: expected 0x00 (v1 single), 0x01 (v1 batch) or 0xf1 (v2); \
         closing the connection without a reply"
    )]
    UnknownCommand(u8),

    /// A v2 op byte outside 1..=4.
    #[error("unknown v2 op {0}: expected 1 (snowflake), 2 (segment), 3 (ping) or 4 (number)")]
    UnknownOp(u8),

    /// A v2 reply status byte outside 0..=5, so its body cannot be interpreted.
    #[error("unknown v2 reply status {0}: expected 0..=5; the peer speaks another protocol version, reconnect")]
    UnknownStatus(u8),

    /// A v2 reply was expected but the frame does not start with the v2 magic.
    #[error("expected a v2 reply starting with 0xf1, got {0:#04x}: the stream is out of step, reconnect")]
    BadMagic(u8),

    /// A frame announces a body larger than this side accepts; refused before allocating for it.
    #[error("v2 reply {what} of {len} is over the limit of {limit}; raise the client's limit or ask for fewer IDs")]
    FrameTooLarge {
        /// Which length field was too large.
        what: &'static str,
        /// The length the frame announced.
        len: u64,
        /// The largest length accepted.
        limit: u64,
    },

    /// A request tag longer than its one-byte length field can express.
    #[error("tag of {len} bytes is over the limit of {limit} bytes; use a shorter tag")]
    TagTooLong {
        /// Length of the tag in bytes.
        len: usize,
        /// The largest length accepted.
        limit: usize,
    },

    /// More IDs than one reply of this kind can carry; refused rather than sending a truncated batch.
    #[error("{count} IDs do not fit one {kind} reply, whose limit is {limit}; split the batch")]
    TooManyIds {
        /// Which reply kind was being encoded.
        kind: &'static str,
        /// How many IDs were given.
        count: usize,
        /// The most the reply kind can carry.
        limit: usize,
    },

    /// A number longer than its one-byte length field can express.
    #[error("number of {len} bytes is over the limit of {limit} bytes")]
    NumberTooLong {
        /// Length of the number in bytes.
        len: usize,
        /// The largest length accepted.
        limit: usize,
    },

    /// A v2 number reply whose body does not hold what its header says: the stream cannot be
    /// trusted, reconnect.
    #[error("malformed v2 number reply: {0}; the stream is out of step, reconnect")]
    MalformedNumbers(String),

    /// An error reply was given status Ok, which would make the peer read the message as IDs.
    #[error("an error reply needs a status other than 0 (ok); send IDs with an ok reply instead")]
    OkStatusInErrorReply,

    /// Reply bytes arrived while no request was outstanding.
    #[error("{0} bytes arrived with no request outstanding: the stream is out of step, reconnect")]
    UnsolicitedReply(usize),

    /// A v2 reply answers another request than the next outstanding one.
    #[error("v2 reply for req_id {got} arrived where req_id {expected} was next: replies must keep request order, reconnect")]
    ReqIdMismatch {
        /// The req_id of the oldest outstanding request.
        expected: u32,
        /// The req_id the reply carries.
        got: u32,
    },

    /// A v1 batch reply announces another count than was asked; v1 has no other way to detect a desync.
    #[error("v1 batch reply announces {got} IDs where {expected} were asked: the stream is out of step, reconnect")]
    BatchSizeMismatch {
        /// The count that was asked.
        expected: u8,
        /// The count the reply announced.
        got: u8,
    },

    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame, {pending} bytes pending")]
    UnexpectedEof {
        /// Bytes of the incomplete frame.
        pending: usize,
    },

    /// The peer closed the connection before answering every request.
    #[error(
        "connection closed with {count} requests unanswered; retry them on another connection"
    )]
    Unanswered {
        /// Requests that got no reply.
        count: usize,
    },

    /// Reading or writing the transport failed; tokio-util's framing needs this conversion.
    #[error("i/o error on the connection: {0}")]
    Io(#[from] std::io::Error),
}
