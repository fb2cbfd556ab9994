//! The connection state machine after the upgrade: frames in, events out.
//!
//! ```text
//!            we send close                 peer's close
//!   Open ----------------------> CloseSent ----------------> Closed
//!     |                                                        ^
//!     | peer's close                        we send close      |
//!     +-----------------------> CloseReceived -----------------+
//!   any error -> Closed (the caller sends a close with err.close_code())
//! ```

use std::str;

use crate::error::ProtocolError;
use crate::frame::{apply_mask, Chunk, FrameDecoder, OpCode, Role, MAX_CONTROL_PAYLOAD};
use crate::message::{parse_close, CloseFrame, Message, Utf8Validator};

/// Capacity the assembly buffer is shrunk back to after a larger message.
const ASSEMBLY_KEEP: usize = 64 * 1024;

/// Limits and role for a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Which end we are (decides the masking rules).
    pub role: Role,
    /// Largest frame payload accepted (1009 beyond). Default 1 MiB.
    pub max_frame_size: u64,
    /// Largest message accepted, all fragments together (1009 beyond). Default 1 MiB.
    pub max_message_size: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            role: Role::Server,
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
        }
    }
}

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Messages flow both ways.
    Open,
    /// We sent a close and wait for the peer's; data messages received now are discarded.
    CloseSent,
    /// The peer sent a close; we must answer with a close and call [`Session::close_sent`].
    CloseReceived,
    /// Both closes were exchanged, or the connection failed: close the TCP connection.
    Closed,
}

/// What [`Session::read`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Nothing complete yet.
    None,
    /// A complete message.
    Message(Message<'a>),
    /// A ping: answer with a pong carrying this payload (unless we have sent a close).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close. If [`Session::state`] is now `CloseReceived`, reply with a close frame
    /// (echo the code, or an empty close if `None`) and call [`Session::close_sent`]; if it is
    /// `Closed`, the closing handshake is complete. Then close the TCP connection.
    Close(Option<CloseFrame<'a>>),
}

/// What a chunk completed, without borrowing the session (the event is built from it last).
#[derive(Debug, Clone, Copy)]
enum Ready {
    Nothing,
    /// A whole single-frame message that is entirely in the chunk: delivered without a copy.
    Direct(OpCode),
    /// A message in the assembly buffer.
    Assembled(OpCode),
    Ping,
    Pong,
    Close,
}

/// A complete message's payload as a [`Message`]: a text one must be UTF-8.
fn whole_payload(text: bool, payload: &[u8]) -> Result<Message<'_>, ProtocolError> {
    if text {
        str::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Message::Binary(payload))
    }
}

/// A whole data message in one frame at the start of a buffer, as a server receives it: FIN set,
/// no RSV bits, text or binary, masked, a payload under 64 KiB in the minimal length encoding,
/// within the limits, and all of it in the buffer. Anything else takes the general path.
#[derive(Debug, Clone, Copy)]
struct WholeFrame {
    text: bool,
    mask: [u8; 4],
    /// Header length (mask included).
    head: usize,
    /// Payload length.
    len: usize,
}

impl WholeFrame {
    fn at(buf: &[u8], limit: u64) -> Option<WholeFrame> {
        let text = match *buf.first()? {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let b1 = *buf.get(1)?;
        if b1 & 0x80 == 0 {
            return None;
        }
        let (head, len) = match b1 & 0x7F {
            127 => return None,
            126 => {
                let len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
                // A short length in the long form is a protocol error: the general path says so.
                if len < 126 {
                    return None;
                }
                (8, len)
            }
            len => (6, usize::from(len)),
        };
        if len as u64 > limit || buf.len().checked_sub(head)? < len {
            return None;
        }
        let mask = buf.get(head - 4..head)?.try_into().ok()?;
        Some(WholeFrame {
            text,
            mask,
            head,
            len,
        })
    }
}

/// A WebSocket session after the upgrade: decodes frames, reassembles messages, validates UTF-8
/// as it arrives and tracks the closing handshake. It does no I/O: the caller reads bytes into a
/// buffer, hands them to [`Session::read`], and writes whatever frames it decides to send.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: SessionState,
    decoder: FrameDecoder,
    /// Fragments of the message in progress (allocated on first use).
    assembly: Vec<u8>,
    /// The last event borrowed `assembly`; clear it on the next read.
    release_assembly: bool,
    validator: Utf8Validator,
    /// The kind (Text or Binary) of the data message in progress, if any.
    message: Option<OpCode>,
    /// Payload bytes received so far for the message in progress.
    message_len: u64,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
}

impl Session {
    /// A new open session.
    pub fn new(config: SessionConfig) -> Self {
        Session {
            config,
            state: SessionState::Open,
            decoder: FrameDecoder::new(config.role, config.max_frame_size),
            assembly: Vec::new(),
            release_assembly: false,
            validator: Utf8Validator::new(),
            message: None,
            message_len: 0,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The closing-handshake state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Bytes of an incomplete (or just delivered) message held in the assembly buffer.
    pub fn buffered_message_bytes(&self) -> usize {
        if self.release_assembly {
            0
        } else {
            self.assembly.len()
        }
    }

    /// Record that we sent a close frame: `Open` -> `CloseSent`, `CloseReceived` -> `Closed`.
    /// Returns false, changing nothing, if a close was already sent (or the session failed).
    pub fn close_sent(&mut self) -> bool {
        match self.state {
            SessionState::Open => self.state = SessionState::CloseSent,
            SessionState::CloseReceived => self.state = SessionState::Closed,
            SessionState::CloseSent | SessionState::Closed => return false,
        }
        true
    }

    /// Consume bytes from the start of `buf` (unmasking them in place) and return how many were
    /// consumed and at most one event.
    ///
    /// Call repeatedly while it consumes bytes or returns events; `(0, Event::None)` means more
    /// input is needed. Once the state is `CloseReceived` or `Closed`, all input is consumed and
    /// ignored: nothing is delivered after a close. After an error the session is `Closed`; the
    /// caller sends a close with [`ProtocolError::close_code`] and closes the connection.
    pub fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<(usize, Event<'a>), ProtocolError> {
        if matches!(
            self.state,
            SessionState::CloseReceived | SessionState::Closed
        ) {
            return Ok((buf.len(), Event::None));
        }
        if self.release_assembly {
            self.release_assembly = false;
            self.assembly.clear();
            if self.assembly.capacity() > ASSEMBLY_KEEP {
                self.assembly.shrink_to(ASSEMBLY_KEEP);
            }
        }
        if self.state == SessionState::Open
            && self.message.is_none()
            && !self.decoder.in_frame()
            && self.config.role == Role::Server
        {
            let limit = self
                .config
                .max_frame_size
                .min(u64::try_from(self.config.max_message_size).unwrap_or(u64::MAX));
            if let Some(frame) = WholeFrame::at(buf, limit) {
                return self.whole_message(buf, frame);
            }
        }
        let (consumed, chunk) = match self.decoder.decode(buf) {
            Ok(decoded) => decoded,
            Err(e) => return Err(self.fail(e)),
        };
        let Some(chunk) = chunk else {
            return Ok((consumed, Event::None));
        };
        let ready = match self.on_chunk(&chunk) {
            Ok(ready) => ready,
            Err(e) => return Err(self.fail(e)),
        };
        // Only field borrows from here on, so the event can borrow `control` or `assembly`
        // while `state` is updated.
        let event = match ready {
            Ready::Nothing => Event::None,
            Ready::Direct(kind) => match whole_payload(kind == OpCode::Text, chunk.data) {
                Ok(message) => Event::Message(message),
                Err(e) => {
                    self.state = SessionState::Closed;
                    return Err(e);
                }
            },
            Ready::Assembled(kind) => {
                self.release_assembly = true;
                // A text message was validated piece by piece already; this is the safe-code way to
                // get its &str.
                match whole_payload(kind == OpCode::Text, &self.assembly) {
                    Ok(message) => Event::Message(message),
                    Err(e) => {
                        self.state = SessionState::Closed;
                        return Err(e);
                    }
                }
            }
            Ready::Ping => Event::Ping(self.control.get(..self.control_len).unwrap_or_default()),
            Ready::Pong => Event::Pong(self.control.get(..self.control_len).unwrap_or_default()),
            Ready::Close => {
                let payload = self.control.get(..self.control_len).unwrap_or_default();
                match parse_close(payload) {
                    Ok(frame) => {
                        self.state = match self.state {
                            SessionState::Open => SessionState::CloseReceived,
                            _ => SessionState::Closed,
                        };
                        Event::Close(frame)
                    }
                    Err(e) => {
                        self.state = SessionState::Closed;
                        return Err(e);
                    }
                }
            }
        };
        Ok((consumed, event))
    }

    /// The fast path of [`Session::read`]: a whole message in one frame that is entirely in `buf`.
    /// Unmasked in place and delivered without going through the decoder's chunks; the outcome
    /// is the one the general path gives for the same bytes.
    fn whole_message<'a>(
        &mut self,
        buf: &'a mut [u8],
        frame: WholeFrame,
    ) -> Result<(usize, Event<'a>), ProtocolError> {
        let end = frame.head + frame.len;
        let Some(data) = buf.get_mut(frame.head..end) else {
            // `WholeFrame::at` checked that the frame is all there; this is only a guard.
            return Ok((0, Event::None));
        };
        apply_mask(data, frame.mask, 0);
        match whole_payload(frame.text, data) {
            Ok(message) => Ok((end, Event::Message(message))),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.state = SessionState::Closed;
        e
    }

    /// Apply one chunk to the assembly state; says what (if anything) it completed.
    fn on_chunk(&mut self, chunk: &Chunk<'_>) -> Result<Ready, ProtocolError> {
        let header = chunk.header;
        if header.opcode.is_control() {
            if chunk.first {
                self.control_len = 0;
            }
            let end = self.control_len + chunk.data.len();
            // The decoder guarantees at most 125 bytes; the error is only a guard.
            let dst = self
                .control
                .get_mut(self.control_len..end)
                .ok_or(ProtocolError::ControlTooLong)?;
            dst.copy_from_slice(chunk.data);
            self.control_len = end;
            if !chunk.last {
                return Ok(Ready::Nothing);
            }
            return Ok(match header.opcode {
                OpCode::Ping => Ready::Ping,
                OpCode::Pong => Ready::Pong,
                _ => Ready::Close,
            });
        }

        if chunk.first {
            if header.opcode == OpCode::Continuation {
                if self.message.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
            } else {
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                self.message = Some(header.opcode);
                self.message_len = 0;
                self.validator.reset();
                self.assembly.clear();
            }
            let max = u64::try_from(self.config.max_message_size).unwrap_or(u64::MAX);
            if self.message_len.saturating_add(header.len) > max {
                return Err(ProtocolError::MessageTooLarge);
            }
        }
        let kind = self.message.ok_or(ProtocolError::UnexpectedContinuation)?;
        let discard = self.state == SessionState::CloseSent;
        let ends_message = chunk.last && header.fin;

        if chunk.first && ends_message && header.opcode != OpCode::Continuation {
            // The whole message is this one frame, entirely in the caller's buffer.
            self.message = None;
            return Ok(if discard {
                Ready::Nothing
            } else {
                Ready::Direct(kind)
            });
        }
        if !discard {
            if kind == OpCode::Text {
                // Fail at the first bad byte, even in the middle of a frame.
                self.validator.feed(chunk.data)?;
            }
            self.assembly.extend_from_slice(chunk.data);
        }
        self.message_len = self.message_len.saturating_add(chunk.data.len() as u64);
        if !ends_message {
            return Ok(Ready::Nothing);
        }
        self.message = None;
        if discard {
            self.assembly.clear();
            return Ok(Ready::Nothing);
        }
        if kind == OpCode::Text {
            self.validator.finish()?;
        }
        Ok(Ready::Assembled(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_masked_frame;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn assembly_buffer_shrinks_after_a_large_message() {
        let mut s = Session::new(SessionConfig::default());
        let big = vec![7u8; 300_000];
        let mut input = encode_masked_frame(false, OpCode::Binary, MASK, &big);
        input.extend(encode_masked_frame(true, OpCode::Continuation, MASK, b"x"));
        let mut pos = 0;
        let mut got = None;
        while pos < input.len() {
            let (n, ev) = s.read(&mut input[pos..]).unwrap();
            pos += n;
            if let Event::Message(m) = ev {
                got = Some(m.as_bytes().len());
            }
        }
        assert_eq!(got, Some(300_001));
        let mut empty = [];
        assert_eq!(s.read(&mut empty).unwrap(), (0, Event::None));
        assert!(s.assembly.capacity() <= ASSEMBLY_KEEP);
        assert_eq!(s.buffered_message_bytes(), 0);
    }

    #[test]
    fn single_frame_message_is_not_copied() {
        let mut s = Session::new(SessionConfig::default());
        let mut input = encode_masked_frame(true, OpCode::Binary, MASK, b"abc");
        let (n, ev) = s.read(&mut input).unwrap();
        assert_eq!(n, 2 + 4 + 3);
        assert_eq!(ev, Event::Message(Message::Binary(b"abc")));
        assert_eq!(s.assembly.capacity(), 0);
    }
}
