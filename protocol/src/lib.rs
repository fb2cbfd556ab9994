//! A sans-IO WebSocket (RFC 6455) codec and HTTP/1.1 upgrade handshake.
//!
//! This crate does no network I/O: it never touches a socket, starts a thread or reads a clock.
//! The caller reads bytes however it likes, hands them in, and writes out the bytes it gets
//! back. That keeps every decision here deterministic and testable, and lets the server own all
//! I/O, timeouts and shutdown.
//!
//! ```text
//!  bytes ──> handshake ──────────────> frames ──────────────> messages ──> events
//!            RequestParser             FrameDecoder           Session
//!            Request::websocket()      (header checks,        (fragments, extension,
//!            Upgrade::response() ─┐     unmask in place)       UTF-8, ping, close)
//!                                 │                               │
//!  bytes <── 101 / refusal <──────┘   Transmit / encode <─────────┘ poll_transmit():
//!                                                                   pong, close echo,
//!                                                                   the error's close
//! ```
//!
//! The RFC's reply rules live in [`Session`]: after each [`Session::read`], the caller writes
//! what [`Session::poll_transmit`] hands out (see the contract in [`Session`]'s docs). A
//! negotiated [`Extension`] (the seam for permessage-deflate) claims RSV bits and transforms
//! message payloads both ways ([`extension`]).
//!
//! Errors are typed per layer and mapped to the wire in one place ([`error`]):
//! [`HandshakeError::status`] (rendered by [`HandshakeError::response`]) for the HTTP refusal,
//! and [`ProtocolError::close_code`] for the close frame. Modules import only modules below
//! them (`scripts/module-cycles.py protocol/src` checks it): [`close_code`] and [`error`] at the
//! bottom, then [`frame`], [`message`], [`handshake`], [`extension`], [`deflate`], [`transmit`],
//! and [`session`] on top.
//!
//! # Example
//!
//! ```
//! use hydrogen_ws_protocol::{
//!     encode_frame, encode_masked_frame, Event, Message, OpCode, RequestParser, Session,
//!     SessionConfig, HandshakeLimits,
//! };
//!
//! // The client's upgrade request, with its first frame (masked "Hello") right behind it.
//! let mut input = b"GET /chat HTTP/1.1\r\n\
//!     Host: server.example.com\r\n\
//!     Upgrade: websocket\r\n\
//!     Connection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n"
//!     .to_vec();
//! input.extend(encode_masked_frame(true, OpCode::Text, [0x37, 0xfa, 0x21, 0x3d], b"Hello"));
//!
//! // Handshake: parse, validate, answer 101.
//! let mut parser = RequestParser::new(HandshakeLimits::default());
//! let request = parser.push(&input)?.expect("complete head");
//! let upgrade = request.websocket()?;
//! let response = upgrade.response(None);
//! assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! assert!(String::from_utf8_lossy(&response)
//!     .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
//!
//! // Frames: the bytes after the head belong to the WebSocket connection.
//! let mut buf = parser.trailing().to_vec();
//! let mut session = Session::new(SessionConfig::default());
//! let (consumed, event) = session.read(&mut buf)?;
//! assert_eq!(event, Event::Message(Message::Text("Hello")));
//! assert_eq!(consumed, 11);
//!
//! assert_eq!(session.poll_transmit(), None); // a message owes no reply
//!
//! // A reply, as the server would write it (unmasked).
//! assert_eq!(encode_frame(true, OpCode::Text, b"Hello"), b"\x81\x05Hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod close_code;
pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod session;
pub mod transmit;

pub use close_code::CloseCode;
pub use error::{ExtensionError, HandshakeError, ProtocolError};
pub use extension::{encode_message, Extension, RSV1, RSV2, RSV3};
pub use frame::{
    apply_mask, encode_frame, encode_masked_frame, Chunk, ControlPayload, FrameDecoder,
    FrameHeader, HeaderBuf, OpCode, Role, MAX_CONTROL_PAYLOAD,
};
pub use handshake::{
    accept_key, parse_request, reason_phrase, refusal, HandshakeLimits, Parsed, Request,
    RequestParser, Upgrade,
};
pub use message::{close_payload, parse_close, CloseFrame, ClosePayload, Message, Utf8Validator};
pub use session::{Event, Session, SessionConfig, SessionState};
pub use transmit::Transmit;
