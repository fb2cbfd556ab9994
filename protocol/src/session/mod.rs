//! The connection state machine after the upgrade: frames in, events and replies out.
//!
//! ```text
//!            we send close                 peer's close
//!   Open ----------------------> CloseSent ----------------> Closed
//!     |                                                        ^
//!     | peer's close                        we send close      |
//!     +-----------------------> CloseReceived -----------------+
//!                     (poll_transmit hands out the echo)
//!   any error -> Closed (poll_transmit hands out the error's close, unless ours went out)
//! ```
//!
//! "We send close" is a close handed out by [`Session::poll_transmit`], or one the caller sent on
//! its own and reported with [`Session::close_sent`].

use std::fmt;
use std::str;

use crate::error::{ExtensionError, ProtocolError};
use crate::extension::{self, Extension};
use crate::frame::{
    apply_mask, Chunk, FrameDecoder, FrameHeader, OpCode, Role, MAX_CONTROL_PAYLOAD,
};
use crate::message::{parse_close, CloseFrame, Message, Utf8Validator};
use crate::transmit::Transmit;

mod closing;
mod whole_frame;

use closing::Closing;
use whole_frame::WholeFrame;

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
    /// The peer sent a close; we owe the answer, which [`Session::poll_transmit`] hands out
    /// (or the caller sends its own close and calls [`Session::close_sent`]).
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
    /// A ping. The pong it needs (none once our close went out) comes from
    /// [`Session::poll_transmit`].
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close. If [`Session::state`] is now `CloseReceived`, the answer (the code
    /// echoed, or an empty close if `None`) comes from [`Session::poll_transmit`]; if it is
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
    /// A message the extension decoded, in the decoded buffer.
    Decoded(OpCode),
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

/// The negotiated extension, if any (a newtype so that `Session` can still derive `Debug`).
#[derive(Default)]
struct ExtensionSlot(Option<Box<dyn Extension>>);

impl fmt::Debug for ExtensionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(ext) => write!(f, "Some({:?})", ext.name()),
            None => f.write_str("None"),
        }
    }
}

/// Pass a received message's payload through the extension, into `out`.
fn decode_with(
    slot: &mut ExtensionSlot,
    rsv: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), ProtocolError> {
    let ext = slot.0.as_mut().ok_or(ProtocolError::ReservedBits)?;
    out.clear();
    ext.decode(rsv, payload, out, max)?;
    if out.len() > max {
        return Err(ProtocolError::MessageTooLarge);
    }
    Ok(())
}

/// A WebSocket session after the upgrade: decodes frames, reassembles messages, validates UTF-8
/// as it arrives, tracks the closing handshake and says what the RFC requires to be sent back.
/// It does no I/O: the caller reads bytes into a buffer, hands them to [`Session::read`], and
/// writes the frames [`Session::poll_transmit`] hands out, and its own.
///
/// # The reply contract
///
/// After each call to [`read`](Session::read) (whether it returned an event or an error), drain
/// [`poll_transmit`](Session::poll_transmit) and write every [`Transmit`] it gives, in order,
/// before the next read:
///
/// - a ping, while our close has not gone out, gives a [`Transmit::Pong`] with its payload;
/// - the peer's close, while ours has not gone out, gives a [`Transmit::Close`] echoing its code
///   (`code: None`, an empty close, for an empty one); the state is then `Closed`;
/// - a [`ProtocolError`] gives a [`Transmit::Close`] with the error's
///   [`close_code`](ProtocolError::close_code) and [`reason`](ProtocolError::reason), unless our
///   close had gone out; the state is `Closed`.
///
/// A close handed out by `poll_transmit` counts as sent. A close the caller sends on its own
/// (a shutdown's 1001, an application's close) is reported with
/// [`close_sent`](Session::close_sent), which also drops any reply not yet handed out (nothing
/// may follow a close). The [`Event`]s still say what arrived, for the application and for
/// bookkeeping; answering them is no longer the caller's job.
///
/// ```
/// use hydrogen_ws_protocol::{
///     encode_masked_frame, CloseCode, Event, OpCode, ProtocolError, Role, Session,
///     SessionConfig, SessionState, Transmit,
/// };
///
/// const MASK: [u8; 4] = [1, 2, 3, 4];
/// let mut server = Session::new(SessionConfig::default());
/// let mut client = Session::new(SessionConfig { role: Role::Client, ..Default::default() });
///
/// // The client pings; the server's session owes a pong, which the client receives.
/// let mut wire = encode_masked_frame(true, OpCode::Ping, MASK, b"are you there");
/// let (_, event) = server.read(&mut wire)?;
/// assert_eq!(event, Event::Ping(b"are you there"));
/// let pong = server.poll_transmit().expect("a pong is owed");
/// assert_eq!(pong.payload().as_bytes(), b"are you there");
/// assert_eq!(server.poll_transmit(), None);
/// let mut wire = Vec::new();
/// pong.append_frame(None, &mut wire);
/// assert_eq!(client.read(&mut wire)?.1, Event::Pong(b"are you there"));
///
/// // The client closes; the server's session owes the echo, which completes the handshake.
/// let mut wire = encode_masked_frame(true, OpCode::Close, MASK, b"\x03\xe8bye");
/// assert!(client.close_sent());
/// let (_, event) = server.read(&mut wire)?;
/// assert!(matches!(event, Event::Close(Some(frame)) if frame.code == CloseCode::NORMAL));
/// let echo = server.poll_transmit().expect("the close is answered");
/// assert_eq!(echo, Transmit::Close { code: Some(CloseCode::NORMAL), reason: "" });
/// assert_eq!(server.state(), SessionState::Closed);
/// let mut wire = Vec::new();
/// echo.append_frame(None, &mut wire);
/// assert!(matches!(client.read(&mut wire)?.1, Event::Close(Some(f)) if f.code.0 == 1000));
/// assert_eq!(client.state(), SessionState::Closed);
///
/// // A protocol error (an RSV bit without an extension) owes the close it maps to: 1002.
/// let mut server = Session::new(SessionConfig::default());
/// let mut wire = encode_masked_frame(true, OpCode::Text, MASK, b"hi");
/// wire[0] |= 0x40;
/// assert_eq!(server.read(&mut wire).err(), Some(ProtocolError::ReservedBits));
/// let close = server.poll_transmit().expect("the error's close");
/// assert_eq!(close.payload().get(..2), Some(&[0x03, 0xea][..]));
/// let mut client = Session::new(SessionConfig { role: Role::Client, ..Default::default() });
/// let mut wire = Vec::new();
/// close.append_frame(None, &mut wire);
/// match client.read(&mut wire)?.1 {
///     Event::Close(Some(frame)) => {
///         assert_eq!(frame.code, CloseCode::PROTOCOL_ERROR);
///         assert_eq!(frame.reason, ProtocolError::ReservedBits.reason());
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    closing: Closing,
    decoder: FrameDecoder,
    /// Fragments of the message in progress (allocated on first use).
    assembly: Vec<u8>,
    /// The last event borrowed `assembly` or `decoded`; clear them on the next read.
    release_assembly: bool,
    validator: Utf8Validator,
    /// The kind (Text or Binary) of the data message in progress, if any.
    message: Option<OpCode>,
    /// The RSV bits of the first frame of the message in progress (bits the extension claims).
    message_rsv: u8,
    /// Payload bytes received so far for the message in progress.
    message_len: u64,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    extension: ExtensionSlot,
    /// The last message the extension decoded (allocated on first use).
    decoded: Vec<u8>,
}

impl Session {
    /// A new open session.
    pub fn new(config: SessionConfig) -> Self {
        Session {
            config,
            closing: Closing {
                state: SessionState::Open,
                pong: None,
                close: None,
            },
            decoder: FrameDecoder::new(config.role, config.max_frame_size),
            assembly: Vec::new(),
            release_assembly: false,
            validator: Utf8Validator::new(),
            message: None,
            message_rsv: 0,
            message_len: 0,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            extension: ExtensionSlot::default(),
            decoded: Vec::new(),
        }
    }

    /// A new open session with a negotiated extension (see [`Session::set_extension`]).
    pub fn with_extension(config: SessionConfig, extension: Box<dyn Extension>) -> Self {
        let mut session = Session::new(config);
        session.set_extension(extension);
        session
    }

    /// Use a negotiated extension from the next frame on: the RSV bits it claims are accepted on
    /// the first frame of a data message, and a message whose first frame carries any of them is
    /// decoded by it before it is delivered. Set it before the first read.
    pub fn set_extension(&mut self, extension: Box<dyn Extension>) {
        self.decoder.set_allowed_rsv(extension.rsv_bits());
        self.extension.0 = Some(extension);
    }

    /// The negotiated extension, if any.
    pub fn extension(&self) -> Option<&dyn Extension> {
        self.extension.0.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The closing-handshake state.
    pub fn state(&self) -> SessionState {
        self.closing.state
    }

    /// Bytes of an incomplete (or just delivered) message held in the assembly buffer.
    pub fn buffered_message_bytes(&self) -> usize {
        if self.release_assembly {
            0
        } else {
            self.assembly.len()
        }
    }

    /// Record that we sent a close frame of our own: `Open` -> `CloseSent`, `CloseReceived` ->
    /// `Closed`. Replies [`poll_transmit`](Session::poll_transmit) had not handed out yet are
    /// dropped (nothing may follow a close). Returns false, changing nothing else, if a close was
    /// already sent (or the session failed).
    pub fn close_sent(&mut self) -> bool {
        self.closing.close_sent()
    }

    /// The next frame the RFC requires us to send now, if any: a pong for a ping, the answer to
    /// the peer's close, or the close after a protocol error (see the contract in [`Session`]'s
    /// docs). Call it until it returns `None` after every [`read`](Session::read), and write
    /// what it gives in order. A close handed out here counts as sent.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.closing.poll()
    }

    /// Frame an outgoing data message with the session's extension: [`extension::encode_message`]
    /// (see there). Without an extension the payload is returned as it is, with no copy.
    pub fn encode_message<'p>(
        &mut self,
        opcode: OpCode,
        payload: &'p [u8],
        scratch: &'p mut Vec<u8>,
    ) -> Result<(FrameHeader, &'p [u8]), ExtensionError> {
        let ext = self
            .extension
            .0
            .as_mut()
            .map(|ext| &mut **ext as &mut dyn Extension);
        extension::encode_message(ext, opcode, payload, scratch)
    }

    /// Consume bytes from the start of `buf` (unmasking them in place) and return how many were
    /// consumed and at most one event.
    ///
    /// Call repeatedly while it consumes bytes or returns events; `(0, Event::None)` means more
    /// input is needed. Once the state is `CloseReceived` or `Closed`, all input is consumed and
    /// ignored: nothing is delivered after a close. After an error the session is `Closed`, and
    /// [`poll_transmit`](Session::poll_transmit) hands out the close to send (the error's
    /// [`ProtocolError::close_code`] and reason) unless ours had gone out; then close the
    /// connection.
    pub fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<(usize, Event<'a>), ProtocolError> {
        if matches!(
            self.closing.state,
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
            self.decoded.clear();
            if self.decoded.capacity() > ASSEMBLY_KEEP {
                self.decoded.shrink_to(ASSEMBLY_KEEP);
            }
        }
        if self.closing.state == SessionState::Open
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
            Err(e) => return Err(self.closing.fail(e)),
        };
        let Some(chunk) = chunk else {
            return Ok((consumed, Event::None));
        };
        let ready = match self.on_chunk(&chunk) {
            Ok(ready) => ready,
            Err(e) => return Err(self.closing.fail(e)),
        };
        // Only field borrows from here on, so the event can borrow `control`, `assembly` or
        // `decoded` while `closing` is updated.
        let event = match ready {
            Ready::Nothing => Event::None,
            Ready::Direct(kind) => match whole_payload(kind == OpCode::Text, chunk.data) {
                Ok(message) => Event::Message(message),
                Err(e) => return Err(self.closing.fail(e)),
            },
            Ready::Assembled(kind) => {
                self.release_assembly = true;
                // A text message was validated piece by piece already; this is the safe-code way to
                // get its &str.
                match whole_payload(kind == OpCode::Text, &self.assembly) {
                    Ok(message) => Event::Message(message),
                    Err(e) => return Err(self.closing.fail(e)),
                }
            }
            Ready::Decoded(kind) => {
                self.release_assembly = true;
                // The extension's output is checked whole: its input was not text.
                match whole_payload(kind == OpCode::Text, &self.decoded) {
                    Ok(message) => Event::Message(message),
                    Err(e) => return Err(self.closing.fail(e)),
                }
            }
            Ready::Ping => {
                let payload = self.control.get(..self.control_len).unwrap_or_default();
                self.closing.ping(payload);
                Event::Ping(payload)
            }
            Ready::Pong => Event::Pong(self.control.get(..self.control_len).unwrap_or_default()),
            Ready::Close => {
                let payload = self.control.get(..self.control_len).unwrap_or_default();
                match parse_close(payload) {
                    Ok(frame) => {
                        self.closing.peer_close(frame.map(|f| f.code));
                        Event::Close(frame)
                    }
                    Err(e) => return Err(self.closing.fail(e)),
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
            Err(e) => Err(self.closing.fail(e)),
        }
    }

    /// Apply one chunk to the assembly state; says what (if anything) it completed.
    fn on_chunk(&mut self, chunk: &Chunk<'_>) -> Result<Ready, ProtocolError> {
        let header = chunk.header;
        // The decoder let through only bits the extension claims; they may start a data message
        // and appear nowhere else.
        if header.rsv != 0
            && chunk.first
            && (header.opcode.is_control() || header.opcode == OpCode::Continuation)
        {
            return Err(ProtocolError::ExtensionBitsMisplaced);
        }
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
                self.message_rsv = header.rsv;
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
        let discard = self.closing.state == SessionState::CloseSent;
        let ends_message = chunk.last && header.fin;
        // The message is transformed by the extension: its bytes are not text until decoded.
        let encoded = self.message_rsv != 0;

        if chunk.first && ends_message && header.opcode != OpCode::Continuation {
            // The whole message is this one frame, entirely in the caller's buffer.
            self.message = None;
            if discard {
                return Ok(Ready::Nothing);
            }
            if encoded {
                let max = self.config.max_message_size;
                let rsv = self.message_rsv;
                decode_with(&mut self.extension, rsv, chunk.data, &mut self.decoded, max)?;
                return Ok(Ready::Decoded(kind));
            }
            return Ok(Ready::Direct(kind));
        }
        if !discard {
            if kind == OpCode::Text && !encoded {
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
        if encoded {
            let max = self.config.max_message_size;
            let rsv = self.message_rsv;
            decode_with(
                &mut self.extension,
                rsv,
                &self.assembly,
                &mut self.decoded,
                max,
            )?;
            // The raw bytes are no longer needed; `decoded` is released after the event.
            self.assembly.clear();
            return Ok(Ready::Decoded(kind));
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
