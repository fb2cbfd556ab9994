//! The RFC's reply rules (RFC 6455 sections 5.5.2, 5.5.3, 5.5.1 and 7.1.7): what the session
//! owes the peer after a ping, the peer's close and a protocol error, and what our own close
//! cancels.

use super::SessionState;
use crate::close_code::CloseCode;
use crate::error::ProtocolError;
use crate::frame::ControlPayload;
use crate::transmit::Transmit;

/// Where the closing handshake stands, and the replies owed to the peer that
/// [`Session::poll_transmit`] has not handed out yet. The RFC's reply rules live here.
#[derive(Debug, Clone, Copy)]
pub(super) struct Closing {
    pub(super) state: SessionState,
    /// The pong owed to the peer's latest ping (RFC 6455 section 5.5.3: answering only the
    /// latest of several pings is allowed, so one slot is enough).
    pub(super) pong: Option<ControlPayload>,
    /// The close owed: the echo of the peer's close, or the close after a protocol error.
    pub(super) close: Option<Transmit>,
}

impl Closing {
    /// The peer broke the protocol: the session is over, and unless our close already went out,
    /// one with the error's code and reason is owed.
    pub(super) fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        if self.state == SessionState::Open {
            self.close = Some(Transmit::Close {
                code: Some(e.close_code()),
                reason: e.reason(),
            });
        }
        self.pong = None;
        self.state = SessionState::Closed;
        e
    }

    /// A ping arrived: a pong is owed, unless our close went out (nothing may follow it).
    pub(super) fn ping(&mut self, payload: &[u8]) {
        if self.state == SessionState::Open {
            self.pong = ControlPayload::new(payload);
        }
    }

    /// The peer's close arrived: answer it (echoing its code) unless ours already went out.
    pub(super) fn peer_close(&mut self, code: Option<CloseCode>) {
        self.state = match self.state {
            SessionState::Open => {
                self.close = Some(Transmit::Close { code, reason: "" });
                SessionState::CloseReceived
            }
            _ => SessionState::Closed,
        };
    }

    /// Our close went out: nothing else is owed.
    pub(super) fn close_sent(&mut self) -> bool {
        self.pong = None;
        self.close = None;
        match self.state {
            SessionState::Open => self.state = SessionState::CloseSent,
            SessionState::CloseReceived => self.state = SessionState::Closed,
            SessionState::CloseSent | SessionState::Closed => return false,
        }
        true
    }

    /// The next reply owed; a close handed out counts as sent.
    pub(super) fn poll(&mut self) -> Option<Transmit> {
        if let Some(pong) = self.pong.take() {
            return Some(Transmit::Pong(pong));
        }
        let close = self.close.take()?;
        // After an error the state is Closed already; otherwise this is `close_sent`.
        self.close_sent();
        Some(close)
    }
}
