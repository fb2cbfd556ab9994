//! The terminal application: a shell (or `--terminal-command`) per connection, through a PTY, for the
//! holders of the terminal key (see the README's "Terminal" section for the protocol and the security
//! notes).
//!
//! ```text
//!  worker (on_open)     start the command on a PTY (its own session), start the session's pump
//!  worker (on_message)  input -> PTY, resize -> TIOCSWINSZ, ping -> pong
//!  pump thread          PTY -> output messages (coalesced, whole characters, paused while the client
//!                       lags); the command's exit -> exit message + close 1000; the idle timeout
//!  worker (on_close)    SIGHUP to the session, SIGKILL after a grace, reap; join the pump
//! ```
//!
//! `on_close` is called for every connection, the server's shutdown included, so every session ends
//! inside the shutdown deadline (the grace is a quarter of it then).

mod page;
mod protocol;
mod pump;
mod session;
mod utf8;

pub use page::PAGE;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use hydrogen_ws_protocol::{CloseCode, Message};

use crate::config::TerminalConfig;
use crate::conn::{Conn, Ending};
use crate::handler::Handler;
use crate::stats::Stats;
use protocol::{Reply, Request};
use pump::PumpContext;
use session::Session;

/// The close code of a session refused because the most are running: "try again later".
pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

/// The grace between SIGHUP and SIGKILL when a session ends.
const GRACE: Duration = Duration::from_secs(1);

/// Longest an input message waits for room in the PTY's input buffer (a command that does not read).
const INPUT_WAIT: Duration = Duration::from_secs(2);

/// The grace between SIGHUP and SIGKILL for `conn`'s session: a quarter of the deadline during a
/// server shutdown.
fn grace(conn: &Conn) -> Duration {
    match conn.server() {
        Some(server) if server.is_shutting_down() => {
            (server.config().shutdown_timeout / 4).min(GRACE)
        }
        _ => GRACE,
    }
}

/// The terminal handler: one PTY session per connection, at most `max_sessions` at once.
pub struct Terminal {
    config: TerminalConfig,
    sessions: Mutex<HashMap<u64, Running>>,
}

/// A session and its pump (`None` while the session starts).
type Running = Option<(Arc<Session>, JoinHandle<()>)>;

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("command", &self.config.command)
            .field("max_sessions", &self.config.max_sessions)
            .field("readonly", &self.config.readonly)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// A terminal with `config`'s command, limits and mode (its key, path and subprotocol are the
    /// route's business: see [`crate::routes_for_mode`]).
    pub fn new(config: TerminalConfig) -> Terminal {
        Terminal {
            config,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<u64, Running>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn session(&self, id: u64) -> Option<Arc<Session>> {
        self.sessions()
            .get(&id)
            .and_then(|r| r.as_ref().map(|(s, _)| Arc::clone(s)))
    }

    fn start(&self, conn: &Conn) -> Result<(), String> {
        let me = conn.shared().ok_or("the connection is gone")?;
        let session = Arc::new(Session::start(&self.config).map_err(|e| {
            Stats::bump(&conn.stats().terminals_refused_spawn);
            format!("cannot start {}: {e}", self.config.command)
        })?);
        let pump = PumpContext {
            conn: me,
            idle_timeout: self.config.idle_timeout,
        };
        let running = Arc::clone(&session);
        let thread = std::thread::Builder::new()
            .name(format!("hydrogen-ws-terminal-{}", conn.id()))
            .stack_size(128 * 1024)
            .spawn(move || pump::run(&running, &pump));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                session.end(Duration::ZERO);
                Stats::bump(&conn.stats().terminals_refused_spawn);
                return Err(format!("cannot start the output thread: {e}"));
            }
        };
        log::info!(
            "terminal: connection {} from {}: started {} (pid {})",
            conn.id(),
            conn.peer_addr(),
            self.config.command,
            session.pid()
        );
        Stats::bump(&conn.stats().terminals_total);
        Stats::bump(&conn.stats().terminals_open);
        self.sessions().insert(conn.id(), Some((session, thread)));
        Ok(())
    }

    fn answer(&self, session: &Session, request: Request) -> Option<Reply> {
        match request {
            Request::Ping => Some(Reply::Pong),
            Request::Input { .. } if self.config.readonly => Some(Reply::Error {
                error: "this terminal is read-only: input is refused".into(),
            }),
            Request::Input { data } => match session.write_input(data.as_bytes(), INPUT_WAIT) {
                Ok(()) => None,
                Err(e) => Some(Reply::Error {
                    error: format!("input not written: {e}"),
                }),
            },
            Request::Resize { rows, cols } if rows == 0 || cols == 0 => Some(Reply::Error {
                error: "rows and cols must be at least 1".into(),
            }),
            Request::Resize { rows, cols } => match session.resize(rows, cols) {
                Ok(()) => None,
                Err(e) => Some(Reply::Error {
                    error: format!("resize failed: {e}"),
                }),
            },
        }
    }
}

impl Handler for Terminal {
    fn on_open(&self, conn: &Conn) {
        {
            let mut sessions = self.sessions();
            if sessions.len() >= self.config.max_sessions {
                drop(sessions);
                Stats::bump(&conn.stats().terminals_refused_full);
                log::warn!(
                    "terminal: connection {} from {}: refused, {} sessions running",
                    conn.id(),
                    conn.peer_addr(),
                    self.config.max_sessions
                );
                let reason = format!(
                    "all {} terminal sessions are in use; try again later",
                    self.config.max_sessions
                );
                let _ = conn.close(TRY_AGAIN_LATER, &reason);
                return;
            }
            // Holds the place while the command starts (outside the lock).
            sessions.insert(conn.id(), None);
        }
        if let Err(reason) = self.start(conn) {
            self.sessions().remove(&conn.id());
            log::error!("terminal: connection {}: {reason}", conn.id());
            let _ = conn.close(CloseCode::INTERNAL_ERROR, &reason);
        }
    }

    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        let Some(session) = self.session(conn.id()) else {
            return;
        };
        session.touch();
        let reply = match message {
            Message::Text(text) => match protocol::parse(text) {
                Ok(request) => self.answer(&session, request),
                Err(error) => Some(Reply::Error { error }),
            },
            Message::Binary(_) => Some(Reply::Error {
                error: "binary messages are not understood; send JSON text".into(),
            }),
        };
        if let Some(reply) = reply {
            let _ = conn.send_text(&reply.to_json());
        }
    }

    fn on_close(&self, conn: &Conn, _ending: &Ending) {
        let Some(Some((session, pump))) = self.sessions().remove(&conn.id()) else {
            return;
        };
        session.begin_end();
        let exit = session.end(grace(conn));
        let _ = pump.join();
        conn.stats().terminals_open.fetch_sub(1, Ordering::Relaxed);
        log::info!(
            "terminal: connection {}: session of pid {} ended ({exit:?})",
            conn.id(),
            session.pid()
        );
    }
}
