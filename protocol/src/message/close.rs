//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use std::str;

use crate::close_code::CloseCode;
use crate::error::ProtocolError;
use crate::frame::{ControlPayload, MAX_CONTROL_PAYLOAD};

/// A parsed close frame payload.
// In declaration order (`repr(C)`), so that the code's two bytes sit where an `Event::Message` has its
// tag, not the low bytes of its length: otherwise the compiler moves a message's length out of an
// `Event` in two pieces and reads it back whole, which stalls the CPU on every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason (possibly empty).
    pub reason: &'a str,
}

/// Parse a received close payload. Empty -> `Ok(None)` (no status); one byte -> `CloseTooShort`;
/// a code that may not be sent -> `InvalidCloseCode`; a reason that is not UTF-8 -> `InvalidUtf8`.
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// A close frame payload on the stack: a 2-byte code and a reason of at most 123 bytes.
pub type ClosePayload = ControlPayload;

/// Build a close payload: the code, then `reason` truncated on a character boundary so that the
/// whole payload fits in 125 bytes. The code is written as given (callers should send only codes
/// for which [`CloseCode::is_sendable`] holds).
pub fn close_payload(code: CloseCode, reason: &str) -> ClosePayload {
    let max_reason = MAX_CONTROL_PAYLOAD - 2;
    let mut cut = reason.len().min(max_reason);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = reason.as_bytes().get(..cut).unwrap_or_default();
    let mut bytes = [0u8; MAX_CONTROL_PAYLOAD];
    let code = code.0.to_be_bytes();
    for (d, s) in bytes.iter_mut().zip(code.iter().chain(reason)) {
        *d = *s;
    }
    ControlPayload::from_parts(bytes, 2 + cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_laid_out_first() {
        // See the comment on `CloseFrame`: the code must not share bytes with a message's length.
        assert_eq!(std::mem::offset_of!(CloseFrame<'_>, code), 0);
    }

    #[test]
    fn parse_close_cases() {
        assert_eq!(parse_close(b""), Ok(None));
        assert_eq!(parse_close(b"\x03"), Err(ProtocolError::CloseTooShort));
        assert_eq!(
            parse_close(b"\x03\xe8"),
            Ok(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: ""
            }))
        );
        assert_eq!(
            parse_close(b"\x0f\xa0bye"),
            Ok(Some(CloseFrame {
                code: CloseCode(4000),
                reason: "bye"
            }))
        );
        assert_eq!(
            parse_close(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close(b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn payload_truncates_on_char_boundary() {
        let p = close_payload(CloseCode::GOING_AWAY, "bye");
        assert_eq!(p.as_bytes(), b"\x03\xe9bye");
        let long = "é".repeat(100); // 200 bytes
        let p = close_payload(CloseCode::NORMAL, &long);
        assert!(p.as_bytes().len() <= 125);
        assert_eq!(p.as_bytes().len(), 2 + 122);
        let frame = parse_close(p.as_bytes()).unwrap().unwrap();
        assert_eq!(frame.reason, "é".repeat(61));
        let p = close_payload(CloseCode::NORMAL, &"a".repeat(300));
        assert_eq!(p.as_bytes().len(), 125);
    }
}
