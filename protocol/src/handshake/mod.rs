//! The HTTP/1.1 upgrade handshake (RFC 6455 section 4): parse the request head, validate it as a
//! WebSocket opening handshake, and build the `101 Switching Protocols` answer or a refusal.
//!
//! Parsing is split in two: [`parse_request`] / [`RequestParser`] check HTTP syntax and size
//! limits and produce a [`Request`]; [`Request::websocket`] then applies the RFC 6455 rules and
//! produces an [`Upgrade`]. A server that also answers plain HTTP on the same port looks at
//! [`Request::wants_upgrade`] in between.

mod accept_key;
pub(crate) mod list;
mod request;
mod response;

pub use accept_key::accept_key;
pub use request::{parse_request, HandshakeLimits, Parsed, Request, RequestParser, Upgrade};
pub use response::{reason_phrase, refusal};
