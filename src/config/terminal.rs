//! The terminal application's settings, their defaults (the user's login shell) and their checks.

use std::time::Duration;

use super::{valid_protocol_name, Config, ConfigError};

/// The terminal application's settings: a shell on this machine, through a PTY, for whoever holds its
/// key. Off unless [`Config::terminal`] is `Some`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalConfig {
    /// The key clients of the terminal route must present; at least [`MIN_TERMINAL_KEY_LEN`] characters
    /// and different from [`Config::key`].
    pub key: String,
    /// The WebSocket path of the terminal (the page is served at `/terminal`).
    pub path: String,
    /// The subprotocol of the terminal route.
    pub protocol: String,
    /// The program each session runs (no arguments; found through `PATH` when it has no `/`).
    pub command: String,
    /// Most sessions at once; one more is refused (close 1013).
    pub max_sessions: usize,
    /// A session with no message from its client this long is ended; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Output only: input messages are refused.
    pub readonly: bool,
    /// Allow the terminal on a non-loopback listen address (there is no TLS in hydrogen-ws).
    pub allow_remote: bool,
}

/// The shortest terminal key accepted.
pub const MIN_TERMINAL_KEY_LEN: usize = 32;

impl TerminalConfig {
    /// The defaults (`/terminal/ws`, subprotocol `terminal`, the user's login shell, 4 sessions, 300 s
    /// idle timeout, read-write, loopback only) with `key`.
    pub fn new(key: impl Into<String>) -> TerminalConfig {
        TerminalConfig {
            key: key.into(),
            path: "/terminal/ws".to_string(),
            protocol: "terminal".to_string(),
            command: default_shell(),
            max_sessions: 4,
            idle_timeout: Some(Duration::from_secs(300)),
            readonly: false,
            allow_remote: false,
        }
    }

    pub(super) fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        if self.key.len() < MIN_TERMINAL_KEY_LEN || !self.key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::new(
                "--terminal-key",
                format!(
                    "--terminal needs a key of at least {MIN_TERMINAL_KEY_LEN} printable ASCII characters \
                     without spaces (--terminal-key, HYDROGEN_WS_TERMINAL_KEY or WEBSOCKET_TERMINAL_KEY)"
                ),
            ));
        }
        if config.key.as_deref() == Some(self.key.as_str()) {
            return Err(ConfigError::new(
                "--terminal-key",
                "must differ from the main key (--key): each route refuses the other's key",
            ));
        }
        if !self.path.starts_with('/')
            || self.path == "/"
            || self
                .path
                .bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
        {
            return Err(ConfigError::new(
                "--terminal-path",
                "must be a path such as /terminal/ws (a '/', then no spaces, '?' or '#')",
            ));
        }
        if matches!(
            self.path.as_str(),
            "/terminal" | "/wss" | "/status" | "/metrics" | "/health"
        ) {
            return Err(ConfigError::new(
                "--terminal-path",
                format!("{} is taken by another service", self.path),
            ));
        }
        if !valid_protocol_name(&self.protocol) {
            return Err(ConfigError::new(
                "--terminal-protocol",
                "must be a letter followed by letters, digits or '-'",
            ));
        }
        if self.command.trim().is_empty() {
            return Err(ConfigError::new(
                "--terminal-command",
                "must name a program",
            ));
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::new(
                "--terminal-max-sessions",
                "must be at least 1",
            ));
        }
        if !config.listen.ip().is_loopback() && !self.allow_remote {
            return Err(ConfigError::new(
                "--terminal-allow-remote",
                format!(
                    "--terminal on {} (not a loopback address) would send keys and keystrokes in clear: \
                     hydrogen-ws has no TLS. Listen on 127.0.0.1 behind a TLS proxy (nginx, Caddy), or \
                     pass --terminal-allow-remote if the network is trusted",
                    config.listen
                ),
            ));
        }
        Ok(())
    }
}

/// The user's login shell: `$SHELL`, else this user's entry in `/etc/passwd`, else `/bin/sh`.
pub fn default_shell() -> String {
    if let Ok(shell) = std::env::var("SHELL") {
        if shell.starts_with('/') {
            return shell;
        }
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    uid.ok()
        .and_then(|uid| login_shell(&passwd, uid))
        .unwrap_or_else(|| "/bin/sh".to_string())
}

/// The shell of `uid` in the text of `/etc/passwd`.
fn login_shell(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [_, _, id, _, _, _, shell] if id.parse() == Ok(uid) && shell.starts_with('/') => {
                Some((*shell).to_string())
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_shell_is_read_from_the_users_passwd_line() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nme:x:1000:1000::/home/me:/usr/bin/fish\nbad:x:7\n";
        assert_eq!(login_shell(passwd, 0).as_deref(), Some("/bin/bash"));
        assert_eq!(login_shell(passwd, 1000).as_deref(), Some("/usr/bin/fish"));
        assert_eq!(login_shell(passwd, 7), None);
        assert!(default_shell().starts_with('/'));
    }
}
