//! The `session` target: structured input, the wire it makes, the driver and the model.

use std::str;

use super::input::{Reader, Writer};
use super::{pieces, xor_key};
use hydrogen_ws_protocol::ProtocolError;
use hydrogen_ws_protocol::Role;
use hydrogen_ws_protocol::{close_payload, parse_close, CloseCode, CloseFrame};
use hydrogen_ws_protocol::{Event, Session, SessionConfig, SessionState};

/// A structured session: limits, how the bytes are read, and what the peer sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInput {
    /// The session is a client (frames must arrive unmasked) rather than a server.
    pub client: bool,
    /// `SessionConfig::max_frame_size`.
    pub max_frame_size: u16,
    /// `SessionConfig::max_message_size`.
    pub max_message_size: u16,
    /// The peer's masking key (rotated by one byte per frame).
    pub mask: [u8; 4],
    /// Bytes cut off the end of the wire: a connection that stops mid-frame.
    pub truncate: u8,
    /// How the wire is cut into reads: pieces of `b + 1` bytes in turn; empty means whole.
    pub reads: Vec<u8>,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// One thing the peer sends, or that we do, in a [`SessionInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A data message, cut into fragments of the given lengths (the rest goes in the last one),
    /// with a ping after fragment `ping_after - 1` when `ping_after > 0`.
    Message {
        /// Text (else binary); the payload need not be UTF-8.
        text: bool,
        /// The payload.
        payload: Vec<u8>,
        /// Fragment lengths.
        fragments: Vec<u8>,
        /// Where a ping goes (0: none).
        ping_after: u8,
    },
    /// A text message, fragmented (so characters are split across frames), with one byte
    /// replaced when `corrupt` says so.
    Text {
        /// The text.
        text: String,
        /// Fragment lengths.
        fragments: Vec<u8>,
        /// (position modulo the length, new byte).
        corrupt: Option<(u16, u8)>,
    },
    /// One frame with any flags: reserved bits and opcodes, continuation out of order, the
    /// wrong masking for the role.
    Frame {
        /// FIN.
        fin: bool,
        /// RSV bits (3 used).
        rsv: u8,
        /// Opcode (4 bits used).
        opcode: u8,
        /// Masked when it must not be, or not masked when it must.
        wrong_mask: bool,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A ping (more than 125 bytes is a protocol error).
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame.
    Close(CloseBody),
    /// A frame declaring `len` (top bit dropped): its payload (zeros) is sent only if `len` is
    /// within the frame limit, else the header alone, as an attacker would.
    Oversize {
        /// Opcode (4 bits used).
        opcode: u8,
        /// FIN.
        fin: bool,
        /// Declared length.
        len: u64,
    },
    /// We send a close here ([`Session::close_sent`]).
    LocalClose,
    /// Arbitrary bytes (the model of the session stops predicting here).
    Raw(Vec<u8>),
}

/// The payload of a close frame in a [`SessionInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseBody {
    /// No payload.
    Empty,
    /// One byte (a protocol error).
    OneByte(u8),
    /// A code and a reason.
    Code {
        /// The code (sendable or not).
        code: u16,
        /// The reason.
        reason: String,
    },
    /// Any bytes.
    Raw(Vec<u8>),
}

impl SessionInput {
    /// Decode from fuzz input bytes (never fails; missing bytes read as zero).
    pub fn from_bytes(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        let client = r.u8() & 1 != 0;
        let max_frame_size = r.u16();
        let max_message_size = r.u16();
        let mask = [r.u8(), r.u8(), r.u8(), r.u8()];
        let truncate = r.u8();
        let reads = r.short();
        let mut ops = Vec::new();
        while !r.is_empty() {
            ops.push(Op::read(&mut r));
        }
        SessionInput {
            client,
            max_frame_size,
            max_message_size,
            mask,
            truncate,
            reads,
            ops,
        }
    }

    /// The inverse of [`SessionInput::from_bytes`] (for inputs it can produce).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(u8::from(self.client));
        w.u16(self.max_frame_size);
        w.u16(self.max_message_size);
        w.raw(&self.mask);
        w.u8(self.truncate);
        w.short(&self.reads);
        for op in &self.ops {
            op.write(&mut w);
        }
        w.finish()
    }

    fn config(&self) -> SessionConfig {
        SessionConfig {
            role: if self.client {
                Role::Client
            } else {
                Role::Server
            },
            max_frame_size: u64::from(self.max_frame_size),
            max_message_size: usize::from(self.max_message_size),
        }
    }
}

impl Op {
    fn read(r: &mut Reader<'_>) -> Op {
        match r.u8() % 9 {
            0 => {
                let text = r.u8() & 1 != 0;
                Op::Message {
                    text,
                    payload: r.bytes(),
                    fragments: r.short(),
                    ping_after: r.u8(),
                }
            }
            1 => {
                let text = r.text();
                let fragments = r.short();
                let corrupt = (r.u8() & 1 != 0).then(|| (r.u16(), r.u8()));
                Op::Text {
                    text,
                    fragments,
                    corrupt,
                }
            }
            2 => {
                let flags = r.u8();
                Op::Frame {
                    fin: flags & 1 != 0,
                    wrong_mask: flags & 2 != 0,
                    rsv: (flags >> 2) & 0x7,
                    opcode: r.u8(),
                    payload: r.bytes(),
                }
            }
            3 => Op::Ping(r.short()),
            4 => Op::Pong(r.short()),
            5 => Op::Close(match r.u8() % 4 {
                0 => CloseBody::Empty,
                1 => CloseBody::OneByte(r.u8()),
                2 => {
                    let code = r.u16();
                    CloseBody::Code {
                        code,
                        reason: r.text(),
                    }
                }
                _ => CloseBody::Raw(r.short()),
            }),
            6 => {
                let opcode = r.u8();
                Op::Oversize {
                    opcode: opcode & 0x7F,
                    fin: opcode & 0x80 != 0,
                    len: r.u64(),
                }
            }
            7 => Op::LocalClose,
            _ => Op::Raw(r.bytes()),
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Op::Message {
                text,
                payload,
                fragments,
                ping_after,
            } => {
                w.u8(0);
                w.u8(u8::from(*text));
                w.bytes(payload);
                w.short(fragments);
                w.u8(*ping_after);
            }
            Op::Text {
                text,
                fragments,
                corrupt,
            } => {
                w.u8(1);
                w.bytes(text.as_bytes());
                w.short(fragments);
                match corrupt {
                    Some((at, b)) => {
                        w.u8(1);
                        w.u16(*at);
                        w.u8(*b);
                    }
                    None => w.u8(0),
                }
            }
            Op::Frame {
                fin,
                rsv,
                opcode,
                wrong_mask,
                payload,
            } => {
                w.u8(2);
                w.u8(u8::from(*fin) | (u8::from(*wrong_mask) << 1) | ((rsv & 0x7) << 2));
                w.u8(*opcode);
                w.bytes(payload);
            }
            Op::Ping(p) => {
                w.u8(3);
                w.short(p);
            }
            Op::Pong(p) => {
                w.u8(4);
                w.short(p);
            }
            Op::Close(body) => {
                w.u8(5);
                match body {
                    CloseBody::Empty => w.u8(0),
                    CloseBody::OneByte(b) => {
                        w.u8(1);
                        w.u8(*b);
                    }
                    CloseBody::Code { code, reason } => {
                        w.u8(2);
                        w.u16(*code);
                        w.bytes(reason.as_bytes());
                    }
                    CloseBody::Raw(p) => {
                        w.u8(3);
                        w.short(p);
                    }
                }
            }
            Op::Oversize { opcode, fin, len } => {
                w.u8(6);
                w.u8((opcode & 0x7F) | (u8::from(*fin) << 7));
                w.u64(*len);
            }
            Op::LocalClose => w.u8(7),
            Op::Raw(p) => {
                w.u8(8);
                w.bytes(p);
            }
        }
    }
}

/// A frame as the peer put it on the wire.
#[derive(Debug, Clone)]
struct SentFrame {
    fin: bool,
    rsv: u8,
    /// The 4-bit opcode, reserved values included.
    opcode: u8,
    masked: bool,
    len: u64,
    /// Unmasked payload; `None` when only the header was sent.
    payload: Option<Vec<u8>>,
}

/// What the wire is made of, in order, with stream offsets.
#[derive(Debug, Clone)]
enum Step {
    Frame {
        start: usize,
        end: usize,
        frame: SentFrame,
    },
    LocalClose {
        at: usize,
    },
    /// Bytes the model does not interpret start here.
    Desync {
        at: usize,
    },
}

/// Builds the peer's bytes, writing headers by hand from RFC 6455 section 5.2 (independently of
/// the crate's encoder, so that reserved opcodes and bad flags can be written too).
struct WireBuilder {
    wire: Vec<u8>,
    steps: Vec<Step>,
    mask: [u8; 4],
    /// Frames must be masked (the session is a server).
    must_mask: bool,
    max_frame_size: u64,
}

impl WireBuilder {
    fn frame(&mut self, fin: bool, rsv: u8, opcode: u8, wrong_mask: bool, payload: &[u8]) {
        self.header_and(
            fin,
            rsv,
            opcode,
            wrong_mask,
            payload.len() as u64,
            Some(payload),
        );
    }

    fn header_and(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: u8,
        wrong_mask: bool,
        len: u64,
        payload: Option<&[u8]>,
    ) {
        let start = self.wire.len();
        let masked = self.must_mask != wrong_mask;
        let opcode = opcode & 0x0F;
        let rsv = rsv & 0x7;
        self.wire.push((u8::from(fin) << 7) | (rsv << 4) | opcode);
        let mask_bit = u8::from(masked) << 7;
        if len < 126 {
            self.wire.push(mask_bit | len as u8);
        } else if len <= 0xFFFF {
            self.wire.push(mask_bit | 126);
            self.wire.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.wire.push(mask_bit | 127);
            self.wire.extend_from_slice(&len.to_be_bytes());
        }
        let key = self.mask;
        self.mask.rotate_left(1);
        if masked {
            self.wire.extend_from_slice(&key);
        }
        if let Some(p) = payload {
            let body = self.wire.len();
            self.wire.extend_from_slice(p);
            if let (true, Some(body)) = (masked, self.wire.get_mut(body..)) {
                xor_key(body, key);
            }
        }
        self.steps.push(Step::Frame {
            start,
            end: self.wire.len(),
            frame: SentFrame {
                fin,
                rsv,
                opcode,
                masked,
                len,
                payload: payload.map(<[u8]>::to_vec),
            },
        });
    }

    /// A data message in fragments, with a ping after fragment `ping_after - 1`.
    fn message(&mut self, text: bool, payload: &[u8], fragments: &[u8], ping_after: u8) {
        let mut rest = payload;
        let mut opcode = if text { 1 } else { 2 };
        let mut index = 0;
        let mut lens = fragments.iter();
        loop {
            let (piece, fin) = match lens.next() {
                Some(&n) => {
                    let (piece, tail) = rest.split_at(usize::from(n).min(rest.len()));
                    rest = tail;
                    (piece, false)
                }
                None => (rest, true),
            };
            self.frame(fin, 0, opcode, false, piece);
            index += 1;
            if usize::from(ping_after) == index {
                self.frame(true, 0, 0x9, false, b"ping");
            }
            if fin {
                break;
            }
            opcode = 0;
        }
    }

    fn op(&mut self, op: &Op) {
        match op {
            Op::Message {
                text,
                payload,
                fragments,
                ping_after,
            } => self.message(*text, payload, fragments, *ping_after),
            Op::Text {
                text,
                fragments,
                corrupt,
            } => {
                let mut bytes = text.as_bytes().to_vec();
                if let Some((at, b)) = corrupt {
                    let len = bytes.len();
                    if let Some(x) = bytes.get_mut(usize::from(*at) % len.max(1)) {
                        *x = *b;
                    }
                }
                self.message(true, &bytes, fragments, 0);
            }
            Op::Frame {
                fin,
                rsv,
                opcode,
                wrong_mask,
                payload,
            } => self.frame(*fin, *rsv, *opcode, *wrong_mask, payload),
            Op::Ping(p) => self.frame(true, 0, 0x9, false, p),
            Op::Pong(p) => self.frame(true, 0, 0xA, false, p),
            Op::Close(body) => {
                let payload = match body {
                    CloseBody::Empty => Vec::new(),
                    CloseBody::OneByte(b) => vec![*b],
                    CloseBody::Code { code, reason } => {
                        let mut p = code.to_be_bytes().to_vec();
                        p.extend_from_slice(reason.as_bytes());
                        p
                    }
                    CloseBody::Raw(p) => p.clone(),
                };
                self.frame(true, 0, 0x8, false, &payload);
            }
            Op::Oversize { opcode, fin, len } => {
                let len = len & (u64::MAX >> 1);
                if len <= self.max_frame_size {
                    let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
                    self.header_and(*fin, 0, *opcode, false, len, Some(&zeros));
                } else {
                    self.header_and(*fin, 0, *opcode, false, len, None);
                }
            }
            Op::LocalClose => self.steps.push(Step::LocalClose {
                at: self.wire.len(),
            }),
            Op::Raw(bytes) => {
                self.steps.push(Step::Desync {
                    at: self.wire.len(),
                });
                self.wire.extend_from_slice(bytes);
            }
        }
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

/// What a session made of the wire: events with the offset where each was complete, and the
/// error with the offset of the read that failed.
#[derive(Debug, Default)]
struct Run {
    events: Vec<(usize, Owned)>,
    error: Option<(usize, ProtocolError)>,
}

/// The session: no panic; whole, split and byte-by-byte reads agree; the events and error match
/// an independent model of RFC 6455 up to where the wire stops being modelled (a [`Op::Raw`] or
/// the truncated end); all along, the invariants of `drive` hold.
pub fn session(input: &SessionInput) {
    let config = input.config();
    let mut b = WireBuilder {
        wire: Vec::new(),
        steps: Vec::new(),
        mask: input.mask,
        must_mask: !input.client,
        max_frame_size: config.max_frame_size,
    };
    for op in &input.ops {
        b.op(op);
    }
    let WireBuilder {
        mut wire, steps, ..
    } = b;
    wire.truncate(wire.len().saturating_sub(usize::from(input.truncate)));
    let closes: Vec<usize> = steps
        .iter()
        .filter_map(|s| match s {
            Step::LocalClose { at } if *at <= wire.len() => Some(*at),
            _ => None,
        })
        .collect();
    let reads: Vec<usize> = input.reads.iter().map(|&b| usize::from(b) + 1).collect();

    let whole = drive(config, &wire, &closes, &[]);
    let split = drive(config, &wire, &closes, &reads);
    let kind = |r: &Run| r.error.map(|(_, e)| e);
    assert_eq!(whole.events, split.events, "reads {reads:?}");
    assert_eq!(kind(&whole), kind(&split), "reads {reads:?}");
    if wire.len() <= 1024 {
        let bytewise = drive(config, &wire, &closes, &[1]);
        assert_eq!(whole.events, bytewise.events, "byte by byte");
        assert_eq!(kind(&whole), kind(&bytewise), "byte by byte");
    }

    let (expected, modelled) = model(config, &steps, wire.len());
    for run in [&whole, &split] {
        let seen: Vec<(usize, Owned)> = run
            .events
            .iter()
            .filter(|(end, _)| *end <= modelled)
            .cloned()
            .collect();
        assert_eq!(seen, expected.events, "events up to offset {modelled}");
        match (expected.error, run.error) {
            (Some((_, want)), Some((_, got))) => {
                assert_eq!(got, want);
                assert_eq!(run.events.len(), expected.events.len());
            }
            (Some((at, want)), None) => panic!("expected {want:?} (frame at {at}), got none"),
            (None, Some((at, got))) => {
                assert!(at >= modelled, "{got:?} at {at}, before {modelled}")
            }
            (None, None) => {}
        }
    }
}

/// Feed `wire` to a fresh session the way a server reads a socket: in pieces of `lens` (whole
/// if empty), reading until no progress after each, with [`Session::close_sent`] called at each
/// offset in `closes`. Checks after every call: the assembly buffer within the message limit;
/// nothing delivered (and all input swallowed) once a close was received or the session failed;
/// no data message delivered after we sent a close; control payloads within 125 bytes; state
/// transitions as documented; every error mapped to its close code.
fn drive(config: SessionConfig, wire: &[u8], closes: &[usize], lens: &[usize]) -> Run {
    let mut session = Session::new(config);
    let mut run = Run::default();
    let mut buf = Vec::new();
    let mut base = 0; // stream offset of buf[0]
    let mut start = 0;
    let mut bounds = closes.to_vec();
    bounds.push(wire.len());
    for (i, &end) in bounds.iter().enumerate() {
        let segment = wire.get(start..end).unwrap_or_default();
        start = end;
        for piece in pieces(segment, lens) {
            buf.extend_from_slice(piece);
            read_all(&mut session, &mut buf, &mut base, &mut run, config);
        }
        if i + 1 < bounds.len() {
            let before = session.state();
            let changed = session.close_sent();
            let (want_changed, after) = match before {
                SessionState::Open => (true, SessionState::CloseSent),
                SessionState::CloseReceived => (true, SessionState::Closed),
                other => (false, other),
            };
            assert_eq!((changed, session.state()), (want_changed, after));
        }
    }
    run
}

fn read_all(
    session: &mut Session,
    buf: &mut Vec<u8>,
    base: &mut usize,
    run: &mut Run,
    config: SessionConfig,
) {
    loop {
        let before = session.state();
        let len = buf.len();
        let (n, owned) = match session.read(buf) {
            Ok((n, ev)) => (n, Owned::from_event(&ev)),
            Err(e) => {
                assert!(run.error.is_none(), "an error after an error");
                assert!(!matches!(
                    before,
                    SessionState::CloseReceived | SessionState::Closed
                ));
                assert_eq!(session.state(), SessionState::Closed);
                check_close_code(e);
                run.error = Some((*base, e));
                // The server closes the connection; what is buffered is never read again.
                *base += len;
                buf.clear();
                return;
            }
        };
        let after = session.state();
        assert!(n <= len);
        assert!(session.buffered_message_bytes() <= config.max_message_size);
        if matches!(before, SessionState::CloseReceived | SessionState::Closed) {
            assert_eq!(
                (n, &owned),
                (len, &None),
                "input after a close must be ignored"
            );
        }
        match &owned {
            None => assert_eq!(before, after),
            Some(Owned::Text(t)) => check_message(t.len(), before, after, config),
            Some(Owned::Binary(b)) => check_message(b.len(), before, after, config),
            Some(Owned::Ping(p) | Owned::Pong(p)) => {
                assert!(p.len() <= 125);
                assert_eq!(before, after);
            }
            Some(Owned::Close(frame)) => {
                let want = match before {
                    SessionState::Open => SessionState::CloseReceived,
                    _ => SessionState::Closed,
                };
                assert_eq!(after, want);
                if let Some((code, reason)) = frame {
                    assert!(CloseCode(*code).is_sendable(), "received code {code}");
                    assert!(reason.len() <= 123);
                }
            }
        }
        let progress = n > 0 || owned.is_some();
        if let Some(ev) = owned {
            run.events.push((*base + n, ev));
        }
        buf.drain(..n);
        *base += n;
        if !progress {
            return;
        }
    }
}

fn check_message(len: usize, before: SessionState, after: SessionState, config: SessionConfig) {
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
fn check_close_code(e: ProtocolError) {
    let want = match e {
        ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
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

/// What the model expects: events with the offset where each completes, and the error with the
/// offset of the frame that causes it.
#[derive(Debug, Default)]
struct Expected {
    events: Vec<(usize, Owned)>,
    error: Option<(usize, ProtocolError)>,
}

/// The RFC 6455 rules for a receiver, written plainly over whole frames.
struct Model {
    config: SessionConfig,
    state: SessionState,
    /// The message in progress: text or not.
    message: Option<bool>,
    /// Payload bytes of the message in progress (counted even when discarded).
    message_len: u64,
    /// Its payload so far (unless discarded).
    assembled: Vec<u8>,
}

/// Run the model over the steps; returns what it expects and the offset up to which the wire
/// was modelled (the start of the first unmodelled or incomplete step).
fn model(config: SessionConfig, steps: &[Step], wire_len: usize) -> (Expected, usize) {
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
    fn frame(&mut self, f: &SentFrame) -> Result<Option<Owned>, ProtocolError> {
        let result = self.check(f);
        if result.is_err() {
            self.state = SessionState::Closed;
        }
        result
    }

    fn check(&mut self, f: &SentFrame) -> Result<Option<Owned>, ProtocolError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ops: Vec<Op>) -> SessionInput {
        SessionInput {
            client: false,
            max_frame_size: 125,
            max_message_size: 200,
            mask: [1, 2, 3, 4],
            truncate: 0,
            reads: vec![2],
            ops,
        }
    }

    /// The session's outcome, after checking that it agrees with the model and the invariants.
    fn outcome(input: &SessionInput) -> (Vec<Owned>, Option<ProtocolError>) {
        session(input);
        let mut b = WireBuilder {
            wire: Vec::new(),
            steps: Vec::new(),
            mask: input.mask,
            must_mask: !input.client,
            max_frame_size: u64::from(input.max_frame_size),
        };
        input.ops.iter().for_each(|op| b.op(op));
        let closes: Vec<usize> = b
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::LocalClose { at } => Some(*at),
                _ => None,
            })
            .collect();
        let run = drive(input.config(), &b.wire, &closes, &[]);
        let events = run.events.into_iter().map(|(_, e)| e).collect();
        (events, run.error.map(|(_, e)| e))
    }

    fn text(s: &str, fragments: &[u8]) -> Op {
        Op::Text {
            text: s.into(),
            fragments: fragments.to_vec(),
            corrupt: None,
        }
    }

    fn close(code: u16) -> Op {
        Op::Close(CloseBody::Code {
            code,
            reason: String::new(),
        })
    }

    /// The target is not vacuous: each kind of scenario ends the way RFC 6455 says.
    #[test]
    fn scenarios_end_as_the_rfc_says() {
        use ProtocolError as E;
        let (events, error) = outcome(&input(vec![text("κόσμε", &[1, 2]), close(1000)]));
        assert_eq!(
            events,
            vec![
                Owned::Text("κόσμε".into()),
                Owned::Close(Some((1000, String::new())))
            ]
        );
        assert_eq!(error, None);
        let cases = [
            (vec![close(1005)], E::InvalidCloseCode(1005)),
            (vec![Op::Close(CloseBody::OneByte(3))], E::CloseTooShort),
            (vec![Op::Ping(vec![0; 126])], E::ControlTooLong),
            (
                vec![Op::Oversize {
                    opcode: 2,
                    fin: true,
                    len: 1 << 40,
                }],
                E::FrameTooLarge,
            ),
            (
                vec![Op::Message {
                    text: false,
                    payload: vec![0; 201],
                    fragments: vec![100, 100],
                    ping_after: 0,
                }],
                E::MessageTooLarge,
            ),
            (
                vec![Op::Message {
                    text: true,
                    payload: b"\xce\xba\xed\xa0\x80".to_vec(),
                    fragments: vec![1, 2],
                    ping_after: 1,
                }],
                E::InvalidUtf8,
            ),
            (
                vec![Op::Frame {
                    fin: true,
                    rsv: 0,
                    opcode: 0,
                    wrong_mask: false,
                    payload: vec![],
                }],
                E::UnexpectedContinuation,
            ),
            (
                vec![Op::Frame {
                    fin: true,
                    rsv: 0,
                    opcode: 1,
                    wrong_mask: true,
                    payload: vec![],
                }],
                E::Unmasked,
            ),
        ];
        for (ops, want) in cases {
            assert_eq!(outcome(&input(ops.clone())).1, Some(want), "{ops:?}");
        }
        // After our close: data is discarded, pings still come, the peer's close ends it.
        let (events, error) = outcome(&input(vec![
            Op::LocalClose,
            text("dropped", &[3]),
            Op::Ping(b"p".to_vec()),
            close(1001),
            text("after", &[]),
        ]));
        assert_eq!(
            events,
            vec![
                Owned::Ping(b"p".to_vec()),
                Owned::Close(Some((1001, String::new())))
            ]
        );
        assert_eq!(error, None);
    }
}
