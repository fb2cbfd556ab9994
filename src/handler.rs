//! The application's side of a connection.

use hydrogen_ws_protocol::Message;

use crate::conn::{Conn, Ending};

/// What the server calls for each connection. One handler serves every connection, from many worker
/// threads at once, so it is `Send + Sync`; per-connection state can be keyed on [`Conn::id`].
///
/// Callbacks run on the connection's worker thread (except [`Handler::on_subscription_due`], which
/// runs on the ticker thread): a slow callback delays only that connection. A panic in a callback
/// closes that connection with 1011 and is counted (`handler_panics`); [`Handler::on_close`] is still
/// called (unless it is the one that panicked). The worker, the ticker and every other connection
/// carry on.
pub trait Handler: Send + Sync + 'static {
    /// The upgrade succeeded; the connection is open.
    fn on_open(&self, _conn: &Conn) {}

    /// A whole message arrived (fragments reassembled, text validated as UTF-8).
    fn on_message(&self, conn: &Conn, message: Message<'_>);

    /// The connection is ending: `ending` says who closed it, with which code and reason, or how it
    /// ended without a close frame. Called once for every connection that got [`Handler::on_open`], on
    /// its worker, after its last [`Handler::on_message`]. The session is over: a send from here (or
    /// from any thread, from now on) returns [`crate::SendError::Closed`].
    fn on_close(&self, _conn: &Conn, _ending: &Ending) {}

    /// A periodic subscription of this connection (see [`Conn::subscribe`]) is due. Called from the
    /// server's ticker thread: send with the non-blocking [`Conn::send`], never wait here.
    fn on_subscription_due(&self, _conn: &Conn, _topic: &str) {}
}
