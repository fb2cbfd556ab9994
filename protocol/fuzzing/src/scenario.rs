//! The `session` target: its structured input, the driver and the checks. The wire it makes is in
//! `wire.rs`, the model of RFC 6455 it is compared with in `model.rs`.

use super::input::{Reader, Writer};
use super::pieces;
use crate::checks::{check_close_code, check_message, check_transmits};
use crate::model::model;
use crate::wire::{Step, WireBuilder};
use hydrogen_ws_protocol::CloseCode;
use hydrogen_ws_protocol::ProtocolError;
use hydrogen_ws_protocol::Role;
use hydrogen_ws_protocol::{ControlPayload, Event, Session, SessionConfig, SessionState, Transmit};

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
/// transitions as documented; every error mapped to its close code; the replies handed out by
/// `poll_transmit` exactly the ones RFC 6455 requires.
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
                // The close the error maps to is owed, unless ours went out.
                let owed = (before == SessionState::Open).then_some(Transmit::Close {
                    code: Some(e.close_code()),
                    reason: e.reason(),
                });
                check_transmits(session, owed);
                assert_eq!(session.state(), SessionState::Closed);
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
        // The replies the RFC requires, handed out once: a pong for a ping and the echo of the
        // peer's close, while our close has not gone out; nothing else.
        let owed = match &owned {
            Some(Owned::Ping(p)) if before == SessionState::Open => {
                ControlPayload::new(p).map(Transmit::Pong)
            }
            Some(Owned::Close(frame)) if before == SessionState::Open => Some(Transmit::Close {
                code: frame.as_ref().map(|(code, _)| CloseCode(*code)),
                reason: "",
            }),
            _ => None,
        };
        check_transmits(session, owed);
        if matches!(owned, Some(Owned::Close(_))) {
            assert_eq!(session.state(), SessionState::Closed);
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
