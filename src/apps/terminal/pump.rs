//! The output pump: one thread per session reads the PTY and sends `output` messages, coalesced (a few
//! milliseconds or up to [`CHUNK`] bytes per message), whole characters only, and paused while the
//! client has more than [`HIGH_WATER`] bytes unread (backpressure: the PTY fills, the command blocks on
//! its writes; nothing is dropped and the server's memory does not grow). It also notices the idle
//! timeout and the command's exit, which it reports (`exit`) before a normal close.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use hydrogen_ws_protocol::CloseCode;
use rustix::event::PollFlags;

use super::protocol::Reply;
use super::session::{wait_for, Exit, Session, TICK};
use super::utf8::Utf8Stream;
use crate::conn::Conn;

/// Most PTY bytes in one message.
const CHUNK: usize = 16 * 1024;
/// How long the pump waits for more output before it sends what it has.
const COALESCE: Duration = Duration::from_millis(3);
/// Bytes queued for the client above which the pump stops reading the PTY.
const HIGH_WATER: usize = 64 * 1024;

/// What the pump needs besides the session.
pub(super) struct PumpContext {
    pub conn: Arc<Conn>,
    pub idle_timeout: Option<Duration>,
}

/// Runs until the session ends (the client went, the idle timeout, the command exited, a shutdown).
pub(super) fn run(session: &Session, ctx: &PumpContext) {
    let conn = &*ctx.conn;
    let mut text = Utf8Stream::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        if session.is_ending() {
            return;
        }
        if conn.is_finished() || shutting_down(conn) {
            return end_now(session, conn);
        }
        match wait_for(session.pty(), PollFlags::IN, TICK) {
            Ok(true) => {}
            Ok(false) => {
                if ctx.idle_timeout.is_some_and(|d| session.idle_for() >= d) {
                    log::info!(
                        "terminal: connection {} idle for {:?}; closing",
                        conn.id(),
                        session.idle_for()
                    );
                    let _ = conn.close(CloseCode::GOING_AWAY, "terminal idle timeout");
                    return;
                }
                if session.leader_exited() {
                    break;
                }
                continue;
            }
            Err(_) => break,
        }
        let (n, eof) = read_coalesced(session, &mut buf);
        if n > 0 && !send_output(session, conn, &text.push(&buf[..n])) {
            return end_now(session, conn);
        }
        if eof {
            break;
        }
    }
    // The command ended (or its PTY closed): its last output, how it ended, a normal close.
    let rest = text.finish();
    if !rest.is_empty() && !send_output(session, conn, &rest) {
        return end_now(session, conn);
    }
    let exit = session.end(super::grace(conn));
    if session.is_ending() {
        return;
    }
    let reply = match exit {
        Exit::Code(code) => Reply::Exit {
            code: Some(code),
            signal: None,
        },
        Exit::Signal(signal) => Reply::Exit {
            code: None,
            signal: Some(signal),
        },
        Exit::Unknown => Reply::Exit {
            code: None,
            signal: None,
        },
    };
    let _ = conn.send_text(&reply.to_json());
    let _ = conn.close(CloseCode::NORMAL, "the command exited");
}

/// Whether the server is shutting down.
fn shutting_down(conn: &Conn) -> bool {
    conn.server().is_some_and(|s| s.is_shutting_down())
}

/// The connection is over (its close went out: the client's close answered, the shutdown's 1001, an
/// eviction) or the server is stopping: the session ends now, from here, rather than once the worker
/// is done with the socket (a shutdown's wait for a client that does not read would eat the deadline
/// first). `on_close` then finds it ended.
fn end_now(session: &Session, conn: &Conn) {
    if session.is_ending() || !(conn.is_finished() || shutting_down(conn)) {
        return;
    }
    session.begin_end();
    session.end(super::grace(conn));
}

/// Reads what the PTY has, and what follows within [`COALESCE`], up to the buffer's size; the bytes
/// read and whether the PTY reached its end (every process closed its side: EIO on Linux).
fn read_coalesced(session: &Session, buf: &mut [u8]) -> (usize, bool) {
    let mut pty = session.pty();
    let mut filled = 0;
    while filled < buf.len() {
        match pty.read(&mut buf[filled..]) {
            Ok(0) => return (filled, true),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if filled == 0
                    || !matches!(wait_for(session.pty(), PollFlags::IN, COALESCE), Ok(true))
                {
                    return (filled, false);
                }
            }
            Err(_) => return (filled, true),
        }
    }
    (filled, false)
}

/// Sends one `output` message once the client has taken enough of what is queued; `false` when the
/// session is over (the client went, was evicted, or the session is ending).
fn send_output(session: &Session, conn: &Conn, text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    while conn.queued() > HIGH_WATER {
        if session.is_ending() || conn.is_finished() || shutting_down(conn) {
            return false;
        }
        // Flushes what the socket takes now; evicts a client stalled past the send timeout.
        conn.flush_or_evict();
        std::thread::sleep(Duration::from_millis(2));
    }
    let reply = Reply::Output {
        data: text.to_string(),
    };
    conn.send_text(&reply.to_json()).is_ok()
}
