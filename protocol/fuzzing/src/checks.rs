//! The `session` target's checks on what one read gave: a message's state and size, an error's
//! close code, the replies `poll_transmit` hands out.

use hydrogen_ws_protocol::{
    close_payload, parse_close, CloseCode, CloseFrame, ProtocolError, Session, SessionConfig,
    SessionState, Transmit,
};

/// `poll_transmit` hands out exactly `owed` (one reply at most per read), then nothing; each
/// frame it builds is a well-formed control frame.
pub(crate) fn check_transmits(session: &mut Session, owed: Option<Transmit>) {
    let got = session.poll_transmit();
    assert_eq!(got, owed);
    assert_eq!(session.poll_transmit(), None);
    if let Some(t) = got {
        let mut frame = Vec::new();
        t.append_frame(None, &mut frame);
        assert_eq!(frame.len(), 2 + t.payload().len());
        assert_eq!(frame.first(), Some(&(0x80 | t.opcode().as_u8())));
    }
}

pub(crate) fn check_message(
    len: usize,
    before: SessionState,
    after: SessionState,
    config: SessionConfig,
) {
    assert_eq!(
        before,
        SessionState::Open,
        "a message delivered after our close"
    );
    assert_eq!(after, SessionState::Open);
    assert!(len <= config.max_message_size);
}

/// Every error maps to the close code RFC 6455 section 7.4.1 gives it, and the close frame
/// built from it parses back to the same code and reason.
pub(crate) fn check_close_code(e: ProtocolError) {
    let want = match e {
        ProtocolError::InvalidUtf8 | ProtocolError::ExtensionPayload => CloseCode::INVALID_PAYLOAD,
        ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
        _ => CloseCode::PROTOCOL_ERROR,
    };
    let code = e.close_code();
    assert_eq!(code, want, "{e:?}");
    assert!(code.is_sendable());
    let payload = close_payload(code, e.reason());
    assert_eq!(
        parse_close(payload.as_bytes()),
        Ok(Some(CloseFrame {
            code,
            reason: e.reason()
        }))
    );
}
