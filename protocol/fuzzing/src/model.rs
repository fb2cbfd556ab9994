//! The `session` target's model: the RFC 6455 rules for a receiver, written plainly over whole
//! frames and independently of the crate's session, to compare its events and error with.

use std::str;

use hydrogen_ws_protocol::{Event, ProtocolError, Role, SessionConfig, SessionState};

use crate::wire::{SentFrame, Step};

/// What the model expects: events with the offset where each completes, and the error with the
/// offset of the frame that causes it.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    pub(crate) events: Vec<(usize, Owned)>,
    pub(crate) error: Option<(usize, ProtocolError)>,
}

/// The RFC 6455 rules for a receiver, written plainly over whole frames.
pub(crate) struct Model {
    pub(crate) config: SessionConfig,
    pub(crate) state: SessionState,
    /// The message in progress: text or not.
    pub(crate) message: Option<bool>,
    /// Payload bytes of the message in progress (counted even when discarded).
    pub(crate) message_len: u64,
    /// Its payload so far (unless discarded).
    pub(crate) assembled: Vec<u8>,
}

/// Run the model over the steps; returns what it expects and the offset up to which the wire
/// was modelled (the start of the first unmodelled or incomplete step).
pub(crate) fn model(config: SessionConfig, steps: &[Step], wire_len: usize) -> (Expected, usize) {
    let mut m = Model {
        config,
        state: SessionState::Open,
        message: None,
        message_len: 0,
        assembled: Vec::new(),
    };
    let mut out = Expected::default();
    for step in steps {
        match step {
            Step::Frame { start, end, frame } => {
                if *end > wire_len {
                    return (out, *start);
                }
                match m.frame(frame) {
                    Ok(Some(ev)) => out.events.push((*end, ev)),
                    Ok(None) => {}
                    Err(e) => {
                        out.error = Some((*start, e));
                        return (out, wire_len);
                    }
                }
            }
            Step::LocalClose { at } => {
                if *at > wire_len {
                    return (out, *at);
                }
                m.state = match m.state {
                    SessionState::Open => SessionState::CloseSent,
                    SessionState::CloseReceived => SessionState::Closed,
                    other => other,
                };
            }
            Step::Desync { at } => return (out, *at),
        }
    }
    (out, wire_len)
}

impl Model {
    pub(crate) fn frame(&mut self, f: &SentFrame) -> Result<Option<Owned>, ProtocolError> {
        let result = self.check(f);
        if result.is_err() {
            self.state = SessionState::Closed;
        }
        result
    }

    pub(crate) fn check(&mut self, f: &SentFrame) -> Result<Option<Owned>, ProtocolError> {
        use ProtocolError as E;
        if matches!(
            self.state,
            SessionState::CloseReceived | SessionState::Closed
        ) {
            return Ok(None);
        }
        // Header rules, in the order the decoder documents.
        if !matches!(f.opcode, 0x0..=0x2 | 0x8..=0xA) {
            return Err(E::ReservedOpcode(f.opcode));
        }
        let control = f.opcode >= 0x8;
        if control && !f.fin {
            return Err(E::ControlFragmented);
        }
        if control && f.len > 125 {
            return Err(E::ControlTooLong);
        }
        if f.rsv != 0 {
            return Err(E::ReservedBits);
        }
        match (self.config.role, f.masked) {
            (Role::Server, false) => return Err(E::Unmasked),
            (Role::Client, true) => return Err(E::Masked),
            _ => {}
        }
        if f.len > self.config.max_frame_size {
            return Err(E::FrameTooLarge);
        }
        let Some(payload) = f.payload.as_deref() else {
            panic!("the builder sends the payload of every frame within the limit");
        };
        match f.opcode {
            0x9 => return Ok(Some(Owned::Ping(payload.to_vec()))),
            0xA => return Ok(Some(Owned::Pong(payload.to_vec()))),
            0x8 => {
                let frame = match payload {
                    [] => None,
                    [_] => return Err(E::CloseTooShort),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                            return Err(E::InvalidCloseCode(code));
                        }
                        let reason = str::from_utf8(reason).map_err(|_| E::InvalidUtf8)?;
                        Some((code, reason.to_owned()))
                    }
                };
                self.state = match self.state {
                    SessionState::Open => SessionState::CloseReceived,
                    _ => SessionState::Closed,
                };
                return Ok(Some(Owned::Close(frame)));
            }
            _ => {}
        }
        // Data frames: sequencing, then size, then content.
        if f.opcode == 0x0 {
            if self.message.is_none() {
                return Err(E::UnexpectedContinuation);
            }
        } else {
            if self.message.is_some() {
                return Err(E::ExpectedContinuation);
            }
            self.message = Some(f.opcode == 0x1);
            self.message_len = 0;
            self.assembled.clear();
        }
        let max = self.config.max_message_size as u64;
        if self.message_len + f.len > max {
            return Err(E::MessageTooLarge);
        }
        self.message_len += f.len;
        let text = self.message == Some(true);
        // After our close, data is discarded unread (no UTF-8 check either).
        let discard = self.state == SessionState::CloseSent;
        if !discard {
            self.assembled.extend_from_slice(payload);
            // Fail as soon as the text so far can no longer be UTF-8.
            if text {
                if let Err(e) = str::from_utf8(&self.assembled) {
                    if e.error_len().is_some() {
                        return Err(E::InvalidUtf8);
                    }
                }
            }
        }
        if !f.fin {
            return Ok(None);
        }
        self.message = None;
        if discard {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.assembled);
        Ok(Some(if text {
            Owned::Text(String::from_utf8(bytes).map_err(|_| E::InvalidUtf8)?)
        } else {
            Owned::Binary(bytes)
        }))
    }
}

/// An event with owned data, so that events from different runs (or feeding patterns) can be kept and
/// compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping's payload.
    Ping(Vec<u8>),
    /// A pong's payload.
    Pong(Vec<u8>),
    /// A close frame: code and reason, if it had a body.
    Close(Option<(u16, String)>),
}

impl Owned {
    /// The event's data, owned; `None` for [`Event::None`].
    pub fn from_event(ev: &Event<'_>) -> Option<Owned> {
        Some(match ev {
            Event::None => return None,
            Event::Message(hydrogen_ws_protocol::Message::Text(t)) => Owned::Text((*t).to_owned()),
            Event::Message(hydrogen_ws_protocol::Message::Binary(b)) => Owned::Binary(b.to_vec()),
            Event::Ping(p) => Owned::Ping(p.to_vec()),
            Event::Pong(p) => Owned::Pong(p.to_vec()),
            Event::Close(c) => Owned::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
        })
    }
}
