//! The client's one error type. Each variant is something a caller acts on: retry later
//! ([`Error::Unavailable`], [`Error::Timeout`]), fix the request ([`Error::BadRequest`],
//! [`Error::UnknownTag`], [`Error::OverLimit`]), or fix the setup ([`Error::Config`],
//! [`Error::Protocol`]).

use std::fmt;

/// Why a call got no IDs. A failed call never hands out part of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No server could serve the request: each was down, ejected after a failure, or answered
    /// "unavailable" (v2 status 3). Retry later; the list says what went wrong where.
    #[error("no Floe server could serve the request: {}", ServerList(servers))]
    Unavailable {
        /// Every configured server with its last error, in configuration order.
        servers: Vec<(String, String)>,
    },

    /// The server refused the request as malformed (v2 status 1), e.g. an empty or over-long
    /// tag; retrying elsewhere would not help.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The segment tag is not known to the server (v2 status 2); create it first.
    #[error("unknown segment tag `{0}`: create the tag on the server (admin API) or fix the name")]
    UnknownTag(String),

    /// The number sequence is not known to the server (v2 status 2 to a number request);
    /// declare it (`[numbers.<name>]` or the admin API) or fix the name.
    #[error("unknown number sequence `{0}`: declare it on the server ([numbers.<name>] or POST /admin/numbers) or fix the name")]
    UnknownName(String),

    /// The request asked for more IDs than the server allows at once (v2 status 4); lower the
    /// client's `max_count` to the server's `server.max_count`. Status 4 also answers a segment
    /// tag or a number sequence's period that is exhausted; the message says which.
    #[error("over the server's limit: {0}; set ClientBuilder::max_count to the server's server.max_count")]
    OverLimit(String),

    /// The servers cannot do what was asked in the protocol this client speaks, e.g. segment
    /// mode over GenID's v1.
    #[error("protocol: {0}")]
    Protocol(String),

    /// The request timeout ran out before a server answered; the servers may just be slow.
    #[error("no reply within the request timeout")]
    Timeout,

    /// The client was set up wrongly; the message names the option and the allowed range.
    #[error("client configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the same call may succeed later (servers down or slow), as opposed to a request
    /// or setup that must be fixed first.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout)
    }
}

/// Formats `(addr, error)` pairs as `addr (error), addr (error)`.
struct ServerList<'a>(&'a [(String, String)]);

impl fmt::Display for ServerList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no servers configured");
        }
        for (i, (addr, error)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{addr} ({error})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_every_server() {
        let e = Error::Unavailable {
            servers: vec![
                ("a:1".into(), "connection refused".into()),
                ("b:2".into(), "unavailable: clock".into()),
            ],
        };
        assert_eq!(
            e.to_string(),
            "no Floe server could serve the request: a:1 (connection refused), b:2 (unavailable: clock)"
        );
    }
}
