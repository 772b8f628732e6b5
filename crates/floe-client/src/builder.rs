//! Client options: a builder that validates once, so the rest of the crate trusts its [`Config`].

use std::time::Duration;

use floe_proto::DEFAULT_MAX_COUNT;

use crate::client::Client;
use crate::config::{Backoff, Config, Prefetch, Protocol, ServerOrder, MAX_PREFETCH};
use crate::error::Error;

/// Builds a [`Client`]; every option has a default.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    /// Server addresses (`host:port`), in failover order.
    servers: Vec<String>,
    /// Options collected so far.
    config: Config,
}

impl ClientBuilder {
    /// A builder for the given servers (`host:port`, e.g. `127.0.0.1:3778`), in failover order.
    pub fn new<I, S>(servers: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            servers: servers.into_iter().map(Into::into).collect(),
            config: Config {
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(3),
                attempt_timeout: Duration::from_secs(1),
                connections_per_server: 2,
                protocol: Protocol::Auto,
                order: ServerOrder::Failover,
                backoff: Backoff::default(),
                max_count: DEFAULT_MAX_COUNT,
                snowflake_prefetch: None,
                segment_prefetch: None,
            },
        }
    }

    /// Bound on one TCP connect plus the protocol probe (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Bound on a whole call including failover (default 3 s); past it the call fails with
    /// [`Error::Timeout`] or [`Error::Unavailable`].
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config.request_timeout = timeout;
        self
    }

    /// Bound on one server's attempt (default 1 s): a server silent for this long is ejected and
    /// the next one tried.
    pub fn attempt_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config.attempt_timeout = timeout;
        self
    }

    /// Long-lived connections kept per server (default 2); requests are pipelined on each.
    pub fn connections_per_server(mut self, n: usize) -> ClientBuilder {
        self.config.connections_per_server = n;
        self
    }

    /// Which protocol to speak (default [`Protocol::Auto`]).
    pub fn protocol(mut self, protocol: Protocol) -> ClientBuilder {
        self.config.protocol = protocol;
        self
    }

    /// In which order servers are tried (default [`ServerOrder::Failover`]).
    pub fn server_order(mut self, order: ServerOrder) -> ClientBuilder {
        self.config.order = order;
        self
    }

    /// How long a failed server is ejected (default 100 ms doubling up to 10 s, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> ClientBuilder {
        self.config.backoff = backoff;
        self
    }

    /// Most IDs per v2 request (default 100,000, the server's default `server.max_count`).
    pub fn max_count(mut self, max_count: u32) -> ClientBuilder {
        self.config.max_count = max_count;
        self
    }

    /// Prefetch snowflake IDs for [`Client::next_id`] and small [`Client::next_ids`] calls.
    ///
    /// Prefetched snowflake IDs stay unique but may be older than their use: their time field
    /// says when they were fetched, not when they were handed out.
    pub fn snowflake_prefetch(mut self, prefetch: Prefetch) -> ClientBuilder {
        self.config.snowflake_prefetch = Some(prefetch);
        self
    }

    /// Prefetch segment IDs, one buffer per tag, for every [`crate::SegmentHandle`].
    pub fn segment_prefetch(mut self, prefetch: Prefetch) -> ClientBuilder {
        self.config.segment_prefetch = Some(prefetch);
        self
    }

    /// Validates the options and builds the client; connections are opened on first use.
    ///
    /// Must be called inside a tokio runtime, which then runs the client's connection and
    /// refill tasks; without one, use [`crate::blocking::Client`].
    pub fn build(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config(
                "ClientBuilder::build needs a tokio runtime; call it inside one or use floe_client::blocking::Client"
                    .into(),
            )
        })?;
        self.validate()?;
        Ok(Client::from_parts(self.servers, self.config, runtime))
    }

    fn validate(&self) -> Result<(), Error> {
        let c = &self.config;
        if self.servers.is_empty() {
            return Err(Error::Config(
                "no servers: pass at least one host:port to ClientBuilder::new".into(),
            ));
        }
        for (name, value) in [
            ("connect_timeout", c.connect_timeout),
            ("request_timeout", c.request_timeout),
            ("attempt_timeout", c.attempt_timeout),
            ("backoff.base", c.backoff.base),
        ] {
            if value.is_zero() {
                return Err(Error::Config(format!("{name} must be above zero")));
            }
        }
        if c.backoff.max < c.backoff.base {
            return Err(Error::Config(format!(
                "backoff.max ({:?}) must be at least backoff.base ({:?})",
                c.backoff.max, c.backoff.base
            )));
        }
        if !(1..=1024).contains(&c.connections_per_server) {
            return Err(Error::Config(format!(
                "connections_per_server is {}, must be 1..=1024",
                c.connections_per_server
            )));
        }
        if c.max_count == 0 {
            return Err(Error::Config("max_count must be at least 1".into()));
        }
        for (name, prefetch) in [
            ("snowflake_prefetch", c.snowflake_prefetch),
            ("segment_prefetch", c.segment_prefetch),
        ] {
            if let Some(p) = prefetch {
                if !(1..=MAX_PREFETCH).contains(&p.batch) {
                    return Err(Error::Config(format!(
                        "{name}.batch is {}, must be 1..={MAX_PREFETCH}",
                        p.batch
                    )));
                }
                if p.low_water > MAX_PREFETCH {
                    return Err(Error::Config(format!(
                        "{name}.low_water is {}, must be 0..={MAX_PREFETCH}",
                        p.low_water
                    )));
                }
            }
        }
        Ok(())
    }
}
