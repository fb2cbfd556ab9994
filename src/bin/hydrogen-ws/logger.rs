//! The binary's logger: one line per event on stderr, `hydrogen-ws LEVEL message`, filtered by a level.
//!
//! The library logs through the `log` facade (refusals, evictions, the shutdown report; per-connection
//! chatter at `debug`); this is the one sink the binary installs for it.

use std::io::Write;

/// How much the server says on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing at all.
    Off,
    /// Failures of the server itself.
    Error,
    /// Refusals, evictions, forced closes.
    Warn,
    /// Start-up, shutdown report.
    Info,
    /// One line per connection event.
    Debug,
}

impl Level {
    /// Parses `off`, `error`, `warn`, `info` or `debug` (any case).
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_lowercase().as_str() {
            "off" => Level::Off,
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    /// The name `parse` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn filter(self) -> log::LevelFilter {
        match self {
            Level::Off => log::LevelFilter::Off,
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
        }
    }
}

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let tag = match record.level() {
            log::Level::Error => "ERROR",
            log::Level::Warn => "WARN ",
            log::Level::Info => "INFO ",
            log::Level::Debug | log::Level::Trace => "DEBUG",
        };
        // One write per line so lines from different threads do not interleave.
        let line = format!("hydrogen-ws {tag} {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Installs the stderr logger at `level` (once; a second call only changes the level).
pub fn install(level: Level) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level.filter());
}
