//! How a connection ended: the close frames each side sent, and what the handler is told.

use hydrogen_ws_protocol::{CloseCode, CloseFrame};

use super::GOING_AWAY_REASON;

/// How a connection ended, as [`crate::Handler::on_close`] is told.
///
/// # Example
///
/// A handler that notes every ending; the client closes with 1000:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use hydrogen_ws::protocol::{CloseCode, Message};
/// use hydrogen_ws::{Config, Conn, Ending, Handler, Mode, Server};
///
/// #[derive(Clone, Default)]
/// struct Endings(Arc<Mutex<Vec<Ending>>>);
///
/// impl Handler for Endings {
///     fn on_message(&self, conn: &Conn, message: Message<'_>) {
///         let _ = conn.send(message);
///     }
///     fn on_close(&self, _conn: &Conn, ending: &Ending) {
///         self.0.lock().unwrap().push(ending.clone());
///     }
/// }
///
/// let config = Config {
///     mode: Mode::Echo,
///     listen: "127.0.0.1:0".parse().unwrap(),
///     ..Config::default()
/// };
/// let endings = Endings::default();
/// let server = Server::start(config, endings.clone()).unwrap();
/// let (mut client, _) = tungstenite::connect(format!("ws://{}/", server.local_addr())).unwrap();
/// client
///     .close(Some(tungstenite::protocol::CloseFrame {
///         code: 1000.into(),
///         reason: "done".into(),
///     }))
///     .unwrap();
/// while client.read().is_ok() {} // until the server's answer and its end of the stream
/// server.shutdown(); // returns once every connection's worker is done with it
/// assert_eq!(
///     *endings.0.lock().unwrap(),
///     [Ending::ByClient { code: Some(CloseCode(1000)), reason: "done".to_string() }]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The client started the closing handshake: its close frame came in before the server had sent
    /// one (the server answers it with the same code, unless its own close crossed it). `code` is `None`
    /// when the client's close frame carried no status code.
    ByClient {
        /// The client's close code.
        code: Option<CloseCode>,
        /// The client's reason (possibly empty).
        reason: String,
    },
    /// The server started it: a protocol error (1002, 1007, 1009, ...), the idle timeout (1001), an
    /// overdue pong (1011), the handler's [`crate::Conn::close`], a panic in a handler callback (1011), or
    /// the server's shutdown (1001).
    ByServer {
        /// The code of the server's close frame.
        code: CloseCode,
        /// Its reason (possibly empty).
        reason: String,
    },
    /// The server gave up on a client that stopped reading (the send timeout or the pending limit): it
    /// was sent 1008 if there was room for it, and its connection was shut down.
    Evicted,
    /// No close frame went either way: the client went away (end of stream, or a reset, also one that
    /// made a reply fail), or the server's shutdown could not write its 1001 to a client that was not
    /// reading.
    Dropped,
}

/// The first close frame each side sent, for [`Ending`].
#[derive(Default)]
pub(crate) struct Closes {
    /// Ours, when it went out through [`super::Conn::send_frame`]: code (`None`: an empty close, which only
    /// ever answers an empty one) and reason. (The shutdown's 1001 is not kept here: every connection
    /// gets the same one, so a close that went out without a record here was that one.)
    pub(crate) ours: Option<(Option<CloseCode>, String)>,
    /// The client's: code, reason, and whether ours had gone out before it arrived (before the read that
    /// brought it in).
    pub(crate) theirs: Option<(Option<CloseCode>, String, bool)>,
}

/// A close frame's code and reason as [`Closes`] keeps them (`None`: no status code).
pub(crate) fn close_parts(frame: Option<CloseFrame<'_>>) -> (Option<CloseCode>, String) {
    frame.map_or((None, String::new()), |f| {
        (Some(f.code), f.reason.to_string())
    })
}

/// How a connection's read loop ended; decides how it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Close frames were exchanged, or we sent ours after a protocol error or timeout.
    Closing,
    /// The peer went away without a close frame (EOF or reset).
    PeerGone,
    /// Another thread evicted the connection (send timeout).
    Evicted,
    /// Woken by the server's shutdown.
    Shutdown,
}

/// The [`Ending`] the handler is told, from the close frames both sides sent (`closes`), how the read
/// loop ended, and whether our close went out (`close_sent`; the shutdown's 1001 leaves no record in
/// `closes`).
pub(crate) fn decide(closes: &Closes, end: End, close_sent: bool) -> Ending {
    let by_client = |(code, reason, _): &(Option<CloseCode>, String, bool)| Ending::ByClient {
        code: *code,
        reason: reason.clone(),
    };
    match (&closes.theirs, &closes.ours) {
        (Some(theirs @ (_, _, false)), _) => by_client(theirs),
        _ if end == End::Evicted => Ending::Evicted,
        (_, Some((code, reason))) => Ending::ByServer {
            code: code.unwrap_or(CloseCode::NO_STATUS),
            reason: reason.clone(),
        },
        // Ours went out with no record of its own: the shutdown's 1001.
        (_, None) if close_sent => Ending::ByServer {
            code: CloseCode::GOING_AWAY,
            reason: GOING_AWAY_REASON.to_string(),
        },
        // (A client's close after ours implies that ours went out: not reached with `Some`.)
        (theirs, None) => theirs.as_ref().map_or(Ending::Dropped, by_client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closes(ours: Option<(u16, &str)>, theirs: Option<(u16, &str, bool)>) -> Closes {
        Closes {
            ours: ours.map(|(c, r)| (Some(CloseCode(c)), r.to_string())),
            theirs: theirs.map(|(c, r, after)| (Some(CloseCode(c)), r.to_string(), after)),
        }
    }

    #[test]
    fn the_side_that_closed_first_is_the_one_reported() {
        // The client's own close (ours had not gone out before the read that brought it).
        let c = closes(Some((1000, "")), Some((1000, "bye", false)));
        assert_eq!(
            decide(&c, End::Closing, true),
            Ending::ByClient {
                code: Some(CloseCode(1000)),
                reason: "bye".into()
            }
        );
        // The client answering ours: the server closed.
        let c = closes(Some((1008, "policy")), Some((1008, "", true)));
        assert_eq!(
            decide(&c, End::Closing, true),
            Ending::ByServer {
                code: CloseCode(1008),
                reason: "policy".into()
            }
        );
    }

    #[test]
    fn the_shutdown_1001_leaves_no_record_and_is_still_reported() {
        let c = closes(None, Some((1001, "", true)));
        assert_eq!(
            decide(&c, End::Shutdown, true),
            Ending::ByServer {
                code: CloseCode::GOING_AWAY,
                reason: GOING_AWAY_REASON.into()
            }
        );
    }

    #[test]
    fn no_close_either_way_is_dropped_and_an_eviction_says_so() {
        assert_eq!(
            decide(&Closes::default(), End::PeerGone, false),
            Ending::Dropped
        );
        assert_eq!(
            decide(&Closes::default(), End::Evicted, false),
            Ending::Evicted
        );
        // An eviction's 1008 is not a close the handler chose.
        let c = closes(Some((1008, "client is not reading")), None);
        assert_eq!(decide(&c, End::Evicted, true), Ending::Evicted);
    }
}
