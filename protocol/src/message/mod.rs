//! Messages: the application-level units reassembled from frames, close codes and payloads, and
//! incremental UTF-8 validation.

mod close;
mod utf8;

pub use crate::close_code::CloseCode;
pub use close::{close_payload, parse_close, CloseFrame, ClosePayload};
pub use utf8::Utf8Validator;

use crate::frame::OpCode;

/// A complete data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl Message<'_> {
    /// The opcode to send this message with.
    pub fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}
