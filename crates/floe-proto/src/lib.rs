//! Floe's binary wire protocol: frame types and tokio-util codecs, with no sockets so it can be fuzzed.
//!
//! Two protocols share one TCP port and are told apart by the first byte of each request frame:
//!
//! - **v1** (GenID-compatible): a request is exactly two bytes, `cmd u8, count u8`. `cmd 0` is answered with one
//!   big-endian `u64`; `cmd 1` with a byte `n` (= count) and then `n` IDs. Any other first byte that is not the v2
//!   magic makes the server close the connection without a reply ([`ProtoError::UnknownCommand`]).
//! - **v2** (first byte [`V2_MAGIC`]): `0xF1 | op u8 | req_id u32 | count u32 | tag_len u8 | tag`, answered with
//!   `0xF1 | status u8 | req_id u32 | len u32 | body`, where the body is `len` IDs on [`Status::Ok`] and `len` bytes
//!   of UTF-8 message otherwise. An ok reply to op 4 (number) carries strings instead: `len` is the body's length in
//!   bytes, and the body is `n u32` followed by `n` numbers, each `len u8 | UTF-8 bytes`.
//!
//! All integers are big-endian. Frames may be pipelined and a connection may mix v1 and v2 frames.
//!
//! The server side uses [`ServerCodec`]: it decodes [`Request`]s and turns a malformed but well-delimited v2 frame
//! into a [`Rejection`] the server answers without dropping the connection. The client side uses [`ClientCodec`],
//! which remembers what it asked because v1 replies do not say what they answer.

#![warn(missing_docs)]

mod client;
mod error;
mod reply;
mod request;
mod server;

pub use client::{
    decode_v1_batch, decode_v1_single, decode_v2_number_reply, decode_v2_reply, ClientCodec,
};
pub use error::ProtoError;
pub use reply::{
    encode_v1_batch, encode_v1_single, encode_v2_error, encode_v2_numbers, encode_v2_ok, Reply,
    Status,
};
pub use request::{Op, Rejection, Request, V2Request};
pub use server::ServerCodec;

/// First byte of every v2 frame; v1 commands are 0 and 1, so the two never collide.
pub const V2_MAGIC: u8 = 0xF1;

/// v1 command byte asking for one ID.
pub const V1_CMD_SINGLE: u8 = 0;

/// v1 command byte asking for `count` IDs.
pub const V1_CMD_BATCH: u8 = 1;

/// Length of every v1 request, the only framing v1 has.
pub const V1_REQUEST_LEN: usize = 2;

/// Length of a v2 request before its tag: magic, op, req_id, count, tag_len.
pub const V2_REQUEST_HEADER_LEN: usize = 11;

/// Length of a v2 reply before its body: magic, status, req_id, len.
pub const V2_REPLY_HEADER_LEN: usize = 10;

/// Default bound on the IDs one v2 request may ask for, matching the server's default configuration.
pub const DEFAULT_MAX_COUNT: u32 = 100_000;

/// Most IDs one v1 batch can carry, because its count is a single byte.
pub const V1_MAX_BATCH: usize = u8::MAX as usize;

/// Longest tag a v2 request can carry, because its length is a single byte.
pub const MAX_TAG_LEN: usize = u8::MAX as usize;

/// Longest number in a v2 number reply, because its length is a single byte.
pub const MAX_NUMBER_LEN: usize = u8::MAX as usize;

/// The largest body of an ok number reply to `count` numbers: the count, then each number's
/// length byte and at most [`MAX_NUMBER_LEN`] bytes.
pub const fn number_body_bound(count: u32) -> usize {
    4 + (count as usize).saturating_mul(1 + MAX_NUMBER_LEN)
}

/// Longest v2 error message in bytes; a client refuses longer bodies so a bad peer cannot make it allocate at will.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
