//! The echo application: every message back unchanged (conformance tests and benchmarks).

use hydrogen_ws_protocol::Message;

use crate::conn::Conn;
use crate::handler::Handler;

/// Sends every text and binary message back unchanged: the mode for conformance tests and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&self, conn: &Conn, message: Message<'_>) {
        // A failed send has already been logged and has shut the connection; nothing more to do here.
        let _ = conn.send(message);
    }
}
