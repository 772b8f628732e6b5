//! Structured logs on stderr (stdout carries only the "listening" line) with a level that the
//! admin API changes at run time through a `tracing_subscriber::reload` handle, linkerd style.

use std::io::IsTerminal;
use std::sync::OnceLock;

use parking_lot::Mutex;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, Layer, Registry};

use crate::config::{LogConfig, LogFormat, LogLevel};

/// Changes the process's log level; one per process, like the subscriber it controls.
#[derive(Debug)]
pub(crate) struct LogControl {
    /// Swaps the level filter of the installed subscriber.
    handle: reload::Handle<LevelFilter, Registry>,
    /// Keeps the filter alive when no subscriber was installed (an embedding program or a test
    /// owns logging), so level changes still take effect on the handle and can be read back.
    _detached: Option<reload::Layer<LevelFilter, Registry>>,
    /// The level last set, for `GET /admin/log-level`.
    level: Mutex<LogLevel>,
}

/// The control of the subscriber [`init_logging`] installed.
static INSTALLED: OnceLock<LogControl> = OnceLock::new();
/// A control that drives no subscriber, for servers run without [`init_logging`].
static DETACHED: OnceLock<LogControl> = OnceLock::new();

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Installs the global subscriber (stderr, text or JSON) at the configured level.
///
/// The first call in a process wins; later calls, and calls after another subscriber was
/// installed, change nothing and return `false`.
pub fn init_logging(config: &LogConfig) -> bool {
    let mut installed = false;
    INSTALLED.get_or_init(|| {
        let (layer, handle) = reload::Layer::new(filter(config.level));
        let output = match config.format {
            LogFormat::Text => fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .boxed(),
            LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        };
        installed = tracing_subscriber::registry()
            .with(layer)
            .with(output)
            .try_init()
            .is_ok();
        LogControl {
            handle,
            _detached: None,
            level: Mutex::new(config.level),
        }
    });
    installed
}

/// The process's log control; without [`init_logging`], a detached one at `level`.
pub(crate) fn control(level: LogLevel) -> &'static LogControl {
    if let Some(installed) = INSTALLED.get() {
        return installed;
    }
    DETACHED.get_or_init(|| {
        let (layer, handle) = reload::Layer::new(filter(level));
        LogControl {
            handle,
            _detached: Some(layer),
            level: Mutex::new(level),
        }
    })
}

impl LogControl {
    /// The current level.
    pub(crate) fn level(&self) -> LogLevel {
        *self.level.lock()
    }

    /// Sets the level for every later event.
    pub(crate) fn set_level(&self, level: LogLevel) -> Result<(), String> {
        let mut current = self.level.lock();
        self.handle
            .modify(|f| *f = filter(level))
            .map_err(|e| format!("the log level could not be changed: {e}"))?;
        *current = level;
        Ok(())
    }
}
