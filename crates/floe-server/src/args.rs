//! The flags of `floe serve`. Values stay strings here so that every bad value is reported by
//! the configuration's validation, with the key, the value and the allowed range, and exit 64.

use std::path::PathBuf;

/// Options of `floe serve`; each flag overrides the configuration file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// GenID's config.json (`port`, `zone_id`, `dc_id`, `machine_id`), accepted unchanged.
    #[arg(long, value_name = "FILE")]
    pub genid_config: Option<PathBuf>,
    /// Binary TCP address (server.tcp_listen), e.g. 127.0.0.1:3778.
    #[arg(long, value_name = "ADDR")]
    pub tcp_listen: Option<String>,
    /// HTTP address (server.http_listen), e.g. 127.0.0.1:8880.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Layout preset or spec string (snowflake.layout), e.g. genid, twitter.
    #[arg(long, value_name = "LAYOUT")]
    pub layout: Option<String>,
    /// Node identity as name=value pairs (snowflake.identity), e.g. zone=1,dc=2,machine=3.
    #[arg(long, value_name = "PAIRS")]
    pub identity: Option<String>,
    /// Directory of the high-water file (data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial log level (log.level): trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format (log.format): text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}
