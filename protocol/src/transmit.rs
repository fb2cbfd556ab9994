//! What a [`Session`](crate::Session) needs sent: the RFC's replies, handed out as values by
//! [`Session::poll_transmit`](crate::Session::poll_transmit).

use crate::close_code::CloseCode;
use crate::frame::{apply_mask, ControlPayload, FrameHeader, OpCode};
use crate::message::close_payload;

/// A frame the session needs sent now. Each is a control frame of at most 125 bytes, held
/// inline: handing one out never allocates.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// A pong answering the peer's ping, carrying the ping's payload (RFC 6455 section 5.5.2).
    Pong(ControlPayload),
    /// A close frame: the answer to the peer's close (its code echoed, no reason; `code` is
    /// `None`, an empty close, when the peer's close was empty), or the close that fails the
    /// connection after a protocol error (the error's close code and reason).
    Close {
        /// The status code, or `None` for a close frame without a payload.
        code: Option<CloseCode>,
        /// The reason (empty when echoing the peer's close).
        reason: &'static str,
    },
}

impl Transmit {
    /// The frame's opcode.
    pub fn opcode(&self) -> OpCode {
        match self {
            Transmit::Pong(_) => OpCode::Pong,
            Transmit::Close { .. } => OpCode::Close,
        }
    }

    /// The frame's payload: the pong's bytes, or the encoded close (code and reason, truncated to
    /// fit 125 bytes; empty without a code).
    pub fn payload(&self) -> ControlPayload {
        match *self {
            Transmit::Pong(payload) => payload,
            Transmit::Close { code: None, .. } => ControlPayload::EMPTY,
            Transmit::Close {
                code: Some(code),
                reason,
            } => close_payload(code, reason),
        }
    }

    /// Append the whole frame to `out`: unmasked as a server sends it (`mask` `None`), or masked
    /// with `mask` as a client must.
    pub fn append_frame(&self, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
        let payload = self.payload();
        FrameHeader::new(true, self.opcode(), mask, payload.len() as u64)
            .encode()
            .append_to(out);
        let start = out.len();
        out.extend_from_slice(&payload);
        if let (Some(mask), Some(body)) = (mask, out.get_mut(start..)) {
            apply_mask(body, mask, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_sent() {
        let mut out = Vec::new();
        let pong = Transmit::Pong(ControlPayload::new(b"hi").unwrap_or_default());
        pong.append_frame(None, &mut out);
        assert_eq!(out, b"\x8a\x02hi");
        out.clear();
        let close = Transmit::Close {
            code: Some(CloseCode::PROTOCOL_ERROR),
            reason: "x",
        };
        close.append_frame(None, &mut out);
        assert_eq!(out, b"\x88\x03\x03\xeax");
        out.clear();
        Transmit::Close {
            code: None,
            reason: "",
        }
        .append_frame(Some([1, 2, 3, 4]), &mut out);
        assert_eq!(out, b"\x88\x80\x01\x02\x03\x04");
        out.clear();
        pong.append_frame(Some([1, 1, 1, 1]), &mut out);
        assert_eq!(out, b"\x8a\x82\x01\x01\x01\x01ih");
    }
}
