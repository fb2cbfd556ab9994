//! The terminal's options (`--terminal` and the `--terminal-*` family), flattened into the command line.

use clap::Args;
use hydrogen_ws::config::TerminalConfig;

use super::values::{switch, whole_number, Time};

/// The variable the original Hydrogen server reads its terminal key from; `--terminal-key` and
/// `HYDROGEN_WS_TERMINAL_KEY` win.
pub const WEBSOCKET_TERMINAL_KEY: &str = "WEBSOCKET_TERMINAL_KEY";

/// The terminal's options.
#[derive(Debug, Args)]
pub struct TerminalArgs {
    /// serve a shell through a PTY at --terminal-path (and a console page at /terminal); off by default
    #[arg(long, env = "HYDROGEN_WS_TERMINAL", value_name = "BOOL", value_parser = switch,
          num_args = 0..=1, require_equals = true, default_missing_value = "on", default_value = "off")]
    pub terminal: bool,
    /// key of the terminal, at least 32 characters, not the --key; also WEBSOCKET_TERMINAL_KEY
    #[arg(long, env = "HYDROGEN_WS_TERMINAL_KEY", value_name = "KEY")]
    pub terminal_key: Option<String>,
    /// WebSocket path of the terminal
    #[arg(
        long,
        env = "HYDROGEN_WS_TERMINAL_PATH",
        value_name = "PATH",
        default_value = "/terminal/ws"
    )]
    pub terminal_path: String,
    /// subprotocol of the terminal
    #[arg(
        long,
        env = "HYDROGEN_WS_TERMINAL_PROTOCOL",
        value_name = "NAME",
        default_value = "terminal"
    )]
    pub terminal_protocol: String,
    /// program each terminal runs; by default the login shell ($SHELL, /etc/passwd, else /bin/sh)
    #[arg(long, env = "HYDROGEN_WS_TERMINAL_COMMAND", value_name = "PROGRAM")]
    pub terminal_command: Option<String>,
    /// most terminal sessions at once; one more is closed with 1013
    #[arg(long, env = "HYDROGEN_WS_TERMINAL_MAX_SESSIONS", value_name = "N",
          value_parser = whole_number, default_value = "4")]
    pub terminal_max_sessions: usize,
    /// end a terminal whose client sent nothing this long; 0 = never
    #[arg(
        long,
        env = "HYDROGEN_WS_TERMINAL_IDLE_TIMEOUT",
        value_name = "TIME",
        default_value = "300s"
    )]
    pub terminal_idle_timeout: Time,
    /// terminal output only: input is refused
    #[arg(long, env = "HYDROGEN_WS_TERMINAL_READONLY", value_name = "BOOL", value_parser = switch,
          num_args = 0..=1, require_equals = true, default_missing_value = "on", default_value = "off")]
    pub terminal_readonly: bool,
    /// allow --terminal on a non-loopback --listen address (there is no TLS: use a TLS proxy)
    #[arg(long, env = "HYDROGEN_WS_TERMINAL_ALLOW_REMOTE", value_name = "BOOL", value_parser = switch,
          num_args = 0..=1, require_equals = true, default_missing_value = "on", default_value = "off")]
    pub terminal_allow_remote: bool,
}

impl TerminalArgs {
    /// The terminal's settings (`None` unless `--terminal`).
    pub fn into_config(self) -> Option<TerminalConfig> {
        self.terminal.then(|| {
            let key = self
                .terminal_key
                .or_else(|| std::env::var(WEBSOCKET_TERMINAL_KEY).ok())
                .unwrap_or_default();
            let mut t = TerminalConfig::new(key.trim());
            t.path = self.terminal_path.trim().to_string();
            t.protocol = self.terminal_protocol.trim().to_string();
            if let Some(command) = self.terminal_command.filter(|c| !c.trim().is_empty()) {
                t.command = command.trim().to_string();
            }
            t.max_sessions = self.terminal_max_sessions;
            t.idle_timeout = self.terminal_idle_timeout.or_never();
            t.readonly = self.terminal_readonly;
            t.allow_remote = self.terminal_allow_remote;
            t
        })
    }
}
