//! Typed errors for each layer, and the one place where they are mapped to the wire.
//!
//! A handshake failure becomes an HTTP status, a reason and the headers its refusal must carry
//! (the bytes of that refusal are rendered by [`refusal`](crate::handshake::refusal), the one
//! place that writes HTTP responses); a protocol failure after the upgrade becomes a close code
//! and a reason. Nothing else in the crate decides either.

use std::fmt;

use crate::close_code::CloseCode;

/// Why an HTTP upgrade request was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.1 syntax (bad token, bare LF line ending, NUL, obs-fold, ...).
    Malformed,
    /// The head is longer than `HandshakeLimits::max_head_bytes`.
    HeadersTooLarge,
    /// More header lines than `HandshakeLimits::max_headers`.
    TooManyHeaders,
    /// The request target is longer than `HandshakeLimits::max_target_len`.
    UriTooLong,
    /// An upgrade whose target is not a path (`*`, `host:port`): a WebSocket names a resource.
    BadTarget,
    /// The method is not `GET`.
    MethodNotAllowed,
    /// The request is not HTTP/1.1 (HTTP/1.0, or a version token that is not `HTTP/1.x`).
    HttpVersion,
    /// The request line names an HTTP major version other than 1 (`HTTP/2.0`, the HTTP/2 connection
    /// preface `PRI * HTTP/2.0`, `HTTP/3`): 505, as RFC 9110 section 15.6.6 says.
    HttpVersionNotSupported,
    /// No (or an empty) `Host` header.
    MissingHost,
    /// No `Upgrade` header at all: a plain HTTP request.
    MissingUpgrade,
    /// An `Upgrade` header without the `websocket` token.
    BadUpgrade,
    /// The `Connection` header lacks the `upgrade` token.
    BadConnection,
    /// `Sec-WebSocket-Key` is missing, or is not base64 of exactly 16 bytes.
    BadKey,
    /// A header that must appear once (`Host`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`) was
    /// given more than once. Carries the header's name.
    DuplicateHeader(&'static str),
    /// `Sec-WebSocket-Version` is missing or is not `13`.
    UnsupportedVersion,
    /// `Sec-WebSocket-Protocol` has an entry that is not a token, or more than 32 entries.
    BadProtocolList,
    /// The request announces a body (`Content-Length` other than 0, or any `Transfer-Encoding`).
    UnexpectedBody,
}

impl HandshakeError {
    /// The HTTP status code for the refusal.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::Malformed
            | HandshakeError::BadTarget
            | HandshakeError::HttpVersion
            | HandshakeError::MissingHost
            | HandshakeError::BadUpgrade
            | HandshakeError::BadConnection
            | HandshakeError::BadKey
            | HandshakeError::DuplicateHeader(_)
            | HandshakeError::BadProtocolList
            | HandshakeError::UnexpectedBody => 400,
            HandshakeError::HeadersTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::UriTooLong => 414,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::MissingUpgrade | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HttpVersionNotSupported => 505,
        }
    }

    /// A short human-readable reason, suitable for a response body or a log line.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Malformed => "malformed HTTP request",
            HandshakeError::HeadersTooLarge => "request header section too large",
            HandshakeError::TooManyHeaders => "too many request headers",
            HandshakeError::UriTooLong => "request target too long",
            HandshakeError::BadTarget => "the request target must be a path such as /chat",
            HandshakeError::MethodNotAllowed => "only GET is allowed",
            HandshakeError::HttpVersion => "HTTP/1.1 is required",
            HandshakeError::HttpVersionNotSupported => "only HTTP/1.1 is served here",
            HandshakeError::MissingHost => "Host header is required",
            HandshakeError::MissingUpgrade => "this endpoint requires a WebSocket upgrade",
            HandshakeError::BadUpgrade => "Upgrade header must contain the websocket token",
            HandshakeError::BadConnection => "Connection header must contain the upgrade token",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            HandshakeError::DuplicateHeader(_) => "a header that must appear once was repeated",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::BadProtocolList => "Sec-WebSocket-Protocol must be a list of tokens",
            HandshakeError::UnexpectedBody => "an upgrade request must not have a body",
        }
    }

    /// Extra response headers that the refusal must carry (`Allow` for 405, `Upgrade` for 426,
    /// `Sec-WebSocket-Version` for a version refusal).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            HandshakeError::MethodNotAllowed => &[("Allow", "GET")],
            HandshakeError::MissingUpgrade => &[("Upgrade", "websocket")],
            HandshakeError::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::DuplicateHeader(name) => {
                write!(f, "{} ({}): {name}", self.status(), self.reason())
            }
            _ => write!(f, "{} ({})", self.status(), self.reason()),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Why a WebSocket connection must be failed after the upgrade (RFC 6455 section 7.1.7).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// An RSV bit set that no negotiated extension claims (any RSV bit when there is none).
    ReservedBits,
    /// An RSV bit an extension claims, on a frame where it may not appear: a continuation or
    /// control frame (RFC 7692 section 6: only the first frame of a data message carries it).
    ExtensionBitsMisplaced,
    /// The negotiated extension could not decode a message (for example corrupt compressed data).
    ExtensionPayload,
    /// An opcode reserved by RFC 6455 (3-7, 11-15). Carries the opcode.
    ReservedOpcode(u8),
    /// A control frame without FIN.
    ControlFragmented,
    /// A control frame with a payload longer than 125 bytes.
    ControlTooLong,
    /// A client frame that is not masked (we are the server).
    Unmasked,
    /// A server frame that is masked (we are the client).
    Masked,
    /// A 64-bit payload length with its most significant bit set.
    LengthOverflow,
    /// A payload length not in its minimal encoding.
    NonMinimalLength,
    /// A frame whose declared length exceeds the frame size limit.
    FrameTooLarge,
    /// A message whose total length exceeds the message size limit.
    MessageTooLarge,
    /// A continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A text message or close reason that is not valid UTF-8.
    InvalidUtf8,
    /// A close frame carrying a code that may not be sent on the wire. Carries the code.
    InvalidCloseCode(u16),
    /// A close frame with a one-byte payload.
    CloseTooShort,
}

impl ProtocolError {
    /// The close code to send to the peer before closing the connection.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => {
                CloseCode::MESSAGE_TOO_BIG
            }
            ProtocolError::InvalidUtf8 | ProtocolError::ExtensionPayload => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::ReservedBits
            | ProtocolError::ExtensionBitsMisplaced
            | ProtocolError::ReservedOpcode(_)
            | ProtocolError::ControlFragmented
            | ProtocolError::ControlTooLong
            | ProtocolError::Unmasked
            | ProtocolError::Masked
            | ProtocolError::LengthOverflow
            | ProtocolError::NonMinimalLength
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::InvalidCloseCode(_)
            | ProtocolError::CloseTooShort => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short human-readable reason; fits in a close frame's reason (at most 123 bytes).
    pub fn reason(&self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set without an extension",
            ProtocolError::ExtensionBitsMisplaced => {
                "extension bits on a continuation or control frame"
            }
            ProtocolError::ExtensionPayload => "the extension could not decode the message",
            ProtocolError::ReservedOpcode(_) => "reserved opcode",
            ProtocolError::ControlFragmented => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame payload over 125 bytes",
            ProtocolError::Unmasked => "client frames must be masked",
            ProtocolError::Masked => "server frames must not be masked",
            ProtocolError::LengthOverflow => "payload length has its top bit set",
            ProtocolError::NonMinimalLength => "payload length not minimally encoded",
            ProtocolError::FrameTooLarge => "frame too large",
            ProtocolError::MessageTooLarge => "message too large",
            ProtocolError::UnexpectedContinuation => "continuation frame without a message",
            ProtocolError::ExpectedContinuation => "expected a continuation frame",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::CloseTooShort => "close payload of one byte",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "{} {op:#x}", self.reason()),
            ProtocolError::InvalidCloseCode(code) => write!(f, "{} {code}", self.reason()),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a negotiated [`Extension`](crate::Extension) could not transform a message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionError {
    /// The payload is not valid for the extension (for example corrupt compressed data).
    Invalid,
    /// The transformed payload would be larger than the limit the extension was given.
    TooLarge,
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExtensionError::Invalid => "the extension could not decode the payload",
            ExtensionError::TooLarge => "the decoded payload is over the message size limit",
        })
    }
}

impl std::error::Error for ExtensionError {}

/// A received message the extension failed on fails the connection: 1007 for a payload it cannot
/// decode, 1009 for one that decodes to more than the message size limit.
impl From<ExtensionError> for ProtocolError {
    fn from(e: ExtensionError) -> Self {
        match e {
            ExtensionError::Invalid => ProtocolError::ExtensionPayload,
            ExtensionError::TooLarge => ProtocolError::MessageTooLarge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_in_a_close_frame() {
        let all = [
            ProtocolError::ReservedBits,
            ProtocolError::ExtensionBitsMisplaced,
            ProtocolError::ExtensionPayload,
            ProtocolError::ReservedOpcode(3),
            ProtocolError::ControlFragmented,
            ProtocolError::ControlTooLong,
            ProtocolError::Unmasked,
            ProtocolError::Masked,
            ProtocolError::LengthOverflow,
            ProtocolError::NonMinimalLength,
            ProtocolError::FrameTooLarge,
            ProtocolError::MessageTooLarge,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidUtf8,
            ProtocolError::InvalidCloseCode(999),
            ProtocolError::CloseTooShort,
        ];
        for e in all {
            assert!(e.reason().len() <= 123);
            assert!(e.close_code().is_sendable());
            assert!(!e.to_string().is_empty());
        }
    }
}
