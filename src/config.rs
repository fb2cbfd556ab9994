//! Server configuration: every tunable with its default, parsing of sizes and durations, and validation.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hydrogen_ws_protocol::HandshakeLimits;

use crate::topic::Permissions;

mod bus;
pub use bus::{BusConfig, NatsAuth, DEFAULT_PREFIX};
mod deflate;
pub use deflate::Deflate;
mod terminal;
pub use terminal::{default_shell, TerminalConfig, MIN_TERMINAL_KEY_LEN};

/// What the server does with the messages it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The Hydrogen application: JSON messages routed on `"type"` (status, subscribe, ping), key
    /// authentication and the `hydrogen` subprotocol.
    Hydrogen,
    /// Every text and binary message is sent back unchanged (conformance testing, benchmarks).
    Echo,
}

impl Mode {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hydrogen => "hydrogen",
            Mode::Echo => "echo",
        }
    }
}

/// Protocol-level keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Send a ping this often (`None`: never).
    pub ping_interval: Option<Duration>,
    /// Close (1011) a connection whose pong has not come this long after our ping.
    pub pong_timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(60),
        }
    }
}

/// Size and time limits. Each one, when exceeded, is refused with its own HTTP status or close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (all fragments together) in bytes; more is closed with 1009.
    pub max_message_size: usize,
    /// Largest single frame payload in bytes; a larger declared length is closed with 1009 before anything
    /// is read or allocated.
    pub max_frame_size: usize,
    /// Largest upgrade request head in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header lines in the upgrade request (431 beyond).
    pub max_headers: usize,
    /// Longest request target (414 beyond).
    pub max_target_len: usize,
    /// Time allowed for the whole upgrade request to arrive (408 after it).
    pub handshake_timeout: Duration,
    /// Time one write may stay blocked on a client that does not read; the client is then evicted.
    pub send_timeout: Duration,
    /// Time a connection may stay silent before it is closed (1001); `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Most handshakes in progress at once (sockets whose request head is still arriving). When a
    /// newcomer finds them all taken, the one that has waited longest is closed (408): a crowd of silent
    /// or slow peers cannot lock newcomers out.
    pub max_pending_handshakes: usize,
    /// Most connections one client address holds, pending and open together (429 beyond). `None`: 256
    /// or the capacity (`Config::threads`), whichever is larger, so that a reverse proxy in front, whose
    /// connections all come from one address, is never limited below what the pool serves. `Some(0)`: no
    /// limit.
    pub max_connections_per_ip: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_target_len: 2048,
            handshake_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(10),
            idle_timeout: None,
            max_pending_handshakes: 16_384,
            max_connections_per_ip: None,
        }
    }
}

impl Limits {
    /// Most bytes a connection may have queued for a client that is not reading fast enough: one whole
    /// largest message (so an echo of it always fits), and at least 1 MiB.
    pub fn max_pending(&self) -> usize {
        self.max_message_size.saturating_add(14).max(1 << 20)
    }

    /// The handshake parser's share of these limits.
    pub fn handshake(&self) -> HandshakeLimits {
        HandshakeLimits {
            max_head_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            max_target_len: self.max_target_len,
        }
    }
}

/// Everything the server needs to run. `Config::default()` holds the defaults of every limit; it runs
/// as it is in echo mode, while hydrogen mode (the default mode) also needs a `key` or `no_auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// What to do with messages.
    pub mode: Mode,
    /// Worker threads; also the connection capacity (one connection per worker).
    pub threads: usize,
    /// Stack size of each worker thread in bytes (idle memory per connection is mostly this).
    pub stack_size: usize,
    /// Listen backlog.
    pub backlog: i32,
    /// Limits applied to every connection.
    pub limits: Limits,
    /// Hard bound on the whole shutdown sequence.
    pub shutdown_timeout: Duration,
    /// Seconds a refused client is told to wait (`Retry-After`) when the server is full.
    pub retry_after_secs: u32,
    /// The key clients must present (`Authorization: Key ...` or `?key=`); `None`: no check.
    pub key: Option<String>,
    /// In hydrogen mode, run without a key on purpose (otherwise a missing key is a configuration error).
    pub no_auth: bool,
    /// The subprotocol offered in hydrogen mode.
    pub protocol: String,
    /// Browser origins allowed to connect (`Origin` header); empty: any.
    pub allowed_origins: Vec<String>,
    /// Pings and pong deadline.
    pub heartbeat: Heartbeat,
    /// The terminal application (a shell over WebSocket); `None`: off, the default.
    pub terminal: Option<TerminalConfig>,
    /// The bus: in-process, or NATS.
    pub bus: BusConfig,
    /// What the clients of the main route (the `key`'s) may do on the bus.
    pub permissions: Permissions,
    /// permessage-deflate (RFC 7692).
    pub deflate: Deflate,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            mode: Mode::Hydrogen,
            threads: 256,
            stack_size: 128 * 1024,
            backlog: 4096,
            limits: Limits::default(),
            shutdown_timeout: Duration::from_millis(500),
            retry_after_secs: 1,
            key: None,
            no_auth: false,
            protocol: "hydrogen".to_string(),
            allowed_origins: Vec::new(),
            heartbeat: Heartbeat::default(),
            terminal: None,
            bus: BusConfig::default(),
            permissions: Permissions::default(),
            deflate: Deflate::default(),
        }
    }
}

/// A configuration value that breaks a rule; names the option and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option, as spelled on the command line (`--threads`).
    pub option: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error for `option` (as spelled on the command line) that says what is wrong.
    pub fn new(option: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            option,
            problem: problem.into(),
        }
    }
}

/// The per-address limit when none is set and the capacity is smaller.
pub const DEFAULT_PER_IP: usize = 256;

/// Smallest worker stack we accept: below this a deep handler call could overflow.
pub const MIN_STACK_SIZE: usize = 32 * 1024;
/// Most worker threads (and so connections) one server runs.
pub const MAX_THREADS: usize = 100_000;

impl Config {
    /// The connections one client address may hold, pending and open together (0: no limit).
    pub fn connections_per_ip(&self) -> usize {
        self.limits
            .max_connections_per_ip
            .unwrap_or(self.threads.max(DEFAULT_PER_IP))
    }

    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(ConfigError::new(
                "--threads",
                format!("must be between 1 and {MAX_THREADS}"),
            ));
        }
        if self.stack_size < MIN_STACK_SIZE {
            return Err(ConfigError::new(
                "--stack-size",
                format!("must be at least {}", format_size(MIN_STACK_SIZE)),
            ));
        }
        if self.backlog <= 0 {
            return Err(ConfigError::new("--backlog", "must be at least 1"));
        }
        if l.max_message_size == 0 {
            return Err(ConfigError::new(
                "--max-message-size",
                "must be at least 1 byte",
            ));
        }
        if l.max_frame_size == 0 {
            return Err(ConfigError::new(
                "--max-frame-size",
                "must be at least 1 byte",
            ));
        }
        if l.max_frame_size > l.max_message_size {
            return Err(ConfigError::new(
                "--max-frame-size",
                "must not exceed --max-message-size",
            ));
        }
        if l.max_header_bytes < 256 {
            return Err(ConfigError::new(
                "--max-header-size",
                "must be at least 256 bytes",
            ));
        }
        if l.max_headers < 8 {
            return Err(ConfigError::new("--max-headers", "must be at least 8"));
        }
        if l.max_pending_handshakes == 0 {
            return Err(ConfigError::new("--max-pending", "must be at least 1"));
        }
        if l.handshake_timeout.is_zero() {
            return Err(ConfigError::new(
                "--handshake-timeout",
                "must be more than 0",
            ));
        }
        if l.send_timeout.is_zero() {
            return Err(ConfigError::new("--send-timeout", "must be more than 0"));
        }
        if self.shutdown_timeout.is_zero() {
            return Err(ConfigError::new(
                "--shutdown-timeout",
                "must be more than 0",
            ));
        }
        if self.key.is_some() && self.no_auth {
            return Err(ConfigError::new(
                "--no-auth",
                "contradicts the key that is set (--key, HYDROGEN_WS_KEY or WEBSOCKET_KEY): drop one",
            ));
        }
        if let Some(key) = &self.key {
            validate_key(key)?;
        } else if self.mode == Mode::Hydrogen && !self.no_auth {
            return Err(ConfigError::new(
                "--key",
                "hydrogen mode needs a key (--key or WEBSOCKET_KEY); pass --no-auth to run an open server",
            ));
        }
        if !valid_protocol_name(&self.protocol) {
            return Err(ConfigError::new(
                "--protocol",
                "must be a letter followed by letters, digits or '-'",
            ));
        }
        if self.heartbeat.ping_interval.is_some() && self.heartbeat.pong_timeout.is_zero() {
            return Err(ConfigError::new("--pong-timeout", "must be more than 0"));
        }
        for origin in &self.allowed_origins {
            if origin.is_empty() || origin.bytes().any(|b| b.is_ascii_whitespace() || b == b',') {
                return Err(ConfigError::new(
                    "--allowed-origins",
                    format!("'{origin}' is not an origin such as https://example.com"),
                ));
            }
        }
        self.deflate.validate()?;
        if let Some(terminal) = &self.terminal {
            terminal.validate(self)?;
        }
        self.bus.validate()?;
        bus::validate_permissions(&self.permissions)?;
        Ok(())
    }
}

/// The key rule of the original Hydrogen server: at least 8 printable ASCII characters, no spaces.
pub fn validate_key(key: &str) -> Result<(), ConfigError> {
    if key.len() < 8 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "--key",
            "must be at least 8 printable ASCII characters, without spaces",
        ));
    }
    Ok(())
}

/// A subprotocol name we accept to configure: a letter, then letters, digits or `-`.
pub fn valid_protocol_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.len() <= 64
}

/// Parses a byte size: a whole number with an optional suffix `B`, `KiB`, `MiB`, `GiB` (powers of 1024),
/// `K`/`M`/`G` (also powers of 1024) or `KB`/`MB`/`GB` (powers of 1000). Case-insensitive.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' is not a size (examples: 65536, 64KiB, 16MiB)"
        ));
    }
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let mult: usize = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Parses a duration: a whole number with a unit `ms`, `s`, `m` or `h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' is not a duration (examples: 500ms, 5s, 2m)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Formats a byte count the way `parse_size` reads it back (`16MiB`, `8KiB`, `100B`).
pub fn format_size(n: usize) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// Formats a duration the way `parse_duration` reads it back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for n in [1usize, 100, 1024, 16 << 20, 3 << 30, 1500] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
        for d in [Duration::from_millis(250), Duration::from_secs(30)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn the_per_address_limit_follows_the_capacity_unless_set() {
        let mut c = Config {
            threads: 10,
            ..Config::default()
        };
        assert_eq!(c.connections_per_ip(), DEFAULT_PER_IP);
        c.threads = 10_000;
        assert_eq!(c.connections_per_ip(), 10_000);
        c.limits.max_connections_per_ip = Some(3);
        assert_eq!(c.connections_per_ip(), 3);
        c.limits.max_connections_per_ip = Some(0);
        assert_eq!(c.connections_per_ip(), 0, "0: no limit");
    }

    #[test]
    fn default_is_valid_and_rules_name_the_option() {
        let mut c = Config::default();
        assert_eq!(
            c.validate().map_err(|e| e.option),
            Err("--key"),
            "hydrogen mode wants a key"
        );
        c.no_auth = true;
        assert_eq!(c.validate(), Ok(()));
        c.key = Some("s3cret-key".into());
        assert_eq!(c.validate().map_err(|e| e.option), Err("--no-auth"));
        c.no_auth = false;
        c.key = Some("short".into());
        assert_eq!(c.validate().map_err(|e| e.option), Err("--key"));
        c.key = Some("has a space".into());
        assert_eq!(c.validate().map_err(|e| e.option), Err("--key"));
        c.key = Some("s3cret-key".into());
        assert_eq!(c.validate(), Ok(()));
        c.protocol = "9lives".into();
        assert_eq!(c.validate().map_err(|e| e.option), Err("--protocol"));
        let mut c = Config::default();
        c.mode = Mode::Echo;
        c.threads = 0;
        assert_eq!(c.validate().map_err(|e| e.option), Err("--threads"));
        let mut c = Config::default();
        c.mode = Mode::Echo;
        c.limits.max_frame_size = c.limits.max_message_size + 1;
        assert_eq!(c.validate().map_err(|e| e.option), Err("--max-frame-size"));
    }

    #[test]
    fn the_terminal_is_off_by_default_and_its_rules_name_the_option() {
        assert_eq!(Config::default().terminal, None);
        let long = "t".repeat(MIN_TERMINAL_KEY_LEN);
        let with = |t: TerminalConfig| Config {
            key: Some("s3cret-key".into()),
            terminal: Some(t),
            ..Config::default()
        };
        let option = |c: Config| c.validate().map_err(|e| e.option);
        assert_eq!(option(with(TerminalConfig::new(long.clone()))), Ok(()));
        let short = "t".repeat(MIN_TERMINAL_KEY_LEN - 1);
        assert_eq!(
            option(with(TerminalConfig::new(short))),
            Err("--terminal-key")
        );
        assert_eq!(option(with(TerminalConfig::new(""))), Err("--terminal-key"));
        let mut same = with(TerminalConfig::new(long.clone()));
        same.key = Some(long.clone());
        assert_eq!(option(same), Err("--terminal-key"));
        let mut t = TerminalConfig::new(long.clone());
        t.path = "terminal".into();
        assert_eq!(option(with(t)), Err("--terminal-path"));
        let mut t = TerminalConfig::new(long.clone());
        t.protocol = "9".into();
        assert_eq!(option(with(t)), Err("--terminal-protocol"));
        let mut t = TerminalConfig::new(long.clone());
        t.max_sessions = 0;
        assert_eq!(option(with(t)), Err("--terminal-max-sessions"));
        let mut remote = with(TerminalConfig::new(long.clone()));
        remote.listen = "0.0.0.0:5001".parse().unwrap();
        let err = remote.validate().unwrap_err();
        assert_eq!(err.option, "--terminal-allow-remote");
        assert!(err.problem.contains("TLS proxy"), "{err}");
        if let Some(t) = remote.terminal.as_mut() {
            t.allow_remote = true;
        }
        assert_eq!(option(remote), Ok(()));
    }
}
