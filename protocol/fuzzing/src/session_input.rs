//! The `session` target's structured input: limits, how the bytes are read, and what the peer
//! sends, with its byte format (`from_bytes` / `to_bytes`, exact inverses).

use super::input::{Reader, Writer};
use hydrogen_ws_protocol::{Role, SessionConfig};

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
    /// We send a close here ([`Session::close_sent`](hydrogen_ws_protocol::Session::close_sent)).
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

    pub(crate) fn config(&self) -> SessionConfig {
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
